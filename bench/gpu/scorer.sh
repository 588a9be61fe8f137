#!/usr/bin/env bash
# One prepared device run for issue 13: full-window vs cached-state scoring on the GPU, in-process
# (torch on cuda:0) and through tritonserver (KIND_GPU), at the demo and the PANTHER size.
#
#   bash bench/gpu/scorer.sh [EVENTS] [BATCH] [SIZES]
#   defaults:                20000    1024    panther,demo
#
# On the GPU machine (device tool): carry [".gpu"] (bench/gpu/make_carry.sh) and the demo model
# (`panther bench scorer` trains it once under $PANTHER_HOME/bench-stream: carry that folder too, or
# pass SIZES=panther), command `bash bench/gpu/scorer.sh`.
# On a CPU first, with the project's virtualenv active and nothing carried:
#   CARRY=none DEVICE=cpu bash bench/gpu/scorer.sh 64 32 panther
# Results: $OUT/scorer_bench.json (+ .log) — or /tmp/panther-gpu-out without $OUT. Its JSON: one object
# with `rows`, one per (size, scorer): size, scorer, full_ev_s, cached_ev_s, refresh_seq_s, max_abs_diff.
set -u
EVENTS=${1:-20000}; BATCH=${2:-1024}; SIZES=${3:-panther,demo}
DEV=${DEVICE:-gpu}
# shellcheck source=bench/gpu/env.sh
. "$(dirname "$0")/env.sh"
export PANTHER_HOME=${PANTHER_HOME:-$ROOT/.gpu/home}
set -o pipefail
timeout 540 $PY -m stream.cli bench scorer --sizes "$SIZES" --events "$EVENTS" --batch "$BATCH" \
  --device "$DEV" --json 2>"$RESULTS/scorer_bench.log" | tee "$RESULTS/scorer_bench.json"
rc=$?
tail -n 20 "$RESULTS/scorer_bench.log"
exit $rc
