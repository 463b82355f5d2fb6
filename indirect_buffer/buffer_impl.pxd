# cython: language_level=3
"""Public cimport API of indirect_buffer: the cdef classes and their static constructors.

Other projects compile against this file (``from indirect_buffer.buffer_impl cimport
IndirectMemory2D``), so it changes only compatibly: code written against earlier versions
(0.1.0 included) compiles unchanged. New members and methods are appended.
"""

from libc.stdint cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)

cdef enum:
    # The most dimensions an IndirectMemory may have.
    IB_MAX_NDIM = 8


cdef class IndirectMemory:
    # N-D indirect memory: PEP 3118 geometry with a suboffset (a pointer to follow) at chosen
    # dimensions. IndirectMemory2D is its 2-D T** case. Element (i0, ..., in) is reached from
    # `table` as the buffer protocol says: add i_d * strides_[d], then, where suboffsets_[d]
    # >= 0, follow the pointer found there and add suboffsets_[d].
    #
    # The exported root table (for T**: the row pointers). Cython code that hands it to C
    # should take it from ptr_table() or the typed accessors, which tell the object that C
    # may re-point rows (copies then check every pointer).
    cdef void** table
    # Buffer-protocol geometry, shared by every export (frozen while exported).
    cdef Py_ssize_t shape_[IB_MAX_NDIM]
    cdef Py_ssize_t strides_[IB_MAX_NDIM]
    cdef Py_ssize_t suboffsets_[IB_MAX_NDIM]
    cdef Py_ssize_t itemsize_
    cdef bytes format_
    cdef bint readonly_
    cdef bint released_
    # Number of live Py_buffer exports (memoryviews, direct views, running copies) and pins.
    cdef Py_ssize_t exports
    # Owned memory (create/create_memory): one data block and one block of pointer tables.
    cdef void* owned_data
    cdef void** owned_table
    # Whatever keeps borrowed memory valid: a memory nanny, a ctypes object, a held source buffer.
    cdef object keepalive
    # True while the elements are known to lie in one C-contiguous block and nobody outside
    # this module has been given the table (ptr_table(), address, a buffer export), so copies
    # may skip checking every pointer. Cleared for good by any of those.
    cdef bint layout_trusted
    # Unused since 0.3; kept for source compatibility.
    cdef bint internal_export
    # Weak references are allowed (e.g. caches keyed by the memory).
    cdef object __weakref__
    # Live pin() calls (pinned() contexts included); each is also counted in exports.
    cdef Py_ssize_t pins
    # The element's kind for a native single-code format ('i', 'u', 'f', '?', 'c', 'P'; 0 for
    # any other format), kept with format_: typed accessors check it with C comparisons.
    cdef char elem_kind
    # Number of dimensions (2 for IndirectMemory2D).
    cdef int ndim_
    # Pointer levels when the memory is a plain T** / T*** ... (indirect exactly in dimensions
    # 0 .. levels_-1 with pointer-sized strides, C-contiguous after them), else 0.
    cdef int levels_
    # Lent memory (wrapped without a memory nanny): table is the wrapper's own copy of the
    # lender's root table, and release() revokes the loan (views out then read a snapshot).
    cdef bint lent_

    # The one initialiser every constructor funnels into (format already validated; strides
    # and suboffsets given for every dimension).
    cdef int _init_geometry(self, void** table, int ndim, const Py_ssize_t* shape,
                            const Py_ssize_t* strides, const Py_ssize_t* suboffsets,
                            bytes format, Py_ssize_t itemsize, bint readonly,
                            object keepalive) except -1
    cdef int _check_alive(self) except -1
    cdef int _check_unlocked(self, str action) except -1
    cdef void _release_resources(self) noexcept

    # The raw pointer table for C calls (no checks; valid while self is alive and not released).
    cdef void** ptr_table(self) noexcept
    # Checked typed tables of one pointer level (T**: a 2-D memory's rows, or blocks such as
    # frames): TypeError unless the element format matches (format must be str or bytes;
    # None in checked_table accepts any), BufferError if writable is requested on read-only
    # memory or if the memory is not a T** (one table of pointers at dimension 0, then
    # C-contiguous data), ValueError if released or if the data does not start row_offset
    # bytes after each pointer (0 unless told: a 0-based C API never gets a 1-based table).
    cdef void** checked_table(self, object format, bint writable,
                              Py_ssize_t row_offset=*) except NULL
    cdef double** double_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef float** float_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef int** int_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef long** long_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef long long** longlong_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef unsigned char** uchar_table(self, bint writable, Py_ssize_t row_offset=*) except NULL

    # Pin the memory like an export: until the matching unpin(), release(), reshaping and
    # reinterpreting raise BufferError, so C may use the table without the GIL.
    # ValueError if released. Every successful pin() needs exactly one unpin(); an unpin()
    # without one changes nothing and is reported through sys.unraisablehook.
    cdef int pin(self) except -1
    cdef void unpin(self) noexcept

    # The checks behind every checked table and pinned(): alive, format, writable, and every
    # suboffset equal to row_offset (the layout itself is checked by the tables). A negative
    # row_offset is refused with ValueError (earlier releases took -1 as "any").
    cdef int _check_table_request(self, object format, bint writable,
                                  Py_ssize_t row_offset) except -1

    # -- N-D additions (0.3) ------------------------------------------------------------------

    # Size of dimension d (0 <= d < ndim); ValueError once released or for a bad d. Callable
    # without the GIL.
    cdef Py_ssize_t dim(self, int d) except -1 nogil
    # A checked table of `levels` pointer levels (T** for 1, T*** for 2): the memory must be
    # indirect exactly in dimensions 0 .. levels-1, with pointer-sized strides there, and
    # C-contiguous after them; every suboffset equal to row_offset. Other checks as above.
    cdef void* checked_levels(self, object format, bint writable, int levels,
                              Py_ssize_t row_offset=*) except NULL
    cdef double*** double_table3(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef float*** float_table3(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef int*** int_table3(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef unsigned char*** uchar_table3(self, bint writable, Py_ssize_t row_offset=*) except NULL

    # Owned, zeroed memory of any shape (1 < ndim <= IB_MAX_NDIM) with pointer tables at the
    # dimensions whose bit is set in `indirect` (bit d: dimension d; never the last one;
    # 0 means all but the last: T*** for 3-D). One data block and one block of tables.
    @staticmethod
    cdef IndirectMemory create_nd(int ndim, const Py_ssize_t* shape, object format,
                                  unsigned int indirect, bint readonly)

    # Wrap an existing pointer structure at ptr (its root table), indirect where `indirect`
    # says (as for create_nd), with the data after each pointer at offsets[d] bytes (offsets
    # may be NULL: all 0). Tables are taken as C-contiguous arrays of pointers and the data
    # as C-contiguous blocks. memory_nanny (may be None) is kept alive with the wrapper.
    # Every pointer is checked for NULL now.
    @staticmethod
    cdef IndirectMemory from_ptr_nd(void* ptr, int ndim, const Py_ssize_t* shape,
                                    object format, unsigned int indirect,
                                    const Py_ssize_t* offsets, bint readonly,
                                    object memory_nanny)

    # -- fixed-width tables (0.4) ---------------------------------------------------------------

    # Checked T** tables typed as the <stdint.h> types C libraries declare: any signed
    # (intN_t) or unsigned (uintN_t) integer format of that size passes, however it is spelt
    # ('i', '=i', '<i' on a little-endian machine, 'l' where long has 32 bits... for
    # int32_t); another signedness or size, or a non-integer format, is a TypeError. Other
    # checks (writable, layout, row_offset, released) as for int_table.
    cdef int8_t** int8_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef int16_t** int16_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef int32_t** int32_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef int64_t** int64_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef uint8_t** uint8_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef uint16_t** uint16_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef uint32_t** uint32_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    cdef uint64_t** uint64_table(self, bint writable, Py_ssize_t row_offset=*) except NULL
    # Read-only tables typed as C APIs take them (const T* const*): the same checks without
    # writable, so they work on read-only memory too.
    cdef const int8_t* const* const_int8_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const int16_t* const* const_int16_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const int32_t* const* const_int32_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const int64_t* const* const_int64_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const uint8_t* const* const_uint8_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const uint16_t* const* const_uint16_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const uint32_t* const* const_uint32_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const uint64_t* const* const_uint64_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const float* const* const_float_table(self, Py_ssize_t row_offset=*) except NULL
    cdef const double* const* const_double_table(self, Py_ssize_t row_offset=*) except NULL

    # from_ptr_nd for a const structure (a library's `const T* const*`, which converts to
    # const void* without a cast): the memory is read-only, and nothing here writes through
    # ptr. memory_nanny None: lent memory (release() revokes the loan).
    @staticmethod
    cdef IndirectMemory from_const_ptr_nd(const void* ptr, int ndim, const Py_ssize_t* shape,
                                          object format, unsigned int indirect,
                                          const Py_ssize_t* offsets, object memory_nanny)


cdef class IndirectMemory2D(IndirectMemory):
    # The 2-D T** case: shape_[0] rows, shape_[1] columns, row pointers in table.

    # The 2-D initialiser (format already validated), funnelling into _init_geometry.
    cdef int _init_layout(self, void** table, Py_ssize_t rows, Py_ssize_t cols, bytes format,
                          Py_ssize_t itemsize, bint readonly, Py_ssize_t row_offset,
                          object keepalive) except -1

    # Rows and columns; ValueError once released. Callable without the GIL.
    cdef Py_ssize_t rows(self) except -1 nogil
    cdef Py_ssize_t cols(self) except -1 nogil

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

    # 0.1.0 names, kept so that code written against 0.1.0 compiles unchanged.
    # as_int_ptr_ptr is ptr_table() cast, unchecked as it was: prefer int_table().
    cdef int** as_int_ptr_ptr(self) noexcept

    @staticmethod
    cdef IndirectMemory2D cy_view_from_rows(object array2d, bint readonly=*)

    @staticmethod
    cdef IndirectMemory2D cy_view_from_columns(object array2d, bint readonly=*)

    # -- fixed-width tables (0.4) ---------------------------------------------------------------

    # from_ptr_with_offset for a const table (a library's `const T* const*`, which converts to
    # const void* without a cast): the memory is read-only, and nothing here writes through
    # ptr. memory_nanny None: lent memory (release() revokes the loan).
    @staticmethod
    cdef IndirectMemory2D from_const_ptr(const void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                         object format, object memory_nanny,
                                         Py_ssize_t row_offset=*)


cdef class BufferCollection2D(IndirectMemory2D):
    # The rows' acquired buffers are held by a private object in keepalive (see
    # collection.pxi). Set when __init__ starts: a collection is initialised once.
    cdef bint init_started

    cdef int _check_not_initialised(self) except -1
