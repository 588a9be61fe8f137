#!/usr/bin/env bash
# Builds what one GPU-machine call needs beside the working tree (that machine has no internet and takes
# at most 64 MiB per call, the tree included): a trimmed copy of the tritonserver that the PyPI wheel
# nvidia-pytriton ships (python backend, the Python 3.12 stub only, without the bundled libpython 3.13),
# numpy 1.26 (the stub returns EMPTY outputs with numpy 2; the GPU image has 2.x), tritonclient and
# python-rapidjson (absent there) — all for the GPU image's CPython 3.12. ~57 MB.
# Usage: bash bench/gpu/make_carry.sh [DEST_DIR]   (default .gpu/carry, ignored by .gitignore's `.gpu/`)
set -eu
dest=${1:-.gpu/carry}; mkdir -p "$dest"; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
PY=${PYTHON:-python3}
$PY -m pip download -q --no-deps -d "$tmp" nvidia-pytriton==0.7.0
(cd "$tmp" && unzip -q nvidia_pytriton-*.whl 'pytriton/tritonserver/*' 'nvidia_pytriton.libs/*')
tar czf "$dest/tritonbundle.tgz" -C "$tmp" \
  --exclude='python_backend_stubs/3.8' --exclude='python_backend_stubs/3.9' --exclude='python_backend_stubs/3.10' \
  --exclude='python_backend_stubs/3.11' --exclude='python_backend_stubs/3.13' --exclude='libpython3-*.13.so*' \
  pytriton/tritonserver nvidia_pytriton.libs
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64"
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps $plat -d "$dest" numpy==1.26.4 python-rapidjson
$PY -m pip download -q --no-deps -d "$dest" tritonclient==2.73.0
du -sh "$dest"
