"""Explicit lifetime: release(), context managers, pickling/copying, interpreter shutdown.

Anything that could touch freed memory if the package were wrong runs in a subprocess
(run_python), so that a crash fails the test instead of killing the run.
"""
import array
import copy
import gc
import os
import pickle
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python
from leakcheck import HELPER_PYX

from indirect_buffer import BufferCollection2D, IndirectMemory2D, nannies

SANITIZED = bool(os.environ.get("IB_SANITIZE"))

# Shared by this process and the children: one factory per kind of object. make(kind) returns
# (object, expected contents as a NumPy array); every object is 3x4.
PRELUDE = r'''
import copy, ctypes, gc, pickle, sys, threading, weakref
import _testbuffer
import numpy as np
from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

EXPECTED = np.arange(12.0).reshape(3, 4)
EXPECTED_U8 = np.arange(12, dtype=np.uint8).reshape(3, 4)


class PyNanny:
    """A pure-Python memory nanny: keeps ctypes objects alive."""

    def __init__(self, *objs):
        self.objs = objs


def ctypes_table(rows=3, cols=4):
    return (ctypes.POINTER(ctypes.c_double) * rows)(
        *[(ctypes.c_double * cols)(*range(i * cols, (i + 1) * cols)) for i in range(rows)])


def make(kind):
    if kind == "create_memory":
        m = IndirectMemory2D.create_memory(3, 4, "d")
        m.copy_from(EXPECTED)
        return m, EXPECTED
    if kind == "copy":
        m = IndirectMemory2D.create_memory(3, 4, "d")
        m.copy_from(EXPECTED)
        return m.copy(), EXPECTED
    if kind == "from_ctype_ptr_array":
        # With a nanny: without one the memory is lent, and release() revokes (see
        # test_lending.py) instead of being refused while exported.
        return IndirectMemory2D.from_ctype_ptr(ctypes_table(), 3, 4,
                                               memory_nanny=PyNanny()), EXPECTED
    if kind == "from_ctype_ptr_pointer":
        p = ctypes.cast(ctypes_table(), ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
        return IndirectMemory2D.from_ctype_ptr(p, 3, 4, memory_nanny=PyNanny()), EXPECTED
    if kind == "from_address_nanny":
        t = ctypes_table()
        return IndirectMemory2D.from_address(ctypes.addressof(t), 3, 4, "d",
                                             memory_nanny=PyNanny(t)), EXPECTED
    if kind == "collection_numpy":
        return BufferCollection2D([EXPECTED[i].copy() for i in range(3)]), EXPECTED
    if kind == "collection_bytearray":
        return BufferCollection2D([bytearray(EXPECTED_U8[i].tobytes()) for i in range(3)]), \
            EXPECTED_U8
    if kind == "view_from_rows":
        return IndirectMemory2D.view_from_rows(EXPECTED.copy()), EXPECTED
    if kind == "view_from_columns":
        return IndirectMemory2D.view_from_columns(np.asfortranarray(EXPECTED.T)), EXPECTED
    if kind == "as_indirect_copy":
        return as_indirect(EXPECTED.tolist(), readonly=False), EXPECTED
    raise ValueError(kind)


KINDS = ["create_memory", "copy", "from_ctype_ptr_array", "from_ctype_ptr_pointer",
         "from_address_nanny", "collection_numpy", "collection_bytearray", "view_from_rows",
         "view_from_columns", "as_indirect_copy"]

# Kinds whose rows lie back to back, so direct_view() works.
BACK_TO_BACK = {"create_memory", "copy", "view_from_rows", "view_from_columns",
                "as_indirect_copy"}


def expect(exc_type, fragment, func, *args):
    try:
        func(*args)
    except exc_type as exc:
        assert fragment in str(exc), (func, exc)
        return exc
    raise AssertionError(f"{func} did not raise {exc_type.__name__}")
'''

_ns = {}
exec(PRELUDE, _ns)  # noqa: S102 -- the same factories run here and in the children
make = _ns["make"]
KINDS = _ns["KINDS"]


def child(body, *, before="", **fmt):
    """Run `before`, PRELUDE, then body in a fresh interpreter; a crash or failed assert fails.

    "{name}" in body is replaced by str(fmt[name]).
    """
    code = textwrap.dedent(body)
    for key, value in fmt.items():
        code = code.replace("{" + key + "}", str(value))
    return run_python(textwrap.dedent(before) + PRELUDE + "\n" + code)


