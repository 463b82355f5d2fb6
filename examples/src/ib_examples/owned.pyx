# cython: language_level=3
"""Flow 1, owned: Python allocates the T** memory, C reads and writes it in place.

    mem = new_matrix(2, 3)            # or IndirectMemory2D.create_memory(2, 3, "d") in Python
    matrix_iota(mem); matrix_scale(mem, 2.0); matrix_sum(mem)  ->  30.0

The memory belongs to `mem` (one data block + one row table, allocated by indirect_buffer, not
by clib): clib's allocation counter does not move.
"""
from indirect_buffer.buffer_impl cimport IndirectMemory2D

from ib_examples cimport ib_matrix_decl as c


def live_allocations():
    """Live allocations of this module's copy of clib."""
    return c.ib_live_allocations()


def new_matrix(Py_ssize_t rows, Py_ssize_t cols):
    """A zeroed rows x cols double matrix owned by Python (freed with the last view)."""
    return IndirectMemory2D.create(rows, cols, "d", False)


def matrix_sum(IndirectMemory2D mem not None):
    """Sum of all elements (C reads the rows)."""
    # double_table() checks the element format ('d'), read-only-ness, that mem is not released
    # and that table[i] points at row i itself (no row offset, as a 0-based C API expects).
    # C does not convert double** to const double* const* implicitly: cast.
    return c.ib_matrix_sum(<const double* const*>mem.double_table(False), mem.rows(),
                           mem.cols())


def matrix_scale(IndirectMemory2D mem not None, double factor):
    """Multiply every element by factor, in place (C writes the rows), without the GIL."""
    cdef double** t = mem.double_table(True)
    cdef size_t rows = mem.rows(), cols = mem.cols()
    # pin(): while C runs without the GIL, another thread could call mem.release(); pinned
    # memory refuses that (BufferError) until unpin().
    mem.pin()
    try:
        with nogil:
            c.ib_matrix_scale(t, rows, cols, factor)
    finally:
        mem.unpin()


def matrix_iota(IndirectMemory2D mem not None):
    """Fill element (i, j) with i * cols + j, in place."""
    c.ib_matrix_iota(mem.double_table(True), mem.rows(), mem.cols())
