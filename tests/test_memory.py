"""IndirectMemory2D.create_memory: owned memory, its buffer export, reinterpret_data, flags.

Oracles: CPython's memoryview (m[i, j], tolist, tobytes), _testbuffer (an independent
PEP 3118 consumer and PIL-style exporter), struct, and ctypes reading the raw T** table.
"""
import ctypes
import gc
import os
import struct

import pytest

from indirect_buffer import IndirectMemory, IndirectMemory2D

NATIVE_FORMATS = "bBhHiIlLqQnNfd?"
POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)


def interesting_values(fmt):
    """Values that exercise every byte of one element of the native format fmt."""
    if fmt == "?":
        return [True, False]
    if fmt in "fd":
        return [1.5, -0.25, 2.0 ** 100, -(2.0 ** -20), 0.0, 1e6 + 0.5]
    bits = 8 * struct.calcsize(fmt)
    if fmt.islower():  # signed
        return [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, -1, 1, 0, 0x5A]
    return [2 ** bits - 1, 2 ** (bits - 1), 1, 0, 0xA5, 2 ** (bits - 1) - 1]


def matrix(fmt, rows, cols):
    vals = interesting_values(fmt)
    return [[vals[(i * cols + j + i) % len(vals)] for j in range(cols)] for i in range(rows)]


def packed(fmt, mat):
    return b"".join(struct.pack(fmt, v) for row in mat for v in row)


def fill(view, mat):
    for i, row in enumerate(mat):
        for j, v in enumerate(row):
            view[i, j] = v


def raw_rows(mem):
    """Read the rows by following the T** table at mem.address with ctypes (no buffer protocol)."""
    rows, cols = mem.shape
    if rows == 0:
        return []
    table = (ctypes.c_void_p * rows).from_address(mem.address)
    return [ctypes.string_at(table[i] + mem.row_offset, cols * mem.itemsize) for i in range(rows)]


# ---------------------------------------------------------------------------------------------
# creation and properties
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_create_memory_properties(fmt):
    mem = IndirectMemory2D.create_memory(3, 5, fmt)
    assert isinstance(mem, IndirectMemory2D)
    assert mem.shape == (3, 5)
    assert mem.format == fmt
    assert mem.get_format() == fmt
    assert isinstance(mem.format, str)
    assert mem.itemsize == struct.calcsize(fmt)
    assert mem.readonly is False
    assert mem.export_count == 0
    assert len(mem) == 3


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_create_memory_is_zeroed(fmt):
    mem = IndirectMemory2D.create_memory(4, 7, fmt)
    zero = False if fmt == "?" else 0
    assert memoryview(mem).tolist() == [[zero] * 7 for _ in range(4)]
    assert memoryview(mem).tobytes() == bytes(4 * 7 * struct.calcsize(fmt))
    assert raw_rows(mem) == [bytes(7 * struct.calcsize(fmt))] * 4


def test_create_memory_zeroed_large():
    # Large enough that the allocator hands out fresh pages or recycled, dirty memory.
    dirty = [bytearray(b"\xff" * 4096) for _ in range(256)]
    del dirty
    mem = IndirectMemory2D.create_memory(300, 301, "d")
    assert memoryview(mem).tobytes() == bytes(300 * 301 * 8)


def _vm_flags(address):
    """The VmFlags of the mapping of this process that holds address (Linux smaps). Advice
    covers whole pages only (madvise splits the mapping): ask about a block's middle."""
    with open("/proc/self/smaps") as fh:
        inside = False
        for line in fh:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"),
                    reason="Linux transparent huge pages only")
