# N-D layouts: shapes, indirect dimensions, strides, and the pointer tables of owned memory
# and of views over other objects' arrays.
#
# A layout is a shape plus the set of indirect dimensions (a bit mask: bit d for dimension d,
# never the last one). The dimensions fall into groups, each ending at an indirect dimension
# (a group of pointer tables) or at the last one (the data). Within a group everything is
# C-contiguous: pointer slots of sizeof(void*), or elements. A pointer slot of the group
# ending at dimension d points at its own block of the next group, the blocks in C order:
# the T** of the 2-D case is one table of row pointers (group {0}) and rows (group {1}); a
# T*** has two tables; frames (indirect (0,) over 3-D) are one table over H x W blocks.


cdef int _parse_shape(object shape, Py_ssize_t* out) except -1:
    """Copy a sequence of sizes into out (room for IB_MAX_NDIM); return ndim (2 or more)."""
    if isinstance(shape, (str, bytes)):
        raise TypeError(f"shape must be a sequence of ints, not {type(shape).__name__}")
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, not {type(shape).__name__}") \
            from None
    cdef Py_ssize_t d, n = len(items)
    if n < 2 or n > IB_MAX_NDIM:
        raise ValueError(f"shape must have 2 to {IB_MAX_NDIM} dimensions, got {n}: {items!r}")
    for d in range(n):
        v = items[d]
        if isinstance(v, bool):
            raise TypeError(f"shape[{d}] must be an int, not bool")
        try:
            size = operator.index(v)
        except TypeError:
            raise TypeError(f"shape[{d}] must be an int, not {type(v).__name__}") from None
        if size < 0:
            raise ValueError(f"shape[{d}] must be >= 0, got {size}")
        if size > PY_SSIZE_T_MAX:
            raise MemoryError(f"shape[{d}] = {size} is too large")
        out[d] = size
    return <int>n


cdef tuple _indirect_dims(object indirect):
    """A caller's `indirect` argument converted once, at entry (it may be a one-shot iterator
    and run code as it is read): None for the default, else a tuple of distinct ints. Only
    the converted value travels on; _parse_indirect checks it against the dimensions."""
    if indirect is None:
        return None
    if isinstance(indirect, (str, bytes)):
        raise TypeError(f"indirect must be a sequence of dimensions, not "
                        f"{type(indirect).__name__}")
    try:
        items = tuple(indirect)
    except TypeError:
        raise TypeError(f"indirect must be a sequence of dimensions, not "
                        f"{type(indirect).__name__}") from None
    if not items:
        raise ValueError("indirect must name at least one dimension (got an empty sequence)")
    dims = []
    for v in items:
        if isinstance(v, bool):
            raise TypeError("indirect dimensions must be ints, not bool")
        try:
            d = operator.index(v)
        except TypeError:
            raise TypeError(f"indirect dimensions must be ints, not {type(v).__name__}") \
                from None
        if d in dims:
            raise ValueError(f"indirect dimension {d} is given twice")
        dims.append(d)
    return tuple(dims)


cdef unsigned int _parse_indirect(tuple dims, int ndim) except? 0:
    """The mask of the indirect dimensions `dims` (from _indirect_dims) for `ndim`
    dimensions; None: all but the last (a T*** for 3-D)."""
    if dims is None:
        return (1u << (ndim - 1)) - 1
    cdef unsigned int mask = 0
    for d in dims:
        if d < 0 or d >= ndim - 1:
            raise ValueError(f"indirect dimension {d} is out of range for {ndim} dimensions: "
                             f"0 <= d < {ndim - 1} (the last dimension holds the elements)")
        mask |= 1u << <int>d
    return mask


cdef int _check_layout(int ndim, const Py_ssize_t* shape, unsigned int mask) except -1:
    """A layout that may come from C (cdef API): 2 to IB_MAX_NDIM dimensions of sizes >= 0,
    at least one indirect dimension, never the last."""
    cdef int d
    if ndim < 2 or ndim > IB_MAX_NDIM:
        raise ValueError(f"ndim must be 2 to {IB_MAX_NDIM}, got {ndim}")
    for d in range(ndim):
        if shape[d] < 0:
            raise ValueError(f"shape[{d}] must be >= 0, got {shape[d]}")
    if mask == 0 or mask >> (ndim - 1) != 0:
        raise ValueError(f"indirect mask {mask:#x} must name dimensions 0 to {ndim - 2} only, "
                         "and at least one")
    return 0


