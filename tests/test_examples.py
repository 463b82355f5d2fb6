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
                         "image", "tensor", "lent")}
    pkg = Path(mods["owned"].__file__).resolve()
    assert REPO not in pkg.parents, f"ib_examples imported from the checkout: {pkg}"
    yield SimpleNamespace(**mods)
    mods["nanny_managed"].fail_allocations_after(-1)
    mods["tensor"].fail_allocations_after(-1)
    mods["lent"].fail_allocations_after(-1)
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


# -- lent: a decoder's callback block, an encoder buffer valid until the next call ----------------
# Both routes bind the same clib APIs (ib_stream.h): lent.pyx (Cython, from_ptr) and ctypes_only
# (from_ctype_ptr), each wrapping without a memory nanny, i.e. lent, and revoking the loan when C
# takes the memory back. The oracle for decoded blocks is clib's formula.

LENT_ROUTES = ["lent", "ctypes_only"]


def _decoded(k, nchannels, nsamples):
    """Block k of ib_decode: sample s of channel c is k * 1000 + c * 100 + s."""
    c, s = np.indices((nchannels, nsamples))
    return (k * 1000 + c * 100 + s).astype(np.int32)


def _lent_mod(ex, route):
    mod = getattr(ex, route)
    fail = getattr(mod, "fail_allocations_after", None) or mod.lib.ib_fail_allocations_after
    return mod, fail


@pytest.mark.parametrize("route", LENT_ROUTES)
@pytest.mark.parametrize("nchannels,nblocks,nsamples", [(1, 1, 1), (2, 4, 5), (6, 3, 17)])
def test_lent_decode_views_kept_past_the_callback(ex, route, nchannels, nblocks, nsamples):
    mod, _ = _lent_mod(ex, route)
    base = mod.live_allocations()
    kept = []

    def on_block(block):
        k = len(kept)
        assert block.lent and block.readonly and block.format == "i"
        assert block.shape == (nchannels, nsamples)
        assert mod.live_allocations() == base + nchannels + 1  # the decoder's scratch buffer
        np.testing.assert_array_equal(block.to_numpy(), _decoded(k, nchannels, nsamples))
        # C overwrote its scratch buffer in place for this block: the views of the earlier
        # blocks still read their own values.
        for j, (_, view, _) in enumerate(kept):
            assert view.tolist() == _decoded(j, nchannels, nsamples).tolist()
        kept.append((block, memoryview(block), block.to_numpy()))

    assert mod.decode(nchannels, nblocks, nsamples, on_block) == nblocks
    assert len(kept) == nblocks
    assert mod.live_allocations() == base  # scratch freed (and scribbled over) by C
    for k, (block, view, arr) in enumerate(kept):
        expected = _decoded(k, nchannels, nsamples)
        assert view.tolist() == expected.tolist()
        np.testing.assert_array_equal(arr, expected)
        assert view.readonly
        with pytest.raises(TypeError):
            view[0, 0] = 1
        assert block.released  # the wrapper itself is done with
        with pytest.raises(ValueError):
            memoryview(block)
        with pytest.raises(ValueError):
            block.to_numpy()
    del kept
    assert mod.live_allocations() == base


@pytest.mark.parametrize("route", LENT_ROUTES)
def test_lent_decode_refusals_inside_the_callback(ex, route):
    mod, _ = _lent_mod(ex, route)
    seen = []

    def on_block(block):
        # Nothing may keep the lent address past the loan: direct views and row views of it
        # are refused; copies and pins (C calls during the callback) are fine.
        with pytest.raises(BufferError):
            block.direct_view()
        with pytest.raises(BufferError):
            IndirectMemory2D.view_from_rows(block, readonly=True)
        with pytest.raises(BufferError):
            IndirectMemory2D.view_from_rows(memoryview(block), readonly=True)
        with pytest.raises(TypeError):
            memoryview(block)[0, 0] = 5  # read-only
        with block.pinned("i") as address:
            assert address
        copy = block.copy()
        assert not copy.lent
        seen.append(copy)

    assert mod.decode(2, 2, 3, on_block) == 2
    for k, copy in enumerate(seen):
        np.testing.assert_array_equal(copy.to_numpy(), _decoded(k, 2, 3))


@pytest.mark.parametrize("route", LENT_ROUTES)
def test_lent_decode_errors_and_allocation_failures(ex, route):
    mod, fail = _lent_mod(ex, route)
    base = mod.live_allocations()
    kept = []

    def stop_at_block_1(block):
        kept.append(memoryview(block))
        if len(kept) == 2:
            raise KeyError("stop")

    with pytest.raises(KeyError, match="stop"):
        mod.decode(2, 5, 3, stop_at_block_1)
    assert len(kept) == 2 and mod.live_allocations() == base
    for k, view in enumerate(kept):  # revoked on the way out of the callback too
        assert view.tolist() == _decoded(k, 2, 3).tolist()
    assert mod.decode(2, 0, 3, kept.append) == 0 and len(kept) == 2
    for args in [(0, 1, 3), (2, 1, 0), (2, -1, 3)]:
        with pytest.raises(ValueError):
            mod.decode(*args, kept.append)
    with pytest.raises(ValueError, match="int32"):
        mod.decode(2, 2**31 - 1, 3, kept.append)
    with pytest.raises(TypeError):
        mod.decode(2, 1, 3, None)
    try:
        for n in range(3):  # the table, then one allocation per channel
            fail(n)
            with pytest.raises(MemoryError):
                mod.decode(2, 1, 3, kept.append)
            assert mod.live_allocations() == base, f"leak when allocation {n} fails"
    finally:
        fail(-1)
    assert len(kept) == 2  # no callback on failure


