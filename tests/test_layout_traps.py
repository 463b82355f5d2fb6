"""Layout traps (issue 21): behaviours that planted one-line bugs escaped, pinned down.

A hand mutation test planted 31 one-line bugs; three escaped every deterministic test, and a
few more were caught only far from their own file. Each test here guards one check of the
library (named in its docstring), feeds it the layout it must handle or refuse, and compares
real values with an independent oracle (NumPy, memoryview.tolist(), struct): deleting or
loosening the check makes the test fail.

1. Foreign PIL-style buffers whose pointer table is strided (every other row of a
   _testbuffer ND_PIL array; a hand-made exporter whose table stride is 2 or -2 pointers,
   with decoy rows in between; 3-D with one and two levels of strided tables).
2. Collection rows whose exporter reports a `len` that disagrees with shape * itemsize.
3. view_from_columns / view_from_rows on the orders they must refuse (exactly two rows).
4. Fast paths that trust a layout: NumPy's alignment, the unpin guard, pinned()'s format and
   writable checks, the direct view's read-only flag.
"""
import ctypes
import random
import struct
import sys

import _testbuffer as tb
import numpy as np
import pytest

import _hostile
from _hostile import PTR, expect, isolated, take_unraisable
from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect


@pytest.fixture(scope="module")
def exporter_dir(cython_builder):
    return _hostile.build_module(cython_builder, "ib_hostile_exporter", _hostile.EXPORTER_PYX)


@pytest.fixture(scope="module")
def exporter_mod(exporter_dir):
    return _hostile.exporter_module(exporter_dir)


HELPERS_PYX = r'''
# cython: language_level=3
from indirect_buffer.buffer_impl cimport IndirectMemory

def pin(IndirectMemory mem):
    mem.pin()

def unpin(IndirectMemory mem):
    mem.unpin()
'''


@pytest.fixture(scope="module")
def helpers_dir(cython_builder):
    return _hostile.build_module(cython_builder, "ib_layout_traps_helpers", HELPERS_PYX)


DECOY = -7777  # the value of every element of a decoy row (never one of the real values)


# =============================================================================================
# 1. foreign PIL-style buffers with a strided pointer table
# =============================================================================================

def pil_every_other_row(a, step=2):
    """_testbuffer's ND_PIL array of a (2-D or more), rows interleaved with decoy rows, and
    the slice of it that selects a's rows again (pointer-table stride step * sizeof(void*))."""
    big = np.full((a.shape[0] * abs(step),) + a.shape[1:], DECOY, dtype=a.dtype)
    idx = slice(None, None, step)
    big[idx] = a
    nd = tb.ndarray(big.ravel().tolist(), shape=list(big.shape), format=a.dtype.char,
                    flags=tb.ND_PIL | tb.ND_WRITABLE)
    view = nd[idx]
    assert view.suboffsets[0] >= 0 and view.tolist() == big[idx].tolist()
    return nd, view, big[idx]


@pytest.mark.parametrize("step", [2, 3, -1, -2])
@isolated  # a reader that ignores a negative table stride reads past the table
def test_testbuffer_pil_with_strided_table_copies_right_rows(step):
    """Guards: the copy engine's and the row view's use of the source's strides[0] for the
    pointer table (a bug reading the table as if its stride were sizeof(void*) returns the
    decoy rows in between, or the rows in the wrong order for a negative stride)."""
    a = np.arange(4 * 5, dtype=np.int32).reshape(4, 5) + 1
    nd, src, want = pil_every_other_row(a, step)
    assert src.strides[0] == step * PTR
    want = want.tolist()
    assert memoryview(src).tolist() == want  # CPython's own reading: the oracle
    m = IndirectMemory2D.create_memory(4, 5, "i")
    m.copy_from(src)
    assert m.to_numpy().tolist() == want
    for obj in (as_indirect(src), as_indirect(src, readonly=False),
                IndirectMemory2D.view_from_rows(src, readonly=True)):
        assert obj.shape == (4, 5)
        assert obj.to_numpy().tolist() == want
        assert memoryview(obj).tolist() == want
        assert obj.copy().to_numpy().tolist() == want
    # and back: copy_to writes the selected rows only, the decoys stay
    new = -np.arange(20, dtype=np.int32).reshape(4, 5)
    m.copy_from(new)
    m.copy_to(src)
    assert memoryview(src).tolist() == new.tolist()
    full = np.array(nd.tolist())
    rest = np.ones(full.shape[0], bool)
    rest[slice(None, None, step)] = False
    assert (full[rest] == DECOY).all()
    # a format conversion on the way (through to_numpy of the row view)
    d = as_indirect(src, format="d")
    assert d.format == "d" and d.to_numpy().tolist() == new.astype(float).tolist()


