"""The C API (indirect_buffer.h, the _C_API capsule), driven from a plain C extension module.

tests/capi_module/ib_capi_test.c is compiled at test time against the installed package's
headers (indirect_buffer.get_include()), with -Wall -Wextra -Werror (and the sanitizer when
IB_SANITIZE is set). It calls every C API function, error paths included; what C reads
through a table is compared with NumPy and memoryview, and its allocation counters prove that
every C-allocated table is freed exactly once.
"""
import gc
import re
import shutil
import subprocess
import sys
import tarfile
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_python

import indirect_buffer
from indirect_buffer import BufferCollection2D, IndirectMemory2D, as_indirect

try:
    import _testbuffer
except ImportError:  # a CPython built without its test modules
    _testbuffer = None

IB_COPY = 1
SOURCES = REPO / "tests" / "capi_module"


@pytest.fixture(scope="module")
def capi(c_extension_builder):
    sources = {p.name: p.read_text() for p in SOURCES.glob("ib_capi_*.c")}
    return c_extension_builder("ib_capi_test", sources)


@pytest.fixture
def counted(capi):
    """The counters before the test; afterwards, nothing this module allocated is left."""
    before = capi.counters()
    yield before
    gc.collect()
    after = capi.counters()
    assert after["live_blocks"] == before["live_blocks"], after
    assert after["bad_context"] == 0, after


def row_bytes(a):
    """What C must read through a row table of a: each row's bytes."""
    a = np.asarray(a)
    return [np.ascontiguousarray(a[i]).tobytes() for i in range(a.shape[0])]


# -- the header, the capsule, the version ------------------------------------------------------

def test_headers_ship_in_the_sdist(tmp_path):
    # The wheel's copy is what get_include() finds (above); the sdist must carry them too, and
    # the C and C++ sources the tests and examples/cpp compile.
    root = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "*.so", "*.c", "__pycache__")
    root.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "indirect_buffer", root / "indirect_buffer", ignore=ignore)
    for name in ("tests", "examples", "clib"):
        shutil.copytree(REPO / name, root / name,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so", "__pycache__"))
    proc = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--formats", "gztar",
                           "--dist-dir", str(tmp_path / "dist")], cwd=root, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sdist,) = (tmp_path / "dist").glob("indirect_buffer-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    for name in ("indirect_buffer/include/indirect_buffer.h",
                 "indirect_buffer/include/indirect_buffer_pybind11.h", "indirect_buffer/capi.pxi",
                 "tests/capi_module/ib_capi_test.c", "tests/capi_module/ib_capi_noimport.c",
                 "tests/capi_module/ib_pybind11_test.cpp", "examples/cpp/src/ib_cpp.cpp",
                 "examples/cpp/setup.py", "examples/cpp/pyproject.toml", "examples/cpp/README.md"):
        assert name in names, name


def test_installed_headers():
    include = Path(indirect_buffer.get_include())
    assert sorted(p.name for p in include.glob("*.h")) == [
        "indirect_buffer.h", "indirect_buffer_pybind11.h"]


def test_get_include_is_the_installed_header_directory():
    path = Path(indirect_buffer.get_include())
    assert path.is_absolute() and path.is_dir()
    assert (path / "indirect_buffer.h").is_file()
    assert Path(indirect_buffer.__file__).resolve().parent in path.resolve().parents
    assert REPO not in path.resolve().parents


def test_capsule_and_version(capi):
    from indirect_buffer import buffer_impl
    assert type(buffer_impl._C_API).__name__ == "PyCapsule"
    assert "indirect_buffer.buffer_impl._C_API" in repr(buffer_impl._C_API)
    header = (Path(indirect_buffer.get_include()) / "indirect_buffer.h").read_text()
    major = int(re.search(r"#define IB_CAPI_VERSION_MAJOR (\d+)", header).group(1))
    minor = int(re.search(r"#define IB_CAPI_VERSION_MINOR (\d+)", header).group(1))
    got_major, got_minor, size = capi.api_version()
    assert (got_major, got_minor) == (major, minor) == (1, 1)
    assert size >= 4 * 2 + 8 * 8  # versions, struct_size, the type and seven functions
    assert capi.type_object() is IndirectMemory2D
    capi.reimport()  # idempotent


