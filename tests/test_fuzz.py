"""Fuzz harness (issue 8): the attacker's tools against every entry point, with real oracles.

Generators (hypothesis) include Python subclasses (refused), PEP 688 exporters that lie or
re-enter the library from __buffer__/__release_buffer__ (3.12+), weakref callbacks and __del__
that run while rows are released, _testbuffer exporters with every flag, a hand-made exporter
with indirect second dimensions and NULL pointers, every request-flag combination against every
exporter here (checked against CPython's own exporters), and overlapping copies (checked
against NumPy's copy through a temporary).

Each test runs its hypothesis loop in a fresh interpreter (_hostile.isolated): a crash or an
AddressSanitizer report fails that test, not the whole run. The hypothesis database is off.

Examples per test: IB_FUZZ_EXAMPLES (default 20, so the normal suite stays fast); the state
machine runs IB_FUZZ_EXAMPLES // 2 programs of up to 40 steps. IB_FUZZ_SEED fixes the seed.
A longer run under AddressSanitizer (about an hour on 2 cores; PYTHONMALLOC=malloc lets ASan
see freed Python objects too):

    IB_FUZZ_EXAMPLES=3000 IB_PYTEST_ARGS="tests/test_fuzz.py" sh test_install.sh python3 asan

(and with a 3.12+ interpreter for the PEP 688 generators, e.g.
`sh test_install.sh $(pyenv root)/versions/3.12.1/bin/python asan`).
"""
import ctypes
import gc
import os
import pickle
import struct
import sys
import weakref

import numpy as np
import pytest

import _hostile
from _hostile import PEP688, isolated
from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

EXAMPLES = _hostile.env_int("IB_FUZZ_EXAMPLES", 20)
SEED = os.environ.get("IB_FUZZ_SEED")


def fuzz_settings(examples=None, **kwargs):
    from hypothesis import HealthCheck, settings
    return settings(max_examples=examples or EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True, **kwargs)


def run(test):
    """Run a @given test with the fuzz settings (and IB_FUZZ_SEED if set)."""
    from hypothesis import seed
    if SEED is not None:
        test = seed(int(SEED))(test)
    fuzz_settings()(test)()


@pytest.fixture(scope="module")
def exporter_dir(cython_builder):
    return _hostile.build_module(cython_builder, "ib_hostile_exporter", _hostile.EXPORTER_PYX)


NATIVE = {"B": np.uint8, "b": np.int8, "h": np.int16, "i": np.intc, "q": np.int64,
          "f": np.float32, "d": np.float64}


# =============================================================================================
# Python subclasses
# =============================================================================================

@isolated
def test_fuzz_python_subclasses_are_refused():
    from hypothesis import given
    from hypothesis import strategies as st

    class Meta(type):
        pass

    members = {
        "__buffer__": lambda self, flags: memoryview(b""),
        "__release_buffer__": lambda self, view: None,
        "__init__": lambda self, *a: None,
        "__new__": staticmethod(lambda cls, *a: object.__new__(cls)),
        "__del__": lambda self: None,
        "__init_subclass__": classmethod(lambda cls, **kw: None),
        "__slots__": (),
        "to_numpy": lambda self: None,
        "shape": property(lambda self: (1, 1)),
    }

    @given(base=st.sampled_from([IndirectMemory2D, BufferCollection2D]),
           names=st.sets(st.sampled_from(sorted(members))),
           how=st.sampled_from(["class", "type", "metaclass", "mixin"]))
    def check(base, names, how):
        body = {n: members[n] for n in names}
        try:
            if how == "class":
                ns = {"base": base, "body": body}
                exec("class Sub(base):\n    locals().update(body)\n", ns)
            elif how == "type":
                type("Sub", (base,), body)
            elif how == "metaclass":
                Meta("Sub", (base,), body)
            else:
                class Mixin:
                    pass
                type("Sub", (Mixin, base), body)
        except TypeError:
            return
        raise AssertionError(f"a Python subclass of {base.__name__} was created ({how}, {names})")

    run(check)


# =============================================================================================
# request flags: every combination, every exporter, CPython's answers as the oracle
# =============================================================================================

