"""Hardening, third round (issue 21): one regression test per class, in every route it reaches.

1. A borrowed Py_buffer goes back exactly as it was filled. A C-level exporter (Cython,
   compiled at test time) snapshots every Py_buffer it fills and, when it is given back,
   compares every field (buf, obj, len, itemsize, readonly, ndim, format, shape, strides,
   suboffsets, internal) and the whole struct byte for byte; it records each difference where
   Python can read it. Every constructor that holds another object's buffer is driven with
   it: view_from_rows / view_from_columns, IndirectMemory.view_from_array,
   BufferCollection2D, as_indirect (2-D and with indirect=), the copy engine, the C API's
   ib_table_acquire and the pybind11 caster ib::table<T>. On Python 3.12+ a NumPy subclass
   that defines only __release_buffer__ and reads the memoryview it is handed (which, before
   the fix, was made from a Py_buffer whose shape and strides were NULL: SEGV) runs through
   every Python route in a fresh interpreter.
2. A caller's argument is read once. One-shot iterables (iter, generator, map) for every
   sequence-typed argument (shape, indirect, offsets, a collection's rows) give exactly what
   a list gives, on every path of as_indirect (zero-copy view, the owned-copy fall-backs for
   non-contiguous, PIL-style and IndirectMemory sources, format conversion, nested
   sequences); elements with a counting __index__ are converted exactly once per call.
3. No internal sentinel is reachable: a negative row_offset is a ValueError in pinned()
   (2-D and N-D), in every cimport accessor and in the C API's ib_table_acquire, so a 1-based
   (Numerical-Recipes) table can no longer be pinned for 0-based code; 0 and the memory's own
   offset are accepted, and the address C gets reads the right elements.
4. Hostile integers: -1, -2**63, 2**63 and 2**64 for every integer argument of every public
   entry point (Python, cimport, C API), each in a fresh interpreter: a clear
   ValueError / MemoryError naming the value, or Python's own OverflowError (or TypeError),
   never a crash and never success.
"""
import ctypes
import gc
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect

try:
    import _testbuffer
except ImportError:  # a CPython built without its test modules
    _testbuffer = None

PEP688 = sys.version_info >= (3, 12)
needs_pep688 = pytest.mark.skipif(not PEP688, reason="__release_buffer__ in Python needs 3.12")
IB_COPY = 1
TESTS = Path(__file__).resolve().parent
# See tests/test_cpp_example.py: under an ASan preload without libstdc++ a C++ module aborts at
# its first throw; that file re-runs itself in a child which preloads both.
_PRELOAD = os.environ.get("LD_PRELOAD", "")
CPP_UNSAFE = "libasan" in _PRELOAD and "libstdc++" not in _PRELOAD


# =============================================================================================
# compiled helpers
# =============================================================================================

EXACT_PYX = r'''
# cython: language_level=3
"""ExactExporter: exports an array's memory and checks that each Py_buffer comes back as
filled. release_altered: a deliberately wrong consumer (the control that the check works)."""
from cpython.buffer cimport PyBUF_FULL_RO, PyBUF_STRIDES, PyBUF_WRITABLE, PyBUF_FORMAT
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release
from libc.stdint cimport uintptr_t

cdef extern from *:
    """
    #include <string.h>
    typedef struct { Py_buffer b; int live; } exact_snapshot;
    static void exact_save(exact_snapshot *s, const Py_buffer *v) {
        memcpy(&s->b, v, sizeof(Py_buffer));
        s->live = 1;
    }
    /* A bit per field that differs; bit 11: the struct's bytes differ. */
    static unsigned exact_diff(const exact_snapshot *s, const Py_buffer *v) {
        const Py_buffer *f = &s->b;
        unsigned m = 0;
        if (v->buf != f->buf) m |= 1u << 0;
        if (v->obj != f->obj) m |= 1u << 1;
        if (v->len != f->len) m |= 1u << 2;
        if (v->itemsize != f->itemsize) m |= 1u << 3;
        if (v->readonly != f->readonly) m |= 1u << 4;
        if (v->ndim != f->ndim) m |= 1u << 5;
        if (v->format != f->format) m |= 1u << 6;
        if (v->shape != f->shape) m |= 1u << 7;
        if (v->strides != f->strides) m |= 1u << 8;
        if (v->suboffsets != f->suboffsets) m |= 1u << 9;
        if (v->internal != f->internal) m |= 1u << 10;
        if (memcmp(v, f, sizeof(Py_buffer)) != 0) m |= 1u << 11;
        return m;
    }
    """
    ctypedef struct exact_snapshot:
        int live
    void exact_save(exact_snapshot* s, const Py_buffer* v)
    unsigned exact_diff(const exact_snapshot* s, const Py_buffer* v)

FIELDS = ["buf", "obj", "len", "itemsize", "readonly", "ndim", "format", "shape", "strides",
          "suboffsets", "internal", "struct bytes"]

cdef enum:
    SLOTS = 64


cdef class ExactExporter:
    """Exports `arr`'s memory with its shape, strides and format (an honest exporter: refuses
    requests without strides, contiguity it lacks, writable on read-only). Each Py_buffer it
    fills is snapshot; at release every field, the shape/strides/format it points to, and the
    struct's bytes must be as filled. Differences go to `mismatches`."""
    cdef exact_snapshot snaps[SLOTS]
    cdef Py_ssize_t shape_[8]
    cdef Py_ssize_t strides_[8]
    cdef Py_ssize_t shape0[8]
    cdef Py_ssize_t strides0[8]
    cdef int ndim
    cdef bytes fmt
    cdef Py_ssize_t itemsize, length
    cdef uintptr_t buf
    cdef bint readonly, c_contig, f_contig
    cdef object keep
    cdef public Py_ssize_t gets, releases
    cdef public list mismatches

    def __init__(self, arr, readonly=None):
        cdef int k
        mv = memoryview(arr)
        assert 1 <= mv.ndim <= 8 and mv.suboffsets == ()
        self.keep = arr
        self.ndim = mv.ndim
        for k in range(self.ndim):
            self.shape_[k] = self.shape0[k] = mv.shape[k]
            self.strides_[k] = self.strides0[k] = mv.strides[k]
        self.fmt = mv.format.encode()
        self.itemsize = mv.itemsize
        self.length = mv.nbytes
        self.buf = arr.__array_interface__["data"][0]
        self.readonly = mv.readonly if readonly is None else readonly
        self.c_contig = mv.c_contiguous
        self.f_contig = mv.f_contiguous
        self.mismatches = []
        mv.release()

    @property
    def live(self):
        return sum(1 for k in range(SLOTS) if self.snaps[k].live)

    def __getbuffer__(self, Py_buffer* view, int flags):
        cdef int k, slot = -1
        if (flags & PyBUF_STRIDES) != PyBUF_STRIDES:
            raise BufferError("ExactExporter: needs PyBUF_STRIDES")
        if (flags & PyBUF_WRITABLE) and self.readonly:
            raise BufferError("ExactExporter: read-only")
        if ((flags & 0x20) and not self.c_contig) or ((flags & 0x40) and not self.f_contig) \
                or ((flags & 0x80) and not (self.c_contig or self.f_contig)):
            raise BufferError("ExactExporter: not contiguous as requested")
        for k in range(SLOTS):
            if not self.snaps[k].live:
                slot = k
                break
        if slot < 0:
            raise BufferError("ExactExporter: too many live exports")
        view.buf = <void*>self.buf
        view.len = self.length
        view.readonly = self.readonly
        view.itemsize = self.itemsize
        view.format = <char*>self.fmt if flags & PyBUF_FORMAT else NULL
        view.ndim = self.ndim
        view.shape = self.shape_
        view.strides = self.strides_
        view.suboffsets = NULL
        view.internal = <void*>&self.snaps[slot]
        view.obj = self
        exact_save(&self.snaps[slot], view)
        self.gets += 1

    def __releasebuffer__(self, Py_buffer* view):
        cdef int k, slot = -1
        self.releases += 1
        for k in range(SLOTS):
            if self.snaps[k].live and view.internal == <void*>&self.snaps[k]:
                slot = k
                break
        if slot < 0:
            self.mismatches.append(f"internal {<uintptr_t>view.internal:#x} is not a buffer "
                                   "this exporter handed out")
            return
        self.snaps[slot].live = 0
        cdef unsigned m = exact_diff(&self.snaps[slot], view)
        bad = [FIELDS[k] for k in range(12) if m >> k & 1]
        for k in range(self.ndim):
            if self.shape_[k] != self.shape0[k] or self.strides_[k] != self.strides0[k]:
                bad.append(f"shape/strides values of dimension {k}")
        if bad:
            self.mismatches.append("given back changed: " + ", ".join(bad))


def release_altered(obj, str field):
    """Acquire obj's buffer, change one field, give it back (what the fixed bug did)."""
    cdef Py_buffer v
    PyObject_GetBuffer(obj, &v, PyBUF_FULL_RO)
    if field == "shape":
        v.shape = NULL
    elif field == "strides":
        v.strides = NULL
    elif field == "shape_and_strides":
        v.shape = v.strides = NULL
    elif field == "len":
        v.len += 1
    elif field == "ndim":
        v.ndim -= 1
    elif field == "format":
        v.format = NULL
    elif field == "buf":
        v.buf = <char*>v.buf + 1
    elif field == "shape_values":
        v.shape[0] += 1
    elif field == "internal":
        v.internal = NULL
    PyBuffer_Release(&v)
'''

