# Exact numpy.ndarray objects read without NumPy's buffer export.
#
# NumPy's export allocates and fills a description of the array every time (and builds its
# format string when asked): most of the cost of a collection of many NumPy rows, and of a
# small row view. For an exact numpy.ndarray whose dtype object was already seen through a
# real export, the same facts -- data pointer, dimensions, strides, writability -- are read
# from the array object itself, through the struct layout NumPy's C API publishes
# (PyArrayObject_fields), and the array is held by a reference instead of an export. NumPy
# counts no exports (its resize() refuses while the reference count says the array is
# shared), so both hold the array the same way.
#
# The layout is checked against the Python-visible attributes of probe arrays before first
# use; should NumPy ever change it, every array simply goes through the buffer protocol.
# The dtype cache keeps only dtypes whose format cannot change (no fields: a structured
# dtype's names can be reassigned), so a cached format is the one NumPy would export.

cdef extern from *:
    """
    /* The leading fields of NumPy's PyArrayObject_fields, in their published order. */
    typedef struct {
        PyObject_HEAD
        char *data;
        int nd;
        Py_ssize_t *dimensions;
        Py_ssize_t *strides;
        PyObject *base;
        PyObject *descr;
        int flags;
    } ib_ndarray_fields;
    #define IB_NPY_WRITEABLE 0x0400
    #define IB_NPY_ALIGNED 0x0100
    /* The flags of a plain array: C/F-contiguous, owns its data, aligned, writeable. Any
     * other (warn-on-write, writeback-if-copy...) asks NumPy's own export what it means. */
    #define IB_NPY_PLAIN_FLAGS (0x0001 | 0x0002 | 0x0004 | 0x0100 | 0x0400)
    /* Py_buffer.internal of a buffer held by a reference only (see _release_held). */
    static const char ib_held_by_reference[] = "held by reference";
    static void ib_drop_view_obj(Py_buffer *view) { Py_CLEAR(view->obj); }
    """
    ctypedef struct _NdArray "ib_ndarray_fields":
        char* data
        int nd
        Py_ssize_t* dimensions
        Py_ssize_t* strides
        PyObject* descr
        int flags
    int _NPY_WRITEABLE "IB_NPY_WRITEABLE"
    int _NPY_ALIGNED "IB_NPY_ALIGNED"
    int _NPY_PLAIN_FLAGS "IB_NPY_PLAIN_FLAGS"
    const char _HELD_BY_REFERENCE "ib_held_by_reference"[]
    void _drop_view_obj "ib_drop_view_obj"(Py_buffer* view)

cdef extern from "Python.h":
    PyTypeObject* _type_of "Py_TYPE"(object o)
    unsigned long _HEAPTYPE "Py_TPFLAGS_HEAPTYPE"

cdef enum:
    _DESCR_CACHE_MAX = 16

# numpy.ndarray once its layout passed the probe; NULL before (or if it failed).
cdef PyTypeObject* _ndarray_fast = NULL
cdef bint _ndarray_probed = False
# Dtypes seen through a real export: the dtype (the lookup key), its format (a bytes object)
# and itemsize. This module holds a reference to each dtype and format from C, for good: no
# Python container that code could reach (through the garbage collector) and empty.
cdef PyObject* _descr_ptrs[_DESCR_CACHE_MAX]
cdef PyObject* _descr_format_objects[_DESCR_CACHE_MAX]
cdef const char* _descr_formats[_DESCR_CACHE_MAX]
cdef Py_ssize_t _descr_itemsizes[_DESCR_CACHE_MAX]
cdef Py_ssize_t _descr_count = 0


cdef bint _ndarray_layout_matches(object np):
    """True if NumPy's arrays have the published field layout (checked on probe arrays
    covering writable and read-only, contiguous, strided and reversed ones)."""
    cdef _NdArray* f
    cdef int d
    try:
        probes = [np.zeros((3, 4)), np.zeros((2, 6), dtype=np.int8)[:, ::2],
                  np.asfortranarray(np.ones((2, 3), dtype=np.float32)),
                  np.frombuffer(b"abcd", dtype=np.uint8), np.arange(5, dtype=np.int16)[::-1]]
        for a in probes:
            if type(a) is not np.ndarray:
                return False
            f = <_NdArray*><PyObject*>a
            if <uintptr_t>f.data != a.__array_interface__["data"][0] or f.nd != a.ndim \
                    or f.descr != <PyObject*>a.dtype \
                    or bool(f.flags & _NPY_WRITEABLE) != bool(a.flags.writeable):
                return False
            for d in range(f.nd):
                if f.dimensions[d] != a.shape[d] or f.strides[d] != a.strides[d]:
                    return False
        return True
    except Exception:
        return False


