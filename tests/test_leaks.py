"""Leak checks: reference counts return to baseline, resident memory stays flat over many cycles.

The resident-memory loops run in a child interpreter (run_python) so that nothing else in the
test run allocates in between; the cyclic GC is disabled there, so everything must be freed by
reference counting alone.
"""
import array
import ctypes
import gc
import os
import sys

import pytest
from conftest import run_python

# AddressSanitizer keeps freed memory in quarantine, so resident memory grows by design there;
# the ASan run checks memory errors, valgrind (tests/test_leakcheck.py) checks leaks.
rss_test = pytest.mark.skipif(bool(os.environ.get("IB_SANITIZE")),
                              reason="resident memory is not meaningful under ASan")

from indirect_buffer import BufferCollection2D, IndirectMemory2D

RSS_PRELUDE = """
import ctypes, gc, os, sys
from indirect_buffer import IndirectMemory2D, BufferCollection2D
PAGE = os.sysconf('SC_PAGE_SIZE')

def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE

def check_flat(cycle, n, warmup, limit_mb=4, use_gc=False):
    # ctypes' cast() builds reference cycles of its own: only those loops run with the GC.
    if use_gc:
        gc.enable()
    else:
        gc.disable()
    for _ in range(warmup):
        cycle()
    before = rss()
    for _ in range(n):
        cycle()
    grown = rss() - before
    print(f'{n} cycles: resident memory grew by {grown / 2**20:.2f} MiB')
    assert grown < limit_mb * 2 ** 20, f'resident memory grew by {grown / 2**20:.1f} MiB'
"""


def check_rss(body):
    run_python(RSS_PRELUDE + body, timeout=300)


@rss_test
def test_rss_create_memory_cycles():
    # 20000 x 32 KiB: a leak of the data block alone would be 625 MiB.
    check_rss("""
def cycle():
    mem = IndirectMemory2D.create_memory(64, 64, 'd')
    mv = memoryview(mem)
    mv[63, 63] = 1.0
    del mem
    assert mv[63, 63] == 1.0
    del mv
check_flat(cycle, 20000, 2000)
""")


@rss_test
def test_rss_create_memory_readonly_and_many_views():
    check_rss("""
def cycle():
    mem = IndirectMemory2D.create_memory(32, 128, 'i', readonly=True)
    views = [memoryview(mem) for _ in range(4)]
    views[0].release()
    del views
    mem.release()
check_flat(cycle, 10000, 1000)
""")


@rss_test
def test_rss_reinterpret_and_failed_requests():
    check_rss("""
import _testbuffer as tb
def cycle():
    mem = IndirectMemory2D.create_memory(16, 256, 'd')
    mem.reinterpret_data('B')
    mem.reinterpret_data('i')
    try:
        tb.ndarray(mem, getbuf=tb.PyBUF_STRIDED)
    except BufferError:
        pass
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    try:
        mem.reinterpret_data('d')
    except BufferError:
        pass
    del nd
check_flat(cycle, 10000, 1000)
""")


@rss_test
def test_rss_failed_constructions():
    check_rss("""
rows = [bytearray(4096) for _ in range(8)]
bad_rows = rows + [bytearray(100)]
def cycle():
    for args in [(-1, 2, 'd'), (2, 2, 'Z'), (2 ** 40, 2 ** 20, 'd'), (1, sys.maxsize, 'b')]:
        try:
            IndirectMemory2D.create_memory(*args)
        except (ValueError, MemoryError):
            pass
    try:
        BufferCollection2D(bad_rows)
    except BufferError:
        pass
    try:
        BufferCollection2D(rows + [None])
    except TypeError:
        pass
check_flat(cycle, 5000, 500)
for r in rows:
    r.append(0)  # every row's buffer was released again
""")


@rss_test
def test_rss_collection_cycles():
    check_rss("""
rows = [bytearray(8 * 512) for _ in range(16)]
def cycle():
    coll = BufferCollection2D(rows, format='B')
    mv = memoryview(coll)
    mv[15, 4095] = 7
    del coll, mv
def fresh_rows_cycle():
    coll = BufferCollection2D([bytearray(4096) for _ in range(8)])
    memoryview(coll)[7, 4095] = 1
check_flat(cycle, 10000, 1000)
check_flat(fresh_rows_cycle, 5000, 500)
for r in rows:
    r.append(0)
""")


