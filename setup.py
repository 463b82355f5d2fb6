"""Build the Cython extensions of indirect_buffer (metadata lives in pyproject.toml)."""
import os

from Cython.Build import cythonize
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
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
    )
    for name in ("buffer_impl", "nannies")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
    zip_safe=False,
)
