"""Hardening (issue 8): one regression test per class of attack, each in a fresh interpreter.

1. Python subclasses are refused (no overridable hook can feed a trusted fast path).
2. Code that runs while a collection's rows are released never reaches a half-destroyed
   object: weakrefs are dead, and every other path sees a released object.
3. Foreign buffers whose second dimension is indirect are copied right or refused; NULL
   pointers at any level are a ValueError naming the row.
4. Every PyBUF_* request gets what CPython's own exporters give.
5. The cimport API checks its Python arguments; from_ctype_ptr refuses ctypes subclasses.
6. Cycles through collection rows are collectable whenever the memoryview ones are; the
   NumPy dtype cache behind to_numpy() is bounded.
7. Small inconsistencies: empty sub-array to_numpy, repr of uninitialised objects,
   0-column direct_view, unbalanced unpin().
8. mem.pinned(): the table's address, pinned like an export, for ctypes/cffi calls.

Each test body runs in a child process (see _hostile.isolated): a crash, an ASan report or an
assert swallowed inside a __del__/weakref callback fails the test instead of passing silently.
PEP 688 (Python-level __buffer__) cases need Python 3.12.
"""
import ctypes
import gc
import struct
import sys
import threading
import weakref

import numpy as np
import pytest

import _hostile
from _hostile import PEP688, expect, isolated, take_unraisable
from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

needs_pep688 = pytest.mark.skipif(not PEP688, reason="__buffer__ in Python classes needs 3.12")

HELPERS_PYX = r'''
# cython: language_level=3
from indirect_buffer.buffer_impl cimport IndirectMemory2D

def checked_table(IndirectMemory2D mem, fmt, bint writable):
    return <size_t>mem.checked_table(fmt, writable)

def pin(IndirectMemory2D mem):
    mem.pin()

def unpin(IndirectMemory2D mem):
    mem.unpin()
'''


@pytest.fixture(scope="module")
def helpers_dir(cython_builder):
    return _hostile.build_module(cython_builder, "ib_hardening_helpers", HELPERS_PYX)


@pytest.fixture(scope="module")
def exporter_dir(cython_builder):
    return _hostile.build_module(cython_builder, "ib_hostile_exporter", _hostile.EXPORTER_PYX)


def released_ops(obj):
    """Every way to use obj: on a released (or dying) object each must raise ValueError."""
    return {
        "shape": lambda: obj.shape,
        "format": lambda: obj.format,
        "itemsize": lambda: obj.itemsize,
        "readonly": lambda: obj.readonly,
        "address": lambda: obj.address,
        "len": lambda: len(obj),
        "memoryview": lambda: memoryview(obj),
        "to_numpy": lambda: obj.to_numpy(),
        "copy": lambda: obj.copy(),
        "copy_from": lambda: obj.copy_from(np.zeros((1, 4), dtype=np.uint8)),
        "copy_to": lambda: obj.copy_to(np.zeros((1, 4), dtype=np.uint8)),
        "direct_view": lambda: obj.direct_view(),
        "reinterpret_data": lambda: obj.reinterpret_data("B"),
        "make_read_only": lambda: obj.make_read_only(),
        "as_indirect": lambda: as_indirect(obj),
        "view_from_rows": lambda: IndirectMemory2D.view_from_rows(obj, readonly=True),
    }


def check_unusable(obj, where, results):
    """Record, for each operation on obj, whether it was refused with ValueError."""
    for name, op in released_ops(obj).items():
        try:
            op()
        except ValueError:
            continue
        except BaseException as exc:  # noqa: BLE001 -- recorded, asserted by the caller
            results.append(f"{where}: {name} raised {type(exc).__name__}: {exc}")
        else:
            results.append(f"{where}: {name} worked on a released or dying object")


# =============================================================================================
# 1. Python subclasses are refused
# =============================================================================================

