# Lent memory: pointer structures wrapped without a memory nanny (from_address,
# from_ctype_ptr, from_ptr and the C API's ib_wrap_borrowed without an owner). Nothing keeps
# them valid, so they are taken as lent for a while: a callback's buffer, a buffer valid
# "until the next call", a table a handle frees when it closes.
#
# The wrapper exports its own copy of the lender's root table (made at wrap time: the root
# table's slots, shape[0] pointers for a T**), never the lender's, so that the table every
# export reads can be re-pointed. release() (and leaving a `with` block) revokes the loan:
# with no view out it simply forgets the pointers (no copy); with views out it first copies
# the data into a private snapshot of the same geometry and re-points the exported root table
# at it, so that every view keeps reading the values seen at revocation and nothing reads or
# writes the lent memory afterwards. While a pin is held (a C call in flight without the GIL,
# or a copy) revocation happens all the same, since nothing we free is under that call (the
# root table it was given stays, re-pointed at the snapshot), and then raises BufferError: the
# call may still use lent addresses it read before, so a lender that can wait must wait.
#
# Views that would keep a lent address of their own -- direct_view(), a row view of the
# memory's buffer -- cannot be made: nothing could re-point them.

# Root tables of live lent memory not yet revoked: their start addresses in increasing order
# and, by start, their end addresses. A consumer that would copy row pointers out of one (a
# row view, also of a memoryview slice whose buf lies anywhere inside the table) asks here.
cdef list _lent_starts = []
cdef dict _lent_ends = {}


cdef Py_ssize_t _root_slots(int ndim, const Py_ssize_t* shape, const Py_ssize_t* suboffsets):
    """Slots of the root table: the dimensions up to and including the first indirect one."""
    cdef Py_ssize_t n = 1
    cdef int d
    for d in range(ndim):
        n *= shape[d]  # no overflow: the layout's table size was checked
        if suboffsets[d] >= 0:
            break
    return n


cdef void _root_slot_shape(IndirectMemory mem, Py_ssize_t* shape) noexcept:
    """mem's shape with the root dimensions (up to the first indirect one) of size 1: the
    layout below one root slot."""
    cdef int d
    cdef bint root = True
    for d in range(mem.ndim_):
        shape[d] = 1 if root else mem.shape_[d]
        if mem.suboffsets_[d] >= 0:
            root = False


cdef int _lend(IndirectMemory mem) except -1:
    """Make freshly wrapped memory lent: export a copy of the lender's root table."""
    cdef Py_ssize_t n = _root_slots(mem.ndim_, mem.shape_, mem.suboffsets_)
    cdef void** root = <void**>malloc((n if n > 0 else 1) * sizeof(void*))
    if root == NULL:
        raise MemoryError(f"cannot allocate a copy of a root table of {n} pointers")
    if n > 0:
        memcpy(root, mem.table, n * sizeof(void*))
    mem.owned_table = root
    mem.table = root
    mem.lent_ = True
    _lent_starts.insert(_after(<uintptr_t>root), <uintptr_t>root)
    _lent_ends[<uintptr_t>root] = <uintptr_t>root + <uintptr_t>(n * sizeof(void*))
    return 0


cdef void _forget_lent_table(IndirectMemory mem) noexcept:
    """Called before the root copy is freed or re-pointed: it no longer leads to lent memory."""
    # (None once the module is torn down at interpreter exit.)
    if not mem.lent_ or mem.owned_table == NULL or _lent_ends is None or _lent_starts is None:
        return
    cdef uintptr_t start = <uintptr_t>mem.owned_table
    if _lent_ends.pop(start, None) is not None:
        del _lent_starts[_after(start) - 1]


cdef Py_ssize_t _after(uintptr_t a):
    """The number of lent root tables starting at or before a (a binary search)."""
    cdef Py_ssize_t lo = 0, hi = len(_lent_starts), mid
    while lo < hi:
        mid = (lo + hi) // 2
        if <uintptr_t>_lent_starts[mid] <= a:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef bint _in_lent_table(const void* address):
    """True if address lies in the root table of lent memory (a slice's buf may point into
    one anywhere, also at its last slot for a negative step)."""
    if not _lent_starts:
        return False
    cdef uintptr_t a = <uintptr_t>address
    cdef Py_ssize_t i = _after(a) - 1
    if i < 0:
        return False
    start = _lent_starts[i]
    return a == start or a < _lent_ends[start]


cdef void _offset_slots(char* tables, int ndim, const Py_ssize_t* shape, unsigned int mask,
                        const Py_ssize_t* suboffsets) noexcept:
    """Move every slot of tables linked by _link_tables back by its dimension's suboffset, so
    that slot + suboffset is where _link_tables pointed it (the lender's offsets kept)."""
    cdef char* level = tables
    cdef Py_ssize_t count = 1, s
    cdef int d
    for d in range(ndim - 1):
        count *= shape[d]
        if not (mask >> d & 1):
            continue
        if suboffsets[d] != 0:
            for s in range(count):
                (<char**>level)[s] = <char*>(<uintptr_t>(<char**>level)[s]
                                             - <uintptr_t>suboffsets[d])
        level += count * sizeof(void*)


