"""C++: examples/cpp (clib bound with pybind11 and indirect_buffer_pybind11.h), end to end, and
the caster itself (tests/capi_module/ib_pybind11_test.cpp).

A module-scoped fixture copies examples/cpp and clib/ into a temporary directory and
pip-installs the project against the installed indirect_buffer and pybind11. Results are
checked against NumPy; clib's allocation counter proves that every C allocation is freed
exactly once, also when C++ exceptions cross the binding and when allocation fails; pins are
checked to be given back after every call (export_count 0). Skipped without a C++ compiler.
"""
import gc
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, pip_install_once

from indirect_buffer import BufferCollection2D, IndirectMemory2D


def _cxx():
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return shutil.which(shlex.split(cxx)[0])


pytestmark = pytest.mark.skipif(_cxx() is None, reason="no C++ compiler found")

# ASan's __cxa_throw interceptor finds the real __cxa_throw only if libstdc++ was loaded
# together with libasan. test_install.sh asan preloads libasan alone, so a C++ module loaded
# later aborts at its first throw (an ASan CHECK, not a bug here): such a run repeats this file
# in a child that preloads libstdc++ too (test_in_a_child_with_libstdcxx_preloaded).
_PRELOAD = os.environ.get("LD_PRELOAD", "")
IN_CHILD_ONLY = "libasan" in _PRELOAD and "libstdc++" not in _PRELOAD


@pytest.fixture(autouse=True)
def _cpp_runtime(request):
    if IN_CHILD_ONLY and request.node.name != "test_in_a_child_with_libstdcxx_preloaded":
        pytest.skip("C++ exceptions need libstdc++ preloaded with libasan: run in a child")


@pytest.mark.skipif(not IN_CHILD_ONLY, reason="only under an ASan preload without libstdc++")
def test_in_a_child_with_libstdcxx_preloaded(tmp_path):
    lib = subprocess.run([_cxx(), "-print-file-name=libstdc++.so"], capture_output=True,
                         text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env["LD_PRELOAD"] = f"{_PRELOAD} {lib}"  # a run of its own, not one of the workers
    proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p",
                           "no:cacheprovider"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)
    output = f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, output
    assert re.search(r"\b\d+ passed\b", proc.stdout) and "failed" not in proc.stdout, output


@pytest.fixture(scope="module")
def cpp(pytestconfig, tmp_path_factory):
    pytest.importorskip("pybind11", reason="pybind11 is in tests/requirements.txt")
    # Once per run, whichever worker comes first (see conftest).
    pip_install_once(pytestconfig, tmp_path_factory, "ib_cpp", "examples/cpp",
                     ("examples/cpp", "clib"))
    mod = importlib.import_module("ib_cpp")
    assert REPO not in Path(mod.__file__).resolve().parents
    yield mod
    mod.fail_allocations_after(-1)


@pytest.fixture
def counted(cpp):
    """Every clib allocation made during the test is freed by its end."""
    gc.collect()
    before = cpp.live_allocations()
    yield before
    cpp.fail_allocations_after(-1)
    gc.collect()
    assert cpp.live_allocations() == before


def owned(a):
    mem = IndirectMemory2D.create_memory(a.shape[0], a.shape[1], "d")
    mem.copy_from(a)
    return mem


SHAPES = [(1, 1), (3, 5), (40, 7)]


# -- ib::table<const double>: read anything 2-D -------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_matrix_sum_matches_numpy(cpp, shape):
    a = np.random.default_rng(1).standard_normal(shape)
    expected = pytest.approx(float(a.sum()))
    inputs = [a, np.asfortranarray(a), owned(a), IndirectMemory2D.view_from_rows(a),
              BufferCollection2D(list(a)), a.tolist(), a[:, ::-1]]
    for obj in inputs:
        assert cpp.matrix_sum(obj) == expected, type(obj)
    wide = np.zeros((shape[0], 2 * shape[1]))
    wide[:, ::2] = a
    assert cpp.matrix_sum(wide[:, ::2]) == expected  # non-contiguous rows: copied
    assert cpp.matrix_sum(a.ravel()) == expected      # 1-D: one row


def test_matrix_sum_refuses_other_element_types(cpp):
    with pytest.raises(TypeError, match="element format is 'l', not 'd'"):
        cpp.matrix_sum(np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="element format is 'f', not 'd'"):
        cpp.matrix_sum(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="cannot get a table from NoneType"):
        cpp.matrix_sum(None)


# -- ib::table<double>: written in place ---------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_matrix_scale_in_place(cpp, shape):
    a = np.random.default_rng(2).standard_normal(shape)
    expected = a * 2.5
    cpp.matrix_scale(a, 2.5)
    np.testing.assert_array_equal(a, expected)
    mem = owned(a)
    cpp.matrix_scale(mem, factor=-1.0)
    np.testing.assert_array_equal(mem.to_numpy(), -expected)
    assert mem.export_count == 0
    big = np.zeros((2 * shape[0], shape[1]))
    big[::2] = 1.0
    cpp.matrix_scale(big[::2], 3.0)  # every other row: contiguous each, written in place
    assert big.sum() == 3.0 * shape[0] * shape[1]