@pytest.mark.parametrize("shape", [(2048, 512), (3, 1024, 512)])  # 8 MiB of data
def test_large_owned_memory_asks_for_huge_pages_like_numpy(shape):
    """NumPy advises huge pages (MADV_HUGEPAGE) behind arrays of 4 MiB and more: copies
    between our memory and NumPy's run at the same bandwidth only if ours are advised too
    (the VmFlags "hg" of the mapping). Wherever NumPy's array is advised, ours must be (some
    NumPy versions advise only np.empty's memory, not np.zeros')."""
    np = pytest.importorskip("numpy")
    oracles = [np.empty(shape), np.zeros(shape)]
    middle = oracles[0].nbytes // 2
    numpy_advised = any("hg" in _vm_flags(a.ctypes.data + middle) for a in oracles)
    if len(shape) == 2:
        mem = IndirectMemory2D.create_memory(*shape, "d")
    else:
        mem = IndirectMemory.create_memory(shape, "d")  # a double***
    data = mem.address
    for _ in range(len(shape) - 1):  # follow the first pointer of each level to the data
        data = ctypes.c_void_p.from_address(data).value
    if numpy_advised:
        assert "hg" in _vm_flags(data + middle), shape


@pytest.mark.parametrize("fmt", [b"d", b"i", b"?"])
def test_format_as_bytes(fmt):
    mem = IndirectMemory2D.create_memory(2, 3, fmt)
    assert mem.format == fmt.decode()
    assert memoryview(mem).format == fmt.decode()
    assert mem.itemsize == struct.calcsize(fmt)


@pytest.mark.parametrize("fmt", ["id", "2i", "<i", ">d", "=h", "3s", "dB", "@d"])
def test_struct_formats_with_several_fields_or_byte_order(fmt):
    mem = IndirectMemory2D.create_memory(2, 3, fmt)
    assert mem.itemsize == struct.calcsize(fmt)
    mv = memoryview(mem)
    assert mv.itemsize == struct.calcsize(fmt)
    assert mv.nbytes == 2 * 3 * struct.calcsize(fmt)
    assert mv.tobytes() == bytes(mv.nbytes)


def test_direct_instantiation_is_refused():
    with pytest.raises(TypeError):
        IndirectMemory2D()
    with pytest.raises(TypeError):
        IndirectMemory2D(2, 3, "d")


def test_readonly_argument():
    mem = IndirectMemory2D.create_memory(2, 2, "d", readonly=True)
    assert mem.readonly is True
    assert memoryview(mem).readonly
    assert IndirectMemory2D.create_memory(2, 2, "d", True).readonly is True
    assert IndirectMemory2D.create_memory(2, 2, "d", readonly=False).readonly is False


# ---------------------------------------------------------------------------------------------
# buffer geometry
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_buffer_geometry(fmt):
    mem = IndirectMemory2D.create_memory(3, 4, fmt)
    k = struct.calcsize(fmt)
    with memoryview(mem) as mv:
        assert mv.ndim == 2
        assert mv.shape == (3, 4)
        assert mv.strides == (POINTER_SIZE, k)
        assert mv.suboffsets == (0, -1)
        assert mv.format == fmt
        assert mv.itemsize == k
        assert mv.nbytes == 3 * 4 * k
        assert mv.readonly is False
        assert mv.obj is mem
        assert not mv.c_contiguous and not mv.f_contiguous and not mv.contiguous


def test_buffer_geometry_via_testbuffer():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(3, 4, "h")
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    assert nd.ndim == 2
    assert nd.shape == (3, 4)
    assert nd.strides == (POINTER_SIZE, 2)
    assert nd.suboffsets == (0, -1)
    assert nd.format == "h"
    assert nd.itemsize == 2
    assert nd.nbytes == 24
    assert nd.obj is mem
    assert not tb.is_contiguous(nd, "C")
    assert not tb.is_contiguous(nd, "A")


def test_raw_layout_is_a_table_of_row_pointers():
    mem = IndirectMemory2D.create_memory(3, 4, "i")
    mv = memoryview(mem)
    fill(mv, [[i * 10 + j for j in range(4)] for i in range(3)])
    rows = raw_rows(mem)
    assert rows == [struct.pack("4i", *(i * 10 + j for j in range(4))) for i in range(3)]
    table = (ctypes.c_void_p * 3).from_address(mem.address)
    # Every row is its own pointer: writing through the raw pointer shows up in the view.
    ctypes.cast(table[2], ctypes.POINTER(ctypes.c_int))[3] = -99
    assert mv[2, 3] == -99


