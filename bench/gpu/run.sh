#!/usr/bin/env bash
# One prepared device run: export a PANTHER-sized model for KIND_GPU, serve it with the wheel's
# tritonserver (python backend on cuda:0), and benchmark Triton against in-process torch on the same GPU.
#
#   bash bench/gpu/run.sh [BATCHES] [CONCURRENCY] [SECONDS] [L] [PRECISION]
#   defaults:             256,1024,4096  1,4       3         100  fp32
#
# On the GPU machine (device tool): carry [".gpu"] (filled by bench/gpu/make_carry.sh), command
#   bash bench/gpu/run.sh
# On a CPU first, with the project's virtualenv active and nothing carried:
#   CARRY=none DEVICE=cpu bash bench/gpu/run.sh 16,64 1,2 0.5 20
# Results: $OUT/gpu_bench.json (+ .log and the tritonserver log) — or /tmp/panther-gpu-out without $OUT.
set -u
B=${1:-256,1024,4096}; CONC=${2:-1,4}; SECS=${3:-3}; L=${4:-100}; PREC=${5:-fp32}
DEV=${DEVICE:-gpu}
WORK=/tmp/panther-gpu-work; rm -rf "$WORK"
# shellcheck source=bench/gpu/env.sh
. "$(dirname "$0")/env.sh"
set -o pipefail
timeout 540 $PY -m bench.triton_bench --device "$DEV" --lengths "$L" --batches "$B" --concurrency "$CONC" \
  --seconds "$SECS" --precision "$PREC" --work "$WORK" --out "$RESULTS/gpu_bench.json" 2>&1 | tee "$RESULTS/gpu_bench.log"
rc=$?
for f in "$WORK"/triton-*/tritonserver.log; do [ -f "$f" ] && tail -c 2000000 "$f" > "$RESULTS/tritonserver.log"; done
[ -f "$RESULTS/gpu_bench.json" ] && cat "$RESULTS/gpu_bench.json"
exit $rc