@pytest.mark.parametrize("base", ["IndirectMemory2D", "BufferCollection2D"])
@isolated
def test_python_subclasses_are_refused(base):
    import indirect_buffer
    cls = getattr(indirect_buffer, base)
    with pytest.raises(TypeError):
        class Sub(cls):
            pass
    with pytest.raises(TypeError):
        type("Sub", (cls,), {})
    with pytest.raises(TypeError):
        class Hooked(cls):
            def __buffer__(self, flags):
                return memoryview(b"")
    # The exact types still work on every internal path that used to ask the object.
    m = IndirectMemory2D.create_memory(2, 3, "d")
    m.copy_from(np.arange(6.0).reshape(2, 3))
    c = BufferCollection2D([np.arange(3.0), np.arange(3.0, 6.0)])
    for obj in (m, c, m.copy(), as_indirect(m)):
        assert type(obj) in (IndirectMemory2D, BufferCollection2D)
        np.testing.assert_array_equal(obj.to_numpy(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(np.asarray(m.direct_view()), np.arange(6.0).reshape(2, 3))


# =============================================================================================
# 2. Python code that runs while a collection's rows are released
# =============================================================================================

@isolated
def test_row_released_in_dealloc_cannot_reach_the_dying_collection():
    """A PickleBuffer row whose object dies when the collection gives the row back: its __del__
    (and a weakref callback on it) runs inside the collection's deallocation."""
    import pickle
    seen, problems = [], []

    class Dying(bytearray):
        def __del__(self):
            obj = ref()
            seen.append(obj)
            if obj is not None:  # the bug: a freed object, soon to be used
                check_unusable(obj, "__del__", problems)

    def callback(_):
        obj = ref()
        seen.append(obj)
        if obj is not None:
            check_unusable(obj, "weakref callback", problems)

    for k in range(20):
        data = Dying(b"abcd")
        watch = weakref.ref(data, callback)
        pb = pickle.PickleBuffer(data)
        coll = BufferCollection2D([pb, bytearray(b"efgh")])
        if k % 2:
            pb.release()  # only the collection's Py_buffer holds data
        # else only pb (held by the collection's rows) holds data
        del data, pb
        ref = weakref.ref(coll)
        assert coll.to_numpy().tobytes() == b"abcdefgh"
        del coll  # deallocation gives the rows back: __del__ and callback run now
        gc.collect()
        assert watch() is None
    assert seen == [None] * 40, seen
    assert problems == [], problems


@isolated
def test_row_released_by_release_sees_a_released_collection():
    import pickle
    problems, states = [], []

    class Dying(bytearray):
        def __del__(self):
            states.append(coll.released)
            check_unusable(coll, "__del__ during release()", problems)
            coll.release()  # idempotent, also from inside

    for k in range(2):
        data = Dying(b"abcd")
        pb = pickle.PickleBuffer(data)
        coll = BufferCollection2D([pb])
        if k:
            pb.release()
        del data, pb
        coll.release()
    assert states == [True, True], states
    assert problems == [], problems
    assert coll.released and coll.export_count == 0
    expect(ValueError, lambda: coll.shape, match="released")


@isolated
def test_rows_given_back_by_a_failed_construction_see_an_unusable_collection():
    import pickle
    problems, reentered = [], []

    class Dying(bytearray):
        def __del__(self):
            check_unusable(coll, "__del__ during failed __init__", problems)
            try:
                coll.__init__([bytearray(b"wxyz")])
            except (TypeError, ValueError) as exc:
                reentered.append(type(exc).__name__)
            else:
                reentered.append("initialised")

    coll = BufferCollection2D.__new__(BufferCollection2D)
    # Only the collection's rows tuple will hold the PickleBuffer, and only the PickleBuffer
    # holds data: giving the rows back after the failure frees data and runs __del__.
    rows = (r for r in [pickle.PickleBuffer(Dying(b"abcd")), bytearray(b"too long")])
    with pytest.raises(BufferError, match="row 1 has 8 elements, expected 4"):
        coll.__init__(rows)
    gc.collect()
    assert problems == [], problems
    assert len(reentered) == 1, reentered
    # Whatever the re-entrant __init__ did, the object is consistent now.
    if reentered == ["initialised"]:
        assert coll.shape == (1, 4) and coll.to_numpy().tobytes() == b"wxyz"
    else:
        expect(ValueError, lambda: coll.shape)


@isolated
def test_nanny_and_source_deleted_in_dealloc_cannot_reach_the_memory():
    """IndirectMemory2D's own keepalives (nanny, source of a row view) run __del__ on release."""
    seen, problems = [], []

    class Nanny:
        def __init__(self, table):
            self.table = table

        def __del__(self):
            obj = ref()
            seen.append(obj)
            if obj is not None:
                check_unusable(obj, "nanny __del__", problems)

    P = ctypes.POINTER(ctypes.c_double)
    for how in ("dealloc", "release"):
        t = (P * 2)(*[(ctypes.c_double * 3)() for _ in range(2)])
        m = IndirectMemory2D.from_address(ctypes.addressof(t), 2, 3, "d", memory_nanny=Nanny(t))
        del t
        ref = weakref.ref(m)
        if how == "dealloc":
            del m
        else:
            m.release()
            assert seen[-1] is m and m.released
            seen[-1] = None
            del m
        gc.collect()
    assert seen == [None, None], seen
    assert problems == [], problems


@needs_pep688
@isolated
def test_pep688_release_buffer_cannot_reach_the_dying_collection():
    seen, problems = [], []

    def on_release(exporter):
        obj = ref()
        seen.append(obj)
        if obj is not None:
            check_unusable(obj, "__release_buffer__ in dealloc", problems)

    exp = _hostile.PyExporter(bytearray(b"abcd"), on_release=on_release)
    coll = BufferCollection2D([exp, bytearray(b"efgh")])
    ref = weakref.ref(coll)
    assert coll.to_numpy().tobytes() == b"abcdefgh"
    del coll
    gc.collect()
    assert seen == [None], seen
    assert problems == [], problems
    assert exp.gets == exp.releases == 1

    # release(): the collection already reports released when the hook runs.
    states = []

    def on_release_2(exporter):
        states.append(coll2.released)
        check_unusable(coll2, "__release_buffer__ in release()", problems)

    exp2 = _hostile.PyExporter(bytearray(b"abcd"), on_release=on_release_2)
    coll2 = BufferCollection2D([exp2])
    coll2.release()
    assert states == [True] and problems == [], (states, problems)


@needs_pep688
@isolated
def test_pep688_exporter_reentering_construction():
    """__buffer__ / __release_buffer__ call __init__, release() and copies on the collection
    being built: every outcome is consistent and nothing crashes."""
    outcomes, box = [], []

    def attack(name):
        def hook(exporter, *args):
            if not box:
                return
            coll = box[0]
            for op in (lambda: coll.__init__([bytearray(b"zzzz")]), coll.release,
                       lambda: coll.copy_from(np.zeros((1, 4), dtype=np.uint8)),
                       lambda: memoryview(coll), lambda: coll.to_numpy()):
                try:
                    op()
                    outcomes.append((name, "ok"))
                except (TypeError, ValueError, BufferError) as exc:
                    outcomes.append((name, type(exc).__name__))
        return hook

    for where in ("get", "release"):
        coll = BufferCollection2D.__new__(BufferCollection2D)
        box[:] = [coll]
        kwargs = {"on_get": attack(where)} if where == "get" else {"on_release": attack(where)}
        exp = _hostile.PyExporter(bytearray(b"abcd"), **kwargs)
        try:
            coll.__init__([exp, bytearray(b"efgh")])
        except (TypeError, ValueError, BufferError):
            pass
        # Consistent afterwards: usable with the right data, or refusing with ValueError.
        try:
            shape = coll.shape
        except ValueError:
            pass
        else:
            data = coll.to_numpy().tobytes()
            assert (shape, data) in (((2, 4), b"abcdefgh"), ((1, 4), b"zzzz")), (shape, data)
        try:
            coll.release()  # the "release" hooks run in here
        except (ValueError, BufferError):
            pass
        box.clear()
        del coll
        gc.collect()
        assert exp.gets == exp.releases, (where, exp.gets, exp.releases)
    assert {name for name, _ in outcomes} == {"get", "release"}, outcomes


# =============================================================================================
# 3. Foreign buffers whose second dimension is indirect
# =============================================================================================

FOREIGN_CASES = [
    # (suboffsets, format, itemsize)
    ((0, 0), "d", 8),
    ((-1, 0), "d", 8),
    ((8, 16), "d", 8),
    ((-1, 24), "q", 8),
    ((0, 0), "2d", 16),      # itemsize larger than a pointer
    ((-1, 0), "4q", 32),
    ((0, -1), "2d", 16),     # the classic layout, with a suboffset, as a control
    ((16, -1), "d", 8),
]


def foreign_values(rows, cols, itemsize, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 256, itemsize, dtype=np.uint8).tobytes() for _ in range(cols)]
            for _ in range(rows)]


