"""Regression tests for bugs found in review: each failed (or crashed) before its fix."""
import ctypes
import gc
import sys
import weakref

import numpy as np
import pytest
from conftest import run_python

from indirect_buffer import BufferCollection2D, IndirectMemory2D


def ctypes_matrix():
    """A 2x3 ctypes array: a C-contiguous buffer whose exporter leaves strides NULL."""
    a = ((ctypes.c_double * 3) * 2)()
    for i in range(2):
        for j in range(3):
            a[i][j] = 10 * i + j
    return a


EXPECTED = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]])


def test_ctypes_source_with_null_strides_in_a_subprocess():
    # Used to dereference the NULL strides: run where a segfault cannot take pytest down.
    run_python("""
        import ctypes
        from indirect_buffer import IndirectMemory2D, as_indirect
        a = ((ctypes.c_double * 3) * 2)()
        IndirectMemory2D.view_from_rows(a)
        as_indirect(a)
        m = IndirectMemory2D.create_memory(2, 3, "d")
        m.copy_from(a)
        m.copy_to(a)
    """)


def test_ctypes_source_with_null_strides_values():
    a = ctypes_matrix()
    np.testing.assert_array_equal(IndirectMemory2D.view_from_rows(a).to_numpy(), EXPECTED)
    m = IndirectMemory2D.create_memory(2, 3, "d")
    m.copy_from(a)
    np.testing.assert_array_equal(m.to_numpy(), EXPECTED)
    m.copy_from(EXPECTED * 2)
    m.copy_to(a)
    assert [list(row) for row in a] == (EXPECTED * 2).tolist()


def test_reentrant_init_is_refused_and_nothing_stays_locked():
    inner = [bytearray(8) for _ in range(3)]
    holder = [BufferCollection2D.__new__(BufferCollection2D)]

    def rows():
        holder[0].__init__(inner)  # re-enters while the outer call is preparing
        yield bytearray(8)

    # The first __init__ owns the object: the re-entrant one is refused, and that error
    # ends the outer one too, which leaves the object uninitialised and nothing locked.
    with pytest.raises(TypeError, match="already initialised"):
        holder[0].__init__(rows())
    with pytest.raises(ValueError, match="uninitialised"):
        holder[0].shape
    with pytest.raises(TypeError, match="already initialised"):
        holder[0].__init__(inner)
    inner[0].append(1)  # no row buffer was kept


def test_failed_init_gives_rows_back_at_once():
    good = bytearray(8)
    coll = BufferCollection2D.__new__(BufferCollection2D)
    with pytest.raises(BufferError, match="row 1 has 4 elements, expected 8"):
        coll.__init__([good, bytearray(4)])
    good.append(1)  # not locked any more, although coll is still alive
    assert coll.export_count == 0


def test_pointer_to_pointer_repointed_after_wrapping():
    rows = [(ctypes.c_double * 2)(2 * i, 2 * i + 1) for i in range(2)]
    table = (ctypes.POINTER(ctypes.c_double) * 2)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
    p = ctypes.pointer(table[0])
    m = IndirectMemory2D.from_ctype_ptr(p, 2, 2)
    del table, rows
    p.contents = ctypes.POINTER(ctypes.c_double)()  # drops p's own reference to the table
    gc.collect()
    np.testing.assert_array_equal(m.to_numpy(), [[0.0, 1.0], [2.0, 3.0]])


def test_str_subclass_cannot_split_validated_and_exported_format():
    class Sneaky(str):
        def encode(self, *args, **kwargs):
            return b"d"

        def isascii(self):
            return True

    m = IndirectMemory2D.create_memory(1, 1, Sneaky("i"))
    assert (m.format, m.itemsize) == ("i", 4)
    assert memoryview(m).format == "i"


def test_rows_of_itemsize_zero_are_refused():
    class Empty(ctypes.Structure):
        _fields_ = []

    with pytest.raises(BufferError, match="itemsize 0"):
        BufferCollection2D([(Empty * 4)()])
    with pytest.raises(BufferError, match="itemsize 0"):
        IndirectMemory2D.view_from_rows(np.zeros((2, 2), dtype=[]))


def test_non_ascii_row_format_is_a_buffer_error():
    fields = [("\u00e9", ctypes.c_int)]
    row_type = type("Accent", (ctypes.Structure,), {"_fields_": fields})
    with pytest.raises(BufferError, match="non-ASCII format"):
        BufferCollection2D([(row_type * 2)()])


