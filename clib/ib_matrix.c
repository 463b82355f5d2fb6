/* ib_matrix: sample T** library, see ib_matrix.h for the contract of every function. */
#include "ib_matrix.h"
#include "ib_alloc.h"

#include <stdint.h>
#include <stdlib.h>

/* --- allocation accounting: every malloc/calloc/free of the library goes through here ------ */
/* (ib_stream.c too: ib_calloc and ib_free are declared in the internal header ib_alloc.h.) */

static long live_allocations = 0;
static long allocations_left = -1; /* < 0: unlimited (fault injection off) */

static int may_allocate(void)
{
    if (allocations_left == 0)
        return 0;
    if (allocations_left > 0)
        allocations_left--;
    return 1;
}

/* calloc with the counter; n * size is checked for overflow (calloc does it too, but the
 * counter must not move on failure). */
void *ib_calloc(size_t n, size_t size)
{
    void *p;
    if (n == 0 || size == 0 || n > SIZE_MAX / size || !may_allocate())
        return NULL;
    p = calloc(n, size);
    if (p != NULL)
        live_allocations++;
    return p;
}

void ib_free(void *p)
{
    if (p != NULL) {
        free(p);
        live_allocations--;
    }
}

long ib_live_allocations(void)
{
    return live_allocations;
}

void ib_fail_allocations_after(long n)
{
    allocations_left = n < 0 ? -1 : n;
}

/* --- 1. row-by-row matrix ------------------------------------------------------------------- */

double **ib_matrix_new(size_t rows, size_t cols)
{
    double **m;
    size_t i;
    if (rows == 0 || cols == 0)
        return NULL;
    m = ib_calloc(rows, sizeof *m);
    if (m == NULL)
        return NULL;
    for (i = 0; i < rows; i++) {
        m[i] = ib_calloc(cols, sizeof **m);
        if (m[i] == NULL) {
            ib_matrix_free(m, i); /* the rows made so far, then the table */
            return NULL;
        }
    }
    return m;
}

void ib_matrix_free(double **m, size_t rows)
{
    size_t i;
    if (m == NULL)
        return;
    for (i = 0; i < rows; i++)
        ib_free(m[i]);
    ib_free(m);
}

/* --- 2. single-block matrix ----------------------------------------------------------------- */

double **ib_block_new(size_t rows, size_t cols)
{
    double **a;
    double *data;
    size_t i;
    if (rows == 0 || cols == 0 || rows > SIZE_MAX / cols)
        return NULL;
    a = ib_calloc(rows, sizeof *a);
    if (a == NULL)
        return NULL;
    data = ib_calloc(rows * cols, sizeof *data);
    if (data == NULL) {
        ib_free(a);
        return NULL;
    }
    for (i = 0; i < rows; i++)
        a[i] = data + i * cols;
    return a;
}

void ib_block_free(double **a)
{
    if (a == NULL)
        return;
    ib_free(a[0]); /* a[0] owns the whole data block */
    ib_free(a);
}

/* --- 3. and 4. reading and writing the caller's rows ---------------------------------------- */

double ib_matrix_sum(const double *const *m, size_t rows, size_t cols)
{
    double s = 0.0;
    size_t i, j;
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++)
            s += m[i][j];
    return s;
}

void ib_matrix_scale(double **m, size_t rows, size_t cols, double factor)
{
    size_t i, j;
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++)
            m[i][j] *= factor;
}

void ib_matrix_iota(double **m, size_t rows, size_t cols)
{
    size_t i, j;
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++)
            m[i][j] = (double)(i * cols + j);
}

int ib_image_invert(unsigned char **rows, size_t height, size_t width)
{
    size_t i, j;
    if (width == 0 || height == 0)
        return IB_OK;
    if (rows == NULL)
        return IB_EINVAL;
    for (i = 0; i < height; i++)
        if (rows[i] == NULL)
            return IB_EINVAL;
    for (i = 0; i < height; i++)
        for (j = 0; j < width; j++)
            rows[i][j] = (unsigned char)(255 - rows[i][j]);
    return IB_OK;
}

