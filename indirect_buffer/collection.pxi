# BufferCollection2D: equal-length buffers of other objects viewed as one T**.
#
# The rows' buffers are held by a _HeldBuffers object in the collection's keepalive (see
# held_buffers.pxi for why).

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
        cdef _HeldBuffers held = _HeldBuffers.__new__(_HeldBuffers)
        held.rows = objs
        self.keepalive = held
        held.alloc(n)
        self.owned_table = <void**>malloc((n if n > 0 else 1) * sizeof(void*))
        if self.owned_table == NULL:
            self._release_resources()
            raise MemoryError(f"cannot allocate a collection of {n} rows")
        _advise_huge_pages(self.owned_table, n * sizeof(void*))
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
        if isinstance(held, _HeldBuffers):
            # Now, even if something else still holds the _HeldBuffers object.
            (<_HeldBuffers>held).release_all()


cdef int _acquire_rows(BufferCollection2D self, _HeldBuffers held, Py_ssize_t columns,
                       object expected_fmt, Py_ssize_t expected_itemsize,
                       bint unravel) except -1:
    """Acquire every row's buffer into held, check them alike, and initialise self."""
    cdef tuple objs = held.rows
    cdef Py_ssize_t n = len(objs)
    cdef Py_ssize_t i, k, count
    cdef Py_buffer* view
    cdef bint readonly = False
    cdef bint back_to_back = True
    cdef char* expect_next = NULL
    # Compared with strcmp first: the canonical comparison only runs when two rows spell
    # their format differently (keeps the per-row cost near the export's).
    cdef const char* expected_c = NULL
    cdef const char* row_c
    if expected_fmt is not None:
        expected_c = <bytes>expected_fmt
    for i in range(n):
        obj = <object>PyTuple_GET_ITEM(objs, i)
        view = &held.views[i]
        # NumPy rows of a dtype seen before are read without NumPy's export (most of a row's
        # cost otherwise; see ndarray_export.pxi); the checks below are the same for all.
        if not _export_ndarray(obj, view):
            if not PyObject_CheckBuffer(obj):
                raise TypeError(f"row {i} is not a buffer: {type(obj).__name__}")
            PyObject_GetBuffer(obj, view, PyBUF_FULL_RO)
            held.count = i + 1
            _learn_descr(obj, view)
            if view.suboffsets != NULL:
                for k in range(view.ndim):
                    if view.suboffsets[k] >= 0:
                        raise BufferError(f"row {i} is an indirect buffer")
            _check_exported_format(view, i)
            _check_extent(view, i)
        held.count = i + 1
        if not unravel and view.ndim != 1:
            raise BufferError(f"row {i} is {view.ndim}-D, expected 1-D (pass unravel=True "
                              "to read C-contiguous buffers as flat rows)")
        if not _is_c_contiguous(view):
            raise BufferError(f"row {i} is not C-contiguous")
        _forget_borrowed_geometry(view)  # used up
        row_c = _format_of(view)
        count = view.len // view.itemsize
        if expected_c == NULL:
            # The first row's own format string: it lives as long as the row is held, and
            # rows read through the same cached dtype then compare by pointer.
            expected_fmt, expected_itemsize = <bytes>row_c, view.itemsize
            expected_c = row_c
        elif view.itemsize != expected_itemsize or (
                row_c != expected_c and strcmp(row_c, expected_c) != 0
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
        if <char*>view.buf != expect_next and i > 0:
            back_to_back = False
        expect_next = <char*>view.buf + count * view.itemsize
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


cdef int _check_extent(const Py_buffer* view, Py_ssize_t row) except -1:
    """A row's len must be what its shape says (the count of elements is taken from it)."""
    cdef Py_ssize_t k, n = view.itemsize
    if view.ndim < 0 or view.ndim > _MAX_NDIM or (view.shape == NULL and view.strides != NULL):
        raise BufferError(f"row {row} is a malformed buffer (ndim {view.ndim}, shape "
                          f"{'NULL' if view.shape == NULL else 'set'})")
    if view.shape != NULL:
        for k in range(view.ndim):
            if view.shape[k] < 0 or (view.shape[k] != 0 and n > PY_SSIZE_T_MAX // view.shape[k]):
                raise BufferError(f"row {row} has a bad shape (dimension {k}: "
                                  f"{view.shape[k]})")
            n *= view.shape[k]
        if n != view.len:
            raise BufferError(f"row {row} reports len {view.len}, but its shape holds {n} bytes")
    return 0