@isolated
def test_fuzz_request_flags_against_cpython():
    from hypothesis import given
    from hypothesis import strategies as st

    @given(kind=st.sampled_from(_hostile.EXPORTER_KINDS), rows=st.integers(0, 4),
           cols=st.integers(0, 4), fmt=st.sampled_from(["B", "h", "i", "f", "d"]),
           readonly=st.booleans(), release=st.booleans())
    def check(kind, rows, cols, fmt, readonly, release):
        m, pairs = _hostile.exporters_of(kind, rows, cols, fmt, readonly)
        bad = []
        if release:
            # After release() every request is refused with ValueError, like a released
            # memoryview's.
            m.release()
            for what, ours, oracle in pairs:
                if isinstance(oracle, memoryview):
                    oracle.release()
                    bad += _hostile.compare_answers(ours, oracle)
                else:
                    for flags in _hostile.ALL_FLAGS:
                        got = _hostile.answer(ours, flags)
                        if got != ("refused", "ValueError"):
                            bad.append((what, flags, got))
        else:
            for what, ours, oracle in pairs:
                bad += [(what,) + b for b in _hostile.compare_answers(ours, oracle)]
        assert not bad, bad[:10]
        del pairs
        gc.collect()
        assert m.export_count == 0

    run(check)


# =============================================================================================
# overlapping copies: NumPy's copy through a temporary is the oracle
# =============================================================================================

def _window(draw, st, length, n):
    """(start, step) selecting n indices out of range(length)."""
    step = draw(st.sampled_from([1, 1, 2, -1, -2]))
    span = (n - 1) * abs(step) + 1 if n else 0
    if span > length:
        step = 1 if step > 0 else -1
        span = n
    if n == 0:
        return 0, step
    if step > 0:
        start = draw(st.integers(0, length - span))
    else:
        start = draw(st.integers(span - 1, length - 1))
    return start, step


def _index(start, step, n):
    stop = start + step * n
    return slice(start, stop if stop >= 0 else None, step)


@isolated
def test_fuzz_overlapping_copies_match_numpy():
    from hypothesis import given
    from hypothesis import strategies as st

    @st.composite
    def case(draw):
        R, C = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        n, m = draw(st.integers(0, R)), draw(st.integers(0, C))
        windows = []
        for _ in range(2):
            transpose = draw(st.booleans()) and n <= C and m <= R
            rr, cc = (C, R) if transpose else (R, C)
            windows.append((transpose, _window(draw, st, rr, n), _window(draw, st, cc, m)))
        fmt = draw(st.sampled_from(["B", "h", "i", "d"]))
        owner = draw(st.booleans())
        wraps = (draw(st.sampled_from(["numpy", "rows", "columns", "collection", "owner"])),
                 draw(st.sampled_from(["numpy", "rows", "columns", "collection", "owner"])))
        method = draw(st.sampled_from(["copy_from", "copy_to"]))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        return R, C, n, m, windows, fmt, owner, wraps, method, seed

    def view_of(a, window, n, m):
        transpose, (r0, rs), (c0, cs) = window
        base = a.T if transpose else a
        return base[_index(r0, rs, n), _index(c0, cs, m)]

    def wrap(how, v, mem, full):
        rows_ok = v.shape[1] <= 1 or v.strides[1] == v.itemsize
        if how == "owner" and full:
            return mem
        if how == "rows" and rows_ok:
            return IndirectMemory2D.view_from_rows(v)
        if how == "columns" and rows_ok:
            return IndirectMemory2D.view_from_columns(v.T)
        if how == "collection" and rows_ok and v.shape[0] > 0:
            return BufferCollection2D([v[i] for i in range(v.shape[0])])
        return v

    def ours(obj):
        return isinstance(obj, IndirectMemory2D)

    @given(case())
    def check(c):
        R, C, n, m, windows, fmt, owner, wraps, method, seed = c
        dtype = np.dtype(NATIVE[fmt])
        values = np.random.default_rng(seed).integers(0, 100, size=(R, C)).astype(dtype)
        mem = None
        if owner:  # the memory belongs to an IndirectMemory2D; NumPy sees it directly
            mem = IndirectMemory2D.create_memory(R, C, fmt)
            mem.copy_from(values)
            a = np.asarray(mem.direct_view())
        else:
            a = values.copy()
        src_v, dst_v = (view_of(a, w, n, m) for w in windows)
        full = [w == (False, (0, 1), (0, 1)) and (n, m) == (R, C) for w in windows]
        src, dst = wrap(wraps[0], src_v, mem, full[0]), wrap(wraps[1], dst_v, mem, full[1])
        if not ours(src) and not ours(dst):
            dst = wrap("rows", dst_v, mem, False)
            if not ours(dst):
                src = wrap("rows", src_v, mem, False)
            if not ours(src) and not ours(dst):
                return  # neither side has contiguous rows: nothing of ours to put in between
        expected = a.copy()
        np.copyto(view_of(expected, windows[1], n, m), view_of(expected, windows[0], n, m).copy())
        if ours(dst) and (method == "copy_from" or not ours(src)):
            dst.copy_from(src)
        else:
            src.copy_to(dst)
        np.testing.assert_array_equal(a, expected)

    run(check)


