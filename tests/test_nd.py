"""N-D indirect memory (IndirectMemory): pointer tables at any dimensions but the last.

Oracles, none of them this package's own code:
- CPython's memoryview (tolist(), m[i, j, k] reads and writes) follows every suboffset;
- CPython's _testbuffer: ndarray(mem, getbuf=...) as a consumer (its tolist() unpacks any
  struct format), ND_PIL ndarrays as indirect sources and destinations;
- NumPy for values, and np.copyto on copies for overlapping copies;
- pointer structures laid out by hand with ctypes (T***, frames, a 2-D array of pointers,
  1-based Numerical-Recipes structures whose pointers point before their data), read back
  from their own blocks;
- a Cython module compiled at test time: typed memoryviews with `view.indirect` dimensions
  (Cython's own buffer validation checks our strides and suboffsets), and C loops over the
  tables the typed accessors (double_table3 & co.) hand out.

Cython spells the layouts as `double[::view.indirect, :, ::1]` (frames: indirect (0,)),
`double[:, ::view.indirect, ::1]` (indirect (1,)) and, for two or more indirect dimensions,
`double[::view.indirect, ::view.indirect, ::view.contiguous]`: Cython 3.x rejects `::1` after
two indirect dimensions ("Indirect dimension may not follow Fortran contiguous dimension",
its axis parser takes the first indirect dimension for the last one), while
`::view.contiguous` means the same thing (direct and contiguous) and is accepted.

Crash-prone cases (NULL pointers, lifetimes, huge allocations) run in a fresh interpreter
(_hostile.isolated).
"""
import _testbuffer as tb
import ctypes
import gc
import math
import struct
import weakref

import numpy as np
import pytest

import _hostile
from _hostile import expect, isolated
from _ndlayouts import PTR, Structure, ctypes_tensor, patterns, values
from indirect_buffer import IndirectMemory, IndirectMemory2D, as_indirect

FULL_RO = tb.PyBUF_FULL_RO


PATTERNS = [(3, p) for p in patterns(3)] + [(4, p) for p in patterns(4)]
SHAPES = {3: (3, 4, 5), 4: (2, 3, 4, 5)}


def pid(ndim, indirect):
    return f"{ndim}d-{''.join(map(str, indirect))}"


PATTERN_IDS = [pid(n, p) for n, p in PATTERNS]


def expected_geometry(shape, indirect, itemsize, offsets=None):
    """Strides and suboffsets as the layout is specified: dimensions fall into groups, each
    ending at an indirect dimension (pointer slots) or at the last one (elements), every
    group C-contiguous."""
    n = len(shape)
    offs = dict(zip(sorted(indirect), offsets or [0] * len(indirect)))
    strides, subs = [0] * n, [-1] * n
    step = itemsize
    for d in reversed(range(n)):
        if d in offs:
            step = PTR
            subs[d] = offs[d]
        strides[d] = step
        step *= shape[d]
    return tuple(strides), tuple(subs)


def unpacked(raw, shape, fmt):
    """What a struct-based consumer (_testbuffer's tolist) reads from C-ordered bytes: nested
    lists of struct.unpack(fmt) items (a tuple for multi-item formats)."""
    size = struct.calcsize(fmt)
    items = []
    for k in range(math.prod(shape)):
        v = struct.unpack(fmt, raw[k * size:(k + 1) * size])
        items.append(v[0] if len(v) == 1 else v)

    def nest(flat, dims):
        if len(dims) == 1:
            return list(flat)
        step = math.prod(dims[1:])
        return [nest(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]

    return nest(items, tuple(shape))


def tb_list(obj):
    """_testbuffer's reading of an (indirect) buffer."""
    return tb.ndarray(obj, getbuf=FULL_RO).tolist()


def filled(shape, fmt="d", indirect=None, seed=0, readonly=False):
    """Owned memory holding values(shape, fmt) (and the array)."""
    a = values(shape, fmt, seed)
    m = IndirectMemory.create_memory(shape, fmt, indirect=indirect)
    m.copy_from(a)
    if readonly:
        m.make_read_only()
    return m, a


# ---------------------------------------------------------------------------------------------
# the Cython module: typed memoryviews for every pattern, and the typed accessors
# ---------------------------------------------------------------------------------------------

def cython_spec(ndim, indirect):
    """The typed-memoryview axes of a layout (see the module docstring for the spelling)."""
    last = "::1" if len(indirect) == 1 else "::view.contiguous"
    return ", ".join(["::view.indirect" if d in indirect else ":" for d in range(ndim - 1)]
                     + [last])


def cy_name(ndim, indirect):
    return f"p{ndim}_{''.join(map(str, indirect))}"


def _typed_view_functions():
    out = []
    layouts = [(n, p, cython_spec(n, p), cy_name(n, p)) for n, p in PATTERNS]
    layouts += [(n, None, ", ".join(["::view.generic"] * n), f"generic{n}") for n in (3, 4)]
    layouts += [(3, None, "const " + cython_spec(3, (0, 1)), "const_p3_01")]
    for ndim, indirect, spec, name in layouts:
        const = spec.startswith("const ")
        spec = spec.replace("const ", "")
        idx = "ijkl"[:ndim]
        head = "    cdef Py_ssize_t " + ", ".join(idx)
        loops = "".join(f"\n{'    ' * (d + 1)}for {v} in range(a.shape[{d}]):"
                        for d, v in enumerate(idx))
        inner = "\n" + "    " * (ndim + 1)
        at = ", ".join(idx)
        code = " + ".join(f"{v} * {10 ** (ndim - 1 - d)}" for d, v in enumerate(idx))
        out.append(f"""
def read_{name}({'const ' if const else ''}double[{spec}] a):
    \"\"\"(shape, strides, suboffsets, elements in C order) as Cython sees them.\"\"\"
{head}
    out = []{loops}{inner}out.append(a[{at}])
    return (tuple([a.shape[d] for d in range({ndim})]),
            tuple([a.strides[d] for d in range({ndim})]),
            tuple([a.suboffsets[d] for d in range({ndim})]), out)
""")
        if indirect is not None:
            out.append(f"""

def fill_{name}(double[{spec}] a, double base):
{head}{loops}{inner}a[{at}] = base + {code}
""")
    return "".join(out)


CYTHON_SOURCE = r'''
# cython: language_level=3, boundscheck=True, wraparound=False
# distutils: extra_compile_args = -O0
from cython cimport view
from libc.stdlib cimport calloc, free, malloc
from indirect_buffer.buffer_impl cimport IndirectMemory, IndirectMemory2D, IB_MAX_NDIM

# -- typed accessors ---------------------------------------------------------------------------

def table3(IndirectMemory m, str which, bint writable=False, Py_ssize_t row_offset=0):
    """The address a T*** accessor returns (raises what it raises)."""
    if which == "double":
        return <size_t>m.double_table3(writable, row_offset)
    if which == "float":
        return <size_t>m.float_table3(writable, row_offset)
    if which == "int":
        return <size_t>m.int_table3(writable, row_offset)
    if which == "uchar":
        return <size_t>m.uchar_table3(writable, row_offset)
    raise KeyError(which)


def table1(IndirectMemory m, str which, bint writable=False, Py_ssize_t row_offset=0):
    """The address a T** accessor returns (raises what it raises)."""
    if which == "double":
        return <size_t>m.double_table(writable, row_offset)
    if which == "float":
        return <size_t>m.float_table(writable, row_offset)
    if which == "int":
        return <size_t>m.int_table(writable, row_offset)
    if which == "long":
        return <size_t>m.long_table(writable, row_offset)
    if which == "longlong":
        return <size_t>m.longlong_table(writable, row_offset)
    if which == "uchar":
        return <size_t>m.uchar_table(writable, row_offset)
    raise KeyError(which)


def levels_table(IndirectMemory m, fmt, bint writable, int levels, Py_ssize_t row_offset=0):
    return <size_t>m.checked_levels(fmt, writable, levels, row_offset)


def checked_table(IndirectMemory m, fmt, bint writable, Py_ssize_t row_offset=0):
    return <size_t>m.checked_table(fmt, writable, row_offset)


def read_levels(size_t address, shape, Py_ssize_t itemsize, int levels, Py_ssize_t offset):
    """Read a plain pointer structure the way C code does: root[i] (+offset) [j] (+offset)
    ... then a C-contiguous block of the remaining dimensions. Returns the bytes in C order."""
    cdef char* root = <char*>address
    cdef char* p
    cdef char* q
    cdef Py_ssize_t i, j, n0 = shape[0], n1 = shape[1] if levels == 2 else 1
    cdef Py_ssize_t block = itemsize
    for s in shape[levels:]:
        block *= s
    out = bytearray()
    for i in range(n0):
        p = (<char**>root)[i] + offset
        if levels == 1:
            out += p[:block]
            continue
        for j in range(n1):
            q = (<char**>p)[j] + offset
            out += q[:block]
    return bytes(out)


def write_double3(IndirectMemory m, Py_ssize_t i, Py_ssize_t j, Py_ssize_t k, double v):
    cdef double*** t = m.double_table3(True)
    t[i][j][k] = v


def scale_int3(IndirectMemory m, int factor):
    cdef int*** t = m.int_table3(True)
    cdef Py_ssize_t i, j, k, n0 = m.dim(0), n1 = m.dim(1), n2 = m.dim(2)
    with nogil:
        for i in range(n0):
            for j in range(n1):
                for k in range(n2):
                    t[i][j][k] *= factor


def frames_sum(IndirectMemory m):
    """Sum of a frames memory of doubles through double_table: one block per frame."""
    cdef double** t = m.double_table(False)
    cdef Py_ssize_t f, k, n = m.dim(1) * m.dim(2)
    cdef double s = 0
    for f in range(m.dim(0)):
        for k in range(n):
            s += t[f][k]
    return s


def dims_nogil(IndirectMemory m, int n):
    cdef Py_ssize_t out[16]
    cdef int d
    with nogil:
        for d in range(n):
            out[d] = m.dim(d)
    return [out[d] for d in range(n)]


def dim_of(IndirectMemory m, int d):
    cdef Py_ssize_t r
    with nogil:
        r = m.dim(d)
    return r


def pin(IndirectMemory m):
    m.pin()


def unpin(IndirectMemory m):
    m.unpin()


# -- cdef constructors -------------------------------------------------------------------------

def create_nd(shape, fmt, unsigned int mask, bint readonly=False):
    cdef Py_ssize_t shp[16]
    cdef int d
    for d in range(len(shape)):
        shp[d] = shape[d]
    return IndirectMemory.create_nd(len(shape), shp, fmt, mask, readonly)


def create_nd_ndim(int ndim):
    cdef Py_ssize_t shp[16]
    cdef int d
    for d in range(16):
        shp[d] = 1
    return IndirectMemory.create_nd(ndim, shp, "d", 0, False)


def create_nd_null_shape():
    return IndirectMemory.create_nd(3, NULL, "d", 0, False)


def wrap_nd(size_t address, shape, fmt, unsigned int mask, offsets=None, bint readonly=False,
            nanny=None):
    """from_ptr_nd over any address; offsets: one per dimension (as the C API takes them)."""
    cdef Py_ssize_t shp[16]
    cdef Py_ssize_t offs[16]
    cdef int d
    for d in range(len(shape)):
        shp[d] = shape[d]
        offs[d] = offsets[d] if offsets is not None else 0
    return IndirectMemory.from_ptr_nd(<void*>address, len(shape), shp, fmt, mask,
                                      offs if offsets is not None else NULL, readonly, nanny)


cdef Py_ssize_t tensor_frees = 0


def counters():
    return tensor_frees


cdef class TensorNanny:
    """Frees a double*** allocated with one malloc per row and per table, once."""
    cdef double*** root
    cdef Py_ssize_t n0, n1

    def __dealloc__(self):
        global tensor_frees
        cdef Py_ssize_t i, j
        if self.root != NULL:
            for i in range(self.n0):
                if self.root[i] != NULL:
                    for j in range(self.n1):
                        free(self.root[i][j])
                    free(self.root[i])
            free(self.root)
            self.root = NULL
            tensor_frees += 1


def c_tensor(Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t n2, bint readonly=False):
    """A double*** allocated in C, value i*100 + j*10 + k, wrapped by from_ptr_nd with a nanny
    that frees it."""
    cdef Py_ssize_t shp[3]
    cdef Py_ssize_t i, j, k
    cdef TensorNanny nanny = TensorNanny()
    nanny.root = <double***>calloc(n0 if n0 > 0 else 1, sizeof(double**))
    if nanny.root == NULL:
        raise MemoryError()
    nanny.n0, nanny.n1 = n0, n1
    for i in range(n0):
        nanny.root[i] = <double**>calloc(n1 if n1 > 0 else 1, sizeof(double*))
        if nanny.root[i] == NULL:
            raise MemoryError()
        for j in range(n1):
            nanny.root[i][j] = <double*>malloc((n2 if n2 > 0 else 1) * sizeof(double))
            if nanny.root[i][j] == NULL:
                raise MemoryError()
            for k in range(n2):
                nanny.root[i][j][k] = i * 100 + j * 10 + k
    shp[0], shp[1], shp[2] = n0, n1, n2
    return IndirectMemory.from_ptr_nd(<void*>nanny.root, 3, shp, "d", 0, NULL, readonly, nanny)


cdef class ViewHolder3:
    """Keeps a Cython typed memoryview of a T*** of doubles."""
    cdef double[::view.indirect, ::view.indirect, ::view.contiguous] held

    def __init__(self, double[::view.indirect, ::view.indirect, ::view.contiguous] a):
        self.held = a

    def get(self, Py_ssize_t i, Py_ssize_t j, Py_ssize_t k):
        return self.held[i, j, k]

# -- typed memoryviews, one set per layout (generated) -----------------------------------------
''' + _typed_view_functions()

MODULE_NAME = "ib_nd_test"


@pytest.fixture(scope="module")
def cy_dir(cython_builder):
    return _hostile.build_module(cython_builder, MODULE_NAME, CYTHON_SOURCE)


@pytest.fixture(scope="module")
def cy(cy_dir):
    return _hostile.load_module(MODULE_NAME, cy_dir)


# =============================================================================================
# owned memory: geometry and values of every pattern, shapes, dtypes
# =============================================================================================

@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
def test_create_memory_geometry_and_values(ndim, indirect):
    shape = SHAPES[ndim]
    m = IndirectMemory.create_memory(shape, "d", indirect=indirect)
    assert type(m) is IndirectMemory
    strides, subs = expected_geometry(shape, indirect, 8)
    assert (m.shape, m.ndim, m.indirect, m.format, m.itemsize, m.readonly, len(m)) == \
        (shape, ndim, indirect, "d", 8, False, shape[0])
    assert (m.strides, m.suboffsets) == (strides, subs)
    mv = memoryview(m)
    assert (mv.shape, mv.strides, mv.suboffsets, mv.ndim, mv.format, mv.nbytes) == \
        (shape, strides, subs, ndim, "d", math.prod(shape) * 8)
    assert mv.tolist() == np.zeros(shape).tolist()  # owned memory is zeroed
    assert m.export_count == 1
    a = values(shape, "d", seed=ndim)
    for idx in np.ndindex(*shape):
        mv[idx] = float(a[idx])
    for idx in [(0,) * ndim, tuple(s - 1 for s in shape), (1,) * ndim]:
        assert mv[idx] == a[idx]
    assert mv.tolist() == a.tolist()
    np.testing.assert_array_equal(m.to_numpy(), a)
    assert tb_list(m) == a.tolist()
    nd = tb.ndarray(m, getbuf=tb.PyBUF_INDIRECT | tb.PyBUF_FORMAT)
    assert (nd.strides, nd.suboffsets) == (strides, subs)
    del nd
    mv.release()
    assert m.export_count == 0


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("fmt", ["i", "d"])
def test_every_request_against_cpythons_exporters(fmt, readonly):
    """Every combination of PyBUF_* request bits: frames memory answers exactly as
    _testbuffer's 3-D PIL ndarray (the same layout: a suboffset in dimension 0); the other
    layouts refuse and grant the same requests with their own strides and suboffsets; a
    direct view answers as a memoryview of a C-contiguous N-D block."""
    shape = (2, 3, 4)
    item = 0 if fmt == "i" else 0.0
    oracle = tb.ndarray([item] * 24, shape=list(shape), format=fmt,
                        flags=tb.ND_PIL | (0 if readonly else tb.ND_WRITABLE))
    assert (oracle.strides, oracle.suboffsets) == expected_geometry(shape, (0,), oracle.itemsize)
    frames = IndirectMemory.create_memory(shape, fmt, indirect=(0,), readonly=readonly)
    assert _hostile.compare_answers(frames, oracle) == []
    for indirect in patterns(3) + [(0, 1, 2)]:
        full = shape if len(indirect) < 3 else shape + (5,)
        m = IndirectMemory.create_memory(full, fmt, indirect=indirect, readonly=readonly)
        strides, subs = expected_geometry(full, indirect, m.itemsize)
        for flags in _hostile.ALL_FLAGS:
            ours, theirs = _hostile.answer(m, flags), _hostile.answer(oracle, flags)
            if isinstance(theirs, tuple):
                assert ours == theirs, (_hostile.flag_names(flags), ours, theirs)
            else:
                theirs.update(shape=full, strides=strides, suboffsets=subs,
                              nbytes=math.prod(full) * m.itemsize, ndim=len(full))
                assert ours == theirs, (_hostile.flag_names(flags), ours, theirs)
        assert m.export_count == 0
        block = np.zeros(full, dtype=fmt)
        block.flags.writeable = not readonly
        assert _hostile.compare_answers(m.direct_view().obj, memoryview(block)) == []


def test_default_indirect_and_the_2d_case():
    assert IndirectMemory.create_memory((2, 3, 4), "d").indirect == (0, 1)
    assert IndirectMemory.create_memory((2, 3, 4, 5), "i").indirect == (0, 1, 2)
    assert repr(IndirectMemory.create_memory((2, 3, 4), "d")) == \
        "<IndirectMemory shape=(2, 3, 4) T*** format='d' readonly=False>"
    assert "indirect=(1,)" in repr(IndirectMemory.create_memory((2, 3, 4), "d", indirect=(1,)))
    assert issubclass(IndirectMemory2D, IndirectMemory)
    for m in (IndirectMemory.create_memory((2, 3), "i"),
              IndirectMemory.create_memory([2, 3], "i", indirect=[0])):
        assert type(m) is IndirectMemory2D
        assert (m.shape, m.row_offset, m.indirect, m.suboffsets) == ((2, 3), 0, (0,), (0, -1))
        memoryview(m)[1, 2] = 7
        assert memoryview(m).tolist() == [[0, 0, 0], [0, 0, 7]]
    a = values((3, 4), "d")
    s = Structure(a, (0,), offsets=(8,))
    w = IndirectMemory.from_address(s.address, (3, 4), "d", offsets=(8,), memory_nanny=s)
    assert type(w) is IndirectMemory2D and w.row_offset == 8
    assert memoryview(w).tolist() == a.tolist()
    for m in (as_indirect(a, indirect=(0,)), as_indirect(a.tolist(), indirect=[0]),
              IndirectMemory.create_memory((3, 4), "d").copy()):
        assert type(m) is IndirectMemory2D
    # numbers that are not ints but have __index__ are sizes too
    m = IndirectMemory.create_memory((np.int64(2), np.uint8(3), 4), "B", indirect=(np.int32(1),))
    assert (m.shape, m.indirect) == ((2, 3, 4), (1,))


def test_readonly_memory():
    m = IndirectMemory.create_memory((2, 3, 4), "d", readonly=True)
    assert m.readonly
    mv = memoryview(m)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0, 0, 0] = 1.0
    expect(BufferError, tb.ndarray, m, getbuf=tb.PyBUF_FULL, match="read-only")
    expect(BufferError, m.copy_from, np.zeros((2, 3, 4)), match="cannot copy into IndirectMemory")
    assert mv.tolist() == np.zeros((2, 3, 4)).tolist()