ACCESSORS_PYX = r'''
# cython: language_level=3
"""The cimport API's row-offset and size arguments, callable from Python."""
from libc.stdint cimport uintptr_t
from indirect_buffer.buffer_impl cimport IndirectMemory, IndirectMemory2D


def checked_table(IndirectMemory mem, fmt, bint writable, Py_ssize_t row_offset):
    return <uintptr_t>mem.checked_table(fmt, writable, row_offset)


def checked_levels(IndirectMemory mem, fmt, bint writable, int levels, Py_ssize_t row_offset):
    return <uintptr_t>mem.checked_levels(fmt, writable, levels, row_offset)


def check_table_request(IndirectMemory mem, fmt, bint writable, Py_ssize_t row_offset):
    mem._check_table_request(fmt, writable, row_offset)


def typed(IndirectMemory mem, str name, bint writable, Py_ssize_t row_offset):
    if name == "double_table":
        return <uintptr_t>mem.double_table(writable, row_offset)
    if name == "float_table":
        return <uintptr_t>mem.float_table(writable, row_offset)
    if name == "int_table":
        return <uintptr_t>mem.int_table(writable, row_offset)
    if name == "long_table":
        return <uintptr_t>mem.long_table(writable, row_offset)
    if name == "longlong_table":
        return <uintptr_t>mem.longlong_table(writable, row_offset)
    if name == "uchar_table":
        return <uintptr_t>mem.uchar_table(writable, row_offset)
    if name == "double_table3":
        return <uintptr_t>mem.double_table3(writable, row_offset)
    if name == "float_table3":
        return <uintptr_t>mem.float_table3(writable, row_offset)
    if name == "int_table3":
        return <uintptr_t>mem.int_table3(writable, row_offset)
    if name == "uchar_table3":
        return <uintptr_t>mem.uchar_table3(writable, row_offset)
    raise KeyError(name)


def from_ptr_with_offset(uintptr_t address, Py_ssize_t rows, Py_ssize_t cols, fmt, nanny,
                         Py_ssize_t row_offset):
    return IndirectMemory2D.from_ptr_with_offset(<void*>address, rows, cols, fmt, 0, nanny,
                                                 row_offset)


def create(Py_ssize_t rows, Py_ssize_t cols, fmt):
    return IndirectMemory2D.create(rows, cols, fmt, 0)


def create_nd(shape, fmt, unsigned int indirect):
    cdef Py_ssize_t shp[8]
    cdef int k, n = len(shape)
    assert 0 <= n <= 8
    for k in range(n):
        shp[k] = shape[k]
    return IndirectMemory.create_nd(n, shp, fmt, indirect, 0)


def dim(IndirectMemory mem, int d):
    return mem.dim(d)
'''


def _cached_build(builder, name, *args, **kwargs):
    """A module built once per process (rebuilding a loaded extension in place could crash)."""
    return sys.modules.get(name) or builder(name, *args, **kwargs)


@pytest.fixture(scope="module")
def exact(cython_builder):
    return _cached_build(cython_builder, "ib_h3_exact", EXACT_PYX)


@pytest.fixture(scope="module")
def accessors(cython_builder):
    return _cached_build(cython_builder, "ib_h3_accessors", ACCESSORS_PYX)


@pytest.fixture(scope="module")
def capi(c_extension_builder):
    sources = {p.name: p.read_text() for p in (TESTS / "capi_module").glob("ib_capi_*.c")}
    return _cached_build(c_extension_builder, "ib_capi_test", sources)


