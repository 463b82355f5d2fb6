"""The cimport API as bindings use it: 0.1.0 names compile unchanged, typed tables check the
row offset, rows()/cols() refuse released memory and run without the GIL."""
import numpy as np
import pytest

from indirect_buffer import IndirectMemory2D

SOURCE = r'''
# cython: language_level=3
from libc.stdlib cimport malloc, free
from indirect_buffer.buffer_impl cimport IndirectMemory2D


# -- written against 0.1.0: these names must compile and behave as they did ------------------
def v010_int_sum(IndirectMemory2D mem):
    cdef int** t = mem.as_int_ptr_ptr()
    cdef Py_ssize_t i, j
    cdef long total = 0
    for i in range(mem.rows()):
        for j in range(mem.cols()):
            total += t[i][j]
    return total


def v010_rows(a, readonly=False):
    return IndirectMemory2D.cy_view_from_rows(a, readonly)


def v010_rows_default(a):
    return IndirectMemory2D.cy_view_from_rows(a)


def v010_columns(a, readonly=False):
    return IndirectMemory2D.cy_view_from_columns(a, readonly)


# -- typed tables with the row offset the C API expects ---------------------------------------
def double_sum(IndirectMemory2D mem):
    """A 0-based C API: the accessor refuses any other row offset by itself."""
    cdef double** t = mem.double_table(False)
    cdef Py_ssize_t i, j
    cdef double total = 0
    for i in range(mem.rows()):
        for j in range(mem.cols()):
            total += t[i][j]
    return total


def double_sum_one_based(IndirectMemory2D mem):
    """A 1-based (Numerical Recipes) C API: rows start itemsize bytes after each pointer."""
    cdef double** t = mem.double_table(False, sizeof(double))
    cdef Py_ssize_t i, j
    cdef double total = 0
    for i in range(mem.rows()):
        for j in range(1, mem.cols() + 1):
            total += t[i][j]
    return total


def checked(IndirectMemory2D mem, fmt, bint writable, Py_ssize_t row_offset):
    return <size_t>mem.checked_table(fmt, writable, row_offset)


def one_based(Py_ssize_t rows, Py_ssize_t cols):
    """Rows whose pointers point one element before the data, as NR's dmatrix makes them."""
    cdef double** t = <double**>malloc(rows * sizeof(double*))
    cdef double* block = <double*>malloc(rows * cols * sizeof(double))
    cdef Py_ssize_t i, j
    for i in range(rows):
        t[i] = block + i * cols - 1
        for j in range(cols):
            block[i * cols + j] = 10 * i + j
    holder = Block(<size_t>t, <size_t>block)
    return IndirectMemory2D.from_ptr_with_offset(<void*>t, rows, cols, "d", 0, holder,
                                                 sizeof(double))


cdef class Block:
    cdef void* t
    cdef void* block
    def __cinit__(self, size_t t, size_t block):
        self.t = <void*>t
        self.block = <void*>block
    def __dealloc__(self):
        free(self.t)
        free(self.block)


# -- rows()/cols() around a call without the GIL ----------------------------------------------
cdef Py_ssize_t size_nogil(IndirectMemory2D mem) except -1 nogil:
    return mem.rows() * mem.cols()


def size_without_gil(IndirectMemory2D mem):
    cdef Py_ssize_t n
    with nogil:
        n = size_nogil(mem)
    return n


def rows_of(IndirectMemory2D mem):
    return mem.rows()


def cols_of(IndirectMemory2D mem):
    return mem.cols()
'''


@pytest.fixture(scope="module")
def cy(cython_builder):
    return cython_builder("ib_cimport_compat", SOURCE)


def test_010_as_int_ptr_ptr(cy):
    a = np.arange(12, dtype=np.intc).reshape(3, 4)
    assert cy.v010_int_sum(IndirectMemory2D.view_from_rows(a)) == int(a.sum())


def test_010_cy_view_from_rows_and_columns(cy):
    a = np.arange(12.0).reshape(3, 4)
    rows = cy.v010_rows(a)
    assert rows.shape == (3, 4) and not rows.readonly
    memoryview(rows)[2, 1] = -1.0  # writes reach a, as with view_from_rows
    assert a[2, 1] == -1.0
    np.testing.assert_array_equal(cy.v010_rows_default(a).to_numpy(), a)
    assert cy.v010_rows(a, True).readonly
    f = np.asfortranarray(a)
    np.testing.assert_array_equal(cy.v010_columns(f).to_numpy(), a.T)
    ro = np.arange(4.0)
    ro.flags.writeable = False
    with pytest.raises(BufferError, match="read-only"):
        cy.v010_rows(ro)


def test_typed_table_refuses_a_row_offset_not_asked_for(cy):
    one = cy.one_based(3, 4)
    assert one.row_offset == 8
    expected = sum(10 * i + j for i in range(3) for j in range(4))
    assert cy.double_sum_one_based(one) == expected
    np.testing.assert_array_equal(one.to_numpy(), [[10 * i + j for j in range(4)]
                                                   for i in range(3)])
    with pytest.raises(ValueError, match="row_offset.*not 0 as requested"):
        cy.double_sum(one)
    zero = IndirectMemory2D.view_from_rows(np.ones((2, 3)))
    assert cy.double_sum(zero) == 6.0
    with pytest.raises(ValueError, match="start 0 bytes .* not 8 as requested"):
        cy.double_sum_one_based(zero)


def test_checked_table_arguments(cy):
    mem = IndirectMemory2D.create_memory(2, 2, "q")
    assert cy.checked(mem, "q", True, 0) == mem.address
    assert cy.checked(mem, b"q", False, 0) == mem.address
    assert cy.checked(mem, None, False, 0) == mem.address  # any format
    with pytest.raises(TypeError, match="not 'd'"):
        cy.checked(mem, "d", False, 0)
    for bad in (("q",), 8, bytearray(b"q"), 1.5):
        with pytest.raises(TypeError, match="format must be str or bytes"):
            cy.checked(mem, bad, False, 0)
    with pytest.raises(ValueError, match="not 8 as requested"):
        cy.checked(mem, "q", False, 8)
    ro = IndirectMemory2D.create_memory(2, 2, "q", readonly=True)
    with pytest.raises(BufferError, match="read-only"):
        cy.checked(ro, "q", True, 0)


def test_rows_cols_raise_once_released_and_run_without_gil(cy):
    mem = IndirectMemory2D.create_memory(3, 5, "d")
    assert (cy.rows_of(mem), cy.cols_of(mem)) == (3, 5)
    assert cy.size_without_gil(mem) == 15
    mem.release()
    for f in (cy.rows_of, cy.cols_of, cy.size_without_gil):
        with pytest.raises(ValueError, match="operation on released IndirectMemory2D"):
            f(mem)
    with pytest.raises(ValueError, match="uninitialised"):
        cy.rows_of(IndirectMemory2D.__new__(IndirectMemory2D))


def test_unchanged_state_is_allowed_while_exported():
    mem = IndirectMemory2D.create_memory(2, 2, "d", readonly=True)
    view = memoryview(mem)
    mem.reinterpret_data("d")   # nothing changes
    mem.make_read_only()        # already read-only
    with pytest.raises(BufferError, match="exported"):
        mem.reinterpret_data("q")
    assert view.format == "d" and mem.export_count == 1
    view.release()
    w = IndirectMemory2D.create_memory(2, 2, "d")
    with memoryview(w):
        with pytest.raises(BufferError, match="exported"):
            w.make_read_only()