VERSION_MODULE = """
#define IB_CAPI_VERSION_{which} {value}
#include <indirect_buffer.h>

static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, NULL,
                                 NULL, NULL, NULL, NULL}};

PyMODINIT_FUNC PyInit_{name}(void)
{{
    if (ib_import() < 0)
        return NULL;
    return PyModule_Create(&def);
}}
"""


def _version_module(builder, name, which, value):
    src = VERSION_MODULE.format(which=which, value=value, name=name)
    return builder(name, {f"{name}.c": src}, import_it=False)


def _import_in_child(build_dir, name, before=""):
    return run_python(f"""
        import sys
        sys.path.insert(0, {str(build_dir)!r})
        {before}
        try:
            import {name}
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported")
    """)


@pytest.mark.parametrize("which, value, expected", [
    ("MINOR", 99, ("indirect_buffer C API 1.1 is installed, but this module was built against "
                   "C API 1.99 and needs 1.99 or a later 1.x: upgrade indirect_buffer")),
    ("MAJOR", 2, ("indirect_buffer C API 1.1 is installed, but this module was built against "
                  "C API 2.1: the major versions differ")),
    ("MAJOR", 0, "C API 0.1: the major versions differ"),
])
def test_ib_import_refuses_other_versions(c_extension_builder, which, value, expected):
    name = f"ib_version_{which.lower()}_{value}"
    build = _version_module(c_extension_builder, name, which, value)
    proc = _import_in_child(build, name)
    assert "ImportError:" in proc.stdout and expected in proc.stdout, proc.stdout + proc.stderr


def test_ib_import_accepts_an_older_minor(c_extension_builder):
    # A module built against minor 0 runs on any installed 1.x.
    build = _version_module(c_extension_builder, "ib_version_minor_0", "MINOR", 0)
    proc = _import_in_child(build, "ib_version_minor_0")
    assert proc.stdout.strip() == "imported", proc.stdout + proc.stderr


@pytest.mark.parametrize("tamper, expected", [
    ("del buffer_impl._C_API", ("the installed indirect_buffer has no C API "
                                "(indirect_buffer.buffer_impl._C_API is missing)")),
    ("buffer_impl._C_API = object()", ("indirect_buffer.buffer_impl._C_API is not a capsule "
                                       "named indirect_buffer.buffer_impl._C_API")),
])
def test_ib_import_without_a_usable_capsule(c_extension_builder, tamper, expected):
    build = _version_module(c_extension_builder, "ib_version_minor_0b", "MINOR", 0)
    proc = _import_in_child(build, "ib_version_minor_0b",
                            before=f"from indirect_buffer import buffer_impl; {tamper}")
    assert "ImportError:" in proc.stdout and expected in proc.stdout, proc.stdout + proc.stderr


def test_wrappers_before_ib_import(capi):
    # ib_capi_noimport.c is a second translation unit that never called ib_import().
    out = capi.noimport()
    message = ("indirect_buffer C API not imported in this translation unit: call "
               "ib_import() first")
    assert out["acquire"] == (-1, "RuntimeError", message)
    assert out["release"] == (1, "", "")  # *out zeroed, release a no-op, nothing raised
    for name in ("create", "wrap", "wrap_borrowed"):
        assert out[name] == (None, "RuntimeError", message), name
    assert out["check"] == (-1, "RuntimeError", message)
    assert out["wrap_dealloc_ran"] == 1  # ownership passed even so


# -- ib_table_acquire on IndirectMemory2D -------------------------------------------------------

