# Buffers acquired from other objects (a collection's rows, a row view's source), held by a
# _HeldBuffers object in the keepalive of the IndirectMemory2D that points into them.
#
# Not by the IndirectMemory2D itself, because giving a buffer back can run arbitrary Python
# code (a __release_buffer__, a __del__ reached through it). Held there, they are given back
# only when the memory can no longer be reached: after release() marked it released and
# dropped the table, or, when it dies, after its weak references were cleared (the base
# type's deallocation clears weakrefs before it drops keepalive). And the garbage collector
# sees through a _HeldBuffers to every buffer's owner, as it does through a memoryview.

cdef extern from *:
    """
    /* tp_traverse without Cython's exception check on the visitor's result. */
    typedef int (*ib_visitproc)(PyObject *, void *);
    typedef int (*ib_traverseproc)(PyObject *, ib_visitproc, void *);
    /* Room for one Py_buffer that Cython sees as opaque (see _HeldBuffers.one). */
    typedef struct { Py_buffer view; } ib_buffer_slot;
    """
    ctypedef int (*_visitproc "ib_visitproc")(PyObject*, void*) noexcept
    ctypedef int (*_traverseproc "ib_traverseproc")(PyObject*, _visitproc, void*) noexcept
    ctypedef struct _BufferSlot "ib_buffer_slot":
        pass


@cython.no_gc_clear  # the buffers go back at deallocation or release_all(), never half-way
@cython.final
@cython.auto_pickle(False)
cdef class _HeldBuffers:
    """Py_buffers acquired from other objects: a collection's rows, a row view's source."""
    # Never a Py_buffer field: Cython would see its obj as a field of ours and let the garbage
    # collector count that reference twice. views is `one` for a single buffer (a row view:
    # no allocation), else an array from PyMem_Malloc.
    cdef Py_buffer* views
    cdef _BufferSlot one
    cdef Py_ssize_t count  # acquired so far
    cdef tuple rows        # the objects asked (a collection's rows), or None

    def __init__(self, *args, **kwargs):
        raise TypeError("held buffers are made by indirect_buffer itself")

    cdef int alloc(self, Py_ssize_t n) except -1:
        """Room for n buffers (none acquired yet)."""
        if n <= 1:
            self.views = <Py_buffer*>&self.one
            return 0
        if <size_t>n > PY_SSIZE_T_MAX // sizeof(Py_buffer):
            raise MemoryError(f"cannot allocate room for {n} buffers")
        self.views = <Py_buffer*>PyMem_Malloc(n * sizeof(Py_buffer))
        if self.views == NULL:
            raise MemoryError(f"cannot allocate room for {n} buffers")
        _advise_huge_pages(self.views, n * sizeof(Py_buffer))  # filled next, row by row
        return 0

    cdef void release_all(self) noexcept:
        # Detach first: the releases run Python code, which must find nothing left to free.
        cdef Py_buffer* views = self.views
        cdef Py_ssize_t i, n = self.count
        self.views = NULL
        self.count = 0
        if views == NULL:
            return
        for i in range(n):
            _release_held(&views[i])
        if views != <Py_buffer*>&self.one:
            PyMem_Free(views)

    def __dealloc__(self):
        self.release_all()


cdef _traverseproc _held_buffers_traverse_fields = NULL


cdef int _held_buffers_traverse(PyObject* o, _visitproc visit, void* arg) noexcept:
    """Let the garbage collector see each Py_buffer's reference (view.obj), as it sees a
    memoryview's: a PickleBuffer or a PEP 688 exporter holds its buffer through an object
    other than itself, and a cycle through it must stay collectable."""
    cdef int e = _held_buffers_traverse_fields(o, visit, arg)
    if e:
        return e
    cdef Py_buffer* views = (<_HeldBuffers>o).views
    cdef Py_ssize_t i
    for i in range((<_HeldBuffers>o).count):
        if <PyObject*>views[i].obj != NULL:
            e = visit(<PyObject*>views[i].obj, arg)
            if e:
                return e
    return 0


cdef void _install_held_buffers_traverse() noexcept:
    global _held_buffers_traverse_fields
    cdef PyTypeObject* tp = <PyTypeObject*>_HeldBuffers
    _held_buffers_traverse_fields = <_traverseproc>tp.tp_traverse
    tp.tp_traverse = <traverseproc>_held_buffers_traverse
