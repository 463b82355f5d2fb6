# The C API (include/indirect_buffer.h): a versioned table of function pointers, exported as
# the capsule _C_API, for C and C++ code that does not cimport. Each function is the C face
# of a Cython entry point and reports errors the C way: -1 or NULL with the exception set.

from cpython.buffer cimport (
    PyBUF_FULL_RO, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer,
)
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.string cimport memset

cdef extern from "indirect_buffer.h":
    int IB_COPY
    int IB_CAPI_VERSION_MAJOR
    int IB_CAPI_VERSION_MINOR
    const char* IB_CAPI_CAPSULE_NAME

    ctypedef void (*ib_table_dealloc)(void** table, Py_ssize_t rows, void* context) noexcept nogil

    ctypedef struct ib_table:
        void** table
        Py_ssize_t rows
        Py_ssize_t cols
        Py_ssize_t itemsize
        Py_ssize_t row_offset
        int readonly
        const char* format
        PyObject* memory

    ctypedef struct ib_capi:
        int version_major
        int version_minor
        size_t struct_size
        PyTypeObject* IndirectMemory2D_Type
        int (*table_acquire)(PyObject*, const char*, int, Py_ssize_t, int, ib_table*) except -1
        void (*table_release)(ib_table*) noexcept
        object (*create)(Py_ssize_t, Py_ssize_t, const char*, int)
        object (*wrap)(void**, Py_ssize_t, Py_ssize_t, const char*, int, Py_ssize_t,
                       ib_table_dealloc, void*)
        object (*wrap_borrowed)(void**, Py_ssize_t, Py_ssize_t, const char*, int, Py_ssize_t,
                                PyObject*)
        int (*check)(PyObject*) noexcept
        int (*release)(PyObject*) noexcept


cdef str _capi_format(const char* format):
    # str, not bytes: format errors then quote it as the Python API does ('d', not b'd').
    if format == NULL:
        raise ValueError("format is NULL")
    return format.decode("latin-1")


cdef IndirectMemory2D _capi_memory_of(object obj, object format, bint writable, int flags):
    """obj itself, a zero-copy row view of its buffer, or (IB_COPY, read-only) an owned copy."""
    if isinstance(obj, IndirectMemory2D):
        return <IndirectMemory2D>obj
    cdef bint may_copy = (flags & IB_COPY) and not writable
    cdef Py_buffer probe
    if not PyObject_CheckBuffer(obj):
        if may_copy and obj is not None:
            # A sequence has no element type of its own: its values become format's.
            return as_indirect(obj, format=format, readonly=True)
        why = ("a copy would not pass writes back" if writable else
               "pass IB_COPY to copy a sequence")
        raise TypeError(f"cannot get a {'writable ' if writable else ''}table from "
                        f"{type(obj).__name__}: neither an IndirectMemory2D nor a buffer ({why})")
    if writable:
        # Say it in the C API's words (the row view would suggest readonly=True).
        PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO)
        is_readonly = probe.readonly
        PyBuffer_Release(&probe)
        if is_readonly:
            raise BufferError(f"writable table requested, but the {type(obj).__name__} is "
                              "read-only")
    try:
        return _view_from_lines(obj, not writable, False)
    except BufferError as exc:
        if not may_copy:
            if flags & IB_COPY:
                raise BufferError(f"{exc} (IB_COPY copies only for read-only requests: writes "
                                  f"to a copy would not reach the {type(obj).__name__})") from None
            raise
    # A buffer keeps its element type: a wrong one is refused below, as for a view.
    return as_indirect(obj, readonly=True)


cdef int _capi_table_acquire(PyObject* obj, const char* format, int writable,
                             Py_ssize_t row_offset, int flags, ib_table* out) except -1:
    if out == NULL:
        raise ValueError("ib_table_acquire: out is NULL")
    memset(out, 0, sizeof(ib_table))
    if obj == NULL:
        raise ValueError("ib_table_acquire: obj is NULL")
    if flags & ~IB_COPY:
        raise ValueError(f"ib_table_acquire: unknown flags {flags:#x}")
    fmt = None if format == NULL else _capi_format(format)
    cdef IndirectMemory2D mem = _capi_memory_of(<object>obj, fmt, writable != 0, flags)
    cdef void** table = _table_for_c(mem, fmt, writable != 0, row_offset)
    mem.pin()
    out.table = table
    out.rows = mem.shape_[0]
    out.cols = mem.shape_[1]
    out.itemsize = mem.itemsize_
    out.row_offset = row_offset  # what every pointer of the table handed out honours
    out.readonly = mem.readonly_
    # Points into format_, which cannot change while pinned (reinterpret_data is refused).
    out.format = mem.format_
    Py_INCREF(mem)
    out.memory = <PyObject*>mem
    return 0


