# cython: language_level=3
# The C API of clib (ib_matrix.h and ib_stream.h), for cimport by the flow modules:
#     from ib_examples cimport ib_matrix_decl as c
# Declarations only. This file is named unlike every .pyx on purpose: a foo.pxd next to foo.pyx
# is taken as foo.pyx's own declaration file, not as a separate cimportable module.
# See ib_matrix.h and ib_stream.h for each function's contract (ownership, NULL and status codes).
from libc.stdint cimport int32_t


cdef extern from "ib_matrix.h" nogil:
    int IB_OK
    int IB_EINVAL

    # 1. row-by-row matrix: rows + 1 allocations, freed by ib_matrix_free
    double** ib_matrix_new(size_t rows, size_t cols)
    void ib_matrix_free(double** m, size_t rows)

    # 2. single-block matrix: a[0] owns all data, freed by ib_block_free
    double** ib_block_new(size_t rows, size_t cols)
    void ib_block_free(double** a)

    # 3. and 4. reading / writing the caller's rows
    double ib_matrix_sum(const double* const* m, size_t rows, size_t cols)
    void ib_matrix_scale(double** m, size_t rows, size_t cols, double factor)
    void ib_matrix_iota(double** m, size_t rows, size_t cols)
    int ib_image_invert(unsigned char** rows, size_t height, size_t width)
    int ib_image_rgb_to_gray(const unsigned char* const* rgb, unsigned char** gray,
                             size_t height, size_t width)

    # 5. int**
    int ib_confusion(const int* truth, const int* pred, size_t n, int** counts, size_t k)

    # 6. a handle that owns a table
    ctypedef struct ib_model:
        pass
    ib_model* ib_model_new(size_t rows, size_t cols)
    void ib_model_free(ib_model* m)
    double** ib_model_coef(ib_model* m)
    size_t ib_model_rows(const ib_model* m)
    size_t ib_model_cols(const ib_model* m)
    int ib_model_predict(const ib_model* m, const double* x, double* y)

    # 7. allocation accounting and fault injection
    long ib_live_allocations()
    void ib_fail_allocations_after(long n)

    # 8. a double*** tensor, one allocation per level, freed by ib_tensor_free
    double*** ib_tensor_new(size_t n0, size_t n1, size_t n2)
    void ib_tensor_free(double*** t)
    double ib_tensor_sum(const double* const* const* t, size_t n0, size_t n1, size_t n2)
    int ib_tensor_fill_index(double*** t, size_t n0, size_t n1, size_t n2)

    # 9. frames: unsigned char** where each pointer is a height x width block
    unsigned char** ib_frames_new(size_t count, size_t height, size_t width)
    void ib_frames_free(unsigned char** frames)
    int ib_frames_mean(const unsigned char* const* frames, size_t count, size_t height,
                       size_t width, unsigned char* out)
    int ib_frames_add(unsigned char** frames, size_t count, size_t height, size_t width,
                      int delta)


cdef extern from "ib_stream.h" nogil:
    int IB_ENOMEM
    int IB_SCRIBBLE

    # 10. a decoder lending each block to a callback, valid only during the call
    ctypedef int (*ib_block_cb)(const int32_t* const* channels, int nchannels, int nsamples,
                                void* ctx) noexcept
    int ib_decode(int nchannels, int nblocks, int nsamples, ib_block_cb cb, void* ctx)

    # 11. an encoder whose buffer is valid until the next wrote()/buffer()/free()
    ctypedef struct ib_encoder:
        pass
    ib_encoder* ib_encoder_new(int nchannels)
    float** ib_encoder_buffer(ib_encoder* enc, int n)
    int ib_encoder_wrote(ib_encoder* enc, int n)
    double ib_encoder_sum(const ib_encoder* enc, int channel)
    long ib_encoder_samples(const ib_encoder* enc)
    void ib_encoder_free(ib_encoder* enc)
