# IndirectMemory2D: the T** memory type, its constructors, state changes and accessors.

cdef int _check_dims(Py_ssize_t rows, Py_ssize_t cols) except -1:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if cols < 0:
        raise ValueError(f"cols must be >= 0, got {cols}")
    return 0


cdef Py_ssize_t _total_bytes(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t itemsize) except -1:
    """rows*cols*itemsize, or MemoryError if it does not fit in Py_ssize_t."""
    if cols != 0 and itemsize > PY_SSIZE_T_MAX // cols:
        raise MemoryError(f"cols*itemsize overflows: {cols}*{itemsize}")
    cdef Py_ssize_t row_bytes = cols * itemsize
    if rows != 0 and row_bytes > PY_SSIZE_T_MAX // rows:
        raise MemoryError(f"rows*cols*itemsize overflows: {rows}*{cols}*{itemsize}")
    if <size_t>rows > (<size_t>PY_SSIZE_T_MAX) // sizeof(void*):
        raise MemoryError(f"a table of {rows} row pointers overflows")
    return rows * row_bytes



# -- pointers as users hold them (from_address, from_ctype_ptr) ---------------------------------

cdef object _cffi_ffi = None  # made on first use: cffi is imported only when given a cdata


cdef uintptr_t _ctypes_pointer_value(object ptr) except? 0:
    """The address a ctypes pointer instance holds, read from its own storage (ctypes.cast
    would leave a reference cycle through ptr._objects, keeping ptr alive until a gc)."""
    import ctypes
    return <uintptr_t>(ctypes.c_void_p.from_buffer(ptr).value or 0)


cdef tuple _ctypes_keepalive(object obj):
    """What keeps the memory behind a ctypes or cffi pointer object alive: the object and,
    for ctypes, a frozen snapshot of what its _objects holds now, so that re-pointing it
    (ptr.contents = ...) or emptying a dict reached through gc.get_referents cannot free
    the table."""
    return (obj, _frozen(getattr(obj, "_objects", None)))


cdef object _frozen(object objects):
    """ctypes' _objects with every dict (nested too) turned into a tuple of its values."""
    if isinstance(objects, dict):
        return tuple([_frozen(v) for v in (<dict>objects).values()])
    return objects


cdef uintptr_t _address_value(object address) except? 0:
    """The pointer value of an int-like, a ctypes pointer or c_void_p, or a cffi pointer."""
    global _cffi_ffi
    if isinstance(address, (bool, float)):  # bool is an int, float has no exact address
        raise TypeError(f"address must be an int or a pointer object, not "
                        f"{type(address).__name__}")
    ctypes = sys.modules.get("ctypes")  # a ctypes object means ctypes is imported
    if ctypes is not None and isinstance(address, ctypes.c_void_p):
        value = address.value or 0
    elif ctypes is not None and isinstance(address, ctypes._Pointer):
        value = _ctypes_pointer_value(address)
    elif type(address).__module__ == "_cffi_backend":
        if _cffi_ffi is None:
            import _cffi_backend
            _cffi_ffi = _cffi_backend.FFI()
        kind = _cffi_ffi.typeof(address).kind
        if kind not in ("pointer", "array"):
            raise TypeError(f"address must be a cffi pointer or array, not a cffi {kind} "
                            f"({_cffi_ffi.typeof(address).cname})")
        value = int(_cffi_ffi.cast("uintptr_t", address))
    else:
        try:
            value = operator.index(address)
        except TypeError:
            raise TypeError(f"address must be an int, a ctypes pointer or c_void_p, or a cffi "
                            f"pointer, not {type(address).__name__}") from None
    if value < 0 or value >= _ADDRESS_LIMIT:
        raise ValueError(f"address {value} is not a valid pointer value")
    return <uintptr_t>value


