"""BufferCollection2D: equal-length buffers viewed as one T**, zero-copy, rows held locked."""
import array
import ctypes
import gc
import re
import struct
import sys

import pytest

from indirect_buffer import BufferCollection2D, IndirectMemory2D

NATIVE_FORMATS = "bBhHiIlLqQnNfd?"
POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)


def value_for(fmt, i, j):
    if fmt == "?":
        return (i + j) % 2 == 0
    if fmt in "fd":
        return i * 10.5 - j * 0.25
    bits = 8 * struct.calcsize(fmt)
    if fmt.islower():
        return [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, -1, i, j][(i + j) % 5]
    return [2 ** bits - 1, 2 ** (bits - 1), 0, i, j][(i + j) % 5]


def typed_rows(fmt, rows, cols):
    """Writable 1-D rows of a native format: memoryview casts of separate bytearrays."""
    k = struct.calcsize(fmt)
    out = []
    for i in range(rows):
        ba = bytearray(cols * k)
        mv = memoryview(ba).cast(fmt)
        for j in range(cols):
            mv[j] = value_for(fmt, i, j)
        out.append((ba, mv))
    return out


def word(x):
    return rf"(?<![\w.]){re.escape(str(x))}(?![\w.])"


# ---------------------------------------------------------------------------------------------
# values, formats, geometry
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_collection_of_typed_rows(fmt):
    pairs = typed_rows(fmt, 3, 4)
    coll = BufferCollection2D([mv for _, mv in pairs])
    assert coll.shape == (3, 4)
    assert coll.format == fmt
    assert coll.get_format() == fmt
    assert coll.itemsize == struct.calcsize(fmt)
    assert coll.readonly is False
    assert len(coll) == 3
    view = memoryview(coll)
    assert view.shape == (3, 4)
    assert view.strides == (POINTER_SIZE, struct.calcsize(fmt))
    assert view.suboffsets == (0, -1)
    assert view.format == fmt
    expected = [[value_for(fmt, i, j) for j in range(4)] for i in range(3)]
    assert view.tolist() == expected
    for i in range(3):
        for j in range(4):
            assert view[i, j] == expected[i][j]
    assert view.tobytes() == b"".join(bytes(ba) for ba, _ in pairs)


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_collection_is_zero_copy(fmt):
    pairs = typed_rows(fmt, 2, 3)
    view = memoryview(BufferCollection2D([mv for _, mv in pairs]))
    # collection -> row objects
    view[1, 2] = value_for(fmt, 0, 0)
    assert pairs[1][1][2] == value_for(fmt, 0, 0)
    assert bytes(pairs[1][0][2 * struct.calcsize(fmt):]) == struct.pack(fmt, value_for(fmt, 0, 0))
    # row objects -> collection
    pairs[0][1][1] = value_for(fmt, 1, 1)
    assert view[0, 1] == value_for(fmt, 1, 1)


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_collection_via_testbuffer(fmt):
    tb = pytest.importorskip("_testbuffer")
    # _testbuffer's own 1-D arrays as rows, and an independent PIL array as the reference.
    items = [[value_for(fmt, i, j) for j in range(5)] for i in range(3)]
    rows = [tb.ndarray(row, shape=[5], format=fmt, flags=tb.ND_WRITABLE) for row in items]
    coll = BufferCollection2D(rows)
    assert coll.format == fmt
    consumer = tb.ndarray(coll, getbuf=tb.PyBUF_FULL_RO)
    assert consumer.tolist() == items
    ref = tb.ndarray([v for row in items for v in row], shape=[3, 5], format=fmt,
                     flags=tb.ND_PIL)
    assert memoryview(ref) == memoryview(coll)
    writer = tb.ndarray(coll, getbuf=tb.PyBUF_FULL)
    writer[2][4] = value_for(fmt, 0, 0)
    assert rows[2].tolist()[4] == value_for(fmt, 0, 0)


@pytest.mark.parametrize("typecode", "bBhHiIlLqQfd")
def test_collection_of_array_module_rows(typecode):
    rows = [array.array(typecode, [value_for(typecode, i, j) for j in range(6)])
            for i in range(4)]
    coll = BufferCollection2D(rows)
    assert coll.format == typecode
    assert memoryview(coll).tolist() == [r.tolist() for r in rows]
    assert memoryview(coll).tobytes() == b"".join(r.tobytes() for r in rows)


