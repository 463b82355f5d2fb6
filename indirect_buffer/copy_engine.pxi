# The copy engine: one element copy between any two acquired 2-D buffers (direct or
# indirect), with the semantics of a copy through a temporary when they overlap.

cdef inline const char* _format_of(const Py_buffer* view) noexcept:
    if view.format == NULL:
        return _FMT_B
    return view.format


cdef int _check_exported_format(const Py_buffer* view, Py_ssize_t row) except -1:
    """An exporter's itemsize and format must be usable: itemsize > 0, ASCII format.

    row names the buffer in the message: -1 the source, -2 the destination, else a row.
    """
    cdef const char* f = _format_of(view)
    cdef Py_ssize_t i = 0
    cdef bint ascii = True
    while f[i] != 0:
        if <unsigned char>f[i] >= 128:
            ascii = False
        i += 1
    if view.itemsize > 0 and ascii:
        return 0
    what = "the source" if row == -1 else "the destination" if row == -2 else f"row {row}"
    if view.itemsize <= 0:
        raise BufferError(f"{what} has itemsize {view.itemsize}")
    raise BufferError(f"{what} has a non-ASCII format {(<bytes>f).decode('utf-8', 'replace')!r}")


# Copies of at least this many bytes run without the GIL; below it, releasing and re-taking
# the GIL costs more than the copy.
cdef enum:
    _NOGIL_BYTES = 65536


cdef inline char* _row_ptr(const Py_buffer* view, Py_ssize_t i) noexcept nogil:
    """Where row i starts: element (i, 0) before dimension 1's own suboffset, if any."""
    cdef char* p = <char*>view.buf + i * view.strides[0]
    if view.suboffsets != NULL and view.suboffsets[0] >= 0:
        p = (<char**>p)[0] + view.suboffsets[0]
    return p


cdef inline bint _inner_indirect(const Py_buffer* view) noexcept nogil:
    """True if every element of a row sits behind a pointer of its own (suboffsets[1] >= 0)."""
    return view.suboffsets != NULL and view.suboffsets[1] >= 0


cdef inline char* _elem_ptr(const Py_buffer* view, char* row, Py_ssize_t j) noexcept nogil:
    """Element j of a row that starts at row (following dimension 1's suboffset)."""
    cdef char* p = row + j * view.strides[1]
    if view.suboffsets != NULL and view.suboffsets[1] >= 0:
        p = (<char**>p)[0] + view.suboffsets[1]
    return p


cdef struct _Scan:
    bint empty      # no elements at all
    Py_ssize_t null_row   # row of the first NULL pointer (of the row, or of an element), or -1
    Py_ssize_t null_col   # its column if it is an element's pointer, else -1
    char* lo        # lowest byte touched by an element
    char* hi        # one past the highest byte touched
    char* plo       # lowest byte of a pointer the buffer follows (NULL: a direct buffer)
    char* phi       # one past the highest such byte
    char* first     # start of row 0
    bint block      # rows lie back to back with contiguous elements: one memmove copies all


cdef inline void _widen(_Scan* out, char* a, char* b) noexcept nogil:
    if out.lo == NULL or a < out.lo:
        out.lo = a
    if out.hi == NULL or b > out.hi:
        out.hi = b


cdef inline void _widen_pointers(_Scan* out, char* first, Py_ssize_t n,
                                 Py_ssize_t stride) noexcept nogil:
    """Add n pointer slots, stride bytes apart from first, to the pointer extent."""
    cdef char* a = first
    cdef char* b = first
    if stride >= 0:
        b += (n - 1) * stride
    else:
        a += (n - 1) * stride
    b += sizeof(void*)
    if out.plo == NULL or a < out.plo:
        out.plo = a
    if out.phi == NULL or b > out.phi:
        out.phi = b


