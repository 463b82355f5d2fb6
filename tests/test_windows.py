"""Zero-copy windows (windows.pxi): mem[key] on IndirectMemory and IndirectMemory2D.

A window is new geometry (root table offset, strides, suboffsets) over the same pointer tables.
The oracle is NumPy indexing of the same data (a[key], a[k1][k2], a[key] = x), read back
through three independent consumers: to_numpy() (this library's copy engine), memoryview
(CPython's PEP 3118 walker) and _testbuffer's PyBuffer_ToContiguous; C tables are read through
ctypes, a Cython module (typed accessors) and the C API test module (ib_table_acquire).

Everything is deterministic (seeded random.Random); crash-prone cases run in a child
interpreter (conftest.run_python), so that a segfault fails the test rather than the run.
"""
import ctypes
import gc
import os
import random
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest
from conftest import REPO, run_python

from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D

try:
    import _testbuffer
except ImportError:  # a CPython built without its test modules
    _testbuffer = None

PTR = ctypes.sizeof(ctypes.c_void_p)
DTYPES = {"d": np.float64, "f": np.float32, "i": np.int32, "q": np.int64, "B": np.uint8,
          "h": np.int16}
CTYPES = {"d": ctypes.c_double, "f": ctypes.c_float, "i": ctypes.c_int32, "q": ctypes.c_int64,
          "B": ctypes.c_uint8, "h": ctypes.c_int16}
PERTURB = {"MALLOC_PERTURB_": "165"}


# -- helpers ------------------------------------------------------------------------------------

def distinct(shape, fmt, salt=0):
    """Values that differ from cell to cell (modulo the dtype's range), in C order."""
    n = int(np.prod(shape, dtype=np.int64))
    v = np.arange(n, dtype=np.int64) * 3 + 1 + salt * 7
    if fmt == "B":
        v = v % 251
    elif fmt == "h":
        v = v % 30011
    return v.astype(DTYPES[fmt]).reshape(shape)


def expand(key, ndim):
    """key as one item per dimension, as NumPy reads it (one '...', trailing full slices)."""
    items = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in items):
        at = items.index(Ellipsis)
        items = items[:at] + (slice(None),) * (ndim - len(items) + 1) + items[at + 1:]
    return items + (slice(None),) * (ndim - len(items))


def random_key(rng, shape, suboffsets, ints=True, ellipsis=True):
    """A random key: slices of any start/stop/step (also out of range, empty, negative),
    integers (also negative) only on direct dimensions, sometimes one '...'."""
    key = []
    for d, n in enumerate(shape):
        r = rng.random()
        if ints and suboffsets[d] < 0 and n > 0 and r < 0.3:
            key.append(rng.randrange(-n, n))
        elif r < 0.4:
            key.append(slice(None))
        else:
            start = rng.choice([None, rng.randint(-n - 2, n + 2)])
            stop = rng.choice([None, rng.randint(-n - 2, n + 2)])
            step = rng.choice([None, 1, 1, 2, 3, -1, -1, -2, -3, 7])
            key.append(slice(start, stop, step))
    while key and key[-1] == slice(None) and rng.random() < 0.5:
        key.pop()  # missing trailing items are full slices
    if ellipsis and rng.random() < 0.25:
        # '...' anywhere stands for the full slices needed (NumPy reads the key the same way)
        key.insert(rng.randrange(len(key) + 1), Ellipsis)
    return tuple(key) if len(key) != 1 or rng.random() < 0.5 else key[0]


def expected_geometry(base, key):
    """(shape, strides, indirect) of base[key]: each kept dimension's stride is its step times
    the base's, and it is indirect where the base's is."""
    shape, strides, indirect = [], [], []
    for d, item in enumerate(expand(key, base.ndim)):
        if isinstance(item, slice):
            start, stop, step = item.indices(base.shape[d])
            if base.suboffsets[d] >= 0:
                indirect.append(len(shape))
            shape.append(len(range(start, stop, step)))
            strides.append(step * base.strides[d])
    return tuple(shape), tuple(strides), tuple(indirect)


def check_window(w, base, expected, key):
    """w == base[key] read every way, with the geometry the key implies."""
    shape, strides, indirect = expected_geometry(base, key)
    assert w.shape == expected.shape == shape, (key, w.shape, expected.shape)
    assert w.ndim == len(shape)
    assert w.indirect == indirect, (key, w.indirect)
    assert w.format == base.format and w.itemsize == base.itemsize
    assert w.readonly == base.readonly
    assert not w.lent and not w.released
    # Only dimensions of more than one element must step as the key says.
    for k in range(len(shape)):
        if shape[k] > 1:
            assert w.strides[k] == strides[k], (key, w.strides, strides)
    assert all((s >= 0) == (k in indirect) for k, s in enumerate(w.suboffsets))
    is_2d_table = len(shape) == 2 and indirect == (0,)
    assert type(w) is (IndirectMemory2D if is_2d_table else IndirectMemory), (key, type(w))
    got = w.to_numpy()
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    with memoryview(w) as mv:
        assert mv.shape == w.shape and mv.strides == w.strides
        assert mv.suboffsets == w.suboffsets
        assert mv.tolist() == expected.tolist()
    if _testbuffer is not None:
        raw = _testbuffer.py_buffer_to_contiguous(w, "C", _testbuffer.PyBUF_FULL_RO)
        assert raw == np.ascontiguousarray(expected).tobytes(), key
    # copy(): owned memory with the window's tables before its last dimension (a last one
    # reached through pointers becomes plain rows); none for a 1-D window.
    tables = tuple(k for k in indirect if k < len(shape) - 1)
    if tables:
        c = w.copy()
        assert c.shape == w.shape and c.indirect == tables and c.readonly == w.readonly
        np.testing.assert_array_equal(c.to_numpy(), expected)
        c.release()
    else:
        with pytest.raises(BufferError):
            w.copy()


def c_rows(address, rows, cols, fmt="d", row_offset=0):
    """What C reads through a T** at address: row i starts row_offset bytes after table[i]."""
    if rows == 0:
        return []
    table = (ctypes.c_void_p * rows).from_address(address)
    ctype = CTYPES[fmt]
    return [list((ctype * cols).from_address(table[i] + row_offset)) if cols else []
            for i in range(rows)]


def c_write(address, i, j, value, fmt="d", row_offset=0):
    table = (ctypes.c_void_p * (i + 1)).from_address(address)
    CTYPES[fmt].from_address(table[i] + row_offset + j * ctypes.sizeof(CTYPES[fmt])).value = value


def run_child(code, env_extra=None):
    """A child interpreter (MALLOC_PERTURB_ set: freed memory cannot pass for old values)."""
    env = dict(os.environ)
    env.update(PERTURB)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
    if proc.returncode != 0:
        pytest.fail(f"child exited with {proc.returncode}\nstdout:\n{proc.stdout}\n"
                    f"stderr:\n{proc.stderr}")
    return proc.stdout


# -- sources: (memory, truth) where truth() reads the whole memory's data independently --------

def owned(shape, fmt, indirect=None):
    mem = IndirectMemory.create_memory(shape, fmt, indirect=indirect)
    mem.copy_from(distinct(shape, fmt))
    return mem, mem.to_numpy


def nanny_wrapped(shape, fmt, indirect=None):
    owner, _ = owned(shape, fmt, indirect)
    if len(shape) == 2 and indirect in (None, (0,), [0]):
        mem = IndirectMemory2D.from_address(owner.address, shape[0], shape[1], fmt,
                                            memory_nanny=owner)
    else:
        mem = IndirectMemory.from_address(owner.address, shape, fmt, indirect=indirect,
                                          memory_nanny=owner)
    assert not mem.lent
    return mem, owner.to_numpy


def lent(shape, fmt, indirect=None):
    owner, _ = owned(shape, fmt, indirect)
    if len(shape) == 2 and indirect in (None, (0,), [0]):
        mem = IndirectMemory2D.from_address(owner.address, shape[0], shape[1], fmt)
    else:
        mem = IndirectMemory.from_address(owner.address, shape, fmt, indirect=indirect)
    assert mem.lent
    LENDERS.append(owner)  # the owner outlives the loan (released at the end of the test)
    return mem, owner.to_numpy


LENDERS = []


