# The copy engine: one element copy between any two acquired buffers of the same shape,
# direct or indirect in any dimension (PEP 3118 suboffsets), with the result of a copy through
# a temporary when they overlap.
#
# A converting copy (convert.pxi) runs the same way, converting each run where a plain copy
# copies its bytes.
#
# A buffer is copied run by run. A run is the elements along the last dimension at one index of
# the others (or a single element, when either side is indirect in its last dimension too).
# _Walker visits the runs in C order, following every suboffset on the way.
#
# Pointers are never read after a write could have changed them: a copy whose destination
# overlaps the source's elements or pointers goes through a temporary (the source is read
# whole first), and one whose destination overlaps its own pointers takes all of them first.

cdef enum:
    # Copies of at least this many bytes run without the GIL; below it, releasing and
    # re-taking the GIL costs more than the copy.
    _NOGIL_BYTES = 65536


cdef inline const char* _format_of(const Py_buffer* view) noexcept:
    if view.format == NULL:
        return _FMT_B
    return view.format


cdef int _check_exported_format(const Py_buffer* view, Py_ssize_t row) except -1:
    """An exporter's itemsize and format must be usable: itemsize > 0, an ASCII format, and
    no Python objects in the elements.

    row names the buffer in the message: -1 the source, -2 the destination, else a row.
    """
    cdef const char* f = _format_of(view)
    cdef Py_ssize_t i = 0
    cdef bint ascii = True
    while f[i] != 0:
        if <unsigned char>f[i] >= 128:
            ascii = False
        i += 1
    if view.itemsize > 0 and ascii and not _has_object_code(f):
        return 0
    what = "the source" if row == -1 else "the destination" if row == -2 else f"row {row}"
    if view.itemsize <= 0:
        raise BufferError(f"{what} has itemsize {view.itemsize}")
    if ascii:
        raise BufferError(f"{what} holds Python objects (format "
                          f"{(<bytes>f).decode('ascii')!r}): their pointers cannot be copied "
                          "or shared as plain bytes")
    raise BufferError(f"{what} has a non-ASCII format {(<bytes>f).decode('utf-8', 'replace')!r}")


# -- walking the runs of a buffer ---------------------------------------------------------------

cdef struct _Walker:
    const Py_buffer* view
    int depth                        # dimensions indexed per run: ndim - 1, or ndim (elements)
    Py_ssize_t idx[_MAX_NDIM]        # index of the current run in dimensions 0..depth-1
    char* base[_MAX_NDIM + 1]        # base[d]: address reached before dimension d is indexed
    int null_dim                     # dimension of a NULL pointer met, or -1
    char* plo                        # extent of the pointers followed so far (NULL: none)
    char* phi


cdef inline void _widen(char** lo, char** hi, char* a, char* b) noexcept nogil:
    if lo[0] == NULL or a < lo[0]:
        lo[0] = a
    if hi[0] == NULL or b > hi[0]:
        hi[0] = b


cdef bint _descend(_Walker* w, int first) noexcept nogil:
    """Recompute base[first+1 .. depth] from base[first] and the current index; False (and
    null_dim set) at a NULL pointer."""
    cdef const Py_buffer* v = w.view
    cdef int d
    cdef char* p
    cdef char* q
    for d in range(first, w.depth):
        p = w.base[d] + w.idx[d] * v.strides[d]
        if v.suboffsets != NULL and v.suboffsets[d] >= 0:
            _widen(&w.plo, &w.phi, p, p + sizeof(void*))
            q = (<char**>p)[0]
            if q == NULL:
                w.null_dim = d
                return False
            p = q + v.suboffsets[d]
        w.base[d + 1] = p
    return True


cdef bint _walk_start(_Walker* w, const Py_buffer* view, int depth) noexcept nogil:
    """Position w at the first run (the buffer has at least one element)."""
    cdef int d
    w.view = view
    w.depth = depth
    w.null_dim = -1
    w.plo = w.phi = NULL
    for d in range(depth):
        w.idx[d] = 0
    w.base[0] = <char*>view.buf
    return _descend(w, 0)


cdef inline char* _run(const _Walker* w) noexcept nogil:
    """Where the current run starts."""
    return w.base[w.depth]


cdef int _walk_next(_Walker* w) noexcept nogil:
    """Advance to the next run in C order: 1 if there is one, 0 at the end, -1 at a NULL
    pointer (null_dim and idx say where)."""
    cdef int d = w.depth - 1
    while d >= 0:
        w.idx[d] += 1
        if w.idx[d] < w.view.shape[d]:
            return 1 if _descend(w, d) else -1
        w.idx[d] = 0
        d -= 1
    return 0


