"""The attacker's tools, shared by tests/test_hardening.py and tests/test_fuzz.py.

- isolated: run a test body in a fresh interpreter (a crash fails the test instead of
  killing the run), failing on any exception that Python swallowed as "unraisable"
  (an assert inside a __del__ or a weakref callback);
- the request-flag oracles: every combination of PyBUF_* request bits, answered by our
  exporters and by CPython's own (memoryview, _testbuffer ND_PIL);
- a hand-made PEP 3118 exporter (Cython, compiled at test time) that exports exactly the
  Py_buffer it is told to, plus builders of foreign layouts with indirect second dimensions;
- PEP 688 (Python 3.12+) exporters that lie or re-enter.
"""
import ctypes
import functools
import importlib
import json
import os
import sys
import textwrap
from pathlib import Path

import _testbuffer

TESTS = Path(__file__).resolve().parent
PTR = ctypes.sizeof(ctypes.c_void_p)
PEP688 = sys.version_info >= (3, 12)

# ---------------------------------------------------------------------------------------------
# running a test body in a fresh interpreter
# ---------------------------------------------------------------------------------------------

UNRAISABLE = []


def take_unraisable():
    """The exceptions swallowed as unraisable so far (and forget them: they were expected)."""
    out = list(UNRAISABLE)
    UNRAISABLE.clear()
    return out


def _hook(args):
    UNRAISABLE.append(f"{args.exc_type.__name__}: {args.exc_value} (in {args.object!r})")


_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
import _hostile
sys.unraisablehook = _hostile._hook
mod = __import__({module!r})
getattr(mod, {name!r}).__wrapped__(**json.loads({args!r}))
import gc
gc.collect()
if _hostile.UNRAISABLE:
    raise AssertionError("unexpected unraisable exceptions:\\n" + "\\n".join(_hostile.UNRAISABLE))
print("isolated test passed")
"""


def isolated(func=None, *, timeout=300):
    """Decorator: the test body runs in a fresh interpreter (arguments must be JSON values)."""
    if func is None:
        return functools.partial(isolated, timeout=timeout)

    @functools.wraps(func)
    def wrapper(**kwargs):
        import pytest
        from conftest import run_python

        code = _CHILD.format(tests=str(TESTS), module=func.__module__, name=func.__name__,
                             args=json.dumps(kwargs))
        proc = run_python(code, check=False, timeout=timeout)
        if proc.returncode != 0 or "isolated test passed" not in proc.stdout:
            pytest.fail(f"child process exited with {proc.returncode}\n--- stdout:\n"
                        f"{proc.stdout[-5000:]}\n--- stderr:\n{proc.stderr[-20000:]}",
                        pytrace=False)

    return wrapper


def names_row(message, row):
    """The error message names row `row` ("row 2 ..." or "element (2, 1) ...")."""
    return f"row {row} " in message + " " or f"element ({row}, " in message


def expect(exc_type, func, *args, match=None, **kwargs):
    """Call func; it must raise exc_type (whose message contains match). Returns the exception."""
    try:
        func(*args, **kwargs)
    except exc_type as exc:
        if match is not None:
            assert match in str(exc), (func, str(exc), match)
        return exc
    raise AssertionError(f"{getattr(func, '__name__', func)} did not raise {exc_type.__name__}")


# ---------------------------------------------------------------------------------------------
# request flags
# ---------------------------------------------------------------------------------------------

# Every request bit a consumer can set (PyBUF_SIMPLE is 0): WRITABLE, FORMAT, ND, and the
# bits that STRIDES, C/F/ANY_CONTIGUOUS and INDIRECT add on top of ND/STRIDES.
FLAG_BITS = [0x1, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100]
ALL_FLAGS = sorted({sum(b for k, b in enumerate(FLAG_BITS) if mask >> k & 1)
                    for mask in range(1 << len(FLAG_BITS))})
assert len(ALL_FLAGS) == 256 and _testbuffer.PyBUF_INDIRECT == 0x118


# Requests CPython refuses itself, before asking any exporter: from 3.13 a request equal to
# PyBUF_READ (0x100) is a SystemError (an internal-call check in PyObject_GetBuffer).
REFUSED_BY_CPYTHON = {0x100} if sys.version_info >= (3, 13) else set()
# The requests an exporter can be asked (what the fuzz generators draw from).
REQUESTABLE_FLAGS = [f for f in ALL_FLAGS if f not in REFUSED_BY_CPYTHON]


def flag_names(flags):
    names = {0x1: "WRITABLE", 0x4: "FORMAT", 0x8: "ND", 0x10: "STRIDES-bit", 0x20: "C-bit",
             0x40: "F-bit", 0x80: "ANY-bit", 0x100: "INDIRECT-bit"}
    return "|".join(n for b, n in names.items() if flags & b) or "SIMPLE"


def answer(exporter, flags):
    """What a consumer requesting `flags` gets: the refusal's type, or the buffer's geometry."""
    try:
        nd = _testbuffer.ndarray(exporter, getbuf=flags)
    except (BufferError, ValueError, TypeError, SystemError) as exc:
        # SystemError: CPython 3.13 refuses a request equal to PyBUF_READ or PyBUF_WRITE
        # (0x100, 0x200) itself, before asking any exporter: the same for every exporter.
        return ("refused", type(exc).__name__)
    try:
        return {"ndim": nd.ndim, "shape": nd.shape, "strides": nd.strides,
                "suboffsets": nd.suboffsets, "format": nd.format, "itemsize": nd.itemsize,
                "nbytes": nd.nbytes, "readonly": nd.readonly}
    finally:
        nd = None


def compare_answers(ours, oracle, flags_list=ALL_FLAGS):
    """[(flags, ours, oracle)] for every request whose answers differ."""
    bad = []
    for flags in flags_list:
        a, b = answer(ours, flags), answer(oracle, flags)
        if a != b:
            bad.append((flag_names(flags), a, b))
    return bad


def pil_oracle(rows, cols, fmt, readonly):
    """_testbuffer's own PIL-style (suboffsets (0, -1)) rows x cols ndarray."""
    import struct
    item = struct.unpack(fmt, bytes(struct.calcsize(fmt)))[0]
    flags = _testbuffer.ND_PIL | (0 if readonly else _testbuffer.ND_WRITABLE)
    base = _testbuffer.ndarray([item] * (max(rows, 1) * max(cols, 1)),
                               shape=[max(rows, 1), max(cols, 1)], format=fmt, flags=flags)
    return base[0:rows, 0:cols]