# =============================================================================================
# foreign layouts: the hand-made exporter with indirect dimensions, NULLs and lies
# =============================================================================================

@isolated
def test_fuzz_foreign_layouts(exporter_dir):
    from hypothesis import given
    from hypothesis import strategies as st
    mod = _hostile.exporter_module(exporter_dir)
    FORMATS = {"d": 8, "q": 8, "B": 1, "2d": 16, "16s": 16, "3i": 12}

    @given(rows=st.integers(1, 4), cols=st.integers(1, 4),
           fmt=st.sampled_from(sorted(FORMATS)),
           told=st.sampled_from([None, "d", "B", "2d"]),
           sub=st.sampled_from([(0, 0), (-1, 0), (8, 16), (0, -1), (24, -1), (-1, 8)]),
           null=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 3),
                                               st.integers(0, 1))),
           honour=st.booleans(), readonly=st.booleans(), seed=st.integers(0, 2 ** 16))
    def check(rows, cols, fmt, told, sub, null, honour, readonly, seed):
        itemsize = FORMATS[fmt]
        declared = told or fmt  # told: the exporter lies about its format
        if null is not None:
            null = (null[0] % rows, null[1] % cols, null[2] if sub[0] >= 0 else 1)
            if sub[1] < 0:
                null = (null[0], 0, 0)
        rng = np.random.default_rng(seed)
        values = [[rng.integers(0, 256, itemsize, dtype=np.uint8).tobytes()
                   for _ in range(cols)] for _ in range(rows)]
        expected = b"".join(b"".join(r) for r in values)
        lay = _hostile.ForeignLayout(mod, values, declared, itemsize, sub=sub,
                                     readonly=readonly, null=null, seed=seed,
                                     honour_flags=honour)
        exp = lay.exporter

        def outcome(func):
            try:
                return func()
            except (BufferError, ValueError, TypeError) as exc:
                if isinstance(exc, ValueError) and "NULL" in str(exc):
                    assert null is not None and _hostile.names_row(str(exc), null[0]), str(exc)
                return exc

        # copy_from into memory of the declared format: right bytes, or refused
        try:
            m = IndirectMemory2D.create_memory(rows, cols, declared)
        except ValueError:
            m = None
        if m is not None and m.itemsize == itemsize:
            r = outcome(lambda: m.copy_from(exp))
            if not isinstance(r, Exception):
                assert null is None, "a NULL pointer was copied from"
                assert m.to_numpy().tobytes() == expected
            # copy_to: right bytes in the right places, or refused with nothing written
            src = IndirectMemory2D.create_memory(rows, cols, declared)
            new = rng.integers(0, 256, rows * cols * itemsize, dtype=np.uint8)
            src.copy_from(new.reshape(rows, cols * itemsize).view(
                np.dtype((np.void, itemsize))), cast=True)
            r = outcome(lambda: src.copy_to(exp))
            if isinstance(r, Exception):
                if null is None:
                    assert lay.read() == values
            else:
                # (an exporter that ignores the request may hand out "read-only" memory)
                assert null is None and (not readonly or not honour)
                assert b"".join(b"".join(x) for x in lay.read()) == new.tobytes()
                values[:] = lay.read()
                expected = new.tobytes()
        # cast copies of the raw bytes
        raw = IndirectMemory2D.create_memory(rows, cols, f"{itemsize}s")
        r = outcome(lambda: raw.copy_from(exp, cast=True))
        if not isinstance(r, Exception):
            assert null is None and raw.to_numpy().tobytes() == expected
        # views and conversions: right bytes or refused
        for func in (lambda: as_indirect(exp), lambda: IndirectMemory2D.view_from_rows(exp),
                     lambda: IndirectMemory2D.view_from_columns(exp),
                     lambda: BufferCollection2D([exp])):
            r = outcome(func)
            if not isinstance(r, Exception):
                assert null is None
                if r.shape == (rows, cols):
                    out = IndirectMemory2D.create_memory(rows, cols, f"{itemsize}s")
                    out.copy_from(r, cast=True)
                    assert out.to_numpy().tobytes() == expected
                r.release()
        gc.collect()
        assert exp.gets == exp.releases, (exp.gets, exp.releases)

    run(check)