def rows_of_array(shape, fmt):
    arr = distinct(shape, fmt).copy()
    mem = IndirectMemory2D.view_from_rows(arr)
    return mem, lambda: arr.reshape(shape[0], -1).copy()


def columns_of_array(shape, fmt):
    arr = np.asfortranarray(distinct(shape, fmt))
    mem = IndirectMemory2D.view_from_columns(arr)
    return mem, lambda: arr.T.copy()


def collection(shape, fmt):
    rows = [np.ascontiguousarray(r) for r in distinct(shape, fmt)]
    mem = BufferCollection2D(rows)
    return mem, lambda: np.array(rows).reshape(shape)


def array_view(shape, fmt, indirect):
    big = distinct((shape[0] * 2,) + tuple(shape[1:]), fmt)
    arr = big[::2]  # the leading dimension strided: tables over the source's blocks
    mem = IndirectMemory.view_from_array(arr, indirect=indirect)
    return mem, lambda: arr.copy()


SOURCES = {
    "owned-T**": lambda: owned((5, 6), "d"),
    "owned-T**-int": lambda: owned((4, 7), "i"),
    "owned-T***": lambda: owned((3, 4, 5), "d"),
    "owned-frames": lambda: owned((4, 3, 5), "B", (0,)),
    "owned-inner": lambda: owned((3, 4, 5), "q", (1,)),
    "owned-4d-0-2": lambda: owned((3, 2, 4, 3), "f", (0, 2)),
    "owned-4d-all": lambda: owned((2, 3, 2, 4), "h", (0, 1, 2)),
    "owned-4d-1": lambda: owned((2, 3, 4, 3), "d", (1,)),
    "nanny-T**": lambda: nanny_wrapped((5, 4), "d"),
    "nanny-T***": lambda: nanny_wrapped((3, 3, 4), "i"),
    "nanny-4d-0-2": lambda: nanny_wrapped((2, 3, 3, 4), "d", (0, 2)),
    "lent-T**": lambda: lent((5, 6), "d"),
    "lent-T***": lambda: lent((3, 4, 4), "d"),
    "lent-inner": lambda: lent((3, 4, 5), "i", (1,)),
    "rows": lambda: rows_of_array((5, 6), "d"),
    "rows-image": lambda: rows_of_array((4, 3, 2), "B"),
    "columns": lambda: columns_of_array((6, 5), "d"),
    "collection": lambda: collection((4, 6), "i"),
    "array-view": lambda: array_view((4, 3, 5), "d", (0,)),
    "array-view-T***": lambda: array_view((3, 4, 5), "f", (0, 1)),
}


@pytest.fixture(autouse=True)
def _release_lenders():
    yield
    for owner in LENDERS:
        owner.release()
    LENDERS.clear()
    gc.collect()


# -- 1. random windows against NumPy ------------------------------------------------------------

@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_windows_match_numpy(source, seed):
    rng = random.Random(f"{source}/{seed}")
    mem, truth = SOURCES[source]()
    exports = mem.export_count
    for _ in range(25):
        a = truth()
        key = random_key(rng, mem.shape, mem.suboffsets)
        w = mem[key]
        assert mem.export_count == exports + 1
        check_window(w, mem, a[key], key)
        w.release()
        assert mem.export_count == exports
    mem.release()


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_random_windows_copy_from_and_copy_to(source):
    rng = random.Random(f"copy/{source}")
    mem, truth = SOURCES[source]()
    fmt = mem.format
    for n in range(20):
        key = random_key(rng, mem.shape, mem.suboffsets)
        w = mem[key]
        expected = truth()
        x = distinct(expected[key].shape, fmt, salt=n + 11)
        expected[key] = x
        w.copy_from(x)
        np.testing.assert_array_equal(truth(), expected)  # exactly the window's cells changed
        y = np.zeros_like(x)
        w.copy_to(y)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(mem.to_numpy(), expected)
        # from another window of the same memory (an overlapping copy if they share cells)
        key2 = random_key(rng, mem.shape, mem.suboffsets)
        w2 = mem[key2]
        if w2.shape == w.shape:
            before = truth()
            src = before[key2].copy()
            before[key] = src
            w.copy_from(w2)
            np.testing.assert_array_equal(truth(), before)
        del w, w2
    mem.release()


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_random_windows_of_windows(source):
    rng = random.Random(f"ww/{source}")
    mem, truth = SOURCES[source]()
    for _ in range(15):
        a = truth()
        k1 = random_key(rng, mem.shape, mem.suboffsets)
        w1 = mem[k1]
        k2 = random_key(rng, w1.shape, w1.suboffsets)
        w2 = w1[k2]
        assert mem.export_count == 2 and w1.export_count == 0  # both count on the base
        check_window(w2, w1, a[k1][k2], k2)
        w1.release()  # independent of w2
        assert mem.export_count == 1
        np.testing.assert_array_equal(w2.to_numpy(), a[k1][k2])
        if w2.ndim and all(w2.shape):
            k3 = random_key(rng, w2.shape, w2.suboffsets)
            w3 = w2[k3]
            np.testing.assert_array_equal(w3.to_numpy(), a[k1][k2][k3])
            assert mem.export_count == 2
            del w3
        del w2
        assert mem.export_count == 0
    mem.release()


OVERLAPPING = [  # (destination key, source key) of the same memory, as NumPy's a[k1] = a[k2]
    (np.s_[1:], np.s_[:-1]), (np.s_[:-1], np.s_[1:]), (np.s_[::-1], np.s_[:]),
    (np.s_[:, 1:], np.s_[:, :-1]), (np.s_[:, ::-1], np.s_[:, :]), (np.s_[::2], np.s_[1::2]),
    (np.s_[1:, ::-1], np.s_[:-1, :]), (np.s_[:, 2], np.s_[:, 3]),
    (np.s_[::-1, 1::2], np.s_[:, ::2]),
]


@pytest.mark.parametrize("shape, indirect", [((4, 6), None), ((4, 6, 3), (0,)),
                                             ((4, 6, 3), None), ((4, 6, 3), (1,))])
def test_overlapping_copies_between_windows_of_one_memory(shape, indirect):
    for dst_key, src_key in OVERLAPPING:
        mem, truth = owned(shape, "d", indirect)
        a = truth()
        try:
            dst, src = mem[dst_key], mem[src_key]
        except IndexError:  # an integer on an indirect dimension
            continue
        a[dst_key] = a[src_key].copy()
        dst.copy_from(src)
        np.testing.assert_array_equal(truth(), a, err_msg=str((dst_key, src_key)))
        a[src_key] = a[dst_key].copy()
        dst.copy_to(src)
        np.testing.assert_array_equal(truth(), a, err_msg=str((dst_key, src_key)))
        del dst, src
        mem.release()


def test_memoryview_of_a_window_writes_the_base():
    mem, _ = owned((4, 5), "d")
    a = mem.to_numpy()
    w = mem[3:0:-2, 1::2]  # rows 3 and 1, columns 1 and 3
    with memoryview(w) as mv:
        mv[1, 1] = -1.0
        mv[0, 0] = -2.0
    a[1, 3] = -1.0
    a[3, 1] = -2.0
    np.testing.assert_array_equal(mem.to_numpy(), a)
    assert w.export_count == 0 and mem.export_count == 1


def test_window_types_and_dropped_dimensions():
    m2 = IndirectMemory2D.create_memory(4, 5, "d")
    assert type(m2[1:3]) is IndirectMemory2D
    assert type(m2[:, 3]) is IndirectMemory  # 1-D, indirect
    assert m2[:, 3].indirect == (0,) and m2[:, 3].shape == (4,)
    assert type(m2[..., 2]) is IndirectMemory and m2[..., 2].shape == (4,)
    m3 = IndirectMemory.create_memory((3, 4, 5), "d")
    assert type(m3[1:2]) is IndirectMemory and m3[1:2].ndim == 3
    assert type(m3[:, :, 1]) is IndirectMemory and m3[:, :, 1].indirect == (0, 1)
    inner = IndirectMemory.create_memory((3, 4, 5), "d", indirect=(1,))
    assert type(inner[2]) is IndirectMemory2D and inner[2].shape == (4, 5)
    assert type(inner[-1, 1:3]) is IndirectMemory2D
    assert type(inner[:, :, 0]) is IndirectMemory and inner[:, :, 0].indirect == (1,)
    frames = IndirectMemory.create_memory((3, 4, 5), "B", indirect=(0,))
    assert type(frames[:, 1]) is IndirectMemory2D  # 2-D, only dimension 0 indirect
    assert frames[:, 1].strides == (PTR, 1)
    assert type(frames[:, :, 1]) is IndirectMemory2D  # 2-D too, its columns stepped
    assert frames[:, :, 1].strides == (PTR, 5) and frames[:, :, 1].suboffsets == (1, -1)
    assert type(frames[:, 1:2, 1]) is IndirectMemory2D
    assert type(frames[1:, 1, 1]) is IndirectMemory and frames[1:, 1, 1].indirect == (0,)
    assert m2[...].shape == m2.shape and m2[()].shape == m2.shape