@pytest.mark.parametrize("sub, fmt, itemsize", FOREIGN_CASES)
@isolated
def test_foreign_buffers_with_indirect_dimensions(exporter_dir, sub, fmt, itemsize):
    mod = _hostile.exporter_module(exporter_dir)
    sub = tuple(sub)
    values = foreign_values(3, 4, itemsize)
    expected = b"".join(b"".join(row) for row in values)
    lay = _hostile.ForeignLayout(mod, values, fmt, itemsize, sub=sub)
    if fmt in ("d", "q"):  # the oracle: CPython's own reading of the same buffer
        mv = memoryview(lay.exporter)
        assert mv.tolist() == [[struct.unpack(fmt, v)[0] for v in row] for row in values]
        mv.release()
    accepted = []

    # copy_from: the right values, or BufferError (never pointer bytes as data)
    m = IndirectMemory2D.create_memory(3, 4, fmt)
    try:
        m.copy_from(lay.exporter)
    except BufferError:
        accepted.append(False)
    else:
        accepted.append(True)
        assert m.to_numpy().tobytes() == expected
    # as_indirect (and to_numpy of its result)
    try:
        a = as_indirect(lay.exporter)
    except BufferError:
        accepted.append(False)
    else:
        accepted.append(True)
        assert a.shape == (3, 4) and a.to_numpy().tobytes() == expected
        del a
    # copy_to: into the foreign buffer, the right bytes in the right places
    src = IndirectMemory2D.create_memory(3, 4, fmt)
    new = foreign_values(3, 4, itemsize, seed=2)
    src.copy_from(np.frombuffer(b"".join(b"".join(r) for r in new), dtype=np.uint8).reshape(
        3, 4 * itemsize).view(np.dtype((np.void, itemsize))), cast=True)
    try:
        src.copy_to(lay.exporter)
    except BufferError:
        accepted.append(False)
        assert lay.read() == values  # nothing written
    else:
        accepted.append(True)
        assert lay.read() == new
    if sub[1] < 0:
        assert accepted == [True, True, True], accepted  # the classic layout must work
    gc.collect()
    assert lay.exporter.gets == lay.exporter.releases


NULL_CASES = [((0, 0), 0), ((0, 0), 1), ((-1, 0), 1), ((8, 16), 0), ((8, 16), 1), ((0, -1), 0)]


@pytest.mark.parametrize("sub, level", NULL_CASES)
@pytest.mark.parametrize("rows, row", [(3, 0), (3, 2), (1, 0)])
@isolated
def test_foreign_null_pointers_at_any_level_name_the_row(exporter_dir, sub, level, rows, row):
    mod = _hostile.exporter_module(exporter_dir)
    sub = tuple(sub)
    values = foreign_values(rows, 4, 8)
    good = _hostile.ForeignLayout(mod, values, "d", 8, sub=sub)
    bad = _hostile.ForeignLayout(mod, values, "d", 8, sub=sub, null=(row, 1, level))
    m = IndirectMemory2D.create_memory(rows, 4, "d")
    ops = {"copy_from": lambda x: m.copy_from(x), "copy_to": lambda x: m.copy_to(x),
           "as_indirect": lambda x: as_indirect(x).to_numpy()}
    for name, op in ops.items():
        try:
            op(good.exporter)
        except BufferError:
            # Refused as a whole: the NULL one may be refused the same way.
            exc = expect((BufferError, ValueError), op, bad.exporter)
        else:
            exc = expect(ValueError, op, bad.exporter)
        if isinstance(exc, ValueError):
            assert _hostile.names_row(str(exc), row) and "NULL" in str(exc), (name, str(exc))
    gc.collect()
    assert bad.exporter.gets == bad.exporter.releases


@pytest.mark.parametrize("row_offset", [0, 8])
@isolated
def test_only_row_repointed_to_null_after_wrapping_is_a_valueerror(row_offset):
    """A one-row table whose row C sets to NULL: the "rows back to back" check must not take
    NULL + row_offset for a valid block (it used to memmove from address row_offset)."""
    P = ctypes.POINTER(ctypes.c_double)
    r = (ctypes.c_double * 3)(1, 2, 3)
    t = (P * 1)(ctypes.cast(r, P))
    # Kept by a nanny: lent memory would export its own copy of t (and refuse direct_view).
    m = IndirectMemory2D.from_ctype_ptr(t, 1, 3 - row_offset // 8, row_offset=row_offset,
                                        memory_nanny=t)
    t[0] = P()
    cols = m.shape[1]
    other = IndirectMemory2D.create_memory(1, cols, "d")
    for func in (m.to_numpy, m.copy, m.direct_view, lambda: m.copy_from(np.zeros((1, cols))),
                 lambda: m.copy_to(np.zeros((1, cols))), lambda: other.copy_from(m),
                 lambda: other.copy_to(m), lambda: as_indirect(m, format="f")):
        exc = expect(ValueError, func)
        assert _hostile.names_row(str(exc), 0) and "NULL" in str(exc), str(exc)


@isolated
def test_testbuffer_pil_and_fortran_exporters_as_sources_and_destinations():
    import _testbuffer as tb
    items = [float(k) for k in range(12)]
    made = {
        "PIL": tb.ndarray(items, shape=[3, 4], format="d", flags=tb.ND_PIL | tb.ND_WRITABLE),
        "PIL reversed": tb.ndarray(items + items, shape=[6, 4], format="d",
                                   flags=tb.ND_PIL | tb.ND_WRITABLE)[::-2, :],
        "PIL strided columns": tb.ndarray(items * 2, shape=[3, 8], format="d",
                                          flags=tb.ND_PIL | tb.ND_WRITABLE)[:, ::2],
        "PIL negative columns": tb.ndarray(items, shape=[3, 4], format="d",
                                           flags=tb.ND_PIL | tb.ND_WRITABLE)[:, ::-1],
        "FORTRAN": tb.ndarray(items, shape=[3, 4], format="d",
                              flags=tb.ND_FORTRAN | tb.ND_WRITABLE),
        "FORTRAN strided": tb.ndarray(items * 2, shape=[3, 8], format="d",
                                      flags=tb.ND_FORTRAN | tb.ND_WRITABLE)[:, 1::2],
    }
    for name, nd in made.items():
        want = nd.tolist()
        m = IndirectMemory2D.create_memory(3, 4, "d")
        m.copy_from(nd)
        assert m.to_numpy().tolist() == want, name
        try:
            assert as_indirect(nd).to_numpy().tolist() == want, name
        except BufferError:
            assert "PIL" in name, name  # NumPy cannot help with suboffsets
        src = np.arange(100.0, 112.0).reshape(3, 4)
        m.copy_from(src)
        m.copy_to(nd)
        assert nd.tolist() == src.tolist(), name
        # and through a re-export with every request that can describe it
        for flags in (tb.PyBUF_FULL_RO, tb.PyBUF_RECORDS_RO, tb.PyBUF_FULL):
            try:
                re = tb.ndarray(nd, getbuf=flags)
            except BufferError:
                continue
            out = IndirectMemory2D.create_memory(3, 4, "d")
            out.copy_from(re)
            assert out.to_numpy().tolist() == src.tolist(), (name, flags)


