"""Exact NumPy arrays read without NumPy's buffer export (ndarray_export.pxi): every check the
export path makes must still hold, with memoryview and NumPy as the oracles.

Each test builds its objects twice where it matters: the first export of a dtype goes through
the buffer protocol (and teaches the cache), later ones are read directly.
"""
import gc
import sys
import weakref

import numpy as np
import pytest

from indirect_buffer import BufferCollection2D, IndirectMemory2D

DTYPES = ["f8", "f4", "i8", "i4", "i2", "u1", "i1", "?", "c16", "c8", "u8", ">f8", "<i4",
          "e", "V3", "(2,)i4", "S4"]


def _rows(dtype, n=3, cols=5):
    base = (np.arange(n * cols * 16) % 251).astype(np.uint8).reshape(n, -1)
    dt = np.dtype(dtype)
    return [np.frombuffer(bytearray(base[i].tobytes()[:cols * dt.itemsize]), dtype=dt).copy()
            for i in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_collection_format_and_values_match_memoryview(dtype):
    for _ in range(2):  # export path, then the cached dtype
        rows = _rows(dtype)
        mem = BufferCollection2D(rows)
        fmt = memoryview(rows[0]).format
        assert mem.format == fmt
        assert mem.itemsize == rows[0].itemsize
        assert mem.shape == (3, rows[0].size if rows[0].dtype.shape == () else 5)
        assert memoryview(mem).tobytes() == b"".join(r.tobytes() for r in rows)


def test_same_itemsize_other_dtype_is_refused():
    BufferCollection2D([np.zeros(4, dtype=np.int64)])  # both dtypes cached from here on
    BufferCollection2D([np.zeros(4)])
    rows = [np.zeros(4), np.zeros(4), np.zeros(4, dtype=np.int64)]
    with pytest.raises(BufferError, match="row 2 has format '[lq]'"):
        BufferCollection2D(rows)
    with pytest.raises(BufferError, match="row 1 has format 'd'"):
        BufferCollection2D([np.zeros(4, dtype=np.int64), np.zeros(4)])
    with pytest.raises(BufferError, match="row 1 has format 'd'"):
        BufferCollection2D([np.zeros(4, dtype=np.int64), np.zeros(4)], format="q")


def test_structured_dtype_renamed_between_collections():
    dt = np.dtype([("a", "<i4"), ("b", "<f4")])
    rows = [np.zeros(3, dtype=dt), np.zeros(3, dtype=dt)]
    first = BufferCollection2D(rows)
    assert first.format == memoryview(rows[0]).format
    first.release()
    dt.names = ("x", "y")  # the same dtype object, another format
    again = BufferCollection2D(rows)
    assert again.format == memoryview(rows[0]).format
    assert "x" in again.format and "a" not in again.format


@pytest.mark.parametrize("how", ["strided", "fortran2d", "reversed"])
def test_non_contiguous_rows_are_refused(how):
    grid = np.arange(40.0).reshape(4, 10)
    if how == "strided":
        rows = [grid[i, ::2] for i in range(4)]
    elif how == "fortran2d":
        rows = [np.asfortranarray(grid.reshape(4, 2, 5)[i]) for i in range(4)]
    else:
        rows = [grid[i, ::-1] for i in range(4)]
    BufferCollection2D([r.copy() for r in rows])  # the dtype is cached now
    with pytest.raises(BufferError, match="row 0 is not C-contiguous"):
        BufferCollection2D(rows)
    oracle = [memoryview(r) for r in rows]
    assert not oracle[0].c_contiguous


def test_read_only_rows_make_a_read_only_collection():
    rows = [np.arange(4.0), np.arange(4.0)]
    rows[1].flags.writeable = False
    for _ in range(2):
        mem = BufferCollection2D(rows)
        assert mem.readonly
        with pytest.raises(BufferError):
            mem.copy_from(np.zeros((2, 4)))
        mem.release()
    rows[1] = np.arange(4.0)
    mem = BufferCollection2D(rows)
    assert not mem.readonly
    mem.copy_from(np.full((2, 4), 7.0))
    assert (rows[0] == 7).all() and (rows[1] == 7).all()


def test_unravel_and_row_lengths():
    cube = np.arange(24.0).reshape(2, 3, 4)
    rows = [cube[0], cube[1]]
    BufferCollection2D(rows)
    with pytest.raises(BufferError, match="row 0 is 2-D, expected 1-D"):
        BufferCollection2D(rows, unravel=False)
    mem = BufferCollection2D(rows)
    assert mem.shape == (2, 12)
    np.testing.assert_array_equal(mem.to_numpy(), cube.reshape(2, 12))
    with pytest.raises(BufferError, match="row 1 has 3 elements, expected 4"):
        BufferCollection2D([np.zeros(4), np.zeros(3)])
    empty = BufferCollection2D([np.zeros(0), np.zeros(0)])
    assert empty.shape == (2, 0)


def test_rows_held_like_an_export():
    # NumPy refuses resize() of an exported array by its reference count: a collection or a
    # row view must hold the array exactly as memoryview does.
    def refused(hold):
        a = np.zeros(8)
        before = sys.getrefcount(a)
        holder = hold(a)
        try:
            a.resize(16)
        except ValueError:
            result = True
        else:
            result = False
        holder.release()
        del holder
        gc.collect()
        assert sys.getrefcount(a) == before
        return result

    assert refused(memoryview)
    for _ in range(2):
        assert refused(lambda a: BufferCollection2D([a]))
        assert refused(lambda a: IndirectMemory2D.view_from_rows(a))


def test_row_view_of_a_cached_dtype():
    for _ in range(2):
        img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        view = IndirectMemory2D.view_from_rows(img)
        assert view.shape == (2, 12) and view.format == "B"
        np.testing.assert_array_equal(view.to_numpy(), img.reshape(2, 12))
        ro = np.frombuffer(bytes(64), dtype=np.float64).reshape(2, 4)
        with pytest.raises(BufferError, match="read-only"):
            IndirectMemory2D.view_from_rows(ro)
        assert IndirectMemory2D.view_from_rows(ro, readonly=True).readonly
        with pytest.raises(BufferError, match="dimension 1 has stride"):
            IndirectMemory2D.view_from_rows(np.asfortranarray(np.zeros((3, 4))))


@pytest.mark.filterwarnings("ignore:Setting the shape:DeprecationWarning")  # NumPy 2.5+
def test_row_view_survives_a_shape_assignment_and_keeps_the_array_alive():
    a = np.arange(12.0).reshape(3, 4)
    IndirectMemory2D.view_from_rows(a)
    view = IndirectMemory2D.view_from_rows(a)
    a.shape = (4, 3)  # NumPy replaces its shape array; the view copied what it needed
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is not None
    np.testing.assert_array_equal(view.to_numpy(), np.arange(12.0).reshape(3, 4))
    view.release()
    gc.collect()
    assert ref() is None


def _cycle_collected(make_holder):
    """box -> holder -> array -> its base (a bytearray subclass) -> box: collected?"""
    class Base(bytearray):
        pass

    class Box:
        pass

    box = Box()
    base = Base(32)
    base.box = box
    box.holder = make_holder(np.frombuffer(base, dtype=np.float64).reshape(2, 2))
    ref = weakref.ref(box)
    del box, base
    gc.collect()
    return ref() is None


@pytest.mark.parametrize("make", [lambda a: IndirectMemory2D.view_from_rows(a),
                                  lambda a: BufferCollection2D([a[0], a[1]])])
def test_cycles_through_arrays_collect_as_through_memoryview(make):
    oracle = _cycle_collected(memoryview)
    for _ in range(2):
        assert _cycle_collected(make) == oracle
