"""N-D sources (images) as row tables, and foreign buffers indirect in any dimension, checked
against NumPy and memoryview."""
import numpy as np
import pytest

from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

M = IndirectMemory2D


def image(h=4, w=5, c=3):
    return np.arange(h * w * c, dtype=np.uint8).reshape(h, w, c)


def test_image_rows_are_zero_copy():
    img = image()
    rows = M.view_from_rows(img)
    assert rows.shape == (4, 15) and rows.format == "B"
    np.testing.assert_array_equal(rows.to_numpy().reshape(img.shape), img)
    view = memoryview(rows)
    view[2, 3 * 3 + 1] = 255           # pixel (2, 3), channel 1
    assert img[2, 3, 1] == 255
    view.release()
    # The same rows as BufferCollection2D's unravel rule gives.
    coll = BufferCollection2D(list(img))
    np.testing.assert_array_equal(coll.to_numpy(), rows.to_numpy())


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 1, 7), (0, 4, 3), (3, 0, 3), (1, 1, 1)])
def test_nd_shapes(shape):
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    rows = M.view_from_rows(a)
    cols = int(np.prod(shape[1:]))
    assert rows.shape == (shape[0], cols)
    np.testing.assert_array_equal(rows.to_numpy(), a.reshape(shape[0], cols))


def test_row_of_a_sliced_batch_is_still_contiguous():
    batch = np.arange(6 * 4 * 3, dtype=np.int32).reshape(6, 4, 3)[::2]   # every other image
    rows = M.view_from_rows(batch)
    np.testing.assert_array_equal(rows.to_numpy(), batch.reshape(3, 12))


@pytest.mark.parametrize("make, dim, stride, needs", [
    (lambda: image()[:, :, ::2], 2, 2, 1),                   # pixel-strided channels
    (lambda: np.asfortranarray(image()), 2, 20, 1),          # Fortran order
    (lambda: image()[:, ::2, :], 1, 6, 3),                   # every other column
])
def test_non_contiguous_rows_name_the_dimension(make, dim, stride, needs):
    a = make()
    with pytest.raises(BufferError, match=f"dimension {dim} has stride {stride}, a "
                                          f"C-contiguous row needs {needs}"):
        M.view_from_rows(a)
    # as_indirect copies instead, with the same row rule.
    copy = as_indirect(a)
    np.testing.assert_array_equal(copy.to_numpy(), a.reshape(a.shape[0], -1))


def test_view_from_columns_stays_2d():
    with pytest.raises(BufferError, match="expected a 1-D or 2-D buffer, got 3-D"):
        M.view_from_columns(image())


def test_as_indirect_image_is_the_zero_copy_view():
    img = image()
    mem = as_indirect(img, readonly=False)
    memoryview(mem)[0, 0] = 7
    assert img[0, 0, 0] == 7


EXPORTER = r'''
# cython: language_level=3
from cpython.buffer cimport PyBUF_INDIRECT, PyBUF_FORMAT
from libc.stdlib cimport malloc, free

cdef char* FMT = "d"

cdef class ElementPointers:
    """A rows x cols buffer of doubles, each element behind a pointer of its own:
    suboffsets (-1, 0) (a direct array of element pointers) or, with indirect_rows,
    (0, 0) (a table of rows, each an array of element pointers)."""
    cdef double* data
    cdef double** elems
    cdef double*** rowtab
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t strides[2]
    cdef Py_ssize_t suboffsets[2]
    cdef bint indirect_rows
    cdef public bint null_element

    def __cinit__(self, Py_ssize_t rows, Py_ssize_t cols, bint indirect_rows):
        cdef Py_ssize_t i, n = rows * cols
        self.data = <double*>malloc((n + 1) * sizeof(double))
        self.elems = <double**>malloc((n + 1) * sizeof(double*))
        self.rowtab = <double***>malloc((rows + 1) * sizeof(double**))
        for i in range(n):
            # Transposed on purpose: element k lives at data[n - 1 - k].
            self.data[n - 1 - i] = 100.0 + i
            self.elems[i] = &self.data[n - 1 - i]
        for i in range(rows):
            self.rowtab[i] = &self.elems[i * cols]
        self.shape[0], self.shape[1] = rows, cols
        self.indirect_rows = indirect_rows
        self.strides[0] = sizeof(void*) if indirect_rows else cols * sizeof(void*)
        self.strides[1] = sizeof(void*)
        self.suboffsets[0] = 0 if indirect_rows else -1
        self.suboffsets[1] = 0

    def set_null(self, Py_ssize_t i, Py_ssize_t j):
        self.elems[i * self.shape[1] + j] = NULL

    def __dealloc__(self):
        free(self.data)
        free(self.elems)
        free(self.rowtab)

    def __getbuffer__(self, Py_buffer* view, int flags):
        if (flags & PyBUF_INDIRECT) != PyBUF_INDIRECT:
            raise BufferError("needs PyBUF_INDIRECT")
        view.buf = <void*>self.rowtab if self.indirect_rows else <void*>self.elems
        view.obj = self
        view.len = self.shape[0] * self.shape[1] * sizeof(double)
        view.readonly = 0
        view.itemsize = sizeof(double)
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = FMT
        view.ndim = 2
        view.shape = self.shape
        view.strides = self.strides
        view.suboffsets = self.suboffsets
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view):
        pass
'''


@pytest.fixture(scope="module")
def exporter(cython_builder):
    return cython_builder("ib_element_pointers", EXPORTER).ElementPointers


@pytest.mark.parametrize("indirect_rows", [False, True])
def test_copy_follows_a_suboffset_in_dimension_1(exporter, indirect_rows):
    src = exporter(3, 4, indirect_rows)
    expected = memoryview(src).tolist()          # the oracle follows every suboffset
    assert expected[1][2] == 106.0
    mem = M.create_memory(3, 4, "d")
    mem.copy_from(src)
    assert mem.to_numpy().tolist() == expected
    assert as_indirect(src).to_numpy().tolist() == expected
    # And into it: values land behind each element's own pointer.
    mem.copy_from(np.arange(12.0).reshape(3, 4))
    mem.copy_to(src)
    assert memoryview(src).tolist() == np.arange(12.0).reshape(3, 4).tolist()
    # A copy within the same object overlaps itself: exact, as through a temporary.
    src.set_null(2, 1)
    with pytest.raises(ValueError, match=r"element \(2, 1\) of the source is behind a NULL"):
        mem.copy_from(src)
    with pytest.raises(ValueError, match=r"element \(2, 1\) of the destination"):
        mem.copy_to(src)


def test_row_views_refuse_inner_indirection(exporter):
    with pytest.raises(BufferError, match="themselves indirect"):
        M.view_from_rows(exporter(2, 2, False), readonly=True)
