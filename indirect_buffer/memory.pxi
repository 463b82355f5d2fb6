# IndirectMemory: N-D indirect memory (pointer tables at chosen dimensions), its state
# changes, accessors and copies. IndirectMemory2D (memory2d.pxi) is its 2-D T** case.

@cython.no_gc_clear  # keepalive must outlive every export, whatever order gc clears in
@cython.auto_pickle(False)
cdef class IndirectMemory:
    """N-D indirect memory exported through the buffer protocol: pointer tables at chosen
    dimensions (a T*** for 3-D by default; frames: a table over H x W blocks).

    Build one with create_memory, from_address, from_ctype_ptr, view_from_array or
    as_indirect(..., indirect=...) (or create_nd/from_ptr_nd from Cython). Memory whose
    layout is the 2-D T** comes back as an IndirectMemory2D.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} cannot be instantiated directly; use "
                        f"{type(self).__name__}.create_memory(), from_address(), "
                        "from_ctype_ptr() or a view constructor")

    def __dealloc__(self):
        # export_count is 0 here: every view holds a reference to self.
        _forget_lent_table(self)
        free(self.owned_table)
        free(self.owned_data)
        self.owned_table = NULL
        self.owned_data = NULL
        self.table = NULL

    # -- the one initialiser every constructor funnels into ------------------------------------

    cdef int _init_geometry(self, void** table, int ndim, const Py_ssize_t* shape,
                            const Py_ssize_t* strides, const Py_ssize_t* suboffsets,
                            bytes format, Py_ssize_t itemsize, bint readonly,
                            object keepalive) except -1:
        cdef int d
        if ndim < 1 or ndim > IB_MAX_NDIM:
            raise ValueError(f"ndim must be 1 to {IB_MAX_NDIM}, got {ndim}")
        for d in range(ndim):
            if shape[d] < 0:
                raise ValueError(f"shape[{d}] must be >= 0, got {shape[d]}")
        _nd_bytes(ndim, shape, itemsize)
        if table == NULL:
            raise ValueError("the pointer table is NULL")
        self.table = table
        self.ndim_ = ndim
        for d in range(IB_MAX_NDIM):
            self.shape_[d] = shape[d] if d < ndim else 0
            self.strides_[d] = strides[d] if d < ndim else 0
            self.suboffsets_[d] = suboffsets[d] if d < ndim else -1
        self.itemsize_ = itemsize
        self.format_ = format
        self.elem_kind = _element_kind(format)
        self.levels_ = _pointer_levels(ndim, shape, strides, suboffsets, itemsize)
        self.readonly_ = readonly
        self.keepalive = keepalive
        self.layout_trusted = False  # constructors that know better set it afterwards
        return 0

    cdef int _check_alive(self) except -1:
        if self.released_:
            raise ValueError(f"operation on released {type(self).__name__}")
        if self.table == NULL:
            # Only reachable through __new__ without a constructor.
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
    cdef IndirectMemory create_nd(int ndim, const Py_ssize_t* shape, object format,
                                  unsigned int indirect, bint readonly):
        if ndim < 2 or ndim > IB_MAX_NDIM or shape == NULL:
            raise ValueError(f"ndim must be 2 to {IB_MAX_NDIM} with a shape, got {ndim}")
        if indirect == 0:
            indirect = (1u << (ndim - 1)) - 1
        fmt, itemsize = _parse_format(format)
        return _new_owned_nd(ndim, shape, fmt, itemsize, indirect, readonly)

    @staticmethod
    cdef IndirectMemory from_ptr_nd(void* ptr, int ndim, const Py_ssize_t* shape,
                                    object format, unsigned int indirect,
                                    const Py_ssize_t* offsets, bint readonly,
                                    object memory_nanny):
        if ndim < 2 or ndim > IB_MAX_NDIM or shape == NULL:
            raise ValueError(f"ndim must be 2 to {IB_MAX_NDIM} with a shape, got {ndim}")
        if indirect == 0:
            indirect = (1u << (ndim - 1)) - 1
        cdef int d
        if offsets != NULL:
            for d in range(ndim):
                if indirect >> d & 1 and offsets[d] < 0:
                    raise ValueError(f"offsets[{d}] must be >= 0, got {offsets[d]}")
        fmt, itemsize = _parse_format(format)
        return _wrap_nd(ptr, ndim, shape, fmt, itemsize, indirect, offsets, readonly,
                        memory_nanny, memory_nanny is None)

    # -- typed accessors for C calls ----------------------------------------------------------

    cdef void** ptr_table(self) noexcept:
        self.layout_trusted = False  # C may re-point rows from now on
        return self.table

    cdef int _check_table_request(self, object format, bint writable,
                                  Py_ssize_t row_offset) except -1:
        """What every checked table hands out is: alive, of the element format asked for
        (None: any), writable if asked, with the data row_offset (>= 0) bytes after every
        pointer, the offset the caller's C API expects."""
        cdef Py_ssize_t offsets[IB_MAX_NDIM]
        cdef int d
        if row_offset < 0:
            raise ValueError(f"row_offset must be >= 0, got {row_offset}")
        for d in range(IB_MAX_NDIM):
            offsets[d] = row_offset
        return _check_request(self, format, writable, offsets, False)

    cdef void* checked_levels(self, object format, bint writable, int levels,
                              Py_ssize_t row_offset=0) except NULL:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if levels == 1 and _needs_c_table(self, row_offset):
            return <void*>_window_c_table(self, format, writable, row_offset)
        self._check_table_request(format, writable, row_offset)
        if self.levels_ != levels:
            raise BufferError(f"a table of {levels} pointer level(s) (T{'*' * (levels + 1)}) "
                              f"was requested, but the memory is {_layout_text(self)}")
        self.layout_trusted = False  # C may re-point rows from now on
        return <void*>self.table

    cdef void** checked_table(self, object format, bint writable,
                              Py_ssize_t row_offset=0) except NULL:
        return <void**>self.checked_levels(format, writable, 1, row_offset)

    cdef double** double_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(double), writable, row_offset, 1):
            return <double**>self.table
        return <double**>self.checked_table("d", writable, row_offset)

    cdef float** float_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(float), writable, row_offset, 1):
            return <float**>self.table
        return <float**>self.checked_table("f", writable, row_offset)

    cdef int** int_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int), writable, row_offset, 1):
            return <int**>self.table
        return <int**>self.checked_table("i", writable, row_offset)

    cdef long** long_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(long), writable, row_offset, 1):
            return <long**>self.table
        return <long**>self.checked_table("l", writable, row_offset)

    cdef long long** longlong_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(long long), writable, row_offset, 1):
            return <long long**>self.table
        return <long long**>self.checked_table("q", writable, row_offset)

    cdef unsigned char** uchar_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", 1, writable, row_offset, 1):
            return <unsigned char**>self.table
        return <unsigned char**>self.checked_table("B", writable, row_offset)

    cdef double*** double_table3(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(double), writable, row_offset, 2):
            return <double***>self.table
        return <double***>self.checked_levels("d", writable, 2, row_offset)

    cdef float*** float_table3(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(float), writable, row_offset, 2):
            return <float***>self.table
        return <float***>self.checked_levels("f", writable, 2, row_offset)

    cdef int*** int_table3(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int), writable, row_offset, 2):
            return <int***>self.table
        return <int***>self.checked_levels("i", writable, 2, row_offset)

    cdef unsigned char*** uchar_table3(self, bint writable,
                                       Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", 1, writable, row_offset, 2):
            return <unsigned char***>self.table
        return <unsigned char***>self.checked_levels("B", writable, 2, row_offset)

    # -- fixed-width tables (0.4) -------------------------------------------------------------
    # Integer elements pass by kind (signed or unsigned) and size, however their format is
    # spelt. The checked path asks for the standard-size format ('=i': a 4-byte signed
    # integer in native order), which accepts the same elements and, refusing, names both
    # formats.

    cdef int8_t** int8_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int8_t), writable, row_offset, 1):
            return <int8_t**>self.table
        return <int8_t**>self.checked_table("=b", writable, row_offset)

    cdef int16_t** int16_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int16_t), writable, row_offset, 1):
            return <int16_t**>self.table
        return <int16_t**>self.checked_table("=h", writable, row_offset)

    cdef int32_t** int32_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int32_t), writable, row_offset, 1):
            return <int32_t**>self.table
        return <int32_t**>self.checked_table("=i", writable, row_offset)

    cdef int64_t** int64_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int64_t), writable, row_offset, 1):
            return <int64_t**>self.table
        return <int64_t**>self.checked_table("=q", writable, row_offset)

    cdef uint8_t** uint8_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint8_t), writable, row_offset, 1):
            return <uint8_t**>self.table
        return <uint8_t**>self.checked_table("=B", writable, row_offset)

    cdef uint16_t** uint16_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint16_t), writable, row_offset, 1):
            return <uint16_t**>self.table
        return <uint16_t**>self.checked_table("=H", writable, row_offset)

    cdef uint32_t** uint32_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint32_t), writable, row_offset, 1):
            return <uint32_t**>self.table
        return <uint32_t**>self.checked_table("=I", writable, row_offset)

    cdef uint64_t** uint64_table(self, bint writable, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint64_t), writable, row_offset, 1):
            return <uint64_t**>self.table
        return <uint64_t**>self.checked_table("=Q", writable, row_offset)

    cdef const int8_t* const* const_int8_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int8_t), False, row_offset, 1):
            return <const int8_t* const*>self.table
        return <const int8_t* const*>self.checked_table("=b", False, row_offset)

    cdef const int16_t* const* const_int16_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int16_t), False, row_offset, 1):
            return <const int16_t* const*>self.table
        return <const int16_t* const*>self.checked_table("=h", False, row_offset)

    cdef const int32_t* const* const_int32_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int32_t), False, row_offset, 1):
            return <const int32_t* const*>self.table
        return <const int32_t* const*>self.checked_table("=i", False, row_offset)

    cdef const int64_t* const* const_int64_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"i", sizeof(int64_t), False, row_offset, 1):
            return <const int64_t* const*>self.table
        return <const int64_t* const*>self.checked_table("=q", False, row_offset)

    cdef const uint8_t* const* const_uint8_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint8_t), False, row_offset, 1):
            return <const uint8_t* const*>self.table
        return <const uint8_t* const*>self.checked_table("=B", False, row_offset)

    cdef const uint16_t* const* const_uint16_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint16_t), False, row_offset, 1):
            return <const uint16_t* const*>self.table
        return <const uint16_t* const*>self.checked_table("=H", False, row_offset)

    cdef const uint32_t* const* const_uint32_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint32_t), False, row_offset, 1):
            return <const uint32_t* const*>self.table
        return <const uint32_t* const*>self.checked_table("=I", False, row_offset)

    cdef const uint64_t* const* const_uint64_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"u", sizeof(uint64_t), False, row_offset, 1):
            return <const uint64_t* const*>self.table
        return <const uint64_t* const*>self.checked_table("=Q", False, row_offset)

    cdef const float* const* const_float_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(float), False, row_offset, 1):
            return <const float* const*>self.table
        return <const float* const*>self.checked_table("f", False, row_offset)

    cdef const double* const* const_double_table(self, Py_ssize_t row_offset=0) except NULL:
        if _table_fits(self, b"f", sizeof(double), False, row_offset, 1):
            return <const double* const*>self.table
        return <const double* const*>self.checked_table("d", False, row_offset)

    @staticmethod
    cdef IndirectMemory from_const_ptr_nd(const void* ptr, int ndim, const Py_ssize_t* shape,
                                          object format, unsigned int indirect,
                                          const Py_ssize_t* offsets, object memory_nanny):
        # Read-only memory: nothing here writes through the pointers (a lent wrapper's
        # revocation re-points its own copy of the root table, never the lender's).
        return IndirectMemory.from_ptr_nd(<void*>ptr, ndim, shape, format, indirect, offsets,
                                          True, memory_nanny)

    cdef Py_ssize_t dim(self, int d) except -1 nogil:
        if self.released_ or self.table == NULL or d < 0 or d >= self.ndim_:
            with gil:
                self._check_alive()
                raise ValueError(f"dimension {d} out of range for {self.ndim_} dimensions")
        return self.shape_[d]

    cdef int pin(self) except -1:
        self._check_alive()
        self.pins += 1
        self.exports += 1
        cdef _WindowOf link = _window_link(self)
        if link is not None:
            # C holds the base's pointers too: pin it (counted even if a revoked loan).
            link.base.pins += 1
            link.base.exports += 1
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
        cdef _WindowOf link = _window_link(self)
        if link is not None:
            link.base.unpin()

    def pinned(self, format=None, writable=False, Py_ssize_t row_offset=0, offsets=None):
        """Context manager for C calls from ctypes/cffi: `with mem.pinned("d") as address:`.

        __enter__ checks the memory like the Cython typed tables do (not released; element
        format `format` if given, TypeError otherwise; writable if asked, BufferError
        otherwise; the data `row_offset` bytes after every pointer, or offsets[k] bytes
        after those of the k-th indirect dimension when `offsets` is given, ValueError
        otherwise) and returns the integer address of the table. Until __exit__ the memory
        counts as exported: release(), reinterpret_data() and make_read_only() raise
        BufferError, from any thread.
        """
        cdef _Pinned pin = _Pinned.__new__(_Pinned)
        pin.mem = self
        pin.format = format
        pin.writable = bool(writable)
        pin.row_offset = row_offset
        pin.offsets = _offsets_arg(offsets)
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
    def create_memory(shape, format, indirect=None, readonly=False):
        """Owned, zero-initialised memory of `shape` with pointer tables at the `indirect`
        dimensions (default: all but the last, a T*** for 3-D; (0,) for frames: a table of
        pointers to blocks): one data block and one block of tables.
        """
        cdef Py_ssize_t shp[IB_MAX_NDIM]
        cdef int ndim = _parse_shape(shape, shp)
        cdef unsigned int mask = _parse_indirect(_indirect_dims(indirect), ndim)
        fmt, itemsize = _parse_format(format)
        return _new_owned_nd(ndim, shp, fmt, itemsize, mask, bool(readonly))

    @staticmethod
    def from_address(address, shape, format, indirect=None, readonly=False, memory_nanny=None,
                     offsets=None):
        """Wrap the pointer structure whose root table is at `address` (an int-like, a ctypes
        pointer or c_void_p, or a cffi pointer), indirect at `indirect` (default all but the
        last), with the data `offsets[k]` bytes after each pointer of the k-th indirect
        dimension (default 0). Tables are C-contiguous arrays of pointers, blocks
        C-contiguous. memory_nanny (and a pointer object) is kept alive; every pointer is
        checked for NULL now, but that the structure is valid is the caller's promise.
        Without a memory_nanny the memory is lent: release() revokes the loan.
        """
        cdef Py_ssize_t shp[IB_MAX_NDIM]
        cdef Py_ssize_t offs[IB_MAX_NDIM]
        cdef int ndim = _parse_shape(shape, shp)
        cdef unsigned int mask = _parse_indirect(_indirect_dims(indirect), ndim)
        _parse_offsets(_offsets_arg(offsets), mask, ndim, offs)
        fmt, itemsize = _parse_format(format)
        ro = bool(readonly)
        # Last: nothing of the caller's may run between reading a pointer object and
        # wrapping what it points to (see _address_and_keep).
        lent = memory_nanny is None
        value, keep = _address_and_keep(address)
        if keep is not None:
            memory_nanny = (keep, memory_nanny)
        return _wrap_nd(<void*><uintptr_t>value, ndim, shp, fmt, itemsize, mask, offs, ro,
                        memory_nanny, lent)

    @staticmethod
    def from_ctype_ptr(ptr, shape, readonly=False, memory_nanny=None, offsets=None):
        """Wrap a ctypes pointer structure: an array of POINTER(POINTER(T)) or a
        POINTER(POINTER(POINTER(T))) for a T*** (one pointer level per POINTER), over
        `shape`; the tables are its first dimensions. ptr (and memory_nanny) is kept alive.
        Without a memory_nanny the memory is lent: release() revokes the loan.
        """
        cdef Py_ssize_t shp[IB_MAX_NDIM]
        cdef Py_ssize_t offs[IB_MAX_NDIM]
        cdef int ndim = _parse_shape(shape, shp)
        ro = bool(readonly)
        offs_arg = _offsets_arg(offsets)
        # Last (see _ctypes_table): only our own code runs after it.
        address, levels, fmt, entries, keep = _ctypes_table(ptr)
        if levels >= ndim:
            raise ValueError(f"a ctypes table of {levels} pointer level(s) needs at least "
                             f"{levels + 1} dimensions, got shape {_shape_text(shp, 0, ndim)}")
        if entries >= 0 and entries < shp[0]:
            raise BufferError(f"ctypes table has {entries} entries, {shp[0]} requested")
        cdef unsigned int mask = (1u << levels) - 1
        lent = memory_nanny is None
        keep = (keep, memory_nanny)
        _parse_offsets(offs_arg, mask, ndim, offs)
        fmt_bytes, itemsize = _parse_format(fmt)
        return _wrap_nd(<void*><uintptr_t>address, ndim, shp, fmt_bytes, itemsize, mask, offs,
                        ro, keep, lent)

    @staticmethod
    def view_from_array(array, indirect=None, readonly=False):
        """Zero-copy indirect view of an N-D buffer (e.g. a NumPy array): pointer tables at the
        `indirect` dimensions (default all but the last) over blocks of the source, which
        must be C-contiguous after the last indirect dimension. The source is kept alive.
        """
        return _view_nd(array, _indirect_dims(indirect), bool(readonly))

    # -- properties ---------------------------------------------------------------------------

    @property
    def shape(self):
        """The size of each dimension."""
        self._check_alive()
        return tuple([self.shape_[d] for d in range(self.ndim_)])

    @property
    def ndim(self):
        """Number of dimensions."""
        self._check_alive()
        return self.ndim_

    @property
    def strides(self):
        """The buffer protocol's strides (bytes; pointer-sized in tables)."""
        self._check_alive()
        return tuple([self.strides_[d] for d in range(self.ndim_)])

    @property
    def suboffsets(self):
        """The buffer protocol's suboffsets: >= 0 where a pointer is followed, else -1."""
        self._check_alive()
        return tuple([self.suboffsets_[d] for d in range(self.ndim_)])

    @property
    def indirect(self):
        """The dimensions reached through a pointer."""
        self._check_alive()
        return _mask_dims(_mask_of(self.suboffsets_, self.ndim_), self.ndim_)

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
    def address(self):
        """Integer address of the (root) pointer table, for ctypes/cffi calls."""
        self._check_alive()
        self.layout_trusted = False  # C may re-point rows from now on
        return <uintptr_t>self.table

    @property
    def export_count(self):
        """Number of buffers currently exported (memoryviews, direct views, running copies)
        plus pins (pinned(), cdef pin())."""
        return self.exports

    @property
    def lent(self):
        """True for memory lent by its wrapper's caller (wrapped without a memory_nanny):
        release() revokes the loan, and views still out then read a snapshot."""
        return bool(self.lent_)

    @property
    def released(self):
        """True after release()."""
        return bool(self.released_)

    def __len__(self):
        self._check_alive()
        return self.shape_[0]

    def __getitem__(self, key):
        """A zero-copy window: mem[r0:r1:step, c0:c1] (a slice, an integer or '...' per
        dimension; an integer drops a dimension that is not reached through pointers).

        The window shares the memory's tables and lifetime rules: it keeps the memory
        alive and counts as one of its exports until released, and it follows a revoked
        loan. C gets a table whose pointers start at the window (pinned(), typed tables).
        """
        return _window(self, key)

    def __iter__(self):
        raise TypeError(f"{type(self).__name__} is not iterable; index it with slices "
                        "(mem[i:i+1]) or iterate over mem.to_numpy()")

    def __repr__(self):
        if self.released_:
            return f"<{type(self).__name__} released>"
        if self.table == NULL:
            return f"<{type(self).__name__} uninitialised>"
        return (f"<{type(self).__name__} shape={self.shape} {_layout_text(self)} "
                f"format={self.format!r} readonly={bool(self.readonly_)}>")

    # -- state changes (refused while exported) -----------------------------------------------

    def reinterpret_data(self, new_format):
        """View the same bytes as elements of new_format; the last dimension becomes
        its bytes // itemsize."""
        self._check_alive()
        fmt, itemsize = _parse_format(new_format)
        if fmt == self.format_:
            return  # nothing changes, so nothing needs refusing (as in 0.1.0), even if exported
        self._check_unlocked("reinterpret_data")
        cdef int last = self.ndim_ - 1
        if self.suboffsets_[last] >= 0:
            raise ValueError(f"the last dimension is reached through pointers (a window such "
                             f"as mem[:, k]): its elements are not bytes of one row")
        cdef Py_ssize_t row_bytes = self.shape_[last] * self.itemsize_
        if row_bytes % <Py_ssize_t>itemsize != 0:
            raise ValueError(f"row of {row_bytes} bytes is not divisible by itemsize {itemsize} "
                             f"of format {new_format!r}")
        if self.shape_[last] > 1 and self.strides_[last] != self.itemsize_:
            raise ValueError(f"the last dimension is not contiguous (stride "
                             f"{self.strides_[last]}, itemsize {self.itemsize_})")
        self.shape_[last] = row_bytes // <Py_ssize_t>itemsize
        self.strides_[last] = itemsize
        self.itemsize_ = itemsize
        self.format_ = fmt
        self.elem_kind = _element_kind(fmt)
        self.levels_ = _pointer_levels(self.ndim_, self.shape_, self.strides_, self.suboffsets_,
                                       itemsize)

    def make_read_only(self):
        """Make every later export read-only (irreversible)."""
        self._check_alive()
        if self.readonly_:
            return  # nothing changes, so nothing needs refusing (as in 0.1.0), even if exported
        self._check_unlocked("make_read_only")
        self.readonly_ = True

    def release(self):
        """Free owned memory / drop references to borrowed memory now; idempotent.

        Raises BufferError while buffers are exported, except for lent memory (wrapped
        without a memory_nanny), whose release revokes the loan: views still out keep
        reading a private snapshot of the data as it is now, and nothing reads or writes
        the lent memory afterwards. If a C call pinned it (and may still use lent
        addresses), the loan is revoked all the same and BufferError says so, at this and
        every later release() until the pin ends: do not free the lent memory before.
        """
        if self.released_:
            if self.lent_:
                _check_no_pin(self)  # revoked, but still pinned: keep saying so
            return
        if self.lent_:
            self._check_alive()
            _revoke(self)
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
        cdef int d
        _forget_lent_table(self)
        self.owned_data = NULL
        self.owned_table = NULL
        self.table = NULL
        for d in range(IB_MAX_NDIM):
            self.shape_[d] = 0
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

    def copy_from(self, obj, cast=False, casting=None):
        """Copy every element of the buffer obj (same shape; direct or indirect) into self,
        converting the values where the formats differ as NumPy's casting rule `casting`
        allows: 'no', 'equiv', 'safe', 'same_kind' (the default, as numpy.copyto) or
        'unsafe'. cast=True copies the bytes unchanged instead (equal itemsizes)."""
        _copy_between(obj, self, _casting_code(cast, casting))

    def copy_to(self, obj, cast=False, casting=None):
        """Copy every element of self into the writable buffer obj (same shape; direct or
        indirect), converting as copy_from does."""
        _copy_between(self, obj, _casting_code(cast, casting))

    def copy(self, readonly=None):
        """An owned copy of the data (same shape, format and indirect dimensions); read-only
        like self unless given."""
        ro = None if readonly is None else bool(readonly)  # may run code: before the checks
        self._check_alive()
        if ro is None:
            ro = self.readonly_
        # Owned memory has its tables before the last dimension (a window such as m[:, k]
        # is reached through a pointer per element: the copy has plain rows instead).
        cdef unsigned int mask = _mask_of(self.suboffsets_, self.ndim_) & \
            ((1u << (self.ndim_ - 1)) - 1)
        if self.ndim_ < 2 or mask == 0:
            raise BufferError(f"copy() makes indirect memory of 2 or more dimensions with a "
                              f"pointer table before the last one, but this "
                              f"{type(self).__name__} has shape {self.shape} and suboffsets "
                              f"{self.suboffsets}; use to_numpy(), or copy_to() into memory "
                              "of your choice")
        cdef IndirectMemory out = _new_owned_nd(
            self.ndim_, self.shape_, self.format_, self.itemsize_, mask, False)
        out.copy_from(self)
        out.readonly_ = ro
        return out

    def to_numpy(self):
        """A new C-ordered NumPy array holding a copy of the data."""
        self._check_alive()
        np = _import_numpy("to_numpy")
        shape = self.shape
        out = np.empty(shape, dtype=_numpy_dtype(np, self.format_, self.itemsize_))
        # Sub-array elements ('2i') add trailing dimensions to out: copy into a view of it
        # with one opaque element per element of self.
        target = out if out.ndim == self.ndim_ else out.reshape(
            shape + (math.prod(out.shape[self.ndim_:]),)).view(
            np.dtype((np.void, self.itemsize_))).reshape(shape)
        # The dtype was parsed from our own format, so the bytes mean the same thing even where
        # NumPy spells the format differently ('2i', '!d', 'c'...): copy them as they are.
        _copy_between(self, target, _CAST_BYTES)
        return out

    def direct_view(self):
        """A zero-copy C-contiguous memoryview, if all elements lie back to back in one block
        in C order. Counts as an export of self. BufferError otherwise.
        """
        self._check_alive()
        if self.lent_ or _in_lent_table(self.table):
            raise BufferError(f"direct_view() of lent {type(self).__name__} would point into "
                              "the lent memory past the loan; use copy() or to_numpy()")
        if self.suboffsets_[self.ndim_ - 1] >= 0:
            raise BufferError(f"direct_view() needs elements in rows, but every element of "
                              f"the last dimension is behind a pointer of its own (a window "
                              f"such as mem[:, k]); use copy_to() or to_numpy()")
        cdef _DirectExport exporter = _DirectExport.__new__(_DirectExport)
        exporter.parent = self
        return memoryview(exporter)


