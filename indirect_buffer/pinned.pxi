# Pinning for C calls that run without the GIL (ctypes and cffi drop it for every call):
# what IndirectMemory.pinned() returns, the Python face of cdef pin()/unpin().

cdef extern from "Python.h":
    void PyErr_SetObject(object type, object value)
    void PyErr_WriteUnraisable(object obj)
    void PyErr_Fetch(PyObject** type, PyObject** value, PyObject** tb)
    void PyErr_Restore(PyObject* type, PyObject* value, PyObject* tb)


cdef void _report_unraisable(object exc, object where) noexcept:
    """Report exc through sys.unraisablehook (for contract violations in noexcept code),
    leaving any exception being raised meanwhile as it was."""
    cdef PyObject* saved_type
    cdef PyObject* saved_value
    cdef PyObject* saved_tb
    PyErr_Fetch(&saved_type, &saved_value, &saved_tb)
    PyErr_SetObject(type(exc), exc)
    PyErr_WriteUnraisable(where)
    PyErr_Restore(saved_type, saved_value, saved_tb)


@cython.no_gc_clear  # __dealloc__ must still find mem to unpin it
@cython.final
@cython.auto_pickle(False)
cdef class _Pinned:
    """Pins an IndirectMemory from __enter__ (which returns the table's address) to
    __exit__; see IndirectMemory.pinned()."""
    cdef IndirectMemory mem
    cdef object format
    cdef bint writable
    cdef Py_ssize_t row_offset
    cdef tuple offsets  # per indirect dimension (from _offsets_arg), or None: row_offset
    cdef bint entered

    def __init__(self, *args, **kwargs):
        raise TypeError("pinned contexts are made by IndirectMemory.pinned()")

    def __enter__(self):
        cdef IndirectMemory mem = self.mem
        if mem is None:
            raise ValueError("operation on uninitialised pinned context")
        if self.entered:
            raise ValueError("this pinned() context is already entered; call pinned() again "
                             "for a second pin")
        cdef Py_ssize_t offs[IB_MAX_NDIM]
        cdef void* address = mem.table
        if self.offsets is None:
            address = _table_for_c(mem, self.format, self.writable, self.row_offset)
        else:
            mem._check_alive()
            _parse_offsets(self.offsets, _mask_of(mem.suboffsets_, mem.ndim_), mem.ndim_, offs)
            _check_request(mem, self.format, self.writable, offs, True)
            if _window_link(mem) is not None and mem.levels_ == 0:
                raise BufferError(f"pinned(offsets=...) hands C the window's own tables, but "
                                  f"they are not a plain pointer structure (strides "
                                  f"{mem.strides}); copy() the window first")
        mem.pin()
        self.entered = True
        mem.layout_trusted = False  # C may re-point rows from now on
        return <uintptr_t>address

    def __exit__(self, exc_type, exc, tb):
        self._unpin()
        return False

    cdef void _unpin(self) noexcept:
        if self.entered:
            self.entered = False
            self.mem.unpin()

    def __dealloc__(self):
        # Left without __exit__ (an abandoned generator, say): the pin must not outlive us.
        self._unpin()

    def __repr__(self):
        state = "entered" if self.entered else "not entered"
        return f"<pinned {self.mem!r} {state}>"
