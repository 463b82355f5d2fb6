# BufferCollection2D: equal-length buffers of other objects viewed as one T**.
#
# The rows' buffers are held by a _RowBuffers object in the collection's keepalive, not by the
# collection itself, because giving a buffer back can run arbitrary Python code (a row's
# __release_buffer__, a __del__ reached through it). Held there, they are given back only when
# the collection can no longer be reached: after release() marked it released and dropped the
# table, or, when it dies, after its weak references were cleared (the base type's
# deallocation clears weakrefs before it drops keepalive).

cdef extern from *:
    """
    /* tp_traverse without Cython's exception check on the visitor's result. */
    typedef int (*ib_visitproc)(PyObject *, void *);
    typedef int (*ib_traverseproc)(PyObject *, ib_visitproc, void *);
    """
    ctypedef int (*_visitproc "ib_visitproc")(PyObject*, void*) noexcept
    ctypedef int (*_traverseproc "ib_traverseproc")(PyObject*, _visitproc, void*) noexcept


@cython.no_gc_clear  # the buffers go back at deallocation or release_all(), never half-way
@cython.final
@cython.auto_pickle(False)
cdef class _RowBuffers:
    """The acquired Py_buffer of every row of a BufferCollection2D."""
    cdef Py_buffer* views
    cdef Py_ssize_t count  # acquired so far
    cdef tuple rows

    def __init__(self, *args, **kwargs):
        raise TypeError("row buffers are made by BufferCollection2D")

    cdef void release_all(self) noexcept:
        # Detach first: the releases run Python code, which must find nothing left to free.
        cdef Py_buffer* views = self.views
        cdef Py_ssize_t i, n = self.count
        self.views = NULL
        self.count = 0
        if views == NULL:
            return
        for i in range(n):
            PyBuffer_Release(&views[i])
        PyMem_Free(views)

    def __dealloc__(self):
        self.release_all()


cdef _traverseproc _row_buffers_traverse_fields = NULL


cdef int _row_buffers_traverse(PyObject* o, _visitproc visit, void* arg) noexcept:
    """Let the garbage collector see each Py_buffer's reference (view.obj), as it sees a
    memoryview's: a PickleBuffer row or a PEP 688 exporter holds its buffer through an object
    other than the row, and a cycle through it must stay collectable."""
    cdef int e = _row_buffers_traverse_fields(o, visit, arg)
    if e:
        return e
    cdef Py_buffer* views = (<_RowBuffers>o).views
    cdef Py_ssize_t i
    for i in range((<_RowBuffers>o).count):
        if <PyObject*>views[i].obj != NULL:
            e = visit(<PyObject*>views[i].obj, arg)
            if e:
                return e
    return 0


cdef void _install_row_buffers_traverse() noexcept:
    global _row_buffers_traverse_fields
    cdef PyTypeObject* tp = <PyTypeObject*>_RowBuffers
    _row_buffers_traverse_fields = <_traverseproc>tp.tp_traverse
    tp.tp_traverse = <traverseproc>_row_buffers_traverse


@cython.no_gc_clear
@cython.auto_pickle(False)
cdef class BufferCollection2D(IndirectMemory2D):
    """Equal-length buffers (e.g. NumPy rows, bytearrays) viewed as one T**, zero-copy.

    BufferCollection2D(rows, column_count=-1, format=None, unravel=True)
    """

    def __init__(self, rows, column_count=-1, format=None, unravel=True):
        # Once only: everything below may run Python code (iterators, __index__, a row's
        # __buffer__) that calls __init__ on this very object again.
        self._check_not_initialised()
        self.init_started = True
        if column_count is None:
            column_count = -1
        if isinstance(column_count, bool):
            raise TypeError("column_count must be an int or None, not bool")
        try:
            column_count = operator.index(column_count)
        except TypeError:
            raise TypeError(f"column_count must be an int or None, not "
                            f"{type(column_count).__name__}") from None
        if column_count < -1:
            raise ValueError(f"column_count must be >= 0 or -1 (auto), got {column_count}")
        cdef Py_ssize_t columns = column_count
        cdef tuple objs = tuple(rows)
        cdef Py_ssize_t n = len(objs)
        expected_fmt = None
        cdef Py_ssize_t expected_itemsize = -1
        if format is not None:
            expected_fmt, expected_itemsize = _parse_format(format)
        elif n == 0:
            raise ValueError("an empty BufferCollection2D needs an explicit format")
        if n == 0 and columns == -1:
            raise ValueError("an empty BufferCollection2D needs an explicit column_count")
        cdef _RowBuffers held = _RowBuffers.__new__(_RowBuffers)
        held.rows = objs
        held.views = <Py_buffer*>PyMem_Calloc(n if n > 0 else 1, sizeof(Py_buffer))
        self.keepalive = held
        self.owned_table = <void**>malloc((n if n > 0 else 1) * sizeof(void*))
        if held.views == NULL or self.owned_table == NULL:
            self._release_resources()
            raise MemoryError(f"cannot allocate a collection of {n} rows")
        try:
            _acquire_rows(self, held, columns, expected_fmt, expected_itemsize, unravel)
        except BaseException:
            # Give every row back now, not when the object dies: a failed construction must
            # not keep bytearray rows locked.
            self._release_resources()
            raise

    cdef int _check_not_initialised(self) except -1:
        if self.init_started or self.released_ or self.table != NULL:
            raise TypeError("BufferCollection2D is already initialised")
        return 0

    cdef void _release_resources(self) noexcept:
        held = self.keepalive
        IndirectMemory2D._release_resources(self)  # the table goes, keepalive is dropped
        if isinstance(held, _RowBuffers):
            # Now, even if something else still holds the _RowBuffers object.
            (<_RowBuffers>held).release_all()