# ---------------------------------------------------------------------------------------------
# values round-trip through independent consumers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_write_one_view_read_another(fmt):
    mem = IndirectMemory2D.create_memory(3, 5, fmt)
    mat = matrix(fmt, 3, 5)
    writer = memoryview(mem)
    reader = memoryview(mem)
    assert mem.export_count == 2
    fill(writer, mat)
    for i in range(3):
        for j in range(5):
            assert reader[i, j] == mat[i][j]
    assert reader.tolist() == mat
    assert reader.tobytes() == packed(fmt, mat)
    assert b"".join(raw_rows(mem)) == packed(fmt, mat)


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_values_via_testbuffer(fmt):
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(3, 5, fmt)
    mat = matrix(fmt, 3, 5)
    fill(memoryview(mem), mat)
    consumer = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    assert consumer.tolist() == mat
    assert consumer.tobytes() == packed(fmt, mat)
    assert tb.get_pointer(mem, [2, 4]) == mat[2][4]
    assert tb.get_pointer(mem, [1, 0]) == mat[1][0]
    # An independent PIL-style (indirect) exporter holding the same items compares equal.
    reference = tb.ndarray([v for row in mat for v in row], shape=[3, 5], format=fmt,
                           flags=tb.ND_PIL)
    assert reference.suboffsets == (0, -1)
    assert memoryview(reference) == memoryview(mem)
    assert reference.tobytes() == memoryview(mem).tobytes()
    assert reference.tolist() == memoryview(mem).tolist()


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_write_via_testbuffer_read_via_memoryview(fmt):
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, fmt)
    mat = matrix(fmt, 2, 3)
    writable = tb.ndarray(mem, getbuf=tb.PyBUF_FULL)
    assert writable.readonly is False
    for i in range(2):
        row = writable[i]  # _testbuffer follows the row pointer itself
        for j in range(3):
            row[j] = mat[i][j]
    assert memoryview(mem).tolist() == mat
    assert memoryview(mem).tobytes() == packed(fmt, mat)


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_memoryview_not_equal_after_change(fmt):
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 2, fmt)
    mat = matrix(fmt, 2, 2)
    fill(memoryview(mem), mat)
    other = [row[:] for row in mat]
    other[1][1] = interesting_values(fmt)[0] if mat[1][1] != interesting_values(fmt)[0] \
        else interesting_values(fmt)[1]
    reference = tb.ndarray([v for row in other for v in row], shape=[2, 2], format=fmt,
                           flags=tb.ND_PIL)
    assert memoryview(reference) != memoryview(mem)


def test_rows_are_independent():
    mem = IndirectMemory2D.create_memory(4, 3, "q")
    mv = memoryview(mem)
    mv[2, 1] = 12345
    expected = [[0] * 3 for _ in range(4)]
    expected[2][1] = 12345
    assert mv.tolist() == expected
    mv[0, 2] = -1
    mv[3, 0] = 7
    expected[0][2] = -1
    expected[3][0] = 7
    assert mv.tolist() == expected


def test_separate_objects_do_not_share_memory():
    a = IndirectMemory2D.create_memory(2, 2, "i")
    b = IndirectMemory2D.create_memory(2, 2, "i")
    memoryview(a)[0, 0] = 5
    assert memoryview(b)[0, 0] == 0
    assert a.address != b.address


def test_memoryview_slicing_first_dimension():
    mem = IndirectMemory2D.create_memory(4, 3, "i")
    mv = memoryview(mem)
    fill(mv, [[i * 3 + j for j in range(3)] for i in range(4)])
    tail = mv[1:]
    assert tail.shape == (3, 3)
    assert tail.tolist() == [[i * 3 + j for j in range(3)] for i in range(1, 4)]
    assert mv[::2].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert mv[::-1].tolist()[0] == [9, 10, 11]
    tail[0, 0] = 100
    assert mv[1, 0] == 100