@isolated
def test_testbuffer_pil_3d_with_strided_tables():
    """Guards: the N-D copy engine and as_indirect(indirect=...) follow strides[0] of a
    strided ND_PIL table and the reversed direct dimension after it."""
    a = np.arange(3 * 4 * 2, dtype=np.int16).reshape(3, 4, 2) + 1
    big = np.full((6, 4, 2), DECOY, dtype=np.int16)
    big[::2] = a
    nd = tb.ndarray(big.ravel().tolist(), shape=[6, 4, 2], format="h", flags=tb.ND_PIL)
    for idx in ((slice(None, None, 2),), (slice(None, None, -2),),
                (slice(None, None, 2), slice(None, None, -1)),
                (slice(None, None, -2), slice(None, None, 2), slice(None, None, -1))):
        src = nd[idx]
        want = big[idx].tolist()
        assert memoryview(src).tolist() == want
        assert abs(src.strides[0]) == 2 * PTR
        shape = tuple(src.shape)
        for indirect in ((0,), (1,), (0, 1)):
            m = IndirectMemory.create_memory(shape, "h", indirect=indirect)
            m.copy_from(src)
            assert m.to_numpy().tolist() == want, (idx, indirect)
            r = as_indirect(src, indirect=indirect)
            assert r.indirect == indirect and r.to_numpy().tolist() == want, (idx, indirect)
            assert memoryview(r).tolist() == want


def handmade_pil(mod, a, step, sub0=0, reverse=False):
    """A 2-D exporter of a (rows x cols) whose pointer table has stride step*PTR (negative if
    reverse), every pointer `sub0` bytes before its row; the slots in between point to decoy
    rows (valid memory holding DECOY), so a reader that ignores the stride reads decoys."""
    rows, cols = a.shape
    item = a.itemsize
    keep = []
    row_bufs = []
    for i in range(rows):
        b = ctypes.create_string_buffer(a[i].tobytes() + bytes(64), cols * item + 64)
        row_bufs.append(b)
    decoy = np.full(cols, DECOY, dtype=a.dtype).tobytes()
    decoys = [ctypes.create_string_buffer(decoy + bytes(64), cols * item + 64)
              for _ in range(rows * step)]
    # the table proper sits in the middle of three times its size, every other slot a decoy:
    # a reader that steps wrongly (either way) reads decoy rows, not wild pointers
    pad = rows * step
    table = (ctypes.c_void_p * (3 * pad))()
    for k in range(3 * pad):
        table[k] = ctypes.addressof(decoys[k % len(decoys)]) - sub0
    for i in range(rows):
        slot = pad + ((rows - 1 - i) * step if reverse else i * step)
        table[slot] = ctypes.addressof(row_bufs[i]) - sub0
    keep += [row_bufs, decoys, table]
    base = ctypes.addressof(table) + (pad + ((rows - 1) * step if reverse else 0)) * PTR
    stride = -step * PTR if reverse else step * PTR
    exp = mod.Exporter(base, (rows, cols), (stride, item), (sub0, -1), a.dtype.char, item,
                       keep=keep)
    return exp, row_bufs