# -- one side of a copy, prepared ----------------------------------------------------------------

cdef struct _Side:
    const Py_buffer* view
    int depth              # see _Walker.depth (equal on both sides of a copy)
    Py_ssize_t runs        # number of runs
    Py_ssize_t run_len     # elements per run
    Py_ssize_t step        # bytes between the elements of a run
    bint block             # every element lies in one C-contiguous block from first
    char* first            # start of the first run
    char* lo               # extent of the elements
    char* hi
    char* plo              # extent of the pointers followed (NULL: a direct buffer)
    char* phi
    char** starts          # every run's start, taken before the copy writes (or NULL)
    int null_dim           # a NULL pointer met: its dimension and index, else -1
    Py_ssize_t null_idx[_MAX_NDIM]


cdef inline bint _is_indirect(const Py_buffer* view) noexcept nogil:
    cdef int d
    if view.suboffsets != NULL:
        for d in range(view.ndim):
            if view.suboffsets[d] >= 0:
                return True
    return False


cdef void _direct_extent(const Py_buffer* v, _Side* s) noexcept nogil:
    """Extent and contiguity of a direct buffer, from its strides alone."""
    cdef char* a = <char*>v.buf
    cdef char* b = <char*>v.buf
    cdef Py_ssize_t expect = v.itemsize
    cdef int d
    s.block = True
    for d in range(v.ndim - 1, -1, -1):
        if v.strides[d] >= 0:
            b += (v.shape[d] - 1) * v.strides[d]
        else:
            a += (v.shape[d] - 1) * v.strides[d]
        if v.shape[d] != 1 and v.strides[d] != expect:
            s.block = False
        expect *= v.shape[d]
    s.first = <char*>v.buf
    s.lo, s.hi = a, b + v.itemsize


cdef bint _rows_back_to_back(const Py_buffer* v, _Side* s) noexcept nogil:
    """The common T** case (2-D, a table of row pointers, contiguous rows): True if the rows
    lie back to back, decided by one branch-free pass the compiler can vectorise."""
    cdef Py_ssize_t i, rows = v.shape[0], row_bytes = v.shape[1] * v.itemsize
    cdef char** tab = <char**>v.buf
    if v.ndim != 2 or v.suboffsets[1] >= 0 or v.strides[0] != sizeof(void*) or \
            (v.shape[1] != 1 and v.strides[1] != v.itemsize) or tab[0] == NULL:
        return False
    cdef char* expect = tab[0]
    cdef size_t mismatch = 0
    for i in range(rows):
        mismatch |= <size_t>(tab[i] - (expect + i * row_bytes))
    if mismatch != 0:
        return False
    s.first = expect + v.suboffsets[0]
    s.lo, s.hi = s.first, s.first + rows * row_bytes
    s.plo, s.phi = <char*>tab, <char*>(tab + rows)
    s.block = True
    return True


cdef void _prepare(const Py_buffer* v, int depth, bint trusted, _Side* s) noexcept nogil:
    """Runs, extents, contiguity and NULL pointers of a buffer with at least one element.

    trusted: an IndirectMemory whose elements are known to lie in one block in C order.
    """
    cdef int d, status
    cdef Py_ssize_t k = v.itemsize, last = v.ndim - 1
    cdef char* a
    cdef _Walker w
    s.view = v
    s.depth = depth
    s.starts = NULL
    s.null_dim = -1
    s.plo = s.phi = NULL
    s.runs = 1
    for d in range(depth):
        s.runs *= v.shape[d]
    s.run_len = v.shape[last] if depth == last else 1
    s.step = v.strides[last]
    if not _is_indirect(v):
        _direct_extent(v, s)
        return
    if trusted and _walk_start(&w, v, last):
        # Owned memory (or a row view of a C-ordered array): the elements are one block in C
        # order, so only the way to the first one is walked. (A NULL on that way means the
        # trust was wrong: the full walk below finds and reports it.)
        s.first = _run(&w)
        s.lo, s.hi = s.first, s.first + s.runs * s.run_len * k
        s.plo, s.phi = w.plo, w.phi
        s.block = True
        return
    if _rows_back_to_back(v, s):
        return
    # Any other layout: visit every run.
    s.lo = s.hi = NULL
    s.block = s.run_len == 1 or s.step == k
    if not _walk_start(&w, v, depth):
        status = -1
    else:
        s.first = _run(&w)
        status = 1
    cdef Py_ssize_t n = 0, run_bytes = s.run_len * k
    while status == 1:
        a = _run(&w)
        if s.block and a != s.first + n * run_bytes:
            s.block = False
        n += 1
        if s.step >= 0:
            _widen(&s.lo, &s.hi, a, a + (s.run_len - 1) * s.step + k)
        else:
            _widen(&s.lo, &s.hi, a + (s.run_len - 1) * s.step, a + k)
        status = _walk_next(&w)
    s.plo, s.phi = w.plo, w.phi
    if status < 0:
        s.null_dim = w.null_dim
        for d in range(w.null_dim + 1):
            s.null_idx[d] = w.idx[d]