# =============================================================================================
# 4. Every request-flag combination
# =============================================================================================

SHAPES = [[2, 3], [1, 3], [3, 1], [1, 1], [0, 3], [3, 0], [0, 0]]


@pytest.mark.parametrize("kind", _hostile.EXPORTER_KINDS)
@isolated
def test_every_request_flag_combination(kind):
    bad = []
    for rows, cols in SHAPES:
        for fmt in ("d", "B", "i"):
            for readonly in (False, True):
                m, pairs = _hostile.exporters_of(kind, rows, cols, fmt, readonly)
                for what, ours, oracle in pairs:
                    for flags, got, want in _hostile.compare_answers(ours, oracle):
                        bad.append(f"{kind} {rows}x{cols} {fmt} readonly={readonly} {what} "
                                   f"{flags}: got {got}, CPython gives {want}")
                del pairs
                gc.collect()
                assert m.export_count == 0, (kind, rows, cols, m.export_count)
    assert not bad, f"{len(bad)} mismatches, e.g.\n" + "\n".join(bad[:20])


@isolated
def test_direct_exporter_simple_requests_read_as_bytes():
    import hashlib
    import _testbuffer as tb
    m = IndirectMemory2D.create_memory(3, 5, "d")
    m.copy_from(np.arange(15.0).reshape(3, 5))
    e = m.direct_view().obj
    raw = np.arange(15.0).tobytes()
    assert hashlib.sha256(e).hexdigest() == hashlib.sha256(raw).hexdigest()
    nd = tb.ndarray(e, getbuf=tb.PyBUF_SIMPLE)
    assert (nd.ndim, nd.shape, nd.strides, nd.nbytes) == (1, (), (), len(raw))
    assert nd.tobytes() == raw
    del nd
    assert bytes(e) == raw
    assert m.export_count == 0
    # read-only memory: a SIMPLE request works, a WRITABLE one is refused
    m.make_read_only()
    assert hashlib.md5(e).hexdigest() == hashlib.md5(raw).hexdigest()
    expect(BufferError, tb.ndarray, e, getbuf=tb.PyBUF_WRITABLE)
    assert m.export_count == 0


# =============================================================================================
# 5. The cimport API checks its Python arguments; ctypes subclasses
# =============================================================================================

@isolated
def test_checked_table_refuses_formats_that_are_not_str_or_bytes(helpers_dir):
    mod = _hostile.load_module("ib_hardening_helpers", helpers_dir)
    m = IndirectMemory2D.create_memory(2, 3, "d")

    class S(str):
        pass

    for bad in (("d",), 8, bytearray(b"d"), memoryview(b"d"), 1.5, ["d"]):
        expect(TypeError, mod.checked_table, m, bad, False)
    for good in ("d", b"d", S("d"), "<d" if sys.byteorder == "little" else ">d"):
        assert mod.checked_table(m, good, True) == m.address, good
    expect(TypeError, mod.checked_table, m, "i", False)
    m.make_read_only()
    expect(BufferError, mod.checked_table, m, "d", True)
    m.release()
    expect(ValueError, mod.checked_table, m, "d", False)


@isolated
def test_from_ctype_ptr_refuses_ctypes_subclasses():
    P = ctypes.POINTER(ctypes.c_double)
    rows = [(ctypes.c_double * 3)(1, 2, 3), (ctypes.c_double * 3)(4, 5, 6)]
    Table = P * 2

    class Liar(Table):
        def __len__(self):
            return 1000

    class Honest(Table):
        pass

    class PP(ctypes.POINTER(P)):
        _type_ = P  # ctypes wants it in the class itself

    for cls in (Liar, Honest):
        t = cls(*[ctypes.cast(r, P) for r in rows])
        expect(TypeError, IndirectMemory2D.from_ctype_ptr, t, 1000, 3)
        expect(TypeError, IndirectMemory2D.from_ctype_ptr, t, 2, 3)
    t = Table(*[ctypes.cast(r, P) for r in rows])
    pp = ctypes.cast(t, PP)
    expect(TypeError, IndirectMemory2D.from_ctype_ptr, pp, 2, 3)
    # The plain types still work, and the length check uses the real ctypes size.
    m = IndirectMemory2D.from_ctype_ptr(t, 2, 3)
    assert m.to_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]
    expect(BufferError, IndirectMemory2D.from_ctype_ptr, t, 3, 3, match="2 entries")
    m2 = IndirectMemory2D.from_ctype_ptr(ctypes.cast(t, ctypes.POINTER(P)), 2, 3)
    assert m2.to_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]


# =============================================================================================
# 6. Leaks: cycles through rows whose Py_buffer.obj is not the row; the dtype cache
# =============================================================================================

def cycle_is_collected(make_row, wrap):
    """Build owner -> wrap([row]) -> row -> owner, drop it, collect: was owner freed?"""
    class Owner:
        pass

    owner = Owner()
    row = make_row(owner)
    owner.wrapped = wrap(row)
    ref = weakref.ref(owner)
    del owner, row
    gc.collect()
    gc.collect()
    return ref() is None


def assert_collected_like_memoryview(make_row):
    """The cycle through a BufferCollection2D's row is collected, as CPython collects the same
    cycle through a memoryview (the oracle)."""
    wraps = {"memoryview": lambda row: memoryview(row),
             "BufferCollection2D": lambda row: BufferCollection2D([row])}
    got = {name: cycle_is_collected(make_row, wrap) for name, wrap in wraps.items()}
    assert got["memoryview"], "the oracle: CPython collects the memoryview cycle"
    assert got == {"memoryview": True, "BufferCollection2D": True}, got


