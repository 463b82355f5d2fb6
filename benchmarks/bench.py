#!/usr/bin/env python3
"""Ratio benchmarks: indirect_buffer against the peer approaches, on float64 matrices.

    python benchmarks/bench.py [--quick] [--shapes default|small] [--only NAME]
                               [--callgrind] [--json FILE] [--plot FILE]

Prints the machine, then one line per operation and shape,

    name[RxC] ours=… peer=… ratio=… target<=… PASS|MISS

where ratio = our time / peer time (best of several interleaved rounds), in three sections:
the library's operations against NumPy/cffi, the round trip a Cython binding makes (NumPy
array -> double** -> a C function -> result, against a hand-written Cython malloc loop) and
small per-call costs; then a scaling section (time per row for 10^3 .. 10^6 rows of 8 columns).

--callgrind also counts the instructions per call of every case (or of the --only ones) under
`valgrind --tool=callgrind` and prints the instruction ratio beside the timed one:

    name[RxC] ours=… peer=… ratio=… target<=… PASS|MISS instr: ours=… peer=… ratio=… PASS|MISS

The round-trip cases (and the callgrind mode, whose markers live there) need a Cython module
that is compiled once per run against the installed indirect_buffer (Cython, setuptools and a
C compiler). cffi and matplotlib are optional: without cffi the BufferCollection2D comparison
is skipped with a note, without matplotlib --plot only prints a note. Run it with the
interpreter that has indirect_buffer installed, not from a checkout on sys.path (the installed,
compiled package is what is measured).
"""
import argparse
import atexit
import fnmatch
import functools
import gc
import hashlib
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

# No BLAS call is timed here; idle BLAS worker threads only add noise on small machines.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import indirect_buffer
from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D

try:
    import cffi
except ImportError:
    cffi = None

SHAPE_SETS = {
    "default": [(10_000, 8), (1_000, 1_000), (100, 100_000)],
    # For smoke runs: every code path, in well under a second.
    "small": [(50, 8), (20, 20), (4, 300)],
}
# The round trip: a tiny matrix (per-call overhead) and the large shapes (per-row cost).
ROUNDTRIP_SHAPE_SETS = {
    "default": [(10, 10)] + SHAPE_SETS["default"],
    "small": [(10, 10), (50, 8)],
}
SMALL_CALL_SHAPE = (10, 10)
# Converting copies: a small call, an audio block (channels x samples) and a large matrix.
CONVERT_SHAPE_SETS = {
    "default": [(10, 10), (6, 4096), (1_000, 1_000)],
    "small": [(10, 10), (6, 300)],
}
SCALING_ROWS = {
    "default": [10**3, 10**4, 10**5, 10**6],
    "small": [10, 100, 1000],
}
SCALING_COLS = 8

# operation -> maximum ratio (our time / peer time) that counts as PASS; a dict maps a shape
# to its target, with None for every other shape.
TARGETS = {
    "view_from_rows": 0.5,
    "BufferCollection2D": 0.05,
    "copy_to": 1.2,
    "copy_from": 1.2,
    "create_memory": 1.5,
    "to_numpy": 1.3,
    "copy_to_nd": 1.2,
    "copy_from_nd": 1.2,
    "roundtrip_view_from_rows": {(10, 10): 1.2, None: 1.05},
    "roundtrip_as_indirect": {(10, 10): 1.2, None: 1.05},
    "pinned": 1.5,
    "lend": 1.3,
    "convert_f64_f32": 1.1,
    "convert_i16_i32": 1.1,
}
PEERS = {
    "view_from_rows": "numpy uintp pointer table (a.ctypes.data + arange(n)*strides[0])",
    "BufferCollection2D": 'cffi ffi.new("double*[]", [cast(from_buffer(r)) ...])',
    "copy_to": "numpy.copyto(dst, src)",
    "copy_from": "numpy.copyto(dst, src)",
    "create_memory": "numpy.zeros((r, c))",
    "to_numpy": "numpy.array(a)",
    "copy_to_nd": "numpy.copyto on the same 3-D shape; ours: an owned double*** of shape "
                  "(r, c/8, 8) (IndirectMemory, two pointer levels)",
    "copy_from_nd": "as for copy_to_nd",
    "roundtrip_view_from_rows": "the same C sum fed by Cython: double[:, ::1] v = a, malloc "
                                "a double** table, t[i] = &v[i, 0], call, free",
    "roundtrip_as_indirect": "as for roundtrip_view_from_rows",
    "pinned": "m = memoryview(mem); m.release()",
    "lend": "the same table wrapped with a memory_nanny (not lent: no root copy), then released",
    "convert_f64_f32": "numpy.copyto(dst, src, casting='same_kind') into a float32 array",
    "convert_i16_i32": "numpy.copyto(dst, src, casting='same_kind') into an int32 array",
}
OURS = {
    "roundtrip_view_from_rows": "Cython: mem = IndirectMemory2D.view_from_rows(a); "
                                "t = mem.double_table(False); C sum of all elements",
    "roundtrip_as_indirect": "Cython: mem = as_indirect(a); t = mem.double_table(False); "
                             "C sum of all elements",
    "pinned": 'with mem.pinned("d", writable=True) as address: pass',
    "lend": 'with IndirectMemory2D.from_address(table, r, c, "d") as m: pass (lent: the root '
            'table copied, revoked on exit with no view out: no snapshot)',
    "convert_f64_f32": "mem.copy_from(src): a float64 NumPy array into a float32 "
                       "IndirectMemory2D (owned T**), converted in one pass",
    "convert_i16_i32": "mem.copy_from(src): an int16 NumPy array into an int32 IndirectMemory2D",
}
# Linear in rows: the per-row cost at the largest size is within LINEAR_TOLERANCE x our lowest
# per-row cost, or grows at most PEER_GROWTH_SLACK x as much as the peer's (64 MB matrices fall
# out of the caches and page-fault: that hits every implementation and is not our nonlinearity).
LINEAR_TOLERANCE = 3.0
PEER_GROWTH_SLACK = 1.5