def test_matrix_scale_refuses_read_only(cpp):
    a = np.ones((2, 3))
    a.setflags(write=False)
    with pytest.raises(BufferError, match="writable table requested, but the ndarray is read-only"):
        cpp.matrix_scale(a, 2.0)
    mem = IndirectMemory2D.create_memory(2, 3, "d", readonly=True)
    with pytest.raises(BufferError, match="writable table requested from read-only memory"):
        cpp.matrix_scale(mem, 2.0)
    assert mem.export_count == 0
    with pytest.raises(BufferError, match="read-only"):
        cpp.matrix_scale(b"\0" * 48, 2.0)


def test_matrix_scale_refuses_non_contiguous_and_other_types(cpp):
    a = np.asfortranarray(np.ones((3, 4)))
    with pytest.raises(BufferError, match="not C-contiguous"):
        cpp.matrix_scale(a, 2.0)  # a copy would lose the writes
    assert (a == 1.0).all()
    with pytest.raises(TypeError, match="element format is 'i', not 'd'"):
        cpp.matrix_scale(np.ones((2, 2), dtype=np.int32), 2.0)
    with pytest.raises(TypeError, match="cannot get a writable table from list"):
        cpp.matrix_scale([[1.0]], 2.0)


def test_image_invert(cpp):
    img = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    expected = 255 - img
    cpp.image_invert(img)
    np.testing.assert_array_equal(img, expected)
    data = bytearray(b"\x00\x10\xff")
    cpp.image_invert(data)
    assert data == bytearray(b"\xff\xef\x00")
    data.append(0)  # the row view's hold on the bytearray ended with the call
    with pytest.raises(TypeError, match="element format is 'd', not 'B'"):
        cpp.image_invert(np.zeros((2, 2)))


# -- pins end with the call, also when a C++ exception crosses the binding --------------------------------

def test_pins_are_given_back(cpp):
    mem = owned(np.ones((3, 3)))
    cpp.matrix_sum(mem)
    cpp.matrix_scale(mem, 2.0)
    cpp.matrix_normalize(mem)
    assert mem.export_count == 0
    assert mem.to_numpy().sum() == pytest.approx(1.0)
    mem.release()


def test_exception_after_acquiring_releases_the_pin(cpp):
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    with pytest.raises(ValueError, match="cannot normalize a matrix whose sum is 0"):
        cpp.matrix_normalize(mem)
    assert mem.export_count == 0
    mem.release()  # not refused: nothing is pinned any more
    a = np.zeros((2, 2))
    ref = weakref.ref(a)
    with pytest.raises(ValueError):
        cpp.matrix_normalize(a)
    del a
    gc.collect()
    assert ref() is None  # the row view made for the call is gone too


# -- ib::wrap: C-allocated tables freed exactly once ---------------------------------------------------

def test_matrix_new_freed_after_last_view(cpp, counted):
    m = cpp.matrix_new(3, 4)
    assert isinstance(m, IndirectMemory2D) and m.shape == (3, 4) and not m.readonly
    assert cpp.live_allocations() == counted + 4  # table + 3 rows
    assert m.to_numpy().tolist() == np.zeros((3, 4)).tolist()
    view = memoryview(m)
    view[2, 3] = 1.5
    assert cpp.matrix_sum(m) == 1.5
    del m
    gc.collect()
    assert cpp.live_allocations() == counted + 4
    view.release()
    assert cpp.live_allocations() == counted


def test_matrix_new_freed_at_release(cpp, counted):
    m = cpp.matrix_new(2, 2)
    m.release()
    assert cpp.live_allocations() == counted
    with pytest.raises(ValueError, match="matrix shape must be positive, got \\(0, 2\\)"):
        cpp.matrix_new(0, 2)


@pytest.mark.parametrize("n", range(4))
def test_matrix_new_allocation_failure(cpp, counted, n):
    cpp.fail_allocations_after(n)  # table + 3 rows: every n < 4 fails somewhere
    with pytest.raises(MemoryError, match="clib could not allocate a 3x5 matrix"):
        cpp.matrix_new(3, 5)
    assert cpp.live_allocations() == counted


def test_matrix_copy(cpp, counted):
    a = np.arange(12.0).reshape(3, 4)
    c = cpp.matrix_copy(np.asfortranarray(a))
    assert c.to_numpy().tolist() == a.tolist()
    assert c.export_count == 0  # the table acquired to fill it was given back
    del c
    gc.collect()
    assert cpp.live_allocations() == counted


def test_exception_after_allocating_frees_the_matrix(cpp, counted):
    a = np.ones((3, 4))
    a[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"element \(2, 1\) is not finite"):
        cpp.matrix_copy(a)
    assert cpp.live_allocations() == counted  # freed as the exception left, not later
    cpp.fail_allocations_after(2)
    with pytest.raises(MemoryError):
        cpp.matrix_copy(np.ones((3, 4)))
    assert cpp.live_allocations() == counted


