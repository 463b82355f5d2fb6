# cython: language_level=3
"""Ready-made memory nannies: keep a C-allocated T** (or T***...) alive and free it exactly once.

Pass one to ``IndirectMemory2D.from_ptr_with_memory_nanny`` (or ``IndirectMemory.from_ptr_nd``
and the Python constructors' ``memory_nanny``); it is freed when the wrapper and
every exported view are gone. A ``create`` that raises has not taken ownership: the caller
still owns (and must free) the table.
"""

# A C deallocator for a whole table, e.g. a thin adapter around a library's matrix_free.
ctypedef void (*table_dealloc_fn)(void** table, Py_ssize_t rows) noexcept nogil


cdef class FreeRowsAndTableNanny:
    """Frees every non-NULL table[i] (i < rows) and then the table, with libc free."""
    cdef void** table
    cdef Py_ssize_t rows

    @staticmethod
    cdef FreeRowsAndTableNanny create(void* table, Py_ssize_t rows)


cdef class FreeTableNanny:
    """Frees only the table with libc free (the rows belong to something else)."""
    cdef void** table

    @staticmethod
    cdef FreeTableNanny create(void* table)


cdef class DeallocatorNanny:
    """Calls dealloc(table, rows) once, e.g. a library's own matrix_free."""
    cdef void** table
    cdef Py_ssize_t rows
    cdef table_dealloc_fn dealloc

    @staticmethod
    cdef DeallocatorNanny create(void* table, Py_ssize_t rows, table_dealloc_fn dealloc)


cdef enum:
    # The most pointer levels a nanny frees (IndirectMemory has at most 8 dimensions).
    NANNY_MAX_LEVELS = 7


cdef class FreeLevelsNanny:
    """Frees a structure allocated one block per level with libc free: the data block, then
    each table, then the root (Numerical-Recipes f3tensor style: root, root[0], root[0][0]...
    as they are when the nanny is made)."""
    cdef void* blocks[NANNY_MAX_LEVELS + 1]
    cdef int count

    @staticmethod
    cdef FreeLevelsNanny create(void* root, int levels)


cdef class FreeTreeNanny:
    """Frees a structure allocated one block per table and per row with libc free: every
    non-NULL pointer of every level, depth first, then the root. counts[k] is the number of
    entries of each table at level k (for a T***: counts = {n0, n1})."""
    cdef void** root
    cdef int levels
    cdef Py_ssize_t counts[NANNY_MAX_LEVELS]

    @staticmethod
    cdef FreeTreeNanny create(void* root, int levels, const Py_ssize_t* counts)
