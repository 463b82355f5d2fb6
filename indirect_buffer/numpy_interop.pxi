# NumPy interop: element dtypes for to_numpy(), and as_indirect().

# format -> _DtypeRecord. Formats come from foreign exporters too: bounded, and past the bound
# a dtype is simply worked out again. Python code can reach the dict through the garbage
# collector (gc.get_referrers), so a record is sealed and says which format it was made for.
cdef dict _numpy_dtype_cache = {}
cdef Py_ssize_t _NUMPY_DTYPE_CACHE_MAX = 64


@cython.final
@cython.auto_pickle(False)
cdef class _DtypeRecord:
    """A NumPy dtype worked out for one format and itemsize (see _numpy_dtype)."""
    cdef bytes fmt
    cdef Py_ssize_t itemsize
    cdef object dtype

    def __cinit__(self, seal, bytes fmt, Py_ssize_t itemsize, dtype):
        if seal is not _SEAL:
            raise TypeError("dtype records are made by indirect_buffer itself")
        self.fmt = fmt
        self.itemsize = itemsize
        self.dtype = dtype


cdef object _numpy_dtype(object np, bytes fmt, Py_ssize_t itemsize):
    """The dtype NumPy reads the format as (never one holding Python objects)."""
    cdef _DtypeRecord record
    cached = _numpy_dtype_cache.get(fmt)
    if type(cached) is _DtypeRecord:
        record = <_DtypeRecord>cached
        if record.fmt == fmt and record.itemsize == itemsize:
            return record.dtype
    # Let NumPy parse the PEP 3118 format from a tiny direct export, so every struct format
    # NumPy understands maps exactly as it would for any buffer.
    probe = _new_owned(1, 1, fmt, itemsize, False)
    try:
        arr = np.asarray(probe.direct_view())
    except Exception as exc:
        raise ValueError(f"NumPy cannot represent format {fmt.decode('ascii')!r}: "
                         f"{exc}") from None
    # A sub-array format ('2i') comes back as extra trailing dimensions.
    dt = arr.dtype if arr.ndim == 2 else np.dtype((arr.dtype, arr.shape[2:]))
    if dt.itemsize != itemsize or dt.hasobject:
        raise ValueError(f"NumPy reads format {fmt.decode('ascii')!r} as {dt} of "
                         f"{dt.itemsize} bytes, not as {itemsize} bytes of plain data")
    if len(_numpy_dtype_cache) < _NUMPY_DTYPE_CACHE_MAX:
        _numpy_dtype_cache[fmt] = _DtypeRecord(_SEAL, fmt, itemsize, dt)
    return dt


cdef object _import_numpy(str what):
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is None:  # also when sys.modules["numpy"] is None, which `import` lets through
        raise ImportError(f"{what}() needs NumPy, which is not installed (pip install numpy)")
    return numpy



cdef IndirectMemory2D _copy_of_2d_buffer(object obj):
    """An owned copy of obj's 2-D buffer (any strides and suboffsets), or None if it is not
    2-D."""
    source = memoryview(obj)
    try:
        if source.ndim != 2:
            return None
        fmt = source.format.encode("ascii", "replace")
        out = _new_owned(source.shape[0], source.shape[1], fmt, source.itemsize, False)
    finally:
        source.release()
    out.copy_from(obj)
    return out


