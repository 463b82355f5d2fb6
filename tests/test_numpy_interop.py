"""NumPy interoperability: every copy/view/conversion API checked against NumPy as the oracle.

CPython's own indirect-buffer consumers (memoryview.tolist, _testbuffer) serve as a second,
independent oracle where NumPy cannot read the T** export itself.
"""
import ctypes
import gc
import sys
import weakref

import numpy as np
import pytest
from conftest import run_python

from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

_testbuffer = pytest.importorskip("_testbuffer")

M = IndirectMemory2D
FORMATS = "bBhHiIlLqQnNfd?"


def dtype_of(fmt):
    """NumPy's dtype for a native struct format (through a direct buffer, as NumPy sees it)."""
    return np.asarray(memoryview(bytes(16)).cast(fmt)).dtype


def sample(shape, fmt="d", seed=0):
    """Distinct-ish values of the format's dtype (full range for integers)."""
    dt = dtype_of(fmt)
    rng = np.random.default_rng(seed)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    return (rng.standard_normal(shape) * 1000).astype(dt)


def assert_same(actual, expected):
    """Same shape, dtype and bytes (bit-exact: copies must not convert anything)."""
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes()


def pil(a, writable=False):
    """A CPython _testbuffer PIL-style (suboffsets) copy of a 2-D array."""
    flags = _testbuffer.ND_PIL | (_testbuffer.ND_WRITABLE if writable else 0)
    return _testbuffer.ndarray(a.ravel().tolist(), shape=list(a.shape), format=a.dtype.char,
                               flags=flags)


def owned(a):
    m = M.create_memory(a.shape[0], a.shape[1], a.dtype.char)
    m.copy_from(a)
    return m


# ---------------------------------------------------------------------------------------------
# source / destination layouts: each makes an object exporting the values of the C array `a`
# ---------------------------------------------------------------------------------------------

def _strided(a):
    big = np.zeros((a.shape[0] * 2 + 1, a.shape[1] * 3 + 2), dtype=a.dtype)
    view = big[1::2, 2::3]
    view[...] = a
    return view


def _reversed(a):
    return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]


def _row_subset_view(a):
    big = np.zeros((a.shape[0] * 2, a.shape[1]), dtype=a.dtype)
    big[::2] = a
    return M.view_from_rows(big[::2])


def _column_view(a):
    return M.view_from_columns(np.asfortranarray(a.T))


def _collection(a):
    return BufferCollection2D([row.copy() for row in a], column_count=a.shape[1],
                              format=a.dtype.char)


SOURCES = {
    "C": lambda a: a,
    "F": np.asfortranarray,
    "strided": _strided,
    "reversed": _reversed,
    "column_slice": lambda a: np.ascontiguousarray(
        np.pad(a, ((0, 0), (1, 1))))[:, 1:-1],
    "pil": pil,
    "owned": owned,
    "rows_view": _row_subset_view,
    "columns_view": _column_view,
    "collection": _collection,
}


@pytest.mark.parametrize("layout", sorted(SOURCES))
@pytest.mark.parametrize("fmt", ["d", "i", "B"])
def test_copy_from_any_layout(layout, fmt):
    a = sample((5, 7), fmt, seed=1)
    src = SOURCES[layout](a)
    m = M.create_memory(5, 7, fmt)
    m.copy_from(src)
    assert_same(m.to_numpy(), a)
    assert memoryview(m).tolist() == a.tolist()


def _dest_array(kind, shape, dtype):
    if kind == "C":
        return np.zeros(shape, dtype)
    if kind == "F":
        return np.zeros(shape, dtype, order="F")
    if kind == "strided":
        return np.zeros((shape[0] * 2 + 1, shape[1] * 3 + 2), dtype)[1::2, 2::3]
    if kind == "reversed":
        return np.zeros(shape, dtype)[::-1, ::-1]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["C", "F", "strided", "reversed"])
@pytest.mark.parametrize("fmt", ["d", "h", "?"])
def test_copy_to_numpy_layouts(kind, fmt):
    a = sample((6, 4), fmt, seed=2)
    m = owned(a)
    dst = _dest_array(kind, a.shape, a.dtype)
    base = dst.base if dst.base is not None else dst
    before = base.copy()
    m.copy_to(dst)
    assert_same(dst, a)
    # Nothing outside the destination view was written.
    if base is not dst:
        touched = np.zeros(base.shape, bool)
        if kind == "strided":
            touched[1::2, 2::3] = True
        else:
            touched[...] = True
        assert (base[~touched] == before[~touched]).all()


def test_copy_to_pil_and_indirect_destinations():
    a = sample((4, 5), "d", seed=3)
    m = owned(a)
    dst = pil(np.zeros_like(a), writable=True)
    m.copy_to(dst)
    assert dst.tolist() == a.tolist()

    big = np.zeros((8, 5))
    view = M.view_from_rows(big[::2])
    m.copy_to(view)
    assert_same(big[::2], a)
    assert (big[1::2] == 0).all()

    other = M.create_memory(4, 5, "d")
    other.copy_from(m)
    assert_same(other.to_numpy(), a)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_native_format_round_trip(fmt):
    a = sample((3, 4), fmt, seed=4)
    m = M.create_memory(3, 4, fmt)
    assert_same(m.to_numpy(), np.zeros((3, 4), dtype_of(fmt)))
    m.copy_from(a)
    out = m.to_numpy()
    assert out.dtype == dtype_of(fmt)
    assert out.flags.c_contiguous and out.flags.writeable and out.flags.owndata
    assert_same(out, a)
    assert memoryview(m).tolist() == a.tolist()
    for dst in (np.zeros((3, 4), a.dtype), np.zeros((3, 4), a.dtype, order="F")):
        m.copy_to(dst)
        assert_same(dst, a)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_native_format_views(fmt):
    a = sample((3, 5), fmt, seed=5)
    assert_same(M.view_from_rows(a).to_numpy(), a)
    assert_same(M.view_from_columns(np.asfortranarray(a)).to_numpy(), a.T)
    r = as_indirect(a)
    assert_same(r.to_numpy(), a)
    assert np.shares_memory(np.asarray(r.direct_view()), a)