cdef tuple _mask_dims(unsigned int mask, int ndim):
    return tuple([d for d in range(ndim) if mask >> d & 1])


cdef unsigned int _mask_of(const Py_ssize_t* suboffsets, int ndim) noexcept:
    cdef unsigned int mask = 0
    cdef int d
    for d in range(ndim):
        if suboffsets[d] >= 0:
            mask |= 1u << d
    return mask


cdef tuple _offsets_arg(object offsets):
    """A caller's `offsets` argument converted once, at entry: None, or a tuple of ints from
    0 to PY_SSIZE_T_MAX (bytes from each pointer to its data)."""
    if offsets is None:
        return None
    if isinstance(offsets, (str, bytes)):
        raise TypeError(f"offsets must be a sequence of ints, not {type(offsets).__name__}")
    try:
        items = tuple(offsets)
    except TypeError:
        raise TypeError(f"offsets must be a sequence of ints, not {type(offsets).__name__}") \
            from None
    values = []
    for k, v in enumerate(items):
        if isinstance(v, bool):
            raise TypeError("offsets must be ints, not bool")
        try:
            value = operator.index(v)
        except TypeError:
            raise TypeError(f"offsets[{k}] must be an int, not {type(v).__name__}") from None
        if value < 0 or value > PY_SSIZE_T_MAX:
            raise ValueError(f"offsets[{k}] must be 0 to {PY_SSIZE_T_MAX}, got {value}")
        values.append(value)
    return tuple(values)


cdef int _parse_offsets(tuple offsets, unsigned int mask, int ndim,
                        Py_ssize_t* out) except -1:
    """Bytes from each pointer to the data it leads to (from _offsets_arg), one per indirect
    dimension in increasing order, into out[d]; None: all 0."""
    cdef int d
    for d in range(ndim):
        out[d] = 0
    if offsets is None:
        return 0
    dims = _mask_dims(mask, ndim)
    if len(offsets) != len(dims):
        raise ValueError(f"offsets needs one value per indirect dimension {dims}, got "
                         f"{len(offsets)}")
    for k in range(len(dims)):
        out[<int>dims[k]] = offsets[k]
    return 0


cdef Py_ssize_t _nd_bytes(int ndim, const Py_ssize_t* shape, Py_ssize_t itemsize) except -1:
    """prod(shape) * itemsize, or MemoryError if it does not fit in Py_ssize_t."""
    cdef Py_ssize_t n = itemsize
    cdef int d
    for d in range(ndim - 1, -1, -1):
        if shape[d] != 0 and n > PY_SSIZE_T_MAX // shape[d]:
            if ndim == 2:
                raise MemoryError(
                    f"{'cols*itemsize' if d == 1 else 'rows*cols*itemsize'} overflows: "
                    f"{'' if d == 1 else str(shape[0]) + '*'}{shape[1]}*{itemsize}")
            raise MemoryError(f"shape {_shape_text(shape, 0, ndim)} of {itemsize}-byte "
                              "elements overflows")
        n *= shape[d]
    return n


