"""Property-based NumPy round trips (hypothesis), with NumPy as the oracle.

Random shapes (including 0), native formats, values and memory layouts go through copy_from,
copy_to, to_numpy, view_from_rows, view_from_columns and as_indirect; every trip must give
back the same bytes. (Core-memory properties live in test_properties.py.)
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

M = IndirectMemory2D
FORMATS = "bBhHiIlLqQnNfd?"
SETTINGS = settings(max_examples=50, deadline=None)


def dtype_of(fmt):
    return np.asarray(memoryview(bytes(16)).cast(fmt)).dtype


def same(actual, expected):
    """Bit-exact equality (NaNs and signed zeros included) of shape, dtype and bytes."""
    actual = np.asarray(actual)
    return (actual.shape == expected.shape and actual.dtype == expected.dtype
            and np.ascontiguousarray(actual).tobytes()
            == np.ascontiguousarray(expected).tobytes())


def same_values(nested, expected):
    """A nested list (e.g. memoryview.tolist()) holds expected's values (NaN equals NaN)."""
    got = np.array(nested, dtype=expected.dtype).reshape(expected.shape)
    return np.array_equal(got, expected, equal_nan=expected.dtype.kind in "fc")


shapes = st.tuples(st.integers(0, 7), st.integers(0, 7))


@st.composite
def matrices(draw, shape=shapes, formats=FORMATS, small=False):
    """A C-contiguous 2-D array of a random native format, shape and values.

    small: values in [-100, 100] (every format can hold them after a conversion).
    """
    fmt = draw(st.sampled_from(formats))
    dt = dtype_of(fmt)
    elements = None
    if small:
        if dt.kind == "f":
            elements = st.floats(-100, 100, width=8 * dt.itemsize)
        elif dt.kind == "u":
            elements = st.integers(0, 100)
        elif dt.kind == "i":
            elements = st.integers(-100, 100)
    return draw(hnp.arrays(dt, draw(shape), elements=elements))


def _embed(a, row_step, col_step, flip_rows, flip_cols):
    """The values of a, as a strided view into a larger zeroed array."""
    rows, cols = a.shape
    big = np.zeros((rows * row_step + 1, cols * col_step + 1), dtype=a.dtype)
    view = big[1::row_step][:rows, 1::col_step][:, :cols]
    if flip_rows:
        view = view[::-1]
    if flip_cols:
        view = view[:, ::-1]
    view[...] = a
    return view


@st.composite
def layouts(draw, a):
    """The values of a in some memory layout: C, F, strided, flipped."""
    kind = draw(st.sampled_from(["C", "F", "strided"]))
    if kind == "C":
        return a
    if kind == "F":
        return np.asfortranarray(a)
    return _embed(a, draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.booleans()),
                  draw(st.booleans()))


@given(data=st.data(), a=matrices())
@SETTINGS
def test_copy_from_then_to_numpy(data, a):
    src = data.draw(layouts(a))
    m = M.create_memory(a.shape[0], a.shape[1], a.dtype.char)
    m.copy_from(src)
    out = m.to_numpy()
    assert same(out, a)
    assert out.flags.c_contiguous
    assert m.export_count == 0


@given(data=st.data(), a=matrices())
@SETTINGS
def test_copy_to_any_layout(data, a):
    m = M.create_memory(a.shape[0], a.shape[1], a.dtype.char)
    m.copy_from(a)
    dst = data.draw(layouts(np.zeros_like(a)))
    m.copy_to(dst)
    assert same(dst, a)


@given(data=st.data(), a=matrices())
@SETTINGS
def test_indirect_to_indirect(data, a):
    # Source: rows of a strided view (not back to back); destination: owned memory.
    src = M.view_from_rows(_embed(a, data.draw(st.integers(1, 3)), 1, data.draw(st.booleans()),
                                  False))
    m = M.create_memory(a.shape[0], a.shape[1], a.dtype.char)
    m.copy_from(src)
    assert same(m.to_numpy(), a)
    back = M.view_from_rows(np.zeros_like(a))
    back.copy_from(m)
    assert same(back.to_numpy(), a)
    assert same(m.copy().to_numpy(), a)