def test_acquire_memory_pins_and_reads(capi):
    a = np.arange(12.0).reshape(3, 4)
    mem = IndirectMemory2D.create_memory(3, 4, "d")
    mem.copy_from(a)
    h = capi.acquire(mem, b"d", 1, 0, 0)
    f = capi.fields(h)
    assert (f["rows"], f["cols"], f["itemsize"], f["row_offset"], f["readonly"]) == (3, 4, 8, 0, 0)
    assert f["format"] == b"d" and f["memory"] is mem and f["table"] == mem.address
    assert capi.rows_bytes(h) == row_bytes(a)
    assert mem.export_count == 1
    for action in (mem.release, lambda: mem.reinterpret_data("q"), mem.make_read_only):
        with pytest.raises(BufferError, match="exported buffer"):
            action()
    capi.write_double(h, 2, 3, -5.5)
    assert memoryview(mem)[2, 3] == -5.5
    capi.release(h)
    assert mem.export_count == 0
    capi.release(h)  # twice: nothing more happens
    assert mem.export_count == 0
    mem.release()
    assert mem.released
    del h
    gc.collect()


def test_acquire_any_format_and_read_only(capi):
    mem = IndirectMemory2D.create_memory(2, 5, "i", readonly=True)
    h = capi.acquire(mem, None, 0, 0, 0)  # NULL format: any element type
    f = capi.fields(h)
    assert f["format"] == b"i" and f["itemsize"] == 4 and f["readonly"] == 1
    assert capi.rows_bytes(h) == [bytes(20)] * 2
    with pytest.raises(ValueError, match="cannot write"):
        capi.write_double(h, 0, 0, 1.0)
    del h  # the capsule's destructor releases the table
    gc.collect()
    assert mem.export_count == 0


def test_acquire_native_aliases(capi):
    # 'q' and 'l' are the same 8-byte integer on LP64: the typed accessors accept either.
    mem = IndirectMemory2D.create_memory(1, 1, "l")
    capi.release(capi.acquire(mem, b"q", 1, 0, 0))
    assert mem.export_count == 0


@pytest.mark.parametrize("args, exc, message", [
    ((b"i", 0, 0, 0), TypeError, "element format is 'd', not 'i'"),
    ((b"zz", 0, 0, 0), ValueError, "unknown format 'zz'"),
    ((b"d", 1, 0, 0), BufferError, "writable table requested from read-only memory"),
    ((b"d", 0, 8, 0), ValueError, (r"rows start 0 bytes after each row pointer \(row_offset\), "
                                   "not 8 as requested")),
    ((b"d", 0, 0, 4), ValueError, "ib_table_acquire: unknown flags 0x4"),
])
def test_acquire_memory_errors(capi, args, exc, message):
    mem = IndirectMemory2D.create_memory(2, 2, "d", readonly=True)
    with pytest.raises(exc, match=message):
        capi.acquire(mem, *args)  # acquire() also checks that *out came back zeroed
    assert mem.export_count == 0


def test_acquire_released_memory(capi):
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    mem.release()
    with pytest.raises(ValueError, match="operation on released IndirectMemory2D"):
        capi.acquire(mem, b"d", 0, 0, 0)


def test_acquire_null_arguments(capi):
    with pytest.raises(ValueError, match="ib_table_acquire: obj is NULL"):
        capi.acquire(None, b"d", 0, 0, 0)
    mem = IndirectMemory2D.create_memory(1, 1, "d")
    with pytest.raises(ValueError, match="ib_table_acquire: out is NULL"):
        capi.acquire_null_out(mem)
    assert mem.export_count == 0


def test_acquire_with_row_offset(capi, counted):
    # A 1-based (Numerical Recipes) table: rows start one double after table[i].
    mem = capi.wrap_new(2, 3, b"d", 0, 8, "ok")
    assert mem.row_offset == 8
    with pytest.raises(ValueError, match="not 0 as requested"):
        capi.acquire(mem, b"d", 0, 0, 0)
    h = capi.acquire(mem, b"d", 0, 8, 0)
    assert capi.fields(h)["row_offset"] == 8
    assert capi.rows_bytes(h) == row_bytes(np.arange(6.0).reshape(2, 3))
    capi.release(h)
    del mem, h


def test_acquire_collection(capi):
    rows = [np.arange(3.0), np.arange(3.0, 6.0)]
    coll = BufferCollection2D(rows)
    assert capi.check(coll) == 1
    h = capi.acquire(coll, b"d", 1, 0, 0)
    assert capi.fields(h)["memory"] is coll
    capi.write_double(h, 1, 2, 50.0)
    assert rows[1][2] == 50.0
    capi.release(h)
    assert coll.export_count == 0