cdef int _take_starts(_Side* s) except -1:
    """Read every run's start now, before the copy writes anything (the destination's
    elements overlap pointers it is reached through)."""
    cdef _Walker w
    cdef Py_ssize_t i = 0
    s.starts = <char**>malloc(s.runs * sizeof(char*))
    if s.starts == NULL:
        raise MemoryError(f"cannot allocate {s.runs} run addresses for an overlapping copy")
    if _walk_start(&w, s.view, s.depth):
        while True:
            s.starts[i] = _run(&w)
            i += 1
            if _walk_next(&w) != 1:
                break
    return 0


cdef int _check_no_null(const _Side* s, str what) except -1:
    """ValueError for a NULL pointer met while preparing a side (C code re-pointed a row or
    an element to NULL after the memory was wrapped, or a foreign exporter holds one)."""
    if s.null_dim >= 0:
        _raise_null(s.null_dim, s.null_idx, what)
    return 0


cdef int _raise_null(int dim, const Py_ssize_t* idx, str what) except -1:
    """ValueError naming the NULL pointer met at idx[0..dim] (what: "source", "destination",
    or None for the memory being wrapped)."""
    table = "the pointer table" if what is None else f"the {what}'s pointer table"
    if dim == 0:
        raise ValueError(f"row {idx[0]} of {table} is NULL")
    index = ", ".join([str(idx[d]) for d in range(dim + 1)])
    raise ValueError(f"element ({index}) of {'the memory' if what is None else 'the ' + what} "
                     f"is behind a NULL pointer (in dimension {dim})")


# -- the copy ------------------------------------------------------------------------------------