@isolated
def test_cycle_through_a_picklebuffer_row_is_collectable():
    import pickle

    class Data(bytearray):
        pass

    def make_row(owner):
        data = Data(b"abcd")
        data.owner = owner  # the row's underlying object refers back to the owner
        return pickle.PickleBuffer(data)

    assert_collected_like_memoryview(make_row)


@needs_pep688
@isolated
def test_cycle_through_a_pep688_row_is_collectable():
    def make_row(owner):
        exp = _hostile.PyExporter(bytearray(b"abcd"))
        exp.owner = owner
        return exp

    assert_collected_like_memoryview(make_row)


@isolated
def test_to_numpy_of_many_foreign_formats_stays_bounded():
    import tracemalloc

    def convert(k):
        # Formats from foreign exporters: NumPy structured rows, each a new field name.
        a = np.zeros((1, 2), dtype=[(f"field_{k}", "<i4")])
        return IndirectMemory2D.view_from_rows(a).to_numpy()

    for k in range(500):  # warm up every cache that is meant to be bounded
        convert(k)
    gc.collect()
    tracemalloc.start()
    for k in range(500, 3500):
        assert convert(k).dtype.names == (f"field_{k}",)
    gc.collect()
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # An unbounded cache keeps ~3000 dtypes (>= 500 KB); a bounded one stays near zero.
    assert grown < 200_000, f"{grown} bytes kept by 3000 to_numpy() calls"


# =============================================================================================
# 7. Smaller inconsistencies
# =============================================================================================

@isolated
def test_to_numpy_of_empty_memory_with_a_sub_array_format():
    for rows, cols in [(0, 3), (2, 0), (0, 0), (2, 3)]:
        m = IndirectMemory2D.create_memory(rows, cols, "2i")
        out = m.to_numpy()
        want = np.zeros((rows, cols), dtype=np.dtype((np.intc, (2,))))
        assert out.shape == want.shape == (rows, cols, 2), (rows, cols, out.shape)
        assert out.dtype == np.intc
        assert out.tobytes() == want.tobytes()


@isolated
def test_repr_of_uninitialised_objects():
    for cls in (BufferCollection2D, IndirectMemory2D):
        obj = cls.__new__(cls)
        text = repr(obj)
        assert "uninitialised" in text and cls.__name__ in text, text
        str(obj)
        expect(ValueError, lambda: obj.shape)
    coll = BufferCollection2D.__new__(BufferCollection2D)
    with pytest.raises(BufferError):
        coll.__init__([b"abc", b"de"])
    assert "uninitialised" in repr(coll) or "released" in repr(coll), repr(coll)


@isolated
def test_direct_view_of_zero_column_memory():
    for rows in (0, 1, 4):
        for make in (lambda: IndirectMemory2D.create_memory(rows, 0, "d"),
                     lambda: IndirectMemory2D.view_from_rows(np.zeros((rows, 0)))):
            m = make()
            dv = m.direct_view()
            assert dv.shape == (rows, 0) and dv.tobytes() == b"" and dv.format == "d"
            assert np.asarray(dv).shape == (rows, 0)
            assert m.export_count == 1
            dv.release()
            assert m.export_count == 0
            m.release()


@isolated
def test_unbalanced_unpin_is_reported_and_leaves_the_count(helpers_dir):
    mod = _hostile.load_module("ib_hardening_helpers", helpers_dir)
    m = IndirectMemory2D.create_memory(2, 2, "d")
    mod.unpin(m)
    assert m.export_count == 0
    assert len(take_unraisable()) == 1
    mod.pin(m)
    view = memoryview(m)
    assert m.export_count == 2
    mod.unpin(m)
    mod.unpin(m)  # one too many: the view's export must stay counted
    assert m.export_count == 1
    assert len(take_unraisable()) == 1
    expect(BufferError, m.release)
    view.release()
    assert m.export_count == 0
    m.release()


# =============================================================================================
# 8. pinned(): the table for ctypes/cffi calls, pinned like an export
# =============================================================================================

@isolated
def test_pinned_counts_as_an_export_until_exit():
    for readonly in (False, True):
        m = IndirectMemory2D.create_memory(2, 3, "d", readonly=readonly)
        with m.pinned() as address:
            assert isinstance(address, int) and address == m.address
            assert m.export_count == 1
            expect(BufferError, m.release)
            expect(BufferError, m.reinterpret_data, "B")
            if not readonly:
                expect(BufferError, m.make_read_only)
            with m.pinned(format="d") as again:  # a second pin of the same memory
                assert again == address and m.export_count == 2
            assert m.export_count == 1 and not m.released and m.readonly == readonly
        assert m.export_count == 0
        m.reinterpret_data("B")
        m.reinterpret_data("d")
        m.make_read_only()
        m.release()
        assert m.released
    # an exception inside the block unpins too
    m = IndirectMemory2D.create_memory(2, 3, "d")
    with pytest.raises(KeyError):
        with m.pinned():
            raise KeyError("x")
    assert m.export_count == 0
    m.release()


@isolated
def test_pinned_is_respected_by_other_threads():
    m = IndirectMemory2D.create_memory(4, 4, "d")
    results = []

    def other():
        for op in (m.release, lambda: m.reinterpret_data("f"), m.make_read_only):
            try:
                op()
                results.append("worked")
            except BufferError:
                results.append("BufferError")

    with m.pinned(writable=True):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert results == ["BufferError"] * 3, results
        assert not m.released
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert results[3] == "worked" and m.released