cdef int _acquire_rows(BufferCollection2D self, _RowBuffers held, Py_ssize_t columns,
                       object expected_fmt, Py_ssize_t expected_itemsize,
                       bint unravel) except -1:
    """Acquire every row's buffer into held, check them alike, and initialise self."""
    cdef tuple objs = held.rows
    cdef Py_ssize_t n = len(objs)
    cdef Py_ssize_t i, k, count
    cdef Py_buffer* view
    cdef bint readonly = False
    cdef bint back_to_back = True
    # Compared with strcmp first: the canonical comparison only runs when two rows spell
    # their format differently (keeps the per-row cost near GetBuffer's).
    cdef const char* expected_c = NULL
    cdef const char* row_c
    if expected_fmt is not None:
        expected_c = <bytes>expected_fmt
    for i in range(n):
        obj = objs[i]
        if not PyObject_CheckBuffer(obj):
            raise TypeError(f"row {i} is not a buffer: {type(obj).__name__}")
        view = &held.views[i]
        PyObject_GetBuffer(obj, view, PyBUF_FULL_RO)
        held.count = i + 1
        row_c = _format_of(view)
        if view.suboffsets != NULL:
            for k in range(view.ndim):
                if view.suboffsets[k] >= 0:
                    raise BufferError(f"row {i} is an indirect buffer")
        if not unravel and view.ndim != 1:
            raise BufferError(f"row {i} is {view.ndim}-D, expected 1-D (pass unravel=True "
                              "to read C-contiguous buffers as flat rows)")
        if not _is_c_contiguous(view):
            raise BufferError(f"row {i} is not C-contiguous")
        _check_exported_format(view, i)
        count = view.len // view.itemsize
        if expected_c == NULL:
            expected_fmt, expected_itemsize = <bytes>row_c, view.itemsize
            expected_c = <bytes>expected_fmt
        elif view.itemsize != expected_itemsize or (
                strcmp(row_c, expected_c) != 0
                and _canonical_format(<bytes>row_c) != _canonical_format(expected_fmt)):
            got = (<bytes>row_c).decode("ascii", "replace")
            raise BufferError(f"row {i} has format {got!r} (itemsize {view.itemsize}), "
                              f"expected {expected_fmt.decode('ascii')!r} "
                              f"(itemsize {expected_itemsize})")
        if columns == -1:
            columns = count
        elif count != columns:
            raise BufferError(f"row {i} has {count} elements, expected {columns}")
        if view.readonly:
            readonly = True
        self.owned_table[i] = view.buf
        if i > 0 and <char*>view.buf != <char*>self.owned_table[0] + i * count * view.itemsize:
            back_to_back = False
    self._init_layout(self.owned_table, n, columns, expected_fmt, expected_itemsize,
                      readonly, 0, held)
    self.layout_trusted = back_to_back
    return 0


cdef bint _is_c_contiguous(Py_buffer* view):
    """C-contiguity check that tolerates NULL strides and size-0/1 dimensions."""
    if view.strides == NULL:
        return True
    cdef Py_ssize_t k, expected = view.itemsize
    for k in range(view.ndim - 1, -1, -1):
        if view.shape[k] == 0:
            return True
        if view.shape[k] != 1 and view.strides[k] != expected:
            return False
        expected *= view.shape[k]
    return True
