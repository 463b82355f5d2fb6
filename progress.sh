# Progress lines for test_install.sh and demo.sh (sourced, POSIX sh): `step "what"` prints
# "== [n/STEPS] what" and a dot every 10 s until the next step or `done_step`, so that a long
# pip build is visibly still working; `stop_ticker` (for an EXIT trap) ends the dots. The
# ticker also stops by itself if the script dies. STEPS is set by the caller.
STEP=0
TICKER=
STARTED=0

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

stop_ticker() {
  if [ -n "$TICKER" ]; then kill "$TICKER" 2>/dev/null || true; echo; fi
}
