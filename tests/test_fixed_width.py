"""Fixed-width typed tables (issue 17): the <stdint.h> accessors of the cimport API
(int8_table() ... uint64_table(), their const_ variants, const_float_table(),
const_double_table()), the constructors that take const tables (from_const_ptr,
from_const_ptr_nd), and the same element types through the pybind11 caster.

A Cython module compiled at test time assigns every accessor's result to a variable of the
real type (`cdef const int32_t* const* t = mem.const_int32_table()`, `cdef uint16_t** t =
...`) and hands it to "library" functions declared the way C libraries declare them: that it
compiles without a cast is part of the test. A second compile checks that const tables can
neither be written through nor assigned to non-const ones.

Oracles, none of them this package's code: NumPy (tolist() of an array of the dtype,
np.invert for writes), struct (which formats have which kind and size), CPython's memoryview
(read-only-ness), C arrays owned by the test module (the const constructors), and the C++
module's own reading of the tables it lends or wraps.
"""
import gc
import os
import re
import struct
import subprocess
import sys
import weakref

import numpy as np
import pytest
from conftest import REPO, build_cython_module

from indirect_buffer import IndirectMemory, IndirectMemory2D

LITTLE = sys.byteorder == "little"
NATIVE_ORDER = "<" if LITTLE else ">"
FOREIGN_ORDER = ">" if LITTLE else "<"
STANDARD_CODE = {1: "b", 2: "h", 4: "i", 8: "q"}
OTHER_SIZE = {1: 2, 2: 4, 4: 8, 8: 4}

# name: (C type, NumPy dtype, signed, size in bytes)
INTS = {
    "int8": ("int8_t", np.int8, True, 1),
    "int16": ("int16_t", np.int16, True, 2),
    "int32": ("int32_t", np.int32, True, 4),
    "int64": ("int64_t", np.int64, True, 8),
    "uint8": ("uint8_t", np.uint8, False, 1),
    "uint16": ("uint16_t", np.uint16, False, 2),
    "uint32": ("uint32_t", np.uint32, False, 4),
    "uint64": ("uint64_t", np.uint64, False, 8),
}
# name: (C type, NumPy dtype, struct code); only const_ accessors are new for these.
FLOATS = {"float": ("float", np.float32, "f"), "double": ("double", np.float64, "d")}


def std_format(name):
    """The standard-size format an integer accessor's checked path asks for ('=i' for int32)."""
    _, _, signed, size = INTS[name]
    code = STANDARD_CODE[size]
    return "=" + (code if signed else code.upper())


def accepted_formats(name):
    """Every single-element spelling of an integer of this kind and size, by struct's sizes."""
    _, _, signed, size = INTS[name]
    out = set()
    for code in "bhilqn" if signed else "BHILQN":
        if struct.calcsize(code) == size:
            out |= {code, "@" + code}
        if code in "nN":
            continue  # native only
        orders = ["=", NATIVE_ORDER] + ([] if LITTLE else ["!"])
        if size == 1:
            orders += [FOREIGN_ORDER, "!"]  # one byte has no byte order
        for order in orders:
            if struct.calcsize(order + code) == size:
                out.add(order + code)
    return sorted(out)


def refused_formats(name):
    """Formats whose elements are not integers of this kind and size."""
    _, _, signed, size = INTS[name]
    out = {"f", "d", "e", "?", "c", "P", "2b", "xB", "bb", "5s"}
    for code in "bhilqnBHILQN":
        out |= {code, "@" + code}
        if code not in "nN":
            out |= {"=" + code, FOREIGN_ORDER + code}
    return sorted(out - set(accepted_formats(name)))


def test_format_tables_are_sound():
    """The oracle's own sanity: what it accepts has the size, what it refuses is refused."""
    for name, (_, dtype, signed, size) in INTS.items():
        acc = accepted_formats(name)
        assert std_format(name) in acc
        assert np.dtype(dtype).char in acc or np.dtype(dtype).str[1:] in acc
        assert all(struct.calcsize(f) == size for f in acc)
        assert set(acc).isdisjoint(refused_formats(name))
        # A 32-bit int is 'i' and '=i' here; an unsigned one never passes as signed.
        if name == "int32":
            assert {"i", "=i", NATIVE_ORDER + "i"} <= set(acc)
            assert {"I", "q", "h", FOREIGN_ORDER + "i"} <= set(refused_formats(name))


# ---------------------------------------------------------------------------------------------
# the Cython module
# ---------------------------------------------------------------------------------------------

HEADER = r'''
# cython: language_level=3, boundscheck=False, wraparound=False
from libc.stdint cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)
from indirect_buffer.buffer_impl cimport IndirectMemory, IndirectMemory2D


cdef Py_ssize_t row_length(IndirectMemory m):
    """Elements per pointer of a T** (a 2-D memory's row, a frame's block)."""
    cdef Py_ssize_t n = 1
    cdef int d
    for d in range(1, m.ndim_):
        n *= m.dim(d)
    return n
'''