# callgrind: calls per measurement, so that one case costs about CALLGRIND_ELEMENTS element
# visits (instruction counts repeat exactly, so a few calls suffice for big matrices).
CALLGRIND_ELEMENTS = 3_000_000
CALLGRIND_MIN_CALLS, CALLGRIND_MAX_CALLS = 3, 2000
# Shapes larger than this are left out of the callgrind mode (and the output says so); the
# largest default shape (10^7 elements) adds about 40 s under valgrind on 2 cores.
CALLGRIND_MAX_ELEMENTS = 10_000_000
MARK_SYMBOL = "ib_bench_callgrind_mark"


class Skip(Exception):
    """A case that cannot run here (a missing optional peer, the round-trip module)."""


def _fmt_time(seconds):
    """Seconds with a unit: 12.3us, 0.42ns (4 significant digits, so no e-notation < 1000)."""
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.4g}{unit}"
    return f"{seconds / 1e-9:.4g}ns"


def _fmt_count(count):
    """An instruction count: 812, 3.706k, 12.35M, 1.207G."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.4g}{unit}"
    return f"{count:.0f}"


def _time_once(func, number):
    """Seconds per call of func over `number` calls, with the garbage collector off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            func()
        return (time.perf_counter() - start) / number
    finally:
        if gc_was_enabled:
            gc.enable()


def _autorange(funcs, min_time):
    """Inner repetitions such that one measurement of the slowest func lasts >= min_time."""
    number = 1
    while True:
        longest = max(_time_once(f, number) * number for f in funcs)
        if longest >= min_time or number >= 1 << 20:
            return number
        # Jump close to the goal instead of doubling from 1 (keeps calibration cheap).
        number = max(number * 2, int(number * min_time / max(longest, 1e-9) * 1.2))


def compare(ours, peer, rounds, min_time):
    """Best-of-rounds seconds per call for ours and peer, timed interleaved.

    The two alternate within every round (and swap who goes first each round) so that a
    machine-wide slowdown hits both sides instead of biasing the ratio.
    """
    funcs = [ours] + ([peer] if peer is not None else [])
    for f in funcs:  # warm up: first-call costs (imports, caches, page faults) are not measured
        f()
    number = _autorange(funcs, min_time)
    best_ours = best_peer = math.inf
    for r in range(rounds):
        order = [("ours", ours), ("peer", peer)]
        if r % 2:
            order.reverse()
        for who, f in order:
            if f is None:
                continue
            t = _time_once(f, number)
            if who == "ours":
                best_ours = min(best_ours, t)
            else:
                best_peer = min(best_peer, t)
    return best_ours, (best_peer if peer is not None else None)


# ---------------------------------------------------------------------------------------------
# the round-trip module: compiled once per run against the installed indirect_buffer
# ---------------------------------------------------------------------------------------------