def test_release_edge_cases_keep_the_pending_exception(capi):
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    assert capi.release_edge_cases(mem) is True
    assert mem.export_count == 0


# -- ib_table_acquire on other buffers: zero-copy row views ---------------------------------------

@pytest.mark.parametrize("a", [
    np.arange(12.0).reshape(3, 4),
    np.arange(5.0),                                       # 1-D: one row
    np.arange(24, dtype=np.float64).reshape(2, 3, 4),     # N-D: rows of 12
    np.arange(40.0).reshape(4, 10)[::2],                  # strided rows, contiguous each
    np.zeros((0, 3)),
], ids=["2d", "1d", "3d", "every-other-row", "empty"])
def test_acquire_ndarray_zero_copy(capi, a):
    h = capi.acquire(a, b"d", 1, 0, 0)
    f = capi.fields(h)
    expected = a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1 if a.size else 3)
    assert (f["rows"], f["cols"], f["readonly"]) == (expected.shape[0], expected.shape[1], 0)
    assert isinstance(f["memory"], IndirectMemory2D) and f["memory"].export_count == 1
    assert capi.rows_bytes(h) == row_bytes(expected)
    if a.size:
        capi.write_double(h, 0, 0, 123.0)  # zero-copy: C writes into the array
        assert a.ravel()[0] == 123.0 if a.ndim < 3 else a[0, 0, 0] == 123.0
    capi.release(h)
    assert f["memory"].export_count == 0


def test_acquire_image_rows(capi):
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    h = capi.acquire(img, b"B", 1, 0, 0)
    f = capi.fields(h)
    assert (f["rows"], f["cols"], f["itemsize"], f["format"]) == (2, 9, 1, b"B")
    assert capi.rows_bytes(h) == row_bytes(img)
    capi.release(h)


def test_acquire_keeps_the_source_alive(capi):
    a = np.arange(6.0).reshape(2, 3)
    ref = weakref.ref(a)
    h = capi.acquire(a, b"d", 0, 0, 0)
    del a
    gc.collect()
    assert ref() is not None
    assert capi.rows_bytes(h) == row_bytes(np.arange(6.0).reshape(2, 3))
    capi.release(h)
    del h
    gc.collect()
    assert ref() is None


def test_acquire_bytearray_and_bytes(capi):
    data = bytearray(b"abcdef")
    h = capi.acquire(data, b"B", 1, 0, 0)
    assert capi.fields(h)["rows"] == 1 and capi.rows_bytes(h) == [b"abcdef"]
    with pytest.raises(BufferError):
        data.append(1)  # the row view holds the bytearray's buffer: no resize under C
    capi.release(h)
    del h
    gc.collect()
    data.append(1)
    with pytest.raises(BufferError, match="writable table requested, but the bytes is read-only"):
        capi.acquire(b"abc", b"B", 1, 0, 0)
    capi.release(capi.acquire(b"abc", b"B", 0, 0, 0))


@pytest.mark.skipif(_testbuffer is None, reason="needs CPython's _testbuffer")
def test_acquire_pil_buffer_zero_copy(capi):
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    pil = _testbuffer.ndarray(a.ravel().tolist(), shape=[2, 3], format="i",
                              flags=_testbuffer.ND_PIL | _testbuffer.ND_WRITABLE)
    assert memoryview(pil).suboffsets == (0, -1)
    h = capi.acquire(pil, b"i", 1, 0, 0)
    assert capi.rows_bytes(h) == row_bytes(a)
    capi.release(h)


def test_read_only_array(capi):
    a = np.arange(6.0).reshape(2, 3)
    a.setflags(write=False)
    with pytest.raises(BufferError,
                       match="writable table requested, but the ndarray is read-only"):
        capi.acquire(a, b"d", 1, 0, 0)
    h = capi.acquire(a, b"d", 0, 0, 0)
    assert capi.fields(h)["readonly"] == 1
    capi.release(h)


