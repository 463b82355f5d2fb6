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
# Extra pytest arguments can be passed through the environment: IB_PYTEST_ARGS="-k collection".
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
cleanup() {
  if [ "$KEEP" = "keep" ]; then
    echo "virtualenv kept in $WORK/venv"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

echo "== indirect_buffer: $MODE install with $PYTHON"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet --upgrade pip
# Test dependencies (also what the Cython test modules and examples/ need to compile).
"$VPY" -m pip install --quiet -r "$ROOT/tests/requirements.txt"

# Build from a copy so that no build artefacts are left in (or picked up from) the checkout.
SRC="$WORK/src"
mkdir -p "$SRC"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard 2>/dev/null | xargs -0 -I{} cp --parents {} "$SRC/") \
  || cp -r "$ROOT/." "$SRC/"
[ -f "$SRC/setup.py" ] || cp -r "$ROOT/." "$SRC/"

case "$MODE" in
  local)
    "$VPY" -m pip install --quiet "$SRC"
    ;;
  sdist)
    "$VPY" -m pip install --quiet build
    "$VPY" -m build --sdist --outdir "$WORK/dist" "$SRC"
    "$VPY" -m pip install --quiet "$WORK"/dist/indirect_buffer-*.tar.gz
    ;;
  asan)
    IB_SANITIZE=address "$VPY" -m pip install --quiet --no-build-isolation "$SRC"
    ;;
esac

# Run from outside the checkout so that `import indirect_buffer` finds the installed package.
cd "$WORK"
set +e
if [ "$MODE" = "asan" ]; then
  LIBASAN=$(gcc -print-file-name=libasan.so)
  # CPython itself is not instrumented and leaks by design at exit: leak checking is done
  # separately (tests/leakcheck.py under valgrind); here ASan looks for memory errors.
  LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1" \
    IB_SANITIZE=address "$VPY" -m pytest "$ROOT/tests" -p no:cacheprovider -q ${IB_PYTEST_ARGS:-}
else
  "$VPY" -m pytest "$ROOT/tests" -p no:cacheprovider -q ${IB_PYTEST_ARGS:-}
fi
STATUS=$?
set -e
echo "== indirect_buffer: $MODE with $PYTHON: pytest exit status $STATUS"
exit $STATUS
