# cython: language_level=3
"""Ready-made memory nannies: keep a C-allocated T** alive and free it exactly once.

Pass one to ``IndirectMemory2D.from_ptr_with_memory_nanny``; it is freed when the wrapper and
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