cdef void _scan(const Py_buffer* view, bint trusted, _Scan* out) noexcept nogil:
    """Extent of a 2-D buffer's elements, NULL pointers at any level, and whether the
    elements form one C-contiguous block.

    trusted: the buffer is an IndirectMemory2D whose rows are known to be back to back.
    """
    cdef Py_ssize_t i, j, rows = view.shape[0], cols = view.shape[1]
    cdef Py_ssize_t stride = view.strides[1], k = view.itemsize, row_bytes = cols * k
    cdef char* start
    cdef char* a
    cdef char* b
    out.lo = out.hi = out.first = out.plo = out.phi = NULL
    out.block = False
    out.empty = rows == 0 or cols == 0
    out.null_row = out.null_col = -1
    if out.empty:
        return
    cdef bint indirect_rows = view.suboffsets != NULL and view.suboffsets[0] >= 0
    cdef Py_ssize_t rstride = view.strides[0]
    cdef char* base = <char*>view.buf
    if indirect_rows:
        _widen_pointers(out, base, rows, rstride)  # the row table
        if (<char**>base)[0] == NULL:
            out.null_row = 0
            return
    if _inner_indirect(view):
        # Every element has its own pointer: walk them all (the copy will, too).
        for i in range(rows):
            start = base + i * rstride
            if indirect_rows:
                start = (<char**>start)[0]
                if start == NULL:
                    out.null_row = i
                    return
                start += view.suboffsets[0]
            _widen_pointers(out, start, cols, stride)  # this row's element pointers
            for j in range(cols):
                a = (<char**>(start + j * stride))[0]
                if a == NULL:
                    out.null_row, out.null_col = i, j
                    return
                a += view.suboffsets[1]
                _widen(out, a, a + k)
        out.first = _row_ptr(view, 0)
        return
    cdef bint block = cols == 1 or stride == k
    out.first = _row_ptr(view, 0)
    if not indirect_rows:
        # Direct buffer: the extent follows from the strides alone, no need to walk rows.
        a = b = out.first
        if rstride >= 0:
            b += (rows - 1) * rstride
        else:
            a += (rows - 1) * rstride
        if stride >= 0:
            b += (cols - 1) * stride
        else:
            a += (cols - 1) * stride
        out.lo, out.hi = a, b + k
        out.block = block and (rows == 1 or rstride == row_bytes)
        return
    if trusted:
        out.lo, out.hi, out.block = out.first, out.first + rows * row_bytes, True
        return
    # Indirect rows: first the cheap common case, rows back to back (owned memory).
    cdef Py_ssize_t sub = view.suboffsets[0]
    cdef char** tab = <char**>base
    cdef char* expect = out.first - sub
    cdef size_t mismatch = 0
    if block and rstride == sizeof(void*):
        # Branch-free so that the compiler can vectorise it: this check is the whole cost
        # of copying owned memory apart from the memmove itself.
        for i in range(rows):
            mismatch |= <size_t>(tab[i] - (expect + i * row_bytes))
        block = mismatch == 0
        if block:
            out.lo, out.hi, out.block = out.first, out.first + rows * row_bytes, True
            return
    for i in range(rows):
        start = (<char**>(base + i * rstride))[0]
        if start == NULL:
            out.null_row = i
            return
        start += sub
        if block and start != out.first + i * row_bytes:
            block = False
        if stride >= 0:
            _widen(out, start, start + (cols - 1) * stride + k)
        else:
            _widen(out, start + (cols - 1) * stride, start + k)
    out.block = block


cdef void _copy_elements(const Py_buffer* src, const Py_buffer* dst) noexcept nogil:
    """Copy src into dst (same shape and itemsize, pointers already checked for NULL)."""
    cdef Py_ssize_t i, j, rows = src.shape[0], cols = src.shape[1], k = src.itemsize
    cdef Py_ssize_t ss = src.strides[1], ds = dst.strides[1]
    cdef bint inner = _inner_indirect(src) or _inner_indirect(dst)
    cdef char* s
    cdef char* d
    for i in range(rows):
        s = _row_ptr(src, i)
        d = _row_ptr(dst, i)
        if inner:
            for j in range(cols):
                memcpy(_elem_ptr(dst, d, j), _elem_ptr(src, s, j), k)
        elif ss == k and ds == k:
            memmove(d, s, cols * k)
        elif k == 8:
            for j in range(cols):
                memcpy(d + j * ds, s + j * ss, 8)
        elif k == 4:
            for j in range(cols):
                memcpy(d + j * ds, s + j * ss, 4)
        else:
            for j in range(cols):
                memcpy(d + j * ds, s + j * ss, k)


