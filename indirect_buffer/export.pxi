# Buffer export: the only code that fills a Py_buffer, for the T** of an IndirectMemory2D and
# for direct_view()'s C-contiguous block. Each answers every PEP 3118 request as CPython's own
# exporters do (_testbuffer's PIL-style ndarray, and memoryview).

cdef extern from *:
    """
    /* view->obj for an export made without the __getbuffer__ slot (our internal copies). */
    static void ib_set_view_obj(Py_buffer *view, PyObject *obj) {
        Py_INCREF(obj);
        view->obj = obj;
    }
    """
    void _set_view_obj "ib_set_view_obj"(Py_buffer* view, object obj)


cdef int _export_indirect(IndirectMemory2D mem, Py_buffer* buffer, int flags,
                          bint internal) except -1:
    """Fill everything but buffer.obj with mem's T** geometry and count one export.

    internal: this module's own short-lived export (a copy), which does not hand the table
    to anybody, so mem.layout_trusted survives it.
    """
    mem._check_alive()
    if (flags & _INDIRECT_FLAGS) != _INDIRECT_FLAGS:
        raise BufferError(f"{type(mem).__name__} is an indirect (T**) buffer: the consumer "
                          "must request PyBUF_INDIRECT")
    if flags & _CONTIGUITY_BITS:
        raise BufferError(f"{type(mem).__name__} is an indirect (T**) buffer and cannot be "
                          "exported as contiguous")
    if (flags & PyBUF_WRITABLE) and mem.readonly_:
        raise BufferError(f"{type(mem).__name__} is read-only")
    # buf: the row-pointer table; element (i, j) is *(char**)(buf + i*strides[0])
    #      + suboffsets[0] + j*strides[1].
    buffer.buf = <void*>mem.table
    # len: bytes of element data (not of the table), as for any N-D buffer.
    buffer.len = mem.shape_[0] * mem.shape_[1] * mem.itemsize_
    buffer.readonly = mem.readonly_
    buffer.itemsize = mem.itemsize_
    # format may be NULL ("B") only when the consumer did not ask for it.
    buffer.format = <char*>mem.format_ if (flags & PyBUF_FORMAT) else NULL
    # PyBUF_INDIRECT includes PyBUF_STRIDES and PyBUF_ND: all three arrays are always given.
    buffer.ndim = 2
    # shape/strides/suboffsets live in mem and are frozen while exported.
    buffer.shape = mem.shape_
    buffer.strides = mem.strides_
    # suboffsets[0] >= 0: dereference after stepping over rows; -1: columns are direct.
    buffer.suboffsets = mem.suboffsets_
    buffer.internal = NULL
    if not internal:
        mem.layout_trusted = False  # the consumer has the table in buf
    mem.exports += 1
    return 0


cdef int _acquire(object obj, Py_buffer* view, int flags) except -1:
    """Acquire obj's buffer for this module's own use (copies).

    An IndirectMemory2D answers from its own state, never through a hook, so a fast path that
    trusts that state (layout_trusted) acts on the very geometry it was decided from.
    """
    if isinstance(obj, IndirectMemory2D):
        _export_indirect(<IndirectMemory2D>obj, view, flags, True)
        _set_view_obj(view, obj)
    else:
        PyObject_GetBuffer(obj, view, flags)
    return 0


cdef char* _first_row_of_block(IndirectMemory2D mem) except? NULL:
    """Start of row 0 if the rows lie back to back in memory (NULL if there is no element),
    else BufferError."""
    cdef Py_ssize_t i, rows = mem.shape_[0], row_bytes = mem.shape_[1] * mem.itemsize_
    cdef Py_ssize_t sub = mem.suboffsets_[0]
    if rows == 0 or row_bytes == 0:
        return NULL  # no element: rows may even be NULL (allowed when cols == 0)
    if mem.table[0] == NULL:
        raise ValueError("row 0 of the pointer table is NULL")
    cdef char* first = <char*>mem.table[0] + sub
    for i in range(1, 0 if mem.layout_trusted else rows):
        if <char*>mem.table[i] + sub != first + i * row_bytes:
            raise BufferError(f"rows are not back to back in memory (row {i} is not "
                              f"{row_bytes} bytes after row {i - 1})")
    return first


