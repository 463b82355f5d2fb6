# cython: language_level=3
"""Ready-made memory nannies for C-allocated pointer tables (see nannies.pxd)."""

from libc.stdlib cimport free


cdef class FreeRowsAndTableNanny:
    """Frees every non-NULL row (i < rows) and then the table, with libc free."""

    @staticmethod
    cdef FreeRowsAndTableNanny create(void* table, Py_ssize_t rows):
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        cdef FreeRowsAndTableNanny self = FreeRowsAndTableNanny.__new__(FreeRowsAndTableNanny)
        self.table = <void**>table
        self.rows = rows
        return self

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.table != NULL:
            for i in range(self.rows):
                free(self.table[i])
            free(self.table)
            self.table = NULL

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a memory nanny: it owns a raw pointer")


cdef class FreeTableNanny:
    """Frees only the table with libc free; the rows belong to something else."""

    @staticmethod
    cdef FreeTableNanny create(void* table):
        cdef FreeTableNanny self = FreeTableNanny.__new__(FreeTableNanny)
        self.table = <void**>table
        return self

    def __dealloc__(self):
        free(self.table)
        self.table = NULL

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a memory nanny: it owns a raw pointer")


cdef class DeallocatorNanny:
    """Calls a C deallocator (e.g. a library's own matrix_free) exactly once."""

    @staticmethod
    cdef DeallocatorNanny create(void* table, Py_ssize_t rows, table_dealloc_fn dealloc):
        if dealloc == NULL:
            raise ValueError("dealloc function pointer is NULL")
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        cdef DeallocatorNanny self = DeallocatorNanny.__new__(DeallocatorNanny)
        self.table = <void**>table
        self.rows = rows
        self.dealloc = dealloc
        return self

    def __dealloc__(self):
        if self.table != NULL and self.dealloc != NULL:
            self.dealloc(self.table, self.rows)
        self.table = NULL

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a memory nanny: it owns a raw pointer")