@pytest.fixture(scope="module")
def pb(c_extension_builder):
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 is in tests/requirements.txt")
    if CPP_UNSAFE:
        pytest.skip("C++ modules need libstdc++ preloaded with libasan (test_cpp_example.py)")
    path = TESTS / "capi_module" / "ib_pybind11_test.cpp"
    return _cached_build(c_extension_builder, "ib_pybind11_test", {path.name: path.read_text()},
                         include_dirs=[pybind11.get_include()], cplusplus=True,
                         extra_compile_args=["-fvisibility=hidden"])


def build_dir(mod):
    return str(Path(mod.__file__).resolve().parent)


# =============================================================================================
# 1. Borrowed Py_buffers go back exactly as they were filled
# =============================================================================================

A2 = np.arange(12.0).reshape(3, 4)
A3 = np.arange(24.0).reshape(2, 3, 4)


def _as_nd(result):
    """The data of whatever a route returned, as NumPy (to compare with the source)."""
    if isinstance(result, IndirectMemory):
        return result.to_numpy()
    return np.asarray(result)


# route name -> (make the source arrays, call the route on ExactExporters of them, expected)
# Each route returns something holding the exporters' buffers (or a value read through them).
def _routes_python():
    a2f = np.asfortranarray(A2.T)  # view_from_columns: its columns are contiguous
    strided = np.arange(24.0).reshape(3, 8)[:, ::2]
    strided3 = np.arange(48.0).reshape(2, 3, 8)[:, :, ::2]
    return {
        "view_from_rows": (
            [A2], lambda e: IndirectMemory2D.view_from_rows(e[0]), A2),
        "view_from_rows_readonly": (
            [A2], lambda e: IndirectMemory2D.view_from_rows(e[0], readonly=True), A2),
        "view_from_rows_3d": (
            [A3], lambda e: IndirectMemory2D.view_from_rows(e[0]), A3.reshape(2, 12)),
        "view_from_columns": (
            [a2f], lambda e: IndirectMemory2D.view_from_columns(e[0]), A2),
        "view_from_array_3d": (
            [A3], lambda e: IndirectMemory.view_from_array(e[0]), A3),
        "view_from_array_frames": (
            [A3], lambda e: IndirectMemory.view_from_array(e[0], indirect=(0,)), A3),
        "view_from_array_2d": (
            [A2], lambda e: IndirectMemory.view_from_array(e[0], readonly=True), A2),
        "collection_1d_rows": (
            [A2[0].copy(), A2[1].copy(), A2[2].copy()],
            lambda e: BufferCollection2D(e), A2),
        "collection_2d_rows_unravelled": (
            [A3[0].copy(), A3[1].copy()], lambda e: BufferCollection2D(e), A3.reshape(2, 12)),
        "as_indirect_2d_view": ([A2], lambda e: as_indirect(e[0]), A2),
        "as_indirect_2d_writable": ([A2], lambda e: as_indirect(e[0], readonly=False), A2),
        "as_indirect_2d_copy": ([strided], lambda e: as_indirect(e[0]), strided),
        "as_indirect_2d_convert": ([A2], lambda e: as_indirect(e[0], format="f"), A2),
        "as_indirect_nd_view": ([A3], lambda e: as_indirect(e[0], indirect=(0, 1)), A3),
        "as_indirect_nd_frames": ([A3], lambda e: as_indirect(e[0], indirect=[0]), A3),
        "as_indirect_nd_copy": ([strided3], lambda e: as_indirect(e[0], indirect=(0,)),
                                strided3),
        "as_indirect_nd_convert": ([A3], lambda e: as_indirect(e[0], format="i",
                                                               indirect=(0, 1)), A3),
        "copy_from_2d": ([A2], lambda e: _copied_from(IndirectMemory2D.create_memory(
            3, 4, "d"), e[0]), A2),
        "copy_from_nd": ([A3], lambda e: _copied_from(IndirectMemory.create_memory(
            (2, 3, 4), "d"), e[0]), A3),
        "copy_to_2d": ([np.zeros((3, 4))], lambda e: _copied_to(A2, e[0]), A2),
    }


def _copied_from(mem, source):
    mem.copy_from(source)
    return mem


def _copied_to(values, exporter):
    """mem.copy_to(exporter); returns the exporter's array (what was written)."""
    mem = IndirectMemory2D.create_memory(*values.shape, "d")
    mem.copy_from(values)
    mem.copy_to(exporter)
    return exporter_array(exporter)


def exporter_array(exporter):
    return np.asarray(memoryview(exporter)).copy()


PY_ROUTES = sorted(_routes_python())


def _check_exporters(exporters):
    gc.collect()
    for e in exporters:
        assert e.mismatches == [], e.mismatches
        assert e.gets >= 1, "the route never acquired the exporter's buffer"
        assert e.gets == e.releases and e.live == 0, (e.gets, e.releases, e.live)


@pytest.mark.parametrize("field", ["shape", "strides", "shape_and_strides", "len", "ndim",
                                   "format", "buf", "shape_values", "internal"])
def test_control_the_exact_exporter_notices_every_changed_field(exact, field):
    """The check itself can fail: a consumer that changes one field before giving the buffer
    back (as the fixed bug did with shape and strides) is recorded."""
    e = exact.ExactExporter(A2.copy())
    exact.release_altered(e, field)
    assert e.gets == e.releases == 1
    assert len(e.mismatches) == 1, e.mismatches
    expected = {"shape_and_strides": "shape, strides", "shape_values": "values of dimension 0",
                "internal": "not a buffer this exporter handed out"}.get(field, field)
    assert expected in e.mismatches[0], e.mismatches
    e2 = exact.ExactExporter(A2.copy())
    exact.release_altered(e2, "nothing")
    assert e2.mismatches == [] and e2.gets == e2.releases == 1


@pytest.mark.parametrize("route", PY_ROUTES)
def test_python_routes_give_back_the_buffer_exactly_as_filled(exact, route):
    sources, call, expected = _routes_python()[route]
    exporters = [exact.ExactExporter(s.copy() if s.flags.c_contiguous else s)
                 for s in sources]
    result = call(exporters)
    np.testing.assert_array_equal(_as_nd(result), expected)
    del result
    _check_exporters(exporters)


def test_failed_constructions_give_back_the_buffer_exactly_as_filled(exact):
    """Refusals after the buffer was acquired give it back unchanged too."""
    ro = exact.ExactExporter(A3.copy(), readonly=True)
    with pytest.raises(BufferError, match="readonly=True"):
        IndirectMemory.view_from_array(ro)
    with pytest.raises(BufferError):
        IndirectMemory2D.view_from_rows(ro)  # read-only source, writable view asked
    strided = exact.ExactExporter(np.arange(48.0).reshape(2, 3, 8)[:, :, ::2])
    with pytest.raises(BufferError, match="not C-contiguous"):
        IndirectMemory.view_from_array(strided)
    with pytest.raises(BufferError):
        IndirectMemory2D.view_from_rows(strided)
    rows = [exact.ExactExporter(np.arange(3.0)), exact.ExactExporter(np.arange(4.0))]
    with pytest.raises(BufferError):
        BufferCollection2D(rows)  # rows of different lengths
    _check_exporters([ro, strided] + rows)


