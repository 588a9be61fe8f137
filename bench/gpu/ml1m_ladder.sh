#!/usr/bin/env bash
# One prepared device run for issue 17: ML-1M, full softmax, validation-selected best epoch, the whole
# ladder in one call, two seeds: SASRec (full softmax) · + relative bias (positions + log time gaps) ·
# the same 8 blocks × 2 heads (HSTU-large's shape) · + SPRM · + profile · + contrastive (PANTHER).
# Runs are independent processes started together (a d = 50 model leaves an H200 mostly idle).
#
# On the GPU machine: carry [".gpu/models"] (bash bench/gpu/make_models_carry.sh here), then
#   bash bench/gpu/ml1m_ladder.sh
# Smoke run of the same script on a CPU (tests/models/test_gpu_scripts.py does this on a tiny file):
#   CARRY=none DEVICE=cpu EPOCHS=1 SEEDS=0 ML_PATH=ratings.dat bash bench/gpu/ml1m_ladder.sh
# Results: $OUT/ml1m_<variant>_s<seed>.json (+ .log) and $OUT/ladder.md — or /tmp/panther-gpu-out.
set -u
# shellcheck source=bench/gpu/models_env.sh
. "$(dirname "$0")/models_env.sh"
DEV=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-201}; SEEDS=${SEEDS:-0 1}; LIMIT=${LIMIT_S:-500}
SETUP='"validation": true, "eval_every": 5, "patience": 4'
RAB='"relative_bias": "position_time"'
DEEP='"n_layers": 8, "n_heads": 2'
# variant | --models | setup overrides | panther overrides
VARIANTS=(
  "sasrec_full|sasrec|{$SETUP}|{}"
  "sasrec_rab|sasrec|{$SETUP, $RAB}|{}"
  "sasrec_rab_deep|sasrec|{$SETUP, $RAB, $DEEP}|{}"
  "sprm_rab_deep|panther|{$SETUP, $RAB, $DEEP}|{\"profile_mode\": \"none\", \"contrastive_weight\": 0.0}"
  "profile_rab_deep|panther|{$SETUP, $RAB, $DEEP}|{\"contrastive_weight\": 0.0}"
  "panther_rab_deep|panther|{$SETUP, $RAB, $DEEP}|{}"
)
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
pids=()
for seed in $SEEDS; do
  for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name models setup overrides <<< "$v"
    timeout "$LIMIT" $PY -m models.bench movielens --models "$models" --epochs "$EPOCHS" --device "$DEV" \
      --loss full --seed "$seed" --setup-overrides "$setup" --panther-overrides "$overrides" "${ML_ARGS[@]}" \
      > "$RESULTS/ml1m_${name}_s${seed}.json" 2> "$RESULTS/ml1m_${name}_s${seed}.log" &
    pids+=($!)
  done
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
$PY -m models.bench.ladder "$RESULTS" > "$RESULTS/ladder.md"; cat "$RESULTS/ladder.md"
exit $rc