def as_indirect(obj, format=None, bint readonly=True, indirect=None):
    """obj as an IndirectMemory2D: the same object, a zero-copy row view, or an owned copy.

    Accepts an IndirectMemory2D, any buffer with contiguous rows, a non-contiguous array or
    a nested sequence (the last two need NumPy). format, if given, is the element format the
    caller needs; values are converted (through NumPy) when it differs. readonly=False asks
    for writable memory: a read-only obj is refused with BufferError rather than copied.
    Writes to a copy do not reach obj; check `result is obj` or use view_from_rows where
    they must.

    indirect (a sequence of dimensions) asks for N-D memory (an IndirectMemory) with pointer
    tables at those dimensions instead, of obj's own shape: obj itself if it already is
    such memory, a zero-copy view_from_array, or an owned copy.
    """
    cdef IndirectMemory2D mem
    cdef Py_buffer probe
    want = None if format is None else _canonical_format(_parse_format(format)[0])
    if indirect is not None:
        return _as_indirect_nd(obj, format, want, readonly, _indirect_dims(indirect))
    if isinstance(obj, IndirectMemory2D):
        mem = <IndirectMemory2D>obj
        mem._check_alive()
        if not readonly and mem.readonly_:
            raise BufferError("writable memory was requested, but the IndirectMemory2D is "
                              "read-only")
        if want is None or want == _canonical_format(mem.format_):
            return mem
    elif PyObject_CheckBuffer(obj):
        if not readonly:
            _check_writable(obj)
        try:
            view = _view_from_lines(obj, bool(readonly), False)
        except BufferError:
            view = None
        if view is not None and (want is None or want == _canonical_format(view.format_)):
            return view
        if view is not None:
            obj = view  # converted to the wanted format below (NumPy cannot read obj itself
            #            if it is PIL-style; the view it can, through to_numpy())
        else:
            # Rows that are not contiguous, or a PIL-style buffer (indirect in any dimension,
            # which NumPy cannot read): the copy engine follows every suboffset.
            view = _copy_of_2d_buffer(obj)
            if view is not None:
                if want is None or want == _canonical_format(view.format_):
                    if readonly:
                        view.make_read_only()
                    return view
                obj = view  # converted to the wanted format below
    if format is not None:
        out = _converted_copy(obj, format, None, readonly)
        if out is not None:
            return out
    np = _import_numpy("as_indirect")
    if isinstance(obj, IndirectMemory):
        obj = (<IndirectMemory>obj).to_numpy()
    dtype = None
    if format is not None:
        fmt_bytes, fmt_size = _parse_format(format)
        dtype = _numpy_dtype(np, fmt_bytes, fmt_size)
    arr = np.asarray(obj, dtype=dtype)
    if arr.ndim == 0:
        raise ValueError(f"expected 1-D or more dimensional data, got a scalar {arr!r}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    elif arr.ndim > 2:
        # One row per index of the first dimension, as view_from_rows makes for N-D input.
        arr = np.ascontiguousarray(arr).reshape(arr.shape[0], math.prod(arr.shape[1:]))
    # The array's own buffer format, so dtypes that struct cannot spell (complex) work too.
    source = memoryview(arr)
    out = _new_owned(arr.shape[0], arr.shape[1], source.format.encode("ascii"),
                     source.itemsize, False)
    out.copy_from(arr)
    if readonly:
        out.make_read_only()
    return out



cdef IndirectMemory _converted_copy(object obj, object format, tuple indirect,
                                    bint readonly):
    """obj's values converted (as casting='unsafe') in one pass into new owned memory of
    format, of obj's shape, with tables at the indirect dimensions (None: the 2-D T**); or
    None when obj is not a buffer of such a shape or either format is not one the copy
    engine converts (NumPy converts those)."""
    cdef Py_buffer view
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef int d, ndim, swapped
    if isinstance(obj, IndirectMemory):
        (<IndirectMemory>obj)._check_alive()
    elif not PyObject_CheckBuffer(obj):
        return None
    fmt, itemsize = _parse_format(format)
    if ib_elem_type(<bytes>fmt, itemsize, &swapped) == IB_T_NONE:
        return None
    _acquire(obj, &view, PyBUF_FULL_RO)
    try:
        ndim = view.ndim
        if (ndim != 2 if indirect is None else ndim < 2 or ndim > IB_MAX_NDIM) \
                or view.shape == NULL or ib_elem_type(_format_of(&view), view.itemsize,
                                                      &swapped) == IB_T_NONE:
            return None
        for d in range(ndim):
            shape[d] = view.shape[d]
    finally:
        PyBuffer_Release(&view)
    cdef unsigned int mask = 1 if indirect is None else _parse_indirect(indirect, ndim)
    cdef IndirectMemory out = _new_owned_nd(ndim, shape, fmt, itemsize, mask, False)
    _copy_between(obj, out, IB_CASTING_UNSAFE)
    if readonly:
        out.readonly_ = True
    return out


cdef int _check_writable(object obj) except -1:
    """BufferError if obj's buffer is read-only (writable memory was asked for)."""
    cdef Py_buffer probe
    PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO)
    is_readonly = probe.readonly
    PyBuffer_Release(&probe)
    if is_readonly:
        raise BufferError(f"writable memory was requested, but the {type(obj).__name__} is "
                          "read-only")
    return 0