@pytest.mark.parametrize("step,reverse", [(2, False), (2, True), (3, False), (1, True)])
@pytest.mark.parametrize("sub0", [0, 16])
@isolated
def test_handmade_pil_with_strided_table(exporter_dir, step, reverse, sub0):
    """Guards: every reader of a foreign pointer table (copy engine, as_indirect, the row
    view, copy_to) steps through it by the exporter's strides[0], and adds suboffsets[0]
    after each pointer."""
    exporter_mod = _hostile.exporter_module(exporter_dir)
    a = (np.arange(3 * 4, dtype=np.float64).reshape(3, 4) + 0.5) * 3
    exp, rows = handmade_pil(exporter_mod, a, step, sub0, reverse)
    want = a.tolist()
    assert memoryview(exp).tolist() == want  # CPython's reading agrees with the layout
    m = IndirectMemory2D.create_memory(3, 4, "d")
    m.copy_from(exp)
    assert m.to_numpy().tolist() == want
    n = IndirectMemory.create_memory((3, 4), "d", indirect=(0,))
    n.copy_from(exp)
    assert n.to_numpy().tolist() == want
    for obj in (as_indirect(exp), IndirectMemory2D.view_from_rows(exp, readonly=True),
                as_indirect(exp, indirect=(0,)), as_indirect(exp, format="f")):
        assert obj.to_numpy().tolist() == want
    new = -a
    m.copy_from(new)
    m.copy_to(exp)
    assert [np.frombuffer(r, dtype=np.float64, count=4).tolist() for r in rows] == new.tolist()
    assert memoryview(exp).tolist() == new.tolist()
    assert exp.gets == exp.releases


@isolated
def test_handmade_pil_3d_two_strided_levels(exporter_dir):
    """Guards: the N-D copy engine's stride through tables at two levels (suboffsets
    (0, 8, -1)), both with a stride of two pointers and decoys in between."""
    exporter_mod = _hostile.exporter_module(exporter_dir)
    R, C, K = 2, 3, 2
    a = np.arange(R * C * K, dtype=np.int64).reshape(R, C, K) + 100
    decoy = np.full(K, DECOY, dtype=np.int64).tobytes()
    keep = []

    def block(data):
        b = ctypes.create_string_buffer(data + bytes(32), len(data) + 32)
        keep.append(b)
        return ctypes.addressof(b)

    top = (ctypes.c_void_p * (2 * R))()
    keep.append(top)
    for i in range(R):
        mid = (ctypes.c_void_p * (2 * C))()
        keep.append(mid)
        for j in range(C):
            mid[2 * j] = block(a[i, j].tobytes()) - 8
            mid[2 * j + 1] = block(decoy) - 8
        top[2 * i] = ctypes.addressof(mid)
        decoy_mid = (ctypes.c_void_p * (2 * C))(*[block(decoy) - 8] * (2 * C))
        keep.append(decoy_mid)
        top[2 * i + 1] = ctypes.addressof(decoy_mid)
    exp = exporter_mod.Exporter(ctypes.addressof(top), (R, C, K), (2 * PTR, 2 * PTR, 8),
                                (0, 8, -1), "q", 8, keep=keep)
    want = a.tolist()
    assert memoryview(exp).tolist() == want
    for indirect in ((0,), (1,), (0, 1)):
        m = IndirectMemory.create_memory((R, C, K), "q", indirect=indirect)
        m.copy_from(exp)
        assert m.to_numpy().tolist() == want
        r = as_indirect(exp, indirect=indirect)
        assert r.to_numpy().tolist() == want and memoryview(r).tolist() == want
    assert exp.gets == exp.releases


# =============================================================================================
# 2. a collection row whose len disagrees with its shape
# =============================================================================================

