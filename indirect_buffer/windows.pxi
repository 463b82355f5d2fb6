# Windows: mem[r0:r1:step, c0:c1] and N-D indexing. A window is new geometry (start, shape,
# strides, suboffsets) over the same pointer tables, made in O(1) of the data size. It keeps
# the memory it was cut from alive and counts as one of its exports (so that memory cannot be
# released, reshaped or reinterpreted meanwhile), and it reads through the same root table: a
# revoked loan re-points that table at the snapshot, and windows follow. C gets a table whose
# pointers start at the window (built once per window, refilled at each hand-out so that it
# never holds stale pointers), through pinned(), the typed tables and the C API.

@cython.final
@cython.auto_pickle(False)
cdef class _CTable:
    """A table of row pointers made for C (freed with this object)."""
    cdef void** ptr

    def __dealloc__(self):
        free(self.ptr)
        self.ptr = NULL


@cython.no_gc_clear  # __dealloc__ needs base, whatever order gc clears a cycle in
@cython.final
@cython.auto_pickle(False)
cdef class _WindowOf:
    """A window's keepalive: the memory it was cut from (one export of it while this lives)
    and the tables handed to C when the window's own geometry is not a plain T**, one per
    row_offset asked for (two callers with different offsets never share one)."""
    cdef IndirectMemory base
    cdef dict ctables

    def __init__(self, *args, **kwargs):
        raise TypeError("windows are made by indexing an IndirectMemory")

    def __dealloc__(self):
        if self.base is not None and self.base.exports > self.base.pins:
            self.base.exports -= 1


cdef inline _WindowOf _window_link(IndirectMemory mem):
    """The link of a window to its base, or None for memory that is not a window."""
    if type(mem.keepalive) is _WindowOf:
        return <_WindowOf>mem.keepalive
    return None


cdef tuple _window_key(object key, int ndim):
    """key as one item per dimension: slices, integers (operator.index) and one Ellipsis."""
    items = tuple(key) if isinstance(key, tuple) else (key,)
    cdef Py_ssize_t ellipses = sum([1 for item in items if item is Ellipsis])
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses == 1:
        at = items.index(Ellipsis)
        fill = ndim - (len(items) - 1)
        items = items[:at] + (slice(None),) * max(fill, 0) + items[at + 1:]
    if len(items) > ndim:
        raise IndexError(f"too many indices: {len(items)} for {ndim} dimensions")
    return items + (slice(None),) * (ndim - len(items))


cdef object _slice_bound(object bound, int d):
    try:
        return operator.index(bound)
    except TypeError:
        raise TypeError(f"slice indices must be integers or None, not "
                        f"{type(bound).__name__} (dimension {d})") from None


cdef IndirectMemory _window(IndirectMemory mem, object key):
    """mem[key]: a window over the same tables (see the top of this file)."""
    cdef Py_ssize_t start[IB_MAX_NDIM]
    cdef Py_ssize_t step[IB_MAX_NDIM]
    cdef Py_ssize_t length[IB_MAX_NDIM]
    cdef bint keep[IB_MAX_NDIM]
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef Py_ssize_t strides[IB_MAX_NDIM]
    cdef Py_ssize_t subs[IB_MAX_NDIM]
    cdef Py_ssize_t seen[IB_MAX_NDIM]
    cdef int d, nd = 0, last_indirect = -1
    cdef unsigned int mask = 0
    cdef Py_ssize_t n
    mem._check_alive()
    cdef int ndim = mem.ndim_
    items = _window_key(key, ndim)
    for d in range(ndim):
        seen[d] = mem.shape_[d]
    # Every __index__ of the key runs here, before the geometry is read.
    for d in range(ndim):
        item = items[d]
        n = seen[d]
        if isinstance(item, slice):
            # Each bound converted once (operator.index), then clipped by slice.indices.
            bounds = [None if b is None else _slice_bound(b, d) for b in (
                (<slice>item).start, (<slice>item).stop, (<slice>item).step)]
            if bounds[2] == 0:
                raise ValueError(f"slice step cannot be zero (dimension {d})")
            first, stop, stride = slice(*bounds).indices(n)
            length[d] = len(range(first, stop, stride))
            # A step only matters between two elements (and then |step| < n): a huge one
            # (2**63) leaves one element, as in NumPy.
            step[d] = stride if length[d] > 1 else 1
            start[d] = first if length[d] > 0 else 0  # nothing read: start inside the table
            keep[d] = True
        else:
            try:
                index = operator.index(item)
            except TypeError:
                raise TypeError(f"indices must be integers, slices or '...', not "
                                f"{type(item).__name__} (dimension {d})") from None
            if index < -n or index >= n:  # Python ints: any size is compared, not converted
                raise IndexError(f"index {index} is out of range for dimension {d} of size {n}")
            start[d], step[d], length[d] = (index + n if index < 0 else index), 1, 1
            keep[d] = False
    # The suboffsets never change while mem lives: the window's layout is known now.
    for d in range(ndim):
        if not keep[d] and mem.suboffsets_[d] >= 0:
            raise IndexError(f"an integer index cannot drop dimension {d}: it is reached "
                             f"through pointers; use a slice ({start[d]}:{start[d] + 1}) "
                             "to keep it")
        if keep[d]:
            if mem.suboffsets_[d] >= 0:
                mask |= 1u << nd
            nd += 1
    if nd == 0:
        raise IndexError("a window needs at least one slice; read single elements through "
                         "to_numpy() or a memoryview")
    # Everything that allocates (and so may run the garbage collector, and any finalizer)
    # happens before the last check: from it on, only C reads and writes.
    cdef _WindowOf link = _WindowOf.__new__(_WindowOf)
    cdef IndirectMemory out = _new_memory(nd, mask)
    cdef _WindowOf parent = _window_link(mem)
    cdef IndirectMemory root = mem if parent is None else parent.base
    mem._check_alive()
    for d in range(ndim):
        if mem.shape_[d] != seen[d]:
            raise BufferError(f"the {type(mem).__name__} changed shape while its index was "
                              "computed")
    cdef char* buf = <char*>mem.table
    nd = 0
    for d in range(ndim):
        # The offset of dimension d applies before d is indexed: after the pointer of the
        # nearest indirect dimension kept before it, or to the root.
        if last_indirect < 0:
            buf += start[d] * mem.strides_[d]
        else:
            subs[last_indirect] += start[d] * mem.strides_[d]
        if keep[d]:
            shape[nd] = length[d]
            strides[nd] = step[d] * mem.strides_[d]
            subs[nd] = mem.suboffsets_[d]
            if subs[nd] >= 0:
                last_indirect = nd
            nd += 1
    out._init_geometry(<void**>buf, nd, shape, strides, subs, mem.format_, mem.itemsize_,
                       mem.readonly_, link)
    link.base = root
    root.exports += 1
    # C may re-point the memory's rows through the window's tables from now on.
    root.layout_trusted = False
    return out


