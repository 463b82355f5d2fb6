# Buffer export: the only code that fills a Py_buffer, for the indirect memory of an
# IndirectMemory (the T** of an IndirectMemory2D) and for direct_view()'s C-contiguous block.
# Each answers every PEP 3118 request as CPython's own exporters do (_testbuffer's PIL-style
# ndarray, and memoryview).

cdef extern from *:
    """
    /* view->obj for an export made without the __getbuffer__ slot (our internal copies). */
    static void ib_set_view_obj(Py_buffer *view, PyObject *obj) {
        Py_INCREF(obj);
        view->obj = obj;
    }
    """
    void _set_view_obj "ib_set_view_obj"(Py_buffer* view, object obj)


cdef int _export_indirect(IndirectMemory mem, Py_buffer* buffer, int flags,
                          bint internal) except -1:
    """Fill everything but buffer.obj with mem's geometry and count one export.

    internal: this module's own short-lived export (a copy), which does not hand the table
    to anybody, so mem.layout_trusted survives it.
    """
    mem._check_alive()
    if (flags & _INDIRECT_FLAGS) != _INDIRECT_FLAGS:
        raise BufferError(f"{type(mem).__name__} is an indirect ({_layout_text(mem)}) buffer: "
                          "the consumer must request PyBUF_INDIRECT")
    if flags & _CONTIGUITY_BITS:
        raise BufferError(f"{type(mem).__name__} is an indirect ({_layout_text(mem)}) buffer "
                          "and cannot be exported as contiguous")
    if (flags & PyBUF_WRITABLE) and mem.readonly_:
        raise BufferError(f"{type(mem).__name__} is read-only")
    # buf: the root pointer table; for a T**, element (i, j) is
    #      *(char**)(buf + i*strides[0]) + suboffsets[0] + j*strides[1].
    buffer.buf = <void*>mem.table
    # len: bytes of element data (not of the tables), as for any N-D buffer.
    buffer.len = _nd_bytes(mem.ndim_, mem.shape_, mem.itemsize_)
    buffer.readonly = mem.readonly_
    buffer.itemsize = mem.itemsize_
    # format may be NULL ("B") only when the consumer did not ask for it.
    buffer.format = <char*>mem.format_ if (flags & PyBUF_FORMAT) else NULL
    # PyBUF_INDIRECT includes PyBUF_STRIDES and PyBUF_ND: all three arrays are always given.
    buffer.ndim = mem.ndim_
    # shape/strides/suboffsets live in mem and are frozen while exported.
    buffer.shape = mem.shape_
    buffer.strides = mem.strides_
    # suboffsets[d] >= 0: dereference after stepping over dimension d; -1: direct.
    buffer.suboffsets = mem.suboffsets_
    buffer.internal = NULL
    if not internal:
        mem.layout_trusted = False  # the consumer has the table in buf
    mem.exports += 1
    return 0


cdef int _acquire(object obj, Py_buffer* view, int flags) except -1:
    """Acquire obj's buffer for this module's own use (copies).

    An IndirectMemory answers from its own state, never through a hook, so a fast path that
    trusts that state (layout_trusted) acts on the very geometry it was decided from.
    """
    if isinstance(obj, IndirectMemory):
        _export_indirect(<IndirectMemory>obj, view, flags, True)
        _set_view_obj(view, obj)
    else:
        PyObject_GetBuffer(obj, view, flags)
    return 0


cdef char* _block_start(IndirectMemory mem) except? NULL:
    """Where the first element is if all elements lie back to back in C order (NULL if there
    is no element), else BufferError naming the first row that does not follow."""
    cdef Py_buffer view
    cdef _Walker w
    cdef int d, last = mem.ndim_ - 1
    cdef Py_ssize_t n = 0, run_bytes = mem.shape_[last] * mem.itemsize_
    for d in range(mem.ndim_):
        if mem.shape_[d] == 0:
            return NULL  # no element: pointers may even be NULL
    _geometry_view(mem, &view)
    if not _walk_start(&w, &view, last):
        _raise_null(w.null_dim, w.idx, None)
    cdef char* first = _run(&w)
    if mem.layout_trusted:
        return first
    if mem.shape_[last] > 1 and mem.strides_[last] != mem.itemsize_:
        raise BufferError(f"rows are not contiguous (element stride {mem.strides_[last]}, "
                          f"itemsize {mem.itemsize_})")
    while True:
        n += 1
        status = _walk_next(&w)
        if status == 0:
            return first
        if status < 0:
            _raise_null(w.null_dim, w.idx, None)
        if _run(&w) != first + n * run_bytes:
            _check_pointers(mem)  # a NULL pointer further on is the better message
            if last == 1:
                raise BufferError(f"rows are not back to back in memory (row {n} is not "
                                  f"{run_bytes} bytes after row {n - 1})")
            index = ", ".join([str(w.idx[d]) for d in range(last)])
            raise BufferError(f"rows are not back to back in memory (the row at index "
                              f"({index}) is not {run_bytes} bytes after the one before)")


@cython.no_gc_clear  # __releasebuffer__ needs parent, whatever order gc clears a cycle in
@cython.final
@cython.auto_pickle(False)
cdef class _DirectExport:
    """Exports the elements of an IndirectMemory as one C-contiguous block."""
    cdef IndirectMemory parent
    # Geometry of the live exports; refreshed by each new export (the parent cannot change
    # shape or format while one is alive).
    cdef Py_ssize_t shape_[IB_MAX_NDIM]
    cdef Py_ssize_t strides_[IB_MAX_NDIM]
    cdef Py_ssize_t live  # exports of this exporter (the parent counts them too)

    def __init__(self, *args, **kwargs):
        raise TypeError("direct view exporters are made by IndirectMemory.direct_view()")

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        # The rules (and their order) are memoryview's for a C-contiguous base buffer.
        cdef IndirectMemory p = self.parent
        cdef int d
        if p is None:  # made with __new__, bypassing direct_view()
            raise ValueError("operation on uninitialised direct view exporter")
        p._check_alive()
        # Checked at every export: C code may have re-pointed rows since the last one.
        cdef char* data = _block_start(p)
        if self.live == 0:
            for d in range(p.ndim_ - 1, -1, -1):
                self.shape_[d] = p.shape_[d]
                self.strides_[d] = p.itemsize_ if d == p.ndim_ - 1 else \
                    self.strides_[d + 1] * p.shape_[d + 1]
        # A view without elements still needs a non-NULL buf: point at the table itself.
        buffer.buf = data if data != NULL else <void*>p.table
        buffer.len = _nd_bytes(p.ndim_, p.shape_, p.itemsize_)
        buffer.readonly = p.readonly_
        buffer.itemsize = p.itemsize_
        buffer.format = <char*>p.format_
        buffer.ndim = p.ndim_
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
