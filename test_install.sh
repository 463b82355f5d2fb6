#!/bin/sh
# Build a fresh virtualenv, install indirect_buffer the way a user would, run the pytest suite.
#
#   sh test_install.sh [PYTHON] [local|sdist|asan] [keep]
#
#   PYTHON  interpreter to build the virtualenv with (default: python3)
#   local   pip install .                         (default)
#   sdist   build an sdist, then pip install it    (checks that the sdist builds on its own)
#   asan    pip install . with -fsanitize=address, run the suite under libasan
#   keep    keep the virtualenv (its path is printed) instead of removing it
#
# Extra pytest arguments can be passed through the environment: IB_PYTEST_ARGS="-k collection";
# IB_PYTEST_FILES="test_memory.py test_readme.py" runs only those files of tests/;
# IB_PYTEST_WORKERS=1 runs them in one process (default: one per core, pytest-xdist). Skipped
# tests are listed with their reasons (-rs).
set -eu

PYTHON=${1:-python3}
MODE=${2:-local}
KEEP=${3:-}
ROOT=$(cd "$(dirname "$0")" && pwd)

case "$MODE" in
  local|sdist|asan) ;;
  *) echo "unknown mode '$MODE' (expected local, sdist or asan)" >&2; exit 2 ;;
esac
if [ -n "$KEEP" ] && [ "$KEEP" != "keep" ]; then
  echo "unknown third argument '$KEEP' (expected keep)" >&2; exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ib_test.XXXXXX")
. "$ROOT/progress.sh"
cleanup() {
  stop_ticker
  if [ "$KEEP" = "keep" ]; then
    echo "virtualenv kept in $WORK/venv"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

STEPS=4
echo "== indirect_buffer: $MODE install with $PYTHON"
step "creating a virtualenv in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
step "installing pip and the test requirements (tests/requirements.txt)"
"$VPY" -m pip install --quiet --upgrade pip
# Test dependencies (also what the Cython test modules and examples/ need to compile).
"$VPY" -m pip install --quiet -r "$ROOT/tests/requirements.txt"

# Build from a copy so that no build artefacts are left in (or picked up from) the checkout.
SRC="$WORK/src"
mkdir -p "$SRC"
# Files git knows or would add; a tracked file deleted in the work tree is skipped, not copied.
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard 2>/dev/null \
  | xargs -0 -I{} sh -c '[ ! -e "$1" ] || cp --parents "$1" "$2/"' sh {} "$SRC") \
  || cp -r "$ROOT/." "$SRC/"
[ -f "$SRC/setup.py" ] || cp -r "$ROOT/." "$SRC/"

case "$MODE" in
  local)
    step "building and installing indirect_buffer (pip install .: cythonize and compile, ~45 s)"
    "$VPY" -m pip install --quiet "$SRC"
    ;;
  sdist)
    step "building an sdist, then building and installing indirect_buffer from it (~45 s)"
    "$VPY" -m pip install --quiet build
    # setup.py does not cythonize for an sdist: it ships the .pyx/.pxd/.pxi sources.
    "$VPY" -m build --sdist --outdir "$WORK/dist" "$SRC" >"$WORK/sdist.log" 2>&1 \
      || { cat "$WORK/sdist.log"; exit 1; }
    "$VPY" -m pip install --quiet "$WORK"/dist/indirect_buffer-*.tar.gz
    ;;
  asan)
    step "building and installing indirect_buffer with AddressSanitizer (~60 s)"
    IB_SANITIZE=address "$VPY" -m pip install --quiet --no-build-isolation "$SRC"
    ;;
esac
done_step
# pytest shows its own progress: no ticker.
echo "== [$STEPS/$STEPS] running the test suite (pytest, a few minutes)"

# Run from outside the checkout so that `import indirect_buffer` finds the installed package.
cd "$WORK"
TESTS="$ROOT/tests -n ${IB_PYTEST_WORKERS:-auto}"
if [ -n "${IB_PYTEST_FILES:-}" ]; then
  TESTS="-n ${IB_PYTEST_WORKERS:-auto}"
  for f in $IB_PYTEST_FILES; do TESTS="$TESTS $ROOT/tests/$f"; done
fi
set +e
if [ "$MODE" = "asan" ]; then
  LIBASAN=$(gcc -print-file-name=libasan.so)
  # CPython itself is not instrumented and leaks by design at exit: leak checking is done
  # separately (tests/leakcheck.py under valgrind); here ASan looks for memory errors.
  # PYTHONMALLOC=malloc: Python objects come from malloc instead of pymalloc's arenas, so ASan
  # sees every freed object (a use after free of a Python object is reported, not missed).
  LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1" \
    PYTHONMALLOC=malloc IB_SANITIZE=address "$VPY" -m pytest $TESTS -p no:cacheprovider -q -rs ${IB_PYTEST_ARGS:-}
else
  "$VPY" -m pytest $TESTS -p no:cacheprovider -q -rs ${IB_PYTEST_ARGS:-}
fi
STATUS=$?
set -e
echo "== indirect_buffer: $MODE with $PYTHON: pytest exit status $STATUS"
exit $STATUS
