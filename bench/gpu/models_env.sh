#!/usr/bin/env bash
# Sourced by the model device scripts (models.sh, ml1m_ladder.sh): the GPU image's python plus what the
# model carry brings (bench/gpu/make_models_carry.sh: ML-1M gzipped, pandas/safetensors/rich wheels).
# CARRY=none on a CPU machine with the project's environment active; ML_PATH names another ratings file.
# Sets ROOT, PY, RESULTS (= $OUT, or /tmp/panther-gpu-out), PYTHONPATH and ML_ARGS (--path … or nothing).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
C=${CARRY:-.gpu/models}
RESULTS=${OUT:-/tmp/panther-gpu-out}; mkdir -p "$RESULTS"
PY=$(command -v python3)
export PYTHONPATH="$ROOT" PYTHONUNBUFFERED=1
ML_ARGS=()
[ -n "${ML_PATH:-}" ] && ML_ARGS=(--path "$ML_PATH")
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
