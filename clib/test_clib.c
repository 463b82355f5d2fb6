/* Checks clib on its own (ib_matrix and ib_stream): `make -C clib check` builds this with
 * ASan/UBSan and runs it. */
#include "ib_matrix.h"
#include "ib_stream.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

static void test_matrix(void)
{
    long base = ib_live_allocations();
    double **m = ib_matrix_new(3, 4);
    CHECK(m != NULL);
    if (m == NULL)
        return;
    CHECK(ib_live_allocations() == base + 4); /* table + 3 rows */
    CHECK(m[2][3] == 0.0);
    ib_matrix_iota(m, 3, 4);
    CHECK(m[1][2] == 6.0);
    CHECK(ib_matrix_sum((const double *const *)m, 3, 4) == 66.0);
    ib_matrix_scale(m, 3, 4, 0.5);
    CHECK(m[2][3] == 5.5);
    CHECK(ib_matrix_sum((const double *const *)m, 3, 4) == 33.0);
    ib_matrix_free(m, 3);
    CHECK(ib_live_allocations() == base);
    ib_matrix_free(NULL, 3);
    CHECK(ib_matrix_new(0, 4) == NULL);
    CHECK(ib_matrix_new(4, 0) == NULL);
    CHECK(ib_live_allocations() == base);
}

static void test_block(void)
{
    long base = ib_live_allocations();
    double **a = ib_block_new(3, 2);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    CHECK(ib_live_allocations() == base + 2); /* table + one data block */
    CHECK(a[1] == a[0] + 2 && a[2] == a[0] + 4);
    ib_matrix_iota(a, 3, 2);
    CHECK(a[0][5] == 5.0); /* rows are back to back */
    ib_block_free(a);
    ib_block_free(NULL);
    CHECK(ib_live_allocations() == base);
    CHECK(ib_block_new((size_t)-1, 16) == NULL); /* size overflow */
    CHECK(ib_live_allocations() == base);
}