SMALL_SHAPES = [(0, 3, 4), (2, 0, 4), (2, 3, 0), (1, 1, 1), (1, 0, 1), (0, 0, 0), (3, 1, 2),
                (1, 2, 1, 3), (3, 1, 2, 1), (2, 2, 0, 2), (0, 1, 1, 1)]


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=str)
def test_shapes_with_zeros_and_ones(shape):
    for indirect in patterns(len(shape)):
        a = values(shape, "i", seed=3)
        m = IndirectMemory.create_memory(shape, "i", indirect=indirect)
        assert m.shape == shape
        m.copy_from(a)
        mv = memoryview(m)
        assert mv.tolist() == a.tolist() == tb_list(m), (shape, indirect)
        assert mv.nbytes == a.nbytes
        np.testing.assert_array_equal(m.to_numpy(), a)
        out = np.full(shape, -1, dtype=np.intc)
        m.copy_to(out)
        np.testing.assert_array_equal(out, a)
        dv = m.direct_view()
        assert dv.shape == shape and dv.c_contiguous and dv.tolist() == a.tolist()
        dv.release()
        mv.release()
        c = m.copy()
        assert c.indirect == indirect and c.to_numpy().tolist() == a.tolist()
        v = IndirectMemory.view_from_array(a, indirect=indirect)
        assert memoryview(v).tolist() == a.tolist()
        m.release()


# (format, NumPy dtype of the same elements, itemsize); '2i' is a sub-array element.
DTYPES = [("B", np.uint8, 1), ("b", np.int8, 1), ("h", np.int16, 2), ("e", np.float16, 2),
          ("i", np.intc, 4), ("f", np.float32, 4), ("q", np.int64, 8), ("d", np.float64, 8),
          ("16s", "S16", 16), ("2i", None, 8)]


@pytest.mark.parametrize("fmt, dtype, itemsize", DTYPES, ids=[d[0] for d in DTYPES])
@pytest.mark.parametrize("indirect", patterns(3), ids=str)
def test_dtypes(fmt, dtype, itemsize, indirect):
    shape = (2, 3, 4)
    m = IndirectMemory.create_memory(shape, fmt, indirect=indirect)
    assert (m.format, m.itemsize) == (fmt, itemsize)
    assert m.strides == expected_geometry(shape, indirect, itemsize)[0]
    if dtype is None:  # '2i': pairs of ints, copied as opaque 8-byte elements
        pairs = values(shape + (2,), np.intc, seed=5)
        m.copy_from(pairs.view("V8").reshape(shape), cast=True)
        raw = pairs.tobytes()
        np.testing.assert_array_equal(m.to_numpy(), pairs)
        assert m.to_numpy().shape == shape + (2,)
    else:
        a = values(shape, dtype, seed=5)
        m.copy_from(a)
        raw = a.tobytes()
        got = m.to_numpy()
        assert got.dtype == np.dtype(dtype) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, a)
        if fmt in ("B", "b", "h", "i", "q", "f", "d"):  # what memoryview can index
            assert memoryview(m).tolist() == a.tolist()
    assert tb_list(m) == unpacked(raw, shape, fmt)
    assert m.copy().to_numpy().tobytes() == raw
    assert bytes(m.direct_view()) == raw


def test_complex_elements_of_16_bytes():
    a = values((2, 3, 4), np.complex128, seed=2)
    for indirect in patterns(3):
        v = IndirectMemory.view_from_array(a, indirect=indirect)
        assert (v.format, v.itemsize) == (memoryview(a).format, 16)
        np.testing.assert_array_equal(v.to_numpy(), a)
        c = as_indirect(a.tolist(), indirect=indirect)
        np.testing.assert_array_equal(c.to_numpy(), a)
        out = np.zeros_like(a)
        c.copy_to(out)
        np.testing.assert_array_equal(out, a)


# =============================================================================================
# view_from_array: zero-copy pointer tables over another object's blocks
# =============================================================================================

@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
def test_view_from_array_is_zero_copy(ndim, indirect):
    shape = SHAPES[ndim]
    a = values(shape, "d", seed=1)
    v = IndirectMemory.view_from_array(a, indirect=indirect)
    assert type(v) is IndirectMemory
    assert (v.shape, v.indirect, v.format, v.readonly) == (shape, indirect, "d", False)
    assert (v.strides, v.suboffsets) == expected_geometry(shape, indirect, 8)
    mv = memoryview(v)
    assert mv.tolist() == a.tolist() == tb_list(v)
    first, last = (0,) * ndim, tuple(s - 1 for s in shape)
    mv[last] = -1.5                 # through the view into the array
    assert a[last] == -1.5
    a[first] = 99.25                # through the array into the view
    assert mv[first] == 99.25
    v.copy_from(np.full(shape, 4.0))
    assert (a == 4.0).all()
    np.testing.assert_array_equal(v.to_numpy(), a)


STRIDED_OUTER = [
    ("a[::2]", lambda: values((6, 3, 4), "d")[::2], (0, 1)),
    ("a[::-1]", lambda: values((3, 3, 4), "d")[::-1], (0, 1)),
    ("a[::-1] frames", lambda: values((3, 3, 4), "d")[::-1], (0,)),
    ("a[:, ::-2]", lambda: values((2, 6, 4), "d")[:, ::-2], (0, 1)),
    ("a[:, ::3] (1,)", lambda: values((2, 9, 4), "d")[:, ::3], (1,)),
    ("transposed outer", lambda: values((3, 2, 4), "d").transpose(1, 0, 2), (0, 1)),
    ("transposed outer (1,)", lambda: values((3, 2, 4), "d").transpose(1, 0, 2), (1,)),
    ("4-D a[:, ::2] (1, 2)", lambda: values((2, 6, 3, 4), "d")[:, ::2], (1, 2)),
    ("4-D a[::-1, :, ::2] (0, 2)", lambda: values((2, 3, 6, 4), "d")[::-1, :, ::2], (0, 2)),
    ("4-D a[:, ::-1] (1,)", lambda: values((2, 3, 4, 5), "d")[:, ::-1], (1,)),
    ("broadcast outer", lambda: np.broadcast_to(values((1, 3, 4), "d"), (5, 3, 4)), (0,)),
]


@pytest.mark.parametrize("what, make, indirect", STRIDED_OUTER, ids=[c[0] for c in STRIDED_OUTER])
def test_view_from_array_accepts_strided_outer_dimensions(what, make, indirect):
    a = make()
    writable = a.flags.writeable
    v = IndirectMemory.view_from_array(a, indirect=indirect, readonly=not writable)
    assert v.shape == a.shape and v.readonly is (not writable)
    assert memoryview(v).tolist() == a.tolist() == tb_list(v)
    np.testing.assert_array_equal(v.to_numpy(), a)
    if writable:
        new = values(a.shape, "d", seed=9)
        v.copy_from(new)
        np.testing.assert_array_equal(a, new)
        idx = tuple(s - 1 for s in a.shape)
        memoryview(v)[idx] = 0.5
        assert a[idx] == 0.5
    with pytest.raises(BufferError, match="not back to back"):
        v.direct_view()


NON_CONTIGUOUS_INNER = [
    # (what, source, indirect, message)
    ("pixel stride", lambda: np.zeros((2, 3, 8))[:, :, ::2], (0, 1),
     "after its last indirect dimension 1: dimension 2 has stride 16, C-contiguous needs 8"),
    ("every other row of a frame", lambda: np.zeros((2, 6, 4))[:, ::2], (0,),
     "after its last indirect dimension 0: dimension 1 has stride 64, C-contiguous needs 32"),
    ("Fortran order", lambda: np.asfortranarray(np.zeros((2, 3, 4))), (0, 1),
     "dimension 2 has stride 48, C-contiguous needs 8"),
    ("transposed frame", lambda: np.zeros((2, 4, 3)).transpose(0, 2, 1), (0,),
     "dimension 2 has stride 24, C-contiguous needs 8"),
    ("reversed last", lambda: np.zeros((2, 3, 4))[:, :, ::-1], (1,),
     "dimension 2 has stride -8, C-contiguous needs 8"),
    ("4-D pixel stride", lambda: np.zeros((2, 3, 4, 10), dtype=np.float32)[..., ::2], (1,),
     "after its last indirect dimension 1: dimension 3 has stride 8, C-contiguous needs 4"),
    ("4-D (0,) strided dim 2", lambda: np.zeros((2, 3, 8, 5))[:, :, ::2], (0,),
     "after its last indirect dimension 0: dimension 2 has stride 80, C-contiguous needs 40"),
]


