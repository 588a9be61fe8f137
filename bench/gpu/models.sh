#!/usr/bin/env bash
# One prepared device run for issue 3: the ML-1M benchmark with the reference schedule (101 epochs,
# per-row uniform negatives exactly as generative-recommenders) and the SPRM memory table on CUDA.
#
# On the GPU machine (device tool): carry [".gpu/models"] (built by bench/gpu/make_models_carry.sh):
#   bash bench/gpu/models.sh
# On a CPU first, with the project's virtualenv active (a short smoke run of the same script):
#   CARRY=none DEVICE=cpu EPOCHS=1 LENGTHS=64,128 bash bench/gpu/models.sh
# Results: $OUT/ml1m.json, $OUT/sprm_memory.json (+ .log) — or /tmp/panther-gpu-out without $OUT.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
C=${CARRY:-.gpu/models}
DEV=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-101}; LENGTHS=${LENGTHS:-512,1024,2048,4096,8192}
RESULTS=${OUT:-/tmp/panther-gpu-out}; mkdir -p "$RESULTS"
PY=$(command -v python3)
export PYTHONPATH="$ROOT" PYTHONUNBUFFERED=1
ML_ARGS=()
if [ "$C" != none ]; then
  [ -d "$C" ] || { echo "no carry folder $C: run bench/gpu/make_models_carry.sh here and carry it"; exit 2; }
  mkdir -p /tmp/ml1m && for f in "$C"/*.gz; do gunzip -c "$f" > "/tmp/ml1m/$(basename "$f" .gz)"; done
  ML_ARGS=(--path /tmp/ml1m/ml-1m.inter)
  # install only what the image lacks (its torch and numpy stay)
  for mod in pandas safetensors rich; do
    $PY -c "import $mod" 2>/dev/null || $PY -m pip install -q --no-index --no-deps --target /tmp/site "$C"/*.whl
  done
  export PYTHONPATH="$ROOT:/tmp/site"
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
set -o pipefail
timeout 120 $PY -m models.bench sprm-memory --device "$DEV" --lengths "$LENGTHS" --batch-size 32 \
  > "$RESULTS/sprm_memory.json" 2> "$RESULTS/sprm_memory.log"; echo "sprm-memory rc=$?"
timeout 420 $PY -m models.bench movielens --epochs "$EPOCHS" --device "$DEV" "${ML_ARGS[@]}" \
  > "$RESULTS/ml1m.json" 2> "$RESULTS/ml1m.log"; rc=$?
echo "movielens rc=$rc"; tail -c 3000 "$RESULTS/ml1m.json"
exit $rc