ROUNDTRIP_MODULE = "ib_bench_roundtrip"
ROUNDTRIP_SOURCE = textwrap.dedent(f'''
    # cython: language_level=3, boundscheck=False, wraparound=False
    """indirect_buffer benchmark: NumPy -> double** -> C -> result, ours and a hand-written peer."""
    from libc.stdlib cimport free, malloc
    from indirect_buffer.buffer_impl cimport IndirectMemory2D
    from indirect_buffer import as_indirect

    cdef extern from *:
        """
        /* callgrind dumps its counters whenever this is entered (--dump-before). */
        __attribute__((noinline)) void {MARK_SYMBOL}(void) {{
            __asm__ volatile("" ::: "memory");
        }}
        """
        void {MARK_SYMBOL}() nogil

    def mark():
        """Delimit a callgrind measurement (a no-op outside valgrind)."""
        {MARK_SYMBOL}()

    # The C function every side feeds: the sum of all elements of a double** matrix.
    cdef double sum_table(double** t, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
        cdef double s = 0
        cdef Py_ssize_t i, j
        for i in range(rows):
            for j in range(cols):
                s += t[i][j]
        return s

    def ours_view_from_rows(a):
        cdef IndirectMemory2D mem = IndirectMemory2D.view_from_rows(a)
        cdef double** t = mem.double_table(False)
        return sum_table(t, mem.rows(), mem.cols())

    def ours_as_indirect(a):
        cdef IndirectMemory2D mem = as_indirect(a)
        cdef double** t = mem.double_table(False)
        return sum_table(t, mem.rows(), mem.cols())

    def peer(a):
        cdef double[:, ::1] v = a
        cdef Py_ssize_t n = v.shape[0], i
        cdef double** t = <double**>malloc((n if n > 0 else 1) * sizeof(double*))
        if t == NULL:
            raise MemoryError()
        for i in range(n):
            t[i] = &v[i, 0]
        s = sum_table(t, n, v.shape[1])
        free(t)
        return s
''')
_ROUNDTRIP = {"dir": None, "module": None, "error": None}