def test_capi_table_acquire_gives_back_the_buffer_exactly_as_filled(exact, capi):
    e = exact.ExactExporter(A2.copy())
    h = capi.acquire(e, b"d", 1, 0, 0)  # writable: the zero-copy row view
    assert capi.rows_bytes(h) == [A2[i].tobytes() for i in range(3)]
    capi.write_double(h, 2, 3, -1.5)
    capi.release(h)
    del h
    strided = exact.ExactExporter(np.arange(24.0).reshape(3, 8)[:, ::2])
    h = capi.acquire(strided, b"d", 0, 0, IB_COPY)  # not row-contiguous: an owned copy
    assert capi.rows_bytes(h) == [np.arange(24.0).reshape(3, 8)[i, ::2].tobytes()
                                  for i in range(3)]
    capi.release(h)
    del h
    ro = exact.ExactExporter(A2.copy(), readonly=True)
    with pytest.raises(BufferError, match="read-only"):
        capi.acquire(ro, b"d", 1, 0, 0)
    with pytest.raises(TypeError, match="not 'i'"):
        capi.acquire(ro, b"i", 0, 0, 0)
    assert exporter_array(e)[2, 3] == -1.5
    _check_exporters([e, strided, ro])


def test_pybind11_caster_gives_back_the_buffer_exactly_as_filled(exact, pb):
    e = exact.ExactExporter(A2.copy())
    assert pb.describe_const_double(e) == (3, 4, "d", True, float(A2.sum()))  # a read-only view
    assert pb.describe_double(e) == (3, 4, "d", False, float(A2.sum()))
    assert pb.acquire(e, False) == (3, 4)
    strided = exact.ExactExporter(np.arange(24.0).reshape(3, 8)[:, ::2])
    assert pb.acquire(strided, True) == (3, 4)  # IB_COPY
    assert pb.sum_without_gil(strided) == float(np.arange(24.0).reshape(3, 8)[:, ::2].sum())
    _check_exporters([e, strided])


# -- PEP 688: a NumPy subclass that only defines __release_buffer__ --------------------------

PEP688_CHILD = r'''
import gc, json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import _hostile
from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect
SEEN = []

class Reads(np.ndarray):
    """NumPy's export, and a Python __release_buffer__ that reads what it is handed."""
    def __release_buffer__(self, mv):
        SEEN.append([list(mv.shape), list(mv.strides), mv.format, mv.tolist()])

def sub(a):
    return np.array(a).view(Reads)

{body}
gc.collect()
print(json.dumps(SEEN))
'''

A2S = "np.arange(12.0).reshape(3, 4)"
A3S = "np.arange(24.0).reshape(2, 3, 4)"
A2F = f"np.asfortranarray({A2S}.T)"
# route -> (the subclass array's data, the call making r, what r holds)
PEP688_ROUTES = {
    "view_from_rows": (A2S, f"r = IndirectMemory2D.view_from_rows(sub({A2S}))", A2S),
    "view_from_rows_3d": (A3S, f"r = IndirectMemory2D.view_from_rows(sub({A3S}))",
                          f"{A3S}.reshape(2, 12)"),
    "view_from_columns": (A2F, f"r = IndirectMemory2D.view_from_columns({A2F}.view(Reads))",
                          A2S),
    "view_from_array": (A3S, f"r = IndirectMemory.view_from_array(sub({A3S}))", A3S),
    "view_from_array_frames": (
        A3S, f"r = IndirectMemory.view_from_array(sub({A3S}), indirect=(0,))", A3S),
    "collection_2d_rows": (f"{A3S}[1]", f"r = BufferCollection2D([sub({A3S}[1])])",
                           f"{A3S}[1].reshape(1, 12)"),
    "as_indirect": (A2S, f"r = as_indirect(sub({A2S}))", A2S),
    "as_indirect_nd": (A3S, f"r = as_indirect(sub({A3S}), indirect=(0, 1))", A3S),
    "as_indirect_nd_convert": (A3S, f"r = as_indirect(sub({A3S}), format='f', indirect=[0])",
                               A3S),
    "capi": (A2S, f"capi = _hostile.load_module('ib_capi_test', CAPI)\n"
                  f"capi.release(capi.acquire(sub({A2S}), b'd', 1, 0, 0))\nr = None", A2S),
}


@needs_pep688
@pytest.mark.parametrize("route", sorted(PEP688_ROUTES))
def test_pep688_release_buffer_reads_what_it_was_handed(capi, route):
    source, body, result = PEP688_ROUTES[route]
    code = PEP688_CHILD.format(tests=str(TESTS), body=textwrap.dedent(f"""
        CAPI = {build_dir(capi)!r}
        {body.replace(chr(10), chr(10) + '        ')}
        assert r is None or r.to_numpy().tolist() == ({result}).tolist()
        del r
        """))
    proc = run_python(code)  # a SEGV (the bug) fails here
    assert "Exception ignored" not in proc.stderr, proc.stderr  # __release_buffer__ raised
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    want = np.asarray(eval(source, {"np": np}))  # noqa: S307 -- our own constant
    assert seen, "__release_buffer__ never ran"
    for shape, strides, fmt, values in seen:
        assert (tuple(shape), tuple(strides), fmt) == (want.shape, want.strides, "d")
        assert values == want.tolist()


# =============================================================================================
# 2. A caller's argument is read once
# =============================================================================================

ONE_SHOT = {
    "iter": lambda values: iter(list(values)),
    "generator": lambda values: (v for v in list(values)),
    "map": lambda values: map(lambda v: v, list(values)),
}


class Counted:
    """An int whose __index__ counts its calls."""

    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __index__(self):
        self.calls += 1
        return self.value


def _table3(n0, n1, n2, offset):
    """A ctypes double*** of n0 x n1 x n2 (element value i*100 + j*10 + k) whose data starts
    `offset` bytes after every pointer; returns (address, keep)."""
    pad = offset // 8
    rows = [[(ctypes.c_double * (n2 + pad))(*([0.0] * pad + [i * 100 + j * 10 + k
                                                             for k in range(n2)]))
             for j in range(n1)] for i in range(n0)]
    tables = [(ctypes.c_void_p * (n1 + pad))(*([None] * pad + [ctypes.addressof(r)
                                                               for r in rows[i]]))
              for i in range(n0)]
    root = (ctypes.c_void_p * n0)(*[ctypes.addressof(t) for t in tables])
    return ctypes.addressof(root), (root, tables, rows)


