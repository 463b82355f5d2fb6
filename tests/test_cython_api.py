"""The cimport API (buffer_impl.pxd, nannies.pxd), used from a Cython module compiled at test time
against the *installed* package: constructors, typed tables, nannies, typed memoryviews.
"""
import ctypes
import gc
import os
import textwrap

import pytest
from conftest import run_python

from indirect_buffer import BufferCollection2D, IndirectMemory2D

CYTHON_SOURCE = r'''
# cython: language_level=3, boundscheck=True, wraparound=False
from cython cimport view
from libc.stdlib cimport malloc, calloc, free
from indirect_buffer.buffer_impl cimport IndirectMemory2D
from indirect_buffer.nannies cimport FreeRowsAndTableNanny, FreeTableNanny, DeallocatorNanny

# -- counters observed by the tests ----------------------------------------------------------
cdef Py_ssize_t whole_freed = 0
cdef Py_ssize_t dealloc_calls = 0
cdef Py_ssize_t dealloc_rows = -1
cdef size_t dealloc_table = 0


def counters():
    return {"whole_freed": whole_freed, "dealloc_calls": dealloc_calls,
            "dealloc_rows": dealloc_rows, "dealloc_table": dealloc_table}


# -- C helpers ---------------------------------------------------------------------------------
cdef void** alloc_double_table(Py_ssize_t rows, Py_ssize_t cols) except NULL:
    """rows separately malloc'd rows of cols doubles, value i*1000 + j."""
    cdef Py_ssize_t i, j
    cdef void** t = <void**>calloc(rows if rows > 0 else 1, sizeof(void*))
    if t == NULL:
        raise MemoryError()
    for i in range(rows):
        t[i] = malloc((cols if cols > 0 else 1) * sizeof(double))
        if t[i] == NULL:
            free_double_table(t, i)
            raise MemoryError()
        for j in range(cols):
            (<double*>t[i])[j] = i * 1000.0 + j
    return t


cdef void free_double_table(void** t, Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows):
        free(t[i])
    free(t)


cdef void counting_free(void** table, Py_ssize_t rows) noexcept nogil:
    global dealloc_calls, dealloc_rows, dealloc_table
    dealloc_calls += 1
    dealloc_rows = rows
    dealloc_table = <size_t>table
    free_double_table(table, rows)


# -- a user-written nanny ---------------------------------------------------------------------
cdef class WholeMemoryNanny:
    cdef void *ptr
    cdef Py_ssize_t row_count

    @staticmethod
    cdef WholeMemoryNanny create(void *ptr, Py_ssize_t row_count):
        cdef WholeMemoryNanny self = WholeMemoryNanny.__new__(WholeMemoryNanny)
        self.ptr = ptr
        self.row_count = row_count
        return self

    def __dealloc__(self):
        global whole_freed
        cdef Py_ssize_t i
        cdef void** t = <void**>self.ptr
        if t != NULL:
            for i in range(self.row_count):
                free(t[i])
            free(t)
            self.ptr = NULL
            whole_freed += 1


# -- constructors -----------------------------------------------------------------------------
def create(Py_ssize_t rows, Py_ssize_t cols, fmt, int readonly=0):
    return IndirectMemory2D.create(rows, cols, fmt, readonly)


def with_whole_nanny(Py_ssize_t rows, Py_ssize_t cols, fmt="d"):
    cdef void** t = alloc_double_table(rows, cols)
    nanny = WholeMemoryNanny.create(t, rows)
    return IndirectMemory2D.from_ptr_with_memory_nanny(t, rows, cols, fmt, 0, nanny)


def with_free_rows_nanny(Py_ssize_t rows, Py_ssize_t cols):
    cdef void** t = alloc_double_table(rows, cols)
    nanny = FreeRowsAndTableNanny.create(t, rows)
    return IndirectMemory2D.from_ptr_with_memory_nanny(t, rows, cols, "d", 0, nanny)


def with_deallocator_nanny(Py_ssize_t rows, Py_ssize_t cols, int readonly=0):
    cdef void** t = alloc_double_table(rows, cols)
    nanny = DeallocatorNanny.create(t, rows, counting_free)
    mem = IndirectMemory2D.from_ptr_with_memory_nanny(t, rows, cols, "d", readonly, nanny)
    return mem, <size_t>t


cdef double static_block[4][5]
cdef double* static_rows[4]


def with_free_table_nanny():
    """Table malloc'd (freed by FreeTableNanny), rows in static storage (never freed)."""
    cdef Py_ssize_t i, j
    cdef void** t = <void**>malloc(4 * sizeof(void*))
    if t == NULL:
        raise MemoryError()
    for i in range(4):
        for j in range(5):
            static_block[i][j] = -(i * 10.0 + j)
        t[i] = &static_block[i][0]
    return IndirectMemory2D.from_ptr_with_memory_nanny(t, 4, 5, "d", 0, FreeTableNanny.create(t))


cdef int borrowed_block[3][4]
cdef int* borrowed_rows[3]


def borrowed():
    """from_ptr: memory owned by this module (static), nothing is freed."""
    cdef Py_ssize_t i, j
    for i in range(3):
        borrowed_rows[i] = &borrowed_block[i][0]
        for j in range(4):
            borrowed_block[i][j] = i * 10 + j
    return IndirectMemory2D.from_ptr(borrowed_rows, 3, 4, "i", 0)


def borrowed_value(Py_ssize_t i, Py_ssize_t j):
    return borrowed_block[i][j]


cdef int one_based_block[2][4]
cdef int* one_based_rows[2]


def with_offset():
    """Rows start one int after each table entry (1-based rows)."""
    cdef Py_ssize_t i, j
    for i in range(2):
        one_based_rows[i] = &one_based_block[i][0]
        for j in range(4):
            one_based_block[i][j] = -1 if j == 0 else 100 * i + j
    return IndirectMemory2D.from_ptr_with_offset(one_based_rows, 2, 3, "i", 1, None, sizeof(int))


def from_null_table():
    return IndirectMemory2D.from_ptr(NULL, 2, 2, "d", 0)


cdef double* null_rows[2]


def from_null_row(Py_ssize_t cols):
    null_rows[0] = &static_block[0][0]
    null_rows[1] = NULL
    return IndirectMemory2D.from_ptr(null_rows, 2, cols, "d", 0)


def whole_nanny_with_bad_format(fmt):
    cdef void** t = alloc_double_table(2, 2)
    nanny = WholeMemoryNanny.create(t, 2)
    return IndirectMemory2D.from_ptr_with_memory_nanny(t, 2, 2, fmt, 0, nanny)


def free_rows_nanny_negative_rows():
    return FreeRowsAndTableNanny.create(NULL, -1)


def deallocator_nanny_null_function():
    cdef void** t = alloc_double_table(1, 1)
    try:
        return DeallocatorNanny.create(t, 1, NULL)
    finally:
        free_double_table(t, 1)


# -- raw and typed tables ---------------------------------------------------------------------
def ptr_table_address(IndirectMemory2D m):
    return <size_t>m.ptr_table()


def write_double_via_ptr_table(IndirectMemory2D m, Py_ssize_t i, Py_ssize_t j, double v):
    (<double**>m.ptr_table())[i][j] = v


def typed_table(IndirectMemory2D m, str which, bint writable):
    """The address a typed accessor returns (raises what the accessor raises)."""
    if which == "double":
        return <size_t>m.double_table(writable)
    if which == "float":
        return <size_t>m.float_table(writable)
    if which == "int":
        return <size_t>m.int_table(writable)
    if which == "long":
        return <size_t>m.long_table(writable)
    if which == "longlong":
        return <size_t>m.longlong_table(writable)
    if which == "uchar":
        return <size_t>m.uchar_table(writable)
    raise KeyError(which)


def sum_double_table(IndirectMemory2D m):
    cdef double** t = m.double_table(False)
    cdef Py_ssize_t i, j
    cdef double s = 0
    rows, cols = m.shape
    for i in range(rows):
        for j in range(cols):
            s += t[i][j]
    return s


def scale_int_table(IndirectMemory2D m, int factor):
    cdef int** t = m.int_table(True)
    cdef Py_ssize_t i, j
    rows, cols = m.shape
    for i in range(rows):
        for j in range(cols):
            t[i][j] *= factor


def set_uchar(IndirectMemory2D m, Py_ssize_t i, Py_ssize_t j, unsigned char v):
    m.uchar_table(True)[i][j] = v


# -- typed memoryviews ------------------------------------------------------------------------
def indirect_sum(double[::view.indirect, ::1] a):
    cdef Py_ssize_t i, j
    cdef double s = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
    return s


def indirect_fill(double[::view.indirect, ::1] a):
    cdef Py_ssize_t i, j
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = i * 100.0 + j + 0.5


def indirect_int_fill(int[::view.indirect, ::1] a):
    cdef Py_ssize_t i, j
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = -(i * 100 + j)


def indirect_int_sum(int[::view.indirect, ::1] a):
    cdef Py_ssize_t i, j
    cdef long long s = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
    return s


def const_indirect_sum(const double[::view.indirect, ::1] a):
    cdef Py_ssize_t i, j
    cdef double s = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
    return s


def generic_sum(double[::view.generic, ::view.generic] a):
    cdef Py_ssize_t i, j
    cdef double s = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
    return s


def direct_sum(double[:, ::1] a):
    cdef Py_ssize_t i, j
    cdef double s = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j]
    return s


def strided_sum(double[:, :] a):
    return a.shape[0]


def indirect_shape(double[::view.indirect, ::1] a):
    return (a.shape[0], a.shape[1], a.strides[0], a.strides[1], a.suboffsets[0], a.suboffsets[1])


cdef class ViewHolder:
    """Keeps a Cython typed memoryview of an indirect buffer."""
    cdef double[::view.indirect, ::1] held

    def __init__(self, double[::view.indirect, ::1] a):
        self.held = a

    def get(self, Py_ssize_t i, Py_ssize_t j):
        return self.held[i, j]
'''

