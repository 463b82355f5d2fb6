"""clib/ (the sample C library) and examples/ (a downstream binding project), end to end.

A module-scoped fixture copies examples/ and clib/ into a temporary directory and pip-installs
the examples project against the installed indirect_buffer. Every flow is checked against
NumPy, and clib's allocation counter proves that every C allocation is freed exactly once (a
second free would drive it below the baseline), including when views outlive their wrappers
and when an exception interrupts a flow. Lifetime checks run in a subprocess.
"""
import importlib
import os
import shutil
import subprocess
import sys
from array import array
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO, copy_checkout, pip_install_once

from indirect_buffer import BufferCollection2D, IndirectMemory2D


def _copy_sources(dest, names=("examples", "clib")):
    copy_checkout(dest, names)


@pytest.fixture(scope="module")
def examples_root(pytestconfig, tmp_path_factory):
    """examples/ pip-installed into the suite's virtualenv (once per run, see conftest)."""
    return pip_install_once(pytestconfig, tmp_path_factory, "ib_examples", "examples",
                            ("examples", "clib"))


@pytest.fixture(scope="module")
def ex(examples_root):
    mods = {name: importlib.import_module(f"ib_examples.{name}")
            for name in ("owned", "borrowed", "nanny_managed", "numpy_in", "ctypes_only",
                         "image", "tensor")}
    pkg = Path(mods["owned"].__file__).resolve()
    assert REPO not in pkg.parents, f"ib_examples imported from the checkout: {pkg}"
    yield SimpleNamespace(**mods)
    mods["nanny_managed"].fail_allocations_after(-1)
    mods["tensor"].fail_allocations_after(-1)
    mods["ctypes_only"].lib.ib_fail_allocations_after(-1)


SHAPES = [(1, 1), (3, 5), (7, 2)]


def _iota(rows, cols):
    return np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)


# -- clib on its own -----------------------------------------------------------------------------

needs_make = pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                                reason="make and a C compiler are needed")


