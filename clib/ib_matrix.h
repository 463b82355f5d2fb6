/*
 * ib_matrix: a small C99 sample library with the kinds of T** (table of row pointers) APIs that
 * real C libraries have. It exists to exercise indirect_buffer's memory flows (see examples/).
 *
 * Layout of every matrix here: m[i] points at row i, m[i][j] is element (i, j).
 *
 * Error reporting, C style:
 *   - constructors return NULL if a dimension is 0 (check it first to tell the cases apart),
 *     if a size overflows, or if an allocation fails. Anything allocated before the failure is
 *     freed again.
 *   - functions returning int return IB_OK (0) or a negative IB_E* status code and leave their
 *     outputs untouched on error.
 *   - free functions accept NULL (and do nothing).
 *
 * Every allocation goes through one counter, ib_live_allocations(), so that a caller (or a
 * test) can prove that everything the library allocated was freed exactly once. The library
 * keeps no other global state; it is not thread-safe for concurrent allocation and free (the
 * counter is a plain long).
 *
 * ib_stream.h (ib_stream.c, built together with this file) adds the APIs that lend memory for
 * a limited time: a decoder that calls back with a block, an encoder buffer valid until the
 * next call.
 */
#ifndef IB_MATRIX_H
#define IB_MATRIX_H

#include <stddef.h>

/* Keep the symbols visible even when a build uses -fvisibility=hidden: the ctypes flow looks
 * them up with dlsym. */
#if defined(__GNUC__)
#define IB_API __attribute__((visibility("default")))
#else
#define IB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes returned by the int functions. */
#define IB_OK 0
#define IB_EINVAL (-1) /* NULL argument, NULL row, or a value out of range */
#define IB_ENOMEM (-2) /* an allocation failed (ib_stream.h) */

/* --- 1. Library-allocated matrix, freed by the library (Numerical-Recipes style) ----------- */

/* A rows x cols matrix of zeros: one table of row pointers plus one allocation per row
 * (rows + 1 allocations). NULL if rows or cols is 0 or on allocation failure.
 * Free it with ib_matrix_free(m, rows), never with free(). */
IB_API double **ib_matrix_new(size_t rows, size_t cols);

/* Frees every row and the table of a matrix from ib_matrix_new. NULL is allowed. */
IB_API void ib_matrix_free(double **m, size_t rows);

/* --- 2. Single-block matrix with its own destructor --------------------------------------- */

/* A rows x cols matrix of zeros whose rows lie back to back in one data block: a[0] owns all
 * the data and a[i] == a[0] + i * cols. Two allocations. NULL as for ib_matrix_new.
 * Free it with ib_block_free(a); freeing a[i] for i > 0 would be a bug. */
IB_API double **ib_block_new(size_t rows, size_t cols);

/* Frees a block matrix from ib_block_new (the data block a[0], then the table). NULL is
 * allowed. */
IB_API void ib_block_free(double **a);

/* --- 3. Read-only input --------------------------------------------------------------------- */

/* Sum of all elements. Reads m[0..rows)[0..cols) and never writes.
 * Note: C does not convert double ** to const double *const * implicitly; callers cast. */
IB_API double ib_matrix_sum(const double *const *m, size_t rows, size_t cols);

/* --- 4. In-place writes into the caller's rows ---------------------------------------------- */

/* m[i][j] *= factor for every element. */
IB_API void ib_matrix_scale(double **m, size_t rows, size_t cols, double factor);

/* m[i][j] = i * cols + j (row-major position), handy to recognise data. */
IB_API void ib_matrix_iota(double **m, size_t rows, size_t cols);

/* Photographic negative of an 8-bit image given as a table of rows: p = 255 - p.
 * IB_EINVAL (nothing written) if rows or any row is NULL while width > 0. */
IB_API int ib_image_invert(unsigned char **rows, size_t height, size_t width);

/* Luma of an 8-bit RGB image (libpng / libjpeg style: rgb[i] is row i, 3 bytes per pixel,
 * R G B): gray[i][j] = (77 R + 150 G + 29 B + 128) >> 8, for width pixels per row. Reads rgb,
 * writes only gray. IB_EINVAL (nothing written) if a table or any row is NULL while
 * height and width > 0. */
IB_API int ib_image_rgb_to_gray(const unsigned char *const *rgb, unsigned char **gray,
                                size_t height, size_t width);

/* --- 5. An int** API ------------------------------------------------------------------------ */

/* Confusion matrix of n labelled samples: counts[t][p] = number of i with truth[i] == t and
 * pred[i] == p, for k classes (counts is k x k and is overwritten, not accumulated).
 * IB_EINVAL (counts untouched) if a label is outside [0, k) or a pointer is NULL. */
IB_API int ib_confusion(const int *truth, const int *pred, size_t n, int **counts, size_t k);

/* --- 6. A table borrowed from a handle ------------------------------------------------------ */