def lying_row(mod, values, told_len, keep_extra=64):
    """A 1-D exporter of `values` (float64) that reports len told_len; the memory behind it
    is big enough for whatever a reader that trusts len would read."""
    data = ctypes.create_string_buffer(values.tobytes() + bytes(keep_extra),
                                       values.nbytes + keep_extra)
    exp = mod.Exporter(ctypes.addressof(data), (len(values),), (8,), None, "d", 8, keep=[data],
                       length=told_len)
    return exp


@pytest.mark.parametrize("delta", [8, -8, 1, -1, 800])
@pytest.mark.parametrize("position", [0, 1])
def test_collection_row_with_lying_len_is_refused(exporter_mod, delta, position):
    """Guards: _check_extent in collection.pxi (a row's len must equal shape * itemsize; the
    element count is taken from len). Without it, a row that says len 40 for 4 doubles makes
    a 5-column collection reading past the row, and a smaller len drops elements."""
    good = [np.arange(4, dtype=np.float64) + 10 * i for i in range(2)]
    liar = lying_row(exporter_mod, np.arange(4, dtype=np.float64) + 100, 32 + delta)
    assert memoryview(liar).tolist() == [100.0, 101.0, 102.0, 103.0]  # CPython reads by shape
    rows = list(good)
    rows.insert(position, liar)
    for column_count in (-1, 4):
        exc = expect(BufferError, BufferCollection2D, rows, column_count=column_count)
        assert _hostile.names_row(str(exc), position), str(exc)
        assert "len" in str(exc), str(exc)
    assert liar.gets == liar.releases
    # an honest row with 5 elements after a liar claiming 5: still refused (no 5-column
    # collection that reads past the liar's 4 elements)
    if delta == 8 and position == 0:
        five = np.arange(5, dtype=np.float64)
        exc = expect(BufferError, BufferCollection2D, [liar, five])
        assert _hostile.names_row(str(exc), 0) and "len" in str(exc), str(exc)
    # the same row, honest, is accepted and read right (the oracle for the refusal above)
    honest = lying_row(exporter_mod, np.arange(4, dtype=np.float64) + 100, 32)
    rows[position] = honest
    coll = BufferCollection2D(rows)
    want = [r.tolist() if isinstance(r, np.ndarray) else list(range(100, 104)) for r in rows]
    assert coll.to_numpy().tolist() == want


def test_collection_row_2d_with_lying_len_is_refused(exporter_mod):
    """Guards: _check_extent for an N-D row read flat (unravel=True): len must be the
    product of the whole shape times itemsize."""
    data = ctypes.create_string_buffer(np.arange(6, dtype=np.float64).tobytes() + bytes(64), 112)
    for told in (40, 56, 0):
        exp = exporter_mod.Exporter(ctypes.addressof(data), (2, 3), (24, 8), None, "d", 8,
                                    keep=[data], length=told)
        exc = expect(BufferError, BufferCollection2D, [np.zeros(6), exp])
        assert _hostile.names_row(str(exc), 1) and "len" in str(exc), str(exc)
    exp = exporter_mod.Exporter(ctypes.addressof(data), (2, 3), (24, 8), None, "d", 8,
                                keep=[data])
    assert BufferCollection2D([np.zeros(6), exp]).to_numpy().tolist() == [
        [0.0] * 6, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]


def test_collection_row_with_negative_shape_is_refused(exporter_mod):
    """A negative dimension (with a len that matches the product of the others) is refused
    naming the row (_check_extent's shape check, backed up by the contiguity checks)."""
    data = ctypes.create_string_buffer(64)
    exp = exporter_mod.Exporter(ctypes.addressof(data), (2, -1), (8, 8), None, "d", 8,
                                keep=[data], honour_flags=False, length=16)
    exc = expect(BufferError, BufferCollection2D, [exp])
    assert _hostile.names_row(str(exc), 0), str(exc)


# =============================================================================================
# 3. views of rows and columns: the orders they must refuse
# =============================================================================================