MODULE_NAME = "ib_cython_api_test"


@pytest.fixture(scope="module")
def cy(cython_builder):
    return cython_builder(MODULE_NAME, CYTHON_SOURCE)


def run_with_module(cy, code):
    """Run code in a child interpreter that can import the compiled test module as `cy`."""
    path = os.path.dirname(os.path.abspath(cy.__file__))
    return run_python(f"import sys\nsys.path.insert(0, {path!r})\n"
                      f"import {MODULE_NAME} as cy\n" + textwrap.dedent(code))


def freed(cy):
    return cy.counters()["whole_freed"]


# ---------------------------------------------------------------------------------------------
# create / from_ptr / from_ptr_with_offset
# ---------------------------------------------------------------------------------------------

def test_create(cy):
    mem = cy.create(3, 4, "d")
    assert isinstance(mem, IndirectMemory2D)
    assert mem.shape == (3, 4)
    assert mem.format == "d"
    assert mem.readonly is False
    assert memoryview(mem).tolist() == [[0.0] * 4] * 3
    assert memoryview(mem).suboffsets == (0, -1)
    ro = cy.create(2, 2, b"i", 1)
    assert ro.readonly is True and ro.format == "i"
    assert cy.create(0, 3, "d").shape == (0, 3)


def test_create_bad_input(cy):
    with pytest.raises(ValueError):
        cy.create(-1, 2, "d")
    with pytest.raises(ValueError, match="Z"):
        cy.create(2, 2, "Z")
    with pytest.raises(TypeError):
        cy.create(2, 2, 7)
    with pytest.raises(MemoryError):
        cy.create(2 ** 40, 2 ** 20, "d")