def test_wrong_element_type(capi):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    for flags in (0, IB_COPY):
        with pytest.raises(TypeError, match=r"element format is 'l', not 'd'"):
            capi.acquire(a, b"d", 0, 0, flags)
    # A copy keeps a buffer's element type: IB_COPY never converts values silently.
    with pytest.raises(TypeError, match=r"element format is 'l', not 'd'"):
        capi.acquire(np.asfortranarray(a), b"d", 0, 0, IB_COPY)


# -- IB_COPY ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    lambda: np.arange(24.0).reshape(3, 8)[:, ::2],
    lambda: np.arange(24.0).reshape(2, 3, 4).transpose(0, 2, 1),
], ids=["fortran", "column-stride", "3d-transposed"])
def test_non_contiguous_rows_copy_only_for_read_only(capi, make):
    a = make()
    with pytest.raises(BufferError, match="not C-contiguous|not contiguous"):
        capi.acquire(a, b"d", 0, 0, 0)
    with pytest.raises(BufferError, match="IB_COPY copies only for read-only requests: writes "
                                          "to a copy would not reach the ndarray"):
        capi.acquire(a, b"d", 1, 0, IB_COPY)
    h = capi.acquire(a, b"d", 0, 0, IB_COPY)
    f = capi.fields(h)
    expected = np.ascontiguousarray(a).reshape(a.shape[0], -1)
    assert f["readonly"] == 1 and (f["rows"], f["cols"]) == expected.shape
    assert capi.rows_bytes(h) == row_bytes(expected)
    a[0, 0] = -1.0  # an owned copy: later changes to a do not show
    assert capi.rows_bytes(h) == row_bytes(expected)
    assert capi.sum_nogil(a, IB_COPY) == pytest.approx(float(a.sum()))
    capi.release(h)


