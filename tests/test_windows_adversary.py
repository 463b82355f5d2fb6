"""Regressions from an adversary pass over windows under AddressSanitizer: the garbage
collector (any finalizer) releasing memory in the middle of making a window or its C table,
and C re-pointing a row to NULL through a window's table."""
import ctypes
import gc

import numpy as np
import pytest

from indirect_buffer import IndirectMemory2D


class _ReleaseAtNextCollection:
    """A gc callback that releases `target` when the next collection starts (once armed)."""

    def __init__(self):
        self.target = None
        self.armed = False
        self.hit = False

    def __call__(self, phase, info):
        if phase == "start" and self.armed:
            self.armed = False
            try:
                self.target.release()
                self.hit = True
            except (BufferError, ValueError):
                pass

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)
        gc.set_threshold(700)


def test_memory_released_by_a_collection_while_a_window_is_made():
    # Every generation-0 threshold lands the collection on another allocation of mem[...]
    # (on CPython < 3.12 collections run inside allocations). The window is made from
    # live memory, or mem[...] raises: never a window over a freed table.
    made = 0
    with _ReleaseAtNextCollection() as hook:
        for threshold in range(1, 40):
            mem = IndirectMemory2D.create_memory(4, 100, "d")
            mem.copy_from(np.arange(400.0).reshape(4, 100))
            hook.target, hook.hit = mem, False
            gc.collect()
            gc.set_threshold(threshold)
            hook.armed = True
            try:
                w = mem[1:3, 2:5]
            except ValueError as exc:
                assert "released" in str(exc)
                w = None
            hook.armed = False
            gc.set_threshold(700)
            if w is not None:
                made += 1
                assert not mem.released
                assert mem.export_count == 1
                np.testing.assert_array_equal(
                    w.to_numpy(), np.arange(400.0).reshape(4, 100)[1:3, 2:5])
                w.release()
                assert mem.export_count == 0
    assert made > 0


def test_window_released_by_a_collection_while_its_c_table_is_checked():
    # A str subclass as format is not cached: checking it allocates, and a collection there
    # releases the window. pinned() then raises; it never fills a table from a NULL one.
    class Format(str):
        pass

    base = IndirectMemory2D.create_memory(64, 8, "d")
    with _ReleaseAtNextCollection() as hook:
        for threshold in range(1, 60):
            w = base[:, 2:5]
            hook.target, hook.hit = w, False
            gc.collect()
            gc.set_threshold(threshold)
            hook.armed = True
            try:
                with w.pinned(Format("d")) as address:
                    assert not w.released and address != 0
            except ValueError as exc:
                assert hook.hit and "released" in str(exc)
            hook.armed = False
            gc.set_threshold(700)
            hook.target = None
            del w
    gc.collect()
    assert base.export_count == 0


@pytest.mark.parametrize("key", [np.s_[0:2], np.s_[1:4], np.s_[:]])
def test_row_set_to_null_through_a_window_is_reported_by_copies_of_its_memory(key):
    # A plain row window hands C the memory's own table slots: copies of the memory must
    # stop trusting its layout, find the NULL and say so (they crashed before).
    mem = IndirectMemory2D.create_memory(4, 3, "d")
    mem.copy_from(np.arange(12.0).reshape(4, 3))
    w = mem[key]
    first = key.start or 0
    with w.pinned("d", writable=True) as address:
        (ctypes.c_void_p * 1).from_address(address)[0] = None
    with pytest.raises(ValueError, match=f"row {first} of the source's pointer table is NULL"):
        mem.to_numpy()
    with pytest.raises(ValueError, match="is NULL"):
        mem.copy()