def test_window_keeps_the_base_alive():
    mem = owned((3, 4), "d")[0]
    a = mem.to_numpy()
    ref = weakref.ref(mem)
    w = mem[1:, ::-1]
    del mem
    gc.collect()
    assert ref() is not None
    np.testing.assert_array_equal(w.to_numpy(), a[1:, ::-1])
    ww = w[:, 1]
    del w
    gc.collect()
    assert ref() is not None and ref().export_count == 1
    np.testing.assert_array_equal(ww.to_numpy(), a[1:, ::-1][:, 1])
    del ww
    gc.collect()
    assert ref() is None


def test_window_of_a_readonly_memory_is_readonly():
    mem = IndirectMemory2D.create_memory(3, 3, "d", readonly=True)
    w = mem[1:]
    assert w.readonly
    with pytest.raises(BufferError):
        w.copy_from(np.ones((2, 3)))
    with pytest.raises((TypeError, BufferError)):
        memoryview(w)[0, 0] = 1.0
    with pytest.raises(BufferError):
        with w.pinned("d", writable=True):
            pass


def test_1based_memory_windows():
    # A Numerical-Recipes table: each pointer is one double before its row.
    r, c = 4, 5
    rows = [(ctypes.c_double * (c + 1))(*([-99.0] + [i * 10.0 + j for j in range(c)]))
            for i in range(r)]
    table = (ctypes.c_void_p * r)(*[ctypes.addressof(x) for x in rows])
    mem = IndirectMemory2D.from_address(ctypes.addressof(table), r, c, "d",
                                        memory_nanny=(rows, table), row_offset=8)
    a = np.array([[i * 10.0 + j for j in range(c)] for i in range(r)])
    rng = random.Random(5)
    for _ in range(20):
        key = random_key(rng, mem.shape, mem.suboffsets)
        check_window(mem[key], mem, a[key], key)
    w = mem[1:3, 2:]
    assert w.suboffsets == (8 + 2 * 8, -1)
    with w.pinned("d", row_offset=8) as address:  # rows start one double in
        assert c_rows(address, 2, 3, row_offset=8) == a[1:3, 2:].tolist()
    with w.pinned("d", row_offset=24) as address:  # the window's own table fits as it is
        assert address == mem.address + 8
        assert c_rows(address, 2, 3, row_offset=24) == a[1:3, 2:].tolist()


# -- 2. export accounting -----------------------------------------------------------------------

def test_each_window_is_one_export_of_the_base():
    mem, _ = owned((4, 4), "d")
    windows = [mem[i:] for i in range(4)]
    assert mem.export_count == 4
    for action in (mem.release, lambda: mem.reinterpret_data("f"), mem.make_read_only):
        with pytest.raises(BufferError, match="exported"):
            action()
    mem.reinterpret_data("d")  # the same format changes nothing: allowed
    windows[0].release()
    assert windows[0].released and mem.export_count == 3
    windows[0].release()  # idempotent
    assert mem.export_count == 3
    del windows[1]
    assert mem.export_count == 2
    with windows[1] as w:  # `with` releases the window
        assert w.shape == (2, 4)
    assert mem.export_count == 1
    windows.clear()
    gc.collect()
    assert mem.export_count == 0
    mem.reinterpret_data("f")
    assert mem[1:].format == "f"
    mem.release()


def test_window_in_a_reference_cycle_gives_its_export_back_on_collection():
    mem, _ = owned((3, 3), "d")
    gc.disable()  # no collection before the one below
    try:
        cycle = [mem[1:, 1:]]
        cycle.append(cycle)
        del cycle
        assert mem.export_count == 1
    finally:
        gc.enable()
    gc.collect()
    assert mem.export_count == 0
    mem.release()


def test_window_export_blocks_release_even_with_views_of_the_window():
    mem, _ = owned((3, 3), "d")
    w = mem[:2]
    mv = memoryview(w)
    assert w.export_count == 1 and mem.export_count == 1  # the memoryview is w's export
    with pytest.raises(BufferError):
        w.release()
    ww = w[1:]
    mv.release()
    w.release()
    assert mem.export_count == 1  # ww
    with pytest.raises(BufferError):
        mem.release()
    ww.release()
    mem.release()
    assert mem.released


def test_window_of_window_links_to_the_original_base():
    mem, _ = owned((5, 5), "d")
    w1 = mem[1:]
    w2 = w1[1:, 2:]
    w3 = w2[::-1]
    assert mem.export_count == 3 and w1.export_count == 0 and w2.export_count == 0
    ref = weakref.ref(w1)
    del w1
    gc.collect()
    assert ref() is None  # w2 does not keep w1 alive: it links to mem
    assert mem.export_count == 2
    del w2, w3
    assert mem.export_count == 0


def test_failed_windows_leave_no_export():
    mem, _ = owned((3, 4), "d")
    bad = [(0, 1), (slice(None), 9), (slice(None, None, 0),), (1.5,), ("a",),
           (slice(None),) * 3, (Ellipsis, Ellipsis)]
    for key in bad:
        with pytest.raises((IndexError, TypeError, ValueError)):
            mem[key]
    assert mem.export_count == 0
    mem.release()


def test_windows_of_released_memory_are_refused():
    mem, _ = owned((3, 4), "d")
    w = mem[1:]
    w.release()
    with pytest.raises(ValueError, match="released"):
        w[0:1]
    mem.release()
    with pytest.raises(ValueError, match="released"):
        mem[0:1]
    with pytest.raises(ValueError, match="released"):
        mem[...]


# -- 3. lent memory -----------------------------------------------------------------------------

LENT_KEYS = [np.s_[1:4, ::2], np.s_[::-1, 2:5], np.s_[:, 3], np.s_[4:0:-3, -1:], np.s_[2:3],
             np.s_[:, ::-2]]


def test_lent_windows_read_the_snapshot_after_revocation():
    owner, _ = owned((5, 6), "d")
    a = owner.to_numpy()
    mem = IndirectMemory2D.from_address(owner.address, 5, 6, "d")
    windows = [mem[k] for k in LENT_KEYS]
    views = [memoryview(w) for w in windows]
    ww = windows[0][1:, ::-1]
    assert mem.export_count == len(LENT_KEYS) + 1
    for w in windows:  # before revocation: views that would keep lent addresses are refused
        with pytest.raises(BufferError, match="lent"):
            w.direct_view()
    with pytest.raises(BufferError, match="lent"):
        IndirectMemory2D.view_from_rows(memoryview(windows[4]))
    with pytest.raises(BufferError, match="lent"):
        IndirectMemory2D.view_from_rows(windows[1])
    owner.copy_from(a + 1000)  # the lender changes its data while lent: windows see it
    a = a + 1000
    np.testing.assert_array_equal(windows[0].to_numpy(), a[LENT_KEYS[0]])
    mem.release()  # revoked: views out read the snapshot
    assert mem.released
    owner.copy_from(np.full((5, 6), -7.0))  # the lender scribbles...
    for k, w, v in zip(LENT_KEYS, windows, views):
        np.testing.assert_array_equal(w.to_numpy(), a[k])
        assert v.tolist() == a[k].tolist()
    owner.release()  # ... and frees its memory
    junk = [np.full(30, 3.25) for _ in range(50)]  # reuse the freed chunks
    for k, w, v in zip(LENT_KEYS, windows, views):
        np.testing.assert_array_equal(w.to_numpy(), a[k])
        assert v.tolist() == a[k].tolist()
    np.testing.assert_array_equal(ww.to_numpy(), a[LENT_KEYS[0]][1:, ::-1])
    np.testing.assert_array_equal(windows[1][1:3, ::-1].to_numpy(), a[LENT_KEYS[1]][1:3, ::-1])
    # writes go to the snapshot
    windows[4].copy_from(np.arange(6.0).reshape(1, 6))
    np.testing.assert_array_equal(windows[4].to_numpy(), [np.arange(6.0)])
    np.testing.assert_array_equal(windows[2].to_numpy()[2], 3.0)
    # direct_view of the snapshot is no longer lent memory
    np.testing.assert_array_equal(np.asarray(windows[4].direct_view()), [np.arange(6.0)])
    with pytest.raises(ValueError, match="released"):
        mem[0:1]
    del junk, views


