# cython: language_level=3
"""Flow 3, nanny-managed: C allocates a matrix, Python owns it, the C library frees it.

    m = matrix_new(3, 4)              # ib_matrix_new: 1 table + 3 rows = 4 live allocations
    v = memoryview(m); v[2, 3] = 1.5
    del m                             # still 4: v keeps the wrapper and its nanny alive
    v.release()                       # ib_matrix_free(table, 3) runs here, exactly once: 0

A DeallocatorNanny holds the table and calls an adapter around the library's own free
function from its __dealloc__, i.e. after the wrapper and every exported view are gone.
"""
from indirect_buffer.buffer_impl cimport IndirectMemory2D
from indirect_buffer.nannies cimport DeallocatorNanny, table_dealloc_fn

from ib_examples cimport ib_matrix_decl as c


def live_allocations():
    """Live allocations of this module's copy of clib."""
    return c.ib_live_allocations()


def fail_allocations_after(long n):
    """Test hook: the next n clib allocations succeed, later ones fail (n < 0: never fail)."""
    c.ib_fail_allocations_after(n)


# Adapters with the nannies' table_dealloc_fn signature around the library's free functions.
# They run from the nanny's __dealloc__: noexcept nogil, no Python objects.
cdef void _free_rows(void** table, Py_ssize_t rows) noexcept nogil:
    c.ib_matrix_free(<double**>table, <size_t>rows)


cdef void _free_block(void** table, Py_ssize_t rows) noexcept nogil:
    c.ib_block_free(<double**>table)  # a[0] owns all rows: rows is not needed


cdef IndirectMemory2D _adopt(double** table, Py_ssize_t rows, Py_ssize_t cols,
                             table_dealloc_fn dealloc):
    # Hand a fresh C table to a nanny before anything else can raise: from here on every
    # error path (including one in from_ptr_with_memory_nanny) frees it, exactly once.
    if table == NULL:
        raise MemoryError(f"clib could not allocate a {rows}x{cols} matrix")
    try:
        nanny = DeallocatorNanny.create(table, rows, dealloc)
    except BaseException:
        dealloc(<void**>table, rows)  # no nanny yet: free it ourselves
        raise
    return IndirectMemory2D.from_ptr_with_memory_nanny(table, rows, cols, "d", False, nanny)


cdef int _check_shape(Py_ssize_t rows, Py_ssize_t cols) except -1:
    # clib returns NULL for a zero dimension too: reject it first, so NULL means MemoryError.
    if rows <= 0 or cols <= 0:
        raise ValueError(f"matrix shape must be positive, got ({rows}, {cols})")
    return 0


def matrix_new(Py_ssize_t rows, Py_ssize_t cols):
    """A zeroed rows x cols matrix from ib_matrix_new (rows + 1 allocations)."""
    _check_shape(rows, cols)
    return _adopt(c.ib_matrix_new(rows, cols), rows, cols, _free_rows)


def block_new(Py_ssize_t rows, Py_ssize_t cols):
    """A zeroed rows x cols single-block matrix from ib_block_new (2 allocations)."""
    _check_shape(rows, cols)
    return _adopt(c.ib_block_new(rows, cols), rows, cols, _free_block)


def matrix_from_rows(data):
    """A C-allocated matrix filled from a sequence of equal-length rows of numbers.

    Raises (and frees the half-filled matrix) on a ragged row or a non-number.
    """
    data = [list(row) for row in data]
    cdef Py_ssize_t rows = len(data), cols = len(data[0]) if data else 0
    _check_shape(rows, cols)
    mem = _adopt(c.ib_matrix_new(rows, cols), rows, cols, _free_rows)
    cdef double** t = (<IndirectMemory2D>mem).double_table(True)
    cdef Py_ssize_t i, j
    for i in range(rows):
        if len(data[i]) != cols:
            raise ValueError(f"row {i} has {len(data[i])} elements, expected {cols}")
        for j in range(cols):
            t[i][j] = data[i][j]  # TypeError for a non-number: mem (and the table) are freed
    return mem
