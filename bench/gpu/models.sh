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
# shellcheck source=bench/gpu/models_env.sh
. "$(dirname "$0")/models_env.sh"
DEV=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-101}; LENGTHS=${LENGTHS:-512,1024,2048,4096,8192}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
set -o pipefail
timeout 120 $PY -m models.bench sprm-memory --device "$DEV" --lengths "$LENGTHS" --batch-size 32 \
  > "$RESULTS/sprm_memory.json" 2> "$RESULTS/sprm_memory.log"; echo "sprm-memory rc=$?"
timeout 420 $PY -m models.bench movielens --epochs "$EPOCHS" --device "$DEV" "${ML_ARGS[@]}" \
  > "$RESULTS/ml1m.json" 2> "$RESULTS/ml1m.log"; rc=$?
echo "movielens rc=$rc"; tail -c 3000 "$RESULTS/ml1m.json"
exit $rc