def test_values_struct_pack_bytes():
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    mv = memoryview(mem)
    fill(mv, [[1.0, -2.5], [3.25, 1e300]])
    assert struct.unpack("4d", mv.tobytes()) == (1.0, -2.5, 3.25, 1e300)


# ---------------------------------------------------------------------------------------------
# exports: sharing, exact counting, locking
# ---------------------------------------------------------------------------------------------

def test_export_count_is_exact():
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    assert mem.export_count == 0
    a = memoryview(mem)
    assert mem.export_count == 1
    b = memoryview(mem)
    assert mem.export_count == 2
    # A memoryview of a memoryview shares the first one's buffer: no new export.
    c = memoryview(a)
    assert mem.export_count == 2
    a.release()  # c still uses the shared buffer
    assert mem.export_count == 2
    c.release()
    assert mem.export_count == 1
    with memoryview(mem) as d:
        assert mem.export_count == 2
        d[0, 0] = 1.0
    assert mem.export_count == 1
    del b
    gc.collect()
    assert mem.export_count == 0


def test_export_count_with_testbuffer():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    consumers = [tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO) for _ in range(5)]
    assert mem.export_count == 5
    del consumers[:3]
    assert mem.export_count == 2
    del consumers[:]
    assert mem.export_count == 0


def test_refused_export_does_not_count():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, "d", readonly=True)
    for flags in (tb.PyBUF_SIMPLE, tb.PyBUF_STRIDED, tb.PyBUF_FULL):
        with pytest.raises(BufferError):
            tb.ndarray(mem, getbuf=flags)
    assert mem.export_count == 0


def test_views_share_data():
    mem = IndirectMemory2D.create_memory(3, 3, "H")
    views = [memoryview(mem) for _ in range(4)]
    views[0][0, 0] = 1
    views[1][1, 1] = 2
    views[2][2, 2] = 3
    expected = [[1, 0, 0], [0, 2, 0], [0, 0, 3]]
    for v in views:
        assert v.tolist() == expected


def test_view_keeps_memory_alive(subprocess_python):
    subprocess_python("""
        import gc
        from indirect_buffer import IndirectMemory2D
        mem = IndirectMemory2D.create_memory(50, 50, 'q')
        mv = memoryview(mem)
        for i in range(50):
            mv[i, i] = i * 1000 + 7
        assert mv.obj is mem
        del mem
        gc.collect()
        junk = [IndirectMemory2D.create_memory(50, 50, 'q') for _ in range(20)]
        for j in junk:
            m = memoryview(j)
            for i in range(50):
                m[i, 49 - i] = -1
            m.release()
        assert [mv[i, i] for i in range(50)] == [i * 1000 + 7 for i in range(50)]
        assert mv.obj.shape == (50, 50)
        assert mv.obj.export_count == 1
    """)


# ---------------------------------------------------------------------------------------------
# request flags (PyBUF_*) via _testbuffer
# ---------------------------------------------------------------------------------------------

REFUSED_FLAGS = ["PyBUF_SIMPLE", "PyBUF_WRITABLE", "PyBUF_FORMAT", "PyBUF_ND", "PyBUF_STRIDES",
                 "PyBUF_C_CONTIGUOUS", "PyBUF_F_CONTIGUOUS", "PyBUF_ANY_CONTIGUOUS",
                 "PyBUF_CONTIG", "PyBUF_CONTIG_RO", "PyBUF_STRIDED", "PyBUF_STRIDED_RO",
                 "PyBUF_RECORDS", "PyBUF_RECORDS_RO"]


@pytest.mark.parametrize("flag_name", REFUSED_FLAGS)
@pytest.mark.parametrize("readonly", [False, True])
def test_non_indirect_requests_are_refused(flag_name, readonly):
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, "i", readonly=readonly)
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=getattr(tb, flag_name))
    assert mem.export_count == 0


@pytest.mark.parametrize("extra", ["PyBUF_C_CONTIGUOUS", "PyBUF_F_CONTIGUOUS",
                                   "PyBUF_ANY_CONTIGUOUS"])