cdef void _capi_table_release(ib_table* t) noexcept:
    if t == NULL or t.memory == NULL:
        if t != NULL:
            memset(t, 0, sizeof(ib_table))
        return
    # Zeroed before anything can run (the last reference may run a source's
    # __release_buffer__ or a nanny's __del__): a second release finds nothing to do.
    cdef IndirectMemory2D mem = <IndirectMemory2D>(<object>t.memory)
    memset(t, 0, sizeof(ib_table))
    Py_DECREF(mem)  # the table's reference; mem holds its own until we return
    mem.unpin()


cdef object _capi_create(Py_ssize_t rows, Py_ssize_t cols, const char* format, int readonly):
    return IndirectMemory2D.create(rows, cols, _capi_format(format), readonly != 0)


@cython.final
@cython.auto_pickle(False)
cdef class _CTableOwner:
    """Owns a table handed to ib_wrap(): calls its C deallocator once, when dropped."""
    cdef void** table
    cdef Py_ssize_t rows
    cdef ib_table_dealloc dealloc
    cdef void* context

    def __init__(self, *args, **kwargs):
        raise TypeError("C table owners are made by the C API (ib_wrap)")

    cdef void free_now(self) noexcept:
        cdef ib_table_dealloc dealloc = self.dealloc
        self.dealloc = NULL  # once, whoever calls first
        if dealloc != NULL:
            dealloc(self.table, self.rows, self.context)
        self.table = NULL

    def __dealloc__(self):
        self.free_now()


cdef object _capi_wrap(void** table, Py_ssize_t rows, Py_ssize_t cols, const char* format,
                       int readonly, Py_ssize_t row_offset, ib_table_dealloc dealloc,
                       void* context):
    if table == NULL:
        raise ValueError("the pointer table is NULL")
    if dealloc == NULL:
        raise ValueError("dealloc is NULL: use ib_wrap_borrowed for memory that something "
                         "else frees")
    cdef _CTableOwner owner
    try:
        owner = _CTableOwner.__new__(_CTableOwner)
    except BaseException:
        dealloc(table, rows, context)  # ownership passed to us: nobody else will free it
        raise
    owner.table = table
    owner.rows = rows
    owner.dealloc = dealloc
    owner.context = context
    try:
        return IndirectMemory2D.from_ptr_with_offset(table, rows, cols, _capi_format(format),
                                                     readonly != 0, owner, row_offset)
    except BaseException:
        # Now, not whenever the last reference goes: the caller is promised that the table
        # is freed when this returns NULL.
        owner.free_now()
        raise


cdef object _capi_wrap_borrowed(void** table, Py_ssize_t rows, Py_ssize_t cols,
                                const char* format, int readonly, Py_ssize_t row_offset,
                                PyObject* owner):
    keep = None if owner == NULL else <object>owner
    return IndirectMemory2D.from_ptr_with_offset(table, rows, cols, _capi_format(format),
                                                 readonly != 0, keep, row_offset)


cdef int _capi_check(PyObject* obj) noexcept:
    return obj != NULL and isinstance(<object>obj, IndirectMemory2D)


cdef int _capi_release(PyObject* obj) noexcept:
    # Often called on the way out of a callback that raised: an exception already set is set
    # aside and restored (the memory is released all the same); if the release fails too,
    # its error goes to sys.unraisablehook and -1 is returned.
    cdef PyObject* pending_type
    cdef PyObject* pending_value
    cdef PyObject* pending_tb
    PyErr_Fetch(&pending_type, &pending_value, &pending_tb)
    error = None
    try:
        _release_object(obj)
    except BaseException as exc:
        error = exc
    if pending_type != NULL:
        if error is not None:
            _report_unraisable(error, "ib_release")
        PyErr_Restore(pending_type, pending_value, pending_tb)
    elif error is not None:
        PyErr_SetObject(type(error), error)
    return 0 if error is None else -1


cdef int _release_object(PyObject* obj) except -1:
    if obj == NULL:
        raise ValueError("ib_release: memory is NULL")
    if not isinstance(<object>obj, IndirectMemory):
        raise TypeError(f"ib_release needs an IndirectMemory, not {type(<object>obj).__name__}")
    (<IndirectMemory>(<object>obj)).release()
    return 0


# Static: C modules keep pointers into it for the life of the process (this module is never
# unloaded).
cdef ib_capi _capi_table


cdef object _make_capi_capsule():
    _capi_table.version_major = IB_CAPI_VERSION_MAJOR
    _capi_table.version_minor = IB_CAPI_VERSION_MINOR
    _capi_table.struct_size = sizeof(ib_capi)
    _capi_table.IndirectMemory2D_Type = <PyTypeObject*>IndirectMemory2D
    _capi_table.table_acquire = _capi_table_acquire
    _capi_table.table_release = _capi_table_release
    _capi_table.create = _capi_create
    _capi_table.wrap = _capi_wrap
    _capi_table.wrap_borrowed = _capi_wrap_borrowed
    _capi_table.check = _capi_check
    _capi_table.release = _capi_release
    return PyCapsule_New(&_capi_table, IB_CAPI_CAPSULE_NAME, NULL)


_C_API = _make_capi_capsule()