cdef int _check_request(IndirectMemory mem, object format, bint writable,
                        const Py_ssize_t* offsets, bint per_dimension) except -1:
    """The checks behind every checked table and pin: alive, of the element format asked for
    (None: any), writable if asked, and the data offsets[d] bytes after each pointer of
    every indirect dimension d (per_dimension: the caller named them one by one)."""
    cdef int d
    mem._check_alive()
    if format is not None and format is not mem.format_ and \
            not _is_native_element(format, mem.elem_kind, mem.itemsize_) and (
                _parse_format(format)[1] != mem.itemsize_
                or _canonical_format(format) != _canonical_format(mem.format_)):
        raise TypeError(f"element format is {mem.format!r}, not {format!r}")
    if writable and mem.readonly_:
        raise BufferError("writable table requested from read-only memory")
    for d in range(mem.ndim_):
        if mem.suboffsets_[d] >= 0 and mem.suboffsets_[d] != offsets[d]:
            if per_dimension:
                raise ValueError(f"the data behind dimension {d} starts "
                                 f"{mem.suboffsets_[d]} bytes after each pointer, not "
                                 f"{offsets[d]} as requested (offsets={_offsets_of(mem, offsets)})")
            where = ("the table's rows start" if mem.ndim_ == 2 else
                     f"the data behind dimension {d} starts")
            raise ValueError(f"{where} {mem.suboffsets_[d]} bytes after each row pointer "
                             f"(row_offset), not {offsets[d]} as requested")
    return 0