def memoryview_oracle(rows, cols, fmt, readonly):
    """A memoryview of a C-contiguous rows x cols block of format fmt."""
    import numpy as np
    a = np.zeros((rows, cols), dtype=fmt)
    assert memoryview(a).format == fmt, (fmt, memoryview(a).format)
    if readonly:
        a.flags.writeable = False
    return memoryview(a)


EXPORTER_KINDS = ["memory", "collection", "collection_back_to_back", "view_from_rows",
                  "view_from_columns", "copy", "picklebuffer_rows"]


def exporters_of(kind, rows, cols, fmt, readonly):
    """An object of this package holding rows x cols of fmt, and [(what, ours, oracle)]: each
    exporter it offers (itself, its direct view's exporter) and CPython's equivalent."""
    import pickle

    import numpy as np

    from indirect_buffer import BufferCollection2D, IndirectMemory2D
    dtype = np.dtype(fmt)
    data = np.arange(rows * cols).astype(dtype).reshape(rows, cols)
    if kind == "memory":
        m = IndirectMemory2D.create_memory(rows, cols, fmt)
        m.copy_from(data)
    elif kind == "copy":
        m = IndirectMemory2D.view_from_rows(data.copy()).copy()
    elif kind == "collection":
        m = BufferCollection2D([data[i].copy() for i in range(rows)], column_count=cols,
                               format=fmt)
    elif kind == "collection_back_to_back":
        m = BufferCollection2D([data[i] for i in range(rows)], column_count=cols, format=fmt)
    elif kind == "picklebuffer_rows":
        m = BufferCollection2D([pickle.PickleBuffer(data[i].copy()) for i in range(rows)],
                               column_count=cols, format=fmt)
    elif kind == "view_from_rows":
        m = IndirectMemory2D.view_from_rows(data.copy())
    elif kind == "view_from_columns":
        m = IndirectMemory2D.view_from_columns(np.asfortranarray(data.T))
    else:
        raise ValueError(kind)
    if readonly:
        m.make_read_only()
    pairs = [("indirect", m, pil_oracle(rows, cols, fmt, readonly))]
    if kind not in ("collection", "picklebuffer_rows") or rows <= 1 or cols == 0:
        pairs.append(("direct_view().obj", m.direct_view().obj,
                      memoryview_oracle(rows, cols, fmt, readonly)))
    return m, pairs


# ---------------------------------------------------------------------------------------------
# a hand-made PEP 3118 exporter (compiled at test time)
# ---------------------------------------------------------------------------------------------