@given(data=st.data(), a=matrices())
@SETTINGS
def test_view_from_rows(data, a):
    row_step, flip = data.draw(st.integers(1, 3)), data.draw(st.booleans())
    src = _embed(a, row_step, 1, flip, False)
    v = M.view_from_rows(src)
    assert v.shape == a.shape
    assert same(v.to_numpy(), a)
    assert same_values(memoryview(v).tolist(), a)
    # Zero-copy: a write through the view lands in the source.
    replacement = np.zeros_like(a) if a.dtype.kind == "b" else np.ones_like(a)
    v.copy_from(replacement)
    assert same(src, replacement)
    if src.flags.c_contiguous:
        # Rows back to back: the direct view is the source's own memory.
        direct = np.asarray(v.direct_view())
        assert same(direct, replacement)
        assert np.shares_memory(direct, src) or a.size == 0


@given(data=st.data(), a=matrices())
@SETTINGS
def test_view_from_columns(data, a):
    # The columns of src are the rows of a, contiguous (src is Fortran-ordered when the rows
    # are back to back): view_from_columns gives a back.
    src = _embed(a, data.draw(st.integers(1, 3)), 1, data.draw(st.booleans()), False).T
    v = M.view_from_columns(src)
    assert v.shape == a.shape
    assert same(v.to_numpy(), a)
    assert same_values(memoryview(v).tolist(), a)


@given(data=st.data(), a=matrices())
@SETTINGS
def test_as_indirect(data, a):
    src = data.draw(layouts(a))
    r = as_indirect(src)
    assert isinstance(r, M)
    assert same(r.to_numpy(), a)
    assert as_indirect(r) is r


@given(a=matrices(shape=st.tuples(st.integers(1, 6), st.integers(0, 6)), formats="bhilqfd"))
@SETTINGS
def test_as_indirect_nested_lists(a):
    r = as_indirect(a.tolist())
    assert same(r.to_numpy(), np.array(a.tolist()))


@given(a=matrices(formats="bBhHiIlLqQfd", small=True), fmt=st.sampled_from("bBhiqfd"))
@SETTINGS
def test_as_indirect_with_format_converts_like_numpy(a, fmt):
    expected = a.astype(dtype_of(fmt))
    if a.dtype.kind == "f" and dtype_of(fmt).kind != "f":
        expected = np.trunc(a).astype(dtype_of(fmt))  # -0.5 -> 0 either way; no NaN here
    r = as_indirect(a, format=fmt)
    assert np.asarray(r.to_numpy()).dtype == dtype_of(fmt)
    assert same(r.to_numpy(), expected)


@given(a=matrices(shape=st.tuples(st.integers(1, 6), st.integers(0, 6))))
@SETTINGS
def test_buffer_collection_of_rows(a):
    rows = [row.copy() for row in a]
    c = BufferCollection2D(rows, column_count=a.shape[1], format=a.dtype.char)
    assert same(c.to_numpy(), a)


@given(a=matrices(formats="qQdlL"), target=st.sampled_from("qQdlL"))
@SETTINGS
def test_cast_copies_bytes_like_numpy_view(a, target):
    m = M.create_memory(a.shape[0], a.shape[1], target)
    m.copy_from(a, cast=True)
    assert same(m.to_numpy(), a.view(dtype_of(target)))


@given(data=st.data(), fmt=st.sampled_from("bhqd"),
       rows=st.integers(1, 8), cols=st.integers(1, 8))
@SETTINGS
def test_overlapping_row_views(data, fmt, rows, cols):
    """Two rectangles of one array: the copy equals NumPy's copy through a temporary."""
    base = np.arange(rows * cols).reshape(rows, cols).astype(dtype_of(fmt))
    h = data.draw(st.integers(0, rows))
    w = data.draw(st.integers(0, cols))
    r0, r1 = data.draw(st.integers(0, rows - h)), data.draw(st.integers(0, rows - h))
    c0, c1 = data.draw(st.integers(0, cols - w)), data.draw(st.integers(0, cols - w))
    direct_source = data.draw(st.booleans())
    expected = base.copy()
    expected[r0:r0 + h, c0:c0 + w] = base[r1:r1 + h, c1:c1 + w].copy()
    dst = M.view_from_rows(base[r0:r0 + h, c0:c0 + w])
    src = base[r1:r1 + h, c1:c1 + w]
    dst.copy_from(src if direct_source else M.view_from_rows(src))
    assert same(base, expected)
