# Zero-copy views over another object's strided buffer: 2-D row (or column) views, and N-D
# views with pointer tables at chosen dimensions.

cdef IndirectMemory2D _view_from_lines(object source, bint readonly, bint columns):
    """Build a T** over the contiguous rows (or columns) of source, holding its buffer.

    Rows: of a 1-D buffer (one row) or of an N-D one (row i is source[i], all its dimensions
    C-contiguous). Columns: of a 1-D or 2-D buffer.
    """
    # The source's buffer is held by a _HeldBuffers in keepalive: the garbage collector sees
    # the source through it (a cycle through the view is collectable), and it is given back
    # only once the view is unreachable.
    cdef _HeldBuffers held = _HeldBuffers.__new__(_HeldBuffers)
    held.alloc(1)
    # An exact NumPy array of a dtype seen before is read without NumPy's export (see
    # ndarray_export.pxi): the checks below are the same.
    if not _export_ndarray(source, held.views):
        PyObject_GetBuffer(source, held.views, PyBUF_FULL_RO)
        held.count = 1
        _learn_descr(source, held.views)
    held.count = 1
    cdef Py_buffer* view = held.views
    # NULL shape or strides (ctypes leaves strides NULL): C-contiguous, spelled out here.
    cdef Py_ssize_t c_shape[1]
    cdef Py_ssize_t c_strides[_MAX_NDIM]
    cdef Py_ssize_t* shape = view.shape
    cdef Py_ssize_t* strides = view.strides
    cdef int d
    if view.ndim < 0 or view.ndim > _MAX_NDIM or view.itemsize <= 0:
        raise BufferError(f"{type(source).__name__} exported ndim {view.ndim}, itemsize "
                          f"{view.itemsize}")
    if shape == NULL and view.ndim == 1:
        c_shape[0] = view.len // view.itemsize
        shape = c_shape
    if strides == NULL and shape != NULL:
        for d in range(view.ndim - 1, -1, -1):
            c_strides[d] = (view.itemsize if d == view.ndim - 1
                            else c_strides[d + 1] * shape[d + 1])
        strides = c_strides
    if not readonly and view.readonly:
        raise BufferError(f"cannot make a writable view of read-only {type(source).__name__}; "
                          "pass readonly=True")
    if view.ndim < 1 or shape == NULL or (columns and view.ndim > 2):
        raise BufferError(f"expected a 1-D or {'2-D' if columns else 'N-D'} buffer, got "
                          f"{view.ndim}-D {type(source).__name__}")
    _check_exported_format(view, -1)
    cdef Py_ssize_t lines, length, line_stride, elem_stride, step, line_sub = -1
    what = "columns" if columns else "rows"
    if view.ndim == 1:
        lines, length = 1, shape[0]
        line_stride, elem_stride = 0, strides[0]
        if view.suboffsets != NULL and view.suboffsets[0] >= 0:
            raise BufferError("a 1-D indirect buffer has no contiguous row")
    elif columns:
        lines, length = shape[1], shape[0]
        line_stride, elem_stride = strides[1], strides[0]
        if view.suboffsets != NULL and (view.suboffsets[0] >= 0 or view.suboffsets[1] >= 0):
            raise BufferError("columns of an indirect buffer are not contiguous")
    else:
        # One row per index of the first dimension; a row is everything after it (an
        # H x W x C image: H rows of W*C elements), which must be C-contiguous.
        lines, line_stride = shape[0], strides[0]
        if view.suboffsets != NULL:
            line_sub = view.suboffsets[0]
            for d in range(1, view.ndim):
                if view.suboffsets[d] >= 0:
                    raise BufferError(f"rows of the source are themselves indirect "
                                      f"(suboffset {view.suboffsets[d]} in dimension {d})")
        length = 1
        for d in range(1, view.ndim):
            if shape[d] != 0 and length > PY_SSIZE_T_MAX // shape[d]:
                raise MemoryError(f"a row of shape {_shape_text(shape, 1, view.ndim)} has too "
                                  "many elements")
            length *= shape[d]
        if lines > 0 and length > 0:
            step = view.itemsize  # the stride dimension d needs in a C-contiguous row
            for d in range(view.ndim - 1, 0, -1):
                if shape[d] > 1 and strides[d] != step:
                    raise BufferError(
                        f"rows of the source are not C-contiguous: dimension {d} has stride "
                        f"{strides[d]}, a C-contiguous row needs {step} (shape "
                        f"{_shape_text(shape, 0, view.ndim)}, strides "
                        f"{_shape_text(strides, 0, view.ndim)})")
                step *= shape[d]
        elem_stride = view.itemsize  # checked above, dimension by dimension
    if lines > 0 and length > 1 and elem_stride != view.itemsize:
        raise BufferError(f"{what} of the source are not contiguous: element stride "
                          f"{elem_stride}, itemsize {view.itemsize}")
    # The exporter vouches for format and itemsize (NumPy's 'Zd' is not a struct format).
    fmt = _format_bytes(view.format)
    _forget_borrowed_geometry(view)  # used up
    # Row pointers read out of lent memory's table would outlive the loan (see lending.pxi).
    if line_sub >= 0 and _in_lent_table(view.buf):
        raise BufferError(f"cannot view the rows of lent memory through "
                          f"{type(source).__name__}: the view would keep pointing into it past "
                          "the loan; use the memory itself, or copy() it")
    cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
    # Freed by self (also if anything below fails); the data belongs to source (held).
    cdef void** table = <void**>malloc((lines if lines > 0 else 1) * sizeof(void*))
    self.owned_table = table
    if table == NULL:
        raise MemoryError(f"cannot allocate a table of {lines} row pointers")
    cdef Py_ssize_t i
    cdef char* base = <char*>view.buf
    cdef char* p
    for i in range(lines):
        p = base + i * line_stride
        if line_sub >= 0:
            p = (<char**>p)[0]
            if p == NULL and length > 0:
                raise ValueError(f"row {i} of the source's pointer table is NULL")
            p += line_sub
        table[i] = p
    self._init_layout(table, lines, length, fmt, view.itemsize, readonly, 0, held)
    self.layout_trusted = line_sub < 0 and (lines <= 1 or line_stride == length * view.itemsize)
    return self