@needs_make
def test_clib_check_target(tmp_path):
    _copy_sources(tmp_path, ("clib",))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # test_clib carries its own sanitizer runtime
    proc = subprocess.run(["make", "-C", str(tmp_path / "clib"), "check"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_clib: all checks passed" in proc.stdout


@needs_make
def test_clib_shared_library_drives_ctypes_flow(tmp_path, examples_root, subprocess_python,
                                                monkeypatch):
    _copy_sources(tmp_path, ("clib",))
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run(["make", "-C", str(tmp_path / "clib"), "shared"], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    so = tmp_path / "clib" / "libibmatrix.so"
    assert so.is_file()
    monkeypatch.setenv("IB_LIBIBMATRIX", str(so))  # inherited by the child
    subprocess_python(f"""
        from ib_examples import ctypes_only as ct
        assert ct.lib._name == {str(so)!r}, ct.lib._name
        m = ct.matrix_new(2, 3)
        assert ct.live_allocations() == 3
        memoryview(m)[1, 2] = 6.0
        ct.matrix_scale(m, 0.5)
        assert ct.matrix_sum(m) == 3.0
        del m
        assert ct.live_allocations() == 0
    """)


# -- building the examples project ----------------------------------------------------------------

def test_setup_finds_clib_through_env_or_fails_clearly(tmp_path):
    _copy_sources(tmp_path, ("examples",))  # no ../clib next to it
    setup_dir = tmp_path / "examples"
    env = dict(os.environ)
    env.pop("IB_CLIB_DIR", None)
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=setup_dir, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "IB_CLIB_DIR" in proc.stdout + proc.stderr

    env["IB_CLIB_DIR"] = str(tmp_path / "nowhere")
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=setup_dir, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "nowhere" in proc.stdout + proc.stderr

    _copy_sources(tmp_path / "elsewhere", ("clib",))
    env["IB_CLIB_DIR"] = str(tmp_path / "elsewhere" / "clib")
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=setup_dir, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0.1.0"


def test_each_module_has_its_own_clib_copy(ex):
    before = {name: getattr(ex, name).live_allocations()
              for name in ("owned", "borrowed", "numpy_in", "ctypes_only")}
    mem = ex.nanny_managed.matrix_new(2, 2)
    assert {name: getattr(ex, name).live_allocations() for name in before} == before
    del mem


# -- owned -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols", SHAPES)
def test_owned_c_reads_and_writes_python_memory(ex, rows, cols):
    base = ex.owned.live_allocations()
    mem = ex.owned.new_matrix(rows, cols)
    assert mem.shape == (rows, cols) and mem.format == "d"
    assert ex.owned.matrix_sum(mem) == 0.0
    ex.owned.matrix_iota(mem)
    np.testing.assert_array_equal(mem.to_numpy(), _iota(rows, cols))
    ex.owned.matrix_scale(mem, -1.5)
    np.testing.assert_array_equal(mem.to_numpy(), _iota(rows, cols) * -1.5)
    assert ex.owned.matrix_sum(mem) == pytest.approx((_iota(rows, cols) * -1.5).sum())
    assert ex.owned.live_allocations() == base  # indirect_buffer owns this memory


def test_owned_accepts_create_memory_and_collections(ex):
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    view = memoryview(mem)
    view[1, 2] = 4.0
    ex.owned.matrix_scale(mem, 2.0)  # C writes while a memoryview is exported
    assert view[1, 2] == 8.0 and ex.owned.matrix_sum(mem) == 8.0
    rows = [np.arange(3.0), np.arange(3.0, 6.0)]
    assert ex.owned.matrix_sum(BufferCollection2D(rows)) == 15.0


def test_owned_checks_the_table(ex):
    with pytest.raises(TypeError, match="format"):
        ex.owned.matrix_sum(IndirectMemory2D.create_memory(2, 2, "f"))
    with pytest.raises(TypeError, match="format"):
        ex.owned.matrix_scale(IndirectMemory2D.create_memory(2, 2, "q"), 2.0)
    ro = IndirectMemory2D.create_memory(2, 2, "d", readonly=True)
    assert ex.owned.matrix_sum(ro) == 0.0
    with pytest.raises(BufferError):
        ex.owned.matrix_scale(ro, 2.0)
    released = IndirectMemory2D.create_memory(2, 2, "d")
    released.release()
    with pytest.raises(ValueError):
        ex.owned.matrix_sum(released)
    with pytest.raises(TypeError):
        ex.owned.matrix_sum(None)
    # Rows that start after table[i] (1-based style) are not for a 0-based C API.
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    shifted = IndirectMemory2D.from_address(mem.address, 2, 2, "d", row_offset=8,
                                            memory_nanny=mem)
    with pytest.raises(ValueError, match="8 bytes"):
        ex.owned.matrix_sum(shifted)


# -- borrowed --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols", SHAPES)
def test_borrowed_model_coefficients(ex, rows, cols):
    base = ex.borrowed.live_allocations()
    model = ex.borrowed.Model(rows, cols)
    assert ex.borrowed.live_allocations() == base + 2 + rows  # handle, table, rows
    coef = model.coef()
    assert ex.borrowed.live_allocations() == base + 2 + rows  # a view allocates nothing in C
    np.testing.assert_array_equal(coef.to_numpy(), np.eye(rows, cols))
    target = np.random.default_rng(rows * 10 + cols).normal(size=(rows, cols))
    coef.copy_from(target)  # writes land in the model's own table
    x = np.linspace(-1.0, 2.0, cols)
    np.testing.assert_allclose(np.asarray(model.predict(x)), target @ x)
    np.testing.assert_array_equal(model.coef().to_numpy(), target)
    del model, coef
    assert ex.borrowed.live_allocations() == base


def test_borrowed_errors(ex):
    base = ex.borrowed.live_allocations()
    with pytest.raises(ValueError):
        ex.borrowed.Model(0, 3)
    model = ex.borrowed.Model(2, 3)
    with pytest.raises(ValueError, match="expected 3"):
        model.predict([1.0, 2.0])
    ro = model.coef(readonly=True)
    with pytest.raises(TypeError):
        memoryview(ro)[0, 0] = 1.0
    with pytest.raises(BufferError):
        ex.owned.matrix_scale(ro, 2.0)
    assert ex.owned.matrix_sum(ro) == 2.0
    del model, ro
    assert ex.borrowed.live_allocations() == base


def test_borrowed_view_outlives_model(subprocess_python, examples_root):
    subprocess_python("""
        import gc
        from ib_examples import borrowed
        base = borrowed.live_allocations()
        model = borrowed.Model(3, 4)
        coef = model.coef()
        view = memoryview(coef)
        view[2, 3] = 7.5
        del model, coef
        gc.collect()
        # The view keeps the wrapper alive, the wrapper keeps the Model (its nanny) alive.
        assert borrowed.live_allocations() == base + 5, borrowed.live_allocations()
        assert view[2, 3] == 7.5 and view[0, 0] == 1.0 and view.shape == (3, 4)
        view[1, 1] = -2.0
        assert view.tolist()[1] == [0.0, -2.0, 0.0, 0.0]
        view.release()
        assert borrowed.live_allocations() == base, borrowed.live_allocations()

        # Many views of one table, dropped in any order: one free, after the last.
        model = borrowed.Model(2, 2)
        views = [memoryview(model.coef()) for _ in range(3)]
        del model
        for i, v in enumerate(views):
            assert borrowed.live_allocations() == base + 4
            v.release()
        assert borrowed.live_allocations() == base
        print("ok")
    """)


# -- nanny-managed ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,extra", [("matrix_new", "rows"), ("block_new", "two")])
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_nanny_managed_matrices(ex, kind, extra, rows, cols):
    nm = ex.nanny_managed
    base = nm.live_allocations()
    mem = getattr(nm, kind)(rows, cols)
    allocs = rows + 1 if extra == "rows" else 2
    assert nm.live_allocations() == base + allocs
    assert mem.shape == (rows, cols) and mem.format == "d" and not mem.readonly
    np.testing.assert_array_equal(mem.to_numpy(), np.zeros((rows, cols)))
    mem.copy_from(_iota(rows, cols))
    ex.owned.matrix_scale(mem, 3.0)  # any module's C code can work on the table
    np.testing.assert_array_equal(mem.to_numpy(), _iota(rows, cols) * 3.0)
    view = memoryview(mem)
    assert view[rows - 1, cols - 1] == 3.0 * (rows * cols - 1)
    del mem
    assert nm.live_allocations() == base + allocs  # the view holds it
    view.release()
    assert nm.live_allocations() == base  # freed, and only once


def test_nanny_managed_block_rows_are_one_block(ex):
    mem = ex.nanny_managed.block_new(3, 4)
    mem.copy_from(_iota(3, 4))
    direct = mem.direct_view()  # succeeds only if the rows lie back to back
    assert direct.tolist() == _iota(3, 4).tolist()
    direct.release()


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_nanny_managed_from_rows(ex, rows, cols):
    base = ex.nanny_managed.live_allocations()
    data = np.random.default_rng(cols).normal(size=(rows, cols))
    mem = ex.nanny_managed.matrix_from_rows(data.tolist())
    np.testing.assert_array_equal(mem.to_numpy(), data)
    assert ex.owned.matrix_sum(mem) == pytest.approx(data.sum())
    del mem
    assert ex.nanny_managed.live_allocations() == base


@pytest.mark.parametrize("data,error", [
    ([[1.0, 2.0], [3.0, "four"]], TypeError),   # fails on the last element
    ([[1.0, 2.0], [3.0], [4.0, 5.0]], ValueError),  # ragged row 1
    ([[1.0, 2.0], [3.0, None]], TypeError),
    ([[1.0], [2.0], [3.0, 4.0]], ValueError),
])
def test_nanny_managed_exception_midway_frees(ex, data, error):
    base = ex.nanny_managed.live_allocations()
    with pytest.raises(error):
        ex.nanny_managed.matrix_from_rows(data)
    assert ex.nanny_managed.live_allocations() == base


@pytest.mark.parametrize("kind,points", [("matrix_new", 4), ("block_new", 2)])
def test_nanny_managed_allocation_failure_raises_memoryerror(ex, kind, points):
    nm = ex.nanny_managed
    base = nm.live_allocations()
    try:
        for n in range(points):  # fail the first, second, ... allocation of a 3x4 matrix
            nm.fail_allocations_after(n)
            with pytest.raises(MemoryError):
                getattr(nm, kind)(3, 4)
            assert nm.live_allocations() == base, f"leak when allocation {n} fails"
        nm.fail_allocations_after(points)  # exactly enough
        mem = getattr(nm, kind)(3, 4)
    finally:
        nm.fail_allocations_after(-1)
    assert nm.live_allocations() == base + points
    del mem
    assert nm.live_allocations() == base


def test_nanny_managed_bad_shapes(ex):
    base = ex.nanny_managed.live_allocations()
    for kind in ("matrix_new", "block_new"):
        for shape in [(0, 3), (3, 0), (-1, 2)]:
            with pytest.raises(ValueError):
                getattr(ex.nanny_managed, kind)(*shape)
    with pytest.raises(ValueError):
        ex.nanny_managed.matrix_from_rows([])
    assert ex.nanny_managed.live_allocations() == base


def test_nanny_managed_views_outlive_wrapper(subprocess_python, examples_root):
    subprocess_python("""
        import gc
        from ib_examples import nanny_managed as nm
        base = nm.live_allocations()
        for new, allocs in [(nm.matrix_new, 5), (nm.block_new, 2)]:
            mem = new(4, 3)
            views = [memoryview(mem) for _ in range(3)]
            views[0][3, 2] = 9.0
            del mem
            gc.collect()
            for v in views:
                assert nm.live_allocations() == base + allocs, nm.live_allocations()
                assert v[3, 2] == 9.0 and v[0, 0] == 0.0
                v.release()
            assert nm.live_allocations() == base, nm.live_allocations()

        # A view dropped by garbage collection (a cycle) also frees exactly once.
        mem = nm.matrix_new(2, 2)
        cycle = [memoryview(mem)]
        cycle.append(cycle)
        del mem, cycle
        gc.collect()
        assert nm.live_allocations() == base, nm.live_allocations()
        print("ok")
    """)


def test_nanny_managed_exception_in_a_later_step_frees(subprocess_python, examples_root):
    # The matrix is in the middle of use (views exported) when an exception unwinds through.
    subprocess_python("""
        from ib_examples import nanny_managed as nm, owned
        base = nm.live_allocations()
        def work():
            mem = nm.matrix_new(3, 3)
            view = memoryview(mem)
            view[0, 0] = 1.0
            owned.matrix_scale(mem, 2.0)
            owned.matrix_scale(mem.to_numpy(), 2.0)  # TypeError: not an IndirectMemory2D
        try:
            work()
        except TypeError:
            pass
        else:
            raise AssertionError("no TypeError")
        # The traceback is gone with the except block: everything is freed.
        assert nm.live_allocations() == base, nm.live_allocations()
        print("ok")
    """)


# -- NumPy in --------------------------------------------------------------------------------------

def test_numpy_rows_scaled_in_place(ex):
    base = ex.numpy_in.live_allocations()
    rng = np.random.default_rng(1)
    rows = [rng.normal(size=5) for _ in range(4)]  # four separate arrays
    before = [r.copy() for r in rows]
    ids = [id(r) for r in rows]
    ex.numpy_in.scale_rows(rows, 2.5)
    assert [id(r) for r in rows] == ids
    for r, b in zip(rows, before):
        np.testing.assert_array_equal(r, b * 2.5)
    assert ex.numpy_in.sum_rows(rows) == pytest.approx(np.sum(before) * 2.5)
    assert ex.numpy_in.live_allocations() == base


def test_numpy_rows_of_one_array_and_mixed_sources(ex):
    a = _iota(3, 4)
    ex.numpy_in.scale_rows(list(a), -1.0)  # rows are views: a itself changes
    np.testing.assert_array_equal(a, -_iota(3, 4))
    b = np.zeros((2, 8))
    rows = [b[0, ::2].copy(), np.ones(4), array("d", [1.0, 2.0, 3.0, 4.0])]
    ex.numpy_in.scale_rows(rows, 3.0)
    np.testing.assert_array_equal(rows[1], np.full(4, 3.0))
    assert list(rows[2]) == [3.0, 6.0, 9.0, 12.0]
    rows[2].append(0.0)  # the collection released its buffers: the array can grow again
    assert ex.numpy_in.sum_rows([np.arange(4.0)] * 3) == 18.0  # one row used three times


def test_numpy_rows_rejected(ex):
    with pytest.raises(TypeError, match="format"):
        ex.numpy_in.scale_rows([np.ones(3, dtype=np.float32)], 2.0)
    with pytest.raises(BufferError, match="row 1"):
        ex.numpy_in.sum_rows([np.ones(3), np.ones(4)])
    frozen = np.ones(3)
    frozen.flags.writeable = False
    assert ex.numpy_in.sum_rows([frozen, np.ones(3)]) == 6.0
    with pytest.raises(BufferError):
        ex.numpy_in.scale_rows([frozen, np.ones(3)], 2.0)
    np.testing.assert_array_equal(frozen, np.ones(3))


def test_numpy_image_invert(ex):
    img = np.random.default_rng(2).integers(0, 256, size=(5, 7), dtype=np.uint8)
    expected = 255 - img
    ex.numpy_in.invert_image(list(img))
    np.testing.assert_array_equal(img, expected)
    with pytest.raises(TypeError):
        ex.numpy_in.invert_image([np.zeros(3, dtype=np.int16)])


def test_numpy_confusion_matrix(ex):
    rng = np.random.default_rng(3)
    k = 4
    truth = rng.integers(0, k, size=200).astype(np.int32)
    pred = rng.integers(0, k, size=200).astype(np.int32)
    counts = np.full((k, k), -7, dtype=np.int32)  # overwritten, not accumulated
    ex.numpy_in.confusion(truth, pred, list(counts))
    expected = np.zeros((k, k), dtype=np.int32)
    np.add.at(expected, (truth, pred), 1)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == 200

    empty = np.array([], dtype=np.int32)
    ex.numpy_in.confusion(empty, empty, counts)
    np.testing.assert_array_equal(counts, np.zeros((k, k)))

    before = counts.copy()
    bad = truth.copy()
    bad[-1] = k
    with pytest.raises(ValueError, match="outside"):
        ex.numpy_in.confusion(bad, pred, counts)
    np.testing.assert_array_equal(counts, before)  # untouched on error
    with pytest.raises(ValueError, match="square"):
        ex.numpy_in.confusion(truth, pred, np.zeros((k, k + 1), dtype=np.int32))
    with pytest.raises(ValueError, match="labels"):
        ex.numpy_in.confusion(truth, pred[:-1], counts)
    with pytest.raises(TypeError):
        ex.numpy_in.confusion(truth, pred, np.zeros((k, k)))  # float64 counts


# -- images (H x W x 3 arrays as unsigned char** rows) -------------------------------------------

def _luma(rgb):
    wide = rgb.astype(np.uint32)  # uint8 arithmetic would wrap around
    return ((77 * wide[..., 0] + 150 * wide[..., 1] + 29 * wide[..., 2] + 128) >> 8).astype(
        np.uint8)


@pytest.mark.parametrize("height,width", [(1, 1), (4, 7), (33, 5), (0, 3), (3, 0)])
def test_image_to_gray_matches_numpy(ex, height, width):
    base = ex.image.live_allocations()
    rgb = np.random.default_rng(height * 100 + width).integers(
        0, 256, size=(height, width, 3), dtype=np.uint8)
    before = rgb.copy()
    gray = ex.image.to_gray(rgb)
    assert gray.shape == (height, width) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, _luma(rgb))
    np.testing.assert_array_equal(rgb, before)  # read only
    rgb.flags.writeable = False  # a read-only image is a fine input
    np.testing.assert_array_equal(ex.image.to_gray(rgb), _luma(rgb))
    assert ex.image.live_allocations() == base


@pytest.mark.parametrize("shape", [(5, 6, 3), (5, 6, 4), (5, 6), (2, 3, 2, 2)])
def test_image_invert_in_place(ex, shape):
    img = np.random.default_rng(7).integers(0, 256, size=shape, dtype=np.uint8)
    expected = 255 - img
    ex.image.invert(img)  # one row pointer per index of the first dimension
    np.testing.assert_array_equal(img, expected)


def test_image_invert_is_zero_copy(ex):
    big = np.random.default_rng(8).integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    expected = big.copy()
    expected[1::2] = 255 - expected[1::2]
    ex.image.invert(big[1::2])  # every other row: strided rows, each still C-contiguous
    np.testing.assert_array_equal(big, expected)  # C wrote into big's own rows, and only those


def test_image_refusals(ex):
    rgb = np.random.default_rng(9).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    before = rgb.copy()
    with pytest.raises(BufferError):
        ex.image.invert(rgb[:, ::2])  # pixel-strided rows are not contiguous
    with pytest.raises(BufferError):
        ex.image.invert(np.asfortranarray(rgb))
    with pytest.raises(BufferError):
        ex.image.to_gray(rgb[:, :, ::-1])  # BGR view of RGB: channels reversed, not contiguous
    np.testing.assert_array_equal(rgb, before)
    with pytest.raises(TypeError, match="format"):
        ex.image.invert(np.zeros((2, 3, 3), dtype=np.int16))
    frozen = rgb.copy()
    frozen.flags.writeable = False
    with pytest.raises(BufferError):
        ex.image.invert(frozen)
    np.testing.assert_array_equal(frozen, before)
    with pytest.raises(ValueError, match="H x W x 3"):
        ex.image.to_gray(np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="H x W x 3"):
        ex.image.to_gray(np.zeros((2, 3), dtype=np.uint8))


def test_image_source_buffer_released_after_the_call(ex):
    # The view holds the source's buffer only inside the call: a bytearray can grow again.
    raw = bytearray(range(12))
    ex.image.invert(memoryview(raw).cast("B", (2, 2, 3)))
    assert list(raw) == [255 - i for i in range(12)]
    raw.extend(b"x")


# -- ctypes only -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,extra", [("matrix_new", 1), ("block_new", 0)])
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_ctypes_flow(ex, kind, extra, rows, cols):
    ct = ex.ctypes_only
    base = ct.live_allocations()
    mem = getattr(ct, kind)(rows, cols)
    allocs = rows + 1 if extra else 2
    assert ct.live_allocations() == base + allocs
    assert mem.shape == (rows, cols) and mem.format == "d"
    mem.copy_from(_iota(rows, cols))
    ct.matrix_scale(mem, 0.5)
    np.testing.assert_array_equal(mem.to_numpy(), _iota(rows, cols) * 0.5)
    assert ct.matrix_sum(mem) == pytest.approx(_iota(rows, cols).sum() * 0.5)
    view = memoryview(mem)
    del mem
    assert ct.live_allocations() == base + allocs
    view.release()
    assert ct.live_allocations() == base


def test_ctypes_flow_on_other_memory(ex):
    ct = ex.ctypes_only
    owned = IndirectMemory2D.create_memory(2, 2, "d")
    memoryview(owned)[1, 1] = 3.0
    ct.matrix_scale(owned, 2.0)
    assert ct.matrix_sum(owned) == 6.0
    rows = [np.ones(3), np.arange(3.0)]
    ct.matrix_scale(BufferCollection2D(rows), 4.0)
    np.testing.assert_array_equal(rows[1], [0.0, 4.0, 8.0])
    with pytest.raises(TypeError, match="format"):
        ct.matrix_sum(IndirectMemory2D.create_memory(2, 2, "i"))
    with pytest.raises(BufferError):
        ct.matrix_scale(IndirectMemory2D.create_memory(2, 2, "d", readonly=True), 2.0)
    released = IndirectMemory2D.create_memory(2, 2, "d")
    released.release()
    with pytest.raises(ValueError):
        ct.matrix_sum(released)
    # Rows that start after table[i] are not for a 0-based C API: pinned() refuses them.
    shifted = IndirectMemory2D.from_address(owned.address, 2, 1, "d", row_offset=8,
                                            memory_nanny=owned)
    with pytest.raises(ValueError, match="8 bytes"):
        ct.matrix_sum(shifted)


def test_ctypes_flow_pins_the_memory_during_the_call(ex, monkeypatch):
    # ctypes drops the GIL during the foreign call: the table must stay pinned meanwhile.
    ct = ex.ctypes_only
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    seen = []
    real = ct.lib.ib_matrix_sum

    def spy(address, rows, cols):
        assert address == mem.address
        with pytest.raises(BufferError):
            mem.release()  # what another thread could try while C runs
        seen.append((rows, cols))
        return real(address, rows, cols)

    monkeypatch.setattr(ct.lib, "ib_matrix_sum", spy)
    assert ct.matrix_sum(mem) == 0.0
    assert seen == [(2, 2)]
    mem.release()  # unpinned again


def test_ctypes_model_and_failures(ex):
    ct = ex.ctypes_only
    base = ct.live_allocations()
    model = ct.Model(3, 2)
    assert ct.live_allocations() == base + 5
    coef = model.coef()
    np.testing.assert_array_equal(coef.to_numpy(), np.eye(3, 2))
    target = np.arange(6.0).reshape(3, 2)
    coef.copy_from(target)
    np.testing.assert_allclose(model.predict([1.0, -1.0]), target @ [1.0, -1.0])
    del model, coef
    assert ct.live_allocations() == base
    try:
        for n in range(3):
            ct.lib.ib_fail_allocations_after(n)
            with pytest.raises(MemoryError):
                ct.matrix_new(2, 2)
            with pytest.raises(MemoryError):
                ct.Model(2, 2)
            assert ct.live_allocations() == base
    finally:
        ct.lib.ib_fail_allocations_after(-1)
    with pytest.raises(ValueError):
        ct.matrix_new(0, 2)


def test_ctypes_views_outlive_wrappers(subprocess_python, examples_root):
    subprocess_python("""
        import gc
        from ib_examples import ctypes_only as ct
        base = ct.live_allocations()
        model = ct.Model(2, 3)
        view = memoryview(model.coef())
        del model
        gc.collect()
        assert ct.live_allocations() == base + 4
        view[1, 2] = 5.0
        assert view[1, 2] == 5.0 and view[0, 0] == 1.0
        view.release()
        assert ct.live_allocations() == base

        view = memoryview(ct.block_new(3, 3))
        gc.collect()
        assert ct.live_allocations() == base + 2
        view[2, 2] = 1.0
        del view
        assert ct.live_allocations() == base
        print("ok")
    """)


def test_ctypes_model_in_a_cycle_with_a_resurrecting_finalizer(subprocess_python,
                                                               examples_root):
    # The garbage collector runs the finalizers of a cycle while the cycle is intact: the
    # model must not be freed then (the nanny is outside the cycle), whatever another
    # finalizer of the same garbage does with the coefficients.
    subprocess_python("""
        import gc
        import numpy as np
        from ib_examples import ctypes_only as ct
        base = ct.live_allocations()
        saved = []

        class Logger:
            def __del__(self):
                saved.append(self.coef)  # resurrects coef, and through it the model's table

        model = ct.Model(2, 3)
        model.cached = model.coef()      # a cycle: model -> coef -> ... -> model
        log = Logger()
        log.coef = model.cached
        model.log = log
        del model, log
        gc.collect()
        coef = saved.pop()
        assert ct.live_allocations() == base + 4
        np.testing.assert_array_equal(coef.to_numpy(), np.eye(2, 3))
        coef.copy_from(np.ones((2, 3)))
        del coef
        gc.collect()
        assert ct.live_allocations() == base, ct.live_allocations() - base
        print("ok")
    """)


# -- N-D: double*** tensors and frames -------------------------------------------------------

def _index_tensor(n0, n1, n2):
    i, j, k = np.indices((n0, n1, n2))
    return (i * 10000 + j * 100 + k).astype(np.float64)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 4), (5, 1, 7)])