# =============================================================================================
# _testbuffer exporters with every flag
# =============================================================================================

@isolated
def test_fuzz_testbuffer_exporters():
    import _testbuffer as tb
    from hypothesis import given
    from hypothesis import strategies as st

    @given(rows=st.integers(1, 5), cols=st.integers(1, 5), fmt=st.sampled_from("Bhiqd"),
           flags=st.sets(st.sampled_from(["ND_PIL", "ND_FORTRAN", "ND_WRITABLE"])),
           rsl=st.sampled_from([slice(None), slice(None, None, -1), slice(1, None, 2),
                                slice(0, 0)]),
           csl=st.sampled_from([slice(None), slice(None, None, -1), slice(None, None, 2)]),
           getbuf=st.one_of(st.none(), st.sampled_from(_hostile.ALL_FLAGS)),
           seed=st.integers(0, 2 ** 16))
    def check(rows, cols, fmt, flags, rsl, csl, getbuf, seed):
        rng = np.random.default_rng(seed)
        items = [int(x) for x in rng.integers(0, 100, rows * cols)]
        if fmt == "d":
            items = [float(x) for x in items]
        bits = 0
        for f in flags:
            bits |= getattr(tb, f)
        try:
            base = tb.ndarray(items, shape=[rows, cols], format=fmt, flags=bits)
        except (ValueError, TypeError, BufferError):
            return  # _testbuffer refuses this flag combination itself
        nd = base[rsl, csl]
        want = nd.tolist()
        x = nd
        if getbuf is not None:
            try:
                x = tb.ndarray(nd, getbuf=getbuf)
            except BufferError:
                return
            if not (getbuf & tb.PyBUF_FORMAT) or x.ndim != 2:
                # Unsigned bytes or 1-D: only what the consumer asked for; no value check.
                for func in (lambda: IndirectMemory2D.view_from_rows(x, readonly=True),
                             lambda: as_indirect(x), lambda: BufferCollection2D([x])):
                    try:
                        func()
                    except (BufferError, ValueError, TypeError):
                        pass
                return
        r, c = nd.shape
        m = IndirectMemory2D.create_memory(r, c, fmt)
        try:
            m.copy_from(x)
        except BufferError:
            # only if CPython's own consumer cannot get it either (a re-exporter without
            # strides, say)
            _hostile.expect(BufferError, tb.ndarray, x, getbuf=tb.PyBUF_FULL_RO)
            return
        assert m.to_numpy().tolist() == want
        for transposed, func in ((False, lambda: as_indirect(x)),
                                 (False, lambda: IndirectMemory2D.view_from_rows(x, True)),
                                 (True, lambda: IndirectMemory2D.view_from_columns(x, True))):
            try:
                out = func()
            except BufferError:
                continue
            got = out.to_numpy()
            assert (got.T if transposed else got).tolist() == want
        new = rng.integers(0, 100, (r, c)).astype(NATIVE[fmt])
        m.copy_from(new)
        try:  # the oracle: can CPython's own consumer get a writable buffer?
            tb.ndarray(x, getbuf=tb.PyBUF_FULL)
            writable = True
        except BufferError:
            writable = False
        try:
            m.copy_to(x)
        except BufferError:
            assert not writable
            assert nd.tolist() == want
        else:
            assert writable
            assert nd.tolist() == new.tolist()

    run(check)


# =============================================================================================
# PEP 688 exporters that lie (a different buffer at each request) or re-enter the library
# =============================================================================================

def content(obj):
    """The bytes of a 2-D buffer object (ours or NumPy)."""
    if isinstance(obj, IndirectMemory2D):
        return obj.to_numpy().tobytes()
    return np.ascontiguousarray(obj).tobytes()


