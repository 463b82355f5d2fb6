# cython: language_level=3
"""Flow 4, NumPy in: a list of NumPy rows passed to C as a T**, zero-copy.

    rows = [np.arange(3.0), np.ones(3)]   # separate arrays: no common block needed
    scale_rows(rows, 2.0)                 # C writes straight into the arrays
    rows[0]                               # array([0., 2., 4.])

BufferCollection2D(rows) builds the table of row pointers and holds every row's buffer while
it lives; `with` releases them as soon as the C call is done. Any object with a contiguous
1-D buffer of the right format works as a row (array.array, bytearray for 'B', ...). The
element type must match exactly: float32 rows for a double** raise TypeError; copy with
np.asarray(row, dtype=np.float64) first if you need a conversion (and read results there).
"""
from indirect_buffer.buffer_impl cimport BufferCollection2D

from ib_examples cimport ib_matrix_decl as c


def live_allocations():
    """Live allocations of this module's copy of clib."""
    return c.ib_live_allocations()


def sum_rows(rows):
    """Sum of all elements of equal-length float64 rows (C reads them)."""
    cdef BufferCollection2D coll
    with BufferCollection2D(rows) as coll:
        return c.ib_matrix_sum(<const double* const*>coll.double_table(False),
                               coll.rows(), coll.cols())


def scale_rows(rows, double factor):
    """Multiply equal-length float64 rows by factor, in place (C writes into them)."""
    cdef BufferCollection2D coll
    with BufferCollection2D(rows) as coll:
        c.ib_matrix_scale(coll.double_table(True), coll.rows(), coll.cols(), factor)


def invert_image(rows):
    """Invert uint8 image rows in place: p = 255 - p."""
    cdef BufferCollection2D coll
    with BufferCollection2D(rows) as coll:
        if c.ib_image_invert(coll.uchar_table(True), coll.rows(), coll.cols()) != c.IB_OK:
            raise ValueError("ib_image_invert refused the image")


def confusion(const int[::1] truth, const int[::1] pred, counts):
    """Fill the k x k int32 rows `counts` with the confusion matrix of truth vs pred labels."""
    if truth.shape[0] != pred.shape[0]:
        raise ValueError(f"truth has {truth.shape[0]} labels, pred has {pred.shape[0]}")
    cdef BufferCollection2D coll
    cdef size_t n = truth.shape[0]
    with BufferCollection2D(counts) as coll:
        if coll.rows() != coll.cols():
            raise ValueError(f"counts must be square, got {coll.rows()}x{coll.cols()}")
        # An empty memoryview has no &x[0]: pass NULL for n == 0.
        if c.ib_confusion(&truth[0] if n else NULL, &pred[0] if n else NULL, n,
                          coll.int_table(True), coll.rows()) != c.IB_OK:
            raise ValueError(f"a label is outside [0, {coll.rows()})")
