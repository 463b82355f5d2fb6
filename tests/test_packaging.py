"""The installed package: version, public names, and the files downstream builds need."""
import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

import indirect_buffer

PKG_DIR = Path(indirect_buffer.__file__).resolve().parent


def test_version():
    assert isinstance(indirect_buffer.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", indirect_buffer.__version__)


def test_version_matches_metadata():
    from importlib.metadata import version
    assert version("indirect_buffer") == indirect_buffer.__version__


def test_version_matches_pyproject():
    pyproject = REPO / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("no checkout next to the tests")
    match = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject.read_text())
    assert match and match.group(1) == indirect_buffer.__version__


def test_public_imports():
    from indirect_buffer import BufferCollection2D, IndirectMemory2D
    from indirect_buffer.buffer_impl import BufferCollection2D as B2
    from indirect_buffer.buffer_impl import IndirectMemory2D as M2
    assert IndirectMemory2D is M2
    assert BufferCollection2D is B2
    assert issubclass(BufferCollection2D, IndirectMemory2D)
    for name in ("IndirectMemory2D", "BufferCollection2D", "__version__"):
        assert name in indirect_buffer.__all__
    for name in indirect_buffer.__all__:
        assert hasattr(indirect_buffer, name)


def test_nannies_module_imports():
    from indirect_buffer import nannies
    for name in ("FreeRowsAndTableNanny", "FreeTableNanny", "DeallocatorNanny"):
        assert isinstance(getattr(nannies, name), type)


def test_installed_not_source_tree():
    assert REPO not in PKG_DIR.parents


@pytest.mark.parametrize("name", ["buffer_impl.pxd", "nannies.pxd", "py.typed",
                                  "buffer_impl.pyi", "__init__.pyi"])
def test_installed_files(name):
    assert (PKG_DIR / name).is_file(), sorted(p.name for p in PKG_DIR.iterdir())


def test_installed_stub_files():
    stubs = {p.name for p in PKG_DIR.glob("*.pyi")}
    assert "buffer_impl.pyi" in stubs
    for stub in PKG_DIR.glob("*.pyi"):
        ast.parse(stub.read_text(), filename=str(stub))


def test_pxd_declares_the_cimport_api():
    pxd = (PKG_DIR / "buffer_impl.pxd").read_text()
    for name in ("cdef class IndirectMemory2D", "cdef class BufferCollection2D", " create(",
                 " from_ptr(", " from_ptr_with_memory_nanny(", " from_ptr_with_offset(",
                 "ptr_table(", "double_table(", "int_table("):
        assert name in pxd, name
    nannies = (PKG_DIR / "nannies.pxd").read_text()
    for name in ("FreeRowsAndTableNanny", "FreeTableNanny", "DeallocatorNanny"):
        assert f"cdef class {name}" in nannies


def _stub_classes():
    tree = ast.parse((PKG_DIR / "buffer_impl.pyi").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {n.name for n in node.body
                              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return out


def test_stub_matches_runtime():
    from indirect_buffer import buffer_impl
    classes = _stub_classes()
    assert {"IndirectMemory", "IndirectMemory2D", "BufferCollection2D"} <= set(classes)
    for cls_name, members in classes.items():
        cls = getattr(buffer_impl, cls_name)
        for member in members:
            if member == "__buffer__" and not hasattr(cls, "__buffer__"):
                continue  # only Python >= 3.12 exposes the buffer slot as __buffer__
            assert hasattr(cls, member), f"{cls_name}.{member} is in the stub, not at runtime"
    for cls_name, bases in (("IndirectMemory", ()), ("IndirectMemory2D", ("IndirectMemory",))):
        runtime_public = {n for n in dir(getattr(buffer_impl, cls_name)) if not n.startswith("_")}
        in_stub = set(classes[cls_name]).union(*[classes[b] for b in bases])
        assert runtime_public <= in_stub, (
            f"public names of {cls_name} missing from the stub: {runtime_public - in_stub}")


def test_public_methods_have_docstrings():
    from indirect_buffer import IndirectMemory, IndirectMemory2D
    for cls in (IndirectMemory, IndirectMemory2D):
        for name in dir(cls):
            if name.startswith("_"):
                continue
            doc = getattr(cls, name).__doc__
            assert doc and doc.strip(), f"{cls.__name__}.{name} has no docstring"