# One block per element type T (name N). lib_*: a C library's API, declared as such libraries
# declare it; the Python-facing functions get the table from the accessor into a variable of
# the exact type and call the library.
INT_BLOCK = r'''
# -- {N} ---------------------------------------------------------------------------------------
cdef list lib_read_{N}(const {T}* const* table, Py_ssize_t rows, Py_ssize_t n,
                       Py_ssize_t first):
    return [[table[i][first + j] for j in range(n)] for i in range(rows)]


cdef void lib_invert_{N}({T}** table, Py_ssize_t rows, Py_ssize_t n,
                         Py_ssize_t first) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(rows):
        for j in range(first, first + n):
            table[i][j] = ~table[i][j]


def const_{N}(IndirectMemory m, Py_ssize_t row_offset=0):
    cdef const {T}* const* t = m.const_{N}_table(row_offset)
    return lib_read_{N}(t, m.dim(0), row_length(m), row_offset // sizeof({T}))


def read_{N}(IndirectMemory m, bint writable, Py_ssize_t row_offset=0):
    cdef {T}** t = m.{N}_table(writable, row_offset)
    return lib_read_{N}(<const {T}* const*>t, m.dim(0), row_length(m),
                        row_offset // sizeof({T}))


def invert_{N}(IndirectMemory m, Py_ssize_t row_offset=0):
    cdef {T}** t = m.{N}_table(True, row_offset)
    cdef Py_ssize_t rows = m.dim(0), n = row_length(m), first = row_offset // sizeof({T})
    with nogil:
        lib_invert_{N}(t, rows, n, first)


def address_const_{N}(IndirectMemory m, Py_ssize_t row_offset=0):
    """The table only (a refused request never reads anything)."""
    return <size_t>m.const_{N}_table(row_offset)


def address_{N}(IndirectMemory m, bint writable, Py_ssize_t row_offset=0):
    return <size_t>m.{N}_table(writable, row_offset)
'''

FLOAT_BLOCK = r'''
# -- {N} ---------------------------------------------------------------------------------------
cdef list lib_read_{N}(const {T}* const* table, Py_ssize_t rows, Py_ssize_t n,
                       Py_ssize_t first):
    return [[table[i][first + j] for j in range(n)] for i in range(rows)]


def const_{N}(IndirectMemory m, Py_ssize_t row_offset=0):
    cdef const {T}* const* t = m.const_{N}_table(row_offset)
    return lib_read_{N}(t, m.dim(0), row_length(m), row_offset // sizeof({T}))


def address_const_{N}(IndirectMemory m, Py_ssize_t row_offset=0):
    return <size_t>m.const_{N}_table(row_offset)
'''

# const tables made in C, wrapped without a cast.
CONSTRUCTORS = r'''
# -- from_const_ptr / from_const_ptr_nd over C arrays -----------------------------------------
cdef int32_t block32[3][5]         # rows of 5: column 0 is skipped by the one-based table
cdef const int32_t* rows32[3]      # -> block32[i][0]
cdef const int32_t* null_rows32[3]
cdef double block3[2][3][4]
cdef const double* mid3[2][3]
cdef const double* const* top3[2]
cdef const double* frames3[2]


def c_fill():
    """Refill the C arrays: block32[i][j] = -(1000 * i + j) - 7, block3 = 100 i + 10 j + k."""
    cdef Py_ssize_t i, j, k
    for i in range(3):
        rows32[i] = &block32[i][0]
        null_rows32[i] = &block32[i][0] if i != 1 else NULL
        for j in range(5):
            block32[i][j] = -(1000 * i + j) - 7
    for i in range(2):
        top3[i] = &mid3[i][0]
        for j in range(3):
            mid3[i][j] = &block3[i][j][0]
            for k in range(4):
                block3[i][j][k] = 100.0 * i + 10.0 * j + k


def c_block32():
    return [[block32[i][j] for j in range(5)] for i in range(3)]


def c_block3():
    return [[[block3[i][j][k] for k in range(4)] for j in range(3)] for i in range(2)]


def c_set32(Py_ssize_t i, Py_ssize_t j, int32_t v):
    block32[i][j] = v


def c_set3(Py_ssize_t i, Py_ssize_t j, Py_ssize_t k, double v):
    block3[i][j][k] = v


def c_table32_address():
    return <size_t>&rows32[0]


def wrap_const32(Py_ssize_t cols, nanny=None, Py_ssize_t row_offset=0, fmt="i"):
    """What a binding writes for a library's `const int32_t* const*` (no cast)."""
    cdef const int32_t* const* table = rows32
    return IndirectMemory2D.from_const_ptr(table, 3, cols, fmt, nanny, row_offset)


def wrap_const32_default_offset(nanny=None):
    cdef const int32_t* const* table = rows32
    return IndirectMemory2D.from_const_ptr(table, 3, 5, "i", nanny)


def wrap_const32_rows(Py_ssize_t rows, Py_ssize_t cols, bint null_row=False, bint null=False):
    cdef const int32_t* const* table = rows32
    if null_row:
        table = null_rows32
    if null:
        table = NULL
    return IndirectMemory2D.from_const_ptr(table, rows, cols, "i", None)


def wrap_const3(nanny=None):
    cdef const double* const* const* table = top3
    cdef Py_ssize_t shape[3]
    shape[0], shape[1], shape[2] = 2, 3, 4
    return IndirectMemory.from_const_ptr_nd(table, 3, shape, "d", 0, NULL, nanny)


def wrap_const3_blocks(Py_ssize_t skip_rows):
    """Frames: a table of 2 pointers to 3 x 4 blocks (indirect: dimension 0 only), the data
    starting skip_rows rows of 4 after each pointer (offsets[0])."""
    cdef const double* const* table = frames3
    cdef Py_ssize_t shape[3]
    cdef Py_ssize_t offsets[3]
    cdef const Py_ssize_t* offs = NULL
    frames3[0], frames3[1] = &block3[0][0][0], &block3[1][0][0]
    shape[0], shape[1], shape[2] = 2, 3 - skip_rows, 4
    offsets[0], offsets[1], offsets[2] = skip_rows * 4 * sizeof(double), 0, 0
    if skip_rows:
        offs = offsets
    return IndirectMemory.from_const_ptr_nd(table, 3, shape, "d", 1, offs, None)


def wrap_const3_frames(nanny=None):
    """The first level of the same structure as a T** over 3 x 4 blocks (rows of a frame)."""
    cdef const double* const* table = mid3[0]
    cdef Py_ssize_t shape[2]
    shape[0], shape[1] = 3, 4
    return IndirectMemory.from_const_ptr_nd(table, 2, shape, "d", 1, NULL, nanny)
'''


