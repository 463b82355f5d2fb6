"""Shared fixtures: the suite always runs against the *installed* package."""
import fcntl
import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import indirect_buffer

REPO = Path(__file__).resolve().parent.parent


def pytest_report_header(config):
    return f"indirect_buffer {indirect_buffer.__version__} from {indirect_buffer.__file__}"


def pytest_sessionstart(session):
    # Importing the package from the checkout would test uncompiled or stale code.
    pkg = Path(indirect_buffer.__file__).resolve()
    if REPO in pkg.parents and os.environ.get("IB_ALLOW_SOURCE_TREE") != "1":
        raise pytest.UsageError(
            f"indirect_buffer was imported from the source tree ({pkg}); "
            "run the suite through `sh test_install.sh`")


def run_python(code, *, check=True, timeout=120):
    """Run code in a fresh interpreter (crash-prone cases: a segfault fails, not kills, the run).

    Returns the CompletedProcess; with check=True, a non-zero exit fails the calling test
    with the child's output.
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"child exited with {proc.returncode}\nstdout:\n{proc.stdout}\n"
                    f"stderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def subprocess_python():
    return run_python


def _run_setup(src_dir, name):
    """Run the setup.py written into src_dir (build_ext --inplace); fail the test on error."""
    proc = subprocess.run([sys.executable, "setup.py"], cwd=src_dir, check=False,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building {name} failed:\n{proc.stdout}\n{proc.stderr}")


def _run_setup_and_import(src_dir, name):
    _run_setup(src_dir, name)
    sys.path.insert(0, str(src_dir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(src_dir))


def build_cython_module(tmp_path, name, source):
    """Compile a Cython module against the installed indirect_buffer and import it."""
    src_dir = tmp_path / f"build_{name}"
    src_dir.mkdir(parents=True, exist_ok=True)
    (src_dir / f"{name}.pyx").write_text(textwrap.dedent(source))
    flags = sanitizer_flags()
    (src_dir / "setup.py").write_text(textwrap.dedent(f"""
        from setuptools import Extension, setup
        from Cython.Build import cythonize
        ext = Extension({name!r}, [{name + '.pyx'!r}], extra_compile_args=["-Wall"] + {flags!r},
                        extra_link_args={flags!r})
        setup(name={name!r}, ext_modules=cythonize([ext],
              compiler_directives={{"language_level": "3"}}), script_args=["build_ext", "--inplace"])
    """))
    return _run_setup_and_import(src_dir, name)


@pytest.fixture(scope="session")
def cython_builder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cython_modules")

    def build(name, source):
        return build_cython_module(root, name, source)

    return build


def sanitizer_flags():
    """Compiler and linker flags of the sanitizer build (IB_SANITIZE, as setup.py uses it)."""
    sanitize = os.environ.get("IB_SANITIZE", "")
    return [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer"] if sanitize else []


def build_c_extension(root, name, sources, *, extra_compile_args=(), define_macros=(),
                      include_dirs=(), cplusplus=False, import_it=True):
    """Compile a C (or C++) extension module against the installed indirect_buffer's headers
    (indirect_buffer.get_include()), warnings as errors, and import it.

    sources: {file name: text}. Returns the module, or with import_it=False the build
    directory (to import it in a subprocess, e.g. when the import is meant to fail).
    """
    src_dir = Path(root) / f"build_{name}"
    src_dir.mkdir(parents=True, exist_ok=True)
    for file_name, text in sources.items():
        (src_dir / file_name).write_text(text)
    flags = ["-Wall", "-Wextra", "-Werror", "-std=c++17" if cplusplus else "-std=c99",
             *extra_compile_args, *sanitizer_flags()]
    (src_dir / "setup.py").write_text(textwrap.dedent(f"""
        from setuptools import Extension, setup
        import indirect_buffer
        ext = Extension({name!r}, {sorted(sources)!r},
                        include_dirs=[indirect_buffer.get_include()] + {list(include_dirs)!r},
                        define_macros={list(define_macros)!r}, extra_compile_args={flags!r},
                        extra_link_args={sanitizer_flags()!r},
                        language={'c++' if cplusplus else 'c'!r})
        setup(name={name!r}, ext_modules=[ext], script_args=["build_ext", "--inplace"])
    """))
    if not import_it:
        _run_setup(src_dir, name)
        return src_dir
    return _run_setup_and_import(src_dir, name)


@pytest.fixture(scope="session")
def c_extension_builder(tmp_path_factory):
    """build(name, {file: text}, **options): a C/C++ extension module compiled against the
    installed indirect_buffer's C API headers (see build_c_extension)."""
    root = tmp_path_factory.mktemp("c_extensions")

    def build(name, sources, **options):
        return build_c_extension(root, name, sources, **options)

    return build


# Build products a copy of the checkout leaves out.
COPY_IGNORE = shutil.ignore_patterns("build", "*.egg-info", "*.so", "*.o", "__pycache__",
                                     "test_clib")


def copy_checkout(dest, names):
    """Copy these directories of the checkout (e.g. "examples", "clib") into dest, without
    build products."""
    for name in names:
        shutil.copytree(REPO / name, Path(dest) / name, ignore=COPY_IGNORE)


def example_build_env():
    """The environment that builds examples/ or examples/cpp from a copy: clib from the copied
    ../clib (never IB_CLIB_DIR), instrumented like the package in test_install.sh asan."""
    env = dict(os.environ)
    env.pop("IB_CLIB_DIR", None)
    if sanitizer_flags():
        env["CFLAGS"] = " ".join(sanitizer_flags())
    return env


def _run_shared_dir(config, tmp_path_factory):
    """A directory of this test run that every pytest-xdist worker sees: the parent of the
    workers' base temporary directories; a run without workers has its own. (Asked of the
    config, not of PYTEST_XDIST_WORKER, which a pytest started by a worker inherits.)"""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


def pip_install_once(config, tmp_path_factory, dist_name, project, copies):
    """pip-install a project of the checkout into the suite's virtualenv, once per test run.

    project: its directory relative to the checkout; copies: the checkout's directories to copy
    first (the project and whatever its build reads, e.g. clib), built in example_build_env().
    Whichever worker asks first installs; the others wait on a lock and find it installed:
    workers never race on the virtualenv, whatever the scheduling. Nothing is uninstalled:
    test_install.sh throws the virtualenv away, and the next run installs afresh. Returns the
    directory holding the copies.
    """
    shared = _run_shared_dir(config, tmp_path_factory)
    root = shared / f"pip_{dist_name}"
    with open(shared / "pip_install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one pip at a time in the virtualenv
        done = root / "INSTALLED"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            copy_checkout(root, copies)
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                 str(root / project)],
                env=example_build_env(), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                pytest.fail(f"pip install {project} failed ({proc.returncode}):\n"
                            f"{proc.stdout}\n{proc.stderr}")
            done.write_text(dist_name)
    importlib.invalidate_caches()
    return root
