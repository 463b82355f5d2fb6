"""Leak evidence: leakcheck.py under valgrind, reference counts, and resident memory.

The valgrind test parses the report instead of trusting the exit status: CPython and NumPy leave
blocks behind on their own, so only blocks (and memory errors) with a frame in indirect_buffer's
extension modules, or in the test helper whose tables the package's nannies free, count.
"""
import ctypes
import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python
from leakcheck import HELPER_PYX

from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

HERE = Path(__file__).resolve().parent
SANITIZED = bool(os.environ.get("IB_SANITIZE"))
# Frames that belong to us: the package's two extension modules and the helper module.
OUR_FRAMES = re.compile(r"buffer_impl|nannies|indirect_buffer|ib_leak_helper")
VALGRIND = shutil.which("valgrind")
# How many frames from malloc up count as "the allocation site" of a leaked block.
ALLOCATION_FRAMES = 6

needs_valgrind = pytest.mark.skipif(
    VALGRIND is None or SANITIZED,
    reason="valgrind is not installed" if VALGRIND is None else
    "valgrind cannot run an AddressSanitizer build (IB_SANITIZE is set)")


def leak_helper(cython_builder):
    """The compiled ib_leak_helper module (built once per session)."""
    return sys.modules.get("ib_leak_helper") or cython_builder("ib_leak_helper", HELPER_PYX)


# ---------------------------------------------------------------------------------------------
# valgrind report parsing
# ---------------------------------------------------------------------------------------------

LEAK_HEADER = re.compile(
    r"^([\d,]+) (?:\(([\d,]+) direct, [\d,]+ indirect\) )?bytes in [\d,]+ blocks are "
    r"definitely lost")
ERROR_HEADERS = ("Invalid read", "Invalid write", "Invalid free", "Mismatched free",
                 "Conditional jump", "Use of uninitialised", "Syscall param",
                 "Source and destination overlap", "Argument '")


def parse_valgrind_log(text):
    """Split a memcheck log into records: [(header, [frame lines])]."""
    records, current = [], None
    for raw in text.splitlines():
        line = re.sub(r"^==\d+==\s?", "", raw)
        if not line.strip():
            current = None
            continue
        if re.match(r"^\s+(at|by) 0x", line):
            if current is not None:
                current[1].append(line.strip())
            continue
        current = (line.strip(), [])
        records.append(current)
    return records


def summarise(records):
    """Definite leaks and memory errors, split into ours and everybody else's."""
    out = {"our_leak_bytes": 0, "our_leaks": [], "other_leak_bytes": 0, "our_errors": []}
    for header, frames in records:
        m = LEAK_HEADER.match(header)
        ours = any(OUR_FRAMES.search(f) for f in frames)
        if m:
            # A block is ours if our code allocated it: a frame of ours near the allocation
            # site. Deeper frames only mean that our module was running (e.g. its init
            # imported something whose interned strings CPython 3.13 never frees).
            ours = any(OUR_FRAMES.search(f) for f in frames[:ALLOCATION_FRAMES])
            direct = int((m.group(2) or m.group(1)).replace(",", ""))
            if ours:
                out["our_leak_bytes"] += direct
                out["our_leaks"].append("\n".join([header] + frames))
            else:
                out["other_leak_bytes"] += direct
        elif header.startswith(ERROR_HEADERS) and ours:
            out["our_errors"].append("\n".join([header] + frames))
    return out


def run_under_valgrind(tmp_path, helper_dir, *args):
    log = tmp_path / "valgrind.log"
    cmd = [VALGRIND, "--leak-check=full", "--show-leak-kinds=definite",
           "--errors-for-leak-kinds=definite", "--error-exitcode=99", "--num-callers=40",
           f"--suppressions={HERE / 'valgrind-python.supp'}", f"--log-file={log}",
           sys.executable, str(HERE / "leakcheck.py"), "--helper-dir", str(helper_dir), *args]
    env = dict(os.environ, PYTHONMALLOC="malloc")
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                          timeout=900, cwd=tmp_path)
    text = log.read_text()
    return proc, text, summarise(parse_valgrind_log(text))


@needs_valgrind
def test_valgrind_no_definite_leaks_from_our_code(cython_builder, tmp_path):
    helper = leak_helper(cython_builder)
    proc, text, summary = run_under_valgrind(tmp_path, Path(helper.__file__).parent,
                                             "--iterations", "100")
    # 0: clean; 99: valgrind found errors or leaks somewhere (judged from the report below).
    assert proc.returncode in (0, 99), f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{text}"
    assert "leakcheck: 100 iterations done" in proc.stdout, proc.stdout + proc.stderr
    assert "LEAK SUMMARY" in text or "All heap blocks were freed" in text, text[-3000:]
    assert summary["our_errors"] == [], "\n\n".join(summary["our_errors"])
    assert summary["our_leak_bytes"] == 0, "\n\n".join(summary["our_leaks"])
    lost = re.search(r"definitely lost: ([\d,]+) bytes", text)
    print(f"valgrind exit {proc.returncode}; definitely lost (after suppressions): "
          f"{lost.group(1) if lost else 0} bytes; ours: {summary['our_leak_bytes']}; "
          f"others (unsuppressed): {summary['other_leak_bytes']}")


@needs_valgrind
def test_valgrind_report_parser_sees_a_leak_of_ours(cython_builder, tmp_path):
    """Self-test: a C table leaked on purpose from the helper module is attributed to us."""
    helper = leak_helper(cython_builder)
    proc, _, summary = run_under_valgrind(tmp_path, Path(helper.__file__).parent,
                                          "--iterations", "1", "--selftest-leak")
    assert proc.returncode == 99, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    # The table (3 pointers) plus its 3 rows of 4 doubles.
    assert summary["our_leak_bytes"] == 3 * 8, summary
    assert any("ib_helper_new_table" in leak for leak in summary["our_leaks"]), summary