int ib_image_rgb_to_gray(const unsigned char *const *rgb, unsigned char **gray, size_t height,
                         size_t width)
{
    size_t i, j;
    if (width == 0 || height == 0)
        return IB_OK;
    if (rgb == NULL || gray == NULL)
        return IB_EINVAL;
    for (i = 0; i < height; i++)
        if (rgb[i] == NULL || gray[i] == NULL)
            return IB_EINVAL;
    for (i = 0; i < height; i++) {
        for (j = 0; j < width; j++) {
            const unsigned char *p = rgb[i] + 3 * j;
            /* The weights add up to 256: the result fits in 8 bits. */
            gray[i][j] = (unsigned char)((77u * p[0] + 150u * p[1] + 29u * p[2] + 128u) >> 8);
        }
    }
    return IB_OK;
}

/* --- 5. int** ------------------------------------------------------------------------------- */

int ib_confusion(const int *truth, const int *pred, size_t n, int **counts, size_t k)
{
    size_t i, j;
    if (counts == NULL || (n > 0 && (truth == NULL || pred == NULL)))
        return IB_EINVAL;
    for (i = 0; i < k; i++)
        if (counts[i] == NULL)
            return IB_EINVAL;
    /* Validate everything before writing, so that counts is untouched on error. */
    for (i = 0; i < n; i++)
        if (truth[i] < 0 || pred[i] < 0 || (size_t)truth[i] >= k || (size_t)pred[i] >= k)
            return IB_EINVAL;
    for (i = 0; i < k; i++)
        for (j = 0; j < k; j++)
            counts[i][j] = 0;
    for (i = 0; i < n; i++)
        counts[truth[i]][pred[i]]++;
    return IB_OK;
}

/* --- 6. a handle that owns a table ---------------------------------------------------------- */

struct ib_model {
    size_t rows, cols;
    double **coef; /* from ib_matrix_new */
};

ib_model *ib_model_new(size_t rows, size_t cols)
{
    ib_model *m;
    size_t i;
    if (rows == 0 || cols == 0)
        return NULL;
    m = ib_calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->coef = ib_matrix_new(rows, cols);
    if (m->coef == NULL) {
        ib_free(m);
        return NULL;
    }
    m->rows = rows;
    m->cols = cols;
    for (i = 0; i < rows && i < cols; i++)
        m->coef[i][i] = 1.0;
    return m;
}

void ib_model_free(ib_model *m)
{
    if (m == NULL)
        return;
    ib_matrix_free(m->coef, m->rows);
    ib_free(m);
}

double **ib_model_coef(ib_model *m)
{
    return m == NULL ? NULL : m->coef;
}

size_t ib_model_rows(const ib_model *m)
{
    return m == NULL ? 0 : m->rows;
}

size_t ib_model_cols(const ib_model *m)
{
    return m == NULL ? 0 : m->cols;
}

int ib_model_predict(const ib_model *m, const double *x, double *y)
{
    size_t i, j;
    if (m == NULL || x == NULL || y == NULL)
        return IB_EINVAL;
    for (i = 0; i < m->rows; i++) {
        double s = 0.0;
        for (j = 0; j < m->cols; j++)
            s += m->coef[i][j] * x[j];
        y[i] = s;
    }
    return IB_OK;
}

/* --- 8. double*** tensor -------------------------------------------------------------------- */

double ***ib_tensor_new(size_t n0, size_t n1, size_t n2)
{
    double ***t;
    double **rows;
    double *data;
    size_t i, j;
    if (n0 == 0 || n1 == 0 || n2 == 0 || n0 > SIZE_MAX / n1 || n0 * n1 > SIZE_MAX / n2)
        return NULL;
    t = ib_calloc(n0, sizeof *t);
    if (t == NULL)
        return NULL;
    rows = ib_calloc(n0 * n1, sizeof *rows);
    if (rows == NULL) {
        ib_free(t);
        return NULL;
    }
    data = ib_calloc(n0 * n1 * n2, sizeof *data);
    if (data == NULL) {
        ib_free(rows);
        ib_free(t);
        return NULL;
    }
    for (i = 0; i < n0; i++) {
        t[i] = rows + i * n1;
        for (j = 0; j < n1; j++)
            t[i][j] = data + (i * n1 + j) * n2;
    }
    return t;
}

void ib_tensor_free(double ***t)
{
    if (t == NULL)
        return;
    if (t[0] != NULL)
        ib_free(t[0][0]); /* t[0][0] owns the whole data block */
    ib_free(t[0]);        /* t[0] owns all the row pointers */
    ib_free(t);
}

