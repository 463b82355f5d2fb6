"""Build the Cython extensions of indirect_buffer (metadata lives in pyproject.toml)."""
import os
import sys

from setuptools import Extension, setup

# IB_SANITIZE=address builds the extensions with AddressSanitizer (see test_install.sh asan).
sanitize = os.environ.get("IB_SANITIZE", "")
extra_compile = ["-Wall"]
extra_link = []
if sanitize:
    extra_compile += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_link += [f"-fsanitize={sanitize}"]

extensions = [
    Extension(
        f"indirect_buffer.{name}",
        [f"indirect_buffer/{name}.pyx"],
        # include/: the public C API header, which capi.pxi implements.
        include_dirs=["indirect_buffer/include"],
        depends=["indirect_buffer/include/indirect_buffer.h"],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
    )
    for name in ("buffer_impl", "nannies")
]

# Commands that only describe the project (metadata, file lists, an sdist) need no generated C:
# the sdist ships the .pyx/.pxd/.pxi sources (MANIFEST.in) and excludes the .c files, and
# whoever builds it cythonizes then. Skipping cythonize there saves half a minute per sdist.
_DESCRIBE = {"egg_info", "dist_info", "sdist", "check", "--version", "--name"}
_BUILD = {"build", "build_ext", "build_py", "bdist_wheel", "bdist", "bdist_egg", "install",
          "develop", "editable_wheel"}
_args = set(sys.argv[1:])
if _args & _DESCRIBE and not _args & _BUILD:
    ext_modules = extensions
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    )

setup(ext_modules=ext_modules, zip_safe=False)