def test_from_ptr_borrowed(cy):
    mem = cy.borrowed()
    assert mem.shape == (3, 4)
    assert mem.format == "i"
    mv = memoryview(mem)
    assert mv.tolist() == [[i * 10 + j for j in range(4)] for i in range(3)]
    mv[2, 3] = -55
    assert cy.borrowed_value(2, 3) == -55


def test_from_ptr_with_offset(cy):
    mem = cy.with_offset()
    assert mem.readonly is True
    mv = memoryview(mem)
    assert mv.suboffsets == (ctypes.sizeof(ctypes.c_int), -1)
    assert mv.tolist() == [[1, 2, 3], [101, 102, 103]]
    assert mem.row_offset == ctypes.sizeof(ctypes.c_int)


def test_from_ptr_null(cy):
    with pytest.raises(ValueError, match="NULL"):
        cy.from_null_table()
    with pytest.raises(ValueError, match=r"\b1\b"):
        cy.from_null_row(3)
    assert cy.from_null_row(0).shape == (2, 0)


# ---------------------------------------------------------------------------------------------
# ptr_table and typed tables
# ---------------------------------------------------------------------------------------------

def test_ptr_table(cy):
    mem = IndirectMemory2D.create_memory(3, 3, "d")
    assert cy.ptr_table_address(mem) == mem.address
    cy.write_double_via_ptr_table(mem, 2, 1, 6.25)
    assert memoryview(mem)[2, 1] == 6.25
    assert memoryview(mem).tolist() == [[0.0] * 3, [0.0] * 3, [0.0, 6.25, 0.0]]