@pytest.mark.parametrize("route", LENT_ROUTES)
def test_lent_encoder_views_kept_past_wrote(ex, route):
    mod, _ = _lent_mod(ex, route)
    base = mod.live_allocations()
    rng = np.random.default_rng(16)
    enc = mod.Encoder(3)
    assert mod.live_allocations() == base + 2  # handle + sums
    sums = np.zeros(3)
    kept = []
    for n, used in [(5, 5), (4, 2), (7, 0), (1, 1)]:
        buf = enc.buffer(n)
        assert buf.lent and not buf.readonly and buf.format == "f" and buf.shape == (3, n)
        assert mod.live_allocations() == base + 4  # + the buffer's table and data block
        np.testing.assert_array_equal(buf.to_numpy(), np.zeros((3, n), np.float32))
        data = rng.integers(-1000, 1000, size=(3, n)).astype(np.float32)  # exact sums
        view = memoryview(buf)
        buf.copy_from(data)
        enc.wrote(used)
        sums += data[:, :used].sum(axis=1, dtype=np.float64)
        assert buf.released and mod.live_allocations() == base + 2  # C freed it
        assert view.tolist() == data.tolist()  # the values at revocation
        view[0, 0] = 1e6  # reaches the snapshot, not C
        assert view[0, 0] == 1e6
        assert [enc.sum(c) for c in range(3)] == sums.tolist()
        kept.append((view, data))
    assert enc.samples == 8
    # A new buffer (quite likely where an old one was): writes into the old views miss it.
    buf = enc.buffer(5)
    for view, _ in kept:
        view[1, 0] = -7.0
    np.testing.assert_array_equal(buf.to_numpy(), np.zeros((3, 5), np.float32))
    enc.wrote(5)
    assert [enc.sum(c) for c in range(3)] == sums.tolist() and enc.samples == 13
    enc.close()
    assert mod.live_allocations() == base
    for view, data in kept:
        expected = data.copy()
        expected[0, 0], expected[1, 0] = 1e6, -7.0
        assert view.tolist() == expected.tolist()


@pytest.mark.parametrize("route", LENT_ROUTES)
def test_lent_encoder_next_buffer_and_close_revoke(ex, route):
    mod, fail = _lent_mod(ex, route)
    base = mod.live_allocations()
    with mod.Encoder(2) as enc:
        first = enc.buffer(3)
        view = memoryview(first)
        view[1, 2] = 4.5
        second = enc.buffer(2)  # C discards the first buffer: revoked before
        assert first.released and view.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 4.5]]
        memoryview(second)[0, 1] = 2.0
        kept = memoryview(second)
        with pytest.raises(ValueError):
            enc.wrote(3)  # more than the buffer holds: refused before C, buffer still lent
        assert not second.released
        with second.pinned("f", writable=True):  # a C call in flight on the buffer
            with pytest.raises(BufferError):
                enc.wrote(2)  # revoked, but C must not free it under the pinned call
            assert second.released
            with pytest.raises(BufferError):
                enc.buffer(2)  # still pinned: still refused
        assert enc.samples == 0
        enc.wrote(1)  # only [:, :1] counts
        assert enc.sum(0) == 0.0 and enc.samples == 1
        with pytest.raises(ValueError):
            enc.wrote(1)  # no buffer outstanding
        enc.wrote(0)
        with pytest.raises(IndexError):
            enc.sum(2)
        third = enc.buffer(4)
        last = memoryview(third)
        last[0, 3] = 8.0
    # Leaving the with block closed the encoder, revoking the outstanding buffer first.
    assert third.released and last.tolist() == [[0.0, 0.0, 0.0, 8.0], [0.0] * 4]
    assert kept.tolist() == [[0.0, 2.0], [0.0, 0.0]]
    assert mod.live_allocations() == base
    with pytest.raises(ValueError, match="closed"):
        enc.buffer(1)
    with pytest.raises(ValueError, match="closed"):
        enc.sum(0)
    enc.close()  # idempotent
    with pytest.raises(ValueError):
        mod.Encoder(0)
    try:
        for n in range(2):
            fail(n)
            with pytest.raises(MemoryError):
                mod.Encoder(2)
            assert mod.live_allocations() == base
        fail(-1)
        enc = mod.Encoder(2)
        buf = enc.buffer(2)
        view = memoryview(buf)
        for n in range(2):
            fail(n)
            with pytest.raises(MemoryError):
                enc.buffer(3)  # the previous buffer is revoked and gone anyway
            assert buf.released and mod.live_allocations() == base + 2
    finally:
        fail(-1)
    assert view.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    enc.close()
    assert mod.live_allocations() == base