def test_collection_of_bytes_like_rows():
    rows = [bytearray(b"abcd"), b"efgh", memoryview(b"ijkl")]
    coll = BufferCollection2D(rows)
    assert coll.format == "B"
    assert coll.shape == (3, 4)
    assert coll.readonly is True  # bytes rows are read-only
    assert memoryview(coll).tobytes() == b"abcdefghijkl"
    assert memoryview(coll)[1, 2] == ord("g")


def test_collection_of_numpy_rows():
    np = pytest.importorskip("numpy")
    rows = [np.arange(i * 5, i * 5 + 5, dtype=np.float64) for i in range(4)]
    coll = BufferCollection2D(rows)
    assert coll.shape == (4, 5)
    assert coll.format == "d"
    mv = memoryview(coll)
    assert mv.tolist() == [r.tolist() for r in rows]
    mv[3, 4] = -1.0
    assert rows[3][4] == -1.0
    rows[0][0] = 99.0
    assert mv[0, 0] == 99.0


def test_rows_may_be_any_iterable():
    src = [array.array("i", [i, i + 1]) for i in range(3)]
    expected = [[0, 1], [1, 2], [2, 3]]
    assert memoryview(BufferCollection2D(iter(src))).tolist() == expected
    assert memoryview(BufferCollection2D(tuple(src))).tolist() == expected
    assert memoryview(BufferCollection2D(r for r in src)).tolist() == expected
    assert memoryview(BufferCollection2D(reversed(list(reversed(src))))).tolist() == expected

    class Rows:
        def __iter__(self):
            return iter(src)

    assert memoryview(BufferCollection2D(Rows())).tolist() == expected


def test_non_iterable_rows():
    with pytest.raises(TypeError):
        BufferCollection2D(5)
    with pytest.raises(TypeError):
        BufferCollection2D(None)


def test_explicit_column_count_and_format():
    rows = [array.array("d", [1.0, 2.0, 3.0]) for _ in range(2)]
    coll = BufferCollection2D(rows, column_count=3, format="d")
    assert coll.shape == (2, 3)
    coll = BufferCollection2D(rows, 3, b"d")
    assert coll.format == "d"
    coll = BufferCollection2D(rows, column_count=-1, format=None)
    assert coll.shape == (2, 3)


def test_column_count_none_means_auto():
    rows = [array.array("d", [1.0, 2.0, 3.0]) for _ in range(2)]
    coll = BufferCollection2D(rows, column_count=None)
    assert coll.shape == (2, 3)
    assert memoryview(coll).tolist() == [[1.0, 2.0, 3.0]] * 2


def test_column_count_accepts_integer_like_objects():
    # Anything with __index__ (e.g. a NumPy integer from a shape computation) is an int.
    class Three:
        def __index__(self):
            return 3

    rows = [array.array("d", [1.0, 2.0, 3.0]) for _ in range(2)]
    assert BufferCollection2D(rows, column_count=Three()).shape == (2, 3)
    np = pytest.importorskip("numpy")
    assert BufferCollection2D(rows, column_count=np.int64(3)).shape == (2, 3)
    assert BufferCollection2D([], column_count=np.intp(4), format="d").shape == (0, 4)
    with pytest.raises(TypeError):
        BufferCollection2D(rows, column_count=3.0)
    with pytest.raises(TypeError):
        BufferCollection2D(rows, column_count="3")


def test_single_row():
    coll = BufferCollection2D([array.array("h", [1, 2, 3])])
    assert coll.shape == (1, 3)
    assert memoryview(coll).tolist() == [[1, 2, 3]]


# ---------------------------------------------------------------------------------------------
# inconsistencies
# ---------------------------------------------------------------------------------------------

def test_inconsistent_lengths():
    rows = [array.array("i", [0] * 4), array.array("i", [0] * 4), array.array("i", [0] * 7)]
    with pytest.raises(BufferError) as info:
        BufferCollection2D(rows)
    msg = str(info.value)
    assert re.search(r"row\D*2\b", msg), msg
    assert re.search(word(7), msg) and re.search(word(4), msg), msg


