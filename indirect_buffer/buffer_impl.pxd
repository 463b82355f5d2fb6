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
    # Unused since 0.3 (internal exports no longer go through __getbuffer__); kept so that
    # the fields after it keep their offsets.
    cdef bint internal_export
    # Weak references are allowed (e.g. caches keyed by the memory).
    cdef object __weakref__
    # Live pin() calls (pinned() contexts included); each is also counted in exports.
    cdef Py_ssize_t pins
    # The element's kind for a native single-code format ('i', 'u', 'f', '?', 'c', 'P'; 0 for
    # any other format), kept with format_: typed accessors check it with C comparisons.
    cdef char elem_kind

    # The one initialiser every constructor funnels into (format already validated).
    cdef int _init_layout(self, void** table, Py_ssize_t rows, Py_ssize_t cols, bytes format,
                          Py_ssize_t itemsize, bint readonly, Py_ssize_t row_offset,
                          object keepalive) except -1
    cdef int _check_alive(self) except -1
    cdef int _check_unlocked(self, str action) except -1
    cdef void _release_resources(self) noexcept

    # The raw pointer table for C calls (no checks; valid while self is alive and not released).
    cdef void** ptr_table(self) noexcept
    # Checked typed tables: TypeError unless the element format matches (format must be str
    # or bytes; None in checked_table accepts any), BufferError if writable is requested on
    # read-only memory, ValueError if released or if the rows do not start row_offset bytes
    # after table[i] (0 unless told: a 0-based C API never gets a 1-based table by accident).
    cdef void** checked_table(self, object format, bint writable,
                              Py_ssize_t row_offset=*) except NULL
    cdef double** double_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef float** float_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef int** int_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef long** long_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef long long** longlong_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef unsigned char** uchar_table(self, bint writable, Py_ssize_t row_offset=*) except NULL

    # Rows and columns; ValueError once released. Callable without the GIL.
    cdef Py_ssize_t rows(self) except -1 nogil
    cdef Py_ssize_t cols(self) except -1 nogil
    # Pin the memory like an export: until the matching unpin(), release(), reshaping and
    # reinterpreting raise BufferError, so C may use the table without the GIL.
    # ValueError if released. Every successful pin() needs exactly one unpin(); an unpin()
    # without one changes nothing and is reported through sys.unraisablehook.
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

    # The checks behind every checked table and pinned().
    cdef int _check_table_request(self, object format, bint writable,
                                  Py_ssize_t row_offset) except -1

    # 0.1.0 names, kept so that code written against 0.1.0 compiles unchanged.
    # as_int_ptr_ptr is ptr_table() cast, unchecked as it was: prefer int_table().
    cdef int** as_int_ptr_ptr(self) noexcept

    @staticmethod
    cdef IndirectMemory2D cy_view_from_rows(object array2d, bint readonly=*)

    @staticmethod
    cdef IndirectMemory2D cy_view_from_columns(object array2d, bint readonly=*)


cdef class BufferCollection2D(IndirectMemory2D):
    # The rows' acquired buffers are held by a private object in keepalive (see
    # collection.pxi). Set when __init__ starts: a collection is initialised once.
    cdef bint init_started

    cdef int _check_not_initialised(self) except -1