@pytest.mark.parametrize("rows", [1, 2, 3])
@pytest.mark.parametrize("cols", [1, 2, 5])
def test_view_from_columns_refuses_c_order_with_several_rows(rows, cols):
    """Guards: _view_from_lines' element-stride check for columns (a column of a C-ordered
    array with 2+ rows is not contiguous). The two-row case is the one a planted bug let
    through with overlapping garbage; whatever is accepted must read numpy's transpose."""
    a = np.arange(rows * cols, dtype=np.int32).reshape(rows, cols) * 7 + 1
    assert a.flags.c_contiguous
    if rows >= 2 and cols >= 2:
        # the columns of a C-ordered array are strided by a row: refused
        exc = expect(BufferError, IndirectMemory2D.view_from_columns, a)
        assert "not contiguous" in str(exc), str(exc)
    else:
        v = IndirectMemory2D.view_from_columns(a)
        assert v.shape == (cols, rows)
        assert v.to_numpy().tolist() == a.T.tolist()
        assert memoryview(v).tolist() == a.T.tolist()
    f = np.asfortranarray(a)
    v = IndirectMemory2D.view_from_columns(f)
    assert v.shape == (cols, rows)
    assert v.to_numpy().tolist() == a.T.tolist() == memoryview(v).tolist()
    # writes reach the F-ordered array in the transposed places
    w = IndirectMemory2D.view_from_columns(f)
    new = -np.arange(rows * cols, dtype=np.int32).reshape(cols, rows)
    w.copy_from(new)
    assert f.tolist() == new.T.tolist()


@pytest.mark.parametrize("cols", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 2, 3])
def test_view_from_rows_refuses_f_order_with_several_columns(rows, cols):
    """Guards: _view_from_lines' C-contiguity check of rows (the mirror of the columns case:
    the rows of an F-ordered array with 2+ rows and 2+ columns are strided)."""
    a = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) + 0.25
    f = np.asfortranarray(a)
    if rows >= 2 and cols >= 2:
        expect(BufferError, IndirectMemory2D.view_from_rows, f)
        expect(BufferError, BufferCollection2D, [f[i] for i in range(rows)])
    else:
        assert IndirectMemory2D.view_from_rows(f).to_numpy().tolist() == a.tolist()
    # as_indirect falls back to a copy: right values whatever the order
    assert as_indirect(f).to_numpy().tolist() == a.tolist()


def test_view_from_columns_of_strided_column_views():
    """Guards: the column check uses the element stride of the source, not its shape: every
    other column of an F-ordered array (columns contiguous, column stride doubled) is
    accepted and read right; every other row of it (columns strided) is refused."""
    f = np.asfortranarray(np.arange(3 * 6, dtype=np.int16).reshape(3, 6))
    sub = f[:, ::2]
    assert IndirectMemory2D.view_from_columns(sub).to_numpy().tolist() == sub.T.tolist()
    expect(BufferError, IndirectMemory2D.view_from_columns, f[::2, :])
    sub = f[:, ::-1]
    assert IndirectMemory2D.view_from_columns(sub).to_numpy().tolist() == sub.T.tolist()


# =============================================================================================
# 4a. the NumPy fast path trusts aligned arrays only
# =============================================================================================

def _unaligned(dtype, shape):
    n = int(np.prod(shape))
    it = np.dtype(dtype).itemsize
    a = np.frombuffer(bytearray(it * n + 1), offset=1, dtype=dtype).reshape(shape)
    a[...] = (np.arange(n).reshape(shape) * 3 + 1).astype(dtype)
    assert not a.flags.aligned and a.flags.writeable
    return a


