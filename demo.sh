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
STEP=0
STEPS=5
TICKER=
STARTED=0
# step "what": print the step and start a dot every 10 s until done, so that a long pip build
# is visibly still working. The ticker stops by itself if this script dies.
step() {
  done_step
  STEP=$((STEP + 1))
  printf '== [%s/%s] %s ' "$STEP" "$STEPS" "$1"
  STARTED=$(date +%s)
  (
    while sleep 10 </dev/null >/dev/null 2>&1 && kill -0 $$ 2>/dev/null; do printf '.'; done
  ) &
  TICKER=$!
}
done_step() {
  if [ -n "$TICKER" ]; then
    kill "$TICKER" 2>/dev/null || true
    wait "$TICKER" 2>/dev/null || true
    TICKER=
    echo " done ($(( $(date +%s) - STARTED )) s)"
  fi
}
cleanup() {
  if [ -n "$TICKER" ]; then kill "$TICKER" 2>/dev/null || true; echo; fi
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