T3_VALUES = np.array([[[i * 100 + j * 10 + k for k in range(4)] for j in range(3)]
                      for i in range(2)], dtype=float)


def _ctypes_table3():
    P = ctypes.POINTER(ctypes.c_double)
    PP = ctypes.POINTER(P)
    return (PP * 2)(*[ctypes.cast((P * 3)(*[ctypes.cast((ctypes.c_double * 4)(
        *[i * 100 + j * 10 + k for k in range(4)]), P) for j in range(3)]), PP)
        for i in range(2)])


def _pil3():
    """A 2 x 3 x 4 PIL-style _testbuffer ndarray (suboffsets in dimension 0) of 'd'."""
    return _testbuffer.ndarray([float(v) for v in range(24)], shape=[2, 3, 4], format="d",
                               flags=_testbuffer.ND_PIL)


def _pinned_address(mem, make):
    with mem.pinned("d", offsets=make((8, 8))) as address:
        return address


_ONE_BASED3 = _table3(2, 3, 4, 8)
_MEM3_ONE_BASED = IndirectMemory.from_address(_ONE_BASED3[0], (2, 3, 4), "d",
                                              memory_nanny=_ONE_BASED3[1], offsets=(8, 8))
_CT3 = _ctypes_table3()

# name -> (call(make) where make turns a tuple of ints into the argument, expected data)
SEQUENCE_CASES = {
    "create_memory_shape": (
        lambda make: IndirectMemory.create_memory(make((2, 3, 4)), "d"), np.zeros((2, 3, 4))),
    "create_memory_indirect": (
        lambda make: IndirectMemory.create_memory((2, 3, 4), "d", indirect=make((1,))),
        np.zeros((2, 3, 4))),
    "from_address_shape": (
        lambda make: IndirectMemory.from_address(_ONE_BASED3[0], make((2, 3, 4)), "d",
                                                 memory_nanny=_ONE_BASED3[1], offsets=(8, 8)),
        T3_VALUES),
    "from_address_indirect": (
        lambda make: IndirectMemory.from_address(_ONE_BASED3[0], (2, 3, 4), "d",
                                                 indirect=make((0, 1)),
                                                 memory_nanny=_ONE_BASED3[1], offsets=(8, 8)),
        T3_VALUES),
    "from_address_offsets": (
        lambda make: IndirectMemory.from_address(_ONE_BASED3[0], (2, 3, 4), "d",
                                                 memory_nanny=_ONE_BASED3[1],
                                                 offsets=make((8, 8))),
        T3_VALUES),
    "from_ctype_ptr_shape": (
        lambda make: IndirectMemory.from_ctype_ptr(_CT3, make((2, 3, 4))), T3_VALUES),
    "from_ctype_ptr_offsets": (
        lambda make: IndirectMemory.from_ctype_ptr(_CT3, (2, 3, 4), offsets=make((0, 0))),
        T3_VALUES),
    "view_from_array_indirect": (
        lambda make: IndirectMemory.view_from_array(A3, indirect=make((0, 1))), A3),
    "view_from_array_frames": (
        lambda make: IndirectMemory.view_from_array(A3, indirect=make((0,))), A3),
    "as_indirect_view": (lambda make: as_indirect(A3, indirect=make((0, 1))), A3),
    "as_indirect_copy_non_contiguous": (
        lambda make: as_indirect(np.arange(48.0).reshape(2, 3, 8)[:, :, ::2],
                                 indirect=make((0, 1))),
        np.arange(48.0).reshape(2, 3, 8)[:, :, ::2]),
    "as_indirect_copy_non_contiguous_2d": (
        lambda make: as_indirect(np.arange(24.0).reshape(3, 8)[:, ::2], indirect=make((0,))),
        np.arange(24.0).reshape(3, 8)[:, ::2]),
    "as_indirect_convert_format": (
        lambda make: as_indirect(A3, format="f", indirect=make((0, 1))), A3),
    "as_indirect_convert_and_copy": (
        lambda make: as_indirect(np.arange(48.0).reshape(2, 3, 8)[:, :, ::2], format="i",
                                 indirect=make((0,))),
        np.arange(48.0).reshape(2, 3, 8)[:, :, ::2]),
    "as_indirect_relayout_memory": (
        lambda make: as_indirect(IndirectMemory.view_from_array(A3), indirect=make((1,))), A3),
    "as_indirect_nested_list": (lambda make: as_indirect(A3.tolist(), indirect=make((0,))),
                                A3),
    "pinned_offsets": (lambda make: _pinned_address(_MEM3_ONE_BASED, make), None),
}
if _testbuffer is not None:
    SEQUENCE_CASES["as_indirect_copy_pil"] = (
        lambda make: as_indirect(_pil3(), indirect=make((0, 1))), np.arange(24.0).reshape(2, 3, 4))
    SEQUENCE_CASES["as_indirect_pil_convert"] = (
        lambda make: as_indirect(_pil3(), format="f", indirect=make((1,))),
        np.arange(24.0).reshape(2, 3, 4))


def _describe(result):
    """Everything a call's result shows: geometry and data (or the value itself)."""
    if isinstance(result, IndirectMemory):
        return (type(result).__name__, result.shape, result.strides, result.suboffsets,
                result.indirect, result.format, result.readonly, result.to_numpy().tolist())
    return result


@pytest.mark.parametrize("kind", sorted(ONE_SHOT))
@pytest.mark.parametrize("case", sorted(SEQUENCE_CASES))
def test_one_shot_iterable_arguments_work_like_lists(case, kind):
    call, expected = SEQUENCE_CASES[case]
    want = call(list)
    if expected is not None:
        np.testing.assert_array_equal(want.to_numpy(), expected)
    assert _describe(call(ONE_SHOT[kind])) == _describe(want)
    assert _describe(call(tuple)) == _describe(want)


@pytest.mark.parametrize("case", sorted(SEQUENCE_CASES))
def test_each_element_is_converted_exactly_once(case):
    """A hostile __index__ runs once per element and call, on every path."""
    call, _ = SEQUENCE_CASES[case]
    made = []

    def make(values):
        made.extend(Counted(v) for v in values)
        return made[-len(values):]

    got = call(make)
    assert made and [c.calls for c in made] == [1] * len(made), \
        [(c.value, c.calls) for c in made]
    assert _describe(got) == _describe(call(list))