def cython_source():
    parts = [HEADER]
    for name, (ctype, *_rest) in INTS.items():
        parts.append(INT_BLOCK.replace("{N}", name).replace("{T}", ctype))
    for name, (ctype, *_rest) in FLOATS.items():
        parts.append(FLOAT_BLOCK.replace("{N}", name).replace("{T}", ctype))
    parts.append(CONSTRUCTORS)
    return "\n".join(parts)


@pytest.fixture(scope="module")
def cy(cython_builder):
    mod = cython_builder("ib_fixed_width_test", cython_source())
    mod.c_fill()
    return mod


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def sample(dtype, shape):
    """Values with the sign bit set and the extremes of the type: NumPy is the oracle."""
    info = np.iinfo(dtype)
    n = int(np.prod(shape))
    span = int(info.max) - int(info.min) + 1
    values = [(int(info.min) + (k * 0x9E3779B97F4A7C15 + 12345)) % span + int(info.min)
              for k in range(n)]
    values[0], values[-1] = int(info.min), int(info.max)
    if n > 2:
        values[1] = -1 if info.min < 0 else int(info.max) - 1
    return np.array(values, dtype=object).astype(dtype).reshape(shape)


def float_sample(dtype, shape):
    return (np.arange(int(np.prod(shape))) * -1.25 + 0.5).astype(dtype).reshape(shape)


def memory(fmt, a, readonly=False, indirect="2d"):
    """Owned memory of format fmt holding a's bytes: a 2-D T** (indirect "2d"), or 3-D with
    tables at the dimensions given."""
    if indirect == "2d":
        m = IndirectMemory2D.create_memory(a.shape[0], a.shape[1], fmt)
    else:
        m = IndirectMemory.create_memory(a.shape, fmt, indirect=indirect)
    m.copy_from(a, cast=True)  # the bytes as they are: fmt may spell a's type otherwise
    if readonly:
        m.make_read_only()
    return m


def one_based(dtype, a, fmt):
    """A T** whose pointers point one element before each row's data (row_offset itemsize), as
    Numerical Recipes allocates: the data is column 1 on of a (rows, cols + 1) array."""
    wide = np.zeros((a.shape[0], a.shape[1] + 1), dtype=dtype)
    wide[:, 1:] = a
    table = np.array([wide.ctypes.data + i * wide.strides[0] for i in range(a.shape[0])],
                     dtype=np.uintp)
    m = IndirectMemory2D.from_address(table.ctypes.data, a.shape[0], a.shape[1], fmt,
                                      memory_nanny=(wide, table), row_offset=wide.itemsize)
    return m, wide


def msg(mem_fmt, asked):
    """The TypeError's message for memory of mem_fmt asked for as `asked` (a regex)."""
    return re.escape(f"element format is {mem_fmt!r}, not {asked!r}")


SHAPE = (3, 5)


# ---------------------------------------------------------------------------------------------
# integer accessors: every spelling of the type passes, on the fast and on the checked path
# ---------------------------------------------------------------------------------------------

ACCEPTED = [(name, fmt) for name in INTS for fmt in accepted_formats(name)]


@pytest.mark.parametrize("name, fmt", ACCEPTED, ids=[f"{n}-{f}" for n, f in ACCEPTED])
def test_int_accessors_read_and_write(cy, name, fmt):
    dtype = INTS[name][1]
    a = sample(dtype, SHAPE)
    m = memory(fmt, a)
    assert getattr(cy, f"const_{name}")(m) == a.tolist()
    assert getattr(cy, f"read_{name}")(m, False) == a.tolist()
    assert getattr(cy, f"read_{name}")(m, True) == a.tolist()
    assert getattr(cy, f"address_{name}")(m, True) == m.address
    assert getattr(cy, f"address_const_{name}")(m) == m.address
    getattr(cy, f"invert_{name}")(m)
    assert m.to_numpy().astype(dtype).tolist() == np.invert(a).tolist()
    assert getattr(cy, f"const_{name}")(m) == np.invert(a).tolist()