@rss_test
def test_rss_ctypes_cycles():
    check_rss("""
rows = [(ctypes.c_double * 256)() for _ in range(16)]
table = (ctypes.POINTER(ctypes.c_double) * 16)(
    *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
pp = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
base = sys.getrefcount(table)
def cycle():
    mem = IndirectMemory2D.from_ctype_ptr(table, 16, 256)
    memoryview(mem)[15, 255] = 2.0
    mem2 = IndirectMemory2D.from_ctype_ptr(pp, 16, 256, memory_nanny=rows)
    memoryview(mem2)[0, 0] = 1.0
def fresh_table_cycle():
    r = [(ctypes.c_double * 512)() for _ in range(4)]
    t = (ctypes.POINTER(ctypes.c_double) * 4)(
        *[ctypes.cast(x, ctypes.POINTER(ctypes.c_double)) for x in r])
    mv = memoryview(IndirectMemory2D.from_ctype_ptr(t, 4, 512))
    mv[3, 511] = 1.0
check_flat(cycle, 10000, 1000)
assert sys.getrefcount(table) == base, (sys.getrefcount(table), base)
check_flat(fresh_table_cycle, 5000, 500, use_gc=True)
""")


# ---------------------------------------------------------------------------------------------
# reference counts
# ---------------------------------------------------------------------------------------------

def test_memory_refcount_returns_to_baseline():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(3, 3, "d")
    base = sys.getrefcount(mem)
    views = [memoryview(mem) for _ in range(3)]
    nd = tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO)
    assert sys.getrefcount(mem) == base + 4  # each export holds exactly one reference
    del views, nd
    assert sys.getrefcount(mem) == base
    assert mem.export_count == 0


def test_refused_request_takes_no_reference():
    tb = pytest.importorskip("_testbuffer")
    mem = IndirectMemory2D.create_memory(3, 3, "d", readonly=True)
    base = sys.getrefcount(mem)
    for flags in (tb.PyBUF_SIMPLE, tb.PyBUF_FULL, tb.PyBUF_CONTIG_RO):
        with pytest.raises(BufferError):
            tb.ndarray(mem, getbuf=flags)
    assert sys.getrefcount(mem) == base
    assert mem.export_count == 0


def test_python_nanny_refcount_returns_to_baseline():
    rows = [(ctypes.c_int * 4)() for _ in range(2)]
    table = (ctypes.POINTER(ctypes.c_int) * 2)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_int)) for r in rows])
    nanny = object()
    base_nanny, base_table = sys.getrefcount(nanny), sys.getrefcount(table)
    mem = IndirectMemory2D.from_ctype_ptr(table, 2, 4, memory_nanny=nanny)
    mv = memoryview(mem)
    assert sys.getrefcount(nanny) > base_nanny
    del mem
    assert sys.getrefcount(nanny) > base_nanny
    del mv
    assert sys.getrefcount(nanny) == base_nanny
    assert sys.getrefcount(table) == base_table


def test_from_address_nanny_refcount():
    rows = [(ctypes.c_double * 2)() for _ in range(2)]
    table = (ctypes.c_void_p * 2)(*[ctypes.addressof(r) for r in rows])
    nanny = (rows, table)
    base = sys.getrefcount(nanny)
    mem = IndirectMemory2D.from_address(ctypes.addressof(table), 2, 2, "d", memory_nanny=nanny)
    assert sys.getrefcount(nanny) == base + 1
    mv = memoryview(mem)
    mv[1, 1] = 3.0
    assert rows[1][1] == 3.0
    del mem, mv
    assert sys.getrefcount(nanny) == base


def test_failed_wraps_take_no_reference():
    rows = [(ctypes.c_double * 2)() for _ in range(3)]
    table = (ctypes.POINTER(ctypes.c_double) * 3)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
    nanny = object()
    base_t, base_n = sys.getrefcount(table), sys.getrefcount(nanny)
    with pytest.raises((TypeError, BufferError)):
        IndirectMemory2D.from_ctype_ptr(table, 4, 2, memory_nanny=nanny)
    with pytest.raises(ValueError):
        IndirectMemory2D.from_ctype_ptr(table, -1, 2, memory_nanny=nanny)
    table[2] = ctypes.POINTER(ctypes.c_double)()
    with pytest.raises(ValueError):
        IndirectMemory2D.from_ctype_ptr(table, 3, 2, memory_nanny=nanny)
    gc.collect()
    assert sys.getrefcount(table) == base_t
    assert sys.getrefcount(nanny) == base_n


def test_collection_rows_refcount_with_many_views():
    tb = pytest.importorskip("_testbuffer")
    rows = [array.array("i", range(5)) for _ in range(4)]
    base = [sys.getrefcount(r) for r in rows]
    coll = BufferCollection2D(rows)
    consumers = [tb.ndarray(coll, getbuf=tb.PyBUF_FULL_RO) for _ in range(3)]
    views = [memoryview(coll) for _ in range(3)]
    coll_base = sys.getrefcount(coll)
    del consumers
    assert sys.getrefcount(coll) == coll_base - 3
    del coll
    assert all(sys.getrefcount(r) > b for r, b in zip(rows, base))
    del views
    assert [sys.getrefcount(r) for r in rows] == base


def test_iterable_of_rows_is_not_kept():
    rows = [bytearray(3) for _ in range(2)]
    base = sys.getrefcount(rows)
    coll = BufferCollection2D(rows)
    assert sys.getrefcount(rows) == base
    del coll