TYPED_VIEWS_PYX = """
from cython cimport view

cdef class Keep:
    # Typed memoryviews of indirect memory, kept in an object past the loan.
    cdef const int[::view.indirect, ::1] ints
    cdef float[::view.indirect, ::1] floats

    def keep_ints(self, obj):
        self.ints = obj

    def keep_floats(self, obj):
        self.floats = obj

    def ints_list(self):
        return [[self.ints[i, j] for j in range(self.ints.shape[1])]
                for i in range(self.ints.shape[0])]

    def floats_list(self):
        return [[self.floats[i, j] for j in range(self.floats.shape[1])]
                for i in range(self.floats.shape[0])]

    def set_float(self, Py_ssize_t i, Py_ssize_t j, float x):
        self.floats[i, j] = x
"""


@pytest.mark.parametrize("route", LENT_ROUTES)
def test_lent_cython_typed_memoryviews_kept_past_the_loan(ex, route, cython_builder):
    mod, _ = _lent_mod(ex, route)
    typed = sys.modules.get("ib_lent_typed") or cython_builder("ib_lent_typed", TYPED_VIEWS_PYX)
    base = mod.live_allocations()
    keeps = []

    def on_block(block):
        keep = typed.Keep()
        keep.keep_ints(block)
        keeps.append(keep)

    mod.decode(3, 3, 4, on_block)
    for k, keep in enumerate(keeps):
        assert keep.ints_list() == _decoded(k, 3, 4).tolist()

    enc = mod.Encoder(2)
    buf = enc.buffer(3)
    keep = typed.Keep()
    keep.keep_floats(buf)
    keep.set_float(1, 2, 2.5)
    enc.wrote(3)
    assert enc.sum(1) == 2.5
    keep.set_float(1, 2, 100.0)  # into the snapshot
    keep.set_float(0, 0, 1.0)
    assert keep.floats_list() == [[1.0, 0.0, 0.0], [0.0, 0.0, 100.0]]
    assert enc.sum(1) == 2.5 and enc.sum(0) == 0.0
    enc.close()
    del keeps, keep
    assert mod.live_allocations() == base


def test_lent_views_outlive_everything(subprocess_python, examples_root, monkeypatch):
    # Freed memory is perturbed (MALLOC_PERTURB_), so that it cannot pass for the old values;
    # the encoders are dropped without close(), one of them in a reference cycle.
    monkeypatch.setenv("MALLOC_PERTURB_", "165")
    subprocess_python("""
        import gc
        from ib_examples import ctypes_only, lent

        def formula(k, nch, ns):
            return [[k * 1000 + c * 100 + s for s in range(ns)] for c in range(nch)]

        for mod in (lent, ctypes_only):
            base = mod.live_allocations()
            views = []
            mod.decode(4, 6, 9, lambda block: views.append(memoryview(block)))
            gc.collect()
            big = [bytearray(b"\x5a" * 4096) for _ in range(64)]  # reuse the freed memory
            for k, v in enumerate(views):
                assert v.tolist() == formula(k, 4, 9), (mod.__name__, k, v.tolist())

            enc = mod.Encoder(2)
            v = memoryview(enc.buffer(3))
            v[0, 1] = 3.0
            enc.wrote(3)
            v2 = memoryview(enc.buffer(2))
            v2[1, 1] = -1.0
            del enc  # never closed: the outstanding buffer is revoked, then freed
            gc.collect()
            assert mod.live_allocations() == base, mod.live_allocations() - base
            if mod is ctypes_only:
                enc = mod.Encoder(2)
                enc.cycle = enc
                v3 = memoryview(enc.buffer(2))
                v3[0, 0] = 6.0
                del enc
                gc.collect()
                assert mod.live_allocations() == base, mod.live_allocations() - base
                assert v3.tolist() == [[6.0, 0.0], [0.0, 0.0]]
            big = [bytearray(b"\x5a" * 4096) for _ in range(64)]
            assert v.tolist() == [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]
            assert v2.tolist() == [[0.0, 0.0], [0.0, -1.0]]
            del views, v, v2, big
        print("ok")
    """)


# -- the demo --------------------------------------------------------------------------------------

def test_demo_runs_and_passes(examples_root):
    proc = subprocess.run([sys.executable, "-m", "ib_examples.demo"], capture_output=True,
                          text=True, timeout=120, cwd=examples_root, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for line in ["1. owned", "2. borrowed", "3. nanny-managed", "4. NumPy in",
                 "5. ctypes only", "6. images", "7. N-D", "8. lent", "ib_matrix_free ran once",
                 "memoryview kept from block 0 -> [[0, 1, 2, 3], [100, 101, 102, 103]]",
                 "views kept past the callback read the values seen when it returned",
                 "the kept view reads [[100.0, 2.5, 0.0], [0.0, 0.0, -1.0]]",
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