def _check_unaligned_views(dtype):
    a = _unaligned(dtype, (2, 5))
    want = a.tolist()
    fmt = memoryview(a).format  # NumPy's own format for this array: '=q', not 'l'
    row_fmt = memoryview(a[0]).format
    v = IndirectMemory2D.view_from_rows(a)
    assert (v.format, v.to_numpy().tolist()) == (fmt, want)
    c = BufferCollection2D([a[0], a[1]])
    assert (c.format, c.to_numpy().tolist()) == (row_fmt, want)
    n = IndirectMemory.view_from_array(a.reshape(2, 5, 1), indirect=(0,))
    assert n.format == memoryview(a.reshape(2, 5, 1)).format
    assert n.to_numpy().reshape(2, 5).tolist() == want
    r = as_indirect(a)
    assert r.format == fmt and r.to_numpy().tolist() == want
    # writes through the views reach the unaligned memory
    v.copy_from(np.full((2, 5), 9, dtype=dtype))
    assert a.tolist() == [[9] * 5] * 2
    return fmt


@isolated
def test_unaligned_numpy_after_aligned_is_not_read_through_the_fast_path():
    """Guards: _export_ndarray's alignment test (ndarray_export.pxi). Once a dtype's format
    is cached from an aligned array ('l'), an unaligned array of that dtype must still be
    exported by NumPy, whose format for it is '=q'."""
    for dtype in (np.int64, np.int32, np.float64, np.uint64):
        aligned = np.arange(10, dtype=dtype).reshape(2, 5)
        for _ in range(2):  # the first learns the dtype, the second takes the fast path
            v = IndirectMemory2D.view_from_rows(aligned)
            assert v.format == memoryview(aligned).format
            c = BufferCollection2D([aligned[0], aligned[1]])
            assert c.format == memoryview(aligned[0]).format
        fmt = _check_unaligned_views(dtype)
        assert fmt.startswith("="), fmt
        assert fmt != memoryview(aligned).format


@isolated
def test_unaligned_numpy_first_does_not_teach_the_fast_path():
    """Guards: _learn_descr's alignment test: the first array of a dtype seen unaligned must
    not teach the cache its format ('=q'); aligned arrays after it report NumPy's 'l'."""
    for dtype in (np.int64, np.int16, np.float64, np.uint64):
        _check_unaligned_views(dtype)
        aligned = np.arange(10, dtype=dtype).reshape(2, 5)
        for _ in range(2):
            v = IndirectMemory2D.view_from_rows(aligned)
            assert v.format == memoryview(aligned).format
            assert not v.format.startswith("=")
            c = BufferCollection2D([aligned[0], aligned[1]])
            assert c.format == memoryview(aligned[0]).format
            assert c.to_numpy().tolist() == aligned.tolist()


# =============================================================================================
# 4b. the unpin guard
# =============================================================================================

@isolated
def test_unbalanced_unpin_changes_no_count_and_is_reported(helpers_dir):
    """Guards: IndirectMemory.unpin()'s guard (pins <= 0 or exports <= 0): an unpin()
    without a pin() changes no count, even while a memoryview export (not a pin) is live,
    and says so once through sys.unraisablehook."""
    mod = _hostile.load_module("ib_layout_traps_helpers", helpers_dir)
    take_unraisable()
    for m in (IndirectMemory2D.create_memory(2, 2, "d"),
              IndirectMemory.create_memory((2, 2, 2), "i", indirect=(0, 1)),
              BufferCollection2D([bytearray(8), bytearray(8)])):
        mod.unpin(m)
        assert m.export_count == 0
        got = take_unraisable()
        assert len(got) == 1 and "unpin() without a matching pin()" in got[0], got
        # an export that is not a pin: the unbalanced unpin must not count it down
        view = memoryview(m)
        mod.unpin(m)
        assert m.export_count == 1
        assert len(take_unraisable()) == 1
        expect(BufferError, m.release)
        view.release()
        assert m.export_count == 0
        # a pin through pinned() plus one unpin too many: the pin stays
        with m.pinned():
            assert m.export_count == 1
            mod.pin(m)
            mod.unpin(m)
            assert m.export_count == 1 and not take_unraisable()
            view = memoryview(m)
            mod.unpin(m)   # takes the pinned() pin: balanced in count, but ...
            assert m.export_count == 1
            mod.unpin(m)   # ... now one too many: the view's export stays
            assert m.export_count == 1
            assert len(take_unraisable()) == 1
            view.release()
        # the context's exit is the unbalanced one now
        assert m.export_count == 0
        assert len(take_unraisable()) == 1
        m.release()
        assert m.released