@isolated
def test_pinned_entry_checks():
    m = IndirectMemory2D.create_memory(2, 3, "d")
    bad_format = "i"
    for fmt, ok in [("d", True), (b"d", True), ("=d", True), (bad_format, False),
                    ("f", False), ("2d", False), ("q", False)]:
        if ok:
            with m.pinned(format=fmt) as a:
                assert a == m.address
        else:
            with pytest.raises(TypeError):
                with m.pinned(format=fmt):
                    pass
        assert m.export_count == 0
    if sys.byteorder == "little":
        with m.pinned(format="<d"):
            pass
    if struct.calcsize("l") == struct.calcsize("q") == 8:  # LP64: 'l' and 'q' are one type
        q = IndirectMemory2D.create_memory(1, 1, "q")
        with q.pinned(format="l"):
            assert q.export_count == 1
    ro = IndirectMemory2D.create_memory(2, 3, "d", readonly=True)
    with pytest.raises(BufferError):
        with ro.pinned(writable=True):
            pass
    with ro.pinned(writable=False):
        pass
    with pytest.raises(ValueError):
        with m.pinned(row_offset=8):
            pass
    # memory with a row offset (1-based rows): the caller must say so
    P = ctypes.POINTER(ctypes.c_double)
    rows = [(ctypes.c_double * 4)(0, 1, 2, 3) for _ in range(2)]
    t = (P * 2)(*[ctypes.cast(r, P) for r in rows])
    one = IndirectMemory2D.from_address(ctypes.addressof(t), 2, 3, "d", memory_nanny=(t, rows),
                                        row_offset=8)
    with pytest.raises(ValueError):
        with one.pinned():
            pass
    with one.pinned(row_offset=8) as a:
        assert a == ctypes.addressof(t)
    for obj in (m, ro, one):
        assert obj.export_count == 0
    m.release()
    with pytest.raises(ValueError):
        with m.pinned():
            pass
    assert m.export_count == 0


@isolated
def test_pinned_context_reuse_and_garbage_collection():
    m = IndirectMemory2D.create_memory(2, 2, "d")
    p = m.pinned()
    p.__enter__()
    expect(ValueError, p.__enter__)  # entered twice without exit
    assert m.export_count == 1
    p.__exit__(None, None, None)
    assert m.export_count == 0
    # dropped while entered: unpinned when collected
    p = m.pinned()
    p.__enter__()
    assert m.export_count == 1
    del p
    gc.collect()
    assert m.export_count == 0
    m.release()
    # in a reference cycle with the memory itself
    m = IndirectMemory2D.create_memory(2, 2, "d")
    ref = weakref.ref(m)

    class Holder:
        pass

    h = Holder()
    h.self, h.mem, h.pin = h, m, m.pinned()
    h.pin.__enter__()
    del h, m
    gc.collect()
    assert ref() is None