@pytest.mark.parametrize("kind", sorted(ONE_SHOT))
def test_collection_rows_may_be_a_one_shot_iterable(kind):
    rows = [np.arange(3.0), np.arange(3.0, 6.0), np.arange(6.0, 9.0)]
    want = BufferCollection2D(list(rows))
    got = BufferCollection2D(ONE_SHOT[kind](rows))
    assert _describe(got) == _describe(want)
    np.testing.assert_array_equal(got.to_numpy(), np.arange(9.0).reshape(3, 3))
    empty = BufferCollection2D(ONE_SHOT[kind]([]), column_count=4, format="d")
    assert empty.shape == (0, 4)
    # Zero-copy: the rows are the arrays' memory.
    memoryview(got)[1, 2] = -1.0
    assert rows[1][2] == -1.0


@pytest.mark.parametrize("kind", sorted(ONE_SHOT))
def test_one_shot_indirect_errors_are_the_list_errors(kind):
    """Wrong values in a one-shot argument are refused as they are in a list."""
    strided = np.arange(48.0).reshape(2, 3, 8)[:, :, ::2]
    for values, match in [((0, 0), "given twice"), ((2,), "out of range"),
                          ((), "at least one dimension")]:
        for source in (A3, strided):
            with pytest.raises(ValueError, match=match):
                as_indirect(source, indirect=list(values))
            with pytest.raises(ValueError, match=match):
                as_indirect(source, indirect=ONE_SHOT[kind](values))
    with pytest.raises(ValueError, match="offsets needs one value per indirect dimension"):
        IndirectMemory.from_ctype_ptr(_CT3, (2, 3, 4), offsets=ONE_SHOT[kind]((0,)))


# =============================================================================================
# 3. A negative row_offset is refused everywhere; 0 and the memory's own offset work
# =============================================================================================

NEGATIVE = [-1, -8, -2**63]


def one_based_2d():
    """A 2 x 3 'd' table whose rows start 8 bytes after each pointer (element i*3 + j)."""
    blocks = [(ctypes.c_double * 4)(-99.0, *[i * 3.0 + j for j in range(3)]) for i in range(2)]
    table = (ctypes.c_void_p * 2)(*[ctypes.addressof(b) for b in blocks])
    mem = IndirectMemory2D.from_address(ctypes.addressof(table), 2, 3, "d",
                                        memory_nanny=(table, blocks), row_offset=8)
    assert mem.row_offset == 8 and mem.suboffsets == (8, -1)
    np.testing.assert_array_equal(mem.to_numpy(), np.arange(6.0).reshape(2, 3))
    return mem


def read_2d(address, rows, cols, row_offset):
    """What 0-based C code given (address, row_offset) reads: t[i] + row_offset, then [j]."""
    table = (ctypes.c_void_p * rows).from_address(address)
    return [[ctypes.c_double.from_address(table[i] + row_offset + 8 * j).value
             for j in range(cols)] for i in range(rows)]


def read_3d(address, shape, offset):
    n0, n1, n2 = shape
    root = (ctypes.c_void_p * n0).from_address(address)
    out = []
    for i in range(n0):
        tab = (ctypes.c_void_p * n1).from_address(root[i] + offset)
        out.append([[ctypes.c_double.from_address(tab[j] + offset + 8 * k).value
                     for k in range(n2)] for j in range(n1)])
    return out


def _refused(func, value):
    with pytest.raises(ValueError, match=rf"row_offset must be >= 0, got {value}\b"):
        func()


@pytest.mark.parametrize("value", NEGATIVE)
def test_pinned_refuses_a_negative_row_offset_2d(value):
    for mem in (IndirectMemory2D.create_memory(2, 3, "d"), one_based_2d()):
        _refused(lambda: mem.pinned("d", row_offset=value).__enter__(), value)
        _refused(lambda: mem.pinned(row_offset=value).__enter__(), value)
        assert mem.export_count == 0
        mem.release()  # nothing stayed pinned


@pytest.mark.parametrize("value", NEGATIVE)
def test_pinned_refuses_a_negative_row_offset_nd(value):
    for mem in (IndirectMemory.create_memory((2, 3, 4), "d"), _fresh_one_based_3d(),
                IndirectMemory.create_memory((2, 3, 4), "d", indirect=(1,))):
        _refused(lambda: mem.pinned("d", row_offset=value).__enter__(), value)
        with pytest.raises(ValueError, match=rf"offsets\[0\] must be 0 to \d+, got {value}\b"):
            mem.pinned(offsets=[value] + [0] * (len(mem.indirect) - 1)).__enter__()
        assert mem.export_count == 0


def _fresh_one_based_3d():
    address, keep = _table3(2, 3, 4, 8)
    return IndirectMemory.from_address(address, (2, 3, 4), "d", memory_nanny=keep,
                                       offsets=(8, 8))


def test_pinned_one_based_table_needs_its_own_offset():
    mem = one_based_2d()
    with pytest.raises(ValueError, match="rows start 8 bytes after each row pointer"):
        mem.pinned("d", row_offset=0).__enter__()
    with mem.pinned("d", row_offset=8) as address:
        assert address == mem.address
        assert mem.export_count == 1
        assert read_2d(address, 2, 3, 8) == np.arange(6.0).reshape(2, 3).tolist()
    with pytest.raises(OverflowError):
        mem.pinned(row_offset=2**63)
    zero = IndirectMemory2D.create_memory(2, 3, "d")
    zero.copy_from(np.arange(6.0).reshape(2, 3))
    with zero.pinned("d", row_offset=0) as address:
        assert read_2d(address, 2, 3, 0) == np.arange(6.0).reshape(2, 3).tolist()
    mem3 = _fresh_one_based_3d()
    for kwargs in ({"row_offset": 0}, {"offsets": (0, 8)}, {"offsets": (8, 0)}):
        with pytest.raises(ValueError, match="starts 8 bytes after each"):
            mem3.pinned("d", **kwargs).__enter__()
    for kwargs in ({"row_offset": 8}, {"offsets": (8, 8)}):
        with mem3.pinned("d", **kwargs) as address:
            assert read_3d(address, (2, 3, 4), 8) == T3_VALUES.tolist()
    assert mem3.export_count == 0


TYPED_2D = [("double_table", "d"), ("float_table", "f"), ("int_table", "i"),
            ("long_table", "l"), ("longlong_table", "q"), ("uchar_table", "B")]
TYPED_3D = [("double_table3", "d"), ("float_table3", "f"), ("int_table3", "i"),
            ("uchar_table3", "B")]