def test_same_native_type_spelled_differently_copies_without_cast():
    # NumPy exports int64 as 'l' on LP64; 'q' is the same native type.
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    m = M.create_memory(3, 4, "q")
    m.copy_from(a)
    assert_same(m.to_numpy().astype(np.int64), a)
    dst = np.zeros((3, 4), np.int64)
    m.copy_to(dst)
    assert_same(dst, a)


def test_c_long_and_int_differ_without_cast():
    if ctypes.sizeof(ctypes.c_long) == ctypes.sizeof(ctypes.c_int):
        pytest.skip("long and int have the same size here")
    m = M.create_memory(2, 2, "i")
    with pytest.raises(BufferError, match="casting='same_kind' allows it"):
        m.copy_from(np.zeros((2, 2), np.int64), casting="safe")


# ---------------------------------------------------------------------------------------------
# errors: shape, format, cast, read-only
# ---------------------------------------------------------------------------------------------

def test_shape_mismatch_names_both_shapes():
    m = M.create_memory(3, 4, "d")
    with pytest.raises(BufferError) as exc:
        m.copy_from(np.zeros((4, 3)))
    assert "(4, 3)" in str(exc.value) and "(3, 4)" in str(exc.value)
    with pytest.raises(BufferError) as exc:
        m.copy_to(np.zeros((3, 5)))
    assert "(3, 5)" in str(exc.value) and "(3, 4)" in str(exc.value)
    assert m.export_count == 0


def test_format_mismatch_names_both_formats():
    m = M.create_memory(3, 4, "q")
    with pytest.raises(BufferError) as exc:
        m.copy_from(np.zeros((3, 4)))
    msg = str(exc.value)
    assert "'d'" in msg and "'q'" in msg and "(3, 4)" in msg
    with pytest.raises(BufferError) as exc:
        m.copy_to(np.zeros((3, 4), np.float32), casting="safe")
    assert "'f'" in str(exc.value) and "'q'" in str(exc.value)
    assert m.export_count == 0


def test_copy_needs_two_dimensional_buffers():
    m = M.create_memory(3, 4, "d")
    with pytest.raises(BufferError):
        m.copy_from(np.zeros(12))
    with pytest.raises(BufferError):
        m.copy_to(np.zeros((3, 4, 1)))


def test_cast_float64_bytes_into_int64():
    a = sample((4, 3), "d", seed=6)
    m = M.create_memory(4, 3, "q")
    m.copy_from(a, cast=True)
    assert_same(m.to_numpy().view(np.int64), a.view(np.int64))
    back = np.zeros((4, 3))
    m.copy_to(back, cast=True)
    assert_same(back, a)


def test_cast_between_four_byte_types_any_layout():
    a = sample((5, 6), "i", seed=7)
    m = M.create_memory(5, 6, "f")
    m.copy_from(np.asfortranarray(a), cast=True)
    assert_same(m.to_numpy(), a.view(np.float32))
    dst = np.zeros((5, 6), np.uint32)[::-1]
    m.copy_to(dst, cast=True)
    assert_same(dst, a.view(np.uint32))


def test_cast_needs_equal_itemsizes():
    m = M.create_memory(2, 3, "i")
    with pytest.raises(BufferError) as exc:
        m.copy_from(np.zeros((2, 3)), cast=True)
    assert "itemsize" in str(exc.value)
    with pytest.raises(BufferError):
        m.copy_to(np.zeros((2, 3), np.int16), cast=True)


def test_cast_still_checks_shape():
    m = M.create_memory(2, 3, "q")
    with pytest.raises(BufferError):
        m.copy_from(np.zeros((3, 2)), cast=True)


def test_copy_into_read_only_memory_is_refused():
    m = M.create_memory(2, 3, "d", readonly=True)
    with pytest.raises(BufferError):
        m.copy_from(np.ones((2, 3)))
    assert_same(m.to_numpy(), np.zeros((2, 3)))
    w = M.create_memory(2, 3, "d")
    w.make_read_only()
    with pytest.raises(BufferError):
        w.copy_from(np.ones((2, 3)))
    ro = np.zeros((2, 3))
    ro.flags.writeable = False
    with pytest.raises(BufferError):
        owned(np.ones((2, 3))).copy_to(ro)
    assert (ro == 0).all()
    view = M.view_from_rows(np.zeros((2, 3)), readonly=True)
    with pytest.raises(BufferError):
        view.copy_from(np.ones((2, 3)))


def test_read_only_memory_can_be_copied_from():
    a = sample((2, 3), "d", seed=8)
    src = owned(a)
    src.make_read_only()
    out = np.zeros((2, 3))
    src.copy_to(out)
    assert_same(out, a)
    assert_same(src.to_numpy(), a)
    assert src.to_numpy().flags.writeable


# ---------------------------------------------------------------------------------------------
# overlapping copies: the result of a copy through a temporary
# ---------------------------------------------------------------------------------------------

def _wrap(kind, x):
    return {"rows": M.view_from_rows, "cols": M.view_from_columns,
            "array": lambda v: v, "arrayT": lambda v: v.T}[kind](x)