cdef int _revoke(IndirectMemory mem) except -1:
    """release() of lent memory: snapshot for the views out, then release."""
    if mem.exports == 0:
        # The normal path: nothing reads the table any more. No copy.
        mem.released_ = True
        mem._release_resources()
        return 0
    cdef unsigned int mask = _mask_of(mem.suboffsets_, mem.ndim_)
    cdef Py_ssize_t n = _root_slots(mem.ndim_, mem.shape_, mem.suboffsets_)
    snap = None
    failure = None
    # Everything that may run Python code (allocating objects may run the garbage collector,
    # and so finalizers, and let other threads in) comes first, and what it may have changed
    # is checked again after it.
    try:
        snap = _new_owned_nd(mem.ndim_, mem.shape_, mem.format_, mem.itemsize_, mask, False)
    except MemoryError as exc:
        failure = exc
        # No room for a snapshot: the views will read zeros, from one zeroed block shared by
        # every root slot (a few rows' worth), rather than the lent memory.
        snap = _zeros_for_every_root_slot(mem, mask)
    if mem.released_:
        return _check_no_pin(mem)  # code run meanwhile revoked it
    if mem.exports == 0 or (snap is not None and not _same_geometry(mem, snap, failure is None)):
        return _revoke(mem)  # code run meanwhile changed what needs a snapshot: again
    cdef void** lent_root = <void**>malloc((n if n > 0 else 1) * sizeof(void*))
    if lent_root == NULL:
        raise MemoryError(f"cannot allocate {n} pointers to revoke the loan of "
                          f"{type(mem).__name__}; it is still lent")
    # From here until the exported table leads to the snapshot, only C runs: no other thread
    # and no finalizer can see the memory released while its views still lead to the lender.
    mem.released_ = True
    memcpy(lent_root, mem.owned_table, n * sizeof(void*))
    if snap is not None:
        _offset_slots(<char*>(<IndirectMemory>snap).owned_table, mem.ndim_,
                      (<IndirectMemory>snap).shape_, mask, mem.suboffsets_)
        _point_root_at(mem, <IndirectMemory>snap, n)
    else:
        # Not even that: NULL rows, which crash a consumer rather than read freed memory.
        memset(mem.owned_table, 0, n * sizeof(void*))
    cdef Py_buffer src
    cdef Py_buffer dst
    try:
        if failure is None:
            # The lender's data, through its own pointers, into the snapshot through ours
            # (same geometry); the GIL is kept so that nothing sees a half-taken snapshot.
            _geometry_view(mem, &src)
            src.buf = <void*>lent_root
            _geometry_view(mem, &dst)
            try:
                _copy_buffers(&src, &dst, False, False, True)
            except ValueError as exc:
                failure = exc  # a NULL pointer the lender left
                _copy_slot_by_slot(mem, &src, &dst, n)
    finally:
        free(lent_root)
    _forget_lent_table(mem)
    keep = mem.keepalive
    mem.keepalive = snap  # freed with mem, after the last view
    del keep  # may run Python code: mem is consistent
    if failure is not None:
        if isinstance(failure, MemoryError):
            raise MemoryError(f"the loan of {type(mem).__name__} is revoked, but there was no "
                              f"room for a snapshot: its views now read zeros ({failure})")
        raise ValueError(f"the loan of {type(mem).__name__} is revoked, but its data could not "
                         f"all be read for the snapshot ({failure}): the views read zeros in "
                         "each root slot (a row of a T**) behind a NULL pointer")
    return _check_no_pin(mem)


cdef void _copy_slot_by_slot(IndirectMemory mem, Py_buffer* src, Py_buffer* dst,
                             Py_ssize_t n) noexcept:
    """The snapshot copy again, one root slot at a time (a row of a T**, a plane of a T***),
    leaving zeros in the slots behind which the lender left a NULL pointer."""
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef Py_buffer s = src[0]
    cdef Py_buffer d = dst[0]
    cdef Py_ssize_t i
    _root_slot_shape(mem, shape)  # root slots lie in C order, sizeof(void*) apart
    s.shape = d.shape = shape
    for i in range(n):
        s.buf = <char*>src.buf + i * sizeof(void*)
        d.buf = <char*>dst.buf + i * sizeof(void*)
        try:
            _copy_buffers(&s, &d, False, False, True)
        except ValueError:
            pass  # this slot reads zeros


cdef int _check_no_pin(IndirectMemory mem) except -1:
    """release() of revoked lent memory that a C call still pins: say so (every time, until
    the pin ends), so that a lender that can wait does not free it under that call."""
    if mem.pins > 0:
        raise BufferError(f"the loan of {type(mem).__name__} is revoked, but {mem.pins} C "
                          "call(s) pinned it and may still be using the lent memory: do not "
                          "free it before they return")
    return 0


cdef bint _same_geometry(IndirectMemory mem, IndirectMemory snap, bint whole):
    """snap still has mem's layout (whole: also its shape; else that below one root slot)."""
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef int d
    if snap.ndim_ != mem.ndim_ or snap.itemsize_ != mem.itemsize_:
        return False
    if whole:
        memcpy(shape, mem.shape_, sizeof(shape))
    else:
        _root_slot_shape(mem, shape)
    for d in range(mem.ndim_):
        if (snap.suboffsets_[d] >= 0) != (mem.suboffsets_[d] >= 0) or \
                snap.shape_[d] != shape[d]:
            return False
    return True


cdef void _point_root_at(IndirectMemory mem, IndirectMemory snap, Py_ssize_t n) noexcept:
    """Copy the snapshot's root slots (already moved back by the lender's offsets) into the
    n slots of the exported root table; a snapshot of one root slot serves them all."""
    cdef Py_ssize_t i
    if _root_slots(snap.ndim_, snap.shape_, snap.suboffsets_) == n:
        memcpy(mem.owned_table, snap.owned_table, n * sizeof(void*))
    else:
        for i in range(n):
            mem.owned_table[i] = snap.owned_table[0]


cdef object _zeros_for_every_root_slot(IndirectMemory mem, unsigned int mask):
    """Zeroed memory of the layout below one root slot (the root dimensions of size 1), or
    None if even that cannot be had."""
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    _root_slot_shape(mem, shape)
    try:
        return _new_owned_nd(mem.ndim_, shape, mem.format_, mem.itemsize_, mask, False)
    except MemoryError:
        return None