ACCESSOR_FORMAT = {"double": "d", "float": "f", "int": "i", "long": "l", "longlong": "q",
                   "uchar": "B"}


@pytest.mark.parametrize("which", sorted(ACCESSOR_FORMAT))
def test_typed_tables_match(cy, which):
    mem = IndirectMemory2D.create_memory(2, 2, ACCESSOR_FORMAT[which])
    assert cy.typed_table(mem, which, False) == mem.address
    assert cy.typed_table(mem, which, True) == mem.address
    ro = IndirectMemory2D.create_memory(2, 2, ACCESSOR_FORMAT[which], readonly=True)
    assert cy.typed_table(ro, which, False) == ro.address
    with pytest.raises(BufferError):
        cy.typed_table(ro, which, True)


MISMATCHES = [("double", "f"), ("double", "q"), ("double", "i"), ("float", "d"), ("float", "i"),
              ("int", "f"), ("int", "h"), ("int", "I"), ("int", "q"), ("long", "d"),
              ("long", "i"), ("longlong", "d"), ("longlong", "Q"), ("uchar", "b"),
              ("uchar", "?"), ("uchar", "c"), ("double", "16s"), ("double", "dd")]


@pytest.mark.parametrize("which,fmt", MISMATCHES)
def test_typed_tables_mismatch(cy, which, fmt):
    mem = IndirectMemory2D.create_memory(2, 2, fmt)
    with pytest.raises(TypeError):
        cy.typed_table(mem, which, False)
    with pytest.raises(TypeError):
        cy.typed_table(mem, which, True)


def test_typed_table_on_ctypes_memory(cy):
    rows = [(ctypes.c_double * 3)(1, 2, 3), (ctypes.c_double * 3)(4, 5, 6)]
    table = (ctypes.POINTER(ctypes.c_double) * 2)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 3)
    assert cy.sum_double_table(mem) == 21.0


def test_typed_table_values(cy):
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    mv = memoryview(mem)
    for i in range(2):
        for j in range(3):
            mv[i, j] = i * 3 + j
    cy.scale_int_table(mem, -2)
    assert mv.tolist() == [[0, -2, -4], [-6, -8, -10]]
    b = IndirectMemory2D.create_memory(2, 2, "B")
    cy.set_uchar(b, 1, 0, 200)
    assert memoryview(b).tolist() == [[0, 0], [200, 0]]
    with pytest.raises(BufferError):
        cy.scale_int_table(IndirectMemory2D.create_memory(1, 1, "i", readonly=True), 2)


def test_typed_table_on_collection(cy):
    import array
    rows = [array.array("d", [1.0, 2.0]), array.array("d", [3.0, 4.5])]
    coll = BufferCollection2D(rows)
    assert cy.sum_double_table(coll) == 10.5


def test_typed_table_after_reinterpret(cy):
    mem = IndirectMemory2D.create_memory(2, 2, "q")
    with pytest.raises(TypeError):
        cy.sum_double_table(mem)
    mem.reinterpret_data("d")
    assert cy.sum_double_table(mem) == 0.0


# ---------------------------------------------------------------------------------------------
# nannies
# ---------------------------------------------------------------------------------------------

def test_whole_memory_nanny_freed_after_wrapper_and_all_views(cy):
    tb = pytest.importorskip("_testbuffer")
    before = freed(cy)
    mem = cy.with_whole_nanny(3, 4)
    expected = [[i * 1000.0 + j for j in range(4)] for i in range(3)]
    mv1 = memoryview(mem)
    mv2 = memoryview(mem)
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    holder = cy.ViewHolder(mem)
    assert mem.export_count == 4
    del mem
    gc.collect()
    assert freed(cy) == before
    mv1.release()
    gc.collect()
    assert freed(cy) == before
    assert mv2.tolist() == expected
    del mv2
    gc.collect()
    assert freed(cy) == before
    assert nd.tolist() == expected
    del nd
    gc.collect()
    assert freed(cy) == before
    assert holder.get(2, 3) == 2003.0
    del holder
    gc.collect()
    assert freed(cy) == before + 1