static void test_allocation_failures(void)
{
    long base = ib_live_allocations();
    long n;
    /* Fail at every possible point: whatever was allocated must be freed again. */
    for (n = 0; n < 4; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_matrix_new(3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    for (n = 0; n < 2; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_block_new(3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    for (n = 0; n < 5; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_model_new(3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    for (n = 0; n < 3; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_tensor_new(2, 3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    for (n = 0; n < 2; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_frames_new(3, 2, 2) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    ib_fail_allocations_after(-1);
    {
        double **m = ib_matrix_new(3, 4);
        CHECK(m != NULL);
        ib_matrix_free(m, 3);
    }
    {
        double ***t = ib_tensor_new(2, 3, 4);
        unsigned char **f = ib_frames_new(3, 2, 2);
        CHECK(t != NULL && f != NULL);
        ib_tensor_free(t);
        ib_frames_free(f);
    }
    CHECK(ib_live_allocations() == base);
}

static void test_image(void)
{
    unsigned char r0[3] = {0, 10, 255}, r1[3] = {1, 128, 254};
    unsigned char *img[2];
    img[0] = r0;
    img[1] = r1;
    CHECK(ib_image_invert(img, 2, 3) == IB_OK);
    CHECK(r0[0] == 255 && r0[1] == 245 && r0[2] == 0);
    CHECK(r1[0] == 254 && r1[1] == 127 && r1[2] == 1);
    img[1] = NULL;
    CHECK(ib_image_invert(img, 2, 3) == IB_EINVAL);
    CHECK(r0[0] == 255); /* untouched on error */
    CHECK(ib_image_invert(NULL, 2, 3) == IB_EINVAL);
    CHECK(ib_image_invert(NULL, 0, 0) == IB_OK);
}

static void test_image_rgb_to_gray(void)
{
    /* 2 x 2 pixels: black, white, pure red, a grey-green mix. */
    const unsigned char c0[6] = {0, 0, 0, 255, 255, 255}, c1[6] = {255, 0, 0, 10, 200, 30};
    const unsigned char *rgb[2];
    unsigned char g0[2] = {7, 7}, g1[2] = {7, 7};
    unsigned char *gray[2];
    rgb[0] = c0;
    rgb[1] = c1;
    gray[0] = g0;
    gray[1] = g1;
    CHECK(ib_image_rgb_to_gray(rgb, gray, 2, 2) == IB_OK);
    CHECK(g0[0] == 0 && g0[1] == 255);
    CHECK(g1[0] == (77 * 255 + 128) >> 8);                    /* 77 */
    CHECK(g1[1] == (77 * 10 + 150 * 200 + 29 * 30 + 128) >> 8); /* 124 */
    g0[0] = 7;
    gray[1] = NULL;
    CHECK(ib_image_rgb_to_gray(rgb, gray, 2, 2) == IB_EINVAL);
    CHECK(g0[0] == 7); /* untouched on error */
    gray[1] = g1;
    rgb[1] = NULL;
    CHECK(ib_image_rgb_to_gray(rgb, gray, 2, 2) == IB_EINVAL);
    CHECK(ib_image_rgb_to_gray(NULL, gray, 2, 2) == IB_EINVAL);
    CHECK(ib_image_rgb_to_gray(rgb, NULL, 2, 2) == IB_EINVAL);
    CHECK(ib_image_rgb_to_gray(NULL, NULL, 0, 5) == IB_OK);
    CHECK(g0[0] == 7);
}

static void test_confusion(void)
{
    const int truth[6] = {0, 1, 2, 2, 1, 0};
    const int pred[6] = {0, 2, 2, 2, 1, 1};
    int r0[3] = {9, 9, 9}, r1[3] = {9, 9, 9}, r2[3] = {9, 9, 9};
    int *counts[3];
    const int bad[1] = {3};
    counts[0] = r0;
    counts[1] = r1;
    counts[2] = r2;
    CHECK(ib_confusion(truth, pred, 6, counts, 3) == IB_OK);
    CHECK(r0[0] == 1 && r0[1] == 1 && r0[2] == 0);
    CHECK(r1[0] == 0 && r1[1] == 1 && r1[2] == 1);
    CHECK(r2[0] == 0 && r2[1] == 0 && r2[2] == 2);
    r0[0] = 7;
    CHECK(ib_confusion(bad, pred, 1, counts, 3) == IB_EINVAL);
    CHECK(ib_confusion(truth, bad, 1, counts, 3) == IB_EINVAL);
    CHECK(r0[0] == 7); /* untouched on error */
    CHECK(ib_confusion(truth, pred, 6, NULL, 3) == IB_EINVAL);
}

static void test_model(void)
{
    long base = ib_live_allocations();
    ib_model *m = ib_model_new(2, 3);
    double **coef;
    const double x[3] = {1.0, 2.0, 3.0};
    double y[2] = {0.0, 0.0};
    CHECK(m != NULL);
    if (m == NULL)
        return;
    CHECK(ib_live_allocations() == base + 4); /* handle + table + 2 rows */
    CHECK(ib_model_rows(m) == 2 && ib_model_cols(m) == 3);
    coef = ib_model_coef(m);
    CHECK(coef[0][0] == 1.0 && coef[1][1] == 1.0 && coef[0][1] == 0.0);
    CHECK(ib_model_predict(m, x, y) == IB_OK);
    CHECK(y[0] == 1.0 && y[1] == 2.0);
    coef[1][2] = 10.0; /* writes through the borrowed table reach the model */
    CHECK(ib_model_predict(m, x, y) == IB_OK);
    CHECK(y[1] == 32.0);
    CHECK(ib_model_predict(m, NULL, y) == IB_EINVAL);
    ib_model_free(m);
    ib_model_free(NULL);
    CHECK(ib_model_coef(NULL) == NULL);
    CHECK(ib_model_new(0, 1) == NULL);
    CHECK(ib_live_allocations() == base);
}

static void test_tensor(void)
{
    long base = ib_live_allocations();
    double ***t = ib_tensor_new(2, 3, 4);
    size_t i, j, k;
    int zeros = 1;
    CHECK(t != NULL);
    if (t == NULL)
        return;
    CHECK(ib_live_allocations() == base + 3); /* table + row pointers + one data block */
    CHECK(t[1] == t[0] + 3);                  /* row pointers back to back */
    for (i = 0; i < 2; i++)
        for (j = 0; j < 3; j++)
            CHECK(t[i][j] == t[0][0] + (i * 3 + j) * 4); /* data back to back */
    for (i = 0; i < 2; i++)
        for (j = 0; j < 3; j++)
            for (k = 0; k < 4; k++)
                if (t[i][j][k] != 0.0)
                    zeros = 0;
    CHECK(zeros);
    CHECK(ib_tensor_sum((const double *const *const *)t, 2, 3, 4) == 0.0);
    CHECK(ib_tensor_fill_index(t, 2, 3, 4) == IB_OK);
    CHECK(t[0][0][0] == 0.0);
    CHECK(t[1][2][3] == 10203.0);
    CHECK(t[0][1][2] == 102.0);
    CHECK(t[0][0][23] == 10203.0); /* (1 * 3 + 2) * 4 + 3: the last element */
    /* 10000 * 1 * 12 + 100 * (0 + 1 + 2) * 8 + (0 + 1 + 2 + 3) * 6 */
    CHECK(ib_tensor_sum((const double *const *const *)t, 2, 3, 4) == 122436.0);
    CHECK(ib_tensor_sum((const double *const *const *)t, 1, 3, 4) == 1218.0); /* sub-box */
    CHECK(ib_tensor_sum((const double *const *const *)t, 2, 3, 0) == 0.0);
    CHECK(ib_tensor_sum(NULL, 0, 3, 4) == 0.0);

    /* Zero dimensions: nothing to do, NULL is fine. */
    CHECK(ib_tensor_fill_index(NULL, 0, 3, 4) == IB_OK);
    CHECK(ib_tensor_fill_index(NULL, 2, 0, 4) == IB_OK);
    CHECK(ib_tensor_fill_index(NULL, 2, 3, 0) == IB_OK);
    CHECK(ib_tensor_fill_index(NULL, 2, 3, 4) == IB_EINVAL);

    /* A NULL inner pointer anywhere: IB_EINVAL and nothing written. */
    t[0][0][0] = -1.0;
    {
        double **saved_row = t[1];
        t[1] = NULL;
        CHECK(ib_tensor_fill_index(t, 2, 3, 4) == IB_EINVAL);
        t[1] = saved_row;
    }
    CHECK(t[0][0][0] == -1.0);
    {
        double *saved = t[1][2];
        t[1][2] = NULL; /* the very last t[i][j] */
        CHECK(ib_tensor_fill_index(t, 2, 3, 4) == IB_EINVAL);
        t[1][2] = saved;
    }
    CHECK(t[0][0][0] == -1.0);
    CHECK(ib_tensor_fill_index(t, 2, 3, 4) == IB_OK);
    CHECK(t[0][0][0] == 0.0);

    ib_tensor_free(t);
    ib_tensor_free(NULL);
    CHECK(ib_live_allocations() == base);

    CHECK(ib_tensor_new(0, 3, 4) == NULL);
    CHECK(ib_tensor_new(2, 0, 4) == NULL);
    CHECK(ib_tensor_new(2, 3, 0) == NULL);
    CHECK(ib_tensor_new((size_t)-1, 2, 1) == NULL);          /* n0 * n1 overflows */
    CHECK(ib_tensor_new(2, (size_t)-1 / 2, 3) == NULL);      /* n0 * n1 * n2 overflows */
    CHECK(ib_tensor_new(1, 1, (size_t)-1) == NULL);          /* bytes overflow (3rd alloc) */
    CHECK(ib_tensor_new((size_t)-1 / 4, 1, 1) == NULL);      /* bytes overflow (1st alloc) */
    CHECK(ib_live_allocations() == base);
}

static void test_tensor_foreign(void)
{
    /* A double *** not from ib_tensor_new: separate, non-contiguous rows on the stack. */
    double d00[2], d01[2], d02[2], d10[2], d11[2], d12[2];
    double *r0[3], *r1[3];
    double **t[2];
    r0[0] = d00;
    r0[1] = d01;
    r0[2] = d02;
    r1[0] = d10;
    r1[1] = d11;
    r1[2] = d12;
    t[0] = r0;
    t[1] = r1;
    d00[0] = 7.0;
    r1[1] = NULL;
    CHECK(ib_tensor_fill_index(t, 2, 3, 2) == IB_EINVAL);
    CHECK(d00[0] == 7.0); /* untouched on error */
    CHECK(ib_tensor_fill_index(t, 1, 3, 2) == IB_OK); /* only t[0] is looked at */
    CHECK(d00[0] == 0.0 && d02[1] == 201.0);
    r1[1] = d11;
    CHECK(ib_tensor_fill_index(t, 2, 3, 2) == IB_OK);
    CHECK(d10[0] == 10000.0 && d11[1] == 10101.0 && d12[1] == 10201.0);
    /* 10000 * 6 + 100 * (0 + 1 + 2) * 4 + (0 + 1) * 6 */
    CHECK(ib_tensor_sum((const double *const *const *)t, 2, 3, 2) == 61206.0);
}

static void test_frames(void)
{
    long base = ib_live_allocations();
    unsigned char **f = ib_frames_new(3, 2, 2);
    unsigned char out[4] = {9, 9, 9, 9};
    size_t i;
    int zeros = 1;
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(ib_live_allocations() == base + 2); /* table + one data block */
    CHECK(f[1] == f[0] + 4 && f[2] == f[0] + 8);
    for (i = 0; i < 12; i++)
        if (f[0][i] != 0)
            zeros = 0;
    CHECK(zeros);

    /* Pixel by pixel over the 3 frames: {0, 0, 1}, {0, 1, 1}, {255, 255, 255}, {10, 20, 31}. */
    f[2][0] = 1;
    f[1][1] = 1;
    f[2][1] = 1;
    f[0][2] = 255;
    f[1][2] = 255;
    f[2][2] = 255;
    f[0][3] = 10;
    f[1][3] = 20;
    f[2][3] = 31;
    CHECK(ib_frames_mean((const unsigned char *const *)f, 3, 2, 2, out) == IB_OK);
    CHECK(out[0] == 0);   /* (1 + 1) / 3 */
    CHECK(out[1] == 1);   /* (2 + 1) / 3 */
    CHECK(out[2] == 255); /* no overflow of the 8-bit result */
    CHECK(out[3] == 20);  /* (61 + 1) / 3 */
    CHECK(ib_frames_mean((const unsigned char *const *)f, 1, 2, 2, out) == IB_OK);
    CHECK(out[0] == 0 && out[2] == 255 && out[3] == 10); /* one frame: a copy */
    /* Frames 1 and 2, {0, 1, 255, 20} and {1, 1, 255, 31}: halves round up. */
    CHECK(ib_frames_mean((const unsigned char *const *)f + 1, 2, 2, 2, out) == IB_OK);
    CHECK(out[0] == 1 && out[1] == 1 && out[2] == 255 && out[3] == 26);

    /* Errors: nothing written. */
    out[0] = 9;
    CHECK(ib_frames_mean((const unsigned char *const *)f, 0, 2, 2, out) == IB_EINVAL);
    CHECK(ib_frames_mean((const unsigned char *const *)f, 0, 0, 0, out) == IB_EINVAL);
    CHECK(ib_frames_mean(NULL, 3, 2, 2, out) == IB_EINVAL);
    CHECK(ib_frames_mean((const unsigned char *const *)f, 3, 2, 2, NULL) == IB_EINVAL);
    CHECK(ib_frames_mean((const unsigned char *const *)f, 3, (size_t)-1, 2, out) == IB_EINVAL);
    {
        unsigned char *saved = f[2];
        f[2] = NULL;
        CHECK(ib_frames_mean((const unsigned char *const *)f, 3, 2, 2, out) == IB_EINVAL);
        CHECK(ib_frames_add(f, 3, 2, 2, 1) == IB_EINVAL);
        f[2] = saved;
    }
    CHECK(out[0] == 9);
    CHECK(f[0][0] == 0 && f[0][3] == 10); /* untouched on error */
    /* Empty frames: nothing to do, NULL is fine (as long as count > 0). */
    CHECK(ib_frames_mean(NULL, 3, 0, 2, NULL) == IB_OK);
    CHECK(ib_frames_mean(NULL, 3, 2, 0, NULL) == IB_OK);

    /* Saturating add. */
    CHECK(ib_frames_add(f, 3, 2, 2, 100) == IB_OK);
    CHECK(f[0][0] == 100 && f[0][2] == 255 && f[0][3] == 110 && f[2][3] == 131);
    CHECK(ib_frames_add(f, 3, 2, 2, -105) == IB_OK);
    CHECK(f[0][0] == 0 && f[0][2] == 150 && f[0][3] == 5 && f[2][3] == 26);
    CHECK(ib_frames_add(f, 3, 2, 2, 0) == IB_OK);
    CHECK(f[0][2] == 150 && f[2][3] == 26);
    CHECK(ib_frames_add(f, 1, 2, 2, INT_MAX) == IB_OK); /* first frame only, no int overflow */
    CHECK(f[0][0] == 255 && f[0][3] == 255 && f[1][3] == 15);
    CHECK(ib_frames_add(f, 3, 2, 2, INT_MIN) == IB_OK);
    zeros = 1;
    for (i = 0; i < 12; i++)
        if (f[0][i] != 0)
            zeros = 0;
    CHECK(zeros);
    CHECK(ib_frames_add(NULL, 0, 2, 2, 1) == IB_OK); /* count 0: nothing to do */
    CHECK(ib_frames_add(NULL, 3, 0, 2, 1) == IB_OK);
    CHECK(ib_frames_add(NULL, 3, 2, 2, 1) == IB_EINVAL);
    CHECK(ib_frames_add(f, 3, (size_t)-1, 2, 1) == IB_EINVAL);

    ib_frames_free(f);
    ib_frames_free(NULL);
    CHECK(ib_live_allocations() == base);

    CHECK(ib_frames_new(0, 2, 2) == NULL);
    CHECK(ib_frames_new(3, 0, 2) == NULL);
    CHECK(ib_frames_new(3, 2, 0) == NULL);
    CHECK(ib_frames_new(1, (size_t)-1, 2) == NULL);     /* height * width overflows */
    CHECK(ib_frames_new(3, (size_t)-1 / 2, 1) == NULL); /* count * height * width overflows */
    CHECK(ib_frames_new((size_t)-1, 1, 1) == NULL);     /* the table's bytes overflow */
    CHECK(ib_live_allocations() == base);
}

static void test_frames_foreign(void)
{
    /* Frames not from ib_frames_new, each a separate 1 x 3 array; out aliases a frame. */
    unsigned char a[3] = {0, 100, 250}, b[3] = {3, 101, 255}, c[3] = {4, 0, 255};
    unsigned char *frames[3];
    frames[0] = a;
    frames[1] = b;
    frames[2] = c;
    CHECK(ib_frames_mean((const unsigned char *const *)frames, 3, 1, 3, a) == IB_OK);
    CHECK(a[0] == 2 && a[1] == 67 && a[2] == 253); /* (7 + 1) / 3, (201 + 1) / 3, (760 + 1) / 3 */
    CHECK(b[0] == 3 && c[2] == 255);               /* the other frames only read */
    CHECK(ib_frames_add(frames + 1, 2, 3, 1, 1) == IB_OK); /* 3 x 1 works as well as 1 x 3 */
    CHECK(b[0] == 4 && b[2] == 255 && c[1] == 1 && a[0] == 2);
}

/* --- ib_stream: the decoder's callback and the encoder's buffer ----------------------------- */

struct decode_log {
    long base;                        /* live allocations before ib_decode */
    int blocks;                       /* callbacks seen */
    int stop_at, stop_with;           /* return stop_with from block stop_at (-1: never) */
    int bad_values, bad_shape, bad_live, moved;
    const int32_t *const *first_table; /* the scratch table of block 0 */
    const int32_t *first_row0;
};

static int on_block(const int32_t *const *channels, int nchannels, int nsamples, void *ctx)
{
    struct decode_log *log = ctx;
    int k = log->blocks++, c, s;
    if (nchannels != 3 || nsamples != 5)
        log->bad_shape++;
    if (ib_live_allocations() != log->base + nchannels + 1) /* table + one per channel */
        log->bad_live++;
    for (c = 0; c < nchannels; c++)
        for (s = 0; s < nsamples; s++)
            if (channels[c][s] != k * 1000 + c * 100 + s)
                log->bad_values++;
    if (k == 0) {
        log->first_table = channels;
        log->first_row0 = channels[0];
    } else if (channels != log->first_table || channels[0] != log->first_row0) {
        log->moved++; /* the scratch buffer is reused, not reallocated */
    } else if (log->first_row0[4] != k * 1000 + 4) {
        log->bad_values++; /* block 0's pointer now reads this block: overwritten */
    }
    return k == log->stop_at ? log->stop_with : 0;
}

static void test_decode(void)
{
    struct decode_log log;
    long base = ib_live_allocations();
    int n;
    memset(&log, 0, sizeof log);
    log.base = base;
    log.stop_at = -1;
    CHECK(ib_decode(3, 4, 5, on_block, &log) == IB_OK);
    CHECK(log.blocks == 4 && log.bad_values == 0 && log.bad_shape == 0);
    CHECK(log.bad_live == 0 && log.moved == 0);
    CHECK(ib_live_allocations() == base); /* scratch freed */

    /* A nonzero return stops decoding and is what ib_decode returns. */
    memset(&log, 0, sizeof log);
    log.base = base;
    log.stop_at = 1;
    log.stop_with = 42;
    CHECK(ib_decode(3, 10, 5, on_block, &log) == 42);
    CHECK(log.blocks == 2 && log.bad_values == 0 && ib_live_allocations() == base);
    memset(&log, 0, sizeof log);
    log.base = base;
    log.stop_at = 0;
    log.stop_with = -7;
    CHECK(ib_decode(3, 10, 5, on_block, &log) == -7 && log.blocks == 1);

    /* Refused before any callback. */
    memset(&log, 0, sizeof log);
    log.stop_at = -1;
    CHECK(ib_decode(3, 1, 5, NULL, &log) == IB_EINVAL);
    CHECK(ib_decode(0, 1, 5, on_block, &log) == IB_EINVAL);
    CHECK(ib_decode(3, 1, 0, on_block, &log) == IB_EINVAL);
    CHECK(ib_decode(3, -1, 5, on_block, &log) == IB_EINVAL);
    CHECK(ib_decode(3, INT_MAX, 5, on_block, &log) == IB_EINVAL); /* values overflow int32 */
    CHECK(ib_decode(3, 0, 5, on_block, &log) == IB_OK);           /* nothing to decode */
    CHECK(log.blocks == 0 && ib_live_allocations() == base);

    /* Allocation failures: IB_ENOMEM, no callback, nothing left allocated. */
    for (n = 0; n < 4; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_decode(3, 2, 5, on_block, &log) == IB_ENOMEM);
        CHECK(log.blocks == 0 && ib_live_allocations() == base);
    }
    ib_fail_allocations_after(-1);
}

static void test_encoder(void)
{
    long base = ib_live_allocations();
    ib_encoder *enc = ib_encoder_new(2);
    float **buf;
    int n;
    CHECK(enc != NULL);
    if (enc == NULL)
        return;
    CHECK(ib_live_allocations() == base + 2); /* handle + sums */
    buf = ib_encoder_buffer(enc, 3);
    CHECK(buf != NULL && ib_live_allocations() == base + 4); /* + table + data block */
    if (buf == NULL)
        return;
    CHECK(buf[0][2] == 0.0f && buf[1] == buf[0] + 3);
    buf[0][0] = 1.0f, buf[0][1] = 2.0f, buf[0][2] = 3.0f;
    buf[1][0] = 0.5f, buf[1][1] = 0.25f, buf[1][2] = -1.0f;
    CHECK(ib_encoder_wrote(enc, 4) == IB_EINVAL); /* more than the buffer holds */
    CHECK(ib_encoder_wrote(enc, -1) == IB_EINVAL);
    CHECK(buf[0][2] == 3.0f); /* still valid after a refused call */
    CHECK(ib_encoder_wrote(enc, 3) == IB_OK);
    CHECK(ib_live_allocations() == base + 2); /* the buffer is gone */
    CHECK(ib_encoder_sum(enc, 0) == 6.0 && ib_encoder_sum(enc, 1) == -0.25);
    CHECK(ib_encoder_samples(enc) == 3);

    /* Only the first n samples count. */
    buf = ib_encoder_buffer(enc, 4);
    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    buf[0][0] = 10.0f, buf[0][3] = 1000.0f;
    buf[1][1] = 20.0f, buf[1][2] = 2000.0f;
    CHECK(ib_encoder_wrote(enc, 2) == IB_OK);
    CHECK(ib_encoder_sum(enc, 0) == 16.0 && ib_encoder_sum(enc, 1) == 19.75);
    CHECK(ib_encoder_samples(enc) == 5);

    /* No buffer outstanding: only n == 0 is fine. */
    CHECK(ib_encoder_wrote(enc, 1) == IB_EINVAL);
    CHECK(ib_encoder_wrote(enc, 0) == IB_OK);

    /* A second buffer() discards the first; a refused buffer() too. */
    CHECK(ib_encoder_buffer(enc, 2) != NULL && ib_encoder_buffer(enc, 5) != NULL);
    CHECK(ib_live_allocations() == base + 4);
    CHECK(ib_encoder_buffer(enc, 0) == NULL && ib_live_allocations() == base + 2);
    CHECK(ib_encoder_wrote(enc, 0) == IB_OK && ib_live_allocations() == base + 2);
    CHECK(ib_encoder_sum(enc, 0) == 16.0 && ib_encoder_samples(enc) == 5); /* nothing consumed */

    CHECK(ib_encoder_sum(enc, 2) == 0.0 && ib_encoder_sum(enc, -1) == 0.0);
    CHECK(ib_encoder_sum(NULL, 0) == 0.0 && ib_encoder_samples(NULL) == 0);
    CHECK(ib_encoder_buffer(NULL, 3) == NULL && ib_encoder_wrote(NULL, 0) == IB_EINVAL);

    /* Freed with a buffer outstanding: everything goes. */
    CHECK(ib_encoder_buffer(enc, 3) != NULL);
    ib_encoder_free(enc);
    ib_encoder_free(NULL);
    CHECK(ib_live_allocations() == base);
    CHECK(ib_encoder_new(0) == NULL && ib_live_allocations() == base);

    /* Allocation failures. */
    for (n = 0; n < 2; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_encoder_new(2) == NULL && ib_live_allocations() == base);
    }
    ib_fail_allocations_after(-1);
    enc = ib_encoder_new(2);
    CHECK(enc != NULL);
    for (n = 0; n < 2; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_encoder_buffer(enc, 3) == NULL && ib_live_allocations() == base + 2);
    }
    ib_fail_allocations_after(-1);
    ib_encoder_free(enc);
    CHECK(ib_live_allocations() == base);
}

int main(void)
{
    test_matrix();
    test_block();
    test_allocation_failures();
    test_image();
    test_image_rgb_to_gray();
    test_confusion();
    test_model();
    test_tensor();
    test_tensor_foreign();
    test_frames();
    test_frames_foreign();
    test_decode();
    test_encoder();
    CHECK(ib_live_allocations() == 0);
    if (failures) {
        fprintf(stderr, "test_clib: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_clib: all checks passed\n");
    return 0;
}
