"""Build ib_examples: Cython modules that cimport indirect_buffer and compile clib in.

Where clib (ib_matrix.h/.c, ib_stream.h/.c) is taken from, first match wins:
  1. $IB_CLIB_DIR, if set (an error if it does not hold them);
  2. ./clib next to this file: a vendored copy, e.g. when you copy this project on its own;
  3. ../clib: this repository's layout (examples/ and clib/ side by side).
pip builds a local directory in place, so 3. works for `pip install examples/`; when copying
the project elsewhere, copy clib/ beside it (or into it), or set IB_CLIB_DIR.

The package lives in src/ib_examples (a src layout: running `python -m ib_examples.demo` from
this directory imports the installed package, not these uncompiled sources).

Build requirements (see pyproject.toml): setuptools>=70.1 (it has bdist_wheel built in; older
ones need the separate `wheel` package), Cython>=3 and indirect_buffer itself,
whose .pxd files are found on sys.path at cythonize time. To compile against the
indirect_buffer you already have installed, build without isolation:
    pip install --no-build-isolation ./examples
"""
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
CLIB_FILES = ("ib_matrix.h", "ib_matrix.c", "ib_stream.h", "ib_stream.c", "ib_alloc.h")


def find_clib():
    env = os.environ.get("IB_CLIB_DIR")
    candidates = [Path(env)] if env else [HERE / "clib", HERE.parent / "clib"]
    for path in candidates:
        if all((path / name).is_file() for name in CLIB_FILES):
            # setuptools wants paths relative to setup.py (pip runs it from this directory).
            return Path(os.path.relpath(path.resolve(), HERE))
    raise SystemExit(f"ib_examples: clib not found in {', '.join(map(str, candidates))}; set "
                     f"IB_CLIB_DIR to the directory holding {', '.join(CLIB_FILES)}")


CLIB = find_clib()
# Every module gets its own compiled copy of clib (static linking, nothing to install or find at
# run time); each copy has its own allocation counter and frees only what it allocated.
clib = {"sources": [str(CLIB / name) for name in CLIB_FILES if name.endswith(".c")],
        "include_dirs": [str(CLIB)],
        "depends": [str(CLIB / name) for name in CLIB_FILES if name.endswith(".h")]}

cython_modules = [
    Extension(f"ib_examples.{name}", [f"src/ib_examples/{name}.pyx"] + clib["sources"],
              include_dirs=clib["include_dirs"], depends=clib["depends"])
    for name in ("owned", "borrowed", "nanny_managed", "numpy_in", "image", "tensor", "lent")
]
# For ctypes_only.py: an empty extension module carrying clib, loaded with ctypes.CDLL.
clib_shared = Extension("ib_examples._clib_shared", ["src/ib_examples/_clib_shared.c"]
                        + clib["sources"], include_dirs=clib["include_dirs"],
                        depends=clib["depends"])

setup(
    # include_path: where `from ib_examples cimport ib_matrix_decl` finds the .pxd.
    ext_modules=cythonize(cython_modules, compiler_directives={"language_level": "3"},
                          include_path=["src"],
                          build_dir="build/cython")  # generated .c files stay out of the tree
    + [clib_shared],
)