def test_length_differs_from_explicit_column_count():
    rows = [array.array("i", [0] * 4), array.array("i", [0] * 4)]
    with pytest.raises(BufferError) as info:
        BufferCollection2D(rows, column_count=5)
    msg = str(info.value)
    assert re.search(r"row\D*0\b", msg), msg
    assert re.search(word(4), msg) and re.search(word(5), msg), msg


def test_inconsistent_formats():
    rows = [array.array("i", [0, 0]), array.array("i", [0, 0]), array.array("f", [0, 0])]
    with pytest.raises(BufferError) as info:
        BufferCollection2D(rows)
    msg = str(info.value)
    assert re.search(r"row\D*2\b", msg), msg
    assert "'f'" in msg and "'i'" in msg, msg


def test_inconsistent_itemsizes_with_same_count():
    rows = [array.array("h", [0, 0]), array.array("q", [0, 0])]
    with pytest.raises(BufferError, match=r"row\D*1\b"):
        BufferCollection2D(rows)


def test_format_differs_from_explicit_format():
    rows = [array.array("i", [0, 0])]
    with pytest.raises(BufferError) as info:
        BufferCollection2D(rows, format="d")
    msg = str(info.value)
    assert re.search(r"row\D*0\b", msg), msg
    assert "'d'" in msg and "'i'" in msg, msg


def test_non_buffer_row_names_index():
    with pytest.raises(TypeError, match=r"row\D*2\b"):
        BufferCollection2D([b"ab", b"cd", "ef"])
    with pytest.raises(TypeError, match=r"\b0\b"):
        BufferCollection2D([None])
    with pytest.raises(TypeError, match=r"\b1\b"):
        BufferCollection2D([b"ab", 12])


# ---------------------------------------------------------------------------------------------
# unravel
# ---------------------------------------------------------------------------------------------

def test_unravel_multidimensional_rows():
    np = pytest.importorskip("numpy")
    rows = [np.arange(6, dtype=np.int32).reshape(2, 3) + 10 * i for i in range(3)]
    coll = BufferCollection2D(rows)  # unravel=True is the default
    assert coll.shape == (3, 6)
    assert memoryview(coll).tolist() == [r.ravel().tolist() for r in rows]
    coll = BufferCollection2D(rows, unravel=True)
    assert coll.shape == (3, 6)


def test_unravel_memoryview_cast_rows():
    rows = [memoryview(bytearray(range(i, i + 12))).cast("B", (3, 4)) for i in range(2)]
    coll = BufferCollection2D(rows)
    assert coll.shape == (2, 12)
    assert memoryview(coll).tolist() == [list(range(i, i + 12)) for i in range(2)]


def test_unravel_false_accepts_only_1d():
    np = pytest.importorskip("numpy")
    rows = [np.zeros((2, 3)), np.zeros((2, 3))]
    with pytest.raises(BufferError):
        BufferCollection2D(rows, unravel=False)
    coll = BufferCollection2D([np.zeros(6), np.ones(6)], unravel=False)
    assert coll.shape == (2, 6)
    assert memoryview(coll).tolist() == [[0.0] * 6, [1.0] * 6]


def test_unravel_non_contiguous_is_refused():
    np = pytest.importorskip("numpy")
    base = np.zeros((4, 6))
    with pytest.raises(BufferError, match=r"row\D*0\b"):
        BufferCollection2D([base[:, ::2], base[:, 1::2]])
    with pytest.raises(BufferError):
        BufferCollection2D([np.zeros((3, 2)).T])  # Fortran-ordered
    with pytest.raises(BufferError, match=r"row\D*1\b"):
        BufferCollection2D([np.zeros(3), np.zeros(6)[::2]])


def test_non_contiguous_1d_rows_are_refused():
    ba = bytearray(10)
    with pytest.raises(BufferError):
        BufferCollection2D([memoryview(ba)[::2]], unravel=False)
    with pytest.raises(BufferError):
        BufferCollection2D([memoryview(ba)[::2]], unravel=True)


def test_indirect_row_is_refused():
    tb = pytest.importorskip("_testbuffer")
    pil = tb.ndarray(list(range(6)), shape=[2, 3], format="i", flags=tb.ND_PIL)
    with pytest.raises(BufferError, match=r"row\D*0\b"):
        BufferCollection2D([pil])
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    with pytest.raises(BufferError):
        BufferCollection2D([mem])
    assert mem.export_count == 0