def test_report_parser_on_a_sample():
    sample = """\
==1== 96 bytes in 1 blocks are definitely lost in loss record 607 of 1,005
==1==    at 0x48465EF: calloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==1==    by 0x5998723: __pyx_f_15indirect_buffer_11buffer_impl__new_owned (buffer_impl.c:17291)
==1==
==1== 168 (56 direct, 112 indirect) bytes in 1 blocks are definitely lost in loss record 2
==1==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==1==    by 0x4B0ED74: gc_alloc (gcmodule.c:2283)
==1==
==1== Invalid read of size 8
==1==    at 0x1: nanny_dealloc (in /x/indirect_buffer/nannies.cpython-311-x86_64-linux-gnu.so)
==1==
"""
    s = summarise(parse_valgrind_log(sample))
    assert s["our_leak_bytes"] == 96
    assert s["other_leak_bytes"] == 56
    assert len(s["our_errors"]) == 1


# ---------------------------------------------------------------------------------------------
# reference counts of source objects return to their baseline
# ---------------------------------------------------------------------------------------------

def _cycle_everything(a, rows, ba_rows, table, nanny):
    for _ in range(50):
        r = IndirectMemory2D.view_from_rows(a)
        memoryview(r).release()
        r.to_numpy()
        r.release()
        c = IndirectMemory2D.view_from_columns(np.asfortranarray(a))
        del c
        del r
        coll = BufferCollection2D(rows)
        dv = coll.copy()
        coll.copy_to(np.empty(a.shape))
        del coll, dv
        coll = BufferCollection2D(ba_rows)
        coll.release()
        with pytest.raises(BufferError):
            BufferCollection2D(rows[:4] + [np.arange(a.shape[1] + 1.0)] + rows[4:])
        with pytest.raises(TypeError):
            BufferCollection2D(ba_rows[:4] + [object()])
        m = IndirectMemory2D.from_ctype_ptr(table, a.shape[0], a.shape[1], memory_nanny=nanny)
        v = memoryview(m)
        with pytest.raises(BufferError):
            m.release()
        v.release()
        m.release()
        m = IndirectMemory2D.from_address(ctypes.addressof(table), a.shape[0], a.shape[1], "d",
                                          memory_nanny=nanny)
        o = IndirectMemory2D.create_memory(a.shape[0], a.shape[1], "d")
        o.copy_from(m)
        o.copy_from(a)
        o.copy_to(m)
        with pytest.raises(BufferError):
            o.copy_from(a[:, :1])
        del m, o
        x = as_indirect(a)
        y = as_indirect(a.tolist())
        del x, y


def test_reference_counts_return_to_baseline():
    a = np.arange(24.0).reshape(6, 4)
    rows = [a[i].copy() for i in range(6)]
    ba_rows = [bytearray(4) for _ in range(6)]
    table = (ctypes.POINTER(ctypes.c_double) * 6)(*[(ctypes.c_double * 4)() for _ in range(6)])

    class Nanny:
        pass

    nanny = Nanny()
    watched = [a, table, nanny] + rows + ba_rows
    _cycle_everything(a, rows, ba_rows, table, nanny)  # warm caches (formats, dtypes)
    gc.collect()
    before = [sys.getrefcount(o) for o in watched]
    _cycle_everything(a, rows, ba_rows, table, nanny)
    gc.collect()
    after = [sys.getrefcount(o) for o in watched]
    assert after == before
    for row in ba_rows:
        row.append(0)  # no buffer of theirs is still held


# ---------------------------------------------------------------------------------------------
# resident memory stays flat over 10^5 cycles
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer's quarantine makes RSS grow by design")
def test_resident_memory_flat_over_many_cycles():
    proc = run_python("""
        import ctypes, os, time
        import numpy as np
        from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

        PAGE = os.sysconf("SC_PAGE_SIZE")

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * PAGE

        a = np.arange(32.0).reshape(4, 8)
        out = np.empty((4, 8))
        rows = [a[i].copy() for i in range(4)]
        bad_rows = rows[:2] + [np.arange(7.0)] + rows[2:]
        table = (ctypes.POINTER(ctypes.c_double) * 4)(*[(ctypes.c_double * 8)() for _ in range(4)])

        def cycle(i):
            m = IndirectMemory2D.create_memory(4, 8, "d")
            v = memoryview(m)
            v[1, 1] = i
            v.release()
            d = m.direct_view()
            d.release()
            m.copy_from(a)
            m.copy_to(out)
            if i % 8 == 0:
                m.to_numpy()
                m.copy()
            m.release()
            t = IndirectMemory2D.from_ctype_ptr(table, 4, 8)
            t.release()
            c = BufferCollection2D(rows)
            memoryview(c).release()
            c.release()
            r = IndirectMemory2D.view_from_rows(a)
            r.release()
            try:
                BufferCollection2D(bad_rows)
            except BufferError:
                pass
            try:
                IndirectMemory2D.create_memory(2 ** 40, 2 ** 40, "d")
            except MemoryError:
                pass
            x = as_indirect(a)
            del x

        start = time.perf_counter()
        N = 100_000
        for i in range(N // 10):
            cycle(i)
        base = rss()
        for i in range(N // 10, N):
            cycle(i)
        grown = rss() - base
        print(grown, time.perf_counter() - start)
        # 9*10^4 cycles: even an 8-byte leak per cycle would show as 700 kB.
        assert grown < 512 * 1024, f"resident memory grew by {grown} bytes"
    """, timeout=120)
    assert proc.returncode == 0