cdef bint _needs_c_table(IndirectMemory mem, Py_ssize_t row_offset) noexcept:
    """True for a window whose own tables C cannot use as they are: not a plain T**/T***
    (rows or tables stepped, columns stepped) or its data not row_offset bytes after every
    pointer (columns cut). A 2-D one gets a table of its own; others are refused."""
    cdef int d
    if _window_link(mem) is None:
        return False
    if mem.levels_ == 0:
        return True
    for d in range(mem.ndim_):
        if mem.suboffsets_[d] >= 0 and mem.suboffsets_[d] != row_offset:
            return True
    return False


cdef void** _window_c_table(IndirectMemory mem, object format, bint writable,
                            Py_ssize_t row_offset) except NULL:
    """The T** of a 2-D window for C: row i points row_offset bytes before the window's
    first element of row i. Checked as every table is; filled again at every call."""
    cdef _WindowOf link = <_WindowOf>mem.keepalive
    cdef Py_ssize_t i, rows
    cdef char* p
    cdef _CTable table
    if row_offset < 0:
        raise ValueError(f"row_offset must be >= 0, got {row_offset}")
    _check_request(mem, format, writable, mem.suboffsets_, False)
    if mem.ndim_ != 2 or mem.suboffsets_[0] < 0 or mem.suboffsets_[1] >= 0 or (
            mem.shape_[1] > 1 and mem.strides_[1] != mem.itemsize_):
        raise BufferError(f"a table of one pointer level (T**) was requested, but the window "
                          f"is {_layout_text(mem)} with strides {mem.strides} and suboffsets "
                          f"{mem.suboffsets} (C gets a table of its own only for a 2-D window "
                          "with contiguous rows; copy() the window first)")
    # Allocations first (they may run finalizers); then only C until the table is full.
    if link.ctables is None:
        link.ctables = {}
    table = link.ctables.get(row_offset)
    if table is None:
        table = _CTable.__new__(_CTable)
        rows = mem.shape_[0]
        table.ptr = <void**>malloc((rows if rows > 0 else 1) * sizeof(void*))
        if table.ptr == NULL:
            raise MemoryError(f"cannot allocate a table of {rows} row pointers")
        link.ctables[row_offset] = table
    mem._check_alive()
    rows = mem.shape_[0]
    for i in range(rows):
        p = (<char**>(<char*>mem.table + i * mem.strides_[0]))[0]
        if p == NULL:
            raise ValueError(f"row {i} of the pointer table is NULL")
        table.ptr[i] = p + mem.suboffsets_[0] - row_offset
    mem.layout_trusted = False
    return table.ptr


cdef void** _table_for_c(IndirectMemory mem, object format, bint writable,
                         Py_ssize_t row_offset) except NULL:
    """The root table pinned() and ib_table_acquire hand C: a window's table of its own when
    it needs one, else the memory's own, checked as every table is."""
    if _needs_c_table(mem, row_offset):
        return _window_c_table(mem, format, writable, row_offset)
    mem._check_table_request(format, writable, row_offset)
    return mem.ptr_table()  # ptr_table(): C may re-point rows from now on
