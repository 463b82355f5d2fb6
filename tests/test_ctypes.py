"""IndirectMemory2D.from_ctype_ptr: wrapping ctypes T** tables (zero-copy, kept alive)."""
import ctypes
import gc
import struct
import sys
import weakref

import pytest

from indirect_buffer import IndirectMemory2D

POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)
NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"

# ctypes type -> a few values it can hold exactly
CTYPES = {
    "c_byte": [-128, 127, -1], "c_ubyte": [0, 255, 128],
    "c_short": [-(2 ** 15), 2 ** 15 - 1, -2], "c_ushort": [0, 2 ** 16 - 1, 2 ** 15],
    "c_int": [-(2 ** 31), 2 ** 31 - 1, 3], "c_uint": [0, 2 ** 32 - 1, 2 ** 31],
    "c_long": [-(2 ** 31), 2 ** 31 - 1, -7], "c_ulong": [0, 2 ** 32 - 1, 9],
    "c_longlong": [-(2 ** 63), 2 ** 63 - 1, -3], "c_ulonglong": [0, 2 ** 64 - 1, 2 ** 63],
    "c_size_t": [0, 1, 2 ** 31], "c_ssize_t": [-1, 1, 2 ** 31 - 1],
    "c_int8": [-128, 127, 0], "c_uint16": [65535, 1, 2], "c_int32": [-5, 5, 0],
    "c_uint64": [2 ** 64 - 1, 0, 1],
    "c_float": [1.5, -0.25, 2.0 ** 60], "c_double": [1e300, -2.5, 0.1],
    "c_bool": [True, False, True], "c_char": [b"a", b"\x00", b"\xff"],
}


def make_table(ctype, rows, cols, values=None):
    """A ctypes array of POINTER(ctype) over `rows` separate ctypes arrays (kept by the table)."""
    arrays = []
    for i in range(rows):
        arr = (ctype * cols)()
        for j in range(cols):
            if values is not None:
                arr[j] = values[(i + j) % len(values)]
        arrays.append(arr)
    table = (ctypes.POINTER(ctype) * rows)(*[ctypes.cast(a, ctypes.POINTER(ctype))
                                             for a in arrays])
    return table, arrays


def expected_format(ctype):
    """ctypes' own format with a native-meaning byte-order prefix stripped."""
    fmt = memoryview(ctype()).format
    if fmt[0] in "<>" and fmt[0] == NATIVE_ORDER:
        fmt = fmt[1:]
    return fmt


# ---------------------------------------------------------------------------------------------
# formats and values
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CTYPES))
def test_from_ctype_ptr_formats_and_values(name):
    ctype = getattr(ctypes, name)
    vals = CTYPES[name]
    table, arrays = make_table(ctype, 3, 4, vals)
    mem = IndirectMemory2D.from_ctype_ptr(table, 3, 4)
    fmt = expected_format(ctype)
    assert fmt[0] not in "<>!="  # a native format, so memoryview can index it
    assert mem.format == fmt
    assert mem.itemsize == ctypes.sizeof(ctype)
    assert struct.calcsize(fmt) == ctypes.sizeof(ctype)
    assert mem.shape == (3, 4)
    assert mem.readonly is False
    mv = memoryview(mem)
    assert mv.format == fmt
    assert mv.strides == (POINTER_SIZE, ctypes.sizeof(ctype))
    assert mv.suboffsets == (0, -1)
    expected = [[vals[(i + j) % len(vals)] for j in range(4)] for i in range(3)]
    for i in range(3):
        for j in range(4):
            assert mv[i, j] == expected[i][j]
    assert mv.tolist() == expected
    assert mv.tobytes() == b"".join(bytes(a) for a in arrays)


@pytest.mark.parametrize("name", sorted(CTYPES))
def test_from_ctype_ptr_is_zero_copy_both_ways(name):
    ctype = getattr(ctypes, name)
    vals = CTYPES[name]
    table, arrays = make_table(ctype, 2, 3)
    mv = memoryview(IndirectMemory2D.from_ctype_ptr(table, 2, 3))
    mv[1, 2] = vals[0]
    assert arrays[1][2] == vals[0]
    arrays[0][1] = vals[1]
    assert mv[0, 1] == vals[1]
    # ... and through the table's own row pointers
    table[1][0] = vals[2]
    assert mv[1, 0] == vals[2]


@pytest.mark.parametrize("name", ["c_int", "c_double", "c_short", "c_ulonglong"])
def test_reinterpret_data_with_native_format_keeps_working(name):
    ctype = getattr(ctypes, name)
    table, _arrays = make_table(ctype, 2, 3, CTYPES[name])
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 3)
    before = memoryview(mem).tolist()
    native = memoryview(ctype()).format[-1]
    mem.reinterpret_data(native)
    assert mem.format == native
    assert mem.shape == (2, 3)
    assert memoryview(mem).tolist() == before