# =============================================================================================
# 4c. pinned()'s format and writable checks
# =============================================================================================

SAMPLES = [bytes(random.Random(k).getrandbits(8) for _ in range(16)) for k in range(8)] + [
    bytes(16), b"\xff" * 16, bytes(range(16))]


def struct_alike(f1, f2):
    """The oracle: struct reads every sample the same way through f1 and f2 (same size,
    same values of the same types)."""
    n = struct.calcsize(f1)
    if struct.calcsize(f2) != n:
        return False
    return all(repr(struct.unpack(f1, s[:n])) == repr(struct.unpack(f2, s[:n]))
               for s in SAMPLES)


PIN_FORMATS = ["b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "n", "N", "f", "d", "e",
               "<d", ">d", "=d", "!d", "<q", ">q", "=q", "<l", "=l", ">i", "!i", "<i",
               "2i", "q", "?", "c", "1s", "2s", "P"]


def _memories(fmt, readonly):
    yield IndirectMemory2D.create_memory(2, 2, fmt, readonly=readonly)
    yield IndirectMemory.create_memory((2, 2, 2), fmt, indirect=(0,), readonly=readonly)
    yield IndirectMemory.create_memory((2, 2, 2), fmt, indirect=(0, 1), readonly=readonly)


@pytest.mark.parametrize("mem_fmt", ["q", "l", "<d", "d", "i", "B", "2i", "c"])
def test_pinned_format_check_agrees_with_struct(mem_fmt):
    """Guards: the format test in _check_request (pinned(): TypeError for an element format
    other than the memory's). Formats that only look alike ('<d' and '>d', 'q' and 'Q',
    'i' and 'f') are refused; formats struct reads the same ('l' and 'q' on LP64, '=q',
    '<d' on little-endian) are accepted, 2-D and N-D."""
    for m in _memories(mem_fmt, False):
        for fmt in PIN_FORMATS:
            alike = struct_alike(mem_fmt, fmt)
            if alike:
                with m.pinned(fmt) as address:
                    assert address == m.address and m.export_count == 1
                with m.pinned(fmt.encode()) as address:
                    assert address == m.address
            else:
                exc = expect(TypeError, lambda: m.pinned(fmt).__enter__())
                assert repr(fmt) in str(exc), (mem_fmt, fmt, str(exc))
            assert m.export_count == 0, (mem_fmt, fmt)
        m.release()


def test_pinned_format_lookalikes_on_this_platform():
    """Guards: the same check on the pairs that are easy to get wrong, spelled out."""
    assert struct.calcsize("l") == struct.calcsize("q") == 8 or sys.maxsize < 2 ** 32
    little = sys.byteorder == "little"
    cases = [("q", "l", struct.calcsize("l") == 8), ("q", "Q", False), ("l", "L", False),
             ("<d", ">d", False), ("<d", "d", little), (">d", "!d", True),
             ("d", "q", False), ("f", "i", False), ("i", "<i", little), ("h", "e", False)]
    for mem_fmt, fmt, ok in cases:
        assert struct_alike(mem_fmt, fmt) == ok, (mem_fmt, fmt)
        for m in _memories(mem_fmt, False):
            if ok:
                with m.pinned(fmt):
                    pass
            else:
                expect(TypeError, lambda: m.pinned(fmt).__enter__(), match="element format")
            assert m.export_count == 0


