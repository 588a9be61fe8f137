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
cd "$(dirname "$0")/../.."
ROOT=$PWD
C=${CARRY:-.gpu/carry}
B=${1:-256,1024,4096}; CONC=${2:-1,4}; SECS=${3:-3}; L=${4:-100}; PREC=${5:-fp32}
DEV=${DEVICE:-gpu}
RESULTS=${OUT:-/tmp/panther-gpu-out}; mkdir -p "$RESULTS"
WORK=/tmp/panther-gpu-work; rm -rf "$WORK"
PY=$(command -v python3)
echo "python: $($PY -V) at $PY; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
if [ "$C" != none ]; then
  [ -d "$C" ] || { echo "no carry folder $C: run bench/gpu/make_carry.sh here, carry it, or set CARRY=none"; exit 2; }
  # numpy < 2 must be what the python backend stub imports: install it into the interpreter's OWN
  # site-packages (the stub ignores PYTHONPATH); the stub finds this interpreter as `python3` on PATH.
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "$C"/numpy-*.whl || exit 1
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$C"/tritonclient-*.whl "$C"/python_rapidjson-*.whl || exit 1
  mkdir -p /tmp/tb && tar xzf "$C"/tritonbundle.tgz -C /tmp/tb || exit 1
  export PYTHONPATH="$ROOT:/tmp/tb:/tmp/site"   # /tmp/tb/pytriton is found by importlib.util.find_spec
else
  export PYTHONPATH="$ROOT"
fi
export PYTHONUNBUFFERED=1
$PY -c "import numpy, torch; print('numpy', numpy.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
set -o pipefail
timeout 540 $PY -m bench.triton_bench --device "$DEV" --lengths "$L" --batches "$B" --concurrency "$CONC" \
  --seconds "$SECS" --precision "$PREC" --work "$WORK" --out "$RESULTS/gpu_bench.json" 2>&1 | tee "$RESULTS/gpu_bench.log"
rc=$?
for f in "$WORK"/triton-*/tritonserver.log; do [ -f "$f" ] && tail -c 2000000 "$f" > "$RESULTS/tritonserver.log"; done
[ -f "$RESULTS/gpu_bench.json" ] && cat "$RESULTS/gpu_bench.json"
exit $rc