def test_whole_memory_nanny_freed_with_wrapper_when_views_go_first(cy):
    before = freed(cy)
    mem = cy.with_whole_nanny(2, 2)
    with memoryview(mem) as mv:
        assert mv.tolist() == [[0.0, 1.0], [1000.0, 1001.0]]
    views = [memoryview(mem) for _ in range(3)]
    del views
    gc.collect()
    assert freed(cy) == before
    assert mem.export_count == 0
    del mem
    assert freed(cy) == before + 1  # deterministic: no cycle needed to free it


def test_whole_memory_nanny_release(cy):
    before = freed(cy)
    mem = cy.with_whole_nanny(2, 2)
    mv = memoryview(mem)
    with pytest.raises(BufferError):
        mem.release()
    assert freed(cy) == before
    mv.release()
    mem.release()
    assert freed(cy) == before + 1
    del mem
    assert freed(cy) == before + 1


def test_whole_memory_nanny_zero_sized(cy):
    before = freed(cy)
    mem = cy.with_whole_nanny(0, 3)
    assert memoryview(mem).shape == (0, 3)
    mem2 = cy.with_whole_nanny(3, 0)
    assert memoryview(mem2).tolist() == [[], [], []]
    del mem, mem2
    assert freed(cy) == before + 2


def test_whole_memory_nanny_dropped_when_construction_fails(cy):
    before = freed(cy)
    with pytest.raises(ValueError):
        cy.whole_nanny_with_bad_format("Z")
    gc.collect()
    assert freed(cy) == before + 1


def test_deallocator_nanny_called_once_after_last_view(cy):
    start = cy.counters()["dealloc_calls"]
    mem, table = cy.with_deallocator_nanny(5, 3)
    assert mem.address == table
    views = [memoryview(mem) for _ in range(3)]
    views[0][4, 2] = -1.0
    del mem
    gc.collect()
    assert cy.counters()["dealloc_calls"] == start
    views[1].release()
    views.pop(0)
    gc.collect()
    assert cy.counters()["dealloc_calls"] == start
    assert views[-1][4, 2] == -1.0
    assert views[-1][4, 1] == 4001.0
    views.clear()
    gc.collect()
    c = cy.counters()
    assert c["dealloc_calls"] == start + 1
    assert c["dealloc_rows"] == 5
    assert c["dealloc_table"] == table
    gc.collect()
    assert cy.counters()["dealloc_calls"] == start + 1


def test_deallocator_nanny_without_views(cy):
    start = cy.counters()["dealloc_calls"]
    mem, table = cy.with_deallocator_nanny(2, 2, 1)
    assert mem.readonly is True
    del mem
    assert cy.counters()["dealloc_calls"] == start + 1
    assert cy.counters()["dealloc_table"] == table


def test_nanny_create_bad_arguments(cy):
    with pytest.raises(ValueError):
        cy.free_rows_nanny_negative_rows()
    with pytest.raises(ValueError):
        cy.deallocator_nanny_null_function()


def test_free_table_nanny(cy):
    mem = cy.with_free_table_nanny()
    mv = memoryview(mem)
    assert mv.tolist() == [[-(i * 10.0 + j) for j in range(5)] for i in range(4)]
    del mem, mv
    gc.collect()


@pytest.mark.skipif(bool(os.environ.get("IB_SANITIZE")),
                    reason="mallinfo2 does not see ASan's allocator")
def test_free_rows_nanny_frees_after_last_view(cy):
    # Observe the actual frees through glibc's allocator statistics, in a fresh process:
    # 8 rows of 1 MiB must stay allocated while any view lives, and go after the last one.
    run_with_module(cy, """
        import ctypes, gc
        try:
            libc = ctypes.CDLL(None)
            libc.mallinfo2
        except (OSError, AttributeError):
            print('no mallinfo2: checking only that nothing crashes')
            libc = None

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks',
                'uordblks', 'fordblks', 'keepcost')]

        def in_use():
            if libc is None:
                return 0
            libc.mallinfo2.restype = MallInfo2
            info = libc.mallinfo2()
            return info.uordblks + info.hblkhd

        MiB = 2 ** 20
        rows, cols = 8, MiB // 8
        gc.collect()
        base = in_use()
        mem = cy.with_free_rows_nanny(rows, cols)
        held = in_use() - base
        views = [memoryview(mem) for _ in range(2)]
        assert views[0][7, cols - 1] == 7000.0 + cols - 1
        del mem
        gc.collect()
        assert in_use() - base >= held - MiB // 2
        views[0].release()
        gc.collect()
        assert in_use() - base >= held - MiB // 2
        assert views[1][3, 5] == 3005.0
        del views
        gc.collect()
        if libc is not None:
            assert held >= rows * MiB, held
            left = in_use() - base
            assert left < MiB, f'{left} bytes still allocated after the last view'
        print('ok')
    """)