cdef IndirectMemory _view_nd(object source, tuple indirect, bint readonly):
    """Pointer tables at the indirect dimensions (from _indirect_dims) over a direct N-D
    buffer, zero-copy; the source must be C-contiguous after its last indirect dimension."""
    cdef Py_ssize_t shape[IB_MAX_NDIM]
    cdef Py_ssize_t src_strides[IB_MAX_NDIM]
    cdef Py_ssize_t strides[IB_MAX_NDIM]
    cdef Py_ssize_t suboffsets[IB_MAX_NDIM]
    cdef int d, ndim, last
    cdef _HeldBuffers held = _HeldBuffers.__new__(_HeldBuffers)
    held.alloc(1)
    if not _export_ndarray(source, held.views):
        PyObject_GetBuffer(source, held.views, PyBUF_FULL_RO)
        held.count = 1
        _learn_descr(source, held.views)
    held.count = 1
    cdef Py_buffer* view = held.views
    ndim = view.ndim
    if ndim < 2 or ndim > IB_MAX_NDIM or view.shape == NULL or view.itemsize <= 0:
        raise BufferError(f"expected a buffer of 2 to {IB_MAX_NDIM} dimensions, got "
                          f"{view.ndim}-D {type(source).__name__} (itemsize {view.itemsize})")
    # Copied before any Python code runs (an array read directly lends its own arrays).
    for d in range(ndim):
        shape[d] = view.shape[d]
        src_strides[d] = view.strides[d] if view.strides != NULL else 0
        if view.suboffsets != NULL and view.suboffsets[d] >= 0:
            raise BufferError(f"the source is itself indirect (suboffset "
                              f"{view.suboffsets[d]} in dimension {d}): copy it with "
                              "as_indirect(obj, indirect=...)")
    if view.strides == NULL:  # C-contiguous
        src_strides[ndim - 1] = view.itemsize
        for d in range(ndim - 2, -1, -1):
            src_strides[d] = src_strides[d + 1] * shape[d + 1]
    _forget_borrowed_geometry(view)
    if not readonly and view.readonly:
        raise BufferError(f"cannot make a writable view of read-only {type(source).__name__}; "
                          "pass readonly=True")
    _check_exported_format(view, -1)
    fmt = _format_bytes(view.format)
    cdef Py_ssize_t itemsize = view.itemsize
    cdef unsigned int mask = _parse_indirect(indirect, ndim)
    last = 0
    for d in range(ndim):
        if mask >> d & 1:
            last = d
    cdef Py_ssize_t total = _nd_bytes(ndim, shape, itemsize)
    cdef Py_ssize_t step = itemsize
    cdef bint block = True
    for d in range(ndim - 1, -1, -1):
        if shape[d] > 1 and src_strides[d] != step:
            block = False
            if d > last and total > 0:
                raise BufferError(
                    f"the source is not C-contiguous after its last indirect dimension "
                    f"{last}: dimension {d} has stride {src_strides[d]}, C-contiguous needs "
                    f"{step} (shape {_shape_text(shape, 0, ndim)}, strides "
                    f"{_shape_text(src_strides, 0, ndim)})")
        step *= shape[d]
    cdef Py_ssize_t slots = _table_slots(ndim, shape, mask)
    _layout_strides(ndim, shape, mask, itemsize, NULL, strides, suboffsets)
    cdef IndirectMemory self = _new_memory(ndim, mask)
    # Freed by self (also if anything below fails); the data belongs to source (held).
    self.owned_table = <void**>malloc((slots if slots > 0 else 1) * sizeof(void*))
    if self.owned_table == NULL:
        raise MemoryError(f"cannot allocate {slots} pointers for a view of shape "
                          f"{_shape_text(shape, 0, ndim)}")
    _link_tables(<char*>self.owned_table, <char*>view.buf, ndim, shape, strides, mask,
                 src_strides)
    self._init_geometry(self.owned_table, ndim, shape, strides, suboffsets, fmt, itemsize,
                        readonly, held)
    self.layout_trusted = block
    return self
