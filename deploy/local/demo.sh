#!/usr/bin/env bash
# `make demo`: the detector, live. Simulates data and trains a small model if none exists (≈1 min on
# 2 cores), exports it for Triton, then runs the Procfile with honcho: Kafka, Triton, the worker, a live
# producer of held-out simulated traffic and a tail of `fraud-alerts`. Ctrl-C stops everything.
#
#   bash deploy/local/demo.sh [DEMO_DIR]      (default ~/.cache/panther/demo; DEMO_RATE=20 records/s)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export DEMO_DIR=${1:-${DEMO_DIR:-${PANTHER_HOME:-$HOME/.cache/panther}/demo}}
mkdir -p "$DEMO_DIR"
export PANTHER_MODEL_DIR=${PANTHER_MODEL_DIR:-$DEMO_DIR/model}
export PANTHER_TRITON_REPO=${PANTHER_TRITON_REPO:-$DEMO_DIR/triton_repo}
export PANTHER_WORKER_DATA_DIR=${PANTHER_WORKER_DATA_DIR:-$DEMO_DIR/worker}
export PANTHER_KAFKA_BOOTSTRAP=${PANTHER_KAFKA_BOOTSTRAP:-${PANTHER_BROKER_HOST:-127.0.0.1}:${PANTHER_BROKER_PORT:-9092}}
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-160}  # honcho reads pipes: lines as they happen, unwrapped

# The demo runs its own broker and server and stops them at the end: refuse to take over running ones.
if panther kafka status >/dev/null 2>&1; then
  echo "demo: a local Kafka is already running ($PANTHER_KAFKA_BOOTSTRAP); stop it first: panther kafka stop" >&2
  exit 2
fi
if panther triton status >/dev/null 2>&1; then
  echo "demo: a local tritonserver is already running; stop it first: panther triton stop" >&2
  exit 2
fi

python "$root/deploy/local/demo_model.py" "$DEMO_DIR"
if [ ! -f "$PANTHER_TRITON_REPO/panther_score/config.pbtxt" ] \
   || [ "$PANTHER_MODEL_DIR/fraud_head.json" -nt "$PANTHER_TRITON_REPO/panther_score/config.pbtxt" ]; then
  echo "== demo: exporting $PANTHER_MODEL_DIR to the Triton repository $PANTHER_TRITON_REPO" >&2
  panther export --model "$PANTHER_MODEL_DIR" --repo "$PANTHER_TRITON_REPO" --json >"$DEMO_DIR/export.json"
fi

# On Ctrl-C honcho SIGTERMs every process and SIGKILLs what is left KILL_WAIT seconds later (5 in honcho
# 2, no flag for it): the worker commits and leaves its group, Triton unloads its models, Kafka waits for
# them (--grace 10) — so we give them 30 s. Whatever still runs after that is stopped here (pid files).
cleanup() {
  panther kafka stop >/dev/null 2>&1 || true
  panther triton stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo "== demo: starting kafka, triton, worker, producer (${DEMO_RATE:-20}/s) and the alert tail — Ctrl-C stops" >&2
cd "$root"
python -c 'import sys, honcho.command, honcho.manager
honcho.manager.KILL_WAIT = 30
honcho.command.main(sys.argv[1:])' --procfile Procfile start