def test_free_rows_nanny_many_cycles_no_crash(cy):
    run_with_module(cy, """
        for k in range(2000):
            mem = cy.with_free_rows_nanny(4, 16)
            mv = memoryview(mem)
            if k % 2:
                del mem  # the view outlives the wrapper
                assert mv[3, 15] == 3015.0
                del mv
            else:
                assert mv[0, 0] == 0.0
                del mv  # the wrapper outlives the view
                del mem
    """)


# ---------------------------------------------------------------------------------------------
# Cython typed memoryviews
# ---------------------------------------------------------------------------------------------

def test_typed_memoryview_indirect_double(cy):
    mem = IndirectMemory2D.create_memory(3, 4, "d")
    cy.indirect_fill(mem)
    expected = [[i * 100.0 + j + 0.5 for j in range(4)] for i in range(3)]
    assert memoryview(mem).tolist() == expected
    assert cy.indirect_sum(mem) == sum(map(sum, expected))
    assert cy.generic_sum(mem) == sum(map(sum, expected))
    assert mem.export_count == 0
    assert cy.indirect_shape(mem) == (3, 4, ctypes.sizeof(ctypes.c_void_p), 8, 0, -1)


def test_typed_memoryview_indirect_int(cy):
    mem = IndirectMemory2D.create_memory(2, 5, "i")
    cy.indirect_int_fill(mem)
    expected = [[-(i * 100 + j) for j in range(5)] for i in range(2)]
    assert memoryview(mem).tolist() == expected
    assert cy.indirect_int_sum(mem) == sum(map(sum, expected))


def test_typed_memoryview_on_other_sources(cy):
    np = pytest.importorskip("numpy")
    rows = [np.arange(3, dtype=np.float64) + 10 * i for i in range(2)]
    coll = BufferCollection2D(rows)
    assert cy.indirect_sum(coll) == float(sum(r.sum() for r in rows))
    cy.indirect_fill(coll)
    assert rows[1].tolist() == [100.5, 101.5, 102.5]
    mem, _ = cy.with_deallocator_nanny(2, 2)
    assert cy.indirect_sum(mem) == 0.0 + 1.0 + 1000.0 + 1001.0


def test_typed_memoryview_zero_sized(cy):
    assert cy.indirect_sum(IndirectMemory2D.create_memory(0, 3, "d")) == 0.0
    assert cy.indirect_sum(IndirectMemory2D.create_memory(3, 0, "d")) == 0.0


def test_typed_memoryview_format_mismatch(cy):
    with pytest.raises(ValueError):
        cy.indirect_sum(IndirectMemory2D.create_memory(2, 2, "f"))
    with pytest.raises(ValueError):
        cy.indirect_int_sum(IndirectMemory2D.create_memory(2, 2, "d"))


def test_typed_memoryview_readonly(cy):
    ro = IndirectMemory2D.create_memory(2, 2, "d", readonly=True)
    with pytest.raises((ValueError, BufferError)):
        cy.indirect_fill(ro)
    assert cy.const_indirect_sum(ro) == 0.0
    assert ro.export_count == 0


@pytest.mark.parametrize("func", ["direct_sum", "strided_sum"])
def test_direct_typed_memoryview_is_refused(cy, func):
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    with pytest.raises((ValueError, BufferError)):
        getattr(cy, func)(mem)
    assert mem.export_count == 0


def test_typed_memoryview_counts_as_export(cy):
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    holder = cy.ViewHolder(mem)
    assert mem.export_count == 1
    with pytest.raises(BufferError):
        mem.reinterpret_data("B")
    del holder
    assert mem.export_count == 0
    mem.reinterpret_data("B")