def test_testbuffer_consumes_ctypes_table():
    tb = pytest.importorskip("_testbuffer")
    table, arrays = make_table(ctypes.c_int, 3, 2, [1, -2, 3, -4])
    mem = IndirectMemory2D.from_ctype_ptr(table, 3, 2)
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    assert nd.tolist() == [[a[0], a[1]] for a in arrays]
    ref = tb.ndarray([v for a in arrays for v in a], shape=[3, 2], format="i", flags=tb.ND_PIL)
    assert memoryview(ref) == memoryview(mem)
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=tb.PyBUF_STRIDED)


def test_fewer_rows_than_table_entries():
    table, arrays = make_table(ctypes.c_double, 5, 3, [1.0, 2.0])
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 3)
    assert mem.shape == (2, 3)
    assert memoryview(mem).tolist() == [list(arrays[0]), list(arrays[1])]


def test_pointer_to_pointer_instance():
    table, arrays = make_table(ctypes.c_double, 3, 2, [0.5, -1.5, 8.0])
    pp = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
    mem = IndirectMemory2D.from_ctype_ptr(pp, 3, 2)
    assert mem.format == "d"
    assert memoryview(mem).tolist() == [list(a) for a in arrays]
    memoryview(mem)[2, 1] = 42.0
    assert arrays[2][1] == 42.0


def test_big_endian_element_type():
    # '>i' is not native on a little-endian machine: the format must keep its byte order.
    if sys.byteorder != "little":
        pytest.skip("little-endian check")
    be_int = ctypes.c_int.__ctype_be__
    table, arrays = make_table(be_int, 2, 3, [1, -2, 0x01020304])
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 3)
    assert mem.itemsize == 4
    assert struct.calcsize(mem.format) == 4
    raw = memoryview(mem).tobytes()
    assert raw == b"".join(bytes(a) for a in arrays)
    assert struct.unpack(">6i", raw) == tuple(v for a in arrays for v in a)
    mem.reinterpret_data("i")  # native view of the same bytes
    assert memoryview(mem)[0, 0] == struct.unpack("<i", struct.pack(">i", 1))[0]


def test_little_endian_explicit_type():
    le_int = ctypes.c_int.__ctype_le__
    table, arrays = make_table(le_int, 2, 2, [7, -8])
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 2)
    if sys.byteorder == "little":
        assert mem.format == "i"
        assert memoryview(mem).tolist() == [list(a) for a in arrays]


class Pair(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


def test_structure_element_gets_opaque_format():
    table, arrays = make_table(Pair, 2, 3)
    for i, a in enumerate(arrays):
        for j in range(3):
            a[j].x = i + j / 10
            a[j].y = -(i + j)
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 3)
    assert mem.format == "16s"
    assert mem.itemsize == 16
    assert mem.shape == (2, 3)
    mv = memoryview(mem)
    assert mv.shape == (2, 3) and mv.itemsize == 16 and mv.format == "16s"
    assert mv.tobytes() == b"".join(struct.pack("dd", i + j / 10, -(i + j))
                                    for i in range(2) for j in range(3))
    mv.release()
    mem.reinterpret_data("d")
    assert mem.shape == (2, 6)
    assert memoryview(mem)[1, 4] == 1.2
    assert memoryview(mem)[1, 5] == -3.0
    mem.reinterpret_data("dd")
    assert mem.shape == (2, 3)


def test_readonly_wrapper():
    tb = pytest.importorskip("_testbuffer")
    table, arrays = make_table(ctypes.c_int, 2, 2, [1, 2])
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 2, readonly=True)
    assert mem.readonly is True
    mv = memoryview(mem)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0, 0] = 5
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=tb.PyBUF_FULL)
    assert arrays[0][0] == 1


def test_row_offset():
    # Rows start one element after each table entry (1-based Numerical-Recipes style rows).
    table, arrays = make_table(ctypes.c_int, 2, 4, [0])
    for i, a in enumerate(arrays):
        for j in range(4):
            a[j] = 100 * i + j
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 3, row_offset=ctypes.sizeof(ctypes.c_int))
    mv = memoryview(mem)
    assert mv.suboffsets == (ctypes.sizeof(ctypes.c_int), -1)
    assert mv.tolist() == [[1, 2, 3], [101, 102, 103]]


