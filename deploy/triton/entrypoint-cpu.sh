#!/usr/bin/env bash
# Export the mounted model artefact for CPU (unless the repository holds an export of it already), then
# tritonserver in the foreground through `panther triton run` (the same launcher `make demo` uses).
set -euo pipefail
if [ ! -f "$PANTHER_MODEL_DIR/config.json" ]; then
    echo "no model artefact at $PANTHER_MODEL_DIR (mount one, or run the compose stack's model job)" >&2
    exit 2
fi
if [ ! -f "$PANTHER_TRITON_REPO/panther_score/config.pbtxt" ]; then
    panther export --model "$PANTHER_MODEL_DIR" --device cpu --json >&2
fi
exec panther triton run "$@"