# ---------------------------------------------------------------------------------------------
# read-only
# ---------------------------------------------------------------------------------------------

def test_readonly_if_any_row_readonly():
    tb = pytest.importorskip("_testbuffer")
    rows = [bytearray(4), bytes(4), bytearray(4)]
    coll = BufferCollection2D(rows)
    assert coll.readonly is True
    mv = memoryview(coll)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0, 0] = 1
    with pytest.raises(BufferError):
        tb.ndarray(coll, getbuf=tb.PyBUF_FULL)
    assert rows[0] == bytearray(4)


def test_writable_if_all_rows_writable():
    coll = BufferCollection2D([bytearray(4), bytearray(4)])
    assert coll.readonly is False
    assert memoryview(coll).readonly is False


def test_make_read_only():
    tb = pytest.importorskip("_testbuffer")
    rows = [bytearray(b"ab"), bytearray(b"cd")]
    coll = BufferCollection2D(rows)
    mv = memoryview(coll)
    with pytest.raises(BufferError):
        coll.make_read_only()
    assert coll.readonly is False
    nd = tb.ndarray(coll, getbuf=tb.PyBUF_FULL_RO)
    mv.release()
    with pytest.raises(BufferError):
        coll.make_read_only()
    del nd
    coll.make_read_only()
    assert coll.readonly is True
    assert memoryview(coll).readonly
    with pytest.raises(BufferError):
        tb.ndarray(coll, getbuf=tb.PyBUF_FULL)
    assert memoryview(coll).tobytes() == b"abcd"


# ---------------------------------------------------------------------------------------------
# rows stay acquired (locked) while the collection lives, released afterwards
# ---------------------------------------------------------------------------------------------

def test_bytearray_rows_cannot_be_resized_while_collection_lives():
    ba = bytearray(b"abcd")
    coll = BufferCollection2D([ba, bytearray(b"efgh")])
    with pytest.raises(BufferError):
        ba.append(1)
    with pytest.raises(BufferError):
        ba.extend(b"xy")
    with pytest.raises(BufferError):
        del ba[0]
    assert ba == b"abcd"
    ba[0] = ord("z")  # in-place writes are fine
    assert memoryview(coll)[0, 0] == ord("z")
    del coll
    gc.collect()
    ba.append(ord("!"))
    assert ba == b"zbcd!"


def test_rows_stay_locked_while_a_view_outlives_the_collection():
    ba = bytearray(b"abcd")
    coll = BufferCollection2D([ba])
    mv = memoryview(coll)
    del coll
    gc.collect()
    with pytest.raises(BufferError):
        ba.append(1)
    assert mv.tobytes() == b"abcd"
    mv.release()
    del mv
    gc.collect()
    ba.append(1)


def test_row_reference_counts_return_to_baseline():
    rows = [bytearray(8), array.array("B", bytes(8)), memoryview(bytearray(8))]
    base = [sys.getrefcount(r) for r in rows]
    coll = BufferCollection2D(rows)
    held = [sys.getrefcount(r) for r in rows]
    assert all(h > b for h, b in zip(held, base))
    views = [memoryview(coll) for _ in range(3)]
    del coll
    for v in views:
        v.release()
    del views, v
    gc.collect()
    assert [sys.getrefcount(r) for r in rows] == base


def test_numpy_row_reference_counts_return_to_baseline():
    np = pytest.importorskip("numpy")
    rows = [np.zeros(5) for _ in range(4)]
    base = [sys.getrefcount(r) for r in rows]
    coll = BufferCollection2D(rows)
    mv = memoryview(coll)
    mv[1, 1] = 2.0
    del coll, mv
    gc.collect()
    assert [sys.getrefcount(r) for r in rows] == base
    assert rows[1][1] == 2.0


def test_failed_construction_releases_acquired_rows():
    ok1, ok2 = bytearray(4), bytearray(4)
    base = [sys.getrefcount(ok1), sys.getrefcount(ok2)]
    with pytest.raises(BufferError):
        BufferCollection2D([ok1, ok2, bytearray(5)])
    with pytest.raises(TypeError):
        BufferCollection2D([ok1, ok2, object()])
    with pytest.raises(BufferError):
        BufferCollection2D([ok1, ok2], format="d")
    gc.collect()
    assert [sys.getrefcount(ok1), sys.getrefcount(ok2)] == base
    ok1.append(1)  # not locked any more
    ok2.extend(b"xyz")


