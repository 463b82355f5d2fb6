"""from_address takes the pointers users hold: ints and int-likes, ctypes pointers and
c_void_p, cffi pointers and arrays; refuses the rest with the documented errors."""
import ctypes
import subprocess
import sys

import numpy as np
import pytest

from indirect_buffer import IndirectMemory2D

M = IndirectMemory2D


def test_int_likes():
    src = M.create_memory(2, 3, "d")
    src.copy_from(np.arange(6.0).reshape(2, 3))
    for address in (src.address, np.uint64(src.address), np.intp(src.address)):
        m = M.from_address(address, 2, 3, "d", memory_nanny=src)
        np.testing.assert_array_equal(m.to_numpy(), np.arange(6.0).reshape(2, 3))

    class Index:
        def __index__(self):
            return src.address

    assert M.from_address(Index(), 2, 3, "d").to_numpy()[1, 2] == 5.0


def test_ctypes_pointers_keep_their_object_alive():
    rows = [(ctypes.c_double * 3)(*[10.0 * i + j for j in range(3)]) for i in range(2)]
    table = (ctypes.POINTER(ctypes.c_double) * 2)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
    expected = [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]
    via_void = M.from_address(ctypes.c_void_p(ctypes.addressof(table)), 2, 3, "d",
                              memory_nanny=(table, rows))
    assert via_void.to_numpy().tolist() == expected
    pp = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
    via_pointer = M.from_address(pp, 2, 3, "d", memory_nanny=(table, rows))
    assert via_pointer.to_numpy().tolist() == expected
    with pytest.raises(ValueError, match="NULL"):
        M.from_address(ctypes.c_void_p(), 1, 1, "d")
    with pytest.raises(ValueError, match="NULL"):
        M.from_address(ctypes.POINTER(ctypes.POINTER(ctypes.c_double))(), 1, 1, "d")


def test_cffi_pointer_and_array():
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    rows = [ffi.new("double[3]", [1.0, 2.0, 3.0]), ffi.new("double[3]", [4.0, 5.0, 6.0])]
    arr = ffi.new("double*[2]", rows)
    from_array = M.from_address(arr, 2, 3, "d", memory_nanny=rows)
    assert from_array.to_numpy().tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    ptr = ffi.cast("double**", arr)
    from_ptr = M.from_address(ptr, 2, 3, "d", memory_nanny=(arr, rows))
    memoryview(from_ptr)[1, 1] = -5.0
    assert rows[1][1] == -5.0
    with pytest.raises(TypeError, match="cffi pointer or array, not a cffi primitive"):
        M.from_address(ffi.cast("int", 5), 1, 1, "d")
    with pytest.raises(ValueError, match="NULL"):
        M.from_address(ffi.NULL, 1, 1, "d")
    del rows, arr
    import gc
    gc.collect()
    # The array cdata owns the table: from_address keeps it alive (rows via the nanny tuple).
    assert from_ptr.to_numpy().tolist() == [[1.0, 2.0, 3.0], [4.0, -5.0, 6.0]]


def test_cffi_is_not_imported_unless_given():
    code = ("import sys, numpy\nfrom indirect_buffer import IndirectMemory2D as M\n"
            "m = M.create_memory(1, 1, 'd')\nM.from_address(m.address, 1, 1, 'd', "
            "memory_nanny=m)\nM.from_address(numpy.uint64(m.address), 1, 1, 'd', "
            "memory_nanny=m)\nprint('_cffi_backend' in sys.modules, 'cffi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("bad, exc, message", [
    (True, TypeError, "not bool"),
    (4096.0, TypeError, "not float"),
    (np.float64(4096.0), TypeError, "not float64"),
    ("0x1000", TypeError, "not str"),
    (ctypes.c_int(4096), TypeError, "not c_int"),
    (-1, ValueError, "address -1 is not a valid pointer value"),
    (2 ** 64, ValueError, "is not a valid pointer value"),
    (0, ValueError, "the pointer table is NULL"),
])
def test_refused(bad, exc, message):
    with pytest.raises(exc, match=message):
        M.from_address(bad, 1, 1, "d")