cdef tuple _offsets_of(IndirectMemory mem, const Py_ssize_t* offsets):
    """offsets[d] for the memory's indirect dimensions, as pinned(offsets=...) names them."""
    return tuple([offsets[d] for d in range(mem.ndim_) if mem.suboffsets_[d] >= 0])


cdef inline bint _table_fits(IndirectMemory mem, char kind, Py_ssize_t itemsize, bint writable,
                             Py_ssize_t row_offset, int levels) noexcept:
    """The typed accessors' fast path: every check passes (alive, native element of this kind
    and size, writable if asked, a plain table of `levels` levels with the row offset asked
    for), decided by C comparisons. When it says no, the checked path runs the full check
    and raises the right error."""
    if mem.released_ or mem.table == NULL or mem.elem_kind != kind \
            or mem.itemsize_ != itemsize or (writable and mem.readonly_) \
            or mem.levels_ != levels or mem.suboffsets_[0] != row_offset \
            or (levels > 1 and mem.suboffsets_[1] != row_offset):
        return False
    mem.layout_trusted = False  # C may re-point rows from now on
    return True


cdef str _layout_text(IndirectMemory mem):
    """T** / T*** for a plain pointer structure, else its indirect dimensions."""
    if mem.levels_ > 0:
        return f"T{'*' * (mem.levels_ + 1)}"
    return f"indirect={_mask_dims(_mask_of(mem.suboffsets_, mem.ndim_), mem.ndim_)}"