@cython.no_gc_clear  # keepalive must outlive every export, whatever order gc clears in
@cython.auto_pickle(False)
cdef class IndirectMemory2D:
    """A 2-D T** (table of row pointers) exported through the buffer protocol.

    Build one with create_memory, from_ctype_ptr, from_address, view_from_rows,
    view_from_columns or as_indirect (or the cdef constructors from Cython).
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("IndirectMemory2D cannot be instantiated directly; use "
                        "IndirectMemory2D.create_memory(), from_ctype_ptr(), from_address(), "
                        "view_from_rows() or view_from_columns()")

    def __dealloc__(self):
        # export_count is 0 here: every view holds a reference to self.
        free(self.owned_table)
        free(self.owned_data)
        self.owned_table = NULL
        self.owned_data = NULL
        self.table = NULL

    # -- the one initialiser every constructor funnels into ------------------------------------

    cdef int _init_layout(self, void** table, Py_ssize_t rows, Py_ssize_t cols, bytes format,
                          Py_ssize_t itemsize, bint readonly, Py_ssize_t row_offset,
                          object keepalive) except -1:
        _check_dims(rows, cols)
        _total_bytes(rows, cols, itemsize)
        if row_offset < 0:
            raise ValueError(f"row_offset must be >= 0, got {row_offset}")
        if table == NULL:
            raise ValueError("the pointer table is NULL")
        self.table = table
        self.shape_[0] = rows
        self.shape_[1] = cols
        self.strides_[0] = sizeof(void*)
        self.strides_[1] = itemsize
        self.suboffsets_[0] = row_offset
        self.suboffsets_[1] = -1
        self.itemsize_ = itemsize
        self.format_ = format
        self.elem_kind = _element_kind(format)
        self.readonly_ = readonly
        self.keepalive = keepalive
        self.layout_trusted = False  # constructors that know better set it afterwards
        return 0

    cdef int _check_alive(self) except -1:
        if self.released_:
            raise ValueError(f"operation on released {type(self).__name__}")
        if self.table == NULL:
            # Only reachable through IndirectMemory2D.__new__ without a constructor.
            raise ValueError(f"operation on uninitialised {type(self).__name__}")
        return 0

    cdef int _check_unlocked(self, str action) except -1:
        self._check_alive()
        if self.exports > 0:
            raise BufferError(f"cannot {action}: {type(self).__name__} has "
                              f"{self.exports} exported buffer(s)")
        return 0

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
        _check_dims(rows, cols)
        fmt, itemsize = _parse_format(format)
        _total_bytes(rows, cols, itemsize)
        if ptr == NULL:
            raise ValueError("the pointer table is NULL")
        cdef void** table = <void**>ptr
        cdef Py_ssize_t i
        if cols > 0:
            # A NULL row would crash the first consumer that reads it: refuse it here.
            for i in range(rows):
                if table[i] == NULL:
                    raise ValueError(f"row {i} of the pointer table is NULL")
        cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
        self._init_layout(table, rows, cols, fmt, itemsize, readonly, row_offset, memory_nanny)
        return self

    # 0.1.0's names for the zero-copy row and column views (view_from_rows/view_from_columns).
    @staticmethod
    cdef IndirectMemory2D cy_view_from_rows(object array2d, bint readonly=False):
        return _view_from_lines(array2d, readonly, False)

    @staticmethod
    cdef IndirectMemory2D cy_view_from_columns(object array2d, bint readonly=False):
        return _view_from_lines(array2d, readonly, True)

    # -- typed accessors for C calls ----------------------------------------------------------

    cdef void** ptr_table(self) noexcept:
        self.layout_trusted = False  # C may re-point rows from now on
        return self.table

    cdef void** checked_table(self, object format, bint writable,
                              Py_ssize_t row_offset=0) except NULL:
        self._check_table_request(format, writable, row_offset)
        self.layout_trusted = False  # C may re-point rows from now on
        return self.table

    cdef int _check_table_request(self, object format, bint writable,
                                  Py_ssize_t row_offset) except -1:
        """What every checked table hands out is: alive, of the element format asked for
        (None: any), writable if asked, with the row offset the caller's C API expects."""
        self._check_alive()
        if format is not None and format is not self.format_ and \
                not _is_native_element(format, self.elem_kind, self.itemsize_) and (
                    _parse_format(format)[1] != self.itemsize_
                    or _canonical_format(format) != _canonical_format(self.format_)):
            raise TypeError(f"element format is {self.format!r}, not {format!r}")
        if writable and self.readonly_:
            raise BufferError("writable table requested from read-only memory")
        if row_offset != self.suboffsets_[0]:
            raise ValueError(f"the table's rows start {self.suboffsets_[0]} bytes after each row "
                             f"pointer (row_offset), not {row_offset} as requested")
        return 0

    cdef double** double_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(double), writable, row_offset):
            return <double**>self.table
        return <double**>self.checked_table("d", writable, row_offset)

    cdef float** float_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(float), writable, row_offset):
            return <float**>self.table
        return <float**>self.checked_table("f", writable, row_offset)

    cdef int** int_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int), writable, row_offset):
            return <int**>self.table
        return <int**>self.checked_table("i", writable, row_offset)

    cdef long** long_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(long), writable, row_offset):
            return <long**>self.table
        return <long**>self.checked_table("l", writable, row_offset)

    cdef long long** longlong_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(long long), writable, row_offset):
            return <long long**>self.table
        return <long long**>self.checked_table("q", writable, row_offset)

    cdef unsigned char** uchar_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", 1, writable, row_offset):
            return <unsigned char**>self.table
        return <unsigned char**>self.checked_table("B", writable, row_offset)

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

    cdef int pin(self) except -1:
        self._check_alive()
        self.pins += 1
        self.exports += 1
        return 0

    cdef void unpin(self) noexcept:
        if self.pins <= 0 or self.exports <= 0:
            # A contract violation: decrementing anyway could unlock memory that a live
            # export still reads. Leave the counts alone and say so.
            _report_unraisable(RuntimeError(
                f"{type(self).__name__}.unpin() without a matching pin()"), self)
            return
        self.pins -= 1
        self.exports -= 1

    def pinned(self, format=None, writable=False, Py_ssize_t row_offset=0):
        """Context manager for C calls from ctypes/cffi: `with mem.pinned("d") as address:`.

        __enter__ checks the memory like the Cython typed tables do (not released; element
        format `format` if given, TypeError otherwise; writable if asked, BufferError
        otherwise; `row_offset` equal to the memory's, ValueError otherwise) and returns the
        integer address of the table. Until __exit__ the memory counts as exported:
        release(), reinterpret_data() and make_read_only() raise BufferError, from any thread.
        """
        cdef _Pinned pin = _Pinned.__new__(_Pinned)
        pin.mem = self
        pin.format = format
        pin.writable = bool(writable)
        pin.row_offset = row_offset
        return pin

    # -- buffer protocol ----------------------------------------------------------------------

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        _export_indirect(self, buffer, flags, False)
        # obj: the view keeps self (and so whatever self points into) alive.
        buffer.obj = self

    def __releasebuffer__(self, Py_buffer* buffer):
        if self.exports > self.pins:
            self.exports -= 1

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
        as long as the wrapper and its views live.
        """
        import ctypes
        _check_dims(rows, cols)
        cdef uintptr_t address
        cdef Py_ssize_t entries
        if isinstance(ptr, ctypes.Array):
            row_type = getattr(type(ptr), "_type_", None)
            if not (isinstance(row_type, type) and issubclass(row_type, ctypes._Pointer)):
                raise TypeError(f"expected a ctypes array of POINTER(T), got {type(ptr).__name__}")
            # ctypes caches array types: anything else is a subclass, whose _type_, _length_
            # or __len__ may say something other than what its memory holds.
            if type(ptr) is not row_type * type(ptr)._length_:
                raise TypeError(f"expected a ctypes array of POINTER(T), got the subclass "
                                f"{type(ptr).__name__}")
            # The size ctypes allocated, not what len() says.
            entries = ctypes.sizeof(ptr) // ctypes.sizeof(ctypes.c_void_p)
            if entries < rows:
                raise BufferError(f"ctypes table has {entries} entries, {rows} rows requested")
            address = ctypes.addressof(ptr)
        elif isinstance(ptr, ctypes._Pointer):
            row_type = getattr(type(ptr), "_type_", None)
            if not (isinstance(row_type, type) and issubclass(row_type, ctypes._Pointer)):
                raise TypeError(f"expected a ctypes POINTER(POINTER(T)), got {type(ptr).__name__}")
            if type(ptr) is not ctypes.POINTER(row_type):  # cached too, see above
                raise TypeError(f"expected a ctypes POINTER(POINTER(T)), got the subclass "
                                f"{type(ptr).__name__}")
            address = _ctypes_pointer_value(ptr)
            if address == 0:
                raise ValueError("the ctypes pointer table is NULL")
        else:
            raise TypeError(f"expected a ctypes array of POINTER(T) or a POINTER(POINTER(T)), "
                            f"got {type(ptr).__name__}")
        element = row_type._type_
        itemsize = ctypes.sizeof(element)
        ctype_format = memoryview(element()).format if issubclass(
            element, ctypes._SimpleCData) else None
        fmt = _native_format(ctype_format) if ctype_format else None
        try:
            if fmt is None or _parse_format(fmt)[1] != itemsize:
                raise ValueError
        except ValueError:
            # Structures, long double...: keep the bytes, let the user reinterpret_data().
            fmt = f"{itemsize}s"
        keep = (_ctypes_keepalive(ptr), memory_nanny)
        return IndirectMemory2D.from_ptr_with_offset(
            <void*>address, rows, cols, fmt, bool(readonly), keep, row_offset)

    @staticmethod
    def from_address(address, Py_ssize_t rows, Py_ssize_t cols, format, readonly=False,
                     memory_nanny=None, Py_ssize_t row_offset=0):
        """Wrap the T** at `address`; memory_nanny (and a pointer object) is kept alive.

        address: an int (or anything with __index__, e.g. a NumPy integer), a ctypes pointer
        or c_void_p, or a cffi pointer or array cdata. Nothing can check that `address`
        really holds `rows` valid row pointers: that is the caller's promise.
        """
        cdef uintptr_t value = _address_value(address)
        if not isinstance(address, int):
            # A ctypes or cffi pointer object may own what it points to (ctypes arrays,
            # ffi.new): keep it alive with the nanny.
            memory_nanny = (_ctypes_keepalive(address), memory_nanny)
        return IndirectMemory2D.from_ptr_with_offset(<void*>value, rows, cols, format,
                                                     bool(readonly), memory_nanny, row_offset)

    @staticmethod
    def view_from_rows(array2d, readonly=False):
        """Zero-copy T** over the contiguous rows of a 2-D (or 1-D: one row) buffer."""
        return _view_from_lines(array2d, bool(readonly), False)

    @staticmethod
    def view_from_columns(array2d, readonly=False):
        """Zero-copy T** over the contiguous columns of a 2-D (or 1-D: one column) buffer.

        The result has shape (columns, rows) of the source.
        """
        return _view_from_lines(array2d, bool(readonly), True)

    # -- properties ---------------------------------------------------------------------------

    @property
    def shape(self):
        """(rows, cols)."""
        self._check_alive()
        return (self.shape_[0], self.shape_[1])

    @property
    def format(self):
        """The struct format of one element, as str."""
        self._check_alive()
        return self.format_.decode("ascii")

    def get_format(self):
        """The struct format of one element, as str."""
        return self.format

    @property
    def itemsize(self):
        """Bytes per element."""
        self._check_alive()
        return self.itemsize_

    @property
    def readonly(self):
        """True if exports are read-only."""
        self._check_alive()
        return bool(self.readonly_)

    @property
    def row_offset(self):
        """Bytes from table[i] to the first element of row i (the first suboffset)."""
        self._check_alive()
        return self.suboffsets_[0]

    @property
    def address(self):
        """Integer address of the pointer table, for ctypes/cffi calls."""
        self._check_alive()
        self.layout_trusted = False  # C may re-point rows from now on
        return <uintptr_t>self.table

    @property
    def export_count(self):
        """Number of buffers currently exported (memoryviews, direct views, running copies)
        plus pins (pinned(), cdef pin())."""
        return self.exports

    @property
    def released(self):
        """True after release()."""
        return bool(self.released_)

    def __len__(self):
        self._check_alive()
        return self.shape_[0]

    def __repr__(self):
        if self.released_:
            return f"<{type(self).__name__} released>"
        if self.table == NULL:
            return f"<{type(self).__name__} uninitialised>"
        return (f"<{type(self).__name__} shape=({self.shape_[0]}, {self.shape_[1]}) "
                f"format={self.format!r} readonly={bool(self.readonly_)}>")

    # -- state changes (refused while exported) -----------------------------------------------

    def reinterpret_data(self, new_format):
        """View the same row bytes as elements of new_format; cols becomes row_bytes // itemsize."""
        self._check_alive()
        fmt, itemsize = _parse_format(new_format)
        if fmt == self.format_:
            return  # nothing changes, so nothing needs refusing (as in 0.1.0), even if exported
        self._check_unlocked("reinterpret_data")
        cdef Py_ssize_t row_bytes = self.shape_[1] * self.itemsize_
        if row_bytes % <Py_ssize_t>itemsize != 0:
            raise ValueError(f"row of {row_bytes} bytes is not divisible by itemsize {itemsize} "
                             f"of format {new_format!r}")
        self.shape_[1] = row_bytes // <Py_ssize_t>itemsize
        self.strides_[1] = itemsize
        self.itemsize_ = itemsize
        self.format_ = fmt
        self.elem_kind = _element_kind(fmt)

    def make_read_only(self):
        """Make every later export read-only (irreversible)."""
        self._check_alive()
        if self.readonly_:
            return  # nothing changes, so nothing needs refusing (as in 0.1.0), even if exported
        self._check_unlocked("make_read_only")
        self.readonly_ = True

    def release(self):
        """Free owned memory / drop references to borrowed memory now; idempotent.

        Raises BufferError while buffers are exported.
        """
        if self.released_:
            return
        self._check_unlocked("release")
        # Released first: dropping the last reference to a nanny may run Python code
        # (a __del__) that must already see this object as released.
        self.released_ = True
        self._release_resources()

    cdef void _release_resources(self) noexcept:
        # Detach everything first: dropping keepalive may run Python code (a nanny's __del__,
        # a source's __release_buffer__), which must find this object already empty.
        cdef void* data = self.owned_data
        cdef void** table = self.owned_table
        self.owned_data = NULL
        self.owned_table = NULL
        self.table = NULL
        self.shape_[0] = self.shape_[1] = 0
        keep = self.keepalive
        self.keepalive = None
        free(table)
        free(data)
        del keep

    def __enter__(self):
        self._check_alive()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    # -- pickling / copying: never serialise a pointer ----------------------------------------

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {type(self).__name__}: it holds raw pointers; pickle "
                        "mem.to_numpy() instead")

    def __copy__(self):
        raise TypeError(f"cannot copy.copy {type(self).__name__}: it holds raw pointers; use "
                        "mem.copy() for an owned copy of the data")

    def __deepcopy__(self, memo):
        raise TypeError(f"cannot copy.deepcopy {type(self).__name__}: it holds raw pointers; use "
                        "mem.copy() for an owned copy of the data")

    # -- copying data -------------------------------------------------------------------------

    def copy_from(self, obj, cast=False):
        """Copy every element of the 2-D buffer obj (direct or indirect) into self."""
        _copy_between(obj, self, bool(cast))

    def copy_to(self, obj, cast=False):
        """Copy every element of self into the writable 2-D buffer obj (direct or indirect)."""
        _copy_between(self, obj, bool(cast))

    def copy(self, readonly=None):
        """An owned copy of the data (same shape and format); read-only like self unless given."""
        ro = None if readonly is None else bool(readonly)  # may run code: before the checks
        self._check_alive()
        if ro is None:
            ro = self.readonly_
        cdef IndirectMemory2D out = _new_owned(self.shape_[0], self.shape_[1], self.format_,
                                               self.itemsize_, False)
        out.copy_from(self)
        out.readonly_ = ro
        return out

    def to_numpy(self):
        """A new C-ordered NumPy array holding a copy of the data."""
        self._check_alive()
        np = _import_numpy("to_numpy")
        cdef Py_ssize_t rows = self.shape_[0], cols = self.shape_[1]
        out = np.empty((rows, cols), dtype=_numpy_dtype(np, self.format_, self.itemsize_))
        # Sub-array elements ('2i') make out (rows, cols, 2): copy into a 2-D view of it.
        target = out if out.ndim == 2 else out.reshape(
            rows, cols, math.prod(out.shape[2:])).view(
            np.dtype((np.void, self.itemsize_))).reshape(rows, cols)
        # The dtype was parsed from our own format, so the bytes mean the same thing even where
        # NumPy spells the format differently ('2i', '!d', 'c'...): copy them as they are.
        _copy_between(self, target, True)
        return out

    def direct_view(self):
        """A zero-copy C-contiguous 2-D memoryview, if the rows lie back to back in memory.

        Counts as an export of self. BufferError otherwise.
        """
        self._check_alive()
        cdef _DirectExport exporter = _DirectExport.__new__(_DirectExport)
        exporter.parent = self
        return memoryview(exporter)


