# cython: language_level=3
"""Public cimport API of indirect_buffer: the cdef classes and their static constructors.

Other projects compile against this file (``from indirect_buffer.buffer_impl cimport
IndirectMemory2D``), so it changes only compatibly: new members and methods are appended.
"""

cdef class IndirectMemory2D:
    # The exported T** table; rows are table[i] + suboffsets[0] bytes. Cython code that hands
    # the table to C should take it from ptr_table() or the typed accessors, which tell the
    # object that C may re-point rows (copies then check every row pointer).
    cdef void** table
    # Buffer-protocol geometry, shared by every export (frozen while exported).
    cdef Py_ssize_t shape_[2]
    cdef Py_ssize_t strides_[2]
    cdef Py_ssize_t suboffsets_[2]
    cdef Py_ssize_t itemsize_
    cdef bytes format_
    cdef bint readonly_
    cdef bint released_
    # Number of live Py_buffer exports (memoryviews, direct views, running copies).
    cdef Py_ssize_t exports
    # Owned memory (create/create_memory): one data block and one pointer table.
    cdef void* owned_data
    cdef void** owned_table
    # Whatever keeps borrowed memory valid: a memory nanny, a ctypes object, a held source buffer.
    cdef object keepalive
    # True while the rows are known to lie back to back and nobody outside this module has
    # been given the table (ptr_table(), address, a buffer export), so copies may skip
    # checking every row pointer. Cleared for good by any of those.
    cdef bint layout_trusted
    # Set around this module's own exports, which do not hand the table to anybody.
    cdef bint internal_export
    # Weak references are allowed (e.g. caches keyed by the memory).
    cdef object __weakref__

    # The one initialiser every constructor funnels into (format already validated).
    cdef int _init_layout(self, void** table, Py_ssize_t rows, Py_ssize_t cols, bytes format,
                          Py_ssize_t itemsize, bint readonly, Py_ssize_t row_offset,
                          object keepalive) except -1
    cdef int _check_alive(self) except -1
    cdef int _check_unlocked(self, str action) except -1
    cdef void _release_resources(self) noexcept

    # The raw pointer table for C calls (no checks; valid while self is alive and not released).
    cdef void** ptr_table(self) noexcept
    # Format-checked typed tables: raise TypeError unless the element format matches,
    # BufferError if writable is requested on read-only memory, ValueError if released.
    cdef void** checked_table(self, object format, bint writable) except NULL
    cdef double** double_table(self, bint writable) except NULL
    cdef float** float_table(self, bint writable) except NULL
    cdef int** int_table(self, bint writable) except NULL
    cdef long** long_table(self, bint writable) except NULL
    cdef long long** longlong_table(self, bint writable) except NULL
    cdef unsigned char** uchar_table(self, bint writable) except NULL
    # The table is handed out exactly as wrapped: with a row_offset (suboffsets_[0]) != 0 the
    # rows start that many bytes after table[i], as the C API that made them expects.

    # Rows and columns (no checks; 0 x 0 after release()).
    cdef Py_ssize_t rows(self) noexcept
    cdef Py_ssize_t cols(self) noexcept
    # Pin the memory like an export: until the matching unpin(), release(), reshaping and
    # reinterpreting raise BufferError, so C may use the table without the GIL.
    # ValueError if released. Every successful pin() needs exactly one unpin().
    cdef int pin(self) except -1
    cdef void unpin(self) noexcept

    @staticmethod
    cdef IndirectMemory2D create(Py_ssize_t rows, Py_ssize_t cols, object format, int readonly)

    @staticmethod
    cdef IndirectMemory2D from_ptr(void* ptr, Py_ssize_t rows, Py_ssize_t cols, object format,
                                   int readonly)

    @staticmethod
    cdef IndirectMemory2D from_ptr_with_memory_nanny(void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                                     object format, int readonly,
                                                     object memory_nanny)

    # Like from_ptr_with_memory_nanny, with rows starting row_offset bytes after table[i]
    # (e.g. itemsize for 1-based Numerical-Recipes rows). memory_nanny may be None.
    @staticmethod
    cdef IndirectMemory2D from_ptr_with_offset(void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                               object format, int readonly, object memory_nanny,
                                               Py_ssize_t row_offset)


cdef class BufferCollection2D(IndirectMemory2D):
    # One acquired Py_buffer per row, held until the collection is released or freed.
    cdef Py_buffer* views
    cdef Py_ssize_t view_count

    cdef void _release_views(self) noexcept
    cdef int _check_not_initialised(self) except -1
    cdef int _acquire_rows(self, tuple objs, Py_ssize_t columns, object expected_fmt,
                           Py_ssize_t expected_itemsize, bint unravel) except -1
