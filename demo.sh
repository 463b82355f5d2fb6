#!/bin/sh
# End-to-end demo: install indirect_buffer and the examples/ binding project (which compiles
# clib/) into a fresh virtualenv, then walk through every memory flow.
#
#   sh demo.sh [PYTHON] [keep]
set -eu

PYTHON=${1:-python3}
KEEP=${2:-}
ROOT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ib_demo.XXXXXX")
STEPS=5
. "$ROOT/progress.sh"
cleanup() {
  stop_ticker
  if [ "$KEEP" = "keep" ]; then echo "virtualenv kept in $WORK/venv"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== building indirect_buffer and examples/ in a fresh virtualenv ($PYTHON)"
step "creating a virtualenv in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
step "installing pip, NumPy, Cython and setuptools"
"$VPY" -m pip install --quiet --upgrade pip
"$VPY" -m pip install --quiet numpy "Cython>=3.0" "setuptools>=77"
# Copies, so that no build artefacts land in the checkout.
mkdir -p "$WORK/src"
cp -r "$ROOT/indirect_buffer" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$ROOT/README.md" \
  "$ROOT/LICENSE" "$ROOT/MANIFEST.in" "$ROOT/clib" "$ROOT/examples" "$WORK/src/"
step "building and installing indirect_buffer (cythonize and compile, ~45 s)"
"$VPY" -m pip install --quiet "$WORK/src"
# Without build isolation, examples/ compiles against the indirect_buffer just installed.
step "building and installing examples/ (ib_examples, with clib compiled in, ~25 s)"
"$VPY" -m pip install --quiet --no-build-isolation "$WORK/src/examples"
done_step
echo "== [$STEPS/$STEPS] python -m ib_examples.demo"
echo
cd "$WORK"
"$VPY" -m ib_examples.demo