def test_tensor_from_c(ex, shape):
    t_mod = ex.tensor
    base = t_mod.live_allocations()
    t = t_mod.tensor_new(*shape)
    assert t_mod.live_allocations() == base + 3  # one allocation per level, not per row
    assert t.shape == shape and t.indirect == (0, 1) and t.format == "d"
    np.testing.assert_array_equal(t.to_numpy(), np.zeros(shape))
    t_mod.tensor_fill_index(t)
    expected = _index_tensor(*shape)
    np.testing.assert_array_equal(t.to_numpy(), expected)
    assert memoryview(t).tolist() == expected.tolist()
    assert t_mod.tensor_sum(t) == expected.sum()
    t.copy_from(expected * 2)  # Python writes, C reads
    assert t_mod.tensor_sum(t) == 2 * expected.sum()
    view = memoryview(t)
    del t
    assert t_mod.live_allocations() == base + 3
    view.release()
    assert t_mod.live_allocations() == base


def test_tensor_sum_of_any_3d_array(ex):
    a = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)
    assert ex.tensor.tensor_sum(a) == a.sum()  # converted to double, copied into a T***
    assert ex.tensor.tensor_sum(np.asfortranarray(a.astype(float))) == a.sum()
    assert ex.tensor.tensor_sum(a.tolist()) == a.sum()