double ib_tensor_sum(const double *const *const *t, size_t n0, size_t n1, size_t n2)
{
    double s = 0.0;
    size_t i, j, k;
    for (i = 0; i < n0; i++)
        for (j = 0; j < n1; j++)
            for (k = 0; k < n2; k++)
                s += t[i][j][k];
    return s;
}

int ib_tensor_fill_index(double ***t, size_t n0, size_t n1, size_t n2)
{
    size_t i, j, k;
    if (n0 == 0 || n1 == 0 || n2 == 0)
        return IB_OK;
    if (t == NULL)
        return IB_EINVAL;
    /* Validate every pointer before writing, so that t is untouched on error. Nothing is
     * assumed about the layout: the rows need not be contiguous. */
    for (i = 0; i < n0; i++) {
        if (t[i] == NULL)
            return IB_EINVAL;
        for (j = 0; j < n1; j++)
            if (t[i][j] == NULL)
                return IB_EINVAL;
    }
    for (i = 0; i < n0; i++)
        for (j = 0; j < n1; j++)
            for (k = 0; k < n2; k++)
                t[i][j][k] = (double)i * 10000.0 + (double)j * 100.0 + (double)k;
    return IB_OK;
}

/* --- 9. stack of 8-bit frames --------------------------------------------------------------- */

unsigned char **ib_frames_new(size_t count, size_t height, size_t width)
{
    unsigned char **frames;
    unsigned char *data;
    size_t i, size;
    if (count == 0 || height == 0 || width == 0 || height > SIZE_MAX / width)
        return NULL;
    size = height * width;
    if (count > SIZE_MAX / size)
        return NULL;
    frames = ib_calloc(count, sizeof *frames);
    if (frames == NULL)
        return NULL;
    data = ib_calloc(count * size, sizeof *data);
    if (data == NULL) {
        ib_free(frames);
        return NULL;
    }
    for (i = 0; i < count; i++)
        frames[i] = data + i * size;
    return frames;
}

void ib_frames_free(unsigned char **frames)
{
    if (frames == NULL)
        return;
    ib_free(frames[0]); /* frames[0] owns the whole data block */
    ib_free(frames);
}

int ib_frames_mean(const unsigned char *const *frames, size_t count, size_t height,
                   size_t width, unsigned char *out)
{
    size_t i, p, size;
    if (count == 0)
        return IB_EINVAL;
    if (height == 0 || width == 0)
        return IB_OK;
    if (height > SIZE_MAX / width || frames == NULL || out == NULL)
        return IB_EINVAL;
    for (i = 0; i < count; i++)
        if (frames[i] == NULL)
            return IB_EINVAL;
    size = height * width;
    /* Pixel by pixel, all frames read before out[p] is written: out may alias a frame. */
    for (p = 0; p < size; p++) {
        /* The sum is kept as q * count + r with r < count, so it cannot overflow for any
         * count (a plain sum could: 255 * count). r + 255 fits since count is the length of
         * an array of pointers, far below SIZE_MAX - 255. */
        size_t q = 0, r = 0;
        for (i = 0; i < count; i++) {
            r += frames[i][p];
            if (r >= count) {
                q += r / count;
                r %= count;
            }
        }
        /* (q * count + r + count / 2) / count, with r + count / 2 < 2 * count */
        out[p] = (unsigned char)(q + (r + count / 2) / count);
    }
    return IB_OK;
}

int ib_frames_add(unsigned char **frames, size_t count, size_t height, size_t width, int delta)
{
    size_t i, p, size;
    if (count == 0 || height == 0 || width == 0)
        return IB_OK;
    if (height > SIZE_MAX / width || frames == NULL)
        return IB_EINVAL;
    for (i = 0; i < count; i++)
        if (frames[i] == NULL)
            return IB_EINVAL;
    size = height * width;
    /* Clamp delta first so that pixel + delta cannot overflow an int. */
    if (delta > 255)
        delta = 255;
    if (delta < -255)
        delta = -255;
    for (i = 0; i < count; i++) {
        for (p = 0; p < size; p++) {
            int v = frames[i][p] + delta;
            frames[i][p] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return IB_OK;
}