def test_indirect_with_contiguity_request_is_refused(extra):
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO | getattr(tb, extra))
    assert mem.export_count == 0


@pytest.mark.parametrize("flag_name", ["PyBUF_FULL", "PyBUF_FULL_RO", "PyBUF_INDIRECT"])
def test_indirect_requests_are_served(flag_name):
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    fill(memoryview(mem), [[1, 2, 3], [4, 5, 6]])
    nd = tb.ndarray(mem, getbuf=getattr(tb, flag_name))
    assert mem.export_count == 1
    assert nd.shape == (2, 3)
    assert nd.strides == (POINTER_SIZE, 4)
    assert nd.suboffsets == (0, -1)
    assert nd.itemsize == 4
    if flag_name == "PyBUF_INDIRECT":
        # No PyBUF_FORMAT: the exporter must leave format NULL (reported as '').
        assert nd.format in ("", "B")
    else:
        assert nd.format == "i"
        assert nd.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert nd.readonly is False
    del nd
    assert mem.export_count == 0


def test_writable_request_on_readonly_memory():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 3, "i", readonly=True)
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=tb.PyBUF_FULL)
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=tb.PyBUF_INDIRECT | tb.PyBUF_WRITABLE)
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    assert nd.readonly is True
    mv = memoryview(mem)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0, 0] = 1
    assert mv.tolist() == [[0, 0, 0], [0, 0, 0]]


def test_writable_memory_reports_writable_to_readonly_request():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(1, 1, "b")
    assert tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO).readonly is False


def test_memoryview_cannot_do_direct_only_things():
    # CPython refuses what an indirect buffer cannot support; nothing crashes.
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    mv = memoryview(mem)
    with pytest.raises((NotImplementedError, TypeError)):
        mv.cast("B")
    with pytest.raises(NotImplementedError):
        mv[0]


# ---------------------------------------------------------------------------------------------
# zero-sized shapes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 0), (0, 1)])
@pytest.mark.parametrize("fmt", ["d", "b", "?", "id"])
def test_zero_sized(shape, fmt):
    rows, cols = shape
    mem = IndirectMemory2D.create_memory(rows, cols, fmt)
    assert mem.shape == shape
    assert len(mem) == rows
    mv = memoryview(mem)
    assert mv.shape == shape
    assert mv.nbytes == 0
    assert mv.tobytes() == b""
    assert mv.suboffsets == (0, -1)
    if fmt != "id":
        assert mv.tolist() == [[] for _ in range(rows)]
    assert mem.export_count == 1
    mv.release()
    assert mem.export_count == 0


def test_zero_sized_via_testbuffer():
    tb = pytest.importorskip("_testbuffer")
    for shape in [(0, 4), (4, 0), (0, 0)]:
        mem = IndirectMemory2D.create_memory(*shape, "i")
        nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
        assert nd.shape == shape
        assert nd.tolist() == [[] for _ in range(shape[0])]
        assert nd.tobytes() == b""


def test_zero_sized_reinterpret():
    mem = IndirectMemory2D.create_memory(3, 0, "d")
    mem.reinterpret_data("b")
    assert mem.shape == (3, 0)
    assert mem.format == "b"
    mem = IndirectMemory2D.create_memory(0, 4, "i")
    mem.reinterpret_data("d")
    assert mem.shape == (0, 2)
    assert mem.itemsize == 8


# ---------------------------------------------------------------------------------------------
# reinterpret_data
# ---------------------------------------------------------------------------------------------