def test_tensor_accessor_checks(ex):
    from indirect_buffer import IndirectMemory
    frames = IndirectMemory.create_memory((2, 3, 4), "d", indirect=(0,))
    with pytest.raises(BufferError, match="2 pointer level"):
        ex.tensor.tensor_fill_index(frames)  # a T** over blocks is not a T***
    ro = IndirectMemory.create_memory((2, 3, 4), "d", readonly=True)
    with pytest.raises(BufferError, match="read-only"):
        ex.tensor.tensor_fill_index(ro)
    ints = IndirectMemory.create_memory((2, 3, 4), "i")
    with pytest.raises(TypeError, match="element format is 'i', not 'd'"):
        ex.tensor.tensor_fill_index(ints)
    gone = IndirectMemory.create_memory((2, 3, 4), "d")
    gone.release()
    with pytest.raises(ValueError, match="released"):
        ex.tensor.tensor_fill_index(gone)
    with pytest.raises(ValueError, match="positive"):
        ex.tensor.tensor_new(2, 0, 3)


@pytest.mark.parametrize("points", [0, 1, 2])
def test_tensor_and_frames_allocation_failures(ex, points):
    t_mod = ex.tensor
    base = t_mod.live_allocations()
    t_mod.fail_allocations_after(points)
    try:
        with pytest.raises(MemoryError, match="tensor"):
            t_mod.tensor_new(2, 2, 2)
        assert t_mod.live_allocations() == base  # the partial allocations were freed
        if points < 2:
            t_mod.fail_allocations_after(points)
            with pytest.raises(MemoryError, match="frames"):
                t_mod.frames_new(2, 2, 2)
            assert t_mod.live_allocations() == base
    finally:
        t_mod.fail_allocations_after(-1)