def test_sequences(capi):
    data = [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(TypeError, match=r"cannot get a table from list: neither an "
                                        r"IndirectMemory2D nor a buffer \(pass IB_COPY"):
        capi.acquire(data, b"d", 0, 0, 0)
    with pytest.raises(TypeError, match=r"cannot get a writable table from list: .*a copy "
                                        r"would not pass writes back"):
        capi.acquire(data, b"d", 1, 0, IB_COPY)
    h = capi.acquire(data, b"d", 0, 0, IB_COPY)  # values converted to the format asked for
    assert capi.fields(h)["format"] == b"d"
    assert capi.rows_bytes(h) == row_bytes(np.array(data, dtype=np.float64))
    capi.release(h)
    assert capi.sum_nogil(data, IB_COPY) == 21.0
    assert capi.sum_nogil([1.5, 2.5], IB_COPY) == 4.0  # 1-D: one row
    with pytest.raises(ValueError, match="scalar"):
        capi.acquire(42, b"d", 0, 0, IB_COPY)
    with pytest.raises(TypeError, match="cannot get a table from int"):
        capi.acquire(42, b"d", 0, 0, 0)
    with pytest.raises(TypeError, match="cannot get a table from NoneType"):
        capi.sum_nogil(None, IB_COPY)


def test_sum_without_the_gil_matches_numpy(capi):
    rng = np.random.default_rng(5)
    for shape in [(1, 1), (7, 3), (100, 17)]:
        a = rng.standard_normal(shape)
        expected = float(a.sum())
        assert capi.sum_nogil(a, 0) == pytest.approx(expected)
        assert capi.sum_nogil(as_indirect(a), 0) == pytest.approx(expected)
        assert capi.sum_nogil(IndirectMemory2D.view_from_rows(a), 0) == pytest.approx(expected)


# -- ib_create ----------------------------------------------------------------------------------------

def test_create(capi):
    mem = capi.create(2, 3, b"d", 0)
    assert isinstance(mem, IndirectMemory2D)
    assert (mem.shape, mem.format, mem.readonly) == ((2, 3), "d", False)
    assert mem.to_numpy().tolist() == [[0.0] * 3] * 2
    assert capi.create(1, 2, b"2i", 1).readonly is True
    assert sys.getrefcount(mem) == 2  # a new reference, not a leaked extra one


@pytest.mark.parametrize("args, exc, message", [
    ((2, 3, None, 0), ValueError, "format is NULL"),
    ((2, 3, b"", 0), ValueError, "format must not be empty"),
    ((2, 3, b"dz", 0), ValueError, "unknown format 'dz'"),
    ((-1, 3, b"d", 0), ValueError, "rows must be >= 0, got -1"),
    ((1, -3, b"d", 0), ValueError, "cols must be >= 0, got -3"),
    ((2**62, 2**62, b"d", 0), MemoryError, "overflows"),
])
def test_create_errors(capi, args, exc, message):
    with pytest.raises(exc, match=message):
        capi.create(*args)


# -- ib_wrap: C-allocated tables, freed exactly once ----------------------------------------------------

def test_wrap_frees_after_the_last_view(capi, counted):
    mem = capi.wrap_new(3, 4, b"d", 0, 0, "ok")
    c = capi.counters()
    assert c["live_blocks"] == counted["live_blocks"] + 4  # the table and three rows
    assert mem.to_numpy().tolist() == np.arange(12.0).reshape(3, 4).tolist()
    view = memoryview(mem)
    view[1, 1] = 0.5
    ref = weakref.ref(mem)
    del mem
    gc.collect()
    assert ref() is not None and capi.counters()["dealloc_calls"] == c["dealloc_calls"]
    assert view[1, 1] == 0.5
    view.release()
    gc.collect()
    c2 = capi.counters()
    assert c2["dealloc_calls"] == c["dealloc_calls"] + 1
    assert c2["live_blocks"] == counted["live_blocks"]


def test_wrap_frees_at_release(capi, counted):
    mem = capi.wrap_new(2, 2, b"d", 1, 0, "ok")
    assert mem.readonly
    calls = capi.counters()["dealloc_calls"]
    h = capi.acquire(mem, b"d", 0, 0, 0)
    with pytest.raises(BufferError):
        mem.release()  # pinned by C
    capi.release(h)
    mem.release()
    assert capi.counters()["dealloc_calls"] == calls + 1
    del mem
    gc.collect()
    assert capi.counters()["dealloc_calls"] == calls + 1


@pytest.mark.parametrize("args, message", [
    ((3, 2, b"d", 0, 0, "null_row"), "row 2 of the pointer table is NULL"),
    ((2, 2, b"zz", 0, 0, "ok"), "unknown format 'zz'"),
    ((2, 2, None, 0, 0, "ok"), "format is NULL"),
    ((2, -2, b"d", 0, 0, "ok"), "cols must be >= 0, got -2"),
    ((-1, 2, b"d", 0, 0, "ok"), "rows must be >= 0, got -1"),
    ((2, 2, b"d", 0, -8, "ok"), "row_offset must be >= 0, got -8"),
])
def test_wrap_failure_has_freed_the_table_once(capi, counted, args, message):
    calls = capi.counters()["dealloc_calls"]
    with pytest.raises(ValueError, match=message):
        capi.wrap_new(*args)
    # Before wrap returned, not at some later collection.
    c = capi.counters()
    assert c["dealloc_calls"] == calls + 1
    assert c["live_blocks"] == counted["live_blocks"]
    gc.collect()
    assert capi.counters()["dealloc_calls"] == calls + 1


def test_wrap_null_arguments(capi, counted):
    calls = capi.counters()["dealloc_calls"]
    with pytest.raises(ValueError, match="the pointer table is NULL"):
        capi.wrap_new(2, 2, b"d", 0, 0, "null_table")
    with pytest.raises(ValueError, match="dealloc is NULL: use ib_wrap_borrowed"):
        capi.wrap_new(2, 2, b"d", 0, 0, "null_dealloc")  # the test module frees the table
    assert capi.counters()["dealloc_calls"] == calls


def test_wrap_many_views_and_rows(capi, counted):
    mem = capi.wrap_new(50, 7, b"d", 0, 0, "ok")
    calls = capi.counters()["dealloc_calls"]
    views = [memoryview(mem) for _ in range(5)]
    copy = mem.copy()
    del mem
    for v in views[:-1]:
        v.release()
    gc.collect()
    assert capi.counters()["dealloc_calls"] == calls
    assert views[-1].tolist() == np.arange(350.0).reshape(50, 7).tolist()
    del views
    gc.collect()
    assert capi.counters()["dealloc_calls"] == calls + 1
    assert copy.to_numpy().sum() == np.arange(350.0).sum()


# -- ib_wrap_borrowed ----------------------------------------------------------------------------------

class Owner:
    pass


def test_wrap_borrowed_keeps_owner_alive(capi):
    owner = Owner()
    ref = weakref.ref(owner)
    mem = capi.wrap_borrowed_static(owner, False, False, b"d")
    assert mem.readonly and mem.to_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]
    view = memoryview(mem)
    del owner, mem
    gc.collect()
    assert ref() is not None
    assert view.tolist() == [[1, 2, 3], [4, 5, 6]]
    view.release()
    gc.collect()
    assert ref() is None