def test_reinterpret_data_same_bytes():
    mem = IndirectMemory2D.create_memory(2, 4, "i")
    mat = [[1, 2, 3, 4], [-5, -6, 0x7FFFFFFF, -(2 ** 31)]]
    fill(memoryview(mem), mat)
    before = memoryview(mem).tobytes()
    mem.reinterpret_data("q")
    assert mem.shape == (2, 2)
    assert mem.format == "q"
    assert mem.get_format() == "q"
    assert mem.itemsize == 8
    mv = memoryview(mem)
    assert mv.shape == (2, 2)
    assert mv.strides == (POINTER_SIZE, 8)
    assert mv.format == "q"
    assert mv.tobytes() == before
    expected = [list(struct.unpack("2q", struct.pack("4i", *row))) for row in mat]
    assert mv.tolist() == expected
    mv.release()
    mem.reinterpret_data(b"B")
    assert mem.shape == (2, 16)
    assert memoryview(mem).tolist() == [list(struct.pack("4i", *row)) for row in mat]
    mem.reinterpret_data("i")
    assert memoryview(mem).tolist() == mat


def test_reinterpret_data_writes_are_seen_in_new_type():
    mem = IndirectMemory2D.create_memory(1, 8, "B")
    mem.reinterpret_data("d")
    with memoryview(mem) as mv:
        mv[0, 0] = 1.0
    mem.reinterpret_data("B")
    assert memoryview(mem).tobytes() == struct.pack("d", 1.0)


def test_reinterpret_data_multi_field_format():
    mem = IndirectMemory2D.create_memory(2, 2, "d")  # 16 bytes per row
    mem.reinterpret_data("id")  # itemsize 16 with native alignment
    assert mem.itemsize == struct.calcsize("id")
    assert mem.shape == (2, 16 // struct.calcsize("id"))
    assert memoryview(mem).nbytes == 32


def test_reinterpret_data_not_divisible():
    mem = IndirectMemory2D.create_memory(2, 3, "b")
    with pytest.raises(ValueError, match=r"3"):
        mem.reinterpret_data("i")
    assert mem.shape == (2, 3)
    assert mem.format == "b"
    assert mem.itemsize == 1
    mem.reinterpret_data("3s")
    assert mem.shape == (2, 1)


def test_reinterpret_data_refused_while_exported():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 4, "i")
    mv = memoryview(mem)
    with pytest.raises(BufferError):
        mem.reinterpret_data("d")
    assert mem.shape == (2, 4) and mem.format == "i"
    assert mv.shape == (2, 4)
    mv.release()
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    with pytest.raises(BufferError):
        mem.reinterpret_data("d")
    del nd
    mem.reinterpret_data("d")
    assert mem.shape == (2, 2)


@pytest.mark.parametrize("bad", ["Z", "", "@", "ii?Z"])
def test_reinterpret_data_unknown_format(bad):
    mem = IndirectMemory2D.create_memory(2, 4, "i")
    with pytest.raises(ValueError) as info:
        mem.reinterpret_data(bad)
    assert repr(bad) in str(info.value) or (bad and bad in str(info.value))
    assert mem.shape == (2, 4) and mem.format == "i"


@pytest.mark.parametrize("bad", [None, 4, 2.0])
def test_reinterpret_data_format_type(bad):
    mem = IndirectMemory2D.create_memory(2, 4, "i")
    with pytest.raises(TypeError):
        mem.reinterpret_data(bad)
    assert mem.format == "i"


# ---------------------------------------------------------------------------------------------
# make_read_only and a basic release()
# ---------------------------------------------------------------------------------------------

def test_make_read_only():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    memoryview(mem)[1, 1] = 4.0
    mv = memoryview(mem)
    with pytest.raises(BufferError):
        mem.make_read_only()
    assert mem.readonly is False
    mv.release()
    mem.make_read_only()
    assert mem.readonly is True
    ro = memoryview(mem)
    assert ro.readonly
    assert ro[1, 1] == 4.0
    with pytest.raises(BufferError):
        tb.ndarray(mem, getbuf=tb.PyBUF_FULL)


def test_basic_release():
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    mv = memoryview(mem)
    with pytest.raises(BufferError):
        mem.release()
    assert mv.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    mv.release()
    mem.release()
    assert mem.released
    with pytest.raises(ValueError):
        memoryview(mem)
    mem.release()  # idempotent


def test_context_manager_releases():
    with IndirectMemory2D.create_memory(2, 2, "d") as mem, memoryview(mem) as mv:
        mv[0, 0] = 1.0
    assert mem.released