def test_zero_sized():
    table, _arrays = make_table(ctypes.c_double, 3, 0)
    mem = IndirectMemory2D.from_ctype_ptr(table, 3, 0)
    assert memoryview(mem).tolist() == [[], [], []]
    empty = (ctypes.POINTER(ctypes.c_double) * 0)()
    mem = IndirectMemory2D.from_ctype_ptr(empty, 0, 5)
    assert mem.shape == (0, 5)
    assert memoryview(mem).tolist() == []


def test_null_rows_allowed_when_no_columns():
    table = (ctypes.POINTER(ctypes.c_double) * 3)()  # all NULL
    mem = IndirectMemory2D.from_ctype_ptr(table, 3, 0)
    assert mem.shape == (3, 0)
    assert memoryview(mem).tobytes() == b""


# ---------------------------------------------------------------------------------------------
# lifetime: the ctypes object (or the nanny) lives as long as the wrapper and its views
# ---------------------------------------------------------------------------------------------

def test_wrapper_keeps_table_alive():
    table, arrays = make_table(ctypes.c_double, 2, 2, [1.0])
    del arrays  # the table keeps its rows (ctypes _objects)
    ref = weakref.ref(table)
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 2)
    del table
    gc.collect()
    assert ref() is not None
    mv = memoryview(mem)
    del mem
    gc.collect()
    assert ref() is not None
    assert mv.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    mv.release()
    del mv
    gc.collect()
    assert ref() is None


def test_wrapper_keeps_pointer_instance_alive():
    table, _arrays = make_table(ctypes.c_int, 2, 2, [3])
    pp = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_int)))
    base = sys.getrefcount(pp)
    ref = weakref.ref(pp)
    mem = IndirectMemory2D.from_ctype_ptr(pp, 2, 2)
    assert sys.getrefcount(pp) > base
    mv = memoryview(mem)
    del mem
    gc.collect()
    assert sys.getrefcount(pp) > base
    mv.release()
    del mv
    gc.collect()
    # Wrapping must not leave a reference behind (e.g. in the table's ctypes _objects).
    assert sys.getrefcount(pp) == base
    mem = IndirectMemory2D.from_ctype_ptr(pp, 2, 2)
    del pp
    gc.collect()
    assert ref() is not None
    del mem
    gc.collect()
    assert ref() is None


class Nanny:
    def __init__(self, keep):
        self.keep = keep


def test_memory_nanny_kept_alive_by_wrapper_and_views():
    tb = pytest.importorskip("_testbuffer")
    table, arrays = make_table(ctypes.c_int, 2, 3, [5, 6])
    nanny = Nanny((table, arrays))
    ref = weakref.ref(nanny)
    # A bare pointer whose target only the nanny keeps alive.
    pp = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_int)))
    del table, arrays
    mem = IndirectMemory2D.from_ctype_ptr(pp, 2, 3, memory_nanny=nanny)
    del nanny, pp
    gc.collect()
    assert ref() is not None
    mv = memoryview(mem)
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    del mem
    gc.collect()
    assert ref() is not None
    mv.release()
    gc.collect()
    assert ref() is not None
    assert nd.tolist() == [[5, 6, 5], [6, 5, 6]]
    del nd
    gc.collect()
    assert ref() is None


def test_table_refcount_returns_to_baseline():
    table, _arrays = make_table(ctypes.c_double, 2, 2)
    base = sys.getrefcount(table)
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 2)
    assert sys.getrefcount(table) > base
    views = [memoryview(mem) for _ in range(3)]
    del mem
    for v in views:
        v.release()
    del views, v
    gc.collect()
    assert sys.getrefcount(table) == base


def test_wrapped_table_survives_after_python_references_are_gone(subprocess_python):
    subprocess_python("""
        import ctypes, gc
        from indirect_buffer import IndirectMemory2D

        def build():
            rows = [(ctypes.c_double * 100)(*[i * 1000.0 + j for j in range(100)])
                    for i in range(30)]
            table = (ctypes.POINTER(ctypes.c_double) * 30)(
                *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
            return memoryview(IndirectMemory2D.from_ctype_ptr(table, 30, 100))

        mv = build()
        gc.collect()
        junk = [(ctypes.c_double * 100)(*([-1.0] * 100)) for _ in range(200)]
        for i in range(30):
            for j in range(100):
                assert mv[i, j] == i * 1000.0 + j, (i, j, mv[i, j])
    """)


def test_only_requested_rows_are_checked_for_null():
    table, _arrays = make_table(ctypes.c_int, 3, 2, [4, 5])
    table[2] = ctypes.POINTER(ctypes.c_int)()  # beyond the rows we ask for
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 2)
    assert memoryview(mem).tolist() == [[4, 5], [5, 4]]