@pytest.mark.parametrize("what, make, indirect, message", NON_CONTIGUOUS_INNER,
                         ids=[c[0] for c in NON_CONTIGUOUS_INNER])
def test_view_from_array_refuses_non_contiguous_inner_dimensions(what, make, indirect, message):
    a = make()
    with pytest.raises(BufferError, match="the source is not C-contiguous") as info:
        IndirectMemory.view_from_array(a, indirect=indirect)
    assert message in str(info.value)
    # as_indirect copies instead: same values, but not the same memory
    c = as_indirect(a, indirect=indirect, readonly=False)
    assert c.indirect == indirect
    np.testing.assert_array_equal(c.to_numpy(), a)
    c.copy_from(np.ones(a.shape, dtype=a.dtype))
    assert not a.any()
    # nothing to point at: no element, no contiguity needed
    empty = make()[:0]
    assert IndirectMemory.view_from_array(empty, indirect=indirect).shape == empty.shape


def test_view_from_array_of_read_only_sources():
    a = values((2, 3, 4), "i")
    a.flags.writeable = False
    expect(BufferError, IndirectMemory.view_from_array, a, match="pass readonly=True")
    expect(BufferError, IndirectMemory.view_from_array, a, indirect=(0,), match="read-only")
    v = IndirectMemory.view_from_array(a, readonly=True)
    mv = memoryview(v)
    assert v.readonly and mv.readonly and mv.tolist() == a.tolist()
    with pytest.raises(TypeError):
        mv[0, 0, 0] = 1
    expect(BufferError, v.copy_from, np.zeros((2, 3, 4), dtype=np.intc))
    # bytes: read-only too
    b = bytes(range(24))
    raw = np.frombuffer(b, dtype=np.uint8).reshape(2, 3, 4)
    v = IndirectMemory.view_from_array(raw, indirect=(1,), readonly=True)
    assert memoryview(v).tolist() == raw.tolist()
    # a writable source viewed read-only
    w = values((2, 3, 4), "d")
    v = IndirectMemory.view_from_array(w, readonly=True)
    assert memoryview(v).readonly
    expect(BufferError, tb.ndarray, v, getbuf=tb.PyBUF_FULL)
    w[1, 1, 1] = 123.0  # the source may still change: it is a view
    assert memoryview(v)[1, 1, 1] == 123.0


def test_view_from_array_refuses_indirect_and_wrongly_dimensioned_sources():
    m = IndirectMemory.create_memory((2, 3, 4), "d")
    expect(BufferError, IndirectMemory.view_from_array, m,
           match="the source is itself indirect (suboffset 0 in dimension 0)")
    assert m.export_count == 0  # the probe export was given back
    pil = tb.ndarray(list(range(24)), shape=[2, 3, 4], format="i", flags=tb.ND_PIL)
    expect(BufferError, IndirectMemory.view_from_array, pil, readonly=True,
           match="itself indirect")
    expect(BufferError, IndirectMemory.view_from_array, np.zeros(5),
           match="expected a buffer of 2 to 8 dimensions, got 1-D ndarray")
    expect(BufferError, IndirectMemory.view_from_array, np.zeros((1,) * 9),
           match="got 9-D")
    expect(BufferError, IndirectMemory.view_from_array, np.float64(1.0), readonly=True,
           match="got 0-D")
    expect(TypeError, IndirectMemory.view_from_array, [[1.0, 2.0]])
    expect(ValueError, IndirectMemory.view_from_array, np.zeros((2, 3, 4)), indirect=(2,),
           match="indirect dimension 2 is out of range for 3 dimensions")


def test_view_from_array_holds_its_sources_buffer():
    ba = bytearray(range(24))
    mv = memoryview(ba).cast("B", (2, 3, 4))
    v = IndirectMemory.view_from_array(mv, indirect=(1,))
    assert memoryview(v).tolist() == mv.tolist()
    expect(BufferError, ba.append, 1, match="cannot be re-sized")
    expect(BufferError, mv.release, match="memoryview has 1 exported buffer")
    memoryview(v)[1, 2, 3] = 99
    assert ba[23] == 99
    v.release()
    mv.release()
    ba.append(1)  # given back
    assert len(ba) == 25


def test_view_from_array_2d_is_an_indirectmemory2d():
    a = values((3, 4), "d")
    v = IndirectMemory.view_from_array(a)
    assert type(v) is IndirectMemory2D and v.indirect == (0,) and v.row_offset == 0
    memoryview(v)[2, 3] = -2.0
    assert a[2, 3] == -2.0
    np.testing.assert_array_equal(IndirectMemory2D.view_from_rows(a).to_numpy(), v.to_numpy())


def test_view_from_array_of_a_ctypes_array():
    # ctypes exports C-contiguous N-D arrays (a '<d' format that memoryview cannot index)
    c = (ctypes.c_double * 4 * 3 * 2)()
    for i, j, k in np.ndindex(2, 3, 4):
        c[i][j][k] = i * 100 + j * 10 + k
    expected = np.fromfunction(lambda i, j, k: i * 100 + j * 10 + k, (2, 3, 4))
    for indirect in patterns(3):
        v = IndirectMemory.view_from_array(c, indirect=indirect)
        assert v.shape == (2, 3, 4) and v.itemsize == 8
        np.testing.assert_array_equal(v.to_numpy(), expected)
        v.copy_from(-expected, cast=True)
        assert c[1][2][3] == -123.0
        v.copy_from(expected, cast=True)


def test_view_from_array_keeps_its_source_alive():
    a = values((2, 3, 4), "d")
    expected = a.tolist()
    ref = weakref.ref(a)
    v = IndirectMemory.view_from_array(a, indirect=(1,))
    del a
    gc.collect()
    assert ref() is not None
    assert memoryview(v).tolist() == expected
    mv = memoryview(v)
    del v
    gc.collect()
    assert ref() is not None and mv.tolist() == expected
    mv.release()
    del mv
    gc.collect()
    assert ref() is None


# =============================================================================================
# from_address / from_ctype_ptr: pointer structures laid out by hand
# =============================================================================================

@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
@pytest.mark.parametrize("fmt", ["d", "h"])
def test_from_address_every_pattern(ndim, indirect, fmt):
    shape = SHAPES[ndim]
    a = values(shape, fmt, seed=4)
    s = Structure(a, indirect)
    m = s.wrap(fmt)
    assert type(m) is IndirectMemory and m.address == s.address
    assert (m.shape, m.indirect) == (shape, indirect)
    assert (m.strides, m.suboffsets) == expected_geometry(shape, indirect, a.itemsize)
    assert memoryview(m).tolist() == a.tolist() == tb_list(m)
    np.testing.assert_array_equal(m.to_numpy(), a)
    # writes land in the structure's own blocks
    new = values(shape, fmt, seed=5)
    m.copy_from(new)
    np.testing.assert_array_equal(s.read(), new)
    idx = tuple(x - 1 for x in shape)
    memoryview(m)[idx] = 17
    assert s.read()[idx] == 17
    with pytest.raises(BufferError, match="not back to back"):
        m.direct_view()


NR_CASES = [
    # Numerical-Recipes style 1-based structures: every pointer points one element (a pointer,
    # at table levels) before what it leads to.
    ("double*** 1-based", (2, 3, 4), (0, 1), "d", (PTR, 8)),
    ("int*** 1-based", (2, 3, 4), (0, 1), "i", (PTR, 4)),
    ("frames 1-based", (3, 2, 4), (0,), "d", (8,)),
    ("(1,) 1-based", (2, 3, 4), (1,), "h", (2,)),
    ("4-D (0, 2)", (2, 2, 3, 2), (0, 2), "q", (PTR, 8)),
    ("large offsets", (2, 3, 4), (0, 1), "d", (4 * PTR, 40)),
]


@pytest.mark.parametrize("what, shape, indirect, fmt, offsets", NR_CASES,
                         ids=[c[0] for c in NR_CASES])
def test_from_address_with_offsets(what, shape, indirect, fmt, offsets):
    a = values(shape, fmt, seed=6)
    s = Structure(a, indirect, offsets=offsets)
    m = s.wrap(fmt)
    assert m.suboffsets == expected_geometry(shape, indirect, a.itemsize, offsets)[1]
    assert memoryview(m).tolist() == a.tolist() == tb_list(m)
    new = values(shape, fmt, seed=7)
    m.copy_from(new)
    np.testing.assert_array_equal(s.read(), new)
    c = m.copy()  # an owned copy has its data right after each pointer
    assert c.suboffsets == expected_geometry(shape, indirect, a.itemsize)[1]
    np.testing.assert_array_equal(c.to_numpy(), new)


def test_from_address_takes_pointer_objects_and_keeps_them_alive():
    a = values((2, 3, 4), "d")
    s = Structure(a, (0, 1))
    for address in (ctypes.c_void_p(s.address), np.uint64(s.address),
                    ctypes.cast(s.keep[0], ctypes.POINTER(ctypes.c_void_p))):
        m = IndirectMemory.from_address(address, (2, 3, 4), "d", memory_nanny=s)
        assert m.address == s.address
        assert memoryview(m).tolist() == a.tolist()


def test_from_ctype_ptr_structures():
    a = values((2, 3, 4), "d", seed=8)
    t3 = ctypes_tensor(a)                        # array of POINTER(POINTER(c_double))
    m = IndirectMemory.from_ctype_ptr(t3, (2, 3, 4))
    assert (m.indirect, m.format, m.shape) == ((0, 1), "d", (2, 3, 4))
    assert memoryview(m).tolist() == a.tolist()
    memoryview(m)[1, 2, 3] = -1.0
    assert t3[1][2][3] == -1.0                   # ctypes reads the same memory
    P3 = ctypes.POINTER(ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
    p = IndirectMemory.from_ctype_ptr(ctypes.cast(t3, P3), (2, 3, 4), readonly=True)
    assert p.readonly and memoryview(p)[1, 2, 3] == -1.0
    # one pointer level over a 3-D shape: frames of 3 x 4 ints
    ints = values((2, 3, 4), np.intc, seed=9)
    frames = ctypes_tensor(ints, ctypes.c_int, levels=1)
    f = IndirectMemory.from_ctype_ptr(frames, (2, 3, 4))
    assert (f.indirect, f.format) == ((0,), "i")
    assert memoryview(f).tolist() == ints.tolist()
    # 4-D: T**** and a T*** over 4 x 5 blocks
    b = values((2, 3, 4, 5), "d", seed=10)
    m4 = IndirectMemory.from_ctype_ptr(ctypes_tensor(b), b.shape)
    assert m4.indirect == (0, 1, 2) and memoryview(m4).tolist() == b.tolist()
    m4 = IndirectMemory.from_ctype_ptr(ctypes_tensor(b, levels=2), b.shape)
    assert m4.indirect == (0, 1) and memoryview(m4).tolist() == b.tolist()
    # 2-D: the T** of IndirectMemory2D
    rows = ctypes_tensor(values((2, 3), "d"))
    assert type(IndirectMemory.from_ctype_ptr(rows, (2, 3))) is IndirectMemory2D
    # the table may be longer than shape[0]; shorter is refused
    assert IndirectMemory.from_ctype_ptr(t3, (1, 3, 4)).to_numpy().tolist() == \
        [memoryview(m).tolist()[0]]
    expect(BufferError, IndirectMemory.from_ctype_ptr, t3, (3, 3, 4),
           match="ctypes table has 2 entries, 3 requested")
    expect(ValueError, IndirectMemory.from_ctype_ptr, t3, (2, 3),
           match="a ctypes table of 2 pointer level(s) needs at least 3 dimensions")
    expect(TypeError, IndirectMemory.from_ctype_ptr, (ctypes.c_double * 3)(), (1, 3))


def test_from_ctype_ptr_with_offsets():
    # a 1-based double*** built with ctypes: tables and rows one element early
    a = values((2, 3, 4), "d", seed=11)
    s = Structure(a, (0, 1), offsets=(PTR, 8))
    root = (ctypes.POINTER(ctypes.POINTER(ctypes.c_double)) * 2).from_address(s.address)
    m = IndirectMemory.from_ctype_ptr(root, (2, 3, 4), offsets=(PTR, 8), memory_nanny=s)
    assert m.suboffsets == (PTR, 8, -1)
    assert memoryview(m).tolist() == a.tolist()


def test_null_pointers_are_accepted_where_nothing_is_followed():
    root = (ctypes.c_void_p * 2)()   # two NULL pointers
    for shape in [(2, 0, 4), (0, 3, 4)]:
        m = IndirectMemory.from_address(ctypes.addressof(root), shape, "d", memory_nanny=root)
        assert memoryview(m).tolist() == np.zeros(shape).tolist()
        assert m.to_numpy().shape == shape
    # an element-less last dimension: the tables are followed, the data never read
    s = Structure(np.zeros((2, 3, 0)), (0, 1))
    for prefix in list(s.tables)[1:]:
        for j in range(3):
            s.tables[prefix][j] = None
    m = s.wrap("d")
    assert memoryview(m).tolist() == [[[], [], []], [[], [], []]]


NULL_CASES = [
    # (shape, indirect, index prefix whose table gets a NULL, slot, message)
    ((3, 3, 4), (0, 1), (), 1, "row 1 of the pointer table is NULL"),
    ((3, 3, 4), (0, 1), (2,), 2,
     "element (2, 2) of the memory is behind a NULL pointer (in dimension 1)"),
    ((3, 3, 4), (0,), (), 2, "row 2 of the pointer table is NULL"),
    ((3, 3, 4), (1,), (), 5,
     "element (1, 2) of the memory is behind a NULL pointer (in dimension 1)"),
    ((2, 3, 4, 5), (0, 2), (1,), 7,
     "element (1, 1, 3) of the memory is behind a NULL pointer (in dimension 2)"),
    ((2, 3, 4, 5), (0, 1, 2), (1, 2), 0,
     "element (1, 2, 0) of the memory is behind a NULL pointer (in dimension 2)"),
    ((2, 3, 4), (0, 1), (), 0, "row 0 of the pointer table is NULL"),
]


@isolated
def test_null_pointers_are_refused_naming_the_index():
    for shape, indirect, prefix, slot, message in NULL_CASES:
        a = values(shape, "d")
        s = Structure(a, indirect)
        s.tables[prefix][slot] = None
        with pytest.raises(ValueError) as info:
            s.wrap("d")
        assert str(info.value) == message
        if list(indirect) == list(range(len(indirect))):  # from_ctype_ptr: first dimensions
            P = ctypes.c_double
            for _ in indirect:
                P = ctypes.POINTER(P)
            typed = (P * shape[0]).from_address(s.address)
            with pytest.raises(ValueError) as info:
                IndirectMemory.from_ctype_ptr(typed, shape, memory_nanny=s)
            assert str(info.value) == message


@isolated
def test_null_address_and_repointed_pointers():
    with pytest.raises(ValueError, match="the pointer table is NULL"):
        IndirectMemory.from_address(0, (2, 3, 4), "d")
    with pytest.raises(ValueError, match="the ctypes pointer table is NULL"):
        IndirectMemory.from_ctype_ptr(
            ctypes.POINTER(ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))(), (2, 3, 4))
    # C re-points a pointer after wrapping: copies check every pointer and name it
    a = values((2, 3, 4), "d")
    s = Structure(a, (0, 1))
    m = s.wrap("d")
    s.tables[(1,)][2] = None
    for op in (m.to_numpy, m.copy, lambda: m.copy_to(np.zeros((2, 3, 4))),
               lambda: m.copy_from(np.zeros((2, 3, 4))),
               lambda: IndirectMemory.create_memory((2, 3, 4), "d").copy_from(m)):
        with pytest.raises(ValueError) as info:
            op()
        assert "element (1, 2) of" in str(info.value) and "NULL" in str(info.value), info.value
    # owned memory whose table address was handed out is no longer trusted
    o = IndirectMemory.create_memory((2, 3, 4), "d")
    o.copy_from(a)
    root = (ctypes.c_void_p * 2).from_address(o.address)
    root[1] = None
    with pytest.raises(ValueError, match="row 1 of the source's pointer table is NULL"):
        o.to_numpy()
    with pytest.raises(ValueError, match="row 1 of the destination's pointer table is NULL"):
        o.copy_from(a)
    # direct_view checks the pointers of owned memory once its tables were handed out
    o = IndirectMemory.create_memory((2, 3, 4), "d")
    level1 = (ctypes.c_void_p * 8).from_address(o.address)  # root (2 slots), then 6 rows
    assert (level1[0], level1[1]) == (o.address + 2 * PTR, o.address + 5 * PTR)
    o.direct_view().release()
    level1[2 + 4] = None
    with pytest.raises(ValueError, match=r"element \(1, 1\) of the memory is behind a NULL"):
        o.direct_view()