@pytest.mark.parametrize("name, fmt", ACCEPTED, ids=[f"{n}-{f}" for n, f in ACCEPTED])
def test_int_accessors_on_read_only_memory(cy, name, fmt):
    a = sample(INTS[name][1], SHAPE)
    m = memory(fmt, a, readonly=True)
    assert getattr(cy, f"const_{name}")(m) == a.tolist()
    assert getattr(cy, f"read_{name}")(m, False) == a.tolist()
    with pytest.raises(BufferError, match="writable table requested from read-only memory"):
        getattr(cy, f"address_{name}")(m, True)
    with pytest.raises(BufferError, match="writable table requested from read-only memory"):
        getattr(cy, f"invert_{name}")(m)
    assert m.to_numpy().astype(INTS[name][1]).tolist() == a.tolist()  # nothing written


REFUSED = [(name, fmt) for name in INTS for fmt in refused_formats(name)]


@pytest.mark.parametrize("name, fmt", REFUSED, ids=[f"{n}-{f}" for n, f in REFUSED])
def test_int_accessors_refuse_other_types(cy, name, fmt):
    m = IndirectMemory2D.create_memory(2, 3, fmt)
    asked = std_format(name)
    with pytest.raises(TypeError, match=msg(fmt, asked)):
        getattr(cy, f"address_const_{name}")(m)
    with pytest.raises(TypeError, match=msg(fmt, asked)):
        getattr(cy, f"address_{name}")(m, False)
    with pytest.raises(TypeError, match=msg(fmt, asked)):
        getattr(cy, f"address_{name}")(m, True)
    m.make_read_only()
    with pytest.raises(TypeError, match=msg(fmt, asked)):
        getattr(cy, f"address_const_{name}")(m)


@pytest.mark.parametrize("name", INTS)
def test_signedness_and_size_named(cy, name):
    """The two mistakes the issue names, with the message a binding author sees."""
    _, dtype, signed, size = INTS[name]
    other_kind = np.dtype(f"{'u' if signed else 'i'}{size}")
    m = IndirectMemory2D.view_from_rows(np.zeros((2, 2), dtype=other_kind))
    with pytest.raises(TypeError, match=msg(other_kind.char, std_format(name))):
        getattr(cy, f"const_{name}")(m)
    other_size = np.dtype(f"{'i' if signed else 'u'}{OTHER_SIZE[size]}")
    m = IndirectMemory2D.view_from_rows(np.zeros((2, 2), dtype=other_size))
    with pytest.raises(TypeError, match=msg(other_size.char, std_format(name))):
        getattr(cy, f"read_{name}")(m, False)


# ---------------------------------------------------------------------------------------------
# const_float_table / const_double_table
# ---------------------------------------------------------------------------------------------

FLOAT_CASES = (
    [("float", f, True) for f in ("f", "@f", "=f", NATIVE_ORDER + "f")]
    + [("float", f, False) for f in ("d", "e", "i", "I", "q", FOREIGN_ORDER + "f", "2f")]
    + [("double", f, True) for f in ("d", "@d", "=d", NATIVE_ORDER + "d")]
    + [("double", f, False) for f in ("f", "q", "Q", "l", FOREIGN_ORDER + "d", "P")])


@pytest.mark.parametrize("name, fmt, ok", FLOAT_CASES,
                         ids=[f"{n}-{f}" for n, f, _ in FLOAT_CASES])
def test_const_float_tables(cy, name, fmt, ok):
    _, dtype, code = FLOATS[name]
    a = float_sample(dtype, SHAPE)
    for readonly in (False, True):
        if ok:
            m = memory(fmt, a, readonly=readonly)
            assert getattr(cy, f"const_{name}")(m) == a.tolist()
            assert getattr(cy, f"address_const_{name}")(m) == m.address
        else:
            m = IndirectMemory2D.create_memory(2, 3, fmt, readonly=readonly)
            with pytest.raises(TypeError, match=msg(fmt, code)):
                getattr(cy, f"address_const_{name}")(m)


# ---------------------------------------------------------------------------------------------
# the other checks: released, row_offset, layout
# ---------------------------------------------------------------------------------------------

ALL_CONST = list(INTS) + list(FLOATS)


def spelled(name, spelling):
    """The element format of accessor `name` as NumPy spells it ('native': the fast path) or
    with standard sizes ('standard': the checked path)."""
    if spelling == "native":
        return np.dtype(INTS[name][1] if name in INTS else FLOATS[name][1]).char
    return std_format(name) if name in INTS else "=" + FLOATS[name][2]


@pytest.mark.parametrize("name", ALL_CONST)
@pytest.mark.parametrize("spelling", ["native", "standard"])
def test_released_memory(cy, name, spelling):
    fmt = spelled(name, spelling)
    m = IndirectMemory2D.create_memory(2, 2, fmt)
    m.release()
    with pytest.raises(ValueError, match="operation on released IndirectMemory2D"):
        getattr(cy, f"address_const_{name}")(m)
    if name in INTS:
        for writable in (False, True):
            with pytest.raises(ValueError, match="operation on released IndirectMemory2D"):
                getattr(cy, f"address_{name}")(m, writable)