@pytest.mark.parametrize("count,height,width", [(1, 1, 1), (4, 2, 3), (3, 5, 8)])
def test_frames_mean_and_add_on_numpy_video(ex, count, height, width):
    rng = np.random.default_rng(count * 100 + width)
    video = rng.integers(0, 256, (count, height, width), dtype=np.uint8)
    expected = ((video.astype(np.uint64).sum(0) + count // 2) // count).astype(np.uint8)
    np.testing.assert_array_equal(ex.tensor.frames_mean(video), expected)
    before = video.copy()
    ex.tensor.frames_add(video, -100)  # zero-copy: C writes into the array
    np.testing.assert_array_equal(video, np.clip(before.astype(int) - 100, 0, 255))
    # Frames need not be one block: every other frame of a larger video is fine.
    big = rng.integers(0, 256, (2 * count, height, width), dtype=np.uint8)
    sub = big[::2]
    expected_sub = ((sub.astype(np.uint64).sum(0) + count // 2) // count).astype(np.uint8)
    np.testing.assert_array_equal(ex.tensor.frames_mean(sub), expected_sub)
    ex.tensor.frames_add(sub, 1)
    np.testing.assert_array_equal(big[1::2], big[1::2])  # untouched frames stay as they were


def test_frames_refusals_and_c_frames(ex):
    video = np.zeros((2, 3, 4), dtype=np.uint8)
    with pytest.raises(BufferError, match="dimension 2 has stride"):
        ex.tensor.frames_add(np.asfortranarray(video), 1)  # frames not contiguous: no copy
    ro = video.copy()
    ro.flags.writeable = False
    with pytest.raises(BufferError, match="read-only"):
        ex.tensor.frames_add(ro, 1)
    np.testing.assert_array_equal(ex.tensor.frames_mean(ro), np.zeros((3, 4)))
    base = ex.tensor.live_allocations()
    frames = ex.tensor.frames_new(3, 2, 2)
    assert ex.tensor.live_allocations() == base + 2
    assert frames.indirect == (0,) and frames.strides == (np.dtype(np.intp).itemsize, 2, 1)
    ex.tensor.frames_add(frames, 7)
    np.testing.assert_array_equal(frames.to_numpy(), np.full((3, 2, 2), 7))
    np.testing.assert_array_equal(ex.tensor.frames_mean(frames), np.full((2, 2), 7))
    assert not frames.released  # frames_add and frames_mean leave the caller's memory alone
    del frames
    assert ex.tensor.live_allocations() == base


# -- the demo --------------------------------------------------------------------------------------

def test_demo_runs_and_passes(examples_root):
    proc = subprocess.run([sys.executable, "-m", "ib_examples.demo"], capture_output=True,
                          text=True, timeout=120, cwd=examples_root, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for line in ["1. owned", "2. borrowed", "3. nanny-managed", "4. NumPy in",
                 "5. ctypes only", "6. images", "7. N-D", "ib_matrix_free ran once",
                 "ib_tensor_free ran after the last view", "C's mean frame matches NumPy",
                 "memoryview(t)[1, 2, 3] = 10203.0",
                 "ib_model_free ran once", "C's luma matches NumPy",
                 "to_gray of a 2 x 3 x 3 image -> [[0, 255, 77], [124, 29, 128]]",
                 "C wrote into the NumPy array itself",
                 "Fortran-ordered image: BufferError",
                 "a Fortran-ordered image is refused, not copied",
                 "confusion matrix (int**) -> [[1, 1, 0], [0, 1, 1], [0, 0, 2]]",
                 "iota, scale by 2 -> [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]], sum 30.0",
                 "demo: all checks passed"]:
        assert line in out, f"missing {line!r} in:\n{out}"
    assert "FAILED" not in out
