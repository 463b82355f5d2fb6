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


cdef class FreeLevelsNanny:
    """Frees the data block, each table and the root of a one-block-per-level structure."""

    @staticmethod
    cdef FreeLevelsNanny create(void* root, int levels):
        if levels < 1 or levels > NANNY_MAX_LEVELS:
            raise ValueError(f"levels must be 1 to {NANNY_MAX_LEVELS}, got {levels}")
        if root == NULL:
            raise ValueError("the root table is NULL")
        cdef void* blocks[NANNY_MAX_LEVELS + 1]
        cdef int k
        # The blocks as they are now: C code re-pointing an entry later changes nothing here.
        blocks[0] = root
        for k in range(1, levels + 1):
            blocks[k] = (<void**>blocks[k - 1])[0]
            if blocks[k] == NULL:
                raise ValueError(f"the first pointer of level {k - 1} is NULL")
        cdef FreeLevelsNanny self = FreeLevelsNanny.__new__(FreeLevelsNanny)
        for k in range(levels + 1):
            self.blocks[k] = blocks[k]
        self.count = levels + 1
        return self

    def __dealloc__(self):
        cdef int k
        for k in range(self.count - 1, -1, -1):  # the data first, the root last
            free(self.blocks[k])
            self.blocks[k] = NULL
        self.count = 0

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a memory nanny: it owns a raw pointer")


cdef void _free_tree(void** table, int level, int levels, const Py_ssize_t* counts) noexcept:
    cdef Py_ssize_t i
    for i in range(counts[level]):
        if table[i] != NULL:
            if level + 1 < levels:
                _free_tree(<void**>table[i], level + 1, levels, counts)
            else:
                free(table[i])
    free(table)


cdef class FreeTreeNanny:
    """Frees every non-NULL pointer of every level, depth first, then the root."""

    @staticmethod
    cdef FreeTreeNanny create(void* root, int levels, const Py_ssize_t* counts):
        cdef int k
        if levels < 1 or levels > NANNY_MAX_LEVELS:
            raise ValueError(f"levels must be 1 to {NANNY_MAX_LEVELS}, got {levels}")
        if counts == NULL:
            raise ValueError("counts is NULL")
        for k in range(levels):
            if counts[k] < 0:
                raise ValueError(f"counts[{k}] must be >= 0, got {counts[k]}")
        cdef FreeTreeNanny self = FreeTreeNanny.__new__(FreeTreeNanny)
        self.root = <void**>root
        self.levels = levels
        for k in range(levels):
            self.counts[k] = counts[k]
        return self

    def __dealloc__(self):
        if self.root != NULL:
            _free_tree(self.root, 0, self.levels, self.counts)
            self.root = NULL

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a memory nanny: it owns a raw pointer")