# -- the caster itself: element types, overloads, noconvert, moves, ib::wrap ----------------------------------

@pytest.fixture(scope="module")
def pb(c_extension_builder):
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 is in tests/requirements.txt")
    path = REPO / "tests" / "capi_module" / "ib_pybind11_test.cpp"
    return c_extension_builder("ib_pybind11_test", {path.name: path.read_text()},
                               include_dirs=[pybind11.get_include()], cplusplus=True,
                               extra_compile_args=["-fvisibility=hidden"])


TYPES = [("double", "d"), ("float", "f"), ("schar", "b"), ("uchar", "B"), ("short", "h"),
         ("ushort", "H"), ("int", "i"), ("uint", "I"), ("long", "l"), ("ulong", "L"),
         ("longlong", "q"), ("ulonglong", "Q"), ("int64", "l"), ("bool", "?")]


@pytest.mark.parametrize("name, code", TYPES)
def test_element_types(pb, name, code):
    a = np.arange(6).reshape(2, 3).astype(np.dtype(code))
    expected = float(a.astype(np.float64).sum())
    assert getattr(pb, f"describe_{name}")(a)[:2] == (2, 3)
    assert getattr(pb, f"describe_{name}")(a)[3:] == (False, expected)
    assert getattr(pb, f"describe_const_{name}")(a)[3:] == (True, expected)
    other = np.zeros((2, 3), dtype=np.complex128)
    with pytest.raises(TypeError, match="element format is 'Zd'"):
        getattr(pb, f"describe_const_{name}")(other)


def test_overloads_pick_the_element_type(pb):
    assert pb.kind(np.zeros((2, 2))) == "double"
    assert pb.kind(np.zeros((2, 2), dtype=np.intc)) == "int"
    assert pb.kind(np.asfortranarray(np.zeros((2, 2)))) == "double"  # copied in the 2nd pass
    # No overload fits: the convert pass reports the first overload's reason.
    with pytest.raises(TypeError, match="element format is 'f', not 'd'"):
        pb.kind(np.zeros((2, 2), dtype=np.float32))


def test_noconvert_never_copies(pb):
    assert pb.strict_rows(np.zeros((3, 2))) == 3
    with pytest.raises(TypeError, match="incompatible function arguments"):
        pb.strict_rows(np.asfortranarray(np.zeros((3, 2))))


def test_moves_keep_one_pin(pb):
    mem = owned(np.ones((4, 2)))
    assert pb.move_and_count(mem) == (False, False, True, 4)
    assert mem.export_count == 0
    assert pb.reset_then_export_count(mem) == 0


def test_table_returned_to_python_is_its_memory(pb):
    mem = owned(np.ones((2, 2)))
    assert pb.identity(mem) is mem
    back = pb.identity(np.ones((2, 3)))
    assert isinstance(back, IndirectMemory2D) and back.shape == (2, 3) and back.readonly
    assert back.export_count == 0 and mem.export_count == 0


def test_acquire_in_cpp(pb):
    f = np.asfortranarray(np.ones((2, 3)))
    assert pb.acquire(f, True) == (2, 3)
    with pytest.raises(BufferError, match="not C-contiguous"):
        pb.acquire(f, False)
    assert pb.sum_without_gil(np.arange(6.0).reshape(3, 2)) == 15.0


def test_wrap_with_a_cpp_deallocator(pb):
    frees = pb.frees()
    m = pb.wrap(3, 2, False, False)
    assert m.to_numpy().tolist() == np.arange(6.0).reshape(3, 2).tolist() and not m.readonly
    view = memoryview(m)
    del m
    gc.collect()
    assert pb.frees() == frees
    view.release()
    assert pb.frees() == frees + 1
    r = pb.wrap(2, 2, True, False)
    assert r.readonly
    del r
    assert pb.frees() == frees + 2
    with pytest.raises(ValueError, match="row 1 of the pointer table is NULL"):
        pb.wrap(2, 2, False, True)
    assert pb.frees() == frees + 3  # ownership passed: freed before the exception arrived


def test_readme_pybind11_example(c_extension_builder):
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 is in tests/requirements.txt")
    text = (REPO / "README.md").read_text()
    section = text.split("## C and C++", 1)[1].split("\n## ", 1)[0]
    source = section.split("```cpp\n", 1)[1].split("```", 1)[0]
    mod = c_extension_builder("ib_sum", {"ib_sum.cpp": source},
                              include_dirs=[pybind11.get_include()], cplusplus=True,
                              extra_compile_args=["-fvisibility=hidden"])
    a = np.arange(6.0).reshape(2, 3)
    assert mod.total(a) == 15.0 and mod.total(np.asfortranarray(a)) == 15.0
    mod.scale(a, 2.0)
    assert a.sum() == 30.0
    with pytest.raises(BufferError, match="not C-contiguous"):
        mod.scale(np.asfortranarray(a), 2.0)