cdef inline bint _table_fits(IndirectMemory2D mem, char kind, Py_ssize_t itemsize, bint writable,
                             Py_ssize_t row_offset) noexcept:
    """The typed accessors' fast path: every check passes (alive, native element of this kind
    and size, writable if asked, the row offset asked for), decided by C comparisons. When
    it says no, checked_table() runs the full check and raises the right error."""
    if mem.released_ or mem.table == NULL or mem.elem_kind != kind \
            or mem.itemsize_ != itemsize or (writable and mem.readonly_) \
            or mem.suboffsets_[0] != row_offset:
        return False
    mem.layout_trusted = False  # C may re-point rows from now on
    return True


cdef IndirectMemory2D _new_owned(Py_ssize_t rows, Py_ssize_t cols, bytes fmt,
                                 Py_ssize_t itemsize, bint readonly):
    """Owned zeroed memory for an already validated format."""
    _check_dims(rows, cols)
    cdef Py_ssize_t total = _total_bytes(rows, cols, itemsize)
    cdef Py_ssize_t i, row_bytes = cols * itemsize
    cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
    # One zeroed data block plus one table: creation costs what numpy.zeros costs, and the
    # rows lie back to back (so direct_view works). Never a zero-byte request (may be NULL).
    self.owned_table = <void**>malloc((rows if rows > 0 else 1) * sizeof(void*))
    self.owned_data = calloc(total if total > 0 else 1, 1)
    if self.owned_table == NULL or self.owned_data == NULL:
        # __dealloc__ frees whichever of the two succeeded.
        raise MemoryError(f"cannot allocate {rows}x{cols} elements of format "
                          f"{fmt.decode('ascii')!r} ({total} bytes)")
    cdef char* data = <char*>self.owned_data
    for i in range(rows):
        self.owned_table[i] = data + i * row_bytes
    self._init_layout(self.owned_table, rows, cols, fmt, itemsize, readonly, 0, None)
    self.layout_trusted = True
    return self