cdef int _check_no_null(const _Scan* scan, str what) except -1:
    """ValueError for a NULL pointer found by _scan (C code re-pointed a row or an element
    to NULL after the memory was wrapped, or a foreign exporter holds one)."""
    if scan.null_row < 0:
        return 0
    if scan.null_col >= 0:
        raise ValueError(f"element ({scan.null_row}, {scan.null_col}) of the {what} is behind "
                         "a NULL pointer")
    raise ValueError(f"row {scan.null_row} of the {what}'s pointer table is NULL")


cdef void _move(const Py_buffer* src, const Py_buffer* dst, const _Scan* ss, const _Scan* ds,
                const Py_buffer* tmp) noexcept nogil:
    """The copy itself, decided by _copy_buffers: one memmove, through tmp, or direct."""
    if ss.block and ds.block:
        # Both sides are one C-contiguous block: memmove is exact even when they overlap.
        memmove(ds.first, ss.first, <size_t>(src.shape[0] * src.shape[1] * src.itemsize))
    elif tmp != NULL:
        _copy_elements(src, tmp)
        _copy_elements(tmp, dst)
    else:
        _copy_elements(src, dst)


cdef int _copy_buffers(Py_buffer* src, Py_buffer* dst, bint src_trusted,
                       bint dst_trusted) except -1:
    """Copy with the semantics of a copy through a temporary when the two overlap."""
    cdef _Scan ss, ds
    cdef Py_ssize_t rows = src.shape[0], cols = src.shape[1]
    cdef size_t nbytes = <size_t>(rows * cols * src.itemsize)
    cdef bint big = nbytes >= _NOGIL_BYTES
    cdef Py_buffer tmp
    cdef Py_buffer* staged = NULL
    cdef Py_ssize_t tshape[2]
    cdef Py_ssize_t tstrides[2]
    if big:
        with nogil:
            _scan(src, src_trusted, &ss)
            _scan(dst, dst_trusted, &ds)
    else:
        _scan(src, src_trusted, &ss)
        _scan(dst, dst_trusted, &ds)
    if ss.empty:
        return 0
    _check_no_null(&ss, "source")
    _check_no_null(&ds, "destination")
    if ds.plo != NULL and ds.lo < ds.phi and ds.plo < ds.hi:
        raise BufferError("the destination's elements overlap the pointers it is reached "
                          "through: copying into it would overwrite them")
    if not (ss.block and ds.block) and (
            (ss.lo < ds.hi and ds.lo < ss.hi)
            or (ss.plo != NULL and ss.plo < ds.hi and ds.lo < ss.phi)):
        # The destination overlaps the source's elements or the pointers that lead to them:
        # stage through a contiguous temporary, so that the whole source is read before
        # anything is written (the result of a copy through a temporary).
        tmp = src[0]
        tmp.buf = malloc(nbytes)
        if tmp.buf == NULL:
            raise MemoryError(f"cannot allocate a {rows}x{cols} temporary for an overlapping copy")
        tmp.suboffsets = NULL
        tshape[0] = rows
        tshape[1] = cols
        tstrides[0] = cols * src.itemsize
        tstrides[1] = src.itemsize
        tmp.shape = tshape
        tmp.strides = tstrides
        staged = &tmp
    if big:
        with nogil:
            _move(src, dst, &ss, &ds, staged)
    else:
        _move(src, dst, &ss, &ds, staged)
    if staged != NULL:
        free(staged.buf)
    return 0