@isolated
def test_ctypes_call_inside_pinned_cannot_race_release():
    """ctypes drops the GIL for every call: another thread looping on release() must get
    BufferError until the block ends, and the C calls must read live memory."""
    libc = ctypes.CDLL(None)
    memcpy = libc.memcpy
    memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    memcpy.restype = ctypes.c_void_p
    rows, row_bytes = 64, 4096
    src = np.arange(rows * row_bytes // 8, dtype=np.float64).reshape(rows, -1)
    out = ctypes.create_string_buffer(row_bytes)
    for attempt in range(3):
        m = IndirectMemory2D.create_memory(rows, row_bytes // 8, "d")
        m.copy_from(src)
        refused, stop = [0], threading.Event()

        def attacker():
            while not stop.is_set():
                try:
                    m.release()
                    return
                except BufferError:
                    refused[0] += 1

        t = threading.Thread(target=attacker)
        with m.pinned() as address:
            t.start()
            table = (ctypes.c_void_p * rows).from_address(address)
            k = 0
            while refused[0] < 50 and k < 200_000:
                memcpy(out, table[k % rows], row_bytes)
                assert out.raw == src[k % rows].tobytes()
                assert not m.released
                k += 1
        t.join(timeout=60)
        stop.set()
        assert not t.is_alive() and m.released
        if refused[0] > 0:
            break
    assert refused[0] > 0, "the other thread never tried to release"


# =============================================================================================
# Findings of the second attack (each reproduced as it was found, then the class checked)
# =============================================================================================

@isolated
def test_formats_with_a_nul_character_are_refused(helpers_dir):
    # C reads a format up to its first NUL: b"q\x00b" must not pass as "q" (or as "b").
    mod = _hostile.load_module("ib_hardening_helpers", helpers_dir)
    m = IndirectMemory2D.create_memory(2, 3, "b")
    for bad in (b"q\x00b", b"b\x00", "b\x00", "q\x00b", b"@b\x00"):
        exc = expect((TypeError, ValueError), mod.checked_table, m, bad, False)
        with pytest.raises((TypeError, ValueError)):
            with m.pinned(bad):
                pass
        assert "NUL" in str(exc) or "format" in str(exc)
    for bad in ("d\x00", b"i\x00i"):
        expect(ValueError, IndirectMemory2D.create_memory, 1, 1, bad)
        expect(ValueError, m.reinterpret_data, bad)
    assert m.export_count == 0


@pytest.mark.parametrize("how", ["view_from_rows", "collection", "view_from_array",
                                 "copy_from", "copy_to", "as_indirect", "structured"])
@isolated
def test_elements_holding_python_objects_are_never_copied_as_bytes(how):
    from indirect_buffer import IndirectMemory
    a = np.empty((2, 2), dtype=object)
    a[...] = [[bytearray(10), "x"], [None, 3]]
    if how == "structured":  # an object field inside a structure; a field *named* O is fine
        a = np.zeros((2, 2), dtype=[("Oname", "<i4"), ("obj", "O")])
        named = np.zeros((2, 2), dtype=[("Oscar", "<i4")])
        assert IndirectMemory2D.view_from_rows(named).shape == (2, 2)
    # (Only an object of our own: the refcounts of None, small ints and strings move anyway.)
    before = sys.getrefcount(a[0, 0]) if a.dtype == object else None
    for _ in range(2):  # the second time after NumPy's dtype may have been learned
        with pytest.raises(BufferError, match="Python objects"):
            if how in ("view_from_rows", "structured"):
                IndirectMemory2D.view_from_rows(a)
            elif how == "collection":
                BufferCollection2D([a[0], a[1]])
            elif how == "view_from_array":
                IndirectMemory.view_from_array(a[None])
            elif how == "copy_from":
                IndirectMemory2D.create_memory(2, 2, "q").copy_from(a, cast=True)
            elif how == "copy_to":
                m = IndirectMemory2D.create_memory(2, 2, "q")
                m.copy_from(np.full((2, 2), 0x4141414141414141))
                m.copy_to(a, cast=True)
            else:
                as_indirect(a)
    if before is not None:
        assert sys.getrefcount(a[0, 0]) == before


@isolated
def test_from_ctype_ptr_reads_the_table_after_running_element_code():
    # The element type's __init__ (run to learn its format) re-points the table pointer.
    armed = []

    class EvilInt(ctypes.c_int):
        def __init__(self, *args):
            ctypes.c_int.__init__(self, *args)
            if armed:
                p.contents = ctypes.POINTER(EvilInt)()  # frees the row table

    row = ctypes.POINTER(EvilInt)((EvilInt * 3)(1, 2, 3))
    p = ctypes.POINTER(ctypes.POINTER(EvilInt))(row)
    del row
    armed.append(1)
    # Either the table as it is after the re-pointing (NULL: refused) or a table kept alive.
    try:
        m = IndirectMemory2D.from_ctype_ptr(p, 1, 3)
    except ValueError as exc:
        assert "NULL" in str(exc)
    else:
        assert memoryview(m).tolist() == [[1, 2, 3]]
    armed.clear()


@pytest.mark.parametrize("which", ["2d", "nd"])
@isolated
def test_from_address_keeps_what_a_lying_ctypes_subclass_hides(which):
    from indirect_buffer import IndirectMemory
    IntP = ctypes.POINTER(ctypes.c_int)

    class LyingPP(ctypes.POINTER(IntP)):
        _type_ = IntP
        _objects = None  # hides ctypes' own references from a plain getattr

        @property
        def value(self):
            return 0

    row = IntP((ctypes.c_int * 3)(1, 2, 3))
    p = LyingPP(row)
    del row
    m = (IndirectMemory2D.from_address(p, 1, 3, "i") if which == "2d" else
         IndirectMemory.from_address(p, (1, 3), "i"))
    p.contents = IntP()  # re-pointing drops ctypes' own reference to the table
    gc.collect()
    assert m.to_numpy().tolist() == [[1, 2, 3]]

    class LyingVoid(ctypes.c_void_p):
        @property
        def value(self):  # the pointer read from the object's storage, not from here
            return 16

    buf = (ctypes.c_int * 3)(4, 5, 6)
    tab = (ctypes.c_void_p * 1)(ctypes.addressof(buf))
    q = LyingVoid(ctypes.addressof(tab))
    m2 = IndirectMemory2D.from_address(q, 1, 3, "i", memory_nanny=(buf, tab))
    assert m2.to_numpy().tolist() == [[4, 5, 6]]


@isolated
def test_the_numpy_dtype_cache_cannot_be_poisoned():
    m = IndirectMemory2D.create_memory(1, 2, "q")
    m.copy_from(np.array([[0x4141414141414141, 0x10]]))
    expected = m.to_numpy().tolist()
    poisoned = 0
    for d in gc.get_objects():
        # The cache behind to_numpy(): its values name the dtype they hold.
        if isinstance(d, dict) and any(type(v).__name__ in ("_DtypeRecord", "Int64DType")
                                       for v in list(d.values())):
            records = list(d.values())
            for k in list(d):
                d[k] = np.dtype(object)  # a forged value
            d[b"q"] = next((r for r in records if type(r).__name__ == "_DtypeRecord"),
                           np.dtype(object))  # another format's genuine record
            poisoned += 1
    assert poisoned
    assert m.to_numpy().tolist() == expected
    assert m.to_numpy().dtype == np.dtype("q")


@isolated
def test_as_indirect_converts_pil_buffers_whatever_their_rows():
    import _testbuffer as tb
    pil = tb.ndarray(list(range(6)), shape=[2, 3], format="i", flags=tb.ND_PIL)
    want = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert as_indirect(pil, format="d").to_numpy().tolist() == want
    assert as_indirect(pil[:, ::-1], format="d").to_numpy().tolist() == [r[::-1] for r in want]
    pil3 = tb.ndarray(list(range(12)), shape=[2, 2, 3], format="i", flags=tb.ND_PIL)
    got = as_indirect(pil3, format="d", indirect=(0,)).to_numpy()
    assert got.tolist() == np.arange(12.0).reshape(2, 2, 3).tolist()


@isolated
def test_zero_itemsize_dtypes_never_reach_the_numpy_fast_path():
    a = np.zeros((2, 3), dtype="V0")
    for _ in range(3):
        expect(BufferError, BufferCollection2D, [a[0], a[1]])
        expect(BufferError, IndirectMemory2D.view_from_rows, a)


@isolated
def test_warn_on_write_arrays_are_read_only_as_numpy_exports_them():
    import warnings
    src = np.zeros(3)
    x = np.broadcast_arrays(src, np.zeros((2, 3)))[0]
    oracle = memoryview(x).readonly
    for _ in range(3):
        if oracle:
            expect(BufferError, IndirectMemory2D.view_from_rows, x)
            assert IndirectMemory2D.view_from_rows(x, readonly=True).readonly
            assert BufferCollection2D([x[0], x[1]]).readonly
        else:  # a NumPy whose broadcast results are plainly writable
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                IndirectMemory2D.view_from_rows(x)
    assert src.tolist() == [0.0, 0.0, 0.0]


@needs_pep688
@isolated
def test_a_python_class_posing_as_numpy_ndarray_is_not_read_directly():
    import types

    class FakeArray:
        __slots__ = ("a", "b", "c", "d", "e", "f", "g")

        def __buffer__(self, flags):
            return memoryview(bytearray(8)).cast("d")

    real_numpy = sys.modules["numpy"]
    sys.modules["numpy"] = types.SimpleNamespace(ndarray=FakeArray, zeros=real_numpy.zeros)
    try:
        for _ in range(3):
            c = BufferCollection2D([FakeArray(), FakeArray()])
            # (memoryview, not to_numpy(): that would import the stand-in "numpy")
            assert c.shape == (2, 1) and memoryview(c).tolist() == [[0.0], [0.0]]
    finally:
        sys.modules["numpy"] = real_numpy


# =============================================================================================
# Findings of the third attack (N-D memory, the NumPy fast path, ctypes)
# =============================================================================================

@isolated
def test_null_tables_before_an_empty_dimension_are_refused():
    # memoryview's tolist() follows the pointers that index the dimensions before an empty
    # one: those must not be NULL; the ones only an element would be reached through may be.
    from indirect_buffer import IndirectMemory
    root = (ctypes.c_void_p * 2)(None, None)
    for shape in ((2, 3, 1), (2, 3, 0), (2, 3, 0, 5)):
        with pytest.raises(ValueError, match="row 0 of the pointer table is NULL"):
            IndirectMemory.from_address(ctypes.addressof(root), shape, "d")
    for shape in ((2, 0, 4), (0, 3, 4)):
        m = IndirectMemory.from_address(ctypes.addressof(root), shape, "d")
        assert memoryview(m).tolist() == np.zeros(shape).tolist()
    level1 = (ctypes.c_void_p * 3)(None, None, None)
    top = (ctypes.c_void_p * 2)(ctypes.addressof(level1), ctypes.addressof(level1))
    m = IndirectMemory.from_address(ctypes.addressof(top), (2, 3, 0), "d",
                                    memory_nanny=(level1, top))
    assert memoryview(m).tolist() == [[[], [], []], [[], [], []]]
    with pytest.raises(ValueError, match=r"element \(0, 0\) of the memory is behind a NULL"):
        IndirectMemory.from_address(ctypes.addressof(top), (2, 3, 1), "d")


@isolated
def test_the_numpy_fast_path_holds_what_it_learned_from_c():
    from indirect_buffer import IndirectMemory
    a = np.arange(6.0).reshape(2, 3).astype(">f8")
    for _ in range(2):
        IndirectMemory.view_from_array(a)
    # Empty every Python container the garbage collector knows of that holds dtypes and
    # bytes: nothing the fast path relies on may be among them.
    for o in gc.get_objects():
        if type(o) is list and o and all(type(t) is tuple and any(
                isinstance(x, np.dtype) for x in t) for t in o):
            o.clear()
    gc.collect()
    for _ in range(50):  # churn: a freed dtype's address would be taken by a new one
        np.dtype("S1"), np.dtype(">f8"), bytes(range(8))
    m = IndirectMemory.view_from_array(a)
    assert m.format == memoryview(a).format and m.to_numpy().tolist() == a.tolist()
    s = np.zeros((2, 1), dtype="S1")
    assert IndirectMemory.view_from_array(s).itemsize == 1


@isolated
def test_a_stand_in_ctypes_module_does_not_disable_the_keep_alive_snapshot():
    import types
    fake = types.ModuleType("ctypes")

    class c_void_p:
        @classmethod
        def from_buffer(cls, obj):
            return types.SimpleNamespace(value=0)

    class _Pointer:
        pass

    fake.c_void_p, fake._Pointer, fake.c_int = c_void_p, _Pointer, c_void_p
    real = sys.modules["ctypes"]
    sys.modules["ctypes"] = fake
    try:
        with pytest.raises((TypeError, ValueError)):
            IndirectMemory2D.from_address(c_void_p(), 1, 1, "d")
    finally:
        sys.modules["ctypes"] = real
    D = ctypes.POINTER(ctypes.c_double)
    row = (ctypes.c_double * 4)(1, 2, 3, 4)
    table = (D * 1)(ctypes.cast(row, D))
    p = ctypes.pointer(table)
    m = IndirectMemory2D.from_address(p, 1, 4, "d")
    del table, row
    p.contents = (D * 1)()  # ctypes lets go of the old table: the wrapper must not
    gc.collect()
    assert m.to_numpy().tolist() == [[1.0, 2.0, 3.0, 4.0]]


# =============================================================================================
# Fourth attack: formats as NumPy states them, and as struct defines them
# =============================================================================================

def _unaligned(dtype, n=6):
    """A 1-D array of n elements of dtype starting one byte into a buffer (not ALIGNED)."""
    a = np.frombuffer(bytearray(n * np.dtype(dtype).itemsize + 1), dtype=np.uint8)[1:]
    a = a.view(dtype)
    assert not a.flags.aligned
    return a


@isolated
@pytest.mark.parametrize("first", ["aligned", "unaligned"])
def test_numpy_formats_do_not_depend_on_the_arrays_seen_before(first):
    # NumPy's format depends on alignment ('l' aligned, '=q' not, for int64; 'g' and '^g' for
    # long double): what the library reports for an array must be what NumPy exports for that
    # array, whichever array of the same dtype the process saw first.
    for dtype in ("i8", "f8", "g"):
        aligned = np.arange(6).astype(dtype)
        unaligned = _unaligned(dtype)
        order = [aligned, unaligned] if first == "aligned" else [unaligned, aligned]
        for a in order + order:  # twice: the second time through whatever was learned
            want = memoryview(a).format
            assert IndirectMemory2D.view_from_rows(a.reshape(2, 3)).format == want, (dtype, want)
            rows = [a[:3], a[3:]]
            assert BufferCollection2D(rows).format == want, (dtype, want)


@pytest.mark.parametrize("fmt", ["!i", ">i", "<h", "c", "1s", ">b", "=q", ">d"])
def test_copy_from_its_own_numpy_copy(fmt):
    # to_numpy() gives NumPy's spelling of the format ('!i' -> '>i', 'c' -> '1s'): the same
    # elements, so the copy back must be accepted.
    mem = IndirectMemory2D.create_memory(2, 3, fmt)
    raw = bytes(range(mem.itemsize * 6))
    memoryview(mem.direct_view()).cast("B")[:] = raw
    a = mem.to_numpy()
    other = IndirectMemory2D.create_memory(2, 3, fmt)
    other.copy_from(a)
    assert bytes(memoryview(other.direct_view()).cast("B")) == raw


@pytest.mark.parametrize("a,b,same", [
    ("!i", ">i", True), (">i", ">l", True), ("c", "1s", True), (">b", "b", True),
    ("<h", ">h", False), ("!h", "<h", False), (">i", "<i", False), (">f", ">i", False),
])
def test_struct_equivalent_formats_match_and_others_do_not(a, b, same):
    # struct defines '!' as '>', 'l' as 'i' in standard sizes, '1s' as one byte like 'c', and
    # no byte order for single bytes; byte orders of wider elements never match.
    assert (struct.calcsize(a) == struct.calcsize(b))
    rows = [IndirectMemory2D.create_memory(1, 2, a).direct_view(),
            IndirectMemory2D.create_memory(1, 2, b).direct_view()]
    if same:
        assert BufferCollection2D(rows).shape == (2, 2)
        IndirectMemory2D.create_memory(1, 2, a).copy_from(rows[1])
    else:
        with pytest.raises(BufferError, match="format"):
            BufferCollection2D(rows)
        # casting='no' is the rule the check used before converting copies existed.
        with pytest.raises(BufferError, match="format"):
            IndirectMemory2D.create_memory(1, 2, a).copy_from(rows[1], casting="no")
