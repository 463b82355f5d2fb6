# Zero-copy row (or column) views over another object's strided buffer.

cdef IndirectMemory2D _view_from_lines(object source, bint readonly, bint columns):
    """Build a T** over the contiguous rows (or columns) of source, holding its buffer."""
    # A memoryview holds the source's buffer: it fills in strides that an exporter may leave
    # NULL (ctypes does), and the garbage collector can see the source through it, so a
    # reference cycle through the view is collectable.
    holder = memoryview(source)
    cdef Py_buffer* view = PyMemoryView_GET_BUFFER(holder)
    if not readonly and view.readonly:
        raise BufferError(f"cannot make a writable view of read-only {type(source).__name__}; "
                          "pass readonly=True")
    if view.ndim not in (1, 2):
        raise BufferError(f"expected a 1-D or 2-D buffer, got {view.ndim}-D "
                          f"{type(source).__name__}")
    cdef Py_ssize_t lines, length, line_stride, elem_stride, line_sub = -1
    if view.ndim == 1:
        lines, length = 1, view.shape[0]
        line_stride, elem_stride = 0, view.strides[0]
        if view.suboffsets != NULL and view.suboffsets[0] >= 0:
            raise BufferError("a 1-D indirect buffer has no contiguous row")
    elif not columns:
        lines, length = view.shape[0], view.shape[1]
        line_stride, elem_stride = view.strides[0], view.strides[1]
        if view.suboffsets != NULL:
            line_sub = view.suboffsets[0]
            if view.suboffsets[1] >= 0:
                raise BufferError("rows of the source are themselves indirect")
    else:
        lines, length = view.shape[1], view.shape[0]
        line_stride, elem_stride = view.strides[1], view.strides[0]
        if view.suboffsets != NULL and (view.suboffsets[0] >= 0 or view.suboffsets[1] >= 0):
            raise BufferError("columns of an indirect buffer are not contiguous")
    _check_exported_format(view, -1)
    what = "columns" if columns else "rows"
    if lines > 0 and length > 1 and elem_stride != view.itemsize:
        raise BufferError(f"{what} of the source are not contiguous: element stride "
                          f"{elem_stride}, itemsize {view.itemsize}")
    # The exporter vouches for format and itemsize (NumPy's 'Zd' is not a struct format).
    fmt = b"B" if view.format == NULL else <bytes>view.format
    cdef void** table = <void**>malloc((lines if lines > 0 else 1) * sizeof(void*))
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
                free(table)
                raise ValueError(f"row {i} of the source's pointer table is NULL")
            p += line_sub
        table[i] = p
    cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
    self.owned_table = table  # freed by self; the data belongs to source (held by holder)
    self._init_layout(table, lines, length, fmt, view.itemsize, readonly, 0, holder)
    self.layout_trusted = line_sub < 0 and (lines <= 1 or line_stride == length * view.itemsize)
    return self

