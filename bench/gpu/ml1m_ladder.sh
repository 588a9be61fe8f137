#!/usr/bin/env bash
# One prepared device run for issue 17: ML-1M, full softmax, validation-selected best epoch, the whole
# ladder in one call, two seeds: SASRec (full softmax) · + relative bias (positions + log time gaps) ·
# the same 8 blocks × 2 heads (HSTU-large's shape) · + SPRM · + profile · + contrastive (PANTHER).
# Runs are independent processes started together (a d = 50 model leaves an H200 mostly idle), fp32 as
# the reference trains. Each trains for at most BUDGET_S seconds (stops after the epoch that crosses it,
# then scores the test at its validation-best epoch), so a run that has not converged still reports.
# RUNS lists variant:seed pairs; the default fits one 15-minute device lease: both seeds of the two ends
# of the ladder (SASRec full, PANTHER), one seed of the steps between.
#
# On the GPU machine: carry [".gpu/models"] (bash bench/gpu/make_models_carry.sh here), then (the device
# returns at most 8 files, so the results travel as one archive):
#   R=/tmp/res; OUT=$R bash bench/gpu/ml1m_ladder.sh; tar czf $OUT/ladder.tgz -C $R .; cp $R/ladder.md $OUT/
# First, PREFLIGHT=1 (default) times one step of four variants alone (models.bench.step_profile, ~30 s)
# into step_profile.json, so a slow run is explained by the same call.
# Smoke run of the same script on a CPU (tests/models/test_gpu_scripts.py does this on a tiny file):
#   CARRY=none DEVICE=cpu EPOCHS=1 RUNS="sasrec_full:0 …" ML_PATH=ratings.dat bash bench/gpu/ml1m_ladder.sh
# Results: $OUT/ml1m_<variant>_s<seed>.json (+ .log) and $OUT/ladder.md — or /tmp/panther-gpu-out.
set -u
# shellcheck source=bench/gpu/models_env.sh
. "$(dirname "$0")/models_env.sh"
DEV=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-201}; LIMIT=${LIMIT_S:-520}; BUDGET=${BUDGET_S:-420}
DEFAULT_RUNS="sasrec_full:0 sasrec_full:1 sasrec_rab:0 sasrec_rab_deep:0 sprm_rab_deep:0 profile_rab_deep:0"
RUNS=${RUNS:-$DEFAULT_RUNS panther_rab_deep:0 panther_rab_deep:1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
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
if [ "${PREFLIGHT:-1}" = 1 ]; then
  timeout 120 $PY -m models.bench.step_profile --device "$DEV" --steps 3 --top 5 \
    --variants sasrec,sasrec_rab,sasrec_rab_deep,panther_rab_deep > "$RESULTS/step_profile.json" 2> /dev/null
fi
pids=()
for run in $RUNS; do
  found=
  for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name models setup overrides <<< "$v"
    [ "$name" = "${run%%:*}" ] || continue
    found=1; seed=${run##*:}
    timeout "$LIMIT" $PY -m models.bench movielens --models "$models" --epochs "$EPOCHS" --device "$DEV" \
      --loss full --seed "$seed" --time-budget-s "$BUDGET" --setup-overrides "$setup" \
      --panther-overrides "$overrides" "${ML_ARGS[@]}" \
      > "$RESULTS/ml1m_${name}_s${seed}.json" 2> "$RESULTS/ml1m_${name}_s${seed}.log" &
    pids+=($!)
  done
  [ -n "$found" ] || { echo "unknown run $run (variant:seed)"; exit 2; }
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
$PY -m models.bench.ladder "$RESULTS" > "$RESULTS/ladder.md"; cat "$RESULTS/ladder.md"
exit $rc