@pytest.mark.parametrize("name", ALL_CONST)
@pytest.mark.parametrize("spelling", ["native", "standard"])
def test_row_offset(cy, name, spelling):
    fmt = spelled(name, spelling)
    dtype = INTS[name][1] if name in INTS else FLOATS[name][1]
    size = np.dtype(dtype).itemsize
    a = sample(dtype, SHAPE) if name in INTS else float_sample(dtype, SHAPE)
    zero_based = memory(fmt, a)
    nr, wide = one_based(dtype, a, fmt)
    assert getattr(cy, f"const_{name}")(nr, size) == a.tolist()
    # Asked for another offset than the table's: refused, both ways, naming both.
    with pytest.raises(ValueError, match=f"rows start 0 bytes after each row pointer "
                                         fr"\(row_offset\), not {size} as requested"):
        getattr(cy, f"address_const_{name}")(zero_based, size)
    with pytest.raises(ValueError, match=f"rows start {size} bytes after each row pointer "
                                         fr"\(row_offset\), not 0 as requested"):
        getattr(cy, f"address_const_{name}")(nr)
    with pytest.raises(ValueError, match="row_offset must be >= 0, got -1"):
        getattr(cy, f"address_const_{name}")(zero_based, -1)
    if name in INTS:
        assert getattr(cy, f"read_{name}")(nr, True, size) == a.tolist()
        for writable in (False, True):
            with pytest.raises(ValueError, match=f"not {size} as requested"):
                getattr(cy, f"address_{name}")(zero_based, writable, size)
            with pytest.raises(ValueError, match="not 0 as requested"):
                getattr(cy, f"address_{name}")(nr, writable)
            with pytest.raises(ValueError, match="row_offset must be >= 0, got -1"):
                getattr(cy, f"address_{name}")(zero_based, writable, -1)
        getattr(cy, f"invert_{name}")(nr, size)
        assert wide[:, 1:].tolist() == np.invert(a).tolist()
        assert wide[:, 0].tolist() == [0] * a.shape[0]  # before the data: untouched


@pytest.mark.parametrize("name", ALL_CONST)
@pytest.mark.parametrize("spelling", ["native", "standard"])
def test_layouts(cy, name, spelling):
    """One pointer level only: frames (a table over blocks) pass; a T*** or a table at
    another dimension is a BufferError naming the layout."""
    fmt = spelled(name, spelling)
    dtype = INTS[name][1] if name in INTS else FLOATS[name][1]
    a = sample(dtype, (2, 3, 4)) if name in INTS else float_sample(dtype, (2, 3, 4))
    frames = memory(fmt, a, indirect=(0,))
    assert getattr(cy, f"const_{name}")(frames) == a.reshape(2, 12).tolist()
    t3 = memory(fmt, a, indirect=(0, 1))
    middle = memory(fmt, a, indirect=(1,))
    for m, layout in ((t3, "T\\*\\*\\*"), (middle, r"indirect=\(1,\)")):
        expected = fr"a table of 1 pointer level\(s\) \(T\*\*\) was requested, but the " \
                   fr"memory is {layout}"
        with pytest.raises(BufferError, match=expected):
            getattr(cy, f"address_const_{name}")(m)
        if name in INTS:
            for writable in (False, True):
                with pytest.raises(BufferError, match=expected):
                    getattr(cy, f"address_{name}")(m, writable)
    if name in INTS:
        getattr(cy, f"invert_{name}")(frames)
        assert frames.to_numpy().astype(dtype).tolist() == np.invert(a).tolist()


# ---------------------------------------------------------------------------------------------
# constructors for const tables
# ---------------------------------------------------------------------------------------------

class Nanny:
    pass


def test_from_const_ptr_lent(cy):
    cy.c_fill()
    block = cy.c_block32()
    m = cy.wrap_const32(5)
    assert isinstance(m, IndirectMemory2D)
    assert m.readonly and m.lent and m.shape == (3, 5) and m.format == "i"
    assert m.row_offset == 0
    mv = memoryview(m)
    assert mv.readonly and mv.tolist() == block
    with pytest.raises(TypeError, match="read-only"):
        mv[0, 0] = 1
    with pytest.raises(BufferError, match="read-only"):
        cy.address_int32(m, True)
    assert cy.const_int32(m) == block == cy.read_int32(m, False)
    # Zero-copy: the wrapper reads the C array (lent: through its copy of the row pointers).
    assert m.address != cy.c_table32_address()
    cy.c_set32(2, 4, 99)
    assert mv[2, 4] == 99 and cy.const_int32(m)[2][4] == 99
    # Revoked: the view keeps what it saw; nothing reads the C array afterwards.
    m.release()
    cy.c_set32(2, 4, -99)
    assert mv[2, 4] == 99 and mv.tolist()[0] == block[0]
    mv.release()
    cy.c_fill()


def test_from_const_ptr_with_nanny(cy):
    cy.c_fill()
    nanny = Nanny()
    gone = weakref.ref(nanny)
    m = cy.wrap_const32_default_offset(nanny)
    del nanny
    gc.collect()
    assert gone() is not None  # kept alive with the wrapper
    assert m.readonly and not m.lent
    assert m.address == cy.c_table32_address()  # the C table itself
    assert memoryview(m).tolist() == cy.c_block32()
    assert memoryview(m).readonly
    with pytest.raises(BufferError, match="read-only"):
        cy.invert_int32(m)
    m.release()
    gc.collect()
    assert gone() is None
    assert cy.c_block32()[0][0] == -7