def leak_helper(cython_builder):
    """The compiled ib_leak_helper module (C tables + nannies calling C), built once."""
    return sys.modules.get("ib_leak_helper") or cython_builder("ib_leak_helper", HELPER_PYX)


# ---------------------------------------------------------------------------------------------
# release()
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_every_operation_after_release_raises_valueerror(kind):
    child("""
        m, expected = make("{kind}")
        assert not m.released
        assert m.release() is None
        assert m.released and m.export_count == 0
        m.release()  # idempotent
        assert m.released and m.export_count == 0
        assert "released" in repr(m)
        other = IndirectMemory2D.create_memory(3, 4, expected.dtype.char)
        ops = {
            "memoryview": lambda: memoryview(m),
            "_testbuffer FULL_RO":
                lambda: _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO),
            "_testbuffer INDIRECT":
                lambda: _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_INDIRECT),
            "shape": lambda: m.shape,
            "format": lambda: m.format,
            "get_format": lambda: m.get_format(),
            "itemsize": lambda: m.itemsize,
            "readonly": lambda: m.readonly,
            "row_offset": lambda: m.row_offset,
            "address": lambda: m.address,
            "len": lambda: len(m),
            "reinterpret_data": lambda: m.reinterpret_data("B"),
            "make_read_only": lambda: m.make_read_only(),
            "copy_from": lambda: m.copy_from(np.zeros((3, 4), dtype=expected.dtype)),
            "copy_to": lambda: m.copy_to(np.zeros((3, 4), dtype=expected.dtype)),
            "copy": lambda: m.copy(),
            "to_numpy": lambda: m.to_numpy(),
            "direct_view": lambda: m.direct_view(),
            "__enter__": lambda: m.__enter__(),
            "as_indirect": lambda: as_indirect(m),
            "view_from_rows": lambda: IndirectMemory2D.view_from_rows(m, readonly=True),
            "BufferCollection2D": lambda: BufferCollection2D([m]),
            "other.copy_from": lambda: other.copy_from(m, cast=True),
            "other.copy_to": lambda: other.copy_to(m, cast=True),
        }
        for name, op in ops.items():
            try:
                op()
            except ValueError as exc:
                assert "operation on released" in str(exc), (name, exc)
            else:
                raise AssertionError(f"{name} worked on a released object")
        try:
            with m:
                raise AssertionError("entered a released object")
        except ValueError as exc:
            assert "operation on released" in str(exc)
        assert m.released and m.export_count == 0
        print("ok")
    """, kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_release_and_state_changes_refused_while_exported(kind):
    child("""
        m, expected = make("{kind}")
        exporters = {
            "memoryview": lambda: memoryview(m),
            "_testbuffer": lambda: _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO),
        }
        if "{kind}" in BACK_TO_BACK:
            exporters["direct_view"] = m.direct_view
            exporters["numpy over direct_view"] = lambda: np.asarray(m.direct_view())
        for name, export in exporters.items():
            view = export()
            assert m.export_count == 1, (name, m.export_count)
            expect(BufferError, "exported", m.release)
            expect(BufferError, "exported", m.reinterpret_data, "b" if m.format == "B" else "B")
            m.reinterpret_data(m.format)  # nothing changes: allowed while exported (as in 0.1.0)
            if m.readonly:
                m.make_read_only()  # likewise
            else:
                expect(BufferError, "exported", m.make_read_only)
            try:
                with m:
                    pass
            except BufferError:
                pass
            else:
                raise AssertionError("leaving 'with' released an exported object")
            assert not m.released and m.export_count == 1
            # The view still reads the original data.
            assert bytes(memoryview(view).tobytes() if not isinstance(view, np.ndarray)
                         else view.tobytes()) == expected.tobytes(), name
            del view
            gc.collect()
            assert m.export_count == 0, (name, m.export_count)
        m.release()
        assert m.released
        print("ok")
    """, kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_view_keeps_object_alive_after_del(kind):
    child("""
        m, expected = make("{kind}")
        views = [memoryview(m), _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO)]
        if "{kind}" in BACK_TO_BACK:
            views.append(np.asarray(m.direct_view()))
        del m
        gc.collect()
        make("{kind}")  # reuse freed memory, if anything was freed too early
        for v in views:
            assert v.tobytes() == expected.tobytes()
        assert views[0].obj.export_count == len(views)
        expect(BufferError, "exported", views[0].obj.release)
        print("ok")
    """, kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_with_statement_releases(kind):
    obj, expected = make(kind)
    with obj as m:
        assert m is obj
        assert memoryview(m).tobytes() == expected.tobytes()
    assert obj.released and obj.export_count == 0
    with pytest.raises(ValueError, match="operation on released"):
        _ = obj.shape


def test_with_statement_releases_on_exception():
    with pytest.raises(KeyError), IndirectMemory2D.create_memory(2, 2, "d") as m:
        raise KeyError("boom")
    assert m.released


def test_with_statement_exit_while_exported_raises_buffererror():
    m = IndirectMemory2D.create_memory(2, 2, "d")
    with pytest.raises(BufferError, match="cannot release"), m:
        view = memoryview(m)
        view[1, 1] = 5.0
    assert not m.released
    assert view[1, 1] == 5.0
    view.release()
    m.release()
    assert m.released


def test_release_drops_ctypes_array_reference():
    t = _ns["ctypes_table"]()
    base = sys.getrefcount(t)
    m = IndirectMemory2D.from_ctype_ptr(t, 3, 4)
    assert sys.getrefcount(t) > base
    m.release()
    assert sys.getrefcount(t) == base


def test_release_drops_ctypes_pointer_reference():
    """A POINTER(POINTER(T)) is back to its own references after release (and not in a cycle)."""
    ctypes = _ns["ctypes"]
    t = _ns["ctypes_table"]()
    p = ctypes.cast(t, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
    base = sys.getrefcount(p)
    m = IndirectMemory2D.from_ctype_ptr(p, 3, 4)
    assert sys.getrefcount(p) > base
    m.release()
    # Also not left in a reference cycle (that only the cyclic GC could free).
    assert sys.getrefcount(p) == base


@pytest.mark.parametrize("how", ["from_address", "from_ctype_ptr"])
def test_release_drops_nanny_now(how):
    ctypes = _ns["ctypes"]
    t = _ns["ctypes_table"]()
    nanny = _ns["PyNanny"](t)
    gone = weakref.ref(nanny)
    if how == "from_address":
        m = IndirectMemory2D.from_address(ctypes.addressof(t), 3, 4, "d", memory_nanny=nanny)
    else:
        m = IndirectMemory2D.from_ctype_ptr(t, 3, 4, memory_nanny=nanny)
    del nanny
    view = memoryview(m)
    assert gone() is not None
    with pytest.raises(BufferError):
        m.release()
    assert gone() is not None
    view.release()
    m.release()
    assert gone() is None  # dropped by release(), while m itself is still alive
    assert m.released


def test_release_unlocks_bytearray_rows_of_collection():
    rows = [bytearray(b"abcd") for _ in range(3)]
    bases = [sys.getrefcount(rows[i]) for i in range(3)]
    coll = BufferCollection2D(rows)
    with pytest.raises(BufferError):
        rows[1].append(0)  # the collection holds the row buffers
    view = memoryview(coll)
    with pytest.raises(BufferError):
        coll.release()
    with pytest.raises(BufferError):
        rows[1].append(0)
    view.release()
    coll.release()
    for i in range(3):
        rows[i].extend(b"xyz")  # resizable again, while coll itself is still alive
    assert [sys.getrefcount(rows[i]) for i in range(3)] == bases
    assert coll.released


@pytest.mark.parametrize("bad", [bytearray(5), b"abc", object(), memoryview(bytes(8))[::2],
                                 array.array("i", [1, 2, 3, 4])])
def test_failed_collection_gives_back_rows_acquired_before_the_error(bad):
    rows = [bytearray(4) for _ in range(6)]
    bases = [sys.getrefcount(rows[i]) for i in range(6)]
    with pytest.raises((BufferError, TypeError)):
        BufferCollection2D(rows[:4] + [bad] + rows[4:])  # the 5th row is bad
    gc.collect()
    for i in range(6):
        rows[i].append(1)  # no buffer is still held
    assert [sys.getrefcount(rows[i]) for i in range(6)] == bases


@pytest.mark.parametrize("columns", [False, True])
def test_release_unlocks_source_of_row_and_column_views(columns):
    a = np.arange(12.0).reshape(3, 4)
    src = np.asfortranarray(a) if columns else a
    base = sys.getrefcount(src)
    v = (IndirectMemory2D.view_from_columns if columns else IndirectMemory2D.view_from_rows)(src)
    assert sys.getrefcount(src) > base
    v.release()
    assert sys.getrefcount(src) == base
    ba = bytearray(b"abcdef")
    r = IndirectMemory2D.view_from_rows(ba)
    with pytest.raises(BufferError):
        ba.append(0)
    r.release()
    ba.append(0)


@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer keeps freed memory in quarantine")
def test_release_frees_owned_memory_now():
    child("""
        import os
        PAGE = os.sysconf("SC_PAGE_SIZE")
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * PAGE
        size = 64 * 2 ** 20
        m = IndirectMemory2D.create_memory(1024, size // (1024 * 8), "d")
        np.asarray(m.direct_view()).fill(1.0)  # touch every page
        gc.collect()
        assert m.export_count == 0
        before = rss()
        m.release()
        after = rss()
        assert before - after > size * 3 // 4, (before, after)
        assert m.released  # m itself is still alive
        print("ok")
    """)


def test_uninitialised_objects_refuse_exports():
    m = IndirectMemory2D.__new__(IndirectMemory2D)
    with pytest.raises(ValueError):
        memoryview(m)
    with pytest.raises(ValueError):
        _ = m.shape
    c = BufferCollection2D.__new__(BufferCollection2D)
    with pytest.raises(ValueError):
        memoryview(c)


def test_to_numpy_result_outlives_release():
    m = IndirectMemory2D.create_memory(2, 3, "d")
    m.copy_from(np.arange(6.0).reshape(2, 3))
    a = m.to_numpy()
    c = m.copy()
    m.release()
    gc.collect()
    np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(c.to_numpy(), a)


def test_direct_view_collected_in_a_cycle_releases_its_export():
    """A direct view that dies in a reference cycle gives back its export (gc order)."""
    child("""
        m = IndirectMemory2D.create_memory(2, 4, "i")
        for _ in range(3):
            dv = m.direct_view()
            cycle = [dv]
            cycle.append(cycle)
            del dv, cycle
            gc.collect()
        assert m.export_count == 0, m.export_count
        m.release()
        print("ok")
    """)


def test_direct_exporter_geometry_follows_reinterpret_data():
    """mv.obj of a direct view is re-exportable: it must not keep the old shape/itemsize."""
    child("""
        m = IndirectMemory2D.create_memory(2, 4, "i")
        m.copy_from(np.arange(8, dtype=np.intc).reshape(2, 4))
        dv = m.direct_view()
        exporter = dv.obj
        dv.release()
        m.reinterpret_data("q")  # 2 x 2 elements of 8 bytes: 32 bytes, as before
        try:
            v = memoryview(exporter)
        except (BufferError, ValueError):
            print("refused")
        else:
            assert v.nbytes <= 2 * 4 * 4, (v.shape, v.strides, v.itemsize, v.nbytes)
            assert (v.shape, v.format, v.itemsize) == (m.shape, m.format, m.itemsize), \\
                (v.shape, v.format, v.itemsize, m.shape)
            assert v.tobytes() == np.arange(8, dtype=np.intc).tobytes()
        print("ok")
    """)


# ---------------------------------------------------------------------------------------------
# pickling and copying
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_pickle_refused_all_protocols(kind):
    m, _ = make(kind)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="raw pointer"):
            pickle.dumps(m, protocol=protocol)
        with pytest.raises(TypeError, match="raw pointer"):
            pickle.dumps([1, {"x": m}], protocol=protocol)
        with pytest.raises(TypeError):
            m.__reduce_ex__(protocol)
    with pytest.raises(TypeError):
        m.__reduce__()
    with pytest.raises(TypeError, match="raw pointer"):
        copy.copy(m)
    with pytest.raises(TypeError, match="raw pointer"):
        copy.deepcopy(m)
    with pytest.raises(TypeError, match="raw pointer"):
        copy.deepcopy([m])
    view = memoryview(m)
    with pytest.raises(TypeError):
        pickle.dumps(view)
    view.release()
    m.release()
    with pytest.raises(TypeError):
        pickle.dumps(m)


@pytest.mark.parametrize("cls", ["FreeRowsAndTableNanny", "FreeTableNanny", "DeallocatorNanny"])
def test_pickle_and_copy_of_nannies_refused(cls):
    nanny = getattr(nannies, cls)()  # no table: deallocation is a no-op
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="raw pointer"):
            pickle.dumps(nanny, protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(nanny)
    with pytest.raises(TypeError):
        copy.deepcopy(nanny)


def test_pickle_refused_for_nanny_managed_c_memory(cython_builder):
    helper = leak_helper(cython_builder)
    for nanny in ("hand", "dealloc", "free_rows"):
        m = helper.wrap_c_table(2, 3, nanny)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError):
                pickle.dumps(m, protocol=protocol)
        with pytest.raises(TypeError):
            copy.deepcopy(m)


def test_pickle_refused_for_direct_view_exporter():
    """The object behind a direct view (mv.obj) has no pickle path that reads its memory."""
    child("""
        m = IndirectMemory2D.create_memory(1, 64, "B")
        m.copy_from(np.full((1, 64), 0xAB, dtype=np.uint8))  # no NUL byte to stop a strlen
        dv = m.direct_view()
        exporter = dv.obj
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            expect(TypeError, "", pickle.dumps, exporter, protocol)
            expect(TypeError, "", exporter.__reduce_ex__, protocol)
        expect(TypeError, "", copy.copy, exporter)
        expect(TypeError, "", copy.deepcopy, exporter)
        dv.release()
        m.release()
        # The data is freed now: a reduce that read it would be a use-after-free.
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            expect(TypeError, "", exporter.__reduce_ex__, protocol)
        print("ok")
    """)


@pytest.mark.parametrize("kind", KINDS)
def test_copy_method_returns_an_owned_copy(kind):
    m, expected = make(kind)
    c = m.copy()
    assert type(c) is IndirectMemory2D
    assert (c.shape, c.format, c.readonly) == (m.shape, m.format, m.readonly)
    assert memoryview(c).tobytes() == expected.tobytes()
    # Owned: independent data, rows back to back (direct_view works), survives the source.
    changed = expected.copy()
    changed[0, 0] = 99
    memoryview(c)[0, 0] = changed[0, 0].item()
    assert memoryview(m).tobytes() == expected.tobytes()
    m.release()
    gc.collect()
    assert np.asarray(c.direct_view()).tobytes() == changed.tobytes()
    np.testing.assert_array_equal(c.to_numpy(), changed)


def test_copy_method_readonly_flag():
    m = IndirectMemory2D.create_memory(2, 2, "i", readonly=True)
    c = m.copy()
    assert c.readonly
    w = m.copy(readonly=False)
    assert not w.readonly
    memoryview(w)[1, 1] = 7
    assert memoryview(m)[1, 1] == 0
    assert IndirectMemory2D.create_memory(2, 2, "i").copy(readonly=True).readonly
    b = BufferCollection2D([b"ab", b"cd"])  # read-only rows
    assert b.copy().readonly and not b.copy(readonly=False).readonly


# ---------------------------------------------------------------------------------------------
# interpreter shutdown
# ---------------------------------------------------------------------------------------------

def assert_clean_exit(proc):
    assert proc.returncode == 0
    assert proc.stderr == "", proc.stderr


def test_shutdown_with_objects_and_views_in_globals():
    proc = child("""
        objs = {k: make(k)[0] for k in KINDS}
        views = [memoryview(o) for o in objs.values()]
        nd = [_testbuffer.ndarray(o, getbuf=_testbuffer.PyBUF_FULL_RO) for o in objs.values()]
        direct = [objs[k].direct_view() for k in sorted(BACK_TO_BACK)]
        arrays = [np.asarray(objs[k].direct_view()) for k in sorted(BACK_TO_BACK)]
        exporters = [d.obj for d in direct]
        released = make("create_memory")[0]
        released.release()
        ro = IndirectMemory2D.create_memory(2, 2, "d", readonly=True)
        ro_view = memoryview(ro)
        print("exiting")
    """)
    assert_clean_exit(proc)
    assert proc.stdout.strip() == "exiting"


def test_shutdown_with_objects_in_reference_cycles():
    proc = child("""
        class CycleNanny:
            # A nanny that refers back to the object it keeps alive, and holds views of it.
            def __init__(self, table):
                self.table = table
                self.mem = None
                self.views = []

        class ReadsAtFinalisation:
            # Reads through its view when finalised (PEP 442: before the cycle is cleared).
            def __init__(self, view, expected):
                self.view, self.expected, self.me = view, expected, self

            def __del__(self):
                assert self.view.tobytes() == self.expected, "data changed before finalisation"

        t = ctypes_table()
        nanny = CycleNanny(t)
        nanny.mem = IndirectMemory2D.from_address(ctypes.addressof(t), 3, 4, "d",
                                                  memory_nanny=nanny)
        nanny.views += [memoryview(nanny.mem), nanny.mem.copy().direct_view()]
        del t, nanny

        for k in KINDS:
            m, expected = make(k)
            cycle = [m, memoryview(m), _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO)]
            if k in BACK_TO_BACK:
                cycle += [m.direct_view(), np.asarray(m.direct_view())]
            cycle.append(cycle)
            ReadsAtFinalisation(memoryview(m), expected.tobytes())
            del m, cycle

        d = {}
        d["self"] = d
        d["dv"] = IndirectMemory2D.create_memory(2, 2, "d").direct_view()
        del d
        keep = []
        keep.append(keep)
        keep.append(IndirectMemory2D.create_memory(2, 2, "d").direct_view())
        print("exiting")
    """)
    assert_clean_exit(proc)


def test_shutdown_with_daemon_thread_using_objects():
    proc = child("""
        import time
        started = threading.Event()

        def worker(objs):
            out = np.empty((3, 4))
            n = 0
            while True:
                for k, m in objs.items():
                    v = memoryview(m)
                    v.tobytes()
                    v.release()
                    nd = _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO)
                    del nd
                    if k in BACK_TO_BACK:
                        with m.direct_view() as dv:
                            dv.tobytes()
                        m.copy_to(out)
                n += 1
                if n == 3:
                    started.set()

        objs = {k: make(k)[0] for k in KINDS}
        t = threading.Thread(target=worker, args=(objs,), daemon=True)
        t.start()
        assert started.wait(30)
        del objs
        print("exiting")
    """)
    assert_clean_exit(proc)


def _helper_child(cython_builder, body):
    helper = leak_helper(cython_builder)
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, HELPER_DIR)
        import ib_leak_helper as helper
    """).replace("HELPER_DIR", repr(str(Path(helper.__file__).parent))) + textwrap.dedent(body)
    # IB_HELPER_TRACE: the C deallocator prints a line each time it frees a table.
    return child(code, before="import os\nos.environ['IB_HELPER_TRACE'] = '1'\n")


def test_shutdown_with_nannies_that_call_into_c(cython_builder):
    proc = _helper_child(cython_builder, """
        # Referenced only from module globals, with views alive.
        g_hand = helper.wrap_c_table(3, 4, "hand")
        g_dealloc = helper.wrap_c_table(3, 4, "dealloc")
        g_free_rows = helper.wrap_c_table(3, 4, "free_rows")
        g_views = [memoryview(g_hand), memoryview(g_dealloc),
                   _testbuffer.ndarray(g_free_rows, getbuf=_testbuffer.PyBUF_FULL_RO)]
        assert g_views[0][2, 3] == 11.0

        # In reference cycles, with views.
        for kind in ("hand", "dealloc", "free_rows"):
            m = helper.wrap_c_table(2, 5, kind)
            cycle = [m, memoryview(m), m.copy()]
            cycle.append(cycle)
            del m, cycle
        print("freed before exit:", helper.freed())
    """)
    assert_clean_exit(proc)
    assert "freed before exit: 0" in proc.stdout
    # The C deallocator really ran during shutdown: for the two globals and the two cycles
    # whose nannies call it ('free_rows' calls libc free directly).
    assert proc.stdout.count("ib_helper: freed a 3-row table") == 2, proc.stdout
    assert proc.stdout.count("ib_helper: freed a 2-row table") == 2, proc.stdout


def test_shutdown_with_daemon_thread_using_nanny_managed_c_memory(cython_builder):
    proc = _helper_child(cython_builder, """
        started = threading.Event()

        def worker(objs):
            n = 0
            while True:
                for m in objs:
                    v = memoryview(m)
                    assert v[1, 0] == 4.0
                    v.release()
                    m.copy().release()
                n += 1
                if n == 3:
                    started.set()

        t = threading.Thread(target=worker, args=([helper.wrap_c_table(3, 4, k)
                                                   for k in ("hand", "dealloc", "free_rows")],),
                             daemon=True)
        t.start()
        g = helper.wrap_c_table(3, 4, "hand")
        g_view = memoryview(g)
        assert started.wait(30)
        print("exiting")
    """)
    assert_clean_exit(proc)