@pytest.mark.parametrize("readonly", [False, True])
def test_pinned_writable_check(readonly):
    """Guards: the writable test in _check_request: pinned(writable=True) of read-only
    memory is a BufferError that pins nothing; read-only pins of it and writable pins of
    writable memory are allowed, 2-D and N-D; make_read_only() is seen at once."""
    made = list(_memories("d", readonly)) + [
        IndirectMemory2D.view_from_rows(np.zeros((2, 3)), readonly=readonly),
        BufferCollection2D([bytes(8), bytes(8)]) if readonly else
        BufferCollection2D([bytearray(8), bytearray(8)])]
    for m in made:
        assert m.readonly == readonly
        if readonly:
            expect(BufferError, lambda: m.pinned(writable=True).__enter__(), match="read-only")
            expect(BufferError, lambda: m.pinned(m.format, writable=True).__enter__())
            assert m.export_count == 0
        else:
            with m.pinned(writable=True) as address:
                assert address == m.address and m.export_count == 1
            m.make_read_only()
            expect(BufferError, lambda: m.pinned(writable=True).__enter__(), match="read-only")
        with m.pinned(writable=False):
            assert m.export_count == 1
        assert m.export_count == 0
        # the format check comes with it: a wrong format is a TypeError, writable or not
        expect(TypeError, lambda: m.pinned("q", writable=False).__enter__())
        m.release()


# =============================================================================================
# 4d. the direct view's read-only flag
# =============================================================================================

def _direct_cases(readonly):
    a = np.arange(6, dtype=np.float64).reshape(2, 3) + 0.5
    m = IndirectMemory2D.create_memory(2, 3, "d")
    m.copy_from(a)
    yield "memory", m, a
    n = IndirectMemory.create_memory((2, 3, 1), "d", indirect=(0,))
    n.copy_from(a.reshape(2, 3, 1))
    yield "nd", n, a.reshape(2, 3, 1)
    yield "rows", IndirectMemory2D.view_from_rows(a.copy(), readonly=readonly), a
    yield "columns", IndirectMemory2D.view_from_columns(np.asfortranarray(a.T),
                                                        readonly=readonly), a
    yield "collection", BufferCollection2D([np.ascontiguousarray(a)[i] for i in range(1)]), a[:1]
    yield "nd_view", IndirectMemory.view_from_array(a.reshape(2, 3, 1).copy(),
                                                    readonly=readonly), a.reshape(2, 3, 1)


@pytest.mark.parametrize("readonly", [False, True])
def test_direct_view_readonly_follows_the_memory(readonly):
    """Guards: _DirectExport's read-only flag (export.pxi): the direct view of read-only
    memory is a read-only memoryview (writes raise TypeError, NumPy sees it read-only, the
    data is unchanged); of writable memory it is writable and writes reach the memory."""
    for what, m, a in _direct_cases(readonly):
        if readonly and not m.readonly:
            m.make_read_only()
        assert m.readonly == readonly, what
        dv = m.direct_view()
        assert dv.readonly == readonly, what
        assert dv.tolist() == a.tolist() and dv.format == "d"
        idx = (0,) * dv.ndim
        if readonly:
            with pytest.raises(TypeError):
                dv[idx] = 42.0
            assert not np.asarray(dv).flags.writeable
            with pytest.raises(ValueError):
                np.asarray(dv)[idx] = 42.0
            assert m.to_numpy().tolist() == a.tolist(), what
            # a writable request of the direct view's exporter is refused
            expect(BufferError, tb.ndarray, dv.obj, getbuf=tb.PyBUF_FULL)
        else:
            dv[idx] = 42.0
            assert m.to_numpy()[idx] == 42.0, what
            np.asarray(dv)[idx] = 43.0
            assert m.to_numpy()[idx] == 43.0, what
        dv.release()
        if not readonly:
            m.make_read_only()  # seen by the next direct view
            dv = m.direct_view()
            assert dv.readonly, what
            with pytest.raises(TypeError):
                dv[idx] = 1.0
            dv.release()
        assert m.export_count == 0