def test_from_const_ptr_row_offset(cy):
    cy.c_fill()
    m = cy.wrap_const32(4, None, 4)
    assert m.readonly and m.lent and m.row_offset == 4
    assert memoryview(m).tolist() == [row[1:] for row in cy.c_block32()]
    assert cy.const_int32(m, 4) == [row[1:] for row in cy.c_block32()]
    with pytest.raises(ValueError, match="not 0 as requested"):
        cy.const_int32(m)
    m.release()


def test_from_const_ptr_format_checked(cy):
    cy.c_fill()
    m = cy.wrap_const32(5, None, 0, "=i")
    assert cy.const_int32(m) == cy.c_block32()
    u = cy.wrap_const32(5, None, 0, "I")
    with pytest.raises(TypeError, match=msg("I", "=i")):
        cy.const_int32(u)
    assert cy.const_uint32(u) == [[v % 2 ** 32 for v in row] for row in cy.c_block32()]
    m.release()
    u.release()


def test_from_const_ptr_bad_input(cy):
    cy.c_fill()
    with pytest.raises(ValueError, match="the pointer table is NULL"):
        cy.wrap_const32_rows(3, 5, null=True)
    with pytest.raises(ValueError, match=r"\brow 1\b"):
        cy.wrap_const32_rows(3, 5, null_row=True)
    with pytest.raises(ValueError, match="rows must be >= 0, got -1"):
        cy.wrap_const32_rows(-1, 5)
    with pytest.raises(ValueError, match="cols must be >= 0, got -2"):
        cy.wrap_const32_rows(3, -2)
    with pytest.raises(ValueError, match="row_offset must be >= 0, got -4"):
        cy.wrap_const32(5, None, -4)
    with pytest.raises(ValueError, match="unknown format 'Z'"):
        cy.wrap_const32(5, None, 0, "Z")
    with pytest.raises(TypeError, match="format must be str or bytes, not int"):
        cy.wrap_const32(5, None, 0, 5)


def test_from_const_ptr_nd(cy):
    cy.c_fill()
    expected = cy.c_block3()
    m = cy.wrap_const3()
    assert type(m) is IndirectMemory
    assert m.readonly and m.lent and m.shape == (2, 3, 4) and m.indirect == (0, 1)
    mv = memoryview(m)
    assert mv.readonly and mv.tolist() == expected
    with pytest.raises(TypeError, match="read-only"):
        mv[0, 0, 0] = 1.0
    with pytest.raises(BufferError, match=r"T\*\*\*"):
        cy.const_double(m)  # one level asked of a T***
    cy.c_set3(1, 2, 3, -5.5)
    assert mv[1, 2, 3] == -5.5
    m.release()
    cy.c_set3(1, 2, 3, 7.0)
    assert mv[1, 2, 3] == -5.5  # a snapshot after the revocation
    mv.release()

    cy.c_fill()
    nanny = Nanny()
    gone = weakref.ref(nanny)
    kept = cy.wrap_const3(nanny)
    del nanny
    gc.collect()
    assert kept.readonly and not kept.lent and gone() is not None
    assert memoryview(kept).tolist() == expected
    kept.release()
    gc.collect()
    assert gone() is None

    frames = cy.wrap_const3_frames()
    assert frames.readonly and frames.lent and frames.shape == (3, 4)
    assert type(frames) is IndirectMemory2D  # a 2-D T** is one
    assert cy.const_double(frames) == expected[0]
    frames.release()

    for skip in (0, 1):  # a table over blocks (indirect (0,)), the data offsets[0] bytes on
        blocks = cy.wrap_const3_blocks(skip)
        assert blocks.readonly and blocks.lent and blocks.indirect == (0,)
        assert blocks.suboffsets == (skip * 4 * 8, -1, -1)
        assert memoryview(blocks).tolist() == [b[skip:] for b in expected]
        assert cy.const_double(blocks, skip * 4 * 8) == [sum(b[skip:], []) for b in expected]
        blocks.release()


# ---------------------------------------------------------------------------------------------
# const-correctness at compile time
# ---------------------------------------------------------------------------------------------

BAD_CONST = r'''
# cython: language_level=3
from libc.stdint cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)
from indirect_buffer.buffer_impl cimport IndirectMemory
'''


