# direct_view(): the rows of an IndirectMemory2D exported as one C-contiguous block.

cdef char* _first_row_of_block(IndirectMemory2D mem) except? NULL:
    """Start of row 0 if the rows lie back to back in memory, else BufferError."""
    cdef Py_ssize_t i, rows = mem.shape_[0], row_bytes = mem.shape_[1] * mem.itemsize_
    cdef Py_ssize_t sub = mem.suboffsets_[0]
    if rows == 0:
        return NULL
    if mem.table[0] == NULL:
        raise ValueError("row 0 of the pointer table is NULL")
    cdef char* first = <char*>mem.table[0] + sub
    for i in range(1, 0 if mem.layout_trusted else rows):
        if <char*>mem.table[i] + sub != first + i * row_bytes:
            raise BufferError(f"rows are not back to back in memory (row {i} is not "
                              f"{row_bytes} bytes after row {i - 1})")
    return first


@cython.no_gc_clear  # __releasebuffer__ needs parent, whatever order gc clears a cycle in
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
        cdef IndirectMemory2D p = self.parent
        if p is None:  # made with __new__, bypassing direct_view()
            raise ValueError("operation on uninitialised direct view exporter")
        p._check_alive()
        if (flags & PyBUF_WRITABLE) and p.readonly_:
            raise BufferError(f"{type(p).__name__} is read-only")
        if (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS and p.shape_[0] > 1 \
                and p.shape_[1] > 1:
            raise BufferError("a direct view is C-contiguous, not Fortran-contiguous")
        # Checked at every export: C code may have re-pointed rows since the last one.
        cdef char* data = _first_row_of_block(p)
        if self.live == 0:
            self.shape_[0] = p.shape_[0]
            self.shape_[1] = p.shape_[1]
            self.strides_[0] = p.shape_[1] * p.itemsize_
            self.strides_[1] = p.itemsize_
        # A zero-row view still needs a non-NULL buf: point at the table itself.
        buffer.buf = data if data != NULL else <void*>p.table
        buffer.len = p.shape_[0] * p.shape_[1] * p.itemsize_
        buffer.readonly = p.readonly_
        buffer.itemsize = p.itemsize_
        buffer.format = <char*>p.format_ if (flags & PyBUF_FORMAT) else NULL
        buffer.ndim = 2
        # The block is C-contiguous: shape and strides are reported when asked for, and a
        # plain PyBUF_SIMPLE consumer may read it as bytes.
        buffer.shape = self.shape_ if (flags & PyBUF_ND) == PyBUF_ND else NULL
        buffer.strides = self.strides_ if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL
        # obj: the view keeps this exporter, and through it the parent, alive.
        buffer.obj = self
        self.live += 1
        p.exports += 1

    def __releasebuffer__(self, Py_buffer* buffer):
        self.live -= 1
        self.parent.exports -= 1

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a direct view exporter: it exports raw memory")

    def __copy__(self):
        raise TypeError("cannot copy a direct view exporter: it exports raw memory")

    def __deepcopy__(self, memo):
        raise TypeError("cannot copy a direct view exporter: it exports raw memory")