# =============================================================================================
# Cython typed memoryviews with view.indirect dimensions
# =============================================================================================

def _sources(ndim, indirect, seed):
    """(what, memory, values, reader of the memory's current values) for one layout: owned
    memory, a view of a NumPy array (strided outer dimension), a hand-made structure."""
    shape = SHAPES[ndim]
    a = values(shape, "d", seed)
    owned, _ = filled(shape, "d", indirect, seed)
    yield "owned", owned, a, owned.to_numpy
    big = np.zeros((shape[0] * 2,) + shape[1:])
    big[::2] = a
    v = IndirectMemory.view_from_array(big[::2], indirect=indirect)
    yield "view", v, a, lambda: big[::2].copy()
    s = Structure(a, indirect)
    yield "structure", s.wrap("d"), a, s.read


def fill_expected(shape, base):
    return base + sum(np.indices(shape)[d] * 10 ** (len(shape) - 1 - d)
                      for d in range(len(shape)))


@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
def test_cython_typed_memoryviews_read_and_write(cy, ndim, indirect):
    name = cy_name(ndim, indirect)
    read, fill = getattr(cy, f"read_{name}"), getattr(cy, f"fill_{name}")
    for what, m, a, current in _sources(ndim, indirect, seed=ndim):
        assert read(m) == (m.shape, m.strides, m.suboffsets, a.ravel().tolist()), what
        assert getattr(cy, f"read_generic{ndim}")(m)[3] == a.ravel().tolist(), what
        assert m.export_count == 0
        fill(m, 0.5)
        np.testing.assert_array_equal(current(), fill_expected(m.shape, 0.5), err_msg=what)
        assert memoryview(m).tolist() == fill_expected(m.shape, 0.5).tolist()


@pytest.mark.parametrize("ndim", [3, 4])
def test_cython_refuses_every_other_layout(cy, ndim):
    """Cython's own buffer validation agrees with our suboffsets: each typed memoryview
    accepts exactly its layout (view.generic accepts all)."""
    for mem_indirect in patterns(ndim):
        m, a = filled(SHAPES[ndim], "d", mem_indirect)
        for fn_indirect in patterns(ndim):
            read = getattr(cy, f"read_{cy_name(ndim, fn_indirect)}")
            if fn_indirect == mem_indirect:
                assert read(m)[3] == a.ravel().tolist()
            else:
                with pytest.raises(ValueError, match="Buffer (is not indirectly accessible|not "
                                                     "compatible with direct access)"):
                    read(m)
        assert m.export_count == 0


def test_cython_typed_memoryviews_and_read_only_memory(cy):
    m, a = filled((2, 3, 4), "d", (0, 1), readonly=True)
    assert cy.read_const_p3_01(m)[3] == a.ravel().tolist()
    with pytest.raises((BufferError, ValueError), match="read-only"):
        cy.fill_p3_01(m, 1.0)
    assert m.export_count == 0
    np.testing.assert_array_equal(m.to_numpy(), a)
    # format and dimension mismatches are refused by Cython
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        cy.read_p3_01(IndirectMemory.create_memory((2, 3, 4), "f"))
    with pytest.raises(ValueError, match="Buffer has wrong number of dimensions"):
        cy.read_p3_01(IndirectMemory.create_memory((2, 3, 4, 5), "d", indirect=(0, 1)))


def test_cython_typed_memoryview_keeps_memory_alive(cy):
    m, a = filled((2, 3, 4), "d", (0, 1))
    holder = cy.ViewHolder3(m)
    assert m.export_count == 1
    expect(BufferError, m.release, match="cannot release: IndirectMemory has 1 exported buffer")
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is not None and holder.get(1, 2, 3) == a[1, 2, 3]
    del holder
    gc.collect()
    assert ref() is None


# =============================================================================================
# the typed accessors of the cimport API
# =============================================================================================

TABLE3_FORMATS = {"double": "d", "float": "f", "int": "i", "uchar": "B"}


@pytest.mark.parametrize("which", sorted(TABLE3_FORMATS))
def test_table3_accessors_read_what_the_memory_holds(cy, which):
    fmt = TABLE3_FORMATS[which]
    a = values((3, 4, 5), fmt, seed=12)
    b4 = values((2, 3, 4, 5), fmt, seed=13)
    big = np.zeros((6, 4, 5), dtype=a.dtype)
    big[::-2] = a
    cases = [("owned", filled((3, 4, 5), fmt, (0, 1), seed=12)[0], a),
             ("view of a[::-2]", IndirectMemory.view_from_array(big[::-2]), a),
             ("structure", Structure(a, (0, 1)).wrap(fmt), a),
             ("ctypes", None, a),
             ("4-D (0, 1): 2-D blocks", filled((2, 3, 4, 5), fmt, (0, 1), seed=13)[0], b4)]
    ctype = {"d": ctypes.c_double, "f": ctypes.c_float, "i": ctypes.c_int,
             "B": ctypes.c_ubyte}[fmt]
    t3 = ctypes_tensor(a, ctype)
    cases[3] = ("ctypes", IndirectMemory.from_ctype_ptr(t3, a.shape), a)
    for what, m, expected in cases:
        address = cy.table3(m, which)
        assert address == m.address, what
        assert cy.table3(m, which, True) == address
        got = cy.read_levels(address, m.shape, m.itemsize, 2, 0)
        assert got == expected.tobytes(), what


def test_table3_writes_and_offsets(cy):
    m = IndirectMemory.create_memory((2, 3, 4), "d")
    cy.write_double3(m, 1, 2, 3, 6.5)
    cy.write_double3(m, 0, 0, 0, -1.0)
    expected = np.zeros((2, 3, 4))
    expected[1, 2, 3], expected[0, 0, 0] = 6.5, -1.0
    assert memoryview(m).tolist() == expected.tolist()
    ints, ia = filled((2, 3, 4), "i", (0, 1), seed=14)
    cy.scale_int3(ints, -3)
    np.testing.assert_array_equal(ints.to_numpy(), ia * -3)
    # a 1-based double*** (Numerical Recipes): the accessor wants the offset it has
    a = values((2, 3, 4), "d", seed=15)
    s = Structure(a, (0, 1), offsets=(8, 8))
    nr = s.wrap("d")
    address = cy.table3(nr, "double", False, 8)
    assert cy.read_levels(address, nr.shape, 8, 2, 8) == a.tobytes()
    for wrong in (0, 4, 16):
        with pytest.raises(ValueError, match=f"8 bytes after each row pointer \\(row_offset\\), "
                                             f"not {wrong} as requested"):
            cy.table3(nr, "double", False, wrong)
    with pytest.raises(ValueError, match="not 8 as requested"):
        cy.table3(m, "double", False, 8)


def test_table3_accepts_the_same_element_spelt_otherwise(cy):
    c = (ctypes.c_int * 4 * 3 * 2)()         # ctypes says '<i': a native int here
    expected = np.fromfunction(lambda i, j, k: i * 100 + j * 10 + k, (2, 3, 4)).astype(np.intc)
    for i, j, k in np.ndindex(2, 3, 4):
        c[i][j][k] = int(expected[i, j, k])
    v = IndirectMemory.view_from_array(c)
    assert v.format == "<i"
    address = cy.table3(v, "int")
    assert cy.read_levels(address, v.shape, 4, 2, 0) == expected.tobytes()
    assert cy.table3(IndirectMemory.create_memory((2, 3, 4), "=i"), "int")
    with pytest.raises(TypeError, match="element format is '>i', not 'i'"):
        cy.table3(IndirectMemory.create_memory((2, 3, 4), ">i"), "int")


LEVEL_MISMATCHES = [
    # (shape, indirect, accessor, levels asked, the memory's layout in the message)
    ((2, 3, 4), (0,), "table3", 2, "T**"),
    ((2, 3, 4), (1,), "table3", 2, "indirect=(1,)"),
    ((2, 3, 4, 5), (0, 1, 2), "table3", 2, "T****"),
    ((2, 3, 4, 5), (0, 2), "table3", 2, "indirect=(0, 2)"),
    ((2, 3, 4, 5), (1, 2), "table3", 2, "indirect=(1, 2)"),
    ((3, 4), (0,), "table3", 2, "T**"),
    ((2, 3, 4), (0, 1), "table1", 1, "T***"),
    ((2, 3, 4), (1,), "table1", 1, "indirect=(1,)"),
]


@pytest.mark.parametrize("shape, indirect, accessor, levels, layout", LEVEL_MISMATCHES,
                         ids=[f"{c[2]}-{pid(len(c[0]), c[1])}" for c in LEVEL_MISMATCHES])
def test_accessors_refuse_other_pointer_levels(cy, shape, indirect, accessor, levels, layout):
    m = IndirectMemory.create_memory(shape, "d", indirect=indirect)
    stars = "*" * (levels + 1)
    message = (f"a table of {levels} pointer level(s) (T{stars}) was requested, but the memory "
               f"is {layout}")
    with pytest.raises(BufferError) as info:
        getattr(cy, accessor)(m, "double")
    assert str(info.value) == message
    with pytest.raises(BufferError):
        cy.levels_table(m, "d", False, levels)


def test_accessor_errors(cy):
    m, a = filled((2, 3, 4), "d", (0, 1))
    for which in ("float", "int", "uchar"):
        with pytest.raises(TypeError, match=f"element format is 'd', not "
                                            f"'{TABLE3_FORMATS[which]}'"):
            cy.table3(m, which)
    with pytest.raises(TypeError, match="element format is 'i', not 'd'"):
        cy.table3(IndirectMemory.create_memory((2, 3, 4), "i"), "double")
    with pytest.raises(TypeError, match="element format is 'q', not 'd'"):
        cy.table3(IndirectMemory.create_memory((2, 3, 4), "q"), "double")
    ro, _ = filled((2, 3, 4), "d", (0, 1), readonly=True)
    assert cy.table3(ro, "double") == ro.address
    with pytest.raises(BufferError, match="writable table requested from read-only memory"):
        cy.table3(ro, "double", True)
    with pytest.raises(BufferError, match="writable table requested from read-only memory"):
        cy.write_double3(ro, 0, 0, 0, 1.0)
    np.testing.assert_array_equal(ro.to_numpy(), a)
    frames_ro = IndirectMemory.create_memory((2, 3, 4), "d", indirect=(0,), readonly=True)
    with pytest.raises(BufferError, match="writable table requested"):
        cy.table1(frames_ro, "double", True)
    m.release()
    for call in (lambda: cy.table3(m, "double"), lambda: cy.table1(m, "double"),
                 lambda: cy.levels_table(m, None, False, 2), lambda: cy.dim_of(m, 0),
                 lambda: cy.pin(m)):
        with pytest.raises(ValueError, match="operation on released IndirectMemory"):
            call()