cdef inline void _copy_run(char* d, Py_ssize_t ds, const char* s, Py_ssize_t ss, Py_ssize_t n,
                           Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    if ss == k and ds == k:
        memmove(d, s, n * k)
    elif k == 8:
        for j in range(n):
            memcpy(d + j * ds, s + j * ss, 8)
    elif k == 4:
        for j in range(n):
            memcpy(d + j * ds, s + j * ss, 4)
    else:
        for j in range(n):
            memcpy(d + j * ds, s + j * ss, k)


cdef void _copy_runs(const _Side* src, const _Side* dst, const ib_cast* conv) noexcept nogil:
    """Copy run by run (pointers already checked for NULL), converting each run if conv."""
    cdef _Walker ws, wd
    cdef Py_ssize_t i, k = src.view.itemsize
    cdef char* s
    cdef char* d
    if src.starts == NULL:
        _walk_start(&ws, src.view, src.depth)
    if dst.starts == NULL:
        _walk_start(&wd, dst.view, dst.depth)
    for i in range(src.runs):
        if i > 0:
            if src.starts == NULL:
                _walk_next(&ws)
            if dst.starts == NULL:
                _walk_next(&wd)
        s = src.starts[i] if src.starts != NULL else _run(&ws)
        d = dst.starts[i] if dst.starts != NULL else _run(&wd)
        if conv != NULL:
            ib_cast_run(conv, d, dst.step, s, src.step, src.run_len)
        else:
            _copy_run(d, dst.step, s, src.step, src.run_len, k)


cdef inline bint _overlap(char* a_lo, char* a_hi, char* b_lo, char* b_hi) noexcept nogil:
    return b_lo != NULL and a_lo < b_hi and b_lo < a_hi


cdef void _move(const _Side* src, const _Side* dst, _Side* tmp,
                const ib_cast* conv) noexcept nogil:
    """The copy itself, decided by _copy_buffers: one memmove (or one converted run), through
    tmp, or direct."""
    if conv != NULL and src.block and dst.block and tmp == NULL:
        ib_cast_run(conv, dst.first, dst.view.itemsize, src.first, src.view.itemsize,
                    src.runs * src.run_len)
    elif conv == NULL and src.block and dst.block:
        # Both sides are one C-contiguous block: memmove is exact even when they overlap.
        memmove(dst.first, src.first, <size_t>(src.runs * src.run_len * src.view.itemsize))
    elif tmp != NULL:
        _copy_runs(src, tmp, NULL)
        _copy_runs(tmp, dst, conv)
    else:
        _copy_runs(src, dst, conv)


cdef int _copy_buffers(Py_buffer* src, Py_buffer* dst, bint src_trusted,
                       bint dst_trusted, bint keep_gil=False,
                       const ib_cast* conv=NULL) except -1:
    """Copy src into dst (same ndim >= 1 and shape; strides set), with the result of a copy
    through a temporary when the two overlap: the bytes (same itemsize), or converting every
    element as conv says. Large copies run without the GIL unless keep_gil (a revocation:
    no other thread may act on the memory meanwhile)."""
    cdef _Side ss, ds, ts
    cdef int d, ndim = src.ndim, last = src.ndim - 1, depth
    cdef Py_ssize_t k = src.itemsize
    cdef Py_ssize_t elems = 1
    cdef Py_buffer tmp
    cdef Py_ssize_t tstrides[_MAX_NDIM]
    for d in range(ndim):
        if src.shape[d] == 0:
            return 0
        elems *= src.shape[d]  # no overflow: the caller checked one side's size
    cdef bint big = elems * max(k, dst.itemsize) >= _NOGIL_BYTES and not keep_gil
    # Element by element when either side is indirect in its last dimension.
    depth = ndim if ((src.suboffsets != NULL and src.suboffsets[last] >= 0)
                     or (dst.suboffsets != NULL and dst.suboffsets[last] >= 0)) else last
    if big:
        with nogil:
            _prepare(src, depth, src_trusted, &ss)
            _prepare(dst, depth, dst_trusted, &ds)
    else:
        _prepare(src, depth, src_trusted, &ss)
        _prepare(dst, depth, dst_trusted, &ds)
    _check_no_null(&ss, "source")
    _check_no_null(&ds, "destination")
    cdef _Side* staged = NULL
    if (conv != NULL or not (ss.block and ds.block)) and (
            _overlap(ds.lo, ds.hi, ss.lo, ss.hi) or _overlap(ds.lo, ds.hi, ss.plo, ss.phi)):
        # The destination overlaps the source's elements or the pointers that lead to them:
        # stage through a contiguous temporary, so that the whole source is read before
        # anything is written. (Two blocks that overlap are one memmove, unless converted.)
        tmp = src[0]
        tmp.buf = malloc(elems * k)
        if tmp.buf == NULL:
            raise MemoryError(f"cannot allocate a temporary of {elems * k} bytes for an "
                              "overlapping copy")
        tmp.suboffsets = NULL
        tstrides[last] = k
        for d in range(last - 1, -1, -1):
            tstrides[d] = tstrides[d + 1] * src.shape[d + 1]
        tmp.strides = tstrides
        _prepare(&tmp, depth, False, &ts)
        staged = &ts
    try:
        if not (ss.block and ds.block) and _overlap(ds.lo, ds.hi, ds.plo, ds.phi):
            _take_starts(&ds)  # writes could change pointers the copy still has to follow
        if big:
            with nogil:
                _move(&ss, &ds, staged, conv)
        else:
            _move(&ss, &ds, staged, conv)
    finally:
        free(ds.starts)
        if staged != NULL:
            free(tmp.buf)
    return 0


cdef str _describe(Py_buffer* view):
    fmt = "B" if view.format == NULL else view.format.decode("ascii", "replace")
    shape = tuple([view.shape[i] for i in range(min(view.ndim, _MAX_NDIM))]) \
        if view.shape != NULL else ()
    return f"shape {shape} format {fmt!r}"


cdef int _check_copy_compatible(Py_buffer* src, Py_buffer* dst, int mode,
                                ib_cast* plan) except -1:
    """Both buffers have the same shape (at least 1-D, with strides) and usable formats, and
    mode (a casting rule, or _CAST_BYTES) allows the copy: 0 for a copy of the bytes, 1 with
    plan filled for a converting one."""
    cdef int d
    if src.ndim < 1 or src.ndim > _MAX_NDIM or dst.ndim != src.ndim or src.shape == NULL \
            or dst.shape == NULL or src.strides == NULL or dst.strides == NULL:
        raise BufferError(f"copy needs buffers of the same dimensions: source {_describe(src)}, "
                          f"destination {_describe(dst)}")
    for d in range(src.ndim):
        if src.shape[d] != dst.shape[d] or src.shape[d] < 0:
            raise BufferError(f"shape mismatch: source {_describe(src)}, "
                              f"destination {_describe(dst)}")
    _check_exported_format(src, -1)
    _check_exported_format(dst, -2)
    cdef const char* sc = _format_of(src)
    cdef const char* dc = _format_of(dst)
    if mode != _CAST_BYTES and src.itemsize == dst.itemsize and strcmp(sc, dc) == 0:
        return 0
    if mode == _CAST_BYTES:
        if src.itemsize != dst.itemsize:
            raise BufferError(f"cast needs equal itemsizes (cast=True copies the bytes "
                              f"unchanged; casting= converts values): source "
                              f"{_describe(src)} itemsize {src.itemsize}, destination "
                              f"{_describe(dst)} itemsize {dst.itemsize}")
        return 0
    cdef int planned = _plan_conversion(src, dst, mode, plan)
    if planned:
        # 2: the same type in the same byte order (spelled 'l' and 'q', say): the bytes.
        return 1 if planned == 1 else 0
    sfmt = (<bytes>sc).decode("ascii", "replace")
    dfmt = (<bytes>dc).decode("ascii", "replace")
    if _canonical_format(sfmt) == _canonical_format(dfmt) and src.itemsize == dst.itemsize:
        return 0
    hint = ("; cast=True copies the bytes unchanged" if src.itemsize == dst.itemsize else "")
    raise BufferError(f"format mismatch: source {_describe(src)}, destination "
                      f"{_describe(dst)}: no conversion between these formats{hint}")


cdef bint _trusted(object obj):
    return isinstance(obj, IndirectMemory) and (<IndirectMemory>obj).layout_trusted


cdef inline void _c_strides(Py_buffer* view, Py_ssize_t* storage) noexcept:
    """Point a view's NULL strides (allowed for C-contiguous data, e.g. ctypes arrays) at
    C-contiguous strides in storage (room for _MAX_NDIM)."""
    cdef int d
    if view.strides == NULL and view.shape != NULL and 0 < view.ndim <= _MAX_NDIM:
        storage[view.ndim - 1] = view.itemsize
        for d in range(view.ndim - 2, -1, -1):
            storage[d] = storage[d + 1] * view.shape[d + 1]
        view.strides = storage


cdef int _copy_between(object src, object dst, int mode) except -1:
    """Copy src -> dst through the buffer protocol (both may be indirect), as mode (a casting
    rule, or _CAST_BYTES) allows."""
    for obj in (src, dst):
        if isinstance(obj, IndirectMemory):
            (<IndirectMemory>obj)._check_alive()
    # Lent memory is pinned for the copy: Python code run while the buffers are acquired
    # (another side's __buffer__) cannot revoke its loan unnoticed.
    cdef IndirectMemory lent_src = _pin_if_lent(src)
    cdef IndirectMemory lent_dst
    try:
        lent_dst = _pin_if_lent(dst)
        try:
            _copy_acquired(src, dst, mode)
        finally:
            if lent_dst is not None:
                lent_dst.unpin()
    finally:
        if lent_src is not None:
            lent_src.unpin()
    return 0


cdef bint _reads_lent_table(const Py_buffer* view):
    return _is_indirect(view) and _in_lent_table(view.buf)


cdef IndirectMemory _pin_if_lent(object obj):
    if isinstance(obj, IndirectMemory) and (<IndirectMemory>obj).lent_:
        (<IndirectMemory>obj).pin()
        return <IndirectMemory>obj
    return None


cdef int _copy_acquired(object src, object dst, int mode) except -1:
    cdef Py_buffer sview
    cdef Py_buffer dview
    cdef Py_buffer s2
    cdef Py_buffer d2
    cdef Py_ssize_t sstrides[_MAX_NDIM]
    cdef Py_ssize_t dstrides[_MAX_NDIM]
    cdef ib_cast plan
    cdef bint converting
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
            converting = _check_copy_compatible(&s2, &d2, mode, &plan)
            # A side that reads lent memory's table (also through a memoryview of it) is copied
            # with the GIL held: its loan cannot be revoked, nor its snapshot half-taken, under
            # the copy (see lending.pxi).
            _copy_buffers(&s2, &d2, _trusted(src), _trusted(dst),
                          _reads_lent_table(&s2) or _reads_lent_table(&d2),
                          &plan if converting else NULL)
        finally:
            PyBuffer_Release(&dview)
    finally:
        PyBuffer_Release(&sview)
    return 0