cdef IndirectMemory _copy_of_buffer_nd(object obj, tuple indirect):
    """An owned copy of obj's buffer (any strides and suboffsets) with pointer tables at the
    indirect dimensions, or None if it has fewer than 2 or more than IB_MAX_NDIM
    dimensions."""
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef int d, ndim
    source = memoryview(obj)
    try:
        ndim = source.ndim
        if ndim < 2 or ndim > IB_MAX_NDIM:
            return None
        for d in range(ndim):
            shape[d] = source.shape[d]
        fmt = source.format.encode("ascii", "replace")
        itemsize = source.itemsize
    finally:
        source.release()
    out = _new_owned_nd(ndim, shape, fmt, itemsize, _parse_indirect(indirect, ndim), False)
    out.copy_from(obj)
    return out


cdef IndirectMemory _as_indirect_nd(object obj, object format, object want, bint readonly,
                                    tuple indirect):
    """as_indirect(obj, format, readonly, indirect) for N-D memory (see as_indirect)."""
    cdef IndirectMemory mem
    cdef IndirectMemory out
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef int d
    if isinstance(obj, IndirectMemory):
        mem = <IndirectMemory>obj
        mem._check_alive()
        if not readonly and mem.readonly_:
            raise BufferError(f"writable memory was requested, but the {type(mem).__name__} "
                              "is read-only")
        same_layout = _parse_indirect(indirect, mem.ndim_) == _mask_of(mem.suboffsets_,
                                                                        mem.ndim_)
        if want is None or want == _canonical_format(mem.format_):
            if same_layout:
                return mem
            out = _new_owned_nd(mem.ndim_, mem.shape_, mem.format_, mem.itemsize_,
                                _parse_indirect(indirect, mem.ndim_), False)
            out.copy_from(mem)
            if readonly:
                out.make_read_only()
            return out
    elif PyObject_CheckBuffer(obj):
        if not readonly:
            _check_writable(obj)
        try:
            view = _view_nd(obj, indirect, readonly)
        except BufferError:
            view = None
        if view is None:
            # Not contiguous where it must be, or itself indirect: the copy engine follows
            # every suboffset.
            view = _copy_of_buffer_nd(obj, indirect)
            if view is not None and readonly:
                view.make_read_only()
        if view is not None:
            if want is None or want == _canonical_format(view.format_):
                return view
            obj = view  # converted to the wanted format below
    if format is not None:
        out = _converted_copy(obj, format, indirect, readonly)
        if out is not None:
            return out
    np = _import_numpy("as_indirect")
    if isinstance(obj, IndirectMemory):
        obj = (<IndirectMemory>obj).to_numpy()
    dtype = None
    if format is not None:
        fmt_bytes, fmt_size = _parse_format(format)
        dtype = _numpy_dtype(np, fmt_bytes, fmt_size)
    arr = np.asarray(obj, dtype=dtype)
    if arr.ndim < 2 or arr.ndim > IB_MAX_NDIM:
        raise ValueError(f"indirect memory needs 2 to {IB_MAX_NDIM} dimensions, got an array "
                         f"of shape {arr.shape}")
    for d in range(arr.ndim):
        shape[d] = arr.shape[d]
    # The array's own buffer format, so dtypes that struct cannot spell (complex) work too.
    source = memoryview(arr)
    out = _new_owned_nd(arr.ndim, shape, source.format.encode("ascii"), source.itemsize,
                        _parse_indirect(indirect, arr.ndim), False)
    source.release()
    out.copy_from(arr)
    if readonly:
        out.make_read_only()
    return out
