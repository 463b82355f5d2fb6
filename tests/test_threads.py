"""Many threads exporting, copying and releasing views of the same objects (with the GIL).

The export count must stay exact (never negative, 0 at the end), no update may be lost, and
release()/reinterpret_data() racing with exports either fail cleanly or win cleanly. Each
scenario runs in a subprocess with a short switch interval, so that a crash fails the test.
"""
from conftest import run_python

PRELUDE = r'''
import ctypes, sys, threading, traceback
import _testbuffer
import numpy as np
from indirect_buffer import BufferCollection2D, IndirectMemory2D

sys.setswitchinterval(1e-5)  # switch threads as often as possible
THREADS, ITERATIONS = 8, 2000
errors = []


def run_threads(target, count=THREADS, args=()):
    barrier = threading.Barrier(count)

    def wrapper(tid):
        try:
            barrier.wait()
            target(tid, *args)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=wrapper, args=(tid,)) for tid in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "thread hung"
    assert not errors, "\n".join(errors[:3])
'''


def test_concurrent_exports_keep_count_exact_and_lose_no_update():
    run_python(PRELUDE + r'''
owned = IndirectMemory2D.create_memory(THREADS, 4, "q")
rows = [np.zeros(4, dtype=np.int64) for _ in range(THREADS)]
coll = BufferCollection2D(rows)
table = (ctypes.POINTER(ctypes.c_int64) * THREADS)(
    *[(ctypes.c_int64 * 4)() for _ in range(THREADS)])
wrapped = IndirectMemory2D.from_ctype_ptr(table, THREADS, 4)
objs = [owned, coll, wrapped]
negative = []


def work(tid):
    scratch = np.empty((THREADS, 4), dtype=np.int64)
    for i in range(ITERATIONS):
        for obj in objs:
            # Each thread increments its own cells: (tid, 0) via memoryview, (tid, 1) via a
            # direct view or a _testbuffer export re-read, (tid, 2) via copy_to's copy.
            v = memoryview(obj)
            v[tid, 0] += 1
            v.release()
            if obj is owned:
                with obj.direct_view() as d:
                    d[tid, 1] += 1
            nd = _testbuffer.ndarray(obj, getbuf=_testbuffer.PyBUF_FULL_RO)
            assert nd.tolist()[tid][0] == i + 1
            del nd
            try:
                _testbuffer.ndarray(obj, getbuf=_testbuffer.PyBUF_SIMPLE)  # refused
            except BufferError:
                pass
            else:
                raise AssertionError("a PyBUF_SIMPLE export was accepted")
            obj.copy_to(scratch)
            assert scratch[tid, 0] == i + 1
            if obj.export_count < 0:
                negative.append(obj.export_count)


import time
start = time.perf_counter()
run_threads(work)
print("threads took", time.perf_counter() - start)
assert not negative, negative[:5]
for obj in objs:
    assert obj.export_count == 0, obj.export_count
    final = obj.to_numpy()
    assert (final[:, 0] == ITERATIONS).all(), final
assert (owned.to_numpy()[:, 1] == ITERATIONS).all()
assert all((r[0] == ITERATIONS) for r in rows)
for obj in objs:
    obj.release()
print("ok")
''')


def test_release_racing_with_exports_is_clean():
    """One thread keeps trying release(); the others export until it succeeds."""
    run_python(PRELUDE + r'''
expected = np.arange(128 * 256, dtype=np.float64).reshape(128, 256)
kinds = {
    "owned": lambda: (lambda m: (m.copy_from(expected), m)[1])(
        IndirectMemory2D.create_memory(128, 256, "d")),
    "collection": lambda: BufferCollection2D([expected[i].copy() for i in range(128)]),
    "rows": lambda: IndirectMemory2D.view_from_rows(expected.copy()),
}
for name, factory in kinds.items():
    m = factory()
    stats = {"released_by": None, "refused": 0, "finished": 0}
    lock = threading.Lock()
    exporters_done = threading.Event()

    def export_until_released(tid):
        out = np.empty_like(expected)
        for _ in range(ITERATIONS // 10):
            try:
                kind = tid % 3
                if kind == 0:
                    v = memoryview(m)
                    assert v[127, 255] == expected[127, 255]
                    v.release()
                elif kind == 1:
                    m.copy_to(out)  # copies without the GIL, holding an export
                    assert (out == expected).all()
                else:
                    nd = _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO)
                    assert nd.tolist()[5][7] == expected[5, 7]
                    del nd
            except ValueError as exc:
                assert "released" in str(exc), exc
                return

    def work(tid):
        if tid == 0:
            while True:
                all_done = exporters_done.is_set()
                try:
                    m.release()
                except BufferError:
                    assert not all_done, "export count stuck above 0 after the exporters ended"
                    stats["refused"] += 1
                    continue
                stats["released_by"] = "after exporters" if all_done else "racing"
                return
        try:
            export_until_released(tid)
        finally:
            with lock:
                stats["finished"] += 1
                if stats["finished"] == THREADS - 1:
                    exporters_done.set()

    run_threads(work)
    assert m.released and m.export_count == 0, (name, m.export_count)
    print(name, stats)
print("ok")
''')


def test_reinterpret_racing_with_exports_keeps_geometry_consistent():
    """State changes racing with exports: each export sees one consistent geometry."""
    run_python(PRELUDE + r'''
m = IndirectMemory2D.create_memory(16, 8, "d")
m.copy_from(np.arange(128.0).reshape(16, 8))
raw = m.to_numpy().tobytes()
changes = {"ok": 0, "refused": 0}


def work(tid):
    for i in range(ITERATIONS // 4):
        if tid == 0:
            try:
                m.reinterpret_data("B" if m.format == "d" else "d")
                changes["ok"] += 1
            except BufferError:
                changes["refused"] += 1
            continue
        if tid % 2:
            v = memoryview(m)
            assert v.shape[1] * v.itemsize == 64, (v.shape, v.itemsize)
            assert v.tobytes() == raw
            v.release()
        else:
            with m.direct_view() as d:
                assert d.nbytes == len(raw) and d.tobytes() == raw, (d.shape, d.format)


run_threads(work)
assert m.export_count == 0
assert changes["ok"] + changes["refused"] == ITERATIONS // 4
m.release()
print("ok")
''')


def test_collection_release_racing_with_exports_unlocks_rows():
    run_python(PRELUDE + r'''
rows = [bytearray(range(i, i + 16)) for i in range(32)]
coll = BufferCollection2D(rows)
done = threading.Event()


def work(tid):
    for _ in range(ITERATIONS):
        if done.is_set():
            return
        if tid == 0:
            try:
                coll.release()
                done.set()
            except BufferError:
                pass
            continue
        try:
            v = memoryview(coll)
        except ValueError:
            return
        assert v[3, 2] == 5
        v.release()


run_threads(work)
assert coll.export_count == 0
coll.release()  # if the racing thread never won, it wins now
assert coll.released
for r in rows:
    r.append(0)  # every row buffer was given back
print("ok")
''')