def _build_key():
    """What the compiled module depends on: its source, the interpreter, indirect_buffer."""
    digest = hashlib.sha256(ROUNDTRIP_SOURCE.encode())
    digest.update(sys.version.encode())
    pkg = os.path.dirname(indirect_buffer.__file__)
    for name in sorted(os.listdir(pkg)):
        if name.endswith((".so", ".pyd", ".pxd")):
            st = os.stat(os.path.join(pkg, name))
            digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def build_roundtrip(build_dir=None):
    """Compile the round-trip module (once per run, or reused from build_dir); its directory.

    Raises Skip with the reason if it cannot be built.
    """
    if _ROUNDTRIP["dir"] is not None:
        return _ROUNDTRIP["dir"]
    if _ROUNDTRIP["error"] is not None:
        raise Skip(_ROUNDTRIP["error"])
    if build_dir is None:
        build_dir = tempfile.mkdtemp(prefix="ib_bench_build.")
        atexit.register(shutil.rmtree, build_dir, True)
    os.makedirs(build_dir, exist_ok=True)
    stamp = os.path.join(build_dir, "build-key.txt")
    key = _build_key()
    built = [n for n in os.listdir(build_dir)
             if n.startswith(ROUNDTRIP_MODULE + ".") and n.endswith((".so", ".pyd"))]
    if built and os.path.exists(stamp):
        with open(stamp) as fh:
            if fh.read() == key:
                _ROUNDTRIP["dir"] = build_dir
                return build_dir
    with open(os.path.join(build_dir, ROUNDTRIP_MODULE + ".pyx"), "w") as fh:
        fh.write(ROUNDTRIP_SOURCE)
    with open(os.path.join(build_dir, "setup.py"), "w") as fh:
        fh.write(textwrap.dedent(f"""
            from setuptools import Extension, setup
            from Cython.Build import cythonize
            ext = Extension({ROUNDTRIP_MODULE!r}, [{ROUNDTRIP_MODULE + '.pyx'!r}])
            setup(name={ROUNDTRIP_MODULE!r}, script_args=["build_ext", "--inplace"],
                  ext_modules=cythonize([ext], compiler_directives={{"language_level": "3"}}))
        """))
    proc = subprocess.run([sys.executable, "setup.py"], cwd=build_dir, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        _ROUNDTRIP["error"] = ("the round-trip module did not build (needs Cython, setuptools "
                               "and a C compiler): " + " / ".join(tail))
        raise Skip(_ROUNDTRIP["error"])
    with open(stamp, "w") as fh:
        fh.write(key)
    _ROUNDTRIP["dir"] = build_dir
    return build_dir


def roundtrip_module():
    if _ROUNDTRIP["module"] is None:
        build_dir = build_roundtrip()
        sys.path.insert(0, build_dir)
        try:
            _ROUNDTRIP["module"] = importlib.import_module(ROUNDTRIP_MODULE)
        finally:
            sys.path.remove(build_dir)
    return _ROUNDTRIP["module"]


# ---------------------------------------------------------------------------------------------
# the operations: each builder returns (ours, peer) callables for one shape
# ---------------------------------------------------------------------------------------------

def _matrix(rows, cols):
    a = np.empty((rows, cols))
    a.reshape(-1)[:] = np.arange(rows * cols) % 1009 * 0.5
    return a


def op_view_from_rows(rows, cols):
    a = _matrix(rows, cols)
    view_from_rows = IndirectMemory2D.view_from_rows
    uintp = np.uintp
    arange = np.arange

    def ours():
        view_from_rows(a)

    def peer():
        (a.ctypes.data + arange(rows) * a.strides[0]).astype(uintp)

    return ours, peer


def op_buffer_collection(rows, cols):
    a = _matrix(rows, cols)
    row_list = list(a)

    def ours():
        BufferCollection2D(row_list)

    if cffi is None:
        return ours, None
    ffi = cffi.FFI()
    new, cast, from_buffer = ffi.new, ffi.cast, ffi.from_buffer

    def peer():
        new("double*[]", [cast("double*", from_buffer(r)) for r in row_list])

    return ours, peer


def op_copy_to(rows, cols):
    src = _matrix(rows, cols)
    mem = IndirectMemory2D.create_memory(rows, cols, "d")
    mem.copy_from(src)
    dst = np.zeros((rows, cols))
    copyto = np.copyto

    def ours():
        mem.copy_to(dst)

    def peer():
        copyto(dst, src)

    return ours, peer


def op_copy_from(rows, cols):
    src = _matrix(rows, cols)
    mem = IndirectMemory2D.create_memory(rows, cols, "d")
    dst = np.zeros((rows, cols))
    copyto = np.copyto

    def ours():
        mem.copy_from(src)

    def peer():
        copyto(dst, src)

    return ours, peer


def op_create_memory(rows, cols):
    create_memory = IndirectMemory2D.create_memory
    zeros = np.zeros
    shape = (rows, cols)

    def ours():
        create_memory(rows, cols, "d")

    def peer():
        zeros(shape)

    return ours, peer


def op_to_numpy(rows, cols):
    a = _matrix(rows, cols)
    mem = IndirectMemory2D.create_memory(rows, cols, "d")
    mem.copy_from(a)
    array = np.array

    def ours():
        mem.to_numpy()

    def peer():
        array(a)

    return ours, peer


def _nd_shape(rows, cols):
    """The 3-D shape an N-D case uses for a RxC label: rows x cols/8 x 8 (64-byte rows)."""
    return (rows, max(cols // 8, 1), min(cols, 8))


def _copy_nd(rows, cols, to_numpy):
    shape = _nd_shape(rows, cols)
    src = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    mem = IndirectMemory.create_memory(shape, "d")
    mem.copy_from(src)
    dst = np.zeros(shape)
    copyto = np.copyto
    ours = functools.partial(mem.copy_to, dst) if to_numpy else functools.partial(
        mem.copy_from, src)
    return ours, functools.partial(copyto, dst, src)


def op_copy_to_nd(rows, cols):
    return _copy_nd(rows, cols, True)


def op_copy_from_nd(rows, cols):
    return _copy_nd(rows, cols, False)


def _roundtrip(ours_name, rows, cols):
    mod = roundtrip_module()
    a = _matrix(rows, cols)
    ours = functools.partial(getattr(mod, ours_name), a)
    peer = functools.partial(mod.peer, a)
    # Same C function, same order of summation: the results agree exactly.
    if ours() != peer():
        raise AssertionError(f"{ours_name}: {ours()} != peer {peer()}")
    return ours, peer


def op_roundtrip_view_from_rows(rows, cols):
    return _roundtrip("ours_view_from_rows", rows, cols)


def op_roundtrip_as_indirect(rows, cols):
    return _roundtrip("ours_as_indirect", rows, cols)


def op_pinned(rows, cols):
    mem = IndirectMemory2D.create_memory(rows, cols, "d")

    def ours():
        with mem.pinned("d", writable=True) as address:  # noqa: F841 (the table's address)
            pass

    def peer():
        m = memoryview(mem)
        m.release()

    return ours, peer


def op_lend(rows, cols):
    """Lent memory's normal path: wrap (copying the root table) and revoke with no view out."""
    owner = IndirectMemory2D.create_memory(rows, cols, "d")
    table = owner.address
    nanny = object()
    wrap = IndirectMemory2D.from_address

    def ours():
        with wrap(table, rows, cols, "d"):
            pass

    def peer():
        with wrap(table, rows, cols, "d", memory_nanny=nanny):
            pass

    ours.owner = peer.owner = owner  # the lender: alive as long as the cases run

    return ours, peer


def _convert(rows, cols, src_dtype, dst_format):
    src = (_matrix(rows, cols) * 10).astype(src_dtype)
    mem = IndirectMemory2D.create_memory(rows, cols, dst_format)
    dst = np.zeros((rows, cols), dtype=np.dtype(dst_format))
    copyto = np.copyto

    def ours():
        mem.copy_from(src)

    def peer():
        copyto(dst, src, casting="same_kind")

    return ours, peer


def op_convert_f64_f32(rows, cols):
    return _convert(rows, cols, np.float64, "f")


def op_convert_i16_i32(rows, cols):
    return _convert(rows, cols, np.int16, "i")


OPERATIONS = {
    "view_from_rows": op_view_from_rows,
    "BufferCollection2D": op_buffer_collection,
    "copy_to": op_copy_to,
    "copy_from": op_copy_from,
    "create_memory": op_create_memory,
    "to_numpy": op_to_numpy,
    "copy_to_nd": op_copy_to_nd,
    "copy_from_nd": op_copy_from_nd,
}
ROUNDTRIP_OPERATIONS = {
    "roundtrip_view_from_rows": op_roundtrip_view_from_rows,
    "roundtrip_as_indirect": op_roundtrip_as_indirect,
}
SMALL_CALL_OPERATIONS = {
    "copy_to": op_copy_to,
    "pinned": op_pinned,
    "lend": op_lend,
}
CONVERT_OPERATIONS = {
    "convert_f64_f32": op_convert_f64_f32,
    "convert_i16_i32": op_convert_i16_i32,
}
BUILDERS = {**OPERATIONS, **ROUNDTRIP_OPERATIONS, **SMALL_CALL_OPERATIONS,
            **CONVERT_OPERATIONS}


def sections(shape_set):
    """[(header, [(name, rows, cols), ...]), ...]: every case of the ratio sections, in order."""
    return [
        ("== ratios (our time / peer time; best of {rounds} interleaved rounds)",
         [(name, r, c) for name in OPERATIONS for r, c in SHAPE_SETS[shape_set]]),
        (("== round trip: NumPy float64 array -> double** -> C sum of all elements -> float, "
          "called from Python (ours / peer; best of {rounds} rounds)"),
         [(name, r, c) for name in ROUNDTRIP_OPERATIONS
          for r, c in ROUNDTRIP_SHAPE_SETS[shape_set]]),
        ("== small calls (ours / peer; best of {rounds} rounds)",
         [(name, *SMALL_CALL_SHAPE) for name in SMALL_CALL_OPERATIONS]),
        ("== converting copies (ours / peer; best of {rounds} rounds)",
         [(name, r, c) for name in CONVERT_OPERATIONS
          for r, c in CONVERT_SHAPE_SETS[shape_set]]),
    ]


def target_for(name, rows, cols):
    target = TARGETS[name]
    if isinstance(target, dict):
        return target.get((rows, cols), target[None])
    return target


def label(name, rows, cols):
    return f"{name}[{rows}x{cols}]"


def selected(name, rows, cols, only):
    """--only: glob patterns matched against the operation name or its name[RxC] label."""
    if not only:
        return True
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(label(name, rows, cols), p)
               for p in only)


# ---------------------------------------------------------------------------------------------
# callgrind: instructions per call
# ---------------------------------------------------------------------------------------------

def callgrind_calls(rows, cols, quick):
    calls = min(CALLGRIND_MAX_CALLS, CALLGRIND_ELEMENTS // max(rows * cols, 1))
    if quick:
        calls //= 10
    return max(CALLGRIND_MIN_CALLS, calls)


def parse_callgrind_total(path):
    """The total instruction count (Ir) of one callgrind output file.

    Taken from its `summary:` line (callgrind writes one per file), or the `totals:` line;
    with several events the first column is Ir (the default and only event without
    --cache-sim/--branch-sim).
    """
    summary = totals = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("totals:"):
                totals = int(line.split()[1])
    if summary is None and totals is None:
        raise ValueError(f"{path}: no summary: or totals: line (not a callgrind output file?)")
    return summary if summary is not None else totals


def _run_calls(func, calls):
    for _ in range(calls):
        func()


def callgrind_child(spec_path):
    """Run under valgrind: for each case, Ir segments delimited by the mark() dumps.

    Segment k (the file <out>.k) holds the instructions from the (k-1)-th mark() to the k-th.
    Per side: mark, N calls, mark, 0 calls, mark: per call = (Ir(N calls) - Ir(0 calls)) / N,
    the same setup, loop and marker overheads cancelling out.
    """
    with open(spec_path) as fh:
        spec = json.load(fh)
    sys.path.insert(0, spec["build_dir"])
    mod = importlib.import_module(ROUNDTRIP_MODULE)
    _ROUNDTRIP["module"], _ROUNDTRIP["dir"] = mod, spec["build_dir"]
    marks = 0

    def mark():
        nonlocal marks
        mod.mark()
        marks += 1
        return marks + 1  # the file that will hold the segment that starts now

    gc.disable()
    out = {}

    def measure(func, calls):
        _run_calls(func, min(calls, 20))  # warm up (specialising interpreter, caches)
        full = mark()
        _run_calls(func, calls)
        empty = mark()
        _run_calls(func, 0)
        mark()
        return [full, empty]

    # The loop-and-call overhead that every case includes on both sides (for the header).
    out["__baseline__"] = {"calls": 2000, "ours": measure(lambda: None, 2000)}
    for name, rows, cols, calls in spec["cases"]:
        try:
            ours, peer = BUILDERS[name](rows, cols)
        except Skip as exc:
            out[label(name, rows, cols)] = {"skip": str(exc)}
            continue
        entry = {"calls": calls, "ours": measure(ours, calls)}
        if peer is not None:
            entry["peer"] = measure(peer, calls)
        out[label(name, rows, cols)] = entry
        del ours, peer
        gc.collect()
    with open(spec["result"], "w") as fh:
        json.dump({"marks": marks, "cases": out}, fh)


def run_callgrind(cases, build_dir, quick, keep_dir=None):
    """Instructions per call of ours and peer for every (name, rows, cols) in cases.

    Returns (results by label, baseline instructions per loop iteration); one valgrind run
    measures every case.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise Skip("valgrind is not installed")
    work = keep_dir or tempfile.mkdtemp(prefix="ib_bench_callgrind.")
    os.makedirs(work, exist_ok=True)
    try:
        out_base = os.path.join(work, "callgrind.out")
        for name in os.listdir(work):  # stale parts of an earlier run would be misread
            if name.startswith("callgrind.out"):
                os.remove(os.path.join(work, name))
        spec = {"build_dir": build_dir, "result": os.path.join(work, "segments.json"),
                "cases": [[n, r, c, callgrind_calls(r, c, quick)] for n, r, c in cases]}
        spec_path = os.path.join(work, "spec.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        env = dict(os.environ, PYTHONHASHSEED="0")
        cmd = [valgrind, "--tool=callgrind", f"--dump-before={MARK_SYMBOL}",
               f"--callgrind-out-file={out_base}", sys.executable, os.path.abspath(__file__),
               "--callgrind-child", spec_path]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0 or not os.path.exists(spec["result"]):
            tail = " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
            raise Skip(f"the callgrind run failed (exit {proc.returncode}): {tail}")
        with open(spec["result"]) as fh:
            segments = json.load(fh)

        def per_call(entry, side):
            full, empty = (parse_callgrind_total(f"{out_base}.{k}") for k in entry[side])
            return (full - empty) / entry["calls"]

        results = {}
        for key, entry in segments["cases"].items():
            if "skip" in entry:
                results[key] = {"skip": entry["skip"]}
                continue
            results[key] = {"calls": entry["calls"], "ours": per_call(entry, "ours"),
                            "peer": per_call(entry, "peer") if "peer" in entry else None,
                            "ours_files": [f"{out_base}.{k}" for k in entry["ours"]],
                            "peer_files": [f"{out_base}.{k}" for k in entry.get("peer", [])]}
        baseline = results.pop("__baseline__")["ours"]
        if keep_dir:
            with open(os.path.join(work, "index.txt"), "w") as fh:
                fh.write("# case side: file with N calls, file with 0 calls "
                         "(callgrind_annotate FILE)\n")
                for key, r in results.items():
                    for side in ("ours", "peer"):
                        if r.get(f"{side}_files"):
                            fh.write(f"{key} {side}: {' '.join(r[side + '_files'])}\n")
        return results, baseline
    finally:
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import Cython
        cython_version = Cython.__version__
    except ImportError:
        cython_version = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "system": f"{platform.system()} "
            f"{platform.release()} {platform.machine()}",
            "python": platform.python_version(), "numpy": np.__version__,
            "cffi": cffi.__version__ if cffi else None, "cython": cython_version,
            "indirect_buffer": indirect_buffer.__version__}


def ratio_sections(shape_set, only, rounds, min_time, results, instr):
    for header, cases in sections(shape_set):
        cases = [case for case in cases if selected(*case, only)]
        if not cases:
            continue
        print(header.format(rounds=rounds))
        described = set()
        for name, rows, cols in cases:
            if name not in described:
                described.add(name)
                ours_text = f"ours = {OURS[name]}; " if name in OURS else ""
                print(f"# {name}: {ours_text}peer = {PEERS[name]}")
            tag = label(name, rows, cols)
            target = target_for(name, rows, cols)
            entry = {"name": name, "shape": [rows, cols], "target": target}
            try:
                ours, peer = BUILDERS[name](rows, cols)
            except Skip as exc:
                ours = peer = None
                note = str(exc)
            else:
                note = "cffi is not installed"
            if ours is None:
                print(f"{tag} ours=skipped peer=skipped (note: {note}) target<={target:.2f} SKIP")
                entry.update(ours=None, peer=None, ratio=None, status="SKIP")
            else:
                t_ours, t_peer = compare(ours, peer, rounds, min_time)
                entry.update(ours=t_ours, peer=t_peer)
                if t_peer is None:
                    line = (f"{tag} ours={_fmt_time(t_ours)} peer=skipped (note: {note}) "
                            f"target<={target:.2f} SKIP")
                    entry.update(ratio=None, status="SKIP")
                else:
                    ratio = t_ours / t_peer
                    status = "PASS" if ratio <= target else "MISS"
                    line = (f"{tag} ours={_fmt_time(t_ours)} peer={_fmt_time(t_peer)} "
                            f"ratio={ratio:.3f} target<={target:.2f} {status}")
                    entry.update(ratio=ratio, status=status)
                if instr is not None:
                    line += " " + _instr_text(instr, tag, target, entry)
                print(line)
            results["ratios"].append(entry)
            del ours, peer
            gc.collect()


def _instr_text(instr, tag, target, entry):
    """The callgrind part of a ratio line (and its fields in the JSON entry)."""
    if isinstance(instr, str):  # the whole callgrind run was skipped
        entry["instr_status"] = "SKIP"
        return f"instr: skipped ({instr})"
    r = instr.get(tag)
    if r is None:
        entry["instr_status"] = "SKIP"
        return "instr: skipped (not measured under callgrind at this size)"
    if "skip" in r or r["peer"] is None:
        entry["instr_status"] = "SKIP"
        return f"instr: ours={_fmt_count(r['ours'])} peer=skipped SKIP" if "skip" not in r \
            else f"instr: skipped ({r['skip']})"
    ratio = r["ours"] / r["peer"]
    status = "PASS" if ratio <= target else "MISS"
    entry.update(instr_ours=r["ours"], instr_peer=r["peer"], instr_ratio=ratio,
                 instr_status=status, instr_calls=r["calls"])
    return (f"instr: ours={_fmt_count(r['ours'])} peer={_fmt_count(r['peer'])} "
            f"ratio={ratio:.3f} {status}")


def scaling_section(row_counts, names, rounds, min_time, results):
    print(f"== scaling (time per row, {SCALING_COLS} columns; linear if the per-row cost at "
          f"{row_counts[-1]} rows is within {LINEAR_TOLERANCE:g}x of our lowest per-row cost, or "
          f"grows at most {PEER_GROWTH_SLACK:g}x as much as the peer's)")
    for name in names:
        build = OPERATIONS[name]
        per_row_ours, per_row_peer = [], []
        for rows in row_counts:
            ours, peer = build(rows, SCALING_COLS)
            t_ours, t_peer = compare(ours, peer, rounds, min_time)
            per_row_ours.append(t_ours / rows)
            per_row_peer.append(None if t_peer is None else t_peer / rows)
            del ours, peer
            gc.collect()
        growth = per_row_ours[-1] / min(per_row_ours)
        peer_growth = (per_row_peer[-1] / min(per_row_peer)
                       if all(p is not None for p in per_row_peer) else None)
        linear = growth <= LINEAR_TOLERANCE or (
            peer_growth is not None and growth <= PEER_GROWTH_SLACK * peer_growth)
        cells = " ".join(
            f"{rows}={_fmt_time(o)}/row(peer {_fmt_time(p)})"
            for rows, o, p in zip(row_counts, per_row_ours, per_row_peer))
        peer_text = "n/a" if peer_growth is None else f"x{peer_growth:.2f}"
        print(f"scaling {name}: {cells} per-row-growth=x{growth:.2f}(peer {peer_text}) "
              f"linear={'yes' if linear else 'NO'}")
        results["scaling"].append({"name": name, "rows": row_counts, "cols": SCALING_COLS,
                                   "ours_per_row": per_row_ours, "peer_per_row": per_row_peer,
                                   "per_row_growth": growth, "peer_per_row_growth": peer_growth,
                                   "linear": linear})


def plot_scaling(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed; not writing {path}")
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, entry in enumerate(results["scaling"]):
        color = f"C{i}"
        rows = entry["rows"]
        ax.plot(rows, [t * r for t, r in zip(entry["ours_per_row"], rows)], "o-", color=color,
                label=f"{entry['name']} (ours)")
        if all(p is not None for p in entry["peer_per_row"]):
            ax.plot(rows, [t * r for t, r in zip(entry["peer_per_row"], rows)], "x--",
                    color=color, alpha=0.6, label=f"{entry['name']} (peer)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"rows ({SCALING_COLS} float64 columns)")
    ax.set_ylabel("seconds per call")
    machine = results.get("machine", {})
    ax.set_title("indirect_buffer scaling (solid: ours, dashed: peer)"
                 + (f"\n{machine['cpu']}, Python {machine['python']}, NumPy {machine['numpy']}"
                    if machine else ""), fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and shorter measurements (a smoke run)")
    parser.add_argument("--shapes", choices=sorted(SHAPE_SETS), default="default",
                        help="'small' uses tiny matrices (for tests), default the real shapes")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these cases: an operation name or name[RxC], glob "
                             "patterns allowed, comma-separated or repeated")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions per call under valgrind's callgrind")
    parser.add_argument("--callgrind-keep", metavar="DIR",
                        help="with --callgrind: keep the callgrind output files in DIR "
                             "(index.txt names the file of each case, for callgrind_annotate)")
    parser.add_argument("--build-dir", metavar="DIR",
                        help="compile the round-trip module in DIR and reuse it when nothing "
                             "it depends on changed (default: a temporary directory)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG of the scaling (matplotlib)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling section")
    parser.add_argument("--callgrind-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.callgrind_child:
        callgrind_child(args.callgrind_child)
        return 0
    only = [p.strip() for group in (args.only or []) for p in group.split(",") if p.strip()]
    rounds, min_time = (2, 0.002) if args.quick else (7, 0.05)
    scaling_rounds = 1 if args.quick else 3
    machine = machine_info()
    print(f"machine: {machine['cpu']} ({machine['cpus']} CPUs), {machine['system']}; "
          f"Python {machine['python']}, NumPy {machine['numpy']}, "
          f"cffi {machine['cffi'] or 'not installed'}, Cython {machine['cython'] or 'n/a'}")
    print(f"indirect_buffer {indirect_buffer.__version__} ({indirect_buffer.__file__}), "
          f"numpy {np.__version__}, cffi {cffi.__version__ if cffi else 'not installed'}, "
          f"Python {platform.python_version()} on {platform.machine()}")
    if cffi is None:
        print("note: cffi is not installed; the BufferCollection2D peer is skipped "
              "(pip install cffi)")
    results = {"quick": args.quick, "shapes": args.shapes, "ratios": [], "scaling": [],
               "python": platform.python_version(), "numpy": np.__version__,
               "cffi": cffi.__version__ if cffi else None, "machine": machine}
    all_cases = [case for _, cases in sections(args.shapes) for case in cases
                 if selected(*case, only)]
    if not all_cases:
        parser.error(f"--only {','.join(only)} matches no case")
    build_dir = None
    if any(name in ROUNDTRIP_OPERATIONS for name, _, _ in all_cases) or args.callgrind:
        try:
            build_dir = build_roundtrip(args.build_dir)
        except Skip as exc:
            print(f"note: {exc}")

    instr = None
    if args.callgrind:
        cg_cases = []
        for case in dict.fromkeys(all_cases):  # copy_to[10x10] may appear once only
            if case[1] * case[2] <= CALLGRIND_MAX_ELEMENTS:
                cg_cases.append(case)
        left_out = sorted({label(*c) for c in all_cases} - {label(*c) for c in cg_cases})
        print(f"== callgrind: instructions per call = (Ir(N calls) - Ir(0 calls)) / N, one "
              f"valgrind run for {len(cg_cases)} cases (N from {CALLGRIND_MIN_CALLS} to "
              f"{CALLGRIND_MAX_CALLS} by size)")
        if left_out:
            print(f"note: not run under callgrind (more than {CALLGRIND_MAX_ELEMENTS} elements, "
                  f"too slow under valgrind on this machine): {', '.join(left_out)}")
        started = time.perf_counter()
        try:
            if build_dir is None:
                raise Skip("the callgrind markers live in the round-trip module, which did "
                           "not build")
            instr, baseline = run_callgrind(cg_cases, build_dir, args.quick,
                                            args.callgrind_keep)
        except Skip as exc:
            instr = str(exc)
            print(f"note: callgrind skipped: {exc}")
        else:
            print(f"callgrind: done in {time.perf_counter() - started:.0f} s; the Python "
                  f"loop-and-call overhead included on both sides is {baseline:.0f} "
                  f"instructions per call")
            if args.callgrind_keep:
                print(f"callgrind files kept in {args.callgrind_keep} "
                      f"(index.txt: case -> file)")
            results["callgrind"] = {"baseline_per_call": baseline, "left_out": left_out}

    ratio_sections(args.shapes, only, rounds, min_time, results, instr)
    scaling_names = [name for name in OPERATIONS
                     if not only or any(fnmatch.fnmatchcase(name, p) for p in only)]
    if not args.no_scaling and scaling_names:
        scaling_section(SCALING_ROWS[args.shapes], scaling_names, scaling_rounds, min_time,
                        results)
    misses = [label(e["name"], *e["shape"]) for e in results["ratios"] if e["status"] == "MISS"]
    instr_misses = [label(e["name"], *e["shape"]) for e in results["ratios"]
                    if e.get("instr_status") == "MISS"]
    nonlinear = [e["name"] for e in results["scaling"] if not e["linear"]]
    print(f"== summary: {sum(e['status'] == 'PASS' for e in results['ratios'])} PASS, "
          f"{len(misses)} MISS, {sum(e['status'] == 'SKIP' for e in results['ratios'])} SKIP"
          + (f"; missed: {', '.join(misses)}" if misses else "")
          + (f"; not linear: {', '.join(nonlinear)}" if nonlinear else ""))
    if args.callgrind and not isinstance(instr, str) and instr is not None:
        print(f"== callgrind summary: "
              f"{sum(e.get('instr_status') == 'PASS' for e in results['ratios'])} PASS, "
              f"{len(instr_misses)} MISS, "
              f"{sum(e.get('instr_status') == 'SKIP' for e in results['ratios'])} SKIP"
              + (f"; missed: {', '.join(instr_misses)}" if instr_misses else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        if results["scaling"]:
            plot_scaling(results, args.plot)
        else:
            print(f"note: no scaling data (--no-scaling); not writing {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