def test_wrap_borrowed_without_owner(capi):
    mem = capi.wrap_borrowed_static(None, True, False, b"d")  # owner NULL
    assert mem.to_numpy().sum() == 21.0
    mem.release()
    with pytest.raises(ValueError, match="the pointer table is NULL"):
        capi.wrap_borrowed_static(None, True, True, b"d")
    with pytest.raises(ValueError, match="format is NULL"):
        capi.wrap_borrowed_static(Owner(), False, False, None)
    mem = capi.wrap_borrowed_static(None, True, False, b"d")
    with pytest.raises(TypeError, match="element format is 'd', not 'i'"):
        capi.acquire(mem, b"i", 0, 0, 0)


def test_wrap_borrowed_owner_frees_after_last_view(capi, counted):
    frees = capi.counters()["owner_frees"]
    mem = capi.wrap_borrowed_owned(3, 2, b"d")
    view = memoryview(mem)
    del mem
    gc.collect()
    assert capi.counters()["owner_frees"] == frees
    assert view.tolist() == np.arange(6.0).reshape(3, 2).tolist()
    view.release()
    gc.collect()
    assert capi.counters()["owner_frees"] == frees + 1
    with pytest.raises(ValueError, match="unknown format"):
        capi.wrap_borrowed_owned(3, 2, b"zz")
    assert capi.counters()["owner_frees"] == frees + 2  # the owner died with the failure


# -- ib_check ---------------------------------------------------------------------------------------

def test_check(capi):
    assert capi.check(IndirectMemory2D.create_memory(1, 1, "d")) == 1
    assert capi.check(BufferCollection2D([b"ab"])) == 1
    for obj in (np.zeros((2, 2)), b"", 1, None):  # None passes NULL
        assert capi.check(obj) == 0


# -- the README's C example -----------------------------------------------------------------------------

def readme_c_example():
    text = (REPO / "README.md").read_text()
    section = text.split("## C and C++", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```c\n(.*?)```", section, re.DOTALL)
    assert match, "README's C and C++ section has no ```c block"
    return match.group(1)


def test_readme_c_example(c_extension_builder):
    mod = c_extension_builder("matrixmod", {"matrixmod.c": readme_c_example()})
    a = np.arange(12.0).reshape(3, 4)
    assert mod.total(a) == a.sum()
    assert mod.total(np.asfortranarray(a)) == a.sum()  # copied: only read
    assert mod.total([[1.0, 2.0], [3.0, 4.0]]) == 10.0
    with pytest.raises(TypeError, match="element format is 'l', not 'd'"):
        mod.total(np.arange(4).reshape(2, 2))
    m = mod.identity(3)
    assert isinstance(m, IndirectMemory2D)
    assert m.to_numpy().tolist() == np.eye(3).tolist()
    view = memoryview(m)
    del m
    view[0, 1] = 2.0
    assert mod.total(view.obj) == 5.0
    view.release()


def test_readme_c_example_is_warning_free_as_cpp(c_extension_builder):
    # The header is usable from C++ too: the same file compiled as C++17, -Werror.
    src = readme_c_example()
    c_extension_builder("matrixmod_cpp", {"matrixmod_cpp.cpp": src.replace(
        "PyInit_matrixmod", "PyInit_matrixmod_cpp").replace('"matrixmod"', '"matrixmod_cpp"')},
        cplusplus=True, import_it=False)