def test_collection_export_count():
    coll = BufferCollection2D([bytearray(3), bytearray(3)])
    assert coll.export_count == 0
    a = memoryview(coll)
    b = memoryview(coll)
    assert coll.export_count == 2
    a.release()
    assert coll.export_count == 1
    del b
    assert coll.export_count == 0


def test_collection_flags_are_checked():
    tb = pytest.importorskip("_testbuffer")
    coll = BufferCollection2D([bytearray(3), bytearray(3)])
    for name in ("PyBUF_SIMPLE", "PyBUF_STRIDED", "PyBUF_CONTIG_RO", "PyBUF_RECORDS"):
        with pytest.raises(BufferError):
            tb.ndarray(coll, getbuf=getattr(tb, name))
    assert tb.ndarray(coll, getbuf=tb.PyBUF_FULL).shape == (2, 3)


def test_collection_reinterpret_data():
    rows = [array.array("i", [1, 2, 3, 4]), array.array("i", [5, 6, 7, 8])]
    coll = BufferCollection2D(rows)
    coll.reinterpret_data("q")
    assert coll.shape == (2, 2)
    assert memoryview(coll).tolist() == [
        list(struct.unpack("2q", r.tobytes())) for r in rows]
    with pytest.raises(ValueError):
        coll.reinterpret_data("3s")  # 16 bytes per row


def test_collection_rows_follow_source_data():
    # Rows of a collection are the row objects' own memory: check with ctypes at the
    # table's address as well as through the buffer.
    rows = [array.array("d", [i + 0.5, i + 1.5]) for i in range(3)]
    coll = BufferCollection2D(rows)
    table = (ctypes.c_void_p * 3).from_address(coll.address)
    assert [table[i] for i in range(3)] == [r.buffer_info()[0] for r in rows]


# ---------------------------------------------------------------------------------------------
# empty and zero-sized
# ---------------------------------------------------------------------------------------------

def test_empty_iterable_with_explicit_count_and_format():
    coll = BufferCollection2D([], column_count=4, format="d")
    assert coll.shape == (0, 4)
    assert coll.format == "d"
    assert coll.itemsize == 8
    mv = memoryview(coll)
    assert mv.shape == (0, 4)
    assert mv.tolist() == []
    assert mv.tobytes() == b""
    coll = BufferCollection2D(iter(()), 0, b"i")
    assert coll.shape == (0, 0)


def test_empty_iterable_without_count_or_format_is_an_error():
    with pytest.raises((ValueError, BufferError)):
        BufferCollection2D([])
    with pytest.raises((ValueError, BufferError)):
        BufferCollection2D([], column_count=3)
    with pytest.raises((ValueError, BufferError)):
        BufferCollection2D([], format="d")


def test_zero_length_rows():
    coll = BufferCollection2D([bytearray(), bytearray(), b""])
    assert coll.shape == (3, 0)
    assert memoryview(coll).tolist() == [[], [], []]
    np = pytest.importorskip("numpy")
    coll = BufferCollection2D([np.zeros(0), np.zeros(0)])
    assert coll.shape == (2, 0)
    assert coll.format == "d"


def test_zero_length_rows_with_explicit_format():
    coll = BufferCollection2D([array.array("d"), array.array("d")], 0, "d")
    assert coll.shape == (2, 0)


def test_bad_arguments():
    rows = [bytearray(2)]
    with pytest.raises(ValueError):
        BufferCollection2D(rows, column_count=-2)
    with pytest.raises(ValueError, match="Z"):
        BufferCollection2D(rows, format="Z")
    with pytest.raises(TypeError):
        BufferCollection2D(rows, format=3)


def test_basic_release_unlocks_rows():
    ba = bytearray(b"abc")
    coll = BufferCollection2D([ba])
    mv = memoryview(coll)
    with pytest.raises(BufferError):
        coll.release()
    with pytest.raises(BufferError):
        ba.append(0)
    mv.release()
    coll.release()
    assert coll.released
    ba.append(0)  # the row's buffer was released with the collection
    assert ba == b"abc\x00"
