"""What a new user meets first (issue 9): the examples' README commands typed as written into a
brand-new virtualenv, importing the uncompiled source tree, sdists that do not cythonize.

The fresh-virtualenv test is slow (~1-2 min: it builds indirect_buffer and examples/ from
scratch, as a user would); deselect it with `-k "not fresh_venv"`.
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Build products and caches: a copy must look like a fresh checkout.
_IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "*.so", "*.c", "__pycache__",
                                 ".pytest_cache", ".hypothesis", "test_clib", "*.html")
_KEEP_C = shutil.ignore_patterns("build", "*.egg-info", "*.so", "__pycache__", "test_clib")


def _copy_checkout(dest):
    """The files of a checkout that building needs (clib's and examples' .c files are sources)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "indirect_buffer", dest / "indirect_buffer", ignore=_IGNORE)
    for name in ("clib", "examples"):
        shutil.copytree(REPO / name, dest / name, ignore=_KEEP_C)
    return dest


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "LD_PRELOAD", "IB_SANITIZE", "VIRTUAL_ENV",
                        "PYTHONMALLOC", "ASAN_OPTIONS", "IB_CLIB_DIR", "IB_LIBIBMATRIX")}
    env.update(extra)
    return env


def readme_commands():
    """The first ```sh block of examples/README.md, verbatim."""
    text = (REPO / "examples" / "README.md").read_text()
    match = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert match, "examples/README.md has no ```sh block"
    return match.group(1)


# -- importing the source checkout --------------------------------------------------------------

def _import_source_tree(cwd):
    return subprocess.run([sys.executable, "-c", "import indirect_buffer"], cwd=cwd,
                          env=_clean_env(), capture_output=True, text=True, timeout=60,
                          check=False)


def _assert_explained(proc):
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: "), proc.stderr
    assert "compiled extension module (buffer_impl) is missing" in last
    assert "source checkout" in last and "pip install ." in last
    assert "run from another directory" in last


def test_importing_the_uncompiled_source_tree_says_what_to_do(tmp_path):
    # A copy without build products: what a fresh clone is, whatever was built in REPO itself.
    root = _copy_checkout(tmp_path / "checkout")
    _assert_explained(_import_source_tree(root))


def test_importing_the_repo_root_without_a_build(tmp_path):
    # The checkout itself, as CI's fresh clone is (skipped where someone built in place).
    if any((REPO / "indirect_buffer").glob("buffer_impl*.so")):
        pytest.skip("the checkout holds an in-place build")
    _assert_explained(_import_source_tree(REPO))


def test_other_import_errors_are_not_masked(tmp_path):
    # Only our own missing extension is explained; an error inside it propagates unchanged.
    pkg = _copy_checkout(tmp_path / "checkout") / "indirect_buffer"
    (pkg / "buffer_impl.py").write_text("import a_module_that_does_not_exist_ib\n")
    proc = _import_source_tree(pkg.parent)
    assert proc.returncode != 0
    assert "No module named 'a_module_that_does_not_exist_ib'" in proc.stderr
    assert "compiled extension" not in proc.stderr


# -- an sdist ships sources, not generated C, and builds without cythonizing ----------------

def test_sdist_does_not_cythonize_and_ships_the_cython_sources(tmp_path):
    root = _copy_checkout(tmp_path / "checkout")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--formats", "gztar",
                           "--dist-dir", str(tmp_path / "dist")], cwd=root, env=_clean_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((root / "indirect_buffer").glob("*.c")), "setup.py sdist ran cythonize"
    (sdist,) = (tmp_path / "dist").glob("indirect_buffer-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    sources = {p.relative_to(REPO).as_posix() for pattern in ("*.pyx", "*.pxd", "*.pxi", "*.pyi")
               for p in (REPO / "indirect_buffer").glob(pattern)}
    assert sources and sources <= names, sorted(sources - names)
    assert not [n for n in names if n.startswith("indirect_buffer/") and n.endswith(".c")]


# -- examples/README.md, typed as written into a brand-new virtualenv ------------------------------

def test_readme_block_is_what_the_test_runs():
    block = readme_commands()
    assert block.splitlines()[0].startswith("cd examples")
    assert "--no-build-isolation" in block and "python -m ib_examples.demo" in block


@pytest.mark.skipif(bool(os.environ.get("IB_SANITIZE")),
                    reason="an uninstrumented build under the ASan preload proves nothing new; "
                           "the local-mode runs cover it")
def test_examples_readme_commands_in_a_fresh_venv(tmp_path):
    """Run the README's sh block, unmodified, from the root of a copy of the checkout, with a
    brand-new virtualenv first on PATH.

    Honest rather than fast: the virtualenv is made by `python -m venv` with what it bundles
    (pip, and setuptools 65 on 3.11 / 58 on 3.9 / none from 3.12, no `wheel`) and no
    system site-packages, so a missing install step fails here as it would for a user. (A
    --system-site-packages venv would be quicker but would lend it the suite's setuptools on
    3.12+.) Speed comes from pip's own cache and configured indexes: nothing is rebuilt that a
    wheel exists for, only indirect_buffer and examples/ are compiled.
    """
    root = _copy_checkout(tmp_path / "checkout")
    venv = tmp_path / "venv"
    # From inside the suite's virtualenv this makes a virtualenv of the base interpreter.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    env = _clean_env(VIRTUAL_ENV=str(venv), PATH=path, PIP_DISABLE_PIP_VERSION_CHECK="1",
                     PIP_NO_INPUT="1")
    proc = subprocess.run(["sh", "-eux", "-c", readme_commands()], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    output = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, output
    assert "demo: all checks passed" in proc.stdout, output
    assert "FAILED" not in proc.stdout, output
    # It was the fresh virtualenv's python and packages that ran.
    check = subprocess.run(
        ["python", "-c", "import sys, ib_examples, indirect_buffer; "
         "print(sys.prefix); print(ib_examples.__file__); print(indirect_buffer.__file__)"],
        cwd=root / "examples", env=env, capture_output=True, text=True, check=True)
    prefix, examples_file, package_file = check.stdout.split("\n")[:3]
    assert Path(prefix) == venv
    for path in (examples_file, package_file):
        assert Path(venv) in Path(path).parents, check.stdout