cdef str _describe(Py_buffer* view):
    fmt = "B" if view.format == NULL else view.format.decode("ascii", "replace")
    shape = tuple(view.shape[i] for i in range(view.ndim)) if view.shape != NULL else ()
    return f"shape {shape} format {fmt!r}"


cdef int _check_copy_compatible(Py_buffer* src, Py_buffer* dst, bint cast) except -1:
    """Both buffers are 2-D with a shape and usable formats, and hold the same elements."""
    if src.ndim != 2 or dst.ndim != 2 or src.shape == NULL or dst.shape == NULL:
        raise BufferError(f"copy needs 2-D buffers: source {_describe(src)}, "
                          f"destination {_describe(dst)}")
    if src.shape[0] != dst.shape[0] or src.shape[1] != dst.shape[1] or src.shape[0] < 0 \
            or src.shape[1] < 0:
        raise BufferError(f"shape mismatch: source {_describe(src)}, destination {_describe(dst)}")
    _check_exported_format(src, -1)
    _check_exported_format(dst, -2)
    cdef const char* sc = _format_of(src)
    cdef const char* dc = _format_of(dst)
    if not cast and src.itemsize == dst.itemsize and strcmp(sc, dc) == 0:
        return 0
    sfmt = (<bytes>sc).decode("ascii", "replace")
    dfmt = (<bytes>dc).decode("ascii", "replace")
    if cast:
        if src.itemsize != dst.itemsize:
            raise BufferError(f"cast needs equal itemsizes: source {_describe(src)} itemsize "
                              f"{src.itemsize}, destination {_describe(dst)} itemsize "
                              f"{dst.itemsize}")
    elif _canonical_format(sfmt) != _canonical_format(dfmt) or src.itemsize != dst.itemsize:
        raise BufferError(f"format mismatch: source {_describe(src)}, destination {_describe(dst)}"
                          " (pass cast=True to copy the bytes anyway)")
    return 0


cdef bint _trusted(object obj):
    return isinstance(obj, IndirectMemory2D) and (<IndirectMemory2D>obj).layout_trusted


cdef inline void _c_strides(Py_buffer* view, Py_ssize_t* storage) noexcept:
    """Point a 2-D view's NULL strides (allowed for C-contiguous data, e.g. ctypes arrays)
    at C-contiguous strides in storage."""
    if view.strides == NULL and view.ndim == 2 and view.shape != NULL:
        storage[1] = view.itemsize
        storage[0] = view.shape[1] * view.itemsize
        view.strides = storage


cdef int _copy_between(object src, object dst, bint cast) except -1:
    """Copy src -> dst through the buffer protocol (both may be indirect)."""
    cdef Py_buffer sview
    cdef Py_buffer dview
    cdef Py_buffer s2
    cdef Py_buffer d2
    cdef Py_ssize_t sstrides[2]
    cdef Py_ssize_t dstrides[2]
    for obj in (src, dst):
        if isinstance(obj, IndirectMemory2D):
            (<IndirectMemory2D>obj)._check_alive()
    _acquire(src, &sview, PyBUF_FULL_RO)
    try:
        try:
            _acquire(dst, &dview, PyBUF_FULL_RO | PyBUF_WRITABLE)
        except (BufferError, ValueError) as exc:
            # NumPy answers a writable request on a read-only array with ValueError.
            raise BufferError(f"cannot copy into {type(dst).__name__}: {exc}") from None
        try:
            # Work on copies: the exporters get back exactly the Py_buffer they filled.
            s2, d2 = sview, dview
            _c_strides(&s2, sstrides)
            _c_strides(&d2, dstrides)
            _check_copy_compatible(&s2, &d2, cast)
            _copy_buffers(&s2, &d2, _trusted(src), _trusted(dst))
        finally:
            PyBuffer_Release(&dview)
    finally:
        PyBuffer_Release(&sview)
    return 0