def test_const_tables_are_const(tmp_path):
    """Cython keeps the const of the const tables: dropping it at either level is warned about
    ("discards const qualifier", as a C compiler does), writing through it is an error. The
    control, the same tables kept const, compiles cleanly."""
    def compile_(name, body):
        pyx = tmp_path / f"{name}.pyx"
        pyx.write_text(BAD_CONST + body)
        proc = subprocess.run([sys.executable, "-m", "cython", "-3", pyx.name],
                              capture_output=True, text=True, cwd=tmp_path, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    types = [(n, INTS[n][0]) for n in INTS] + [(n, FLOATS[n][0]) for n in FLOATS]
    rc, out = compile_("keep", "".join(f"""
def keep_{n}(IndirectMemory m):
    cdef const {t}* const* t = m.const_{n}_table()
    return t[0][0]
""" for n, t in types))
    assert rc == 0 and "warning" not in out, out
    lines = BAD_CONST.count("\n")
    body, where = "", {}
    for n, t in types:
        where[f"{n} outer"] = lines + 3
        where[f"{n} inner"] = lines + 4
        body += f"""
def drop_{n}(IndirectMemory m):
    cdef {t}** t = m.const_{n}_table()
    cdef const {t}** u = m.const_{n}_table()
"""
        lines += 4
    rc, out = compile_("drop", body)
    for what, line in where.items():
        assert f"drop.pyx:{line}:" in out and "discards const qualifier" in out, (what, out)
    body, where = "", {}
    lines = BAD_CONST.count("\n")
    for n, t in types:
        where[f"{n} element"] = lines + 3
        where[f"{n} row pointer"] = lines + 4
        body += f"""
def write_{n}(IndirectMemory m):
    m.const_{n}_table()[0][0] = 1
    m.const_{n}_table()[0] = NULL
"""
        lines += 4
    rc, out = compile_("write", body)
    assert rc != 0
    for what, line in where.items():
        assert f"write.pyx:{line}:" in out and "Assignment to const dereference" in out, \
            (what, out)


# ---------------------------------------------------------------------------------------------
# C++: ib::table<(const) intN_t>, ib::lent<const T>, ib::wrap
# ---------------------------------------------------------------------------------------------

# See tests/test_cpp_example.py: under an ASan preload without libstdc++ a C++ module aborts
# at its first throw (test_cpp_example.py covers that run in a child).
_PRELOAD = os.environ.get("LD_PRELOAD", "")
CPP_UNSAFE = "libasan" in _PRELOAD and "libstdc++" not in _PRELOAD


@pytest.fixture(scope="module")
def pb(c_extension_builder):
    if CPP_UNSAFE:
        pytest.skip("C++ under an ASan preload without libstdc++: see test_cpp_example.py")
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 is in tests/requirements.txt")
    from test_cpp_example import _cxx
    if _cxx() is None:
        pytest.skip("no C++ compiler found")
    path = REPO / "tests" / "capi_module" / "ib_pybind11_fixed_width.cpp"
    return c_extension_builder("ib_pybind11_fixed_width", {path.name: path.read_text()},
                               include_dirs=[pybind11.get_include()], cplusplus=True,
                               extra_compile_args=["-fvisibility=hidden"])


@pytest.mark.parametrize("name", INTS)
def test_cpp_format_of_each_width(pb, name):
    _, dtype, signed, size = INTS[name]
    fmt = getattr(pb, f"format_{name}")()
    assert getattr(pb, f"size_{name}")() == size == struct.calcsize(fmt)
    assert getattr(pb, f"signed_{name}")() is signed
    assert fmt in accepted_formats(name)


@pytest.mark.parametrize("name", INTS)
def test_cpp_tables_of_each_width(pb, name):
    _, dtype, signed, size = INTS[name]
    a = sample(dtype, SHAPE)
    assert getattr(pb, f"read_const_{name}")(a) == (a.tolist(), True)
    assert getattr(pb, f"read_{name}")(a) == a.tolist()
    getattr(pb, f"invert_{name}")(a)  # in place: the writes reach the array
    assert a.tolist() == np.invert(sample(dtype, SHAPE)).tolist()
    # Another spelling of the same type: in place, both ways.
    for fmt in (std_format(name), NATIVE_ORDER + std_format(name)[1:]):
        m = memory(fmt, a)
        assert getattr(pb, f"read_const_{name}")(m) == (a.tolist(), False)
        getattr(pb, f"invert_{name}")(m)
        assert m.to_numpy().astype(dtype).tolist() == np.invert(a).tolist()
        assert m.export_count == 0
    # Non-contiguous rows: copied for const (conversions allowed), refused for writing.
    f = np.asfortranarray(a)
    assert getattr(pb, f"read_const_{name}")(f) == (a.tolist(), True)
    with pytest.raises(BufferError, match="not C-contiguous"):
        getattr(pb, f"invert_{name}")(f)
    ro = a.copy()
    ro.flags.writeable = False
    assert getattr(pb, f"read_const_{name}")(ro) == (a.tolist(), True)
    with pytest.raises(BufferError, match="read-only"):
        getattr(pb, f"invert_{name}")(ro)


@pytest.mark.parametrize("name", INTS)
def test_cpp_refuses_other_signedness_and_size(pb, name):
    _, dtype, signed, size = INTS[name]
    asked = getattr(pb, f"format_{name}")()
    others = [np.dtype(f"{'u' if signed else 'i'}{size}"),
              np.dtype(f"{'i' if signed else 'u'}{OTHER_SIZE[size]}"), np.dtype(np.float64)]
    for other in others:
        a = np.zeros((2, 3), dtype=other)
        for fn in (f"read_const_{name}", f"read_{name}", f"invert_{name}"):
            with pytest.raises(TypeError, match=msg(other.char, asked)):
                getattr(pb, fn)(a)
    if size > 1:  # the same size and kind in the other byte order
        foreign = FOREIGN_ORDER + std_format(name)[1:]
        m = IndirectMemory2D.create_memory(2, 3, foreign)
        with pytest.raises(TypeError, match=msg(foreign, asked)):
            getattr(pb, f"read_const_{name}")(m)


@pytest.mark.parametrize("name", INTS)
def test_cpp_lent_const_table(pb, name):
    dtype = INTS[name][1]
    seen = []

    def callback(mem):
        assert mem.lent and mem.readonly and not mem.released
        assert mem.shape == (3, 4) and struct.calcsize(mem.format) == np.dtype(dtype).itemsize
        mv = memoryview(mem)
        assert mv.readonly
        seen.append((mem, mv, mem.to_numpy().tolist()))

    expected = getattr(pb, f"lend_{name}")(callback, 3, 4)
    (mem, mv, values), = seen
    assert values == expected
    assert mem.released
    assert mv.tolist() == expected  # the snapshot, not the scribbled-over C data
    assert np.iinfo(dtype).min in expected[0] and np.iinfo(dtype).max in expected[0]


@pytest.mark.parametrize("name", INTS)
def test_cpp_wrap(pb, name):
    dtype = INTS[name][1]
    frees = pb.frees()
    m = getattr(pb, f"wrap_{name}")(2, 3)
    assert not m.readonly and not m.lent and m.shape == (2, 3)
    a = m.to_numpy().astype(dtype)
    assert a[0, 0] == np.iinfo(dtype).min and a[0, 1] == np.iinfo(dtype).max
    getattr(pb, f"invert_{name}")(m)
    assert m.to_numpy().astype(dtype).tolist() == np.invert(a).tolist()
    assert getattr(pb, f"read_const_{name}")(m) == (np.invert(a).tolist(), False)
    del m
    gc.collect()
    assert pb.frees() == frees + 1


def test_cpp_plain_char(pb):
    assert pb.format_char() == "c" and pb.size_char() == 1
    s = np.array([[b"a", b"b"], [b"\xff", b"\x00"]], dtype="S1")
    assert pb.read_const_char(s) == ([[97, 98], [255, 0]], True)
    pb.invert_char(s)
    assert s.view(np.uint8).tolist() == [[0x9E, 0x9D], [0x00, 0xFF]]
    m = IndirectMemory2D.create_memory(1, 2, "c")
    assert pb.read_const_char(m) == ([[0, 0]], False)
    for other in (np.uint8, np.int8):
        with pytest.raises(TypeError, match=msg(np.dtype(other).char, "c")):
            pb.read_const_char(np.zeros((2, 2), dtype=other))


# ---------------------------------------------------------------------------------------------
# the README's example
# ---------------------------------------------------------------------------------------------

# The C library the README's Cython example declares.
MYLIB_H = r'''
#include <stdint.h>

static int64_t mylib_sum(const int32_t *const *channels, Py_ssize_t n, Py_ssize_t samples)
{
    int64_t s = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t j = 0; j < samples; j++)
            s += channels[i][j];
    return s;
}

static void mylib_invert(uint8_t **rows, Py_ssize_t height, Py_ssize_t width)
{
    for (Py_ssize_t i = 0; i < height; i++)
        for (Py_ssize_t j = 0; j < width; j++)
            rows[i][j] = (uint8_t)~rows[i][j];
}

static const float bank_data[2][3] = {{0.5f, 0.25f, 0.125f}, {-1.0f, 2.0f, -4.0f}};
static const float *const bank_rows[2] = {bank_data[0], bank_data[1]};

static const float *const *mylib_filter_bank(Py_ssize_t *n, Py_ssize_t *taps)
{
    *n = 2;
    *taps = 3;
    return bank_rows;
}
'''


def test_readme_cython_example(tmp_path):
    text = (REPO / "README.md").read_text()
    section = text.split("### Fixed-width and const tables", 1)[1].split("\n## ", 1)[0]
    source = section.split("```cython\n", 1)[1].split("```", 1)[0]
    (tmp_path / "build_ib_readme_fixed_width").mkdir()
    (tmp_path / "build_ib_readme_fixed_width" / "mylib.h").write_text(MYLIB_H)
    mod = build_cython_module(tmp_path, "ib_readme_fixed_width", source)
    a = sample(np.int32, (3, 7))
    assert mod.total(IndirectMemory2D.view_from_rows(a)) == int(a.astype(np.int64).sum())
    assert mod.total(IndirectMemory2D.view_from_rows(a, readonly=True)) == \
        int(a.astype(np.int64).sum())
    with pytest.raises(TypeError, match=msg("I", "=i")):
        mod.total(IndirectMemory2D.view_from_rows(a.view(np.uint32)))
    img = sample(np.uint8, (4, 6))
    before = img.copy()
    mod.invert(IndirectMemory2D.view_from_rows(img))
    assert img.tolist() == np.invert(before).tolist()
    with pytest.raises(BufferError, match="read-only"):
        mod.invert(IndirectMemory2D.view_from_rows(img, readonly=True))
    bank = mod.filter_bank()
    assert bank.readonly and bank.lent and bank.format == "f"
    assert memoryview(bank).tolist() == [[0.5, 0.25, 0.125], [-1.0, 2.0, -4.0]]
    bank.release()