/* An opaque model owning a rows x cols coefficient matrix (initially the identity pattern:
 * 1 where i == j, else 0). */
typedef struct ib_model ib_model;

/* NULL if rows or cols is 0 or on allocation failure. Free with ib_model_free. */
IB_API ib_model *ib_model_new(size_t rows, size_t cols);

/* Frees the model and its coefficient table. NULL is allowed. */
IB_API void ib_model_free(ib_model *m);

/* The model's coefficient table (rows x cols, writable). Borrowed: it belongs to the model and
 * is valid only until ib_model_free(m). NULL if m is NULL. */
IB_API double **ib_model_coef(ib_model *m);

IB_API size_t ib_model_rows(const ib_model *m);
IB_API size_t ib_model_cols(const ib_model *m);

/* y = coef . x, with x of length cols and y of length rows. IB_EINVAL if a pointer is NULL. */
IB_API int ib_model_predict(const ib_model *m, const double *x, double *y);

/* --- 7. Allocation accounting --------------------------------------------------------------- */

/* Number of allocations made by this library and not yet freed (+1 per malloc/calloc, -1 per
 * free). Note: every copy of the library (each program or extension module it is linked
 * into) has its own counter. */
IB_API long ib_live_allocations(void);

/* Fault injection for tests: the next n allocations succeed, every later one fails, until
 * the next call. n < 0 (the default) never fails. */
IB_API void ib_fail_allocations_after(long n);

/* --- 8. A double*** tensor (Numerical Recipes f3tensor style, 0-based) ---------------------- */

/* An n0 x n1 x n2 tensor of zeros: t[i][j][k] is element (i, j, k). One allocation per pointer
 * level, never one per row (three allocations): the table t of n0 pointers, the block t[0] of
 * n0 * n1 row pointers (t[i] == t[0] + i * n1) and the data block t[0][0] of n0 * n1 * n2
 * doubles (t[i][j] == t[0][0] + (i * n1 + j) * n2). NULL if a dimension is 0, if a size
 * overflows or on allocation failure. Free it with ib_tensor_free(t), never with free(). */
IB_API double ***ib_tensor_new(size_t n0, size_t n1, size_t n2);

/* Frees a tensor from ib_tensor_new (the data block t[0][0], the row pointers t[0], then the
 * table). NULL is allowed. */
IB_API void ib_tensor_free(double ***t);

/* Sum of all elements. Reads t[0..n0)[0..n1)[0..n2) and never writes.
 * Note: C does not convert double *** to const double *const *const * implicitly; callers
 * cast. */
IB_API double ib_tensor_sum(const double *const *const *t, size_t n0, size_t n1, size_t n2);

/* t[i][j][k] = i * 10000 + j * 100 + k, handy to recognise data. Works on any double ***
 * (however it was allocated, contiguous or not), not only on one from ib_tensor_new.
 * IB_EINVAL (nothing written) if t, any t[i] or any t[i][j] is NULL while n0, n1 and n2
 * are all > 0. */
IB_API int ib_tensor_fill_index(double ***t, size_t n0, size_t n1, size_t n2);

/* --- 9. A stack of 8-bit frames (video frames, image stacks) -------------------------------- */

/* Layout: frames[i] points at frame i, one contiguous height x width block of 8-bit pixels;
 * pixel (y, x) of frame i is frames[i][y * width + x]. */

/* count frames of zeros in two allocations: the table and one data block (frames[0] owns all
 * the data and frames[i] == frames[0] + i * height * width). NULL if a dimension is 0, if a
 * size overflows or on allocation failure. Free it with ib_frames_free(frames); freeing
 * frames[i] for i > 0 would be a bug. */
IB_API unsigned char **ib_frames_new(size_t count, size_t height, size_t width);

/* Frees a stack from ib_frames_new (the data block frames[0], then the table). NULL is
 * allowed. */
IB_API void ib_frames_free(unsigned char **frames);

/* Per-pixel mean of count frames, rounded half up: out[y * width + x] =
 * (sum of frames[i][y * width + x] + count / 2) / count. Reads frames, writes only out (out
 * has height * width bytes; it may be one of the frames). IB_EINVAL (nothing written) if
 * count is 0, or if frames, out or any frame is NULL while height * width > 0, or if
 * height * width overflows.
 * Note: C does not convert unsigned char ** to const unsigned char *const * implicitly;
 * callers cast. */
IB_API int ib_frames_mean(const unsigned char *const *frames, size_t count, size_t height,
                          size_t width, unsigned char *out);

/* Adds delta to every pixel of every frame, saturating to [0, 255] (any int delta). IB_EINVAL
 * (nothing written) if frames or any frame is NULL while count and height * width are > 0,
 * or if height * width overflows. count 0 is fine: nothing to do. */
IB_API int ib_frames_add(unsigned char **frames, size_t count, size_t height, size_t width,
                         int delta);

#ifdef __cplusplus
}
#endif

#endif /* IB_MATRIX_H */