@cython.no_gc_clear  # __releasebuffer__ needs parent, whatever order gc clears a cycle in
@cython.final
@cython.auto_pickle(False)
cdef class _DirectExport:
    """Exports the rows of an IndirectMemory2D as one C-contiguous 2-D block."""
    cdef IndirectMemory2D parent
    # Geometry of the live exports; refreshed by each new export (the parent cannot change
    # shape or format while one is alive).
    cdef Py_ssize_t shape_[2]
    cdef Py_ssize_t strides_[2]
    cdef Py_ssize_t live  # exports of this exporter (the parent counts them too)

    def __init__(self, *args, **kwargs):
        raise TypeError("direct view exporters are made by IndirectMemory2D.direct_view()")

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        # The rules (and their order) are memoryview's for a C-contiguous base buffer.
        cdef IndirectMemory2D p = self.parent
        if p is None:  # made with __new__, bypassing direct_view()
            raise ValueError("operation on uninitialised direct view exporter")
        p._check_alive()
        # Checked at every export: C code may have re-pointed rows since the last one.
        cdef char* data = _first_row_of_block(p)
        if self.live == 0:
            self.shape_[0] = p.shape_[0]
            self.shape_[1] = p.shape_[1]
            self.strides_[0] = p.shape_[1] * p.itemsize_
            self.strides_[1] = p.itemsize_
        # A view without elements still needs a non-NULL buf: point at the table itself.
        buffer.buf = data if data != NULL else <void*>p.table
        buffer.len = p.shape_[0] * p.shape_[1] * p.itemsize_
        buffer.readonly = p.readonly_
        buffer.itemsize = p.itemsize_
        buffer.format = <char*>p.format_
        buffer.ndim = 2
        buffer.shape = self.shape_
        buffer.strides = self.strides_
        buffer.suboffsets = NULL  # a block: nothing to dereference
        buffer.internal = NULL
        if (flags & PyBUF_WRITABLE) and p.readonly_:
            raise BufferError(f"{type(p).__name__} is read-only")
        if not (flags & PyBUF_FORMAT):
            buffer.format = NULL  # the consumer reads unsigned bytes
        # Always C-contiguous; Fortran-contiguous only when at most one dimension exceeds 1.
        if (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS and \
                not PyBuffer_IsContiguous(buffer, b'F'):
            raise BufferError("a direct view is C-contiguous, not Fortran-contiguous")
        if (flags & PyBUF_STRIDES) != PyBUF_STRIDES:
            buffer.strides = NULL  # C-contiguous: the consumer may derive them
        if (flags & PyBUF_ND) != PyBUF_ND:
            # PyBUF_SIMPLE / PyBUF_WRITABLE: one dimension of len unsigned bytes.
            if buffer.format != NULL:
                raise BufferError("a direct view cannot be read as unsigned bytes when the "
                                  "consumer asks for its format (PyBUF_FORMAT without "
                                  "PyBUF_ND)")
            buffer.ndim = 1
            buffer.shape = NULL
        # obj: the view keeps this exporter, and through it the parent, alive.
        buffer.obj = self
        self.live += 1
        p.exports += 1

    def __releasebuffer__(self, Py_buffer* buffer):
        if self.live > 0:
            self.live -= 1
            if self.parent.exports > 0:
                self.parent.exports -= 1

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a direct view exporter: it exports raw memory")

    def __copy__(self):
        raise TypeError("cannot copy a direct view exporter: it exports raw memory")

    def __deepcopy__(self, memo):
        raise TypeError("cannot copy a direct view exporter: it exports raw memory")