def test_null_row_set_after_wrapping_makes_copies_raise():
    rows = [(ctypes.c_double * 2)() for _ in range(2)]
    table = (ctypes.POINTER(ctypes.c_double) * 2)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
    m = IndirectMemory2D.from_ctype_ptr(table, 2, 2)
    # C-side re-pointing to NULL, in the table the memory exports (lent memory exports its
    # own copy of table).
    ctypes.cast(m.address, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))[1] = \
        ctypes.POINTER(ctypes.c_double)()
    with pytest.raises(ValueError, match="row 1 of the source's pointer table is NULL"):
        m.to_numpy()
    with pytest.raises(ValueError, match="row 1 of the destination's pointer table is NULL"):
        m.copy_from(np.zeros((2, 2)))


@pytest.mark.parametrize("fmt, values", [
    ("c", [b"a", b"b"]),
    ("!d", [1.5, -2.0]),
    ("2i", [(1, 2), (3, 4)]),
    ("d ", [0.25, 4.0]),
])
def test_to_numpy_for_formats_numpy_spells_differently(fmt, values):
    import struct
    m = IndirectMemory2D.create_memory(1, 2, fmt)
    raw = b"".join(struct.pack(fmt, *(v if isinstance(v, tuple) else (v,))) for v in values)
    m.copy_from(np.frombuffer(raw, dtype=np.uint8).reshape(1, -1).view(
        np.dtype((np.void, m.itemsize))), cast=True)
    out = m.to_numpy()
    assert out.shape[:2] == (1, 2)
    assert out.tobytes() == raw
    if fmt == "2i":  # NumPy's own reading of the same bytes: sub-arrays of two ints
        assert out.tolist() == [[[1, 2], [3, 4]]]


def test_view_from_rows_cycle_is_collectable():
    class Holder:
        pass

    h = Holder()
    h.data = bytearray(16)
    h.view = IndirectMemory2D.view_from_rows(h.data)
    h.self = h
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is None


def test_python_subclass_buffer_hook_cannot_keep_the_copy_fast_path():
    # The reviewer's scenario was a Python subclass whose __buffer__ (3.12+) kept a view of the
    # table made inside the library's own copy, so that C could re-point a row the copy's fast
    # path still trusted. Python subclasses are refused now (issue 8), like memoryview's; what
    # stays reachable is the table handed out on purpose (address), and copies must follow a
    # row C re-points through it.
    code = """
        import ctypes
        import numpy as np
        from indirect_buffer import BufferCollection2D

        try:
            class Hooked(BufferCollection2D):
                def __buffer__(self, flags):
                    return super().__buffer__(flags)
        except TypeError:
            pass
        else:
            raise AssertionError("a Python subclass of BufferCollection2D was created")

        base = np.zeros((2, 4))            # rows back to back
        c = BufferCollection2D([base[0], base[1]])
        c.copy_to(np.zeros((2, 4)))        # the fast path, while the layout is private
        table = (ctypes.c_void_p * 2).from_address(c.address)
        small = np.zeros(4)
        table[1] = small.ctypes.data       # C re-points row 1
        c.copy_from(np.ones((2, 4)))
        assert base[1].tolist() == [0.0] * 4, base
        assert small.tolist() == [1.0] * 4, small
        assert base[0].tolist() == [1.0] * 4, base
        out = np.zeros((2, 4))
        small[:] = 7.0
        c.copy_to(out)
        assert out.tolist() == [[1.0] * 4, [7.0] * 4], out
    """
    run_python(code)


def test_collection_cycle_through_its_rows_is_collectable():
    class Row(bytearray):
        pass

    rows = [Row(8), Row(8)]
    coll = BufferCollection2D(rows)
    rows[0].owner = coll  # row -> collection -> row: a reference cycle
    before = sys.getrefcount(rows[1])
    del coll
    gc.collect()
    after = sys.getrefcount(rows[1])
    assert after == before  # nothing collected yet: rows[0] holds it
    keep = rows[1]
    del rows
    gc.collect()
    keep.append(1)  # its buffer was released with the collection
    count = sys.getrefcount(keep)
    assert count == 2


def test_collection_rows_stay_referenced_while_it_lives():
    coll = BufferCollection2D([np.arange(3.0) for _ in range(2)])
    gc.collect()
    np.testing.assert_array_equal(coll.to_numpy(), [[0.0, 1.0, 2.0]] * 2)


def test_weak_references_do_not_keep_memory_alive():
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    coll = BufferCollection2D([bytearray(4)])
    refs = [weakref.ref(mem), weakref.ref(coll)]
    view = memoryview(mem)
    del mem, coll
    assert refs[0]() is not None  # the view keeps it alive
    assert refs[1]() is None
    view.release()
    del view
    assert refs[0]() is None
