#!/usr/bin/env bash
# Sourced by the device scripts (run.sh, scorer.sh): the python the GPU image has, with what the carry
# folder brings (bench/gpu/make_carry.sh: numpy<2 for the tritonserver stub, tritonclient, the trimmed
# tritonserver of nvidia-pytriton). CARRY=none on a CPU machine with the project's environment active.
# Sets ROOT, PY, RESULTS (= $OUT, or /tmp/panther-gpu-out) and PYTHONPATH.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
C=${CARRY:-.gpu/carry}
RESULTS=${OUT:-/tmp/panther-gpu-out}; mkdir -p "$RESULTS"
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
