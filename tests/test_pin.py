"""cdef rows()/cols() and pin()/unpin(): memory pinned for a C call cannot be released."""
import pytest

SOURCE = """
from indirect_buffer.buffer_impl cimport IndirectMemory2D

def shape_of(IndirectMemory2D mem):
    return mem.rows(), mem.cols()

def pin(IndirectMemory2D mem):
    mem.pin()

def unpin(IndirectMemory2D mem):
    mem.unpin()

def scale_without_gil(IndirectMemory2D mem, double factor):
    cdef double** t = mem.double_table(True)
    cdef Py_ssize_t i, j, rows = mem.rows(), cols = mem.cols()
    mem.pin()
    try:
        with nogil:
            for i in range(rows):
                for j in range(cols):
                    t[i][j] *= factor
    finally:
        mem.unpin()
"""


@pytest.fixture(scope="module")
def mod(cython_builder):
    return cython_builder("ib_pin_helpers", SOURCE)


def test_rows_cols(mod):
    from indirect_buffer import IndirectMemory2D
    mem = IndirectMemory2D.create_memory(3, 5, "d")
    assert mod.shape_of(mem) == (3, 5) == mem.shape
    mem.reinterpret_data("f")
    assert mod.shape_of(mem) == (3, 10)


def test_pin_blocks_release_and_reshaping(mod):
    from indirect_buffer import IndirectMemory2D
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    mod.pin(mem)
    assert mem.export_count == 1
    with pytest.raises(BufferError, match="release"):
        mem.release()
    with pytest.raises(BufferError, match="reinterpret_data"):
        mem.reinterpret_data("f")
    mod.unpin(mem)
    assert mem.export_count == 0
    mem.release()
    with pytest.raises(ValueError, match="released"):
        mod.pin(mem)
    assert mem.export_count == 0


def test_scale_without_gil_against_numpy(mod):
    np = pytest.importorskip("numpy")
    from indirect_buffer import IndirectMemory2D
    a = np.arange(12.0).reshape(3, 4)
    mem = IndirectMemory2D.create_memory(3, 4, "d")
    mem.copy_from(a)
    mod.scale_without_gil(mem, 2.5)
    np.testing.assert_array_equal(mem.to_numpy(), a * 2.5)
    assert mem.export_count == 0