# name: (order of the base array, dst selection, src selection, dst wrapper, src wrapper).
# "cols"/"arrayT" see the selection transposed: the pair always agrees, so the numpy oracle
# dst_sel(e)[...] = src_sel(a).copy() holds either way.
OVERLAPS = {
    "rows_down": ("C", lambda a: a[1:6], lambda a: a[0:5], "rows", "rows"),
    "rows_up": ("C", lambda a: a[0:5], lambda a: a[1:6], "rows", "rows"),
    "columns_right": ("C", lambda a: a[:, 1:5], lambda a: a[:, 0:4], "rows", "rows"),
    "columns_left": ("C", lambda a: a[:, 0:4], lambda a: a[:, 1:5], "rows", "rows"),
    "diagonal": ("C", lambda a: a[1:7, 1:6], lambda a: a[0:6, 0:5], "rows", "rows"),
    "diagonal_back": ("C", lambda a: a[0:6, 0:5], lambda a: a[1:7, 1:6], "rows", "rows"),
    "same": ("C", lambda a: a, lambda a: a, "rows", "rows"),
    "array_source": ("C", lambda a: a[1:6], lambda a: a[0:5], "rows", "array"),
    "array_destination": ("C", lambda a: a[1:6], lambda a: a[0:5], "array", "rows"),
    "array_destination_up": ("C", lambda a: a[0:5, 1:], lambda a: a[1:6, :-1], "array", "rows"),
    "transposed_source": ("C", lambda a: a[0:6], lambda a: a[0:6].T, "rows", "array"),
    "transposed_destination": ("C", lambda a: a[0:6].T, lambda a: a[0:6], "array", "rows"),
    "reversed_source": ("C", lambda a: a[0:5], lambda a: a[0:5][::-1, ::-1], "rows", "array"),
    "reversed_rows_source": ("C", lambda a: a[1:6], lambda a: a[4::-1], "rows", "array"),
    "strided_source": ("C", lambda a: a[0:4], lambda a: a[0:8:2, ::-1], "rows", "array"),
    "column_views": ("F", lambda a: a[:, 1:6], lambda a: a[:, 0:5], "cols", "cols"),
    "column_views_back": ("F", lambda a: a[:, 0:5], lambda a: a[:, 1:6], "cols", "cols"),
    "column_view_vs_array": ("F", lambda a: a[:, 1:6], lambda a: a[:, 0:5], "cols", "arrayT"),
    "rows_vs_columns": ("C", lambda a: a[0:6], lambda a: a[0:6].T.copy(order="F").T, "rows",
                        "array"),
}


@pytest.mark.parametrize("case", sorted(OVERLAPS))
@pytest.mark.parametrize("fmt", ["d", "h"])
def test_overlapping_copy_equals_copy_through_temporary(case, fmt):
    order, dst_sel, src_sel, dst_kind, src_kind = OVERLAPS[case]
    a = np.asarray(np.arange(8 * 6).reshape(8, 6), dtype=dtype_of(fmt), order=order)
    expected = a.copy(order="K")
    dst_sel(expected)[...] = src_sel(a).copy()
    dst = _wrap(dst_kind, dst_sel(a))
    src = _wrap(src_kind, src_sel(a))
    if isinstance(dst, M):
        dst.copy_from(src)
    else:
        src.copy_to(dst)
    assert_same(a, expected)


def test_overlapping_transposed_square_in_place():
    a = np.arange(36.0).reshape(6, 6)
    expected = a.T.copy()
    M.view_from_rows(a).copy_from(a.T)
    assert_same(a, expected)
    f = np.asfortranarray(np.arange(36.0).reshape(6, 6))
    M.view_from_columns(f).copy_from(f)
    assert_same(f, expected)


def test_copy_from_itself_is_a_no_op():
    a = sample((4, 4), "d", seed=9)
    m = owned(a)
    m.copy_from(m)
    assert_same(m.to_numpy(), a)
    b = a.copy()
    v = M.view_from_rows(b[::2])
    v.copy_from(v)
    assert_same(b, a)


# ---------------------------------------------------------------------------------------------
# zero-sized shapes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_zero_sized_shapes(shape):
    m = M.create_memory(*shape, "d")
    assert m.shape == shape
    out = m.to_numpy()
    assert out.shape == shape and out.dtype == np.float64
    m.copy_from(np.zeros(shape))
    m.copy_from(np.zeros(shape, order="F"))
    m.copy_to(np.zeros(shape))
    m.copy_to(np.zeros(shape)[::-1])
    assert memoryview(m).tolist() == np.zeros(shape).tolist()
    assert np.asarray(m.direct_view()).shape == shape
    assert M.view_from_rows(np.zeros(shape)).shape == shape
    assert M.view_from_rows(np.zeros(shape)).to_numpy().shape == shape
    assert M.view_from_columns(np.zeros(shape, order="F")).shape == shape[::-1]
    assert M.view_from_columns(np.zeros(shape, order="F")).to_numpy().shape == shape[::-1]
    assert as_indirect(np.zeros(shape)).shape == shape
    assert as_indirect(np.zeros(shape, order="F")).to_numpy().shape == shape
    other = shape[::-1] if shape[0] != shape[1] else (1, 0)
    with pytest.raises(BufferError):
        m.copy_from(np.zeros(other))
    assert m.export_count == 0


def test_zero_sized_casts_and_formats():
    m = M.create_memory(0, 3, "q")
    m.copy_from(np.zeros((0, 3)), cast=True)
    with pytest.raises(BufferError):
        m.copy_from(np.zeros((0, 3)))
    with pytest.raises(BufferError):
        m.copy_from(np.zeros((0, 3), np.int32), cast=True)