def test_one_level_accessors_on_frames_and_2d(cy):
    a = values((3, 4, 5), "d", seed=16)
    frames, _ = filled((3, 4, 5), "d", (0,), seed=16)
    s = Structure(a, (0,))
    for m in (frames, s.wrap("d"), IndirectMemory.view_from_array(a, indirect=(0,))):
        address = cy.table1(m, "double")
        assert address == m.address
        assert cy.read_levels(address, m.shape, 8, 1, 0) == a.tobytes()
        assert cy.frames_sum(m) == pytest.approx(a.sum())
        assert cy.checked_table(m, None, False) == address
    img = values((2, 4, 3), np.uint8, seed=17)        # frames of H x W bytes
    u = IndirectMemory.view_from_array(img, indirect=(0,))
    assert cy.read_levels(cy.table1(u, "uchar"), u.shape, 1, 1, 0) == img.tobytes()
    m2, a2 = filled((3, 4), "q", (0,))
    assert type(m2) is IndirectMemory2D
    assert cy.read_levels(cy.table1(m2, "longlong"), (3, 4), 8, 1, 0) == a2.tobytes()
    assert cy.table1(m2, "long") == m2.address  # 'l' and 'q' are the same on LP64
    with pytest.raises(TypeError):
        cy.table1(m2, "int")


def test_checked_levels(cy):
    for shape, indirect, levels in [((2, 3, 4), (0, 1), 2), ((2, 3, 4, 5), (0, 1, 2), 3),
                                    ((2, 3, 4, 5), (0, 1), 2), ((2, 3, 4), (0,), 1),
                                    ((2, 3, 4, 5), (0,), 1)]:
        m, a = filled(shape, "i", indirect)
        address = cy.levels_table(m, "i", True, levels)
        assert address == cy.levels_table(m, None, False, levels) == m.address
        if levels <= 2:
            assert cy.read_levels(address, shape, 4, levels, 0) == a.tobytes()
        with pytest.raises(ValueError, match="levels must be >= 1, got 0"):
            cy.levels_table(m, "i", True, 0)  # a bad argument, not a layout mismatch
        for wrong in {1, 2, 3, 4} - {levels}:
            with pytest.raises(BufferError, match=f"a table of {wrong} pointer level"):
                cy.levels_table(m, "i", False, wrong)
        with pytest.raises(TypeError, match="element format is 'i', not 'd'"):
            cy.levels_table(m, "d", False, levels)
        with pytest.raises(TypeError, match="format must be str or bytes"):
            cy.levels_table(m, 4, False, levels)
    # shapes of 1 do not change what a T*** is
    m = IndirectMemory.create_memory((1, 1, 1), "d")
    assert cy.levels_table(m, "d", False, 2) == m.address


def test_dim_without_the_gil(cy):
    for shape in [(2, 3, 4), (5, 0, 1, 7), (3, 4)]:
        m = IndirectMemory.create_memory(shape, "B")
        assert cy.dims_nogil(m, len(shape)) == list(shape)
        for d in (len(shape), -1, 100):
            with pytest.raises(ValueError, match=f"dimension {d} out of range for {len(shape)} "
                                                 "dimensions"):
                cy.dim_of(m, d)


def test_pin_and_unpin(cy):
    m, _ = filled((2, 3, 4), "d", (1,))
    cy.pin(m)
    cy.pin(m)
    assert m.export_count == 2
    for op, what in ((m.release, "release"), (lambda: m.reinterpret_data("B"), "reinterpret_data"),
                     (m.make_read_only, "make_read_only")):
        with pytest.raises(BufferError, match=f"cannot {what}: IndirectMemory has 2 exported"):
            op()
    cy.unpin(m)
    assert m.export_count == 1
    cy.unpin(m)
    assert m.export_count == 0
    _hostile.take_unraisable()
    m.release()
    assert m.released


def test_create_nd(cy):
    m = cy.create_nd([2, 3, 4], "d", 0)
    assert type(m) is IndirectMemory and m.indirect == (0, 1)
    assert memoryview(m).tolist() == np.zeros((2, 3, 4)).tolist()
    for ndim, indirect in PATTERNS:
        mask = sum(1 << d for d in indirect)
        m = cy.create_nd(list(SHAPES[ndim]), b"h", mask, True)
        assert (m.indirect, m.readonly, m.format) == (indirect, True, "h")
        assert (m.strides, m.suboffsets) == expected_geometry(SHAPES[ndim], indirect, 2)
        assert cy.create_nd(list(SHAPES[ndim]), "h", mask).readonly is False
    assert type(cy.create_nd([2, 3], "d", 1)) is IndirectMemory2D
    assert type(cy.create_nd([2, 3], "d", 0)) is IndirectMemory2D
    for ndim in (1, 9, 0, -1):
        with pytest.raises(ValueError, match=f"ndim must be 2 to 8 with a shape, got {ndim}"):
            cy.create_nd_ndim(ndim)
    with pytest.raises(ValueError, match="ndim must be 2 to 8 with a shape"):
        cy.create_nd_null_shape()
    assert cy.create_nd_ndim(8).shape == (1,) * 8
    with pytest.raises(ValueError, match="indirect mask 0x4 must name dimensions 0 to 1 only"):
        cy.create_nd([2, 3, 4], "d", 4)
    with pytest.raises(ValueError, match="indirect mask 0x9 must name dimensions 0 to 2 only"):
        cy.create_nd([2, 3, 4, 5], "d", 9)
    with pytest.raises(ValueError, match="unknown format 'Y'"):
        cy.create_nd([2, 3, 4], "Y", 0)
    with pytest.raises(TypeError, match="format must be str or bytes"):
        cy.create_nd([2, 3, 4], 8, 0)
    with pytest.raises(MemoryError):
        cy.create_nd([2 ** 40, 2 ** 40, 0], "d", 0)
    with pytest.raises(MemoryError):
        cy.create_nd([2 ** 40, 2 ** 20, 2 ** 10], "d", 0)


def test_cdef_constructors_refuse_negative_sizes(cy):
    """A negative size is a ValueError naming it, as from Python and as the 2-D create()."""
    s = Structure(values((2, 3, 4), "d"), (0, 1))
    for shape in ([2, -3, 4], [-1, 3, 4], [2, 3, -4], [2, -3, 0]):
        bad = next(d for d, x in enumerate(shape) if x < 0)
        for make in (lambda shape=shape: cy.create_nd(shape, "d", 0),
                     lambda shape=shape: cy.wrap_nd(s.address, shape, "d", 0, None, False, s)):
            with pytest.raises(ValueError, match=f"shape\\[{bad}\\] must be >= 0, got "
                                                 f"{shape[bad]}"):
                make()


def test_from_ptr_nd(cy):
    a = values((2, 3, 4), "i", seed=18)
    s = Structure(a, (0, 1), offsets=(PTR, 4))
    m = cy.wrap_nd(s.address, [2, 3, 4], "i", 0, [PTR, 4, 0], False, s)
    assert m.suboffsets == (PTR, 4, -1)
    assert memoryview(m).tolist() == a.tolist()
    memoryview(m)[1, 2, 3] = -9
    assert s.read()[1, 2, 3] == -9
    f = Structure(a, (1,))
    m = cy.wrap_nd(f.address, [2, 3, 4], "i", 2, None, True, f)
    assert m.readonly and m.indirect == (1,) and memoryview(m).tolist() == a.tolist()
    with pytest.raises(ValueError, match="the pointer table is NULL"):
        cy.wrap_nd(0, [2, 3, 4], "d", 0)
    with pytest.raises(ValueError, match="offsets\\[1\\] must be >= 0, got -8"):
        cy.wrap_nd(s.address, [2, 3, 4], "i", 0, [0, -8, 0], False, s)
    # an offset of a direct dimension means nothing and is not checked
    m = cy.wrap_nd(f.address, [2, 3, 4], "i", 2, [-5, 0, -7], False, f)
    assert m.suboffsets == (-1, 0, -1)
    with pytest.raises(ValueError, match="indirect mask 0x4"):
        cy.wrap_nd(s.address, [2, 3, 4], "i", 4)
    t = Structure(a, (0, 1))
    t.tables[(1,)][1] = None
    with pytest.raises(ValueError, match=r"element \(1, 1\) of the memory is behind a NULL"):
        cy.wrap_nd(t.address, [2, 3, 4], "i", 3, None, False, t)


# =============================================================================================
# copies: every pair of layouts, NumPy with any strides, _testbuffer PIL buffers, overlaps
# =============================================================================================

PAIRS = [(n, p, q) for n in (3, 4) for p in patterns(n) for q in patterns(n)]


@pytest.mark.parametrize("ndim, src_indirect, dst_indirect", PAIRS,
                         ids=[f"{n}d-{''.join(map(str, p))}-to-{''.join(map(str, q))}"
                              for n, p, q in PAIRS])
def test_copies_between_every_pair_of_layouts(ndim, src_indirect, dst_indirect):
    shape = SHAPES[ndim]
    src, a = filled(shape, "i", src_indirect, seed=20)
    # destinations: owned memory, and a scattered hand-made structure
    dst = IndirectMemory.create_memory(shape, "i", indirect=dst_indirect)
    dst.copy_from(src)
    assert memoryview(dst).tolist() == a.tolist()
    s = Structure(np.zeros(shape, dtype=np.intc), dst_indirect)
    scattered = s.wrap("i")
    src.copy_to(scattered)
    np.testing.assert_array_equal(s.read(), a)
    # and back, from the scattered one into fresh owned memory of the source's layout
    b = values(shape, "i", seed=21)
    scattered.copy_from(b)
    back = IndirectMemory.create_memory(shape, "i", indirect=src_indirect)
    back.copy_from(scattered)
    assert memoryview(back).tolist() == b.tolist()
    assert src.export_count == dst.export_count == scattered.export_count == 0


NUMPY_LAYOUTS = [
    ("C", lambda a: a.copy()),
    ("Fortran", np.asfortranarray),
    ("reversed", lambda a: np.ascontiguousarray(a[::-1, ::-1, ::-1])[::-1, ::-1, ::-1]),
    ("strided", lambda a: _embed(a, (slice(None, None, 2), slice(1, None, 3),
                                     slice(None, None, -2)))),
    ("transposed", lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0)),
]


def _embed(a, slices):
    """a copy of a living inside a bigger array at the given slices (any strides)."""
    big_shape = tuple((n - 1) * abs(s.step or 1) + 1 + (s.start or 0) if (s.step or 1) > 0
                      else (n - 1) * abs(s.step) + 1 for n, s in zip(a.shape, slices))
    big = np.zeros(big_shape, dtype=a.dtype)
    view = big[slices]
    assert view.shape == a.shape
    view[...] = a
    return view


@pytest.mark.parametrize("layout", NUMPY_LAYOUTS, ids=[x[0] for x in NUMPY_LAYOUTS])
@pytest.mark.parametrize("indirect", patterns(3), ids=str)
def test_copies_with_numpy_of_any_strides(layout, indirect):
    _, make = layout
    a = values((3, 4, 5), "d", seed=22)
    src = make(a)
    np.testing.assert_array_equal(src, a)
    m = IndirectMemory.create_memory((3, 4, 5), "d", indirect=indirect)
    m.copy_from(src)
    assert memoryview(m).tolist() == a.tolist()
    b = values((3, 4, 5), "d", seed=23)
    m.copy_from(b)
    dst = make(np.zeros_like(a))
    m.copy_to(dst)
    np.testing.assert_array_equal(dst, b)
    # a scattered structure as either side
    s = Structure(np.zeros_like(a), indirect)
    w = s.wrap("d")
    w.copy_from(src)
    np.testing.assert_array_equal(s.read(), a)
    dst = make(np.zeros_like(a))
    w.copy_to(dst)
    np.testing.assert_array_equal(dst, a)


def _pil(a, fmt, slices=None):
    """A _testbuffer ND_PIL ndarray (suboffset in dimension 0) holding a, optionally a slice
    of a bigger one."""
    flags = tb.ND_PIL | tb.ND_WRITABLE
    if slices is None:
        return tb.ndarray(a.ravel().tolist(), shape=list(a.shape), format=fmt, flags=flags)
    big = _embed(a, slices).base
    while big.base is not None:
        big = big.base
    nd = tb.ndarray(big.ravel().tolist(), shape=list(big.shape), format=fmt, flags=flags)
    return nd[slices]


@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
def test_copies_with_testbuffer_pil_buffers(ndim, indirect):
    shape = SHAPES[ndim]
    a = values(shape, "i", seed=24)
    rev = tuple(slice(None, None, -1) if d % 2 == 0 else slice(None) for d in range(ndim))
    for pil in (_pil(a, "i"), _pil(a, "i", slices=(slice(1, None, 2),) + rev[1:])):
        assert pil.suboffsets[0] >= 0 and pil.tolist() == a.tolist()
        m = IndirectMemory.create_memory(shape, "i", indirect=indirect)
        m.copy_from(pil)
        assert memoryview(m).tolist() == a.tolist()
        b = values(shape, "i", seed=25)
        m.copy_from(b)
        m.copy_to(pil)
        assert pil.tolist() == b.tolist()
        # PIL into a scattered structure, and an N-D consumer of ours as a PIL source
        s = Structure(np.zeros(shape, dtype=np.intc), indirect)
        s.wrap("i").copy_from(pil)
        np.testing.assert_array_equal(s.read(), b)
    nd = tb.ndarray(m, getbuf=FULL_RO)
    out = IndirectMemory.create_memory(shape, "i", indirect=indirect)
    out.copy_from(nd)
    assert memoryview(out).tolist() == b.tolist()


def _t(a):
    """a with its first two dimensions swapped."""
    return a.transpose(1, 0, *range(2, a.ndim))