cdef inline bint _is_fast_ndarray(object obj) noexcept:
    """True if obj is an exact numpy.ndarray and NumPy's layout passed the probe."""
    if _ndarray_fast == NULL and not _ndarray_probed:
        _probe_ndarray()
    return _ndarray_fast != NULL and _type_of(obj) == _ndarray_fast


cdef void _probe_ndarray() noexcept:
    """Check NumPy's layout once NumPy is imported (never imports it: without NumPy there is
    no ndarray to read)."""
    global _ndarray_probed, _ndarray_fast
    np = sys.modules.get("numpy")
    ndarray = getattr(np, "ndarray", None) if np is not None else None
    if not isinstance(ndarray, type):
        return
    _ndarray_probed = True
    # NumPy's own static type, not a Python class posing as it (whose probe answers would be
    # its own): a class statement makes a heap type.
    cdef PyTypeObject* tp = <PyTypeObject*>ndarray
    if tp.tp_flags & _HEAPTYPE or tp.tp_basicsize < <Py_ssize_t>sizeof(_NdArray) \
            or ndarray.__module__ != "numpy" or ndarray.__name__ != "ndarray":
        return
    if _ndarray_layout_matches(np):
        _ndarray_fast = tp


cdef Py_ssize_t _descr_index(PyObject* descr) noexcept:
    cdef Py_ssize_t i
    for i in range(_descr_count):
        if _descr_ptrs[i] == descr:
            return i
    return -1


cdef bint _export_ndarray(object obj, Py_buffer* view) except -1:
    """Fill view (as PyBUF_FULL_RO would) from an exact numpy.ndarray whose dtype was seen
    before, holding obj by a reference (view.internal marks it); False if obj does not
    qualify, and the caller exports it.

    view.shape and view.strides point into the array and are valid only until Python code
    runs (an assignment to its shape replaces them): use them at once.
    """
    if not _is_fast_ndarray(obj):
        return False
    cdef _NdArray* a = <_NdArray*><PyObject*>obj
    # Aligned arrays only: NumPy's format depends on alignment too ('l' aligned, '=q' not).
    if a.flags & ~_NPY_PLAIN_FLAGS or not (a.flags & _NPY_ALIGNED):
        return False
    cdef Py_ssize_t i = _descr_index(a.descr)
    if i < 0:
        return False
    cdef Py_ssize_t itemsize = _descr_itemsizes[i]
    cdef Py_ssize_t n = itemsize
    cdef int d
    for d in range(a.nd):
        n *= a.dimensions[d]
    view.buf = a.data
    _set_view_obj(view, obj)  # a new reference, like an export's
    view.len = n
    view.readonly = not (a.flags & _NPY_WRITEABLE)
    view.itemsize = itemsize
    view.format = <char*>_descr_formats[i]
    view.ndim = a.nd
    view.shape = a.dimensions
    view.strides = a.strides
    view.suboffsets = NULL
    view.internal = <void*>_HELD_BY_REFERENCE
    return True


cdef int _learn_descr(object obj, const Py_buffer* view) except -1:
    """After a real PyBUF_FORMAT export of obj: remember its dtype's format, if obj is an
    exact numpy.ndarray and the format cannot change."""
    global _descr_count
    if _descr_count >= _DESCR_CACHE_MAX or view.format == NULL or not _is_fast_ndarray(obj):
        return 0
    try:
        _check_exported_format(view, -1)  # only what every other row would pass
    except BufferError:
        return 0
    cdef PyObject* descr = (<_NdArray*><PyObject*>obj).descr
    if _descr_index(descr) >= 0 or not ((<_NdArray*><PyObject*>obj).flags & _NPY_ALIGNED):
        return 0  # known, or the format of an unaligned array ('=q' for 'l'): not the dtype's
    dtype = obj.dtype
    if <PyObject*>dtype != descr or dtype.names is not None:
        return 0
    fmt = <bytes>view.format
    Py_INCREF(dtype)  # both for good (at most _DESCR_CACHE_MAX of each)
    Py_INCREF(fmt)
    _descr_ptrs[_descr_count] = descr
    _descr_format_objects[_descr_count] = <PyObject*>fmt
    _descr_formats[_descr_count] = <const char*>fmt
    _descr_itemsizes[_descr_count] = view.itemsize
    _descr_count += 1
    return 0


cdef inline void _forget_borrowed_geometry(Py_buffer* view) noexcept:
    """Once a held buffer's shape and strides have been read: drop them if they point into an
    array read directly (they are valid only until Python code runs). A buffer from
    PyObject_GetBuffer is left exactly as its exporter filled it: its release may read it."""
    if view.internal == <void*>_HELD_BY_REFERENCE:
        view.shape = view.strides = NULL


cdef inline void _release_held(Py_buffer* view) noexcept:
    """Give back a buffer from PyObject_GetBuffer or _export_ndarray."""
    if view.internal == <void*>_HELD_BY_REFERENCE:
        view.internal = NULL
        _drop_view_obj(view)
    else:
        PyBuffer_Release(view)