def test_zero_sized_from_numpy_sources():
    assert as_indirect([]).shape in ((1, 0), (0, 0))
    assert as_indirect(np.zeros((3, 0), np.int8)).format == "b"
    assert M.view_from_rows(np.zeros(0)).shape == (1, 0)


# ---------------------------------------------------------------------------------------------
# view_from_rows / view_from_columns
# ---------------------------------------------------------------------------------------------

def test_view_from_rows_shares_memory():
    a = sample((4, 6), "d", seed=10)
    v = M.view_from_rows(a)
    assert v.shape == (4, 6) and v.format == a.dtype.char and not v.readonly
    assert_same(v.to_numpy(), a)
    assert memoryview(v).tolist() == a.tolist()
    v.copy_from(np.full((4, 6), 7.5))
    assert (a == 7.5).all()
    a[2, 3] = -1.0
    assert v.to_numpy()[2, 3] == -1.0
    assert np.shares_memory(np.asarray(v.direct_view()), a)


def test_view_from_rows_of_strided_rows():
    big = sample((9, 5), "i", seed=11)
    a = big[1::3]
    v = M.view_from_rows(a)
    assert_same(v.to_numpy(), a)
    v.copy_from(np.zeros((3, 5), np.int32))
    assert (big[1::3] == 0).all() and (big[0::3] != 0).any()
    with pytest.raises(BufferError):
        v.direct_view()
    narrow = M.view_from_rows(big[:, 1:4])
    assert_same(narrow.to_numpy(), big[:, 1:4])
    with pytest.raises(BufferError):
        narrow.direct_view()
    assert_same(M.view_from_rows(big[::-1]).to_numpy(), big[::-1])


@pytest.mark.parametrize("make", [
    lambda: np.zeros((3, 4), order="F"),
    lambda: np.zeros((3, 8))[:, ::2],
    lambda: np.zeros((3, 4))[:, ::-1],
])
def test_view_from_rows_refuses_non_contiguous_rows(make):
    with pytest.raises(BufferError) as exc:
        M.view_from_rows(make())
    assert "contiguous" in str(exc.value)


def test_view_from_rows_one_dimensional_and_bad_dimensions():
    v = M.view_from_rows(np.arange(5.0))
    assert v.shape == (1, 5)
    assert_same(v.to_numpy(), np.arange(5.0).reshape(1, 5))
    b = M.view_from_rows(b"abc", readonly=True)
    assert b.shape == (1, 3) and b.format == "B" and b.readonly
    assert b.to_numpy().tolist() == [[97, 98, 99]]
    with pytest.raises(BufferError, match="dimension 1 has stride 64, a C-contiguous row needs 32"):
        M.view_from_rows(np.zeros((2, 3, 4))[:, ::2])
    with pytest.raises(BufferError, match="expected a 1-D or N-D buffer, got 0-D"):
        M.view_from_rows(np.array(1.0))
    with pytest.raises(BufferError):
        M.view_from_rows(np.zeros(5)[::2])
    with pytest.raises(TypeError):
        M.view_from_rows([[1.0, 2.0]])


def test_view_from_rows_of_indirect_sources():
    a = sample((3, 4), "d", seed=12)
    tb = pil(a, writable=True)
    v = M.view_from_rows(tb)
    assert_same(v.to_numpy(), a)
    v.copy_from(np.ones((3, 4)))
    assert tb.tolist() == np.ones((3, 4)).tolist()
    m = owned(a)
    w = M.view_from_rows(m)
    assert_same(w.to_numpy(), a)
    w.copy_from(np.zeros((3, 4)))
    assert_same(m.to_numpy(), np.zeros((3, 4)))


def test_view_from_rows_read_only_source():
    a = sample((2, 3), "d", seed=13)
    a.flags.writeable = False
    with pytest.raises(BufferError):
        M.view_from_rows(a)
    with pytest.raises(BufferError):
        M.view_from_columns(a.T)
    v = M.view_from_rows(a, readonly=True)
    assert v.readonly
    assert_same(v.to_numpy(), a)
    with pytest.raises(BufferError):
        M.view_from_rows(b"xyz")
    # A read-only view of writable memory is also fine, and refuses writes.
    w = M.view_from_rows(np.zeros((2, 2)), readonly=True)
    with pytest.raises(BufferError):
        w.copy_from(np.ones((2, 2)))


def test_view_from_columns():
    a = sample((4, 6), "q", seed=14)
    f = np.asfortranarray(a)
    v = M.view_from_columns(f)
    assert v.shape == (6, 4)
    assert_same(v.to_numpy().astype(np.int64), a.T)
    assert memoryview(v).tolist() == a.T.tolist()
    v.copy_from(np.zeros((6, 4), np.int64))
    assert (f == 0).all()
    # A C array's transpose has contiguous columns: viewing them gives the array back.
    c = sample((3, 5), "d", seed=15)
    assert_same(M.view_from_columns(c.T).to_numpy(), c)
    # Column subsets keep contiguous columns.
    assert_same(M.view_from_columns(np.asfortranarray(c)[:, ::2]).to_numpy(), c[:, ::2].T)
    one = M.view_from_columns(np.arange(4.0))
    assert one.shape == (1, 4)
    assert_same(one.to_numpy(), np.arange(4.0).reshape(1, 4))


@pytest.mark.parametrize("make", [
    lambda: np.zeros((3, 4)),
    lambda: np.zeros((6, 4), order="F")[::2],
])
def test_view_from_columns_refuses_non_contiguous_columns(make):
    with pytest.raises(BufferError) as exc:
        M.view_from_columns(make())
    assert "contiguous" in str(exc.value)