OVERLAPS = [
    # (what, shape, destination window, source window, destination wrap, source wrap):
    # windows of one array; a wrap is "np" (the NumPy window itself) or "v" + the indirect
    # dimensions of a view_from_array of the window
    ("view <- reversed array", (4, 5, 6), lambda a: a, lambda a: a[::-1], "v01", "np"),
    ("view <- reversed view", (4, 5, 6), lambda a: a, lambda a: a[::-1], "v01", "v1"),
    ("frames <- shifted", (5, 4, 6), lambda a: a[1:], lambda a: a[:-1], "v0", "np"),
    ("shifted <- frames", (5, 4, 6), lambda a: a[:-1], lambda a: a[1:], "np", "v0"),
    ("(1,) <- (0, 1) shifted in dim 1", (3, 6, 4), lambda a: a[:, 1:], lambda a: a[:, :-1],
     "v1", "v01"),
    ("(0, 1) <- (1,) shifted back", (3, 6, 4), lambda a: a[:, :-1], lambda a: a[:, 1:],
     "v01", "v1"),
    ("reversed both", (4, 4, 6), lambda a: a[::-1, ::-1], lambda a: a, "v01", "v01"),
    ("transposed outer", (4, 4, 6), lambda a: a, _t, "v01", "v01"),
    ("transposed outer (1,)", (4, 4, 6), _t, lambda a: a, "v1", "v0"),
    ("self", (3, 4, 5), lambda a: a, lambda a: a, "v01", "v01"),
    ("every other frame", (6, 3, 4), lambda a: a[::2], lambda a: a[1::2][::-1], "v0", "v01"),
    ("4-D (0, 2) <- (1,)", (3, 4, 3, 5), lambda a: a[1:, ::-1], lambda a: a[:-1],
     "v02", "v1"),
    ("4-D (1, 2) <- numpy", (3, 4, 3, 5), lambda a: a[:, 1:], lambda a: a[::-1, :-1],
     "v12", "np"),
    ("numpy <- 4-D (0, 1, 2)", (3, 4, 3, 5), lambda a: a[:, :, 1:], lambda a: a[:, :, :-1],
     "np", "v012"),
    ("4-D transposed (0, 1)", (3, 3, 2, 4), _t, lambda a: a[::-1], "v01", "v012"),
]


def _wrap(how, v):
    return v if how == "np" else IndirectMemory.view_from_array(
        v, indirect=tuple(int(c) for c in how[1:]))


@pytest.mark.parametrize("what, shape, dst_win, src_win, dst_how, src_how", OVERLAPS,
                         ids=[c[0] for c in OVERLAPS])
@pytest.mark.parametrize("method", ["copy_from", "copy_to"])
def test_overlapping_copies_match_numpy(what, shape, dst_win, src_win, dst_how, src_how,
                                        method):
    base = values(shape, "d", seed=26)
    expected = base.copy()
    np.copyto(dst_win(expected), src_win(expected).copy())  # through a temporary
    arr = base.copy()
    dst, src = _wrap(dst_how, dst_win(arr)), _wrap(src_how, src_win(arr))
    if isinstance(dst, IndirectMemory) and (method == "copy_from" or
                                            not isinstance(src, IndirectMemory)):
        dst.copy_from(src)
    else:
        src.copy_to(dst)
    np.testing.assert_array_equal(arr, expected)


def test_large_copies():
    """Copies of more than 64 KiB (run without the GIL) between layouts, views and NumPy."""
    a = values((16, 24, 40), "d", seed=28)                     # 120 KiB
    b = np.ascontiguousarray(a[::-1])
    m = IndirectMemory.create_memory(a.shape, "d", indirect=(1,))
    m.copy_from(np.asfortranarray(a))
    np.testing.assert_array_equal(m.to_numpy(), a)
    v = IndirectMemory.view_from_array(b, indirect=(0, 1))
    v.copy_from(m)                                          # b's memory now holds a
    np.testing.assert_array_equal(b, a)
    s = Structure(np.zeros_like(a), (0,))
    w = s.wrap("d")
    m.copy_to(w)
    np.testing.assert_array_equal(s.read(), a)
    w.copy_from(a[::-1])                                    # NumPy, negative strides
    np.testing.assert_array_equal(s.read(), a[::-1])
    v.copy_from(IndirectMemory.view_from_array(b[::-1], indirect=(1,)))  # overlapping
    np.testing.assert_array_equal(b, a[::-1])


def test_overlapping_copies_through_a_direct_view():
    m, a = filled((4, 5, 6), "d", (0, 1), seed=27)
    d = np.asarray(m.direct_view())
    m.copy_from(d[::-1])
    np.testing.assert_array_equal(m.to_numpy(), a[::-1])
    f = IndirectMemory.view_from_array(d[1:], indirect=(0,))
    f.copy_from(d[:-1, ::-1])
    expected = a[::-1].copy()
    expected[1:] = expected[:-1, ::-1].copy()
    np.testing.assert_array_equal(d, expected)


def test_copy_checks():
    m, a = filled((2, 3, 4), "q", (0,))
    expect(BufferError, m.copy_from, np.zeros((2, 3, 5), dtype=np.int64), match="shape mismatch")
    expect(BufferError, m.copy_from, np.zeros((2, 3, 4, 1), dtype=np.int64),
           match="copy needs buffers of the same dimensions")
    expect(BufferError, m.copy_from, np.zeros((2, 3, 4)), match="format mismatch")
    expect(BufferError, m.copy_from, np.zeros((2, 3, 4), dtype=np.int32), cast=True,
           match="cast needs equal itemsizes")
    expect(BufferError, m.copy_to, IndirectMemory.create_memory((2, 3, 4), "q", readonly=True),
           match="cannot copy into IndirectMemory")
    expect(TypeError, m.copy_from, [[[1] * 4] * 3] * 2)
    # cast: the bytes as they are
    f = np.zeros((2, 3, 4))
    m.copy_to(f, cast=True)
    assert f.tobytes() == a.tobytes()
    # 'l' and 'q' are one element type (LP64); so are '<d' (little endian) and 'd'
    lm = IndirectMemory.create_memory((2, 3, 4), "l", indirect=(1,))
    lm.copy_from(m)
    assert memoryview(lm).tolist() == a.tolist()
    assert m.export_count == lm.export_count == 0


@isolated
def test_copies_that_overwrite_their_own_pointers():
    """A destination whose elements are the pointers that lead to the source's elements, or to
    its own: every pointer is read before anything is written (else the copy would follow
    the values it wrote)."""
    blocks = np.array([[10, 11, 12, 13], [0, 0, 0, 0], [20, 21, 22, 23]], dtype=np.uint64)
    arr = np.zeros((2, 1, 4), dtype=np.uint64)
    flat = arr.reshape(-1)
    flat[0], flat[1] = blocks.ctypes.data, blocks.ctypes.data + 2 * 32  # the source's table
    src = IndirectMemory.from_address(arr.ctypes.data, (2, 1, 4), "Q", indirect=(0,),
                                      memory_nanny=(arr, blocks))
    src.copy_to(arr)
    np.testing.assert_array_equal(arr.reshape(2, 4), blocks[[0, 2]])
    # the destination's own table lies in its first block
    raw = np.zeros(16, dtype=np.uint64)
    raw[0], raw[1] = raw.ctypes.data, raw.ctypes.data + 10 * 8
    dst = IndirectMemory.from_address(raw.ctypes.data, (2, 1, 4), "Q", indirect=(0,),
                                      memory_nanny=raw)
    dst.copy_from(blocks[[0, 2]].reshape(2, 1, 4))
    np.testing.assert_array_equal(raw[0:4], blocks[0])
    np.testing.assert_array_equal(raw[10:14], blocks[2])


# =============================================================================================
# to_numpy, copy, direct_view
# =============================================================================================

@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
def test_to_numpy_copy_and_direct_view(ndim, indirect):
    shape = SHAPES[ndim]
    m, a = filled(shape, "f", indirect, seed=30)
    out = m.to_numpy()
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.owndata
    np.testing.assert_array_equal(out, a)
    out[(0,) * ndim] = 1e6  # a copy: the memory does not change
    assert memoryview(m)[(0,) * ndim] == a[(0,) * ndim]
    c = m.copy()
    assert (type(c), c.shape, c.indirect, c.format, c.readonly) == \
        (IndirectMemory, shape, indirect, "f", False)
    assert c.address != m.address
    memoryview(c)[(1,) * ndim] = -7.0
    assert memoryview(m)[(1,) * ndim] == a[(1,) * ndim]
    assert m.copy(readonly=True).readonly and not m.copy(readonly=False).readonly
    dv = m.direct_view()
    assert (dv.shape, dv.format, dv.c_contiguous, dv.readonly, dv.suboffsets) == \
        (shape, "f", True, False, ())
    assert m.export_count == 1
    d = np.asarray(dv)
    np.testing.assert_array_equal(d, a)
    d[(1,) * ndim] = 42.0          # zero-copy both ways
    assert memoryview(m)[(1,) * ndim] == 42.0
    memoryview(m)[(0,) * ndim] = -3.0
    assert d[(0,) * ndim] == -3.0
    expect(BufferError, m.release, match="cannot release")
    del d
    dv.release()
    assert m.export_count == 0
    # read-only memory: read-only copies and direct views, unless asked otherwise
    ro, _ = filled(shape, "f", indirect, readonly=True)
    assert ro.copy().readonly and not ro.copy(readonly=False).readonly
    rdv = ro.direct_view()
    assert rdv.readonly
    expect(BufferError, tb.ndarray, rdv.obj, getbuf=tb.PyBUF_FULL, match="read-only")


def test_direct_view_of_views_and_structures():
    a = values((4, 3, 5), "d", seed=31)
    for indirect in patterns(3):
        v = IndirectMemory.view_from_array(a, indirect=indirect)
        d = np.asarray(v.direct_view())
        assert np.shares_memory(d, a) and d.shape == a.shape
        np.testing.assert_array_equal(d, a)
    big = np.zeros((4, 3, 7))
    big[:, :, 1:6] = a
    inner = big[:, :, 1:6]             # rows contiguous, not back to back
    v = IndirectMemory.view_from_array(inner, indirect=(0, 1))
    with pytest.raises(BufferError, match=r"rows are not back to back in memory \(the row at "
                                          r"index \(0, 1\) is not 40 bytes after the one before"):
        v.direct_view()
    assert v.export_count == 0
    # rows back to back but out of order: not one C-ordered block
    s = Structure(a, (0,))
    order = [2, 0, 1, 3]
    blk = np.ascontiguousarray(a[order])
    table = (ctypes.c_void_p * 4)(*[blk.ctypes.data + order.index(i) * a[0].nbytes
                                    for i in range(4)])
    m = IndirectMemory.from_address(ctypes.addressof(table), a.shape, "d", indirect=(0,),
                                    memory_nanny=(table, blk, s))
    np.testing.assert_array_equal(m.to_numpy(), a)
    with pytest.raises(BufferError, match="not back to back"):
        m.direct_view()
    # ... and in order: one block, although wrapped from an address
    table2 = (ctypes.c_void_p * 4)(*[a.ctypes.data + i * a[0].nbytes for i in range(4)])
    m2 = IndirectMemory.from_address(ctypes.addressof(table2), a.shape, "d", indirect=(0,),
                                     memory_nanny=(table2, a))
    d = np.asarray(m2.direct_view())
    assert np.shares_memory(d, a)


def test_direct_view_after_c_re_points_a_table():
    m, a = filled((2, 3, 4), "d", (0, 1))
    root = (ctypes.c_void_p * 2).from_address(m.address)
    root[1] = root[0]                  # C code: frame 1 now shares frame 0's rows
    expected = a.copy()
    expected[1] = a[0]
    np.testing.assert_array_equal(m.to_numpy(), expected)
    with pytest.raises(BufferError, match="not back to back"):
        m.direct_view()
    c = m.copy()
    np.testing.assert_array_equal(c.to_numpy(), expected)
    np.testing.assert_array_equal(np.asarray(c.direct_view()), expected)


# =============================================================================================
# as_indirect(obj, indirect=...)
# =============================================================================================

def test_as_indirect_returns_memory_that_already_fits():
    m = IndirectMemory.create_memory((2, 3, 4), "d", indirect=(0,))
    assert as_indirect(m, indirect=(0,)) is m
    assert as_indirect(m, indirect=[0], format="d") is m
    assert as_indirect(m, indirect=(0,), format="<d") is m      # the same element on this host
    assert as_indirect(m, indirect=(0,), readonly=False) is m
    m2 = IndirectMemory2D.create_memory(2, 3, "i")
    assert as_indirect(m2, indirect=(0,)) is m2
    ro = IndirectMemory.create_memory((2, 3, 4), "d", readonly=True)
    assert as_indirect(ro, indirect=(0, 1)) is ro
    expect(BufferError, as_indirect, ro, indirect=(0, 1), readonly=False,
           match="writable memory was requested, but the IndirectMemory is read-only")


def test_as_indirect_copies_memory_of_another_layout_or_format():
    m, a = filled((2, 3, 4), "i", (0, 1), seed=32)
    c = as_indirect(m, indirect=(1,))
    assert c is not m and c.indirect == (1,) and c.readonly
    assert memoryview(c).tolist() == a.tolist()
    w = as_indirect(m, indirect=(0,), readonly=False)
    assert not w.readonly
    memoryview(w)[0, 0, 0] = 99
    assert memoryview(m)[0, 0, 0] == a[0, 0, 0]        # a copy
    d = as_indirect(m, indirect=(0, 1), format="d")     # conversion of the values
    assert d.format == "d" and d.indirect == (0, 1)
    np.testing.assert_array_equal(d.to_numpy(), a.astype(np.float64))