EXPORTER_PYX = r'''
# cython: language_level=3
from cpython.buffer cimport PyBUF_INDIRECT, PyBUF_STRIDES, PyBUF_WRITABLE, PyBUF_FORMAT
from libc.stdint cimport uintptr_t


cdef class Exporter:
    """Exports exactly the Py_buffer it was given (addresses as ints).

    honour_flags=True: refuses what a careful exporter refuses (no PyBUF_INDIRECT with
    suboffsets, no strides request, writable on read-only); False: ignores the request.
    Counts gets and releases, so tests can check every acquired buffer was given back.
    """
    cdef Py_ssize_t shape_[8]
    cdef Py_ssize_t strides_[8]
    cdef Py_ssize_t suboffsets_[8]
    cdef int ndim
    cdef bint has_suboffsets, readonly, honour_flags
    cdef bytes fmt
    cdef Py_ssize_t itemsize, length
    cdef uintptr_t buf
    cdef object keep
    cdef public Py_ssize_t gets, releases

    def __init__(self, buf, shape, strides, suboffsets, fmt, itemsize, readonly=False,
                 keep=None, honour_flags=True, length=None):
        cdef int k
        assert len(shape) == len(strides) <= 8
        self.ndim = len(shape)
        self.has_suboffsets = suboffsets is not None
        for k in range(self.ndim):
            self.shape_[k] = shape[k]
            self.strides_[k] = strides[k]
            self.suboffsets_[k] = suboffsets[k] if suboffsets is not None else -1
        self.buf = buf
        self.fmt = fmt.encode() if isinstance(fmt, str) else fmt
        self.itemsize = itemsize
        self.readonly = readonly
        self.keep = keep
        self.honour_flags = honour_flags
        if length is None:
            length = itemsize
            for k in range(self.ndim):
                length *= shape[k]
        self.length = length

    def __getbuffer__(self, Py_buffer* view, int flags):
        if self.honour_flags:
            if self.has_suboffsets and (flags & PyBUF_INDIRECT) != PyBUF_INDIRECT:
                raise BufferError("hand-made exporter: needs PyBUF_INDIRECT")
            if (flags & PyBUF_STRIDES) != PyBUF_STRIDES:
                raise BufferError("hand-made exporter: needs PyBUF_STRIDES")
            if (flags & PyBUF_WRITABLE) and self.readonly:
                raise BufferError("hand-made exporter: read-only")
        view.buf = <void*>self.buf
        view.len = self.length
        view.readonly = self.readonly
        view.itemsize = self.itemsize
        view.format = <char*>self.fmt
        view.ndim = self.ndim
        view.shape = self.shape_
        view.strides = self.strides_
        view.suboffsets = self.suboffsets_ if self.has_suboffsets else NULL
        view.internal = NULL
        view.obj = self
        self.gets += 1

    def __releasebuffer__(self, Py_buffer* view):
        self.releases += 1
'''


def build_module(cython_builder, name, source):
    """Compile a Cython module once per process; returns its build directory (a str), which a
    child process passes to load_module."""
    mod = sys.modules.get(name) or cython_builder(name, source)
    return str(Path(mod.__file__).resolve().parent)


def load_module(name, path):
    """Import an already compiled module from its build directory (in a child process)."""
    if name not in sys.modules:
        sys.path.insert(0, path)
        try:
            importlib.import_module(name)
        finally:
            sys.path.remove(path)
    return sys.modules[name]


def exporter_module(path):
    return load_module("ib_hostile_exporter", path)