def test_view_from_columns_of_pil_is_refused():
    with pytest.raises(BufferError):
        M.view_from_columns(pil(np.zeros((2, 3))))


def test_view_source_refcount_goes_back():
    a = np.zeros((4, 3))
    before = sys.getrefcount(a)
    v = M.view_from_rows(a)
    during = sys.getrefcount(a)  # not inside assert: pytest's rewrite holds operands
    assert during > before
    c = M.view_from_columns(a.T)
    del v, c
    gc.collect()
    after = sys.getrefcount(a)
    assert after == before


def test_view_holds_the_source_buffer():
    ba = bytearray(b"abcdef")
    v = M.view_from_rows(ba)
    with pytest.raises(BufferError):
        ba.extend(b"gh")
    with pytest.raises(BufferError):
        del ba[0]
    assert bytes(v.to_numpy().ravel()) == b"abcdef"
    del v
    gc.collect()
    ba.extend(b"gh")
    assert ba == bytearray(b"abcdefgh")


def test_view_source_deleted_while_view_lives():
    run_python("""
        import gc
        import numpy as np
        from indirect_buffer import IndirectMemory2D, as_indirect

        def make(kind):
            a = np.arange(200 * 30, dtype=np.float64).reshape(200, 30)
            if kind == "rows":
                return IndirectMemory2D.view_from_rows(a[::2]), a[::2].copy()
            if kind == "columns":
                f = np.asfortranarray(a)
                return IndirectMemory2D.view_from_columns(f), a.T.copy()
            if kind == "as_indirect":
                return as_indirect(a), a.copy()
            ba = bytearray(bytes(range(200)))
            return IndirectMemory2D.view_from_rows(ba), np.arange(200, dtype=np.uint8)[None]

        for kind in ("rows", "columns", "as_indirect", "bytearray"):
            view, expected = make(kind)
            gc.collect()
            # Churn the allocator so that freed source memory would be reused and overwritten.
            junk = [np.full(3000, -1.0) for _ in range(200)]
            junk += [bytearray(b"\\xff" * 200) for _ in range(200)]
            out = view.to_numpy()
            assert out.shape == expected.shape, (kind, out.shape)
            assert (out == expected).all(), kind
            assert memoryview(view).tolist() == expected.tolist(), kind
            del view, junk
            gc.collect()
        print("ok")
    """)


def test_direct_view_outlives_the_memory_object():
    run_python("""
        import gc
        import numpy as np
        from indirect_buffer import IndirectMemory2D
        m = IndirectMemory2D.create_memory(100, 50, "d")
        m.copy_from(np.arange(5000.0).reshape(100, 50))
        arr = np.asarray(m.direct_view())
        del m
        gc.collect()
        junk = [np.full(5000, -1.0) for _ in range(100)]
        assert (arr == np.arange(5000.0).reshape(100, 50)).all()
        arr[...] = 3.0
        assert (arr == 3.0).all()
        print("ok")
    """)


# ---------------------------------------------------------------------------------------------
# to_numpy
# ---------------------------------------------------------------------------------------------

def test_to_numpy_is_an_independent_copy():
    a = sample((3, 4), "d", seed=16)
    v = M.view_from_rows(a)
    out = v.to_numpy()
    assert_same(out, a)
    assert not np.shares_memory(out, a)
    out[...] = 0
    assert (a == sample((3, 4), "d", seed=16)).all()
    a[...] = 5
    assert (out == 0).all()


def test_to_numpy_of_every_kind_of_memory():
    a = sample((5, 3), "d", seed=17)
    assert_same(_row_subset_view(a).to_numpy(), a)
    assert_same(_column_view(a).to_numpy(), a)
    rows = [np.array(r) for r in a]
    assert_same(BufferCollection2D(rows).to_numpy(), np.array(rows))
    assert_same(M.view_from_rows(pil(a), readonly=True).to_numpy(), a)
    ro = owned(a)
    ro.make_read_only()
    assert ro.to_numpy().flags.writeable