def test_as_indirect_of_arrays():
    a = values((2, 3, 4), "d", seed=33)
    v = as_indirect(a, indirect=(1,))               # a zero-copy view, read-only by default
    assert v.readonly and v.indirect == (1,)
    a[1, 2, 3] = -8.0
    assert memoryview(v)[1, 2, 3] == -8.0
    w = as_indirect(a, indirect=(0, 1), readonly=False)
    memoryview(w)[0, 1, 2] = 5.5
    assert a[0, 1, 2] == 5.5
    f = np.asfortranarray(a)                         # not contiguous where needed: a copy
    c = as_indirect(f, indirect=(0,), readonly=False)
    np.testing.assert_array_equal(c.to_numpy(), a)
    memoryview(c)[0, 0, 0] = 1234.0
    assert f[0, 0, 0] != 1234.0
    ints = values((2, 3, 4), "h", seed=34)           # converted to the format asked for
    conv = as_indirect(ints, format="d", indirect=(0, 1))
    assert conv.format == "d" and conv.readonly
    np.testing.assert_array_equal(conv.to_numpy(), ints.astype(np.float64))
    nested = as_indirect(a.tolist(), indirect=(1,))  # nested lists: an owned copy
    assert nested.indirect == (1,) and memoryview(nested).tolist() == a.tolist()
    four = as_indirect(values((2, 2, 3, 2), "i").tolist(), format="q", indirect=(0, 2))
    assert (four.format, four.indirect, four.shape) == ("q", (0, 2), (2, 2, 3, 2))
    # read-only input and a writable request
    ro = a.copy()
    ro.flags.writeable = False
    expect(BufferError, as_indirect, ro, indirect=(0,), readonly=False,
           match="writable memory was requested, but the ndarray is read-only")
    assert memoryview(as_indirect(ro, indirect=(0,))).tolist() == ro.tolist()
    expect(BufferError, as_indirect, bytes(24), indirect=(0,), readonly=False,
           match="writable memory was requested")
    # what cannot be N-D indirect memory
    expect(ValueError, as_indirect, [1.0, 2.0], indirect=(0,),
           match="indirect memory needs 2 to 8 dimensions, got an array of shape (2,)")
    expect(ValueError, as_indirect, np.zeros((2, 3, 4)), indirect=(2,),
           match="indirect dimension 2 is out of range for 3 dimensions")
    expect(ValueError, as_indirect, np.zeros((2, 3, 4)), indirect=(), match="at least one")


def test_as_indirect_of_pil_buffers():
    a = values((2, 3, 4), "i", seed=35)
    pil = _pil(a, "i", slices=(slice(None, None, -1), slice(None), slice(1, None, 2)))
    c = as_indirect(pil, indirect=(0, 1))
    assert c.readonly and memoryview(c).tolist() == a.tolist()
    w = as_indirect(pil, indirect=(1,), readonly=False)
    assert memoryview(w).tolist() == a.tolist()


def test_as_indirect_of_a_pil_buffer_with_a_format_conversion():
    # The 2-D path converts a PIL-style buffer's values (the copy engine reads it, NumPy
    # converts the copy); N-D must too: NumPy cannot read the PIL buffer itself.
    a = values((2, 3, 4), "i", seed=36)
    pil = _pil(a, "i")
    c = as_indirect(pil, format="d", indirect=(0, 1))
    assert c.format == "d"
    np.testing.assert_array_equal(c.to_numpy(), a.astype(np.float64))


# =============================================================================================
# lifetime: views keep memory alive, nannies live until the last view, release(), gc
# =============================================================================================

@isolated
def test_views_keep_memory_and_nannies_alive(cy_dir):
    cy = _hostile.load_module(MODULE_NAME, cy_dir)

    class Nanny:
        def __init__(self, structure):
            self.structure = structure

    for indirect in [(0, 1), (0,), (1,)]:
        a = values((2, 3, 4), "d", seed=40)
        nanny = Nanny(Structure(a, indirect))
        ref = weakref.ref(nanny)
        m = IndirectMemory.from_address(nanny.structure.address, (2, 3, 4), "d",
                                        indirect=indirect, memory_nanny=nanny)
        del nanny
        gc.collect()
        assert ref() is not None
        mv = memoryview(m)
        nd = tb.ndarray(m, getbuf=FULL_RO)
        del m
        gc.collect()
        assert ref() is not None
        assert mv.tolist() == a.tolist() and nd.tolist() == a.tolist()
        mv[1, 2, 3] = 0.25
        assert nd.tolist()[1][2][3] == 0.25
        del mv
        gc.collect()
        assert ref() is not None and nd.tolist()[1][2][3] == 0.25
        del nd
        gc.collect()
        assert ref() is None
    # ctypes structures: from_ctype_ptr keeps every level alive through the root array
    a = values((2, 3, 4), "d", seed=41)
    t3 = ctypes_tensor(a)
    m = IndirectMemory.from_ctype_ptr(t3, (2, 3, 4))
    del t3
    gc.collect()
    _ = [bytearray(64) for _ in range(1000)]  # reuse freed memory, if any
    assert memoryview(m).tolist() == a.tolist()
    # owned memory freed only with the last view; Cython views count
    o, b = filled((2, 3, 4), "d", (0, 1))
    holder = cy.ViewHolder3(o)
    dv = o.direct_view()
    del o
    gc.collect()
    _ = [bytearray(96) for _ in range(1000)]
    assert dv.tolist() == b.tolist() and holder.get(1, 2, 3) == b[1, 2, 3]
    # memory from C with its nanny: freed once, after the last view
    before = cy.counters()
    c = cy.c_tensor(2, 3, 4)
    expected = np.fromfunction(lambda i, j, k: i * 100 + j * 10 + k, (2, 3, 4))
    views = [memoryview(c), tb.ndarray(c, getbuf=FULL_RO), cy.ViewHolder3(c)]
    del c
    gc.collect()
    assert cy.counters() == before
    assert views[0].tolist() == expected.tolist() and views[2].get(1, 2, 3) == 123.0
    views.pop(0).release()
    views.pop(0)
    gc.collect()
    assert cy.counters() == before and views[0].get(0, 0, 1) == 1.0
    views.clear()
    gc.collect()
    assert cy.counters() == before + 1
    c = cy.c_tensor(3, 1, 2)
    np.testing.assert_array_equal(c.to_numpy(),
                                  np.fromfunction(lambda i, j, k: i * 100 + j * 10 + k, (3, 1, 2)))
    c.release()
    assert cy.counters() == before + 2


@pytest.mark.parametrize("how", ["memoryview", "testbuffer", "direct_view", "numpy",
                                 "pinned", "cython"])
def test_release_refused_while_exported_or_pinned(cy, how):
    m, a = filled((2, 3, 4), "d", (1,))
    if how == "memoryview":
        view = memoryview(m)
    elif how == "testbuffer":
        view = tb.ndarray(m, getbuf=FULL_RO)
    elif how == "direct_view":
        view = m.direct_view()
    elif how == "numpy":
        view = np.asarray(m.direct_view())
    elif how == "pinned":
        view = m.pinned("d")
        view.__enter__()
    else:  # cdef pin(), as Cython code does around a call without the GIL
        view = None
        cy.pin(m)
    assert m.export_count == 1
    for op, what in ((m.release, "release"), (lambda: m.reinterpret_data("B"), "reinterpret_data"),
                     (m.make_read_only, "make_read_only")):
        with pytest.raises(BufferError, match=f"cannot {what}: IndirectMemory has 1 exported "
                                              r"buffer\(s\)"):
            op()
    with pytest.raises(BufferError, match="cannot release"), m:
        pass
    assert not m.released
    m.reinterpret_data("d")  # nothing changes: allowed while exported
    np.testing.assert_array_equal(m.to_numpy(), a)
    if how == "pinned":
        view.__exit__(None, None, None)
    elif how == "cython":
        cy.unpin(m)
    elif isinstance(view, memoryview):
        view.release()
    del view
    gc.collect()
    assert m.export_count == 0
    m.release()
    m.release()  # idempotent
    assert m.released and repr(m) == "<IndirectMemory released>"
    for op in (lambda: m.shape, lambda: m.ndim, lambda: m.strides, lambda: m.suboffsets,
               lambda: m.indirect, lambda: m.format, lambda: m.itemsize, lambda: m.readonly,
               lambda: m.address, lambda: len(m), lambda: memoryview(m), m.to_numpy, m.copy,
               m.direct_view, lambda: m.copy_from(a), lambda: m.copy_to(np.zeros_like(a)),
               lambda: m.reinterpret_data("B"), m.make_read_only,
               lambda: as_indirect(m, indirect=(1,)), lambda: m.pinned().__enter__(),
               lambda: IndirectMemory.create_memory((2, 3, 4), "d").copy_from(m),
               lambda: tb.ndarray(m, getbuf=FULL_RO), m.__enter__):
        with pytest.raises(ValueError, match="operation on released IndirectMemory"):
            op()


def test_context_manager_releases():
    with IndirectMemory.create_memory((2, 3, 4), "d", indirect=(0,)) as m:
        memoryview(m)[1, 2, 3] = 1.0
        assert m.to_numpy()[1, 2, 3] == 1.0
    assert m.released
    # a view gives its source's buffer back at release(): _testbuffer refuses to change an
    # ndarray while a buffer of it is exported
    nd = tb.ndarray(list(range(24)), shape=[2, 3, 4], format="i", flags=tb.ND_WRITABLE)
    with IndirectMemory.view_from_array(nd, indirect=(1,)) as v:
        assert memoryview(v).tolist() == nd.tolist()
        expect(BufferError, nd.push, [1], shape=[1], format="i", match="1 exported buffer")
    assert v.released
    nd.push([1], shape=[1], format="i")
    nd.pop()
    assert nd.tolist()[1][2][3] == 23


def _collected(make_link):
    """Build owner -> link(owner) -> owner, drop it, collect: was owner freed?"""
    class Owner:
        pass

    owner = Owner()
    owner.link = make_link(owner)
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    gc.collect()
    return ref() is None


@isolated
def test_cycles_are_collectable_like_memoryview_cycles():
    class Arr(np.ndarray):
        pass

    def array_of(owner):
        a = np.zeros((2, 3, 4)).view(Arr)
        a.owner = owner          # the source refers back to the owner of its view
        return a

    def nanny_of(owner):
        s = Structure(values((2, 3, 4), "d"), (0, 1))
        s.owner = owner          # the nanny refers back to the owner of the memory
        return s

    links = {
        "memoryview (the oracle)": lambda o: memoryview(array_of(o)),
        "view_from_array": lambda o: IndirectMemory.view_from_array(array_of(o)),
        "view_from_array (1,)": lambda o: IndirectMemory.view_from_array(array_of(o),
                                                                        indirect=(1,)),
        "as_indirect view": lambda o: as_indirect(array_of(o), indirect=(0,)),
        "memoryview of a view": lambda o: memoryview(IndirectMemory.view_from_array(
            array_of(o))),
        "from_address nanny": lambda o: nanny_of(o).wrap("d"),
        "direct_view of a view": lambda o: IndirectMemory.view_from_array(
            array_of(o)).direct_view(),
    }
    got = {name: _collected(link) for name, link in links.items()}
    assert got == {name: True for name in links}, got


def test_weak_references_and_pickling():
    m = IndirectMemory.create_memory((2, 3, 4), "d")
    ref = weakref.ref(m)
    assert ref() is m
    import copy
    import pickle
    for op in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="IndirectMemory: it holds raw pointers"):
            op(m)
    with pytest.raises(TypeError, match="cannot be instantiated directly"):
        IndirectMemory()
    with pytest.raises(TypeError):
        type("Sub", (IndirectMemory,), {})
    del m
    gc.collect()
    assert ref() is None


# =============================================================================================
# pinned() on N-D memory
# =============================================================================================

def test_pinned_hands_c_the_root_table():
    D = ctypes.c_double
    m, a = filled((2, 3, 4), "d", (0, 1))
    with m.pinned("d", writable=True) as address:
        assert address == m.address and m.export_count == 1
        expect(BufferError, m.release, match="cannot release")
        t = ctypes.cast(address, ctypes.POINTER(ctypes.POINTER(ctypes.POINTER(D))))
        assert t[1][2][3] == a[1, 2, 3]
        t[1][2][3] = -4.5                                 # double***
    assert m.export_count == 0 and memoryview(m)[1, 2, 3] == -4.5
    f, fa = filled((2, 3, 4), "d", (0,))
    with f.pinned("d", writable=True) as address:
        t = ctypes.cast(address, ctypes.POINTER(ctypes.POINTER(D)))
        assert t[1][2 * 4 + 3] == fa[1, 2, 3]
        t[1][2 * 4 + 3] = 8.0                             # frames: block 1, row 2, column 3
    assert memoryview(f)[1, 2, 3] == 8.0
    g, ga = filled((2, 3, 4), "d", (1,))
    with g.pinned(b"d", writable=True) as address:
        t = ctypes.cast(address, ctypes.POINTER(ctypes.POINTER(D)))
        assert t[1 * 3 + 2][3] == ga[1, 2, 3]
        t[1 * 3 + 2][3] = 9.0                             # a 2-D array of pointers
    assert memoryview(g)[1, 2, 3] == 9.0
    # the checks of the typed tables
    with pytest.raises(TypeError, match="element format is 'd', not 'i'"):
        m.pinned("i").__enter__()
    ro, _ = filled((2, 3, 4), "d", (0, 1), readonly=True)
    with ro.pinned("d") as address:
        assert address == ro.address
    with pytest.raises(BufferError, match="writable table requested from read-only memory"):
        ro.pinned(writable=True).__enter__()
    with pytest.raises(ValueError, match="the data behind dimension 0 starts 0 bytes after each "
                                         r"row pointer \(row_offset\), not 8 as requested"):
        m.pinned(row_offset=8).__enter__()
    assert m.export_count == ro.export_count == 0
    # a 1-based structure: pinned with its own offset
    s = Structure(a, (0, 1), offsets=(8, 8))
    nr = s.wrap("d")
    with nr.pinned("d", row_offset=8) as address:
        t = ctypes.cast(address, ctypes.POINTER(ctypes.POINTER(ctypes.POINTER(D))))
        assert t[1][2 + 1][3 + 1] == a[1, 2, 3]        # Numerical Recipes: 1-based below root
    with pytest.raises(ValueError, match="not 0 as requested"):
        nr.pinned("d").__enter__()


def test_memory_with_different_offsets_per_level():
    """An int*** of Numerical Recipes has pointer-sized offsets in its tables and int-sized
    ones in its rows: readable by every consumer; no single row_offset describes it, so only
    pinned(offsets=...) naming both hands it out."""
    a = values((2, 3, 4), "i", seed=42)
    m = Structure(a, (0, 1), offsets=(PTR, 4)).wrap("i")
    assert m.suboffsets == (PTR, 4, -1)
    assert memoryview(m).tolist() == a.tolist()
    for offset in (0, 4, PTR):
        with pytest.raises(ValueError, match="as requested"):
            m.pinned("i", row_offset=offset).__enter__()
    for offsets in ((0, 0), (4, PTR), (PTR, 0)):
        with pytest.raises(ValueError, match="as requested"):
            m.pinned("i", offsets=offsets).__enter__()
    with pytest.raises(ValueError, match="one value per indirect dimension"):
        m.pinned("i", offsets=(PTR,)).__enter__()
    with pytest.raises(TypeError, match="element format"):
        m.pinned("d", offsets=(PTR, 4)).__enter__()
    assert m.export_count == 0
    with m.pinned("i", offsets=(PTR, 4)) as address:
        assert address == m.address and m.export_count == 1
        with pytest.raises(BufferError):
            m.release()
    assert m.export_count == 0