class ForeignLayout:
    """A 2-D buffer in memory we lay out by hand, exported by the hand-made Exporter.

    values: bytes of each element (rows x cols list of `itemsize`-byte strings).
    sub: (suboffsets[0], suboffsets[1]); -1 means direct. Elements live at scattered,
    shuffled places in one ctypes block, so pointer bytes can never pass for the data.
    null: None, or (row, col, level) to plant a NULL pointer: level 0 in the row table
    (suboffsets[0] >= 0), level 1 in a row's element pointers or the direct pointer grid.
    """

    def __init__(self, mod, values, fmt, itemsize, sub=(0, 0), readonly=False, null=None,
                 seed=0, honour_flags=True, gap=8):
        import random
        rng = random.Random(seed)
        self.rows = rows = len(values)
        self.cols = cols = len(values[0]) if rows else 0
        self.fmt, self.itemsize, self.sub = fmt, itemsize, tuple(sub)
        s0, s1 = sub
        slot = itemsize + gap
        order = list(range(rows * cols))
        rng.shuffle(order)
        self.data = (ctypes.c_char * (max(1, rows * cols) * slot + 64))()
        base = ctypes.addressof(self.data) + 32
        self.elem = [[base + order[i * cols + j] * slot for j in range(cols)]
                     for i in range(rows)]
        for i in range(rows):
            for j in range(cols):
                ctypes.memmove(self.elem[i][j], values[i][j], itemsize)
        keep = [self.data]
        if s1 < 0:
            # Rows of directly strided elements: only possible with a regular layout.
            assert s0 >= 0, "a direct 2-D buffer is not a ForeignLayout"
            row_block = (ctypes.c_char * (max(1, rows * cols) * itemsize + 64))()
            keep.append(row_block)
            rb = ctypes.addressof(row_block) + 32
            for i in range(rows):
                for j in range(cols):
                    self.elem[i][j] = rb + (i * cols + j) * itemsize
                    ctypes.memmove(self.elem[i][j], values[i][j], itemsize)
            table = (ctypes.c_void_p * max(1, rows))()
            for i in range(rows):
                table[i] = rb + i * cols * itemsize - s0
            keep.append(table)
            buf, strides = ctypes.addressof(table), (PTR, itemsize)
            if null is not None:
                table[null[0]] = None
        elif s0 < 0:
            # A rows x cols grid of element pointers.
            grid = (ctypes.c_void_p * max(1, rows * cols))()
            for i in range(rows):
                for j in range(cols):
                    grid[i * cols + j] = self.elem[i][j] - s1
            keep.append(grid)
            buf, strides = ctypes.addressof(grid), (cols * PTR, PTR)
            if null is not None:
                grid[null[0] * cols + null[1]] = None
        else:
            # A table of rows, each row a list of element pointers.
            row_ptrs = []
            for i in range(rows):
                rp = (ctypes.c_void_p * max(1, cols))()
                for j in range(cols):
                    rp[j] = self.elem[i][j] - s1
                row_ptrs.append(rp)
            table = (ctypes.c_void_p * max(1, rows))()
            for i in range(rows):
                table[i] = ctypes.addressof(row_ptrs[i]) - s0
            keep += [table, row_ptrs]
            buf, strides = ctypes.addressof(table), (PTR, PTR)
            if null is not None:
                if null[2] == 0:
                    table[null[0]] = None
                else:
                    row_ptrs[null[0]][null[1]] = None
        self.exporter = mod.Exporter(buf, (rows, cols), strides, (s0, s1), fmt, itemsize,
                                     readonly=readonly, keep=keep, honour_flags=honour_flags)

    def read(self):
        """The element bytes as they are now (rows x cols list)."""
        return [[ctypes.string_at(self.elem[i][j], self.itemsize) for j in range(self.cols)]
                for i in range(self.rows)]


def numpy_values(arr):
    """rows x cols list of each element's bytes, from a 2-D NumPy array."""
    return [[arr[i, j].tobytes() for j in range(arr.shape[1])] for i in range(arr.shape[0])]


# ---------------------------------------------------------------------------------------------
# PEP 688 exporters (Python 3.12+: __buffer__ / __release_buffer__ in Python classes)
# ---------------------------------------------------------------------------------------------

class PyExporter:
    """A Python-level exporter (3.12+). on_get(self, flags) / on_release(self) run inside the
    protocol calls: that is where an attacker re-enters the library."""

    def __init__(self, data, on_get=None, on_release=None):
        self.data = data
        self.on_get = on_get
        self.on_release = on_release
        self.calls = self.gets = self.releases = 0  # requests; buffers handed out; given back
        self.handed = []  # the object behind each buffer handed out, in order

    def __buffer__(self, flags):
        self.calls += 1
        if self.on_get is not None:
            self.on_get(self, flags)
        view = memoryview(self.data)
        # CPython requests `flags` from view next, and if that fails it never calls
        # __release_buffer__: fail here instead, so that gets counts only real exports.
        _testbuffer.ndarray(view, getbuf=flags)
        self.gets += 1
        self.handed.append(self.data)
        return view

    def __release_buffer__(self, view):
        self.releases += 1
        try:
            if self.on_release is not None:
                self.on_release(self)
        finally:
            view.release()


class LyingExporter(PyExporter):
    """Answers each request with a different buffer: successive data objects from `datas`."""

    def __init__(self, datas, **kwargs):
        super().__init__(datas[0], **kwargs)
        self.datas = list(datas)

    def __buffer__(self, flags):
        self.data = self.datas[self.calls % len(self.datas)]
        return super().__buffer__(flags)


def dedent(code):
    return textwrap.dedent(code)


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