@pytest.mark.skipif(not PEP688, reason="__buffer__ in Python classes needs 3.12")
@isolated
def test_fuzz_pep688_exporters_that_lie_or_reenter():
    from hypothesis import given
    from hypothesis import strategies as st

    HOOKS = [None, "release", "init", "export", "to_numpy", "reinterpret", "make_read_only",
             "direct_view", "copy_into_self", "collect"]

    def hook(action, targets):
        """Re-enter the library on every target: nothing here changes element bytes."""
        if action is None:
            return None

        def run_hook(*_):
            for obj in list(targets):
                try:
                    if action == "release":
                        obj.release()
                    elif action == "init":
                        obj.__init__([bytearray(4)])
                    elif action == "export":
                        memoryview(obj).release()
                    elif action == "to_numpy":
                        obj.to_numpy()
                    elif action == "reinterpret":
                        obj.reinterpret_data("B")
                    elif action == "make_read_only":
                        obj.make_read_only()
                    elif action == "direct_view":
                        obj.direct_view().release()
                    elif action == "copy_into_self":
                        obj.copy_from(obj)
                    elif action == "collect":
                        gc.collect()
                except (BufferError, ValueError, TypeError):
                    pass
        return run_hook

    datas_st = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3),
                                  st.sampled_from(["B", "i", "d"]),
                                  st.sampled_from(["numpy", "readonly", "ours", "released"])),
                        min_size=1, max_size=4)

    @given(datas=datas_st, on_get=st.sampled_from(HOOKS), on_release=st.sampled_from(HOOKS),
           use=st.sampled_from(["collection", "copy_from", "copy_to", "view_from_rows",
                                "as_indirect"]),
           nrows=st.integers(0, 3), seed=st.integers(0, 2 ** 16))
    def check(datas, on_get, on_release, use, nrows, seed):
        rng = np.random.default_rng(seed)
        made = []
        for r, c, fmt, kind in datas:
            a = rng.integers(0, 100, (r, c)).astype(NATIVE[fmt])
            if kind == "readonly":
                a.flags.writeable = False
            elif kind == "ours":
                a = as_indirect(a, readonly=False)
            elif kind == "released":
                a = memoryview(a)
                a.release()
            made.append(a)
        targets = []
        exp = _hostile.LyingExporter(made, on_get=hook(on_get, targets),
                                     on_release=hook(on_release, targets))
        r0, c0, fmt0, _ = datas[0]
        obj = None
        if use == "collection":
            obj = BufferCollection2D.__new__(BufferCollection2D)
            targets.append(obj)
            try:
                obj.__init__([exp] * nrows, column_count=-1 if nrows else 0,
                             format=None if nrows else "B")
            except (BufferError, ValueError, TypeError):
                pass
            else:
                if not obj.released:
                    raw = IndirectMemory2D.create_memory(obj.shape[0], obj.shape[1],
                                                         f"{obj.itemsize}s")
                    raw.copy_from(obj, cast=True)
                    assert raw.to_numpy().tobytes() == b"".join(
                        content(h) for h in exp.handed[:nrows])
        elif use in ("copy_from", "copy_to"):
            obj = IndirectMemory2D.create_memory(r0, c0, fmt0)
            mine = rng.integers(0, 100, (r0, c0)).astype(NATIVE[fmt0])
            obj.copy_from(mine)
            targets.append(obj)
            try:
                if use == "copy_from":
                    obj.copy_from(exp)
                else:
                    obj.copy_to(exp)
            except (BufferError, ValueError, TypeError):
                pass
            else:
                handed = exp.handed[-1]
                if use == "copy_from" and not obj.released:
                    assert content(obj) == content(handed)
                if use == "copy_to":
                    assert content(handed) == mine.tobytes()
        else:
            try:
                obj = (IndirectMemory2D.view_from_rows(exp, readonly=True)
                       if use == "view_from_rows" else as_indirect(exp))
            except (BufferError, ValueError, TypeError):
                obj = None
            else:
                targets.append(obj)
                assert content(obj) == content(exp.handed[-1]) or obj.released
        del obj
        targets.clear()
        gc.collect()
        assert exp.gets == exp.releases, (exp.gets, exp.releases)

    run(check)


# =============================================================================================
# the state machine: lifetimes, exports, pins, copies and hostile code at every turn
# =============================================================================================

# Weak references to every object the machine made: the hostile code's targets.
VICTIMS = []
HOSTILE_RAN = []  # every hostile action run, over all examples of the run
REINITIALISED = set()


def act(action, pick):
    """Hostile code run from __del__, weakref callbacks, __buffer__ and __release_buffer__:
    one operation on some object of the package; never leaves an export or a pin behind and
    never changes data."""
    pool = [w() for w in VICTIMS]
    pool = [o for o in pool if o is not None]
    HOSTILE_RAN.append(action)
    if not pool:
        return
    obj = pool[pick % len(pool)]
    try:
        if action == "release":
            obj.release()
        elif action == "self_copy":
            obj.copy_from(obj)
        elif action == "to_numpy":
            obj.to_numpy()
        elif action == "export":
            memoryview(obj).release()
        elif action == "direct_view":
            obj.direct_view().release()
        elif action == "init":
            obj.__init__([bytearray(4)])
            REINITIALISED.add(id(obj))
        elif action == "pinned":
            with obj.pinned():
                obj.shape
        elif action == "repr":
            repr(obj)
        elif action == "collect":
            gc.collect()
    except (BufferError, ValueError, TypeError):
        pass