def test_lent_nd_windows_in_a_child_with_perturbed_free():
    out = run_child("""
        import gc
        import numpy as np
        from indirect_buffer import IndirectMemory
        keys = [np.s_[::-1, 1:3], np.s_[1:, :, 2], np.s_[:, ::-2, 1::2], np.s_[2:3, 0:1],
                np.s_[..., ::-1]]
        for indirect in [(0, 1), (1,), (0,)]:
            shape = (3, 4, 5)
            owner = IndirectMemory.create_memory(shape, "d", indirect=indirect)
            a = np.arange(60.0).reshape(shape) * 1.5 + 0.25
            owner.copy_from(a)
            mem = IndirectMemory.from_address(owner.address, shape, "d", indirect=indirect)
            ws = [mem[k] for k in keys]
            mvs = [memoryview(w) for w in ws]
            mem.release()
            owner.copy_from(np.zeros(shape))
            owner.release()
            del owner
            junk = [bytearray(480) for _ in range(100)]
            gc.collect()
            for k, w, mv in zip(keys, ws, mvs):
                assert w.to_numpy().tolist() == a[k].tolist(), (indirect, k)
                assert mv.tolist() == a[k].tolist(), (indirect, k)
                assert w[::-1].to_numpy().tolist() == a[k][::-1].tolist(), (indirect, k)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_empty_windows_of_lent_memory_are_refused_direct_views():
    # An empty slice keeps its start inside the lent table, so that views of it are known to
    # come from lent memory (the `length == 0` start fix).
    owner, _ = owned((3, 4), "d")
    mem = IndirectMemory2D.from_address(owner.address, 3, 4, "d")
    for key in [np.s_[3:], np.s_[5:9], np.s_[-1:-1], np.s_[:, 4:], np.s_[0:3:-1],
                np.s_[2:2, 1:]]:
        w = mem[key]
        assert 0 in w.shape
        with pytest.raises(BufferError, match="lent"):
            w.direct_view()
        with pytest.raises(BufferError, match="lent"):
            IndirectMemory2D.view_from_rows(memoryview(w))
        w.release()
    nd_owner, _ = owned((3, 4, 5), "d", (1,))
    nd = IndirectMemory.from_address(nd_owner.address, (3, 4, 5), "d", indirect=(1,))
    for key in [np.s_[3:], np.s_[2, 4:], np.s_[2, 0:3:-1], np.s_[:, 5:9]]:
        w = nd[key]
        with pytest.raises(BufferError, match="lent"):
            w.direct_view()
        w.release()
    empty_owner = IndirectMemory2D.create_memory(0, 3, "d")
    empty = IndirectMemory2D.from_address(empty_owner.address, 0, 3, "d")
    w = empty[::-1]
    with pytest.raises(BufferError, match="lent"):
        w.direct_view()
    w.release()
    for m in (mem, nd, empty, owner, nd_owner, empty_owner):
        m.release()


def test_pinned_lent_window_pins_the_loan():
    owner, _ = owned((4, 5), "d")
    a = owner.to_numpy()
    mem = IndirectMemory2D.from_address(owner.address, 4, 5, "d")
    w = mem[1:3, 1:]
    with w.pinned("d") as address:
        assert mem.export_count == 2  # the window, and its pin forwarded to the base
        assert c_rows(address, 2, 4) == a[1:3, 1:].tolist()
        with pytest.raises(BufferError, match="pinned"):
            mem.release()  # revoked all the same, and said so
        assert mem.released
        with pytest.raises(BufferError, match="pinned"):
            mem.release()
    mem.release()  # the pin has ended: quiet
    assert mem.export_count == 1
    owner.copy_from(np.zeros((4, 5)))
    np.testing.assert_array_equal(w.to_numpy(), a[1:3, 1:])
    with w.pinned("d") as address:  # the C table is filled again: from the snapshot
        assert c_rows(address, 2, 4) == a[1:3, 1:].tolist()
    owner.release()


def test_hostile_index_revoking_the_loan_of_the_indexed_memory():
    owner, _ = owned((4, 5), "d")
    a = owner.to_numpy()
    mem = IndirectMemory2D.from_address(owner.address, 4, 5, "d")
    with pytest.raises(ValueError, match="released"):
        mem[Hostile(1, mem.release):]
    mem = IndirectMemory2D.from_address(owner.address, 4, 5, "d")
    w = mem[1:]
    # Revoking the base while a window of it is indexed: the new window reads the snapshot.
    try:
        ww = w[Hostile(1, mem.release):, ::-1]
    except (BufferError, ValueError):
        ww = None
    assert mem.released
    owner.copy_from(np.zeros((4, 5)))
    owner.release()
    np.testing.assert_array_equal(w.to_numpy(), a[1:])
    if ww is not None:
        np.testing.assert_array_equal(ww.to_numpy(), a[1:][1:, ::-1])


# -- 4. C tables --------------------------------------------------------------------------------

TABLE_KEYS = [np.s_[:], np.s_[1:4], np.s_[::2], np.s_[::-1], np.s_[4:0:-3], np.s_[:, 2:],
              np.s_[1::2, 3:5], np.s_[::-2, -2:], np.s_[2:3, 1:2], np.s_[:, 5:], np.s_[3:3],
              np.s_[:, 2:3:5]]


@pytest.mark.parametrize("kind", ["owned", "lent", "rows", "collection", "nanny"])
@pytest.mark.parametrize("row_offset", [0, 8])
def test_pinned_window_tables_read_and_write_the_base(kind, row_offset):
    shape = (5, 6)
    mem, truth = {"owned": lambda: owned(shape, "d"), "lent": lambda: lent(shape, "d"),
                  "rows": lambda: rows_of_array(shape, "d"),
                  "collection": lambda: collection(shape, "d"),
                  "nanny": lambda: nanny_wrapped(shape, "d")}[kind]()
    for n, key in enumerate(TABLE_KEYS):
        w = mem[key]
        a = truth()
        r, c = w.shape
        with w.pinned("d", writable=True, row_offset=row_offset) as address:
            assert mem.export_count == 2  # the window and the pin forwarded to the base
            if not mem.lent:  # (lent memory's release() would revoke the loan)
                with pytest.raises(BufferError):
                    mem.release()
            assert c_rows(address, r, c, row_offset=row_offset) == a[key].tolist(), key
            if row_offset == 8 and r and c:  # 1-based: element j of row i is table[i][j + 1]
                p = ctypes.cast(address, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
                assert [p[i][j + 1] for i in range(r) for j in range(c)] == \
                    a[key].ravel().tolist()
            if r and c:
                i, j = r - 1, c // 2
                c_write(address, i, j, -1.0 - n, row_offset=row_offset)
                a[key][i, j] = -1.0 - n  # a[key] of a basic key is a NumPy view
        assert mem.export_count == 1
        np.testing.assert_array_equal(truth(), a)
        w.release()
    assert mem.export_count == 0
    mem.release()


def test_window_table_is_refilled_at_each_pin():
    mem, _ = owned((3, 4), "d")
    a = mem.to_numpy()
    w = mem[:, 1:]
    with w.pinned("d") as address:
        assert c_rows(address, 3, 3) == a[:, 1:].tolist()
    new_row = (ctypes.c_double * 4)(100.0, 101.0, 102.0, 103.0)
    with mem.pinned("d", writable=True) as address:  # C re-points row 1 of the base
        (ctypes.c_void_p * 3).from_address(address)[1] = ctypes.addressof(new_row)
    a[1] = [100.0, 101.0, 102.0, 103.0]
    np.testing.assert_array_equal(w.to_numpy(), a[:, 1:])
    with w.pinned("d") as address:
        assert c_rows(address, 3, 3) == a[:, 1:].tolist()


def test_column_step_window_is_not_a_table():
    # C reads a row's elements back to back: a window whose column step is not 1 cannot be
    # handed out as a T**, whatever row_offset is asked for.
    mem, _ = owned((4, 6), "d")
    handed_out = []
    for key in [np.s_[:, 1::2], np.s_[:, ::-1], np.s_[::2, ::-2], np.s_[:, ::2],
                np.s_[1:3, ::3], np.s_[::-1, 2::2]]:
        w = mem[key]
        for row_offset in (0, 8, 16):
            try:
                with w.pinned("d", row_offset=row_offset):
                    pass
            except BufferError:
                pass
            else:
                handed_out.append((str(key), row_offset))
            assert mem.export_count == 1 and w.export_count == 0
        w.release()
    assert handed_out == []
    one = mem[:, 2:3:4]  # one column: any step is contiguous
    with one.pinned("d") as address:
        assert c_rows(address, 4, 1) == mem.to_numpy()[:, 2:3].tolist()


def test_pinned_window_pins_the_base_and_unpins_it():
    mem, _ = owned((4, 4), "d")
    w = mem[::2, 1:]
    with w.pinned("d") as a1:
        with w.pinned("d") as a2:
            assert mem.export_count == 3 and w.export_count == 2
            assert a1 == a2
        assert mem.export_count == 2
        with pytest.raises(BufferError):
            w.release()
        with pytest.raises(BufferError):
            mem.release()
    assert mem.export_count == 1 and w.export_count == 0
    w.release()
    mem.release()


def test_nd_window_tables():
    m3, _ = owned((3, 4, 5), "d")
    a = m3.to_numpy()
    PP = ctypes.POINTER(ctypes.POINTER(ctypes.c_double))
    for key in [np.s_[1:], np.s_[2:3], np.s_[:0]]:  # the window's own tables are a T***
        w = m3[key]
        s = w.shape
        with w.pinned("d", writable=True) as address:
            t = ctypes.cast(address, ctypes.POINTER(PP))
            got = [[[t[i][j][k] for k in range(s[2])] for j in range(s[1])] for i in range(s[0])]
            assert got == a[key].tolist()
            if s[0]:
                t[0][1][2] = -5.0
                a[key][0, 1, 2] = -5.0
        np.testing.assert_array_equal(m3.to_numpy(), a)
    for key in [np.s_[::2], np.s_[::-1], np.s_[:, 1:], np.s_[:, ::-1], np.s_[:, :, 1:],
                np.s_[1:, 2:, 3:], np.s_[:, :, 1], np.s_[::2, :, 1:]]:
        w = m3[key]
        for row_offset in (0, 8):
            with pytest.raises((BufferError, ValueError)):
                with w.pinned("d", row_offset=row_offset):
                    pass
        assert m3.export_count == 1, key
        w.release()


def test_nd_window_with_stepped_inner_dimension_is_not_a_table():
    # A T*** window whose plane tables or rows are stepped cannot be handed to C as a T***.
    m3, _ = owned((3, 4, 5), "d")
    for key in [np.s_[:, ::2], np.s_[:, :, ::2], np.s_[1:, ::3, ::2]]:
        w = m3[key]
        with pytest.raises((BufferError, ValueError)):
            with w.pinned("d"):
                pass
        assert m3.export_count == 1, key
        w.release()


def test_nd_window_tables_with_offsets():
    # pinned(offsets=...) names the bytes after each pointer per indirect dimension: a window
    # whose columns or rows are cut is handed out as it is when the offsets say so.
    m3, _ = owned((3, 4, 5), "d")
    a = m3.to_numpy()
    w = m3[1:, 2:, 3:]
    assert w.suboffsets == (2 * PTR, 3 * 8, -1)
    with pytest.raises(ValueError, match="offsets"):
        with w.pinned("d", offsets=(0, 0)):
            pass
    with w.pinned("d", offsets=(2 * PTR, 24)) as address:
        s = w.shape
        planes = (ctypes.c_void_p * s[0]).from_address(address)
        got = [[list((ctypes.c_double * s[2]).from_address(
                    ctypes.c_void_p.from_address(planes[i] + 2 * PTR + j * PTR).value + 24))
                for j in range(s[1])] for i in range(s[0])]
        assert got == a[1:, 2:, 3:].tolist()
        assert m3.export_count == 2
    assert m3.export_count == 1


def test_nested_pins_of_one_window_with_different_row_offsets():
    # Each pin hands C a table valid until that pin ends, whatever other pins do meanwhile.
    mem, _ = owned((3, 5), "d")
    a = mem.to_numpy()
    w = mem[:, 2:]
    with w.pinned("d") as a0:
        assert c_rows(a0, 3, 3) == a[:, 2:].tolist()
        with w.pinned("d", row_offset=8) as a8:
            assert c_rows(a8, 3, 3, row_offset=8) == a[:, 2:].tolist()
            assert c_rows(a0, 3, 3) == a[:, 2:].tolist()


def test_window_pin_lets_copies_follow_rows_c_repoints():
    # A window whose own table is a slice of the base's hands C the base's table slots: a row
    # C re-points through it must be followed by copies of the base, as for mem.pinned().
    mem = IndirectMemory2D.create_memory(4, 3, "d")
    a = distinct((4, 3), "d")
    mem.copy_from(a)
    w = mem[1:3]
    new_row = (ctypes.c_double * 3)(100.0, 101.0, 102.0)
    with w.pinned("d", writable=True) as address:
        (ctypes.c_void_p * 2).from_address(address)[0] = ctypes.addressof(new_row)
    a[1] = [100.0, 101.0, 102.0]
    np.testing.assert_array_equal(mem.to_numpy(), a)
    np.testing.assert_array_equal(mem.copy().to_numpy(), a)
    with pytest.raises(BufferError):
        mem.direct_view()  # the rows are no longer back to back
    assert memoryview(mem).tolist() == a.tolist()


def test_pinned_with_offsets_on_stepped_windows():
    # pinned(offsets=...) hands out a table too: it must be the window's rows, or refused.
    run_python("""
        import ctypes
        import numpy as np
        from indirect_buffer import IndirectMemory2D, IndirectMemory
        mem = IndirectMemory2D.create_memory(4, 3, "d")
        a = np.arange(12.0).reshape(4, 3)
        mem.copy_from(a)
        for key in [np.s_[::2], np.s_[::-1], np.s_[1::2], np.s_[:, ::2]]:
            w = mem[key]
            r, c = w.shape
            try:
                with w.pinned("d", offsets=(0,)) as address:
                    t = (ctypes.c_void_p * r).from_address(address)
                    got = [list((ctypes.c_double * c).from_address(t[i])) for i in range(r)]
            except (BufferError, ValueError):
                continue
            assert got == a[key].tolist(), (key, got, a[key].tolist())
        m3 = IndirectMemory.create_memory((4, 2, 3), "d")
        b = np.arange(24.0).reshape(4, 2, 3)
        m3.copy_from(b)
        for key in [np.s_[::2], np.s_[::-1], np.s_[:, ::-1]]:
            w = m3[key]
            s = w.shape
            try:
                with w.pinned("d", offsets=(0, 0)) as address:
                    PP = ctypes.POINTER(ctypes.POINTER(ctypes.c_double))
                    t = ctypes.cast(address, ctypes.POINTER(PP))
                    got = [[[t[i][j][k] for k in range(s[2])] for j in range(s[1])]
                           for i in range(s[0])]
            except (BufferError, ValueError):
                continue
            assert got == b[key].tolist(), (key, got)
    """)


# -- C API and Cython typed tables --------------------------------------------------------------

@pytest.fixture(scope="module")
def capi(c_extension_builder):
    sources = {p.name: p.read_text() for p in (REPO / "tests" / "capi_module").glob("ib_capi_*.c")}
    return c_extension_builder("ib_capi_test", sources)


def test_c_api_hands_out_the_window_table(capi):
    mem, truth = owned((5, 6), "d")
    for n, key in enumerate(TABLE_KEYS):
        w = mem[key]
        a = truth()
        r, c = w.shape
        for row_offset in (0, 8, 16):
            h = capi.acquire(w, b"d", 1, row_offset, 0)
            f = capi.fields(h)
            assert (f["rows"], f["cols"], f["row_offset"]) == (r, c, row_offset)
            assert f["memory"] is w
            assert capi.rows_bytes(h) == [a[key][i].tobytes() for i in range(r)], key
            assert mem.export_count == 2
            with pytest.raises(BufferError):
                mem.release()
            if r and c:
                capi.write_double(h, 0, c - 1, 1000.0 + n)
                a[key][0, c - 1] = 1000.0 + n
            with w.pinned("d", row_offset=row_offset) as address:
                assert address == f["table"]  # the one window table
            capi.release(h)
            assert mem.export_count == 1
        np.testing.assert_array_equal(truth(), a)
        w.release()
    assert mem.export_count == 0


def test_c_api_refuses_windows_that_are_not_tables(capi):
    mem, _ = owned((4, 6), "d")
    m3, _ = owned((3, 4, 5), "d")
    acquired = []
    for name, w in [("mem[:, 3]", mem[:, 3]), ("m3[1:]", m3[1:]), ("m3[:, :, 2]", m3[:, :, 2]),
                    ("m3[1:, 1:, 0]", m3[1:, 1:, 0]), ("mem[:, 1::2]", mem[:, 1::2]),
                    ("mem[:, ::-1]", mem[:, ::-1]), ("mem[::2, ::-2]", mem[::2, ::-2]),
                    ("mem[:, ::2]", mem[:, ::2]), ("mem[1:3, ::3]", mem[1:3, ::3])]:
        for row_offset in (0, 8):
            try:
                capi.release(capi.acquire(w, b"d", 0, row_offset, 0))
            except BufferError:
                continue
            acquired.append((name, row_offset))
    assert acquired == []  # a column step cannot be a T**, nor an N-D window
    del w
    gc.collect()
    assert m3.export_count == 0 and mem.export_count == 0


CYTHON_SOURCE = r'''
# cython: language_level=3
from libc.stdint cimport uintptr_t
from indirect_buffer.buffer_impl cimport IndirectMemory, IndirectMemory2D


def double_table(IndirectMemory mem, bint writable, Py_ssize_t row_offset):
    return <uintptr_t>mem.double_table(writable, row_offset)


def const_double_table(IndirectMemory mem, Py_ssize_t row_offset):
    return <uintptr_t>mem.const_double_table(row_offset)


def checked_table(IndirectMemory mem, fmt, bint writable, Py_ssize_t row_offset):
    return <uintptr_t>mem.checked_table(fmt, writable, row_offset)


def int32_table(IndirectMemory mem, bint writable, Py_ssize_t row_offset):
    return <uintptr_t>mem.int32_table(writable, row_offset)


def double_table3(IndirectMemory mem, bint writable, Py_ssize_t row_offset):
    return <uintptr_t>mem.double_table3(writable, row_offset)


def read_rows(IndirectMemory2D mem, Py_ssize_t row_offset):
    cdef const double* const* t = mem.const_double_table(row_offset)
    cdef Py_ssize_t i, j
    return [[(<const double*>(<const char*>t[i] + row_offset))[j] for j in range(mem.cols())]
            for i in range(mem.rows())]


def scale_without_gil(IndirectMemory2D mem, double factor):
    cdef double** t = mem.double_table(True, 0)
    cdef Py_ssize_t i, j, rows = mem.rows(), cols = mem.cols()
    mem.pin()
    try:
        with nogil:
            for i in range(rows):
                for j in range(cols):
                    t[i][j] *= factor
    finally:
        mem.unpin()
'''


@pytest.fixture(scope="module")
def cy(cython_builder):
    return cython_builder("ib_windows_cy", CYTHON_SOURCE)


def test_cython_typed_tables_of_windows(cy):
    mem, truth = owned((5, 6), "d")
    for key in TABLE_KEYS:
        w = mem[key]
        a = truth()
        r, c = w.shape
        for row_offset in (0, 8):
            assert cy.read_rows(w, row_offset) == a[key].tolist(), (key, row_offset)
            address = cy.double_table(w, True, row_offset)
            assert c_rows(address, r, c, row_offset=row_offset) == a[key].tolist()
            assert cy.const_double_table(w, row_offset) == address
            assert cy.checked_table(w, "d", False, row_offset) == address
            with w.pinned("d", row_offset=row_offset) as pinned_address:
                assert pinned_address == address  # the same window table
        cy.scale_without_gil(w, -2.0)
        a[key] *= -2.0
        np.testing.assert_array_equal(truth(), a)
        assert mem.export_count == 1
        w.release()
    for key in [np.s_[:, ::2], np.s_[:, ::-1], np.s_[1:, 1::3]]:
        w = mem[key]
        for call in (lambda: cy.double_table(w, False, 0), lambda: cy.const_double_table(w, 0),
                     lambda: cy.checked_table(w, "d", False, 0)):
            with pytest.raises(BufferError):
                call()
        w.release()
    with pytest.raises(TypeError):
        cy.int32_table(mem[1:], False, 0)
    ro = IndirectMemory2D.create_memory(3, 3, "d", readonly=True)
    with pytest.raises(BufferError):
        cy.double_table(ro[:, 1:], True, 0)
    assert cy.read_rows(ro[:, 1:], 0) == [[0.0, 0.0]] * 3
    m3, _ = owned((3, 4, 5), "d")
    b = m3.to_numpy()
    assert cy.double_table3(m3[1:], False, 0) == m3.address + PTR
    for key in [np.s_[::2], np.s_[::-1], np.s_[:, 1:], np.s_[:, :, 1:], np.s_[:, ::2]]:
        with pytest.raises((BufferError, ValueError)):
            cy.double_table3(m3[key], False, 0)
    for key in [np.s_[:, :, 1], np.s_[1:, :, 2]]:
        with pytest.raises((BufferError, ValueError)):
            cy.double_table(m3[key], False, 0)
    np.testing.assert_array_equal(m3.to_numpy(), b)
    gc.collect()
    assert mem.export_count == 0 and m3.export_count == 0


# -- 5. errors ----------------------------------------------------------------------------------

class Hostile:
    """An integer whose __index__ runs an action first (e.g. releases the memory indexed)."""

    def __init__(self, value, action):
        self.value = value
        self.action = action
        self.calls = 0

    def __index__(self):
        self.calls += 1
        self.action()
        return self.value


def test_step_zero_names_the_dimension():
    mem, _ = owned((3, 4, 5), "d")
    with pytest.raises(ValueError, match="step.*zero.*dimension 0"):
        mem[::0]
    with pytest.raises(ValueError, match="step.*zero.*dimension 2"):
        mem[:, :, 1:2:0]
    with pytest.raises(ValueError, match="dimension 1"):
        mem[..., 1:3:0, :]
    assert mem.export_count == 0


def test_index_count_and_ellipsis_errors():
    mem, _ = owned((3, 4), "d")
    with pytest.raises(IndexError, match="too many indices"):
        mem[:, :, :]
    with pytest.raises(IndexError, match="too many indices"):
        mem[0:1, ..., 1, 2]
    with pytest.raises(IndexError, match="single ellipsis"):
        mem[..., ...]
    with pytest.raises(IndexError, match="single ellipsis"):
        mem[..., 1, ...]
    assert mem[..., :].shape == (3, 4) and mem[:, ...].shape == (3, 4)
    assert mem[:, :, ...].shape == (3, 4)  # '...' may stand for no dimension
    assert mem[..., 1].shape == (3,)


@pytest.mark.parametrize("item", [1.5, "1", None, [0, 1], np.array([0, 1]), 1j, b"x"])
def test_non_integer_index_is_a_type_error(item):
    mem, _ = owned((3, 4), "d")
    with pytest.raises(TypeError, match="dimension 1"):
        mem[:, item]
    with pytest.raises(TypeError):
        mem[item]
    assert mem.export_count == 0


def test_integer_like_indices():
    mem, _ = owned((3, 4), "d")
    a = mem.to_numpy()
    np.testing.assert_array_equal(mem[:, np.int64(2)].to_numpy(), a[:, 2])
    np.testing.assert_array_equal(mem[:, np.array(3)].to_numpy(), a[:, 3])
    np.testing.assert_array_equal(mem[np.int8(1):, np.uint16(3)].to_numpy(), a[1:, 3])
    h = Hostile(-1, lambda: None)
    np.testing.assert_array_equal(mem[:, h].to_numpy(), a[:, -1])
    assert h.calls == 1
    bounds = [Hostile(2, lambda: None), Hostile(0, lambda: None), Hostile(-1, lambda: None)]
    np.testing.assert_array_equal(mem[slice(*bounds), 1:].to_numpy(), a[2:0:-1, 1:])
    assert [b.calls for b in bounds] == [1, 1, 1]  # each bound converted once
    np.testing.assert_array_equal(mem[np.int64(-1)::np.int64(-2)].to_numpy(), a[-1::-2])


@pytest.mark.parametrize("bound", [1.5, "1", b"1", [1], 1j])
def test_non_integer_slice_bound_is_a_type_error(bound):
    mem, _ = owned((3, 4), "d")
    for key in [np.s_[bound:], np.s_[:, :bound], np.s_[:, ::bound]]:
        with pytest.raises(TypeError, match=r"dimension (0|1)"):
            mem[key]
    with pytest.raises(ValueError, match="zero.*dimension 1"):
        mem[:, ::Hostile(0, lambda: None)]
    assert mem.export_count == 0


@pytest.mark.parametrize("i", [4, 5, 100, -5, -6, -1000])
def test_out_of_range_integer_names_value_and_dimension(i):
    mem, _ = owned((2, 4), "d")
    with pytest.raises(IndexError, match=rf"{i}.*dimension 1.*4|{i}.*4.*dimension 1"):
        mem[:, i]
    m3, _ = owned((3, 4, 2), "d", (0,))
    with pytest.raises(IndexError, match=rf"{i}.*dimension 1"):
        m3[:, i]
    assert mem.export_count == 0 and m3.export_count == 0


def test_huge_integer_index_is_an_index_error():
    # Out of range is out of range, however large (NumPy: IndexError), not an OverflowError.
    mem, _ = owned((2, 4), "d")
    for i in [2 ** 63, -2 ** 63 - 1, 10 ** 30]:
        with pytest.raises(IndexError, match="dimension 1"):
            mem[:, i]
    assert mem.export_count == 0


def test_huge_slice_bounds_and_steps_are_clipped_as_numpy_does():
    mem, _ = owned((4, 5), "d")
    a = mem.to_numpy()
    for key in [np.s_[-2 ** 70:2 ** 70], np.s_[2 ** 70:], np.s_[::2 ** 62],
                np.s_[::-2 ** 62], np.s_[:, 2 ** 64::-1], np.s_[::-2 ** 63],
                np.s_[-10 ** 30:10 ** 30:-1, 10 ** 30:-10 ** 30:-2]]:
        w = mem[key]
        np.testing.assert_array_equal(w.to_numpy(), a[key])
        assert memoryview(w).tolist() == a[key].tolist()
        w.release()
    assert mem.export_count == 0


def test_steps_beyond_ssize_t_work_as_numpy():
    # slice.indices() keeps such a step as it is: a window has one element in that dimension.
    mem, _ = owned((4, 5), "d")
    a = mem.to_numpy()
    for key in [np.s_[::2 ** 63], np.s_[:, ::10 ** 30], np.s_[::-2 ** 64]]:
        w = mem[key]
        np.testing.assert_array_equal(w.to_numpy(), a[key])
        w.release()
    assert mem.export_count == 0


def test_integer_on_an_indirect_dimension_suggests_a_slice():
    mem, _ = owned((3, 4), "d")
    with pytest.raises(IndexError, match=r"dimension 0.*\(2:3\)"):
        mem[2]
    with pytest.raises(IndexError, match=r"\(1:2\)"):
        mem[-2, 1:]
    m3, _ = owned((3, 4, 5), "d")
    with pytest.raises(IndexError, match=r"dimension 1.*\(3:4\)"):
        m3[:, 3]
    with pytest.raises(IndexError, match=r"dimension 0.*\(0:1\)"):
        m3[0, 0]
    inner, _ = owned((3, 4, 5), "d", (1,))
    with pytest.raises(IndexError, match=r"dimension 1"):
        inner[0, 1]
    w = mem[:, 2]  # 1-D, reached through pointers
    with pytest.raises(IndexError, match=r"dimension 0.*\(1:2\)"):
        w[1]
    assert mem.export_count == 1
    # out of range on an indirect dimension: still an IndexError
    with pytest.raises(IndexError):
        mem[7]
    np.testing.assert_array_equal(mem[2:3].to_numpy(), mem.to_numpy()[2:3])


@pytest.mark.parametrize("factory", [
    lambda: IndirectMemory2D.create_memory(3, 4, "d"),
    lambda: IndirectMemory.create_memory((2, 3, 4), "d"),
    lambda: owned((3, 4), "d")[0][1:],
    lambda: BufferCollection2D([bytearray(4), bytearray(4)]),
])
def test_iteration_is_a_type_error(factory):
    mem = factory()
    with pytest.raises(TypeError, match="not iterable"):
        iter(mem)
    with pytest.raises(TypeError):
        list(mem)
    with pytest.raises(TypeError):
        for _ in mem:
            pass
    with pytest.raises(TypeError):
        0.0 in mem  # noqa: B015 (no silent sequence protocol through __getitem__)
    with pytest.raises(TypeError):
        a, b, c = mem
    assert len(mem) == mem.shape[0]


def test_hostile_index_releasing_owned_memory():
    mem, _ = owned((3, 4), "d")
    with pytest.raises(ValueError, match="released"):
        mem[Hostile(1, mem.release):]
    assert mem.released
    mem, _ = owned((3, 4), "d")
    with pytest.raises(ValueError, match="released"):
        mem[:, Hostile(2, mem.release)]
    mem, _ = owned((3, 4), "d")
    with pytest.raises(ValueError, match="released"):
        mem[::Hostile(2, mem.release)]
    mem, _ = owned((3, 4), "d")
    w = mem[1:]

    def refused():
        with pytest.raises(BufferError):
            mem.release()

    h = Hostile(1, refused)
    np.testing.assert_array_equal(mem[h:].to_numpy(), mem.to_numpy()[1:])
    assert h.calls >= 1 and mem.export_count == 1

    def boom():
        raise KeyError("from __index__")

    with pytest.raises(KeyError):
        mem[Hostile(1, boom):]
    assert mem.export_count == 1
    with pytest.raises(ValueError, match="released"):
        w[Hostile(0, w.release):]
    assert w.released and mem.export_count == 0


def test_hostile_index_reshaping_or_locking_the_memory():
    mem, _ = owned((3, 4), "d")
    a = mem.to_numpy()
    with pytest.raises((BufferError, IndexError)):
        mem[:, Hostile(3, lambda: mem.reinterpret_data("f"))]  # the last dimension doubles
    assert mem.format == "f" and mem.shape == (3, 8) and mem.export_count == 0
    mem.reinterpret_data("d")
    with pytest.raises((BufferError, IndexError)):
        mem[1:, 1:Hostile(3, lambda: mem.reinterpret_data("B"))]
    mem.reinterpret_data("d")
    np.testing.assert_array_equal(mem.to_numpy(), a)
    # Same itemsize: the geometry is unchanged, the window has the memory's format now.
    try:
        w = mem[Hostile(1, lambda: mem.reinterpret_data("q")):]
    except BufferError:
        pass
    else:
        assert w.format == mem.format == "q" and w.shape == (2, 4)
        np.testing.assert_array_equal(w.to_numpy(), a[1:].view(np.int64))
        w.release()
    mem.reinterpret_data("d")
    w = mem[Hostile(1, mem.make_read_only):]
    assert mem.readonly and w.readonly  # the window is never more writable than its base
    with pytest.raises(BufferError):
        w.copy_from(np.zeros((2, 4)))
    # The window indexed is reinterpreted while its key is evaluated (it has no export).
    w3 = mem[:, 1:]
    try:
        w4 = w3[:, Hostile(1, lambda: w3.reinterpret_data("f")):]
    except BufferError:
        pass
    else:
        assert w4.format == "f" and w4.shape == (3, 5)
        np.testing.assert_array_equal(w4.to_numpy(), a[:, 1:].view(np.float32)[:, 1:])
        w4.release()
    w3.release()
    # A window made while the key is evaluated counts, and is given back.
    inner = []
    w2 = mem[Hostile(0, lambda: inner.append(mem[2:])):]
    assert mem.export_count == 3
    del inner[:]
    w2.release()
    w.release()
    assert mem.export_count == 0
    mem.release()


def test_hostile_index_on_lent_memory_in_a_child():
    # Revocation and the lender's free while the key is evaluated: raise, never crash.
    out = run_child("""
        import gc
        import numpy as np
        from indirect_buffer import IndirectMemory2D, IndirectMemory

        class Hostile:
            def __init__(self, value, action):
                self.value, self.action = value, action
            def __index__(self):
                self.action()
                return self.value

        def lender():
            owner = IndirectMemory.create_memory((4, 5, 3), "d")
            a = np.arange(60.0).reshape(4, 5, 3) + 0.5
            owner.copy_from(a)
            return owner, a, IndirectMemory.from_address(owner.address, (4, 5, 3), "d")

        def revoke_and_free(mem, owner):
            def act():
                mem.release()
                owner.copy_from(np.zeros((4, 5, 3)))
                owner.release()
                [bytearray(120) for _ in range(50)]
            return act

        owner, a, mem = lender()
        try:
            mem[Hostile(1, revoke_and_free(mem, owner)):]
        except ValueError as exc:
            assert "released" in str(exc)
        else:
            raise AssertionError("no error")

        owner, a, mem = lender()
        w = mem[::-1, 1:]
        try:
            ww = w[:, Hostile(1, revoke_and_free(mem, owner)):, 2]
        except (BufferError, ValueError):
            ww = None
        gc.collect()
        assert w.to_numpy().tolist() == a[::-1, 1:].tolist()
        if ww is not None:
            assert ww.to_numpy().tolist() == a[::-1, 1:][:, 1:, 2].tolist()
            assert memoryview(ww).tolist() == a[::-1, 1:][:, 1:, 2].tolist()
        print("ok")
    """)
    assert out.strip() == "ok"


# -- 6. zero-size windows -----------------------------------------------------------------------

EMPTY_KEYS = [np.s_[2:2], np.s_[5:], np.s_[:, 3:1], np.s_[::-1, 4:4], np.s_[-1:-1:-1],
              np.s_[0:0, 0:0], np.s_[:0, ::-2], np.s_[:, 9:], np.s_[1:3, :0]]


@pytest.mark.parametrize("key", EMPTY_KEYS, ids=[str(k) for k in EMPTY_KEYS])
def test_zero_size_windows(key):
    mem, truth = owned((4, 5), "d")
    a = truth()
    w = mem[key]
    assert 0 in w.shape
    check_window(w, mem, a[key], key)
    assert w.to_numpy().shape == a[key].shape and w.to_numpy().size == 0
    w.copy_from(np.zeros(a[key].shape))
    w.copy_to(np.zeros(a[key].shape))
    np.testing.assert_array_equal(truth(), a)
    r, c = w.shape
    if c <= 1 or w.strides[1] == w.itemsize:
        with w.pinned("d", writable=True) as address:
            assert c_rows(address, r, c) == a[key].tolist()
    else:  # a column step is refused even without elements
        with pytest.raises(BufferError):
            with w.pinned("d", writable=True):
                pass
    assert len(np.asarray(w.direct_view())) == r
    assert w[::-1].shape == w.shape
    assert w[1:, 2:].shape == a[key][1:, 2:].shape
    w.release()
    assert mem.export_count == 0


def test_empty_windows_of_reversed_windows_stay_indirect():
    # An empty slice starts inside its dimension: a reversed row's suboffset (which points at
    # its last element) must not be moved before the row, where it would read as direct.
    mem, _ = owned((3, 5), "d")
    w = mem[:, ::-1]
    for key in [np.s_[:, 5:], np.s_[:, 7:9], np.s_[:, 4:4], np.s_[::-1, -1:-1]]:
        e = w[key]
        assert type(e) is IndirectMemory2D and e.indirect == (0,), key
        assert e.shape == mem.to_numpy()[:, ::-1][key].shape
        assert e.suboffsets[0] >= 0 and e.suboffsets[1] == -1
        with e.pinned("d") as address:
            assert c_rows(address, e.shape[0], 0) == [[]] * e.shape[0]
        e.release()
    m3, _ = owned((2, 3, 4), "d")
    r = m3[:, ::-1, ::-1]
    for key in [np.s_[:, 3:], np.s_[:, :, 4:], np.s_[:, 1:1, :]]:
        e = r[key]
        assert e.indirect == (0, 1) and all(s >= 0 for s in e.suboffsets[:2]), key
        assert e.to_numpy().shape == m3.to_numpy()[:, ::-1, ::-1][key].shape


def test_zero_size_windows_nd_and_of_empty_memory():
    rng = random.Random(9)
    for shape, indirect in [((3, 0, 4), None), ((0, 3, 2), (0,)), ((2, 3, 0), (1,)),
                            ((0, 0), None), ((3, 4, 5), (0, 1)), ((2, 3, 4, 2), (0, 2))]:
        mem, truth = owned(shape, "i", indirect)
        a = truth()
        for _ in range(20):
            key = random_key(rng, shape, mem.suboffsets)
            w = mem[key]
            check_window(w, mem, a[key], key)
            if 0 in w.shape:
                assert w.to_numpy().size == 0
            w.release()
        for d in range(len(shape)):
            key = (slice(None),) * d + (slice(1, 1),)
            w = mem[key]
            assert w.shape[d] == 0 and w.to_numpy().shape == a[key].shape
            w.release()
        assert mem.export_count == 0
        mem.release()


# -- windows whose last dimension is reached through pointers (an integer drops it) -------------

def test_copy_of_a_window_that_drops_trailing_dims():
    mem, _ = owned((4, 5), "d")
    a = mem.to_numpy()
    # 1-D: owned memory has a table before its last dimension, so there is no 1-D copy().
    with pytest.raises(BufferError, match=r"shape \(4,\) and suboffsets \(24,\); use to_numpy"):
        mem[:, 3].copy()
    np.testing.assert_array_equal(mem[:, 3].to_numpy(), a[:, 3])
    m3, _ = owned((3, 4, 5), "d")
    b = m3.to_numpy()
    c = m3[:, :, 2].copy()
    assert type(c) is IndirectMemory2D and c.indirect == (0,)  # plain rows
    np.testing.assert_array_equal(c.to_numpy(), b[:, :, 2])
    inner, _ = owned((3, 4, 5), "d", (1,))
    with pytest.raises(BufferError):
        inner[:, :, 2].copy()  # its only table is before the last dimension's pointers


def test_direct_view_of_a_window_that_drops_trailing_dims():
    # Its elements are reached through pointers: a direct view must hold the elements (where
    # they lie back to back) or be refused; never the pointers themselves.
    mem, _ = owned((4, 1), "d")
    a = mem.to_numpy()
    for key in [np.s_[:, 0], np.s_[1:3, -1]]:
        try:
            view = mem[key].direct_view()
        except BufferError:
            continue
        np.testing.assert_array_equal(np.asarray(view), a[key])
    wide, _ = owned((4, 5), "q")
    w = wide[:, 3]
    with pytest.raises(BufferError):
        w.direct_view()


def test_reinterpret_data_of_a_window_that_drops_trailing_dims():
    # The last dimension's stride is a pointer's: reinterpreting must be refused, not make
    # the window read half pointers (a crash).
    run_python("""
        import numpy as np
        from indirect_buffer import IndirectMemory2D
        for fmt, key, new in [("d", np.s_[:, 3], "f"), ("i", np.s_[0:1, 3], "B"),
                              ("q", np.s_[::-1, 0], "i")]:
            mem = IndirectMemory2D.create_memory(4, 5, fmt)
            mem.copy_from(np.arange(20).reshape(4, 5))
            w = mem[key]
            try:
                w.reinterpret_data(new)
            except (ValueError, BufferError):
                continue
            w.to_numpy()
            memoryview(w).tolist()
    """)