cdef Py_ssize_t _table_slots(int ndim, const Py_ssize_t* shape, unsigned int mask) except -1:
    """Pointer slots of all tables: the sum over indirect d of prod(shape[0..d])."""
    cdef Py_ssize_t count = 1, total = 0
    cdef int d
    for d in range(ndim - 1):
        if mask >> d == 0:
            break  # no table after this: the sizes that follow are the data's
        if shape[d] != 0 and count > (PY_SSIZE_T_MAX // <Py_ssize_t>sizeof(void*)) // shape[d]:
            raise MemoryError(f"the pointer tables of shape {_shape_text(shape, 0, ndim)} "
                              "overflow")
        count *= shape[d]
        if mask >> d & 1:
            total += count
            if total > PY_SSIZE_T_MAX // <Py_ssize_t>sizeof(void*):
                raise MemoryError(f"the pointer tables of shape {_shape_text(shape, 0, ndim)} "
                                  "overflow")
    return total


cdef int _layout_strides(int ndim, const Py_ssize_t* shape, unsigned int mask,
                         Py_ssize_t itemsize, const Py_ssize_t* offsets, Py_ssize_t* strides,
                         Py_ssize_t* suboffsets) except -1:
    """Strides and suboffsets of a layout (offsets: per dimension, or NULL for 0)."""
    cdef Py_ssize_t step = itemsize
    cdef int d
    for d in range(ndim - 1, -1, -1):
        if mask >> d & 1:
            step = sizeof(void*)  # the end of a group of tables
            suboffsets[d] = offsets[d] if offsets != NULL else 0
        else:
            suboffsets[d] = -1
        strides[d] = step
        if shape[d] != 0 and step > PY_SSIZE_T_MAX // shape[d]:
            raise MemoryError(f"shape {_shape_text(shape, 0, ndim)} overflows")
        step *= shape[d]
    return 0


cdef int _pointer_levels(int ndim, const Py_ssize_t* shape, const Py_ssize_t* strides,
                         const Py_ssize_t* suboffsets, Py_ssize_t itemsize) noexcept:
    """L if the geometry is a plain T with L+1 stars (indirect exactly in dimensions 0..L-1,
    each a table of adjacent pointers, then C-contiguous elements), else 0."""
    cdef int d, levels = 0
    while levels < ndim - 1 and suboffsets[levels] >= 0:
        if strides[levels] != sizeof(void*) and shape[levels] > 1:
            return 0
        levels += 1
    cdef Py_ssize_t step = itemsize
    for d in range(ndim - 1, levels - 1, -1):
        if suboffsets[d] >= 0 or (shape[d] > 1 and strides[d] != step):
            return 0
        step *= shape[d]
    return levels


cdef void _link_tables(char* tables, char* data, int ndim, const Py_ssize_t* shape,
                       const Py_ssize_t* strides, unsigned int mask,
                       const Py_ssize_t* data_strides) noexcept:
    """Point every slot of the tables (all levels, one after another from `tables`) at its
    block of the next level, and the last level's slots into data: at its C-order blocks,
    or (data_strides given: a view of another object's array) where those strides say."""
    cdef char* level = tables
    cdef char* below
    cdef char* p
    cdef Py_ssize_t count = 1, s, block, rest
    cdef int d, e
    cdef bint is_last
    for d in range(ndim - 1):
        count *= shape[d]  # slots of a table ending at dimension d
        if not (mask >> d & 1):
            continue
        is_last = mask >> (d + 1) == 0
        below = data if is_last else level + count * sizeof(void*)
        block = strides[d + 1] * shape[d + 1]  # one slot's block of the next group
        if is_last and data_strides != NULL:
            for s in range(count):
                p = data
                rest = s
                for e in range(d, -1, -1):
                    p += (rest % shape[e]) * data_strides[e]
                    rest //= shape[e]
                (<char**>level)[s] = p
        else:
            p = below
            for s in range(count):  # the common case: one store per slot
                (<char**>level)[s] = p
                p += block
        level = below


cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #include <unistd.h>
    #endif
    /* Ask Linux for transparent huge pages behind a large block, as NumPy does for its
       arrays (4 MiB and up): with THP in "madvise" mode, copies between our memory and
       NumPy's otherwise pay TLB misses on one side only. Advice on the block's whole pages;
       nothing is touched, and a refusal changes nothing. */
    static void ib_advise_huge_pages(void *block, size_t size) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        long page = sysconf(_SC_PAGESIZE);
        if (size >= ((size_t)1 << 22) && page > 0) {
            uintptr_t start = ((uintptr_t)block + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
            uintptr_t end = ((uintptr_t)block + size) & ~((uintptr_t)page - 1);
            if (end > start)
                (void)madvise((void *)start, (size_t)(end - start), MADV_HUGEPAGE);
        }
    #else
        (void)block; (void)size;
    #endif
    }
    """
    void _advise_huge_pages "ib_advise_huge_pages"(void* block, size_t size) nogil


cdef IndirectMemory _new_memory(int ndim, unsigned int mask):
    """An empty object of the right class: IndirectMemory2D for the 2-D T**."""
    if ndim == 2 and mask == 1:
        return IndirectMemory2D.__new__(IndirectMemory2D)
    return IndirectMemory.__new__(IndirectMemory)


cdef IndirectMemory _new_owned_nd(int ndim, const Py_ssize_t* shape, bytes fmt,
                                  Py_ssize_t itemsize, unsigned int mask, bint readonly):
    """Owned zeroed memory of a validated layout: one data block and one block of tables."""
    cdef Py_ssize_t strides[IB_MAX_NDIM]
    cdef Py_ssize_t suboffsets[IB_MAX_NDIM]
    _check_layout(ndim, shape, mask)
    cdef Py_ssize_t total = _nd_bytes(ndim, shape, itemsize)
    cdef Py_ssize_t slots = _table_slots(ndim, shape, mask)
    _layout_strides(ndim, shape, mask, itemsize, NULL, strides, suboffsets)
    cdef IndirectMemory self = _new_memory(ndim, mask)
    # Never a zero-byte request (may be NULL). __dealloc__ frees whichever succeeded.
    self.owned_table = <void**>malloc((slots if slots > 0 else 1) * sizeof(void*))
    self.owned_data = calloc(total if total > 0 else 1, 1)
    if self.owned_table == NULL or self.owned_data == NULL:
        raise MemoryError(f"cannot allocate memory of shape {_shape_text(shape, 0, ndim)} and "
                          f"format {fmt.decode('ascii')!r} ({total} bytes of data, {slots} "
                          "pointers)")
    _advise_huge_pages(self.owned_data, <size_t>total)
    _advise_huge_pages(self.owned_table, <size_t>slots * sizeof(void*))  # written next
    _link_tables(<char*>self.owned_table, <char*>self.owned_data, ndim, shape, strides, mask,
                 NULL)
    self._init_geometry(self.owned_table, ndim, shape, strides, suboffsets, fmt, itemsize,
                        readonly, None)
    self.layout_trusted = True
    return self


cdef IndirectMemory _wrap_nd(void* ptr, int ndim, const Py_ssize_t* shape, bytes fmt,
                             Py_ssize_t itemsize, unsigned int mask, const Py_ssize_t* offsets,
                             bint readonly, object keepalive, bint lent):
    """Wrap an existing pointer structure of a validated layout; every pointer it holds is
    checked for NULL (a NULL one would crash the first consumer that follows it). lent: no
    memory nanny keeps it valid (see lending.pxi)."""
    cdef Py_ssize_t strides[IB_MAX_NDIM]
    cdef Py_ssize_t suboffsets[IB_MAX_NDIM]
    _check_layout(ndim, shape, mask)
    _nd_bytes(ndim, shape, itemsize)
    _table_slots(ndim, shape, mask)
    _layout_strides(ndim, shape, mask, itemsize, offsets, strides, suboffsets)
    if ptr == NULL:
        raise ValueError("the pointer table is NULL")
    cdef IndirectMemory self = _new_memory(ndim, mask)
    self._init_geometry(<void**>ptr, ndim, shape, strides, suboffsets, fmt, itemsize, readonly,
                        keepalive)
    if lent:
        _lend(self)  # checked below through the copy, as exported
    _check_pointers(self)
    return self


cdef int _check_pointers(IndirectMemory mem) except -1:
    """ValueError if a pointer that a consumer follows is NULL: every pointer on the way to
    an element, and where a dimension is empty, every pointer a consumer still follows to
    index the dimensions before it (memoryview's tolist() does)."""
    cdef Py_buffer view
    cdef _Walker w
    cdef int d, depth = mem.ndim_ - 1, status
    for d in range(mem.ndim_):
        if mem.shape_[d] == 0:
            # Indexing dimension d-1 reads the slots behind dimension d-2's pointers: those
            # (dimensions < d-1) must lead somewhere; nothing is read behind the others.
            depth = d - 1
            break
    if depth <= 0:
        return 0
    _geometry_view(mem, &view)
    status = 1 if _walk_start(&w, &view, depth) else -1
    while status == 1:
        status = _walk_next(&w)
    if status < 0:
        _raise_null(w.null_dim, w.idx, None)
    return 0


cdef void _geometry_view(IndirectMemory mem, Py_buffer* view) noexcept:
    """A Py_buffer describing mem for this module's own walks (no export is counted)."""
    memset(view, 0, sizeof(Py_buffer))
    view.buf = <void*>mem.table
    view.readonly = mem.readonly_
    view.itemsize = mem.itemsize_
    view.format = <char*>mem.format_
    view.ndim = mem.ndim_
    view.shape = mem.shape_
    view.strides = mem.strides_
    view.suboffsets = mem.suboffsets_


cdef str _shape_text(const Py_ssize_t* values, int first, int ndim):
    return "(" + ", ".join([str(values[d]) for d in range(first, ndim)]) + ")"
