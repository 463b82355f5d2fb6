# IndirectMemory2D: the 2-D T** case of IndirectMemory, with its 2-D constructors and
# accessors (the API of 0.1.0 and 0.2).

cdef int _check_dims(Py_ssize_t rows, Py_ssize_t cols) except -1:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if cols < 0:
        raise ValueError(f"cols must be >= 0, got {cols}")
    return 0


@cython.no_gc_clear  # keepalive must outlive every export, whatever order gc clears in
@cython.auto_pickle(False)
cdef class IndirectMemory2D(IndirectMemory):
    """A 2-D T** (table of row pointers) exported through the buffer protocol.

    Build one with create_memory, from_ctype_ptr, from_address, view_from_rows,
    view_from_columns or as_indirect (or the cdef constructors from Cython).
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("IndirectMemory2D cannot be instantiated directly; use "
                        "IndirectMemory2D.create_memory(), from_ctype_ptr(), from_address(), "
                        "view_from_rows() or view_from_columns()")

    cdef int _init_layout(self, void** table, Py_ssize_t rows, Py_ssize_t cols, bytes format,
                          Py_ssize_t itemsize, bint readonly, Py_ssize_t row_offset,
                          object keepalive) except -1:
        cdef Py_ssize_t shape[2]
        cdef Py_ssize_t strides[2]
        cdef Py_ssize_t suboffsets[2]
        _check_dims(rows, cols)
        if row_offset < 0:
            raise ValueError(f"row_offset must be >= 0, got {row_offset}")
        shape[0], shape[1] = rows, cols
        strides[0], strides[1] = sizeof(void*), itemsize
        suboffsets[0], suboffsets[1] = row_offset, -1
        return self._init_geometry(table, 2, shape, strides, suboffsets, format, itemsize,
                                   readonly, keepalive)

    # -- cdef constructors (public cimport API) -----------------------------------------------

    @staticmethod
    cdef IndirectMemory2D create(Py_ssize_t rows, Py_ssize_t cols, object format, int readonly):
        _check_dims(rows, cols)
        fmt, itemsize = _parse_format(format)
        return _new_owned(rows, cols, fmt, itemsize, readonly)

    @staticmethod
    cdef IndirectMemory2D from_ptr(void* ptr, Py_ssize_t rows, Py_ssize_t cols, object format,
                                   int readonly):
        return IndirectMemory2D.from_ptr_with_offset(ptr, rows, cols, format, readonly, None, 0)

    @staticmethod
    cdef IndirectMemory2D from_ptr_with_memory_nanny(void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                                     object format, int readonly,
                                                     object memory_nanny):
        return IndirectMemory2D.from_ptr_with_offset(ptr, rows, cols, format, readonly,
                                                     memory_nanny, 0)

    @staticmethod
    cdef IndirectMemory2D from_ptr_with_offset(void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                               object format, int readonly, object memory_nanny,
                                               Py_ssize_t row_offset):
        return _wrap_2d(ptr, rows, cols, format, readonly, memory_nanny, row_offset,
                        memory_nanny is None)

    # 0.1.0's names for the zero-copy row and column views (view_from_rows/view_from_columns).
    @staticmethod
    cdef IndirectMemory2D cy_view_from_rows(object array2d, bint readonly=False):
        return _view_from_lines(array2d, readonly, False)

    @staticmethod
    cdef IndirectMemory2D cy_view_from_columns(object array2d, bint readonly=False):
        return _view_from_lines(array2d, readonly, True)

    # -- accessors for C calls ----------------------------------------------------------------

    cdef int** as_int_ptr_ptr(self) noexcept:
        return <int**>self.ptr_table()

    cdef Py_ssize_t rows(self) except -1 nogil:
        if self.released_ or self.table == NULL:
            with gil:
                self._check_alive()
        return self.shape_[0]

    cdef Py_ssize_t cols(self) except -1 nogil:
        if self.released_ or self.table == NULL:
            with gil:
                self._check_alive()
        return self.shape_[1]

    # -- Python constructors ------------------------------------------------------------------

    @staticmethod
    def create_memory(Py_ssize_t rows, Py_ssize_t cols, format, readonly=False):
        """Owned, zero-initialised rows x cols memory of the struct format `format`."""
        return IndirectMemory2D.create(rows, cols, format, bool(readonly))

    @staticmethod
    def from_ctype_ptr(ptr, Py_ssize_t rows, Py_ssize_t cols, readonly=False, memory_nanny=None,
                       Py_ssize_t row_offset=0):
        """Wrap a ctypes table of pointers: an array of POINTER(T), or a POINTER(POINTER(T)).

        The element format comes from ctypes; ptr (or memory_nanny, if given) is kept alive
        as long as the wrapper and its views live. Without a memory_nanny the memory is lent:
        release() revokes the loan (see release()).
        """
        _check_dims(rows, cols)
        ro = bool(readonly)
        # Last (see _ctypes_table): only our own code runs after it.
        address, levels, fmt, entries, keep = _ctypes_table(ptr)
        if levels != 1:
            raise TypeError(f"expected a ctypes table of one pointer level (POINTER(T) rows), "
                            f"got {levels} levels: use IndirectMemory.from_ctype_ptr with a "
                            f"{levels + 1}-D shape")
        if entries >= 0 and entries < rows:
            raise BufferError(f"ctypes table has {entries} entries, {rows} rows requested")
        return _wrap_2d(<void*><uintptr_t>address, rows, cols, fmt, ro, (keep, memory_nanny),
                        row_offset, memory_nanny is None)

    @staticmethod
    def from_address(address, Py_ssize_t rows, Py_ssize_t cols, format, readonly=False,
                     memory_nanny=None, Py_ssize_t row_offset=0):
        """Wrap the T** at `address`; memory_nanny (and a pointer object) is kept alive.

        address: an int (or anything with __index__, e.g. a NumPy integer), a ctypes pointer
        or c_void_p, or a cffi pointer or array cdata. Nothing can check that `address`
        really holds `rows` valid row pointers: that is the caller's promise. Without a
        memory_nanny the memory is lent: release() revokes the loan (see release()).
        """
        ro = bool(readonly)
        lent = memory_nanny is None
        # Last: nothing of the caller's may run between reading a pointer object and
        # wrapping what it points to (see _address_and_keep).
        value, keep = _address_and_keep(address)
        if keep is not None:
            # A ctypes or cffi pointer object may own what it points to (ctypes arrays,
            # ffi.new): keep it alive with the nanny.
            memory_nanny = (keep, memory_nanny)
        return _wrap_2d(<void*><uintptr_t>value, rows, cols, format, ro, memory_nanny,
                        row_offset, lent)

    @staticmethod
    def view_from_rows(array2d, readonly=False):
        """Zero-copy T** over the rows of a buffer: one row per index of its first dimension
        (all later dimensions, which must be C-contiguous, make up the row; a 1-D buffer is
        one row)."""
        return _view_from_lines(array2d, bool(readonly), False)

    @staticmethod
    def view_from_columns(array2d, readonly=False):
        """Zero-copy T** over the contiguous columns of a 2-D (or 1-D: one column) buffer.

        The result has shape (columns, rows) of the source.
        """
        return _view_from_lines(array2d, bool(readonly), True)

    @property
    def row_offset(self):
        """Bytes from table[i] to the first element of row i (the first suboffset)."""
        self._check_alive()
        return self.suboffsets_[0]

    def __repr__(self):
        if self.released_:
            return f"<{type(self).__name__} released>"
        if self.table == NULL:
            return f"<{type(self).__name__} uninitialised>"
        return (f"<{type(self).__name__} shape=({self.shape_[0]}, {self.shape_[1]}) "
                f"format={self.format!r} readonly={bool(self.readonly_)}>")

    # -- fixed-width tables (0.4) -------------------------------------------------------------

    @staticmethod
    cdef IndirectMemory2D from_const_ptr(const void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                         object format, object memory_nanny,
                                         Py_ssize_t row_offset=0):
        # Read-only memory: nothing here writes through the table (a lent wrapper's
        # revocation re-points its own copy of it, never the lender's).
        return _wrap_2d(<void*>ptr, rows, cols, format, True, memory_nanny, row_offset,
                        memory_nanny is None)


cdef IndirectMemory2D _wrap_2d(void* ptr, Py_ssize_t rows, Py_ssize_t cols, object format,
                               bint readonly, object keepalive, Py_ssize_t row_offset,
                               bint lent):
    """Wrap the T** at ptr (rows starting row_offset bytes after each pointer); lent: no
    memory nanny keeps it valid (see lending.pxi)."""
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t offsets[2]
    _check_dims(rows, cols)
    if row_offset < 0:
        raise ValueError(f"row_offset must be >= 0, got {row_offset}")
    fmt, itemsize = _parse_format(format)
    shape[0], shape[1] = rows, cols
    offsets[0], offsets[1] = row_offset, 0
    return <IndirectMemory2D>_wrap_nd(ptr, 2, shape, fmt, itemsize, 1, offsets,
                                      readonly, keepalive, lent)


cdef IndirectMemory2D _new_owned(Py_ssize_t rows, Py_ssize_t cols, bytes fmt,
                                 Py_ssize_t itemsize, bint readonly):
    """Owned zeroed rows x cols memory for an already validated format."""
    cdef Py_ssize_t shape[2]
    _check_dims(rows, cols)
    shape[0], shape[1] = rows, cols
    return <IndirectMemory2D>_new_owned_nd(2, shape, fmt, itemsize, 1, readonly)
