# NumPy interop: element dtypes for to_numpy(), and as_indirect().

cdef object _numpy_dtype_cache = {}


cdef object _numpy_dtype(object np, bytes fmt, Py_ssize_t itemsize):
    key = (fmt, itemsize)
    dt = _numpy_dtype_cache.get(key)
    if dt is None:
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
        if dt.itemsize != itemsize:
            raise ValueError(f"NumPy reads format {fmt.decode('ascii')!r} as {dt} of "
                             f"{dt.itemsize} bytes, not {itemsize}")
        _numpy_dtype_cache[key] = dt
    return dt


cdef object _import_numpy(str what):
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is None:  # also when sys.modules["numpy"] is None, which `import` lets through
        raise ImportError(f"{what}() needs NumPy, which is not installed (pip install numpy)")
    return numpy



def as_indirect(obj, format=None, readonly=True):
    """obj as an IndirectMemory2D: the same object, a zero-copy row view, or an owned copy.

    Accepts an IndirectMemory2D, any buffer with contiguous rows, a non-contiguous array or
    a nested sequence (the last two need NumPy). format, if given, is the element format the
    caller needs; values are converted (through NumPy) when it differs. readonly=False asks
    for writable memory: a read-only obj is refused with BufferError rather than copied.
    Writes to a copy do not reach obj; check `result is obj` or use view_from_rows where
    they must.
    """
    cdef IndirectMemory2D mem
    cdef Py_buffer probe
    want = None if format is None else _canonical_format(_parse_format(format)[0])
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
            PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO)
            is_readonly = probe.readonly
            PyBuffer_Release(&probe)
            if is_readonly:
                raise BufferError(f"writable memory was requested, but the "
                                  f"{type(obj).__name__} is read-only")
        try:
            view = _view_from_lines(obj, bool(readonly), False)
        except BufferError:
            view = None
        if view is not None and (want is None or want == _canonical_format(view.format_)):
            return view
        if view is not None:
            view.release()
    np = _import_numpy("as_indirect")
    if isinstance(obj, IndirectMemory2D):
        obj = (<IndirectMemory2D>obj).to_numpy()
    dtype = None
    if format is not None:
        fmt_bytes, fmt_size = _parse_format(format)
        dtype = _numpy_dtype(np, fmt_bytes, fmt_size)
    arr = np.asarray(obj, dtype=dtype)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"expected 2-D data, got a {arr.ndim}-D array of shape {arr.shape}")
    # The array's own buffer format, so dtypes that struct cannot spell (complex) work too.
    source = memoryview(arr)
    out = _new_owned(arr.shape[0], arr.shape[1], source.format.encode("ascii"),
                     source.itemsize, False)
    out.copy_from(arr)
    if readonly:
        out.make_read_only()
    return out