ACTIONS = ["release", "self_copy", "to_numpy", "export", "direct_view", "init", "pinned",
           "repr", "collect"]


class Dying(bytearray):
    """A row's underlying object whose __del__ runs hostile code."""

    def __del__(self):
        act(self.action, self.pick)


class Entry:
    def __init__(self, obj, model, itemsize, readonly):
        self.obj = obj
        self.model = model          # bytes rows x row_bytes (np.uint8), None if unknown
        self.itemsize = itemsize
        self.readonly = readonly
        self.views = []
        self.pins = []


def _rows_of(model, itemsize, fmt, how, action, pick):
    """Row objects holding model's rows, of one kind; the machine keeps no reference."""
    rows = []
    for i in range(model.shape[0]):
        data = model[i].tobytes()
        if how == "testbuffer" and not data:
            how = "numpy"  # _testbuffer cannot make an empty ndarray
        if how == "numpy":
            rows.append(np.frombuffer(bytearray(data), dtype=NATIVE[fmt]))
        elif how == "picklebuffer":
            d = Dying(data)
            d.action, d.pick = action, pick + i
            # Py_buffer.obj is the memoryview (and through it d), not the row
            rows.append(pickle.PickleBuffer(memoryview(d).cast(fmt)))
        elif how == "pep688":
            rows.append(_hostile.PyExporter(
                np.frombuffer(bytearray(data), dtype=NATIVE[fmt]),
                on_get=lambda e, f, a=action, p=pick + i: act(a, p),
                on_release=lambda e, a=action, p=pick + i: act(a, p)))
        elif how == "testbuffer":
            import _testbuffer as tb
            rows.append(tb.ndarray(list(np.frombuffer(data, dtype=NATIVE[fmt]).tolist()),
                                   shape=[len(data) // itemsize], format=fmt,
                                   flags=tb.ND_WRITABLE))
    return rows


@isolated(timeout=900)
def test_fuzz_state_machine():
    import _testbuffer as tb
    from hypothesis import strategies as st
    from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                     run_state_machine_as_test)

    ROW_KINDS = ["numpy", "picklebuffer", "testbuffer"] + (["pep688"] if PEP688 else [])

    class Machine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            VICTIMS.clear()
            REINITIALISED.clear()
            self.entries = []
            self.orphans = []   # (views, expected bytes) of dropped objects
            self.refs = []      # weakrefs with hostile callbacks

        def add(self, obj, model, itemsize, readonly):
            self.entries.append(Entry(obj, model, itemsize, readonly))
            VICTIMS.append(weakref.ref(obj))

        def pick(self, data):
            return self.entries[data.draw(st.integers(0, len(self.entries) - 1))]

        # -- creation ---------------------------------------------------------------------

        @rule(rows=st.integers(0, 4), cols=st.integers(0, 4), fmt=st.sampled_from("Bhid"),
              how=st.sampled_from(["create", "rows", "columns", "collection", "copy",
                                   "from_address", "as_indirect"]),
              row_kind=st.sampled_from(ROW_KINDS), readonly=st.booleans(),
              action=st.sampled_from(ACTIONS), pick=st.integers(0, 50),
              seed=st.integers(0, 2 ** 16))
        def create(self, rows, cols, fmt, how, row_kind, readonly, action, pick, seed):
            dtype = np.dtype(NATIVE[fmt])
            values = np.random.default_rng(seed).integers(0, 100, (rows, cols)).astype(dtype)
            model = values.view(np.uint8).reshape(rows, cols * dtype.itemsize).copy()
            if how == "create":
                obj = IndirectMemory2D.create_memory(rows, cols, fmt)
                obj.copy_from(values)
            elif how == "rows":
                obj = IndirectMemory2D.view_from_rows(values.copy())
            elif how == "columns":
                obj = IndirectMemory2D.view_from_columns(np.asfortranarray(values.T))
            elif how == "collection":
                rows_ = _rows_of(model, dtype.itemsize, fmt, row_kind, action, pick)
                obj = BufferCollection2D(rows_, column_count=cols, format=fmt)
                if pick % 2:
                    for r in rows_:
                        if isinstance(r, pickle.PickleBuffer):
                            r.release()  # only the collection's Py_buffer holds the data
                del rows_
            elif how == "copy":
                obj = IndirectMemory2D.view_from_rows(values.copy()).copy()
            elif how == "from_address":
                P = ctypes.POINTER(ctypes.c_char)
                blocks = [ctypes.create_string_buffer(bytes(values[i]), max(1, values[i].nbytes))
                          for i in range(rows)]
                table = (P * max(1, rows))(*[ctypes.cast(b, P) for b in blocks])

                class Nanny:
                    def __init__(self):
                        self.keep = (blocks, table)

                    def __del__(self, a=action, p=pick):
                        act(a, p)

                obj = IndirectMemory2D.from_address(ctypes.addressof(table), rows, cols, fmt,
                                                    memory_nanny=Nanny())
            else:
                obj = as_indirect(values.tolist() if rows else values, format=fmt,
                                  readonly=False)
                if obj.shape != (rows, cols):
                    return  # NumPy shapes [] as (1, 0): not what this rule asked for
            if readonly:
                obj.make_read_only()
            self.add(obj, model, dtype.itemsize, readonly)

        @rule(base=st.sampled_from([IndirectMemory2D, BufferCollection2D]))
        def subclass(self, base):
            try:
                type("Sub", (base,), {"__buffer__": lambda s, f: memoryview(b"")})
            except TypeError:
                return
            raise AssertionError("Python subclass created")

        # -- exports and pins -------------------------------------------------------------

        @precondition(lambda self: self.entries)
        @rule(data=st.data(), how=st.sampled_from(["memoryview", "testbuffer", "direct"]),
              flags=st.sampled_from(_hostile.ALL_FLAGS))
        def export(self, data, how, flags):
            e = self.pick(data)
            try:
                if how == "memoryview":
                    v = memoryview(e.obj)
                elif how == "direct":
                    v = e.obj.direct_view()
                else:
                    v = tb.ndarray(e.obj, getbuf=flags)
            except (BufferError, ValueError):
                return
            assert not e.obj.released
            e.views.append(v)

        @precondition(lambda self: any(e.views for e in self.entries))
        @rule(data=st.data())
        def release_export(self, data):
            e = self.pick(data)
            if e.views:
                v = e.views.pop(data.draw(st.integers(0, len(e.views) - 1)))
                if isinstance(v, memoryview):
                    v.release()

        @precondition(lambda self: self.entries)
        @rule(data=st.data(), fmt=st.sampled_from([None, "d", "B"]), writable=st.booleans())
        def pin(self, data, fmt, writable):
            e = self.pick(data)
            try:
                p = e.obj.pinned(format=fmt, writable=writable)
                address = p.__enter__()
            except (BufferError, ValueError, TypeError):
                return
            assert address == e.obj.address
            e.pins.append(p)

        @precondition(lambda self: any(e.pins for e in self.entries))
        @rule(data=st.data(), drop=st.booleans())
        def unpin(self, data, drop):
            e = self.pick(data)
            if e.pins:
                p = e.pins.pop()
                if not drop:
                    p.__exit__(None, None, None)
                del p
                gc.collect()  # a dropped pinned object unpins when collected

        # -- state changes ----------------------------------------------------------------

        @precondition(lambda self: self.entries)
        @rule(data=st.data(), op=st.sampled_from(["release", "make_read_only", "reinterpret"]))
        def change(self, data, op):
            e = self.pick(data)
            busy = bool(e.views or e.pins)
            released = e.obj.released
            # Changes that change nothing (to the same format, read-only again) are allowed
            # while exported; the others are refused with BufferError.
            changes = released or op == "release" or (
                op == "make_read_only" and not e.obj.readonly) or (
                op == "reinterpret" and e.obj.format != "B")
            try:
                if op == "release":
                    e.obj.release()
                elif op == "make_read_only":
                    e.obj.make_read_only()
                    e.readonly = True
                else:
                    e.obj.reinterpret_data("B")
                    e.itemsize = 1
            except BufferError:
                assert busy and changes, (op, "refused", busy, changes)
                return
            except ValueError:
                assert released
                return
            assert not (busy and changes), (op, "allowed while exported")

        @precondition(lambda self: self.entries)
        @rule(data=st.data(), method=st.sampled_from(["copy_from", "copy_to"]))
        def copy(self, data, method):
            src, dst = self.pick(data), self.pick(data)
            call = (lambda: dst.obj.copy_from(src.obj, cast=True)) if method == "copy_from" \
                else (lambda: src.obj.copy_to(dst.obj, cast=True))
            try:
                call()
            except ValueError:
                assert src.obj.released or dst.obj.released
                return
            except BufferError:
                assert (dst.obj.readonly or src.obj.shape != dst.obj.shape
                        or src.itemsize != dst.itemsize), "copy refused"
                return
            if src.model is not None:
                dst.model = src.model.copy()
            else:
                dst.model = None

        @precondition(lambda self: self.entries)
        @rule(data=st.data(), action=st.sampled_from(ACTIONS), pick=st.integers(0, 50),
              where=st.sampled_from(["get", "release"]))
        def copy_from_hostile_exporter(self, data, action, pick, where):
            """A PEP 688 source whose hooks run hostile code in the middle of the copy."""
            if not PEP688:
                return
            e = self.pick(data)
            if e.obj.released or e.model is None:
                return
            new = np.random.default_rng(pick).integers(0, 256, e.model.shape, dtype=np.uint8)
            hooks = {"on_get": lambda x, f: act(action, pick)} if where == "get" else \
                {"on_release": lambda x: act(action, pick)}
            src = _hostile.PyExporter(new.view(np.dtype((np.void, e.itemsize))), **hooks) \
                if e.itemsize and new.shape[1] % e.itemsize == 0 else None
            if src is None:
                return
            try:
                e.obj.copy_from(src, cast=True)
            except (BufferError, ValueError):
                return
            e.model = new

        @precondition(lambda self: self.entries)
        @rule(data=st.data(), action=st.sampled_from(ACTIONS), pick=st.integers(0, 50),
              finalizer=st.booleans())
        def watch(self, data, action, pick, finalizer):
            """A weakref callback (or weakref.finalize) with hostile code, run at death."""
            e = self.pick(data)
            if finalizer:
                weakref.finalize(e.obj, act, action, pick)
            else:
                self.refs.append(weakref.ref(e.obj, lambda _: act(action, pick)))

        @precondition(lambda self: self.entries)
        @rule(data=st.data())
        def delete(self, data):
            e = self.entries.pop(data.draw(st.integers(0, len(self.entries) - 1)))
            if e.views and e.model is not None:
                self.orphans.append((e.views, e.model.tobytes()))
            e.obj = None
            e.pins.clear()
            gc.collect()

        @precondition(lambda self: self.orphans)
        @rule()
        def release_orphans(self):
            views, _ = self.orphans.pop(0)
            for v in views:
                if isinstance(v, memoryview):
                    v.release()
            gc.collect()

        # -- invariants -------------------------------------------------------------------

        @invariant()
        def consistent(self):
            for e in self.entries:
                obj = e.obj
                if id(obj) in REINITIALISED:
                    e.model = None
                if obj.released:
                    assert obj.export_count == 0 and not e.views and not e.pins
                    _hostile.expect(ValueError, lambda: obj.shape, match="released")
                    continue
                assert obj.export_count == len(e.views) + len(e.pins), \
                    (obj.export_count, len(e.views), len(e.pins))
                got = obj.to_numpy().tobytes()
                if e.model is not None:
                    assert obj.shape[0] == e.model.shape[0]
                    assert obj.shape[1] * obj.itemsize == e.model.shape[1]
                    assert got == e.model.tobytes()
                for v in e.views:
                    if isinstance(v, memoryview) and v.format in NATIVE:
                        assert v.tobytes() == got

        @invariant()
        def orphans_readable(self):
            for views, expected in self.orphans:
                for v in views:
                    if isinstance(v, memoryview) and v.format in NATIVE:
                        assert v.tobytes() == expected

        def teardown(self):
            for views, _ in self.orphans:
                for v in views:
                    if isinstance(v, memoryview):
                        v.release()
            for e in self.entries:
                for v in e.views:
                    if isinstance(v, memoryview):
                        v.release()
                for p in e.pins:
                    p.__exit__(None, None, None)
            self.entries = self.orphans = None
            gc.collect()

    from hypothesis import settings
    examples = max(2, EXAMPLES // 2)
    s = fuzz_settings(examples, stateful_step_count=40)
    if SEED is not None:
        import random
        random.seed(int(SEED))
    HOSTILE_RAN.clear()
    run_state_machine_as_test(Machine, settings=s)
    assert HOSTILE_RAN or examples < 5, "hostile code never ran in any example"