@pytest.mark.parametrize("value", NEGATIVE)
def test_cimport_accessors_refuse_a_negative_row_offset(accessors, value):
    for name, fmt in TYPED_2D:
        mem = IndirectMemory2D.create_memory(2, 3, fmt)
        _refused(lambda: accessors.typed(mem, name, False, value), value)
        _refused(lambda: accessors.typed(mem, name, True, value), value)
        assert accessors.typed(mem, name, True, 0) == mem.address
    for name, fmt in TYPED_3D:
        mem = IndirectMemory.create_memory((2, 3, 4), fmt)
        _refused(lambda: accessors.typed(mem, name, False, value), value)
        assert accessors.typed(mem, name, False, 0) == mem.address
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    mem3 = IndirectMemory.create_memory((2, 3, 4), "d")
    for fmt in ("d", None):
        _refused(lambda: accessors.checked_table(mem, fmt, False, value), value)
        _refused(lambda: accessors.checked_levels(mem, fmt, False, 1, value), value)
        _refused(lambda: accessors.checked_levels(mem3, fmt, False, 2, value), value)
        _refused(lambda: accessors.check_table_request(mem, fmt, False, value), value)
        _refused(lambda: accessors.check_table_request(mem3, fmt, False, value), value)
    assert mem.export_count == mem3.export_count == 0


def test_cimport_accessors_on_one_based_tables(accessors):
    """From Cython, as from Python: a 1-based table only for its own offset."""
    mem = one_based_2d()
    blocks = [(ctypes.c_double * 4)(-99.0, *[10.0 * i + j for j in range(3)]) for i in range(2)]
    table = (ctypes.c_void_p * 2)(*[ctypes.addressof(b) for b in blocks])
    wrapped = accessors.from_ptr_with_offset(ctypes.addressof(table), 2, 3, "d",
                                             (table, blocks), 8)
    np.testing.assert_array_equal(wrapped.to_numpy(), [[0.0, 1, 2], [10, 11, 12]])
    with pytest.raises(ValueError, match="row_offset must be >= 0, got -8"):
        accessors.from_ptr_with_offset(ctypes.addressof(table), 2, 3, "d", None, -8)
    for m in (mem, wrapped):
        for value in NEGATIVE:
            _refused(lambda: accessors.typed(m, "double_table", False, value), value)
            _refused(lambda: accessors.checked_table(m, "d", False, value), value)
        with pytest.raises(ValueError, match="not 0 as requested"):
            accessors.typed(m, "double_table", False, 0)
        assert accessors.typed(m, "double_table", True, 8) == m.address
        assert accessors.checked_table(m, "d", False, 8) == m.address
        assert accessors.checked_levels(m, None, False, 1, 8) == m.address
    assert read_2d(wrapped.address, 2, 3, 8) == [[0.0, 1, 2], [10, 11, 12]]
    mem3 = _fresh_one_based_3d()
    _refused(lambda: accessors.typed(mem3, "double_table3", False, -1), -1)
    with pytest.raises(ValueError, match="not 0 as requested"):
        accessors.typed(mem3, "double_table3", False, 0)
    assert accessors.typed(mem3, "double_table3", False, 8) == mem3.address
    assert accessors.checked_levels(mem3, "d", True, 2, 8) == mem3.address


@pytest.mark.parametrize("value", NEGATIVE)
def test_capi_table_acquire_refuses_a_negative_row_offset(capi, value):
    one_based = capi.wrap_new(2, 3, b"d", 0, 8, "ok")
    assert one_based.row_offset == 8
    sources = [IndirectMemory2D.create_memory(2, 3, "d"), one_based, np.zeros((2, 3)),
               BufferCollection2D([np.zeros(3), np.zeros(3)]), [[1.0, 2.0], [3.0, 4.0]]]
    for obj in sources:
        for writable, flags in ((0, 0), (1, 0), (0, IB_COPY)):
            if isinstance(obj, list) and not flags:
                continue  # a sequence needs IB_COPY
            # acquire() also checks that ib_table_acquire zeroed *out on the way out.
            _refused(lambda: capi.acquire(obj, b"d", writable, value, flags), value)
            _refused(lambda: capi.acquire(obj, None, writable, value, flags), value)
        if isinstance(obj, IndirectMemory):
            assert obj.export_count == 0
    with pytest.raises(ValueError, match="not 0 as requested"):
        capi.acquire(one_based, b"d", 0, 0, 0)
    h = capi.acquire(one_based, b"d", 0, 8, 0)
    assert capi.fields(h)["row_offset"] == 8
    assert capi.rows_bytes(h) == [np.arange(3.0).tobytes(), np.arange(3.0, 6.0).tobytes()]
    capi.release(h)
    h = capi.acquire(np.arange(6.0).reshape(2, 3), b"d", 0, 0, 0)
    assert capi.fields(h)["row_offset"] == 0
    capi.release(h)
    del h, one_based
    gc.collect()


def test_pybind11_caster_takes_only_0_based_tables(pb, capi):
    """The caster asks for row_offset 0: a 1-based table is refused, not read 8 bytes off."""
    one_based = capi.wrap_new(2, 3, b"d", 0, 8, "ok")
    with pytest.raises((TypeError, ValueError)):
        pb.describe_const_double(one_based)
    assert one_based.export_count == 0
    zero = capi.wrap_new(2, 3, b"d", 0, 0, "ok")
    assert pb.describe_const_double(zero) == (2, 3, "d", False, 15.0)


# =============================================================================================
# 4. Hostile integers for every integer argument of every public entry point
# =============================================================================================

HOSTILE = [-1, -2**63, 2**63, 2**64]

SWEEP_CHILD = r'''
import ctypes, json, sys
sys.path.insert(0, {tests!r})
import numpy as np
import _hostile
from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect
P = ctypes.POINTER(ctypes.c_double)
T = (P * 2)(*[ctypes.cast((ctypes.c_double * 3)(), P) for _ in range(2)])
ADDR = ctypes.addressof(T)
PP = ctypes.POINTER(P)
T3 = (PP * 2)(*[ctypes.cast((P * 3)(*[ctypes.cast((ctypes.c_double * 4)(), P)
                                      for _ in range(3)]), PP) for _ in range(2)])
ADDR3 = ctypes.addressof(T3)
MEM = IndirectMemory2D.create_memory(2, 3, "d")
MEM3 = IndirectMemory.create_memory((2, 3, 4), "d")
acc = _hostile.load_module("ib_h3_accessors", {accessors!r})
capi = _hostile.load_module("ib_capi_test", {capi!r})
out = []
for v in {values!r}:
    try:
        r = ({expr})
    except BaseException as exc:
        out.append([v, type(exc).__name__, str(exc)])
    else:
        out.append([v, None, repr(r)])
print(json.dumps(out))
'''

