"""Build ib_cpp: a pybind11 module binding clib through indirect_buffer_pybind11.h.

Where clib (ib_matrix.h, ib_matrix.c) is taken from, first match wins:
  1. $IB_CLIB_DIR, if set (an error if it does not hold ib_matrix.h);
  2. ./clib next to this file: a vendored copy, e.g. when you copy this project on its own;
  3. ../../clib: this repository's layout (examples/cpp/ and clib/).

clib is C99: it is compiled as a static library by setuptools' build_clib (with the C compiler
and C flags) and linked into the C++ extension module, which pybind11's helpers compile as C++17.
Build against the indirect_buffer and pybind11 you have installed:
    pip install --no-build-isolation ./examples/cpp
"""
import os
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

import indirect_buffer

HERE = Path(__file__).resolve().parent


def find_clib():
    env = os.environ.get("IB_CLIB_DIR")
    candidates = [Path(env)] if env else [HERE / "clib", HERE.parent.parent / "clib"]
    for path in candidates:
        if (path / "ib_matrix.h").is_file() and (path / "ib_matrix.c").is_file():
            return path.resolve()
    raise SystemExit(f"ib_cpp: clib not found in {', '.join(map(str, candidates))}; set "
                     "IB_CLIB_DIR to the directory holding ib_matrix.h and ib_matrix.c")


CLIB = find_clib()

ext = Pybind11Extension(
    "ib_cpp",
    ["src/ib_cpp.cpp"],
    # get_include(): indirect_buffer.h and indirect_buffer_pybind11.h, inside the package.
    include_dirs=[indirect_buffer.get_include(), str(CLIB)],
    depends=[str(CLIB / "ib_matrix.h")],
    cxx_std=17,
    extra_compile_args=["-Wall", "-Wextra"],
)

setup(
    # An absolute source path keeps the object file inside build/ (a relative ../../ path
    # would put it next to the sources).
    libraries=[("ib_matrix", {"sources": [str(CLIB / "ib_matrix.c")],
                              "include_dirs": [str(CLIB)]})],
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
)