def test_to_numpy_after_release_raises():
    m = M.create_memory(2, 2, "d")
    m.release()
    with pytest.raises(ValueError):
        m.to_numpy()
    with pytest.raises(ValueError):
        m.copy_to(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        m.copy_from(np.zeros((2, 2)))


def test_numpy_refuses_the_indirect_export_itself():
    # Why to_numpy() exists: NumPy cannot import a buffer with suboffsets.
    m = M.create_memory(2, 2, "d")
    with pytest.raises((BufferError, ValueError, TypeError)):
        np.asarray(m)
    assert m.export_count == 0


# ---------------------------------------------------------------------------------------------
# direct_view
# ---------------------------------------------------------------------------------------------

def test_direct_view_of_owned_memory_shares_it():
    a = sample((4, 5), "i", seed=18)
    m = owned(a)
    dv = m.direct_view()
    assert isinstance(dv, memoryview)
    assert dv.shape == (4, 5) and dv.ndim == 2 and dv.c_contiguous
    assert dv.format == "i" and dv.itemsize == 4 and not dv.readonly
    assert dv.suboffsets == ()
    arr = np.asarray(dv)
    assert_same(arr, a)
    arr[1, 2] = 12345
    assert m.to_numpy()[1, 2] == 12345
    m.copy_from(np.zeros((4, 5), np.int32))
    assert (arr == 0).all()


def test_direct_view_is_an_export():
    m = M.create_memory(3, 2, "d")
    assert m.export_count == 0
    dv = m.direct_view()
    assert m.export_count == 1
    arr = np.asarray(dv)
    del dv
    gc.collect()
    assert m.export_count >= 1  # arr still holds the memoryview
    with pytest.raises(BufferError):
        m.reinterpret_data("B")
    with pytest.raises(BufferError):
        m.release()
    with pytest.raises(BufferError):
        m.make_read_only()
    m.copy_from(np.ones((3, 2)))  # copying data is allowed while exported
    assert (arr == 1).all()
    del arr
    gc.collect()
    assert m.export_count == 0
    m.reinterpret_data("B")
    assert m.shape == (3, 16)
    m.release()
    with pytest.raises(ValueError):
        m.direct_view()


def test_direct_view_of_read_only_memory_is_read_only():
    m = M.create_memory(2, 3, "d", readonly=True)
    dv = m.direct_view()
    assert dv.readonly
    assert not np.asarray(dv).flags.writeable
    v = M.view_from_rows(np.zeros((2, 3)), readonly=True)
    assert not np.asarray(v.direct_view()).flags.writeable


def test_direct_view_of_rows_view_shares_the_source():
    a = sample((4, 3), "d", seed=19)
    v = M.view_from_rows(a)
    arr = np.asarray(v.direct_view())
    assert np.shares_memory(arr, a)
    assert arr.ctypes.data == a.ctypes.data
    assert_same(arr, a)
    f = np.asfortranarray(a)
    arr_t = np.asarray(M.view_from_columns(f).direct_view())
    assert np.shares_memory(arr_t, f)
    assert_same(arr_t, a.T)


def test_direct_view_refused_when_rows_are_not_back_to_back():
    a = np.zeros((6, 4))
    for v in (M.view_from_rows(a[::2]), M.view_from_rows(a[:, :3]), M.view_from_rows(a[::-1]),
              BufferCollection2D(list(a[::2])), BufferCollection2D(list(a[::-1]))):
        with pytest.raises(BufferError):
            v.direct_view()
        assert v.export_count == 0


# ---------------------------------------------------------------------------------------------
# as_indirect
# ---------------------------------------------------------------------------------------------

def test_as_indirect_identity():
    m = M.create_memory(2, 3, "d")
    assert as_indirect(m) is m
    assert as_indirect(m, format="d") is m
    assert as_indirect(m, readonly=False) is m
    c = BufferCollection2D([np.zeros(3), np.zeros(3)])
    assert as_indirect(c) is c


def test_as_indirect_row_view_shares_memory():
    a = sample((3, 4), "d", seed=20)
    r = as_indirect(a)
    assert isinstance(r, M) and r.readonly
    assert np.shares_memory(np.asarray(r.direct_view()), a)
    w = as_indirect(a, readonly=False)
    assert not w.readonly
    w.copy_from(np.zeros((3, 4)))
    assert (a == 0).all()
    big = sample((8, 4), "d", seed=21)
    s = as_indirect(big[::2])
    big[::2] = -2.0
    assert (s.to_numpy() == -2.0).all()


def test_as_indirect_same_native_type_is_still_a_view():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    r = as_indirect(a, format="q")
    a[0, 0] = 99
    assert r.to_numpy()[0, 0] == 99


@pytest.mark.parametrize("make", [
    lambda a: np.asfortranarray(a),
    lambda a: _strided(a),
    lambda a: a[:, ::-1].copy()[:, ::-1],
])
def test_as_indirect_copies_non_contiguous_rows(make):
    a = sample((4, 5), "d", seed=22)
    src = make(a)
    r = as_indirect(src)
    assert_same(r.to_numpy(), a)
    assert r.readonly
    src[...] = 0
    assert_same(r.to_numpy(), a)  # an owned copy, not a view
    np.asarray(r.direct_view())   # owned copies have back-to-back rows
    w = as_indirect(make(a), readonly=False)
    assert not w.readonly
    w.copy_from(np.ones((4, 5)))


def test_as_indirect_nested_lists():
    r = as_indirect([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]])
    assert r.shape == (2, 3)
    assert_same(r.to_numpy(), np.array([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]))
    i = as_indirect([[1, 2], [3, 4]])
    assert_same(i.to_numpy(), np.array([[1, 2], [3, 4]]))
    one = as_indirect([1.0, 2.0, 3.0])
    assert one.shape == (1, 3)
    b = as_indirect([[True, False]])
    assert b.format == "?"
    with pytest.raises(ValueError):
        as_indirect([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="scalar"):
        as_indirect(3.5)
    # N-D data: one row per index of the first dimension, the rest flattened in C order.
    cube = as_indirect([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    assert cube.shape == (2, 4)
    np.testing.assert_array_equal(cube.to_numpy(), [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_as_indirect_with_a_different_format_converts():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    r = as_indirect(a, format="d")
    assert r.format == "d"
    assert_same(r.to_numpy(), a.astype(np.float64))
    a[0, 0] = 100
    assert r.to_numpy()[0, 0] == 0  # a converted copy
    m = owned(np.arange(4.0).reshape(2, 2) + 0.25)
    f = as_indirect(m, format="f")
    assert f is not m and f.format == "f"
    assert_same(f.to_numpy(), (np.arange(4.0).reshape(2, 2) + 0.25).astype(np.float32))
    lst = as_indirect([[1, 2], [3, 4]], format="B")
    assert lst.format == "B" and lst.to_numpy().dtype == np.uint8
    with pytest.raises((ValueError, TypeError)):
        as_indirect(a, format="not a format")


def test_as_indirect_read_only_memory_for_writing_is_refused():
    m = M.create_memory(2, 2, "d", readonly=True)
    with pytest.raises(BufferError):
        as_indirect(m, readonly=False)


# ---------------------------------------------------------------------------------------------
# address / from_address (ctypes, cffi)
# ---------------------------------------------------------------------------------------------

def _ctypes_table(address, element=ctypes.c_double):
    """A ctypes POINTER(POINTER(element)) view of the pointer table at address."""
    return ctypes.cast(address, ctypes.POINTER(ctypes.POINTER(element)))


def test_address_with_ctypes():
    a = sample((4, 3), "d", seed=23)
    for m in (owned(a), M.view_from_rows(a), _row_subset_view(a), _collection(a)):
        table = _ctypes_table(m.address)
        for i in range(4):
            for j in range(3):
                assert table[i][j] == a[i, j]
    m = owned(a)
    _ctypes_table(m.address)[2][1] = -42.0
    assert m.to_numpy()[2, 1] == -42.0
    ints = owned(sample((2, 2), "i", seed=24))
    assert _ctypes_table(ints.address, ctypes.c_int)[1][1] == ints.to_numpy()[1, 1]


def test_address_with_cffi():
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    a = sample((3, 5), "d", seed=25)
    m = owned(a)
    p = ffi.cast("double**", m.address)
    assert [[p[i][j] for j in range(5)] for i in range(3)] == a.tolist()
    p[0][4] = 0.5
    assert m.to_numpy()[0, 4] == 0.5
    # A table built by cffi, wrapped back.
    keep = [np.ascontiguousarray(r) for r in a]
    table = ffi.new("double*[]", [ffi.cast("double*", ffi.from_buffer(r)) for r in keep])
    w = M.from_address(int(ffi.cast("uintptr_t", table)), 3, 5, "d",
                       memory_nanny=(table, keep))
    assert_same(w.to_numpy(), a)


def test_from_address_round_trip_and_nanny():
    a = sample((3, 4), "d", seed=26)
    rows = np.ascontiguousarray(a)
    table = (ctypes.c_void_p * 3)(*[rows.ctypes.data + i * rows.strides[0] for i in range(3)])

    class Nanny:
        pass

    nanny = Nanny()
    nanny.keep = (table, rows)
    ref = weakref.ref(nanny)
    m = M.from_address(ctypes.addressof(table), 3, 4, "d", memory_nanny=nanny)
    del nanny, table, rows
    gc.collect()
    assert ref() is not None
    assert m.address == ctypes.addressof(ref().keep[0])
    assert_same(m.to_numpy(), a)
    m.copy_from(np.zeros((3, 4)))
    assert (ref().keep[1] == 0).all()
    del m
    gc.collect()
    assert ref() is None


def test_from_address_of_our_own_table():
    a = sample((2, 3), "f", seed=27)
    m = owned(a)
    w = M.from_address(m.address, 2, 3, "f", memory_nanny=m)
    assert_same(w.to_numpy(), a)
    del m
    gc.collect()
    assert_same(w.to_numpy(), a)
    r = M.from_address(w.address, 2, 3, "f", readonly=True, memory_nanny=w)
    assert r.readonly
    with pytest.raises(BufferError):
        r.copy_from(np.zeros((2, 3), np.float32))


def test_from_address_null_and_bad_addresses():
    with pytest.raises(ValueError):
        M.from_address(0, 2, 2, "d")
    with pytest.raises(ValueError):
        M.from_address(-1, 2, 2, "d")
    data = np.zeros(2)
    table = (ctypes.c_void_p * 3)(data.ctypes.data, None, data.ctypes.data)
    with pytest.raises(ValueError):
        M.from_address(ctypes.addressof(table), 3, 2, "d")
    with pytest.raises(TypeError):
        M.from_address(float(ctypes.addressof(table)), 1, 2, "d")
    m = M.create_memory(1, 1, "d")
    m.release()
    with pytest.raises(ValueError):
        _ = m.address


# ---------------------------------------------------------------------------------------------
# row_offset (1-based Numerical-Recipes style tables)
# ---------------------------------------------------------------------------------------------

def _nr_table(a, offset_elements=1):
    """ctypes table with m[i] = row_i - offset_elements (so m[i][1] is the row's first element)."""
    shift = offset_elements * a.itemsize
    return (ctypes.c_void_p * a.shape[0])(
        *[a.ctypes.data + i * a.strides[0] - shift for i in range(a.shape[0])])


def test_row_offset_numerical_recipes_table():
    big = np.zeros((4, 7))
    a = big[:, 1:-1]  # one guard column on each side
    a[...] = sample((4, 5), "d", seed=28)
    expected = a.copy()
    table = _nr_table(a)
    m = M.from_address(ctypes.addressof(table), 4, 5, "d", row_offset=8,
                       memory_nanny=(table, big))
    assert m.row_offset == 8
    # C's view: 1-based rows.
    ct = _ctypes_table(m.address)
    assert [[ct[i][j + 1] for j in range(5)] for i in range(4)] == expected.tolist()
    # Every consumer honours the offset.
    assert_same(m.to_numpy(), expected)
    assert memoryview(m).tolist() == expected.tolist()
    assert memoryview(m)[3, 4] == expected[3, 4]
    assert memoryview(m).suboffsets == (8, -1)
    tb = _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO)
    assert tb.tolist() == expected.tolist()
    out = np.zeros((4, 5), order="F")
    m.copy_to(out)
    assert_same(out, expected)
    assert_same(M.view_from_rows(m).to_numpy(), expected)
    new = sample((4, 5), "d", seed=29)
    m.copy_from(new)
    assert_same(a, new)
    assert (big[:, 0] == 0).all() and (big[:, -1] == 0).all()
    other = owned(expected)
    other.copy_from(m)
    assert_same(other.to_numpy(), new)


def test_row_offset_direct_view():
    a = sample((3, 4), "i", seed=30)
    table = _nr_table(a)
    m = M.from_address(ctypes.addressof(table), 3, 4, "i", row_offset=4,
                       memory_nanny=(table, a))
    arr = np.asarray(m.direct_view())
    assert_same(arr, a)
    assert np.shares_memory(arr, a)


def test_row_offset_from_ctype_ptr():
    a = sample((3, 4), "d", seed=31)
    dp = ctypes.POINTER(ctypes.c_double)
    table = (dp * 3)(*[ctypes.cast(a.ctypes.data + i * a.strides[0] - 8, dp) for i in range(3)])
    m = M.from_ctype_ptr(table, 3, 4, memory_nanny=a, row_offset=8)
    assert m.row_offset == 8 and m.format == "d"
    assert_same(m.to_numpy(), a)
    assert table[1][1] == a[1, 0]


def test_negative_row_offset_is_refused():
    a = np.zeros((2, 2))
    table = _nr_table(a, 0)
    with pytest.raises(ValueError):
        M.from_address(ctypes.addressof(table), 2, 2, "d", row_offset=-8)
    dp = ctypes.POINTER(ctypes.c_double)
    ctable = (dp * 2)(*[ctypes.cast(a.ctypes.data + i * 16, dp) for i in range(2)])
    with pytest.raises(ValueError):
        M.from_ctype_ptr(ctable, 2, 2, row_offset=-1)


def test_row_offset_defaults_to_zero():
    assert M.create_memory(1, 1, "d").row_offset == 0
    assert M.view_from_rows(np.zeros((1, 1))).row_offset == 0


# ---------------------------------------------------------------------------------------------
# NumPy stays optional
# ---------------------------------------------------------------------------------------------

def test_numpy_is_optional():
    run_python("""
        import sys
        sys.modules["numpy"] = None  # import numpy now raises ImportError
        from indirect_buffer import IndirectMemory2D, BufferCollection2D, as_indirect

        m = IndirectMemory2D.create_memory(2, 3, "d")
        m.copy_from(m.copy())
        assert memoryview(m).tolist() == [[0.0] * 3] * 2
        assert bytes(memoryview(m.direct_view()).cast("B")) == bytes(48)
        v = IndirectMemory2D.view_from_rows(bytearray(b"abcd"))
        assert v.shape == (1, 4)
        r = as_indirect(bytearray(b"xy"))
        assert r.shape == (1, 2)
        c = BufferCollection2D([bytearray(b"ab"), bytearray(b"cd")])
        assert memoryview(c).tolist() == [[97, 98], [99, 100]]

        for call in (m.to_numpy, lambda: as_indirect([[1.0, 2.0]])):
            try:
                call()
            except ImportError as exc:
                assert "numpy" in str(exc).lower(), str(exc)
            else:
                raise AssertionError("no ImportError without numpy")
        assert "numpy" not in sys.modules or sys.modules["numpy"] is None
        print("ok")
    """)


def test_importing_the_package_does_not_import_numpy():
    proc = run_python("""
        import sys
        import indirect_buffer
        m = indirect_buffer.IndirectMemory2D.create_memory(2, 2, "d")
        m.copy_from(m.copy())
        print("numpy" in sys.modules)
    """)
    assert proc.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# locking rules seen from NumPy
# ---------------------------------------------------------------------------------------------

def test_copies_and_conversions_leave_no_exports():
    a = sample((3, 3), "d", seed=32)
    m = owned(a)
    v = M.view_from_rows(a)
    m.copy_to(np.zeros((3, 3)))
    m.copy_from(v)
    v.copy_from(m)
    m.to_numpy()
    m.copy()
    as_indirect(m, format="f")
    with pytest.raises(BufferError):
        m.copy_from(np.zeros((2, 2)))
    with pytest.raises(BufferError):
        M.create_memory(3, 3, "d", readonly=True).copy_from(m)
    assert m.export_count == 0 and v.export_count == 0
    m.reinterpret_data("B")
    m.release()


def test_collection_holds_numpy_and_bytearray_rows():
    rows = [bytearray(b"ab"), bytearray(b"cd")]
    c = BufferCollection2D(rows)
    with pytest.raises(BufferError):
        rows[0].append(0)
    assert_same(c.to_numpy(), np.array([[97, 98], [99, 100]], np.uint8))
    c.release()
    rows[0].append(0)
    arrays = [np.arange(3.0), np.arange(3.0) + 3]
    before = sys.getrefcount(arrays[0])
    c = BufferCollection2D(arrays)
    assert_same(c.to_numpy(), np.arange(6.0).reshape(2, 3))
    del c
    gc.collect()
    after = sys.getrefcount(arrays[0])  # not inside assert: pytest's rewrite holds operands
    assert after == before


# ---------------------------------------------------------------------------------------------
# memory cost of owned memory
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_owned_memory_costs_data_plus_table():
    run_python("""
        import ctypes, gc
        import numpy as np
        from indirect_buffer import IndirectMemory2D

        def rss():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
            raise AssertionError("no VmRSS")

        rows = 10**6
        data, table = rows * 1, rows * ctypes.sizeof(ctypes.c_void_p)
        np.zeros(1)  # warm up
        gc.collect()
        before = rss()
        m = IndirectMemory2D.create_memory(rows, 1, "B")
        # calloc'd pages are only resident once touched: touch every data byte.
        np.asarray(m.direct_view())[...] = 1
        grown = rss() - before
        limit = data + table + 2 * 2**20
        assert grown < limit, f"RSS grew by {grown} bytes, more than {limit} (data {data} + "\\
            f"table {table} + 2 MB): per-row allocations?"
        assert m.to_numpy().sum() == rows
        print(grown)
    """)