# =============================================================================================
# reinterpret_data and make_read_only
# =============================================================================================

@pytest.mark.parametrize("ndim, indirect", PATTERNS, ids=PATTERN_IDS)
def test_reinterpret_data_changes_the_last_dimension(ndim, indirect):
    shape = SHAPES[ndim]
    m, a = filled(shape, "d", indirect, seed=43)
    m.reinterpret_data("B")
    assert (m.shape, m.format, m.itemsize, m.indirect) == (shape[:-1] + (shape[-1] * 8,), "B",
                                                           1, indirect)
    assert (m.strides, m.suboffsets) == expected_geometry(m.shape, indirect, 1)
    assert memoryview(m).tolist() == a.view(np.uint8).reshape(m.shape).tolist()
    m.reinterpret_data("i")
    assert m.shape == shape[:-1] + (shape[-1] * 2,)
    assert memoryview(m).tolist() == a.view(np.intc).reshape(m.shape).tolist()
    m.reinterpret_data(b"d")
    assert memoryview(m).tolist() == a.tolist()
    with pytest.raises(ValueError, match=f"row of {shape[-1] * 8} bytes is not divisible by "
                                         "itemsize 3"):
        m.reinterpret_data("3s")
    with pytest.raises(ValueError, match="unknown format 'Y'"):
        m.reinterpret_data("Y")
    assert m.shape == shape


def test_reinterpret_data_of_views_and_the_typed_tables(cy):
    a = values((2, 3, 4), "q", seed=44)
    v = IndirectMemory.view_from_array(a, indirect=(0, 1))
    with pytest.raises(TypeError):
        cy.table3(v, "int")
    v.reinterpret_data("i")
    assert v.shape == (2, 3, 8)
    addr = cy.table3(v, "int", True)
    assert cy.read_levels(addr, v.shape, 4, 2, 0) == a.tobytes()
    v.reinterpret_data("B")
    memoryview(v)[1, 2, 8 * 3] = 0x7F                 # the low byte of a[1, 2, 3]
    assert a[1, 2, 3] & 0xFF == 0x7F
    f = IndirectMemory.create_memory((2, 3, 0), "d", indirect=(0,))
    f.reinterpret_data("B")
    assert f.shape == (2, 3, 0)


def test_make_read_only():
    m, a = filled((2, 3, 4), "d", (0,))
    mv = memoryview(m)
    expect(BufferError, m.make_read_only, match="cannot make_read_only")
    mv.release()
    m.make_read_only()
    assert m.readonly and memoryview(m).readonly
    mv = memoryview(m)
    m.make_read_only()  # already: allowed while exported
    expect(BufferError, tb.ndarray, m, getbuf=tb.PyBUF_FULL, match="IndirectMemory is read-only")
    expect(BufferError, m.copy_from, a)
    assert mv.tolist() == a.tolist()


# =============================================================================================
# bad input (argument checks in process; allocations and NULL pointers in a child)
# =============================================================================================

def _t3():
    """A 2 x 3 x 4 ctypes double*** (array of POINTER(POINTER(c_double)))."""
    return ctypes_tensor(np.zeros((2, 3, 4)))


C = IndirectMemory.create_memory
BAD_INPUT = [
    # (id, call, exception, message fragment)
    ("shape_1d", lambda: C((3,), "d"), ValueError, "shape must have 2 to 8 dimensions, got 1"),
    ("shape_0d", lambda: C((), "d"), ValueError, "got 0"),
    ("shape_9d", lambda: C((1,) * 9, "d"), ValueError, "got 9: (1, 1, 1, 1, 1, 1, 1, 1, 1)"),
    ("shape_negative", lambda: C((2, -1, 3), "d"), ValueError, "shape[1] must be >= 0, got -1"),
    ("shape_bool", lambda: C((2, True, 3), "d"), TypeError, "shape[1] must be an int, not bool"),
    ("shape_float", lambda: C((2, 3, 4.0), "d"), TypeError,
     "shape[2] must be an int, not float"),
    ("shape_str_size", lambda: C((2, "3", 4), "d"), TypeError, "not str"),
    ("shape_int", lambda: C(5, "d"), TypeError, "shape must be a sequence of ints, not int"),
    ("shape_str", lambda: C("234", "d"), TypeError, "shape must be a sequence of ints, not str"),
    ("shape_none", lambda: C(None, "d"), TypeError, "not NoneType"),
    ("data_overflow", lambda: C((2 ** 40, 2 ** 40, 8), "d"), MemoryError,
     "shape (1099511627776, 1099511627776, 8) of 8-byte elements overflows"),
    ("table_overflow", lambda: C((2 ** 40, 2 ** 40, 0), "d"), MemoryError,
     "the pointer tables of shape (1099511627776, 1099511627776, 0) overflow"),
    ("table_overflow_frames", lambda: C((2 ** 62, 2 ** 40, 0), "d", indirect=(0,)),
     MemoryError, "the pointer tables of shape (4611686018427387904, 1099511627776, 0) "
                  "overflow"),
    ("table_overflow_4d", lambda: C((2 ** 20, 2 ** 20, 2 ** 20, 0), "B", indirect=(2,)),
     MemoryError, "the pointer tables of shape"),
    ("size_beyond_ssize_t", lambda: C((2 ** 64, 1, 1), "d"), MemoryError, "is too large"),
    ("indirect_empty", lambda: C((2, 3, 4), "d", indirect=()), ValueError,
     "indirect must name at least one dimension"),
    ("indirect_out_of_range", lambda: C((2, 3, 4), "d", indirect=(3,)), ValueError,
     "indirect dimension 3 is out of range for 3 dimensions"),
    ("indirect_negative", lambda: C((2, 3, 4), "d", indirect=(-1,)), ValueError,
     "indirect dimension -1 is out of range"),
    ("indirect_last", lambda: C((2, 3, 4), "d", indirect=(0, 2)), ValueError,
     "(the last dimension holds the elements)"),
    ("indirect_last_2d", lambda: C((2, 3), "d", indirect=(1,)), ValueError,
     "indirect dimension 1 is out of range for 2 dimensions"),
    ("indirect_twice", lambda: C((2, 3, 4), "d", indirect=(1, 0, 1)), ValueError,
     "indirect dimension 1 is given twice"),
    ("indirect_bool", lambda: C((2, 3, 4), "d", indirect=(True,)), TypeError,
     "indirect dimensions must be ints, not bool"),
    ("indirect_float", lambda: C((2, 3, 4), "d", indirect=(0.0,)), TypeError, "not float"),
    ("indirect_int", lambda: C((2, 3, 4), "d", indirect=0), TypeError,
     "indirect must be a sequence of dimensions, not int"),
    ("indirect_str", lambda: C((2, 3, 4), "d", indirect="0"), TypeError, "not str"),
    ("format_empty", lambda: C((2, 3, 4), ""), ValueError, "format must not be empty"),
    ("format_unknown", lambda: C((2, 3, 4), "Y"), ValueError, "unknown format 'Y'"),
    ("format_int", lambda: C((2, 3, 4), 5), TypeError, "format must be str or bytes, not int"),
    ("offsets_length", lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", offsets=(8,)),
     ValueError, "offsets needs one value per indirect dimension (0, 1), got 1"),
    ("offsets_length_frames",
     lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", indirect=(0,), offsets=(8, 8)),
     ValueError, "offsets needs one value per indirect dimension (0,), got 2"),
    ("offsets_negative", lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", offsets=(0, -8)),
     ValueError, "offsets[1] must be 0 to 9223372036854775807, got -8"),
    ("offsets_huge",
     lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", offsets=(2 ** 63, 0)),
     ValueError, "offsets[0] must be 0 to 9223372036854775807, got 9223372036854775808"),
    ("offsets_bool", lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", offsets=(0, True)),
     TypeError, "offsets must be ints, not bool"),
    ("offsets_int", lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", offsets=8),
     TypeError, "offsets must be a sequence of ints, not int"),
    ("offsets_float", lambda: IndirectMemory.from_address(1, (2, 3, 4), "d", offsets=(0, 8.0)),
     TypeError, "float"),
    ("ctypes_offsets_length", lambda: IndirectMemory.from_ctype_ptr(_t3(), (2, 3, 4),
                                                                    offsets=(8,)),
     ValueError, "offsets needs one value per indirect dimension (0, 1), got 1"),
    ("address_null", lambda: IndirectMemory.from_address(0, (2, 3, 4), "d"), ValueError,
     "the pointer table is NULL"),
    ("address_negative", lambda: IndirectMemory.from_address(-1, (2, 3, 4), "d"), ValueError,
     "address -1 is not a valid pointer value"),
    ("address_float", lambda: IndirectMemory.from_address(1.0, (2, 3, 4), "d"), TypeError,
     "address must be an int or a pointer object, not float"),
    ("address_overflow", lambda: IndirectMemory.from_address(1, (2 ** 40, 2 ** 40, 8), "d"),
     MemoryError, "overflows"),
    ("address_table_overflow",
     lambda: IndirectMemory.from_address(1, (2 ** 40, 2 ** 40, 0), "d"),
     MemoryError, "the pointer tables of shape"),
    ("address_1d", lambda: IndirectMemory.from_address(1, (2,), "d"), ValueError,
     "shape must have 2 to 8 dimensions, got 1"),
    ("ctypes_levels", lambda: IndirectMemory.from_ctype_ptr(_t3(), (2, 12)), ValueError,
     "a ctypes table of 2 pointer level(s) needs at least 3 dimensions, got shape (2, 12)"),
    ("ctypes_entries", lambda: IndirectMemory.from_ctype_ptr(_t3(), (5, 3, 4)), BufferError,
     "ctypes table has 2 entries, 5 requested"),
    ("ctypes_list", lambda: IndirectMemory.from_ctype_ptr([1], (2, 3, 4)), TypeError,
     "got list"),
    ("ctypes_negative", lambda: IndirectMemory.from_ctype_ptr(_t3(), (2, -3, 4)), ValueError,
     "shape[1] must be >= 0, got -3"),
    ("view_list", lambda: IndirectMemory.view_from_array([[1.0]]), TypeError, "list"),
    ("view_indirect_int", lambda: IndirectMemory.view_from_array(np.zeros((2, 3)), indirect=1),
     TypeError, "indirect must be a sequence"),
    ("copy_mismatch", lambda: C((2, 3, 4), "d").copy_from(np.zeros((2, 4, 3))), BufferError,
     "shape mismatch: source shape (2, 4, 3) format 'd', destination shape (2, 3, 4)"),
    ("consumer_t3", lambda: tb.ndarray(C((2, 3, 4), "d"), getbuf=tb.PyBUF_RECORDS_RO),
     BufferError, "IndirectMemory is an indirect (T***) buffer: the consumer must request "
                  "PyBUF_INDIRECT"),
    ("consumer_frames", lambda: tb.ndarray(C((2, 3, 4), "d", indirect=(0,)),
                                           getbuf=tb.PyBUF_STRIDES),
     BufferError, "an indirect (T**) buffer"),
    ("consumer_1", lambda: tb.ndarray(C((2, 3, 4), "d", indirect=(1,)), getbuf=tb.PyBUF_ND),
     BufferError, "an indirect (indirect=(1,)) buffer"),
    ("consumer_contiguous", lambda: tb.ndarray(C((2, 3, 4), "d"),
                                               getbuf=tb.PyBUF_INDIRECT | tb.PyBUF_C_CONTIGUOUS),
     BufferError, "cannot be exported as contiguous"),
    ("numpy", lambda: np.asarray(C((2, 3, 4), "d")), BufferError, "suboffsets"),
    ("reinterpret", lambda: C((2, 3, 4), "d").reinterpret_data("5s"), ValueError,
     "row of 32 bytes is not divisible by itemsize 5"),
    ("as_indirect_1d", lambda: as_indirect([1, 2], indirect=(0,)), ValueError,
     "indirect memory needs 2 to 8 dimensions, got an array of shape (2,)"),
    ("as_indirect_9d", lambda: as_indirect(np.zeros((1,) * 9), indirect=(0,)), ValueError,
     "got an array of shape (1, 1, 1, 1, 1, 1, 1, 1, 1)"),
    ("as_indirect_scalar", lambda: as_indirect(3.0, indirect=(0,)), ValueError,
     "got an array of shape ()"),
    ("as_indirect_bool", lambda: as_indirect(np.zeros((2, 3, 4)), indirect=[False]),
     TypeError, "not bool"),
]


@pytest.mark.parametrize("call, exc, fragment", [c[1:] for c in BAD_INPUT],
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    assert fragment in str(info.value), str(info.value)


@isolated
def test_allocation_failures_are_memoryerrors():
    for shape, indirect in [((2 ** 20, 2 ** 30, 2 ** 10), (0,)),     # 2**60 bytes of data
                            ((2 ** 30, 2 ** 29, 0), (0, 1)),         # 2**59 pointers
                            ((2 ** 28, 2 ** 28, 2 ** 4), (1,))]:      # both
        with pytest.raises(MemoryError, match="cannot allocate memory of shape"):
            IndirectMemory.create_memory(shape, "B", indirect=indirect)
    a = np.zeros((1, 1, 1))
    big = np.lib.stride_tricks.as_strided(a, shape=(2 ** 30, 2 ** 29, 1), strides=(0, 0, 8))
    with pytest.raises(MemoryError, match="cannot allocate"):
        IndirectMemory.view_from_array(big, readonly=True)
    # what was allocated before the failure is usable afterwards
    m, v = filled((2, 3, 4), "d")
    assert memoryview(m).tolist() == v.tolist()
