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

# Root tables of live lent memory not yet revoked (start address -> end address): a consumer
# that would copy row pointers out of one (a row view, also of a memoryview slice whose buf
# lies inside the table) asks here.
cdef dict _lent_tables = {}


cdef Py_ssize_t _root_slots(int ndim, const Py_ssize_t* shape, const Py_ssize_t* suboffsets):
    """Slots of the root table: the dimensions up to and including the first indirect one."""
    cdef Py_ssize_t n = 1
    cdef int d
    for d in range(ndim):
        n *= shape[d]  # no overflow: the layout's table size was checked
        if suboffsets[d] >= 0:
            break
    return n


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
    _lent_tables[<uintptr_t>root] = <uintptr_t>root + <uintptr_t>(n * sizeof(void*))
    return 0


cdef void _forget_lent_table(IndirectMemory mem) noexcept:
    """Called before the root copy is freed or re-pointed: it no longer leads to lent memory."""
    # (_lent_tables is None once the module is torn down at interpreter exit.)
    if mem.lent_ and mem.owned_table != NULL and _lent_tables is not None:
        _lent_tables.pop(<uintptr_t>mem.owned_table, None)


cdef bint _in_lent_table(const void* address):
    """True if address lies in the root table of lent memory (a slice's buf may point into
    one anywhere, also at its last slot for a negative step)."""
    if not _lent_tables:
        return False
    cdef uintptr_t a = <uintptr_t>address
    for start, end in _lent_tables.items():
        if start <= a and (a < end or a == start):
            return True
    return False


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
    cdef Py_buffer src
    cdef Py_buffer dst
    cdef IndirectMemory snap
    cdef unsigned int mask
    if mem.exports == 0:
        # The normal path: nothing reads the table any more. No copy.
        mem.released_ = True
        mem._release_resources()
        return 0
    # Views are out. From here on every new export or pin is refused (released), so nothing
    # can start reading the lent memory while the snapshot is taken.
    mem.released_ = True
    mask = _mask_of(mem.suboffsets_, mem.ndim_)
    try:
        snap = _new_owned_nd(mem.ndim_, mem.shape_, mem.format_, mem.itemsize_, mask, False)
        _geometry_view(mem, &src)
        _geometry_view(snap, &dst)
        _copy_buffers(&src, &dst, False, True)
    except BaseException:
        # The lender frees its memory whatever happens: the views must not reach it. They
        # see empty memory instead (memoryview bounds-checks against this shape).
        _forget_lent_table(mem)
        memset(mem.shape_, 0, sizeof(mem.shape_))
        keep = mem.keepalive
        mem.keepalive = None
        del keep
        raise
    # The snapshot's own tables, moved back by the lender's offsets, then its root slots into
    # the exported root table: every view now reads the snapshot.
    _offset_slots(<char*>snap.owned_table, mem.ndim_, mem.shape_, mask, mem.suboffsets_)
    _forget_lent_table(mem)
    memcpy(mem.owned_table, snap.owned_table,
           _root_slots(mem.ndim_, mem.shape_, mem.suboffsets_) * sizeof(void*))
    keep = mem.keepalive
    mem.keepalive = snap  # freed with mem, after the last view
    del keep  # may run Python code: mem is already consistent
    if mem.pins > 0:
        # Revoked all the same (the lender may free whatever we say): but a C call that
        # pinned the memory may still hold lent addresses it read before. Tell a lender
        # that can wait (a handle, an encoder's next call) to wait.
        raise BufferError(f"the loan of {type(mem).__name__} is revoked, but {mem.pins} C "
                          "call(s) pinned it and may still be using the lent memory: do not "
                          "free it before they return")
    return 0