# entry point and argument -> expression of v (the hostile value)
SWEEP = {
    # Python, 2-D
    "create_memory.rows": 'IndirectMemory2D.create_memory(v, 3, "d")',
    "create_memory.cols": 'IndirectMemory2D.create_memory(2, v, "d")',
    "from_address.rows": 'IndirectMemory2D.from_address(ADDR, v, 3, "d", memory_nanny=T)',
    "from_address.cols": 'IndirectMemory2D.from_address(ADDR, 2, v, "d", memory_nanny=T)',
    "from_address.row_offset": ('IndirectMemory2D.from_address(ADDR, 2, 3, "d", '
                                'memory_nanny=T, row_offset=v)'),
    "from_ctype_ptr.rows": "IndirectMemory2D.from_ctype_ptr(T, v, 3)",
    "from_ctype_ptr.cols": "IndirectMemory2D.from_ctype_ptr(T, 2, v)",
    "from_ctype_ptr.row_offset": "IndirectMemory2D.from_ctype_ptr(T, 2, 3, row_offset=v)",
    "BufferCollection2D.column_count": 'BufferCollection2D([b"ab"], column_count=v)',
    "pinned.row_offset": 'MEM.pinned("d", row_offset=v).__enter__()',
    # Python, N-D
    "nd.create_memory.shape0": 'IndirectMemory.create_memory((v, 3, 4), "d")',
    "nd.create_memory.shape2": 'IndirectMemory.create_memory((2, 3, v), "d")',
    "nd.create_memory.indirect": 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=(v,))',
    "nd.from_address.shape": 'IndirectMemory.from_address(ADDR3, (2, v, 4), "d", memory_nanny=T3)',
    "nd.from_address.indirect": ('IndirectMemory.from_address(ADDR3, (2, 3, 4), "d", '
                                 'indirect=(0, v), memory_nanny=T3)'),
    "nd.from_address.offsets": ('IndirectMemory.from_address(ADDR3, (2, 3, 4), "d", '
                                'memory_nanny=T3, offsets=(0, v))'),
    "nd.from_ctype_ptr.shape": "IndirectMemory.from_ctype_ptr(T3, (v, 3, 4))",
    "nd.from_ctype_ptr.offsets": "IndirectMemory.from_ctype_ptr(T3, (2, 3, 4), offsets=(v, 0))",
    "nd.view_from_array.indirect": "IndirectMemory.view_from_array(np.zeros((2, 3, 4)), "
                                   "indirect=(v,))",
    "nd.as_indirect.indirect": "as_indirect(np.zeros((2, 3, 4)), indirect=(0, v))",
    "nd.as_indirect.indirect_copy": "as_indirect(np.zeros((2, 3, 8))[:, :, ::2], indirect=(v,))",
    "nd.pinned.row_offset": 'MEM3.pinned("d", row_offset=v).__enter__()',
    "nd.pinned.offsets": 'MEM3.pinned("d", offsets=(0, v)).__enter__()',
    # cimport
    "cimport.create.rows": 'acc.create(v, 3, "d")',
    "cimport.create.cols": 'acc.create(2, v, "d")',
    "cimport.create_nd.shape": 'acc.create_nd([2, v, 4], "d", 0)',
    "cimport.from_ptr_with_offset.row_offset": 'acc.from_ptr_with_offset(ADDR, 2, 3, "d", T, v)',
    "cimport.from_ptr_with_offset.rows": 'acc.from_ptr_with_offset(ADDR, v, 3, "d", T, 0)',
    "cimport.checked_table.row_offset": 'acc.checked_table(MEM, "d", False, v)',
    "cimport.checked_levels.row_offset": 'acc.checked_levels(MEM3, "d", False, 2, v)',
    "cimport.double_table.row_offset": 'acc.typed(MEM, "double_table", False, v)',
    "cimport.double_table3.row_offset": 'acc.typed(MEM3, "double_table3", False, v)',
    "cimport.dim.d": "acc.dim(MEM3, v)",
    # C API (the test module's own argument parsing refuses what is no Py_ssize_t)
    "capi.create.rows": 'capi.create(v, 3, b"d", 0)',
    "capi.create.cols": 'capi.create(2, v, b"d", 0)',
    "capi.table_acquire.row_offset": 'capi.acquire(MEM, b"d", 0, v, 0)',
    "capi.table_acquire.row_offset_of_array": 'capi.acquire(np.zeros((2, 3)), b"d", 0, v, 0)',
}
# Every address that is not a pointer value at all (any value that is one is trusted: a raw
# address cannot be checked beyond that).
SWEEP["from_address.address"] = 'IndirectMemory2D.from_address(v, 2, 3, "d")'
SWEEP["nd.from_address.address"] = 'IndirectMemory.from_address(v, (2, 3, 4), "d")'
ADDRESS_VALUES = [-1, -2**63, 2**64, 2**65]
SWEEP_VALUES = {
    "from_address.address": ADDRESS_VALUES,
    "nd.from_address.address": ADDRESS_VALUES,
    # -1 asks for the columns of the first row (documented): -2 is the first wrong value.
    "BufferCollection2D.column_count": [-2, -2**63, 2**63, 2**64],
}
# Arguments that are a C int, not a Py_ssize_t (Python's OverflowError beyond its range).
C_INT = {"cimport.dim.d"}


def _named(value, message):
    return str(value) in message


@pytest.mark.parametrize("entry", sorted(SWEEP))
def test_hostile_integers_are_refused_clearly(entry, accessors, capi):
    values = SWEEP_VALUES.get(entry, HOSTILE)
    code = SWEEP_CHILD.format(tests=str(TESTS), accessors=build_dir(accessors),
                              capi=build_dir(capi), values=values, expr=SWEEP[entry])
    proc = run_python(code)  # a crash fails here
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r[0] for r in results] == values
    problems = []
    for value, exc, message in results:
        if exc is None:
            problems.append(f"{value}: accepted ({message})")
        elif exc in ("ValueError", "MemoryError"):
            if not _named(value, message):
                problems.append(f"{value}: {exc} does not name the value: {message}")
        elif exc == "OverflowError":
            # Python's own conversion to a C integer: only for values no C size can hold.
            bits = 31 if entry in C_INT else 63
            if -2**bits <= value < 2**bits:
                problems.append(f"{value}: OverflowError for a Py_ssize_t value: {message}")
        elif exc == "TypeError":
            problems.append(f"{value}: TypeError for an int: {message}")
        else:
            problems.append(f"{value}: {exc}: {message}")
    assert problems == [], "\n".join(problems)
