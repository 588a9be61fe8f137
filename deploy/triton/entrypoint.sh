#!/usr/bin/env bash
# Export the mounted model artefact for KIND_GPU (unless a repository is already there), then run
# tritonserver in the foreground with only PANTHER's models loaded. Extra arguments go to tritonserver.
set -euo pipefail
MODEL_DIR=${PANTHER_MODEL_DIR:-/model}
REPO=${PANTHER_TRITON_REPO:-/models}
if [ ! -f "$REPO/panther_score/config.pbtxt" ]; then
  if [ ! -f "$MODEL_DIR/config.json" ]; then
    echo "no model repository at $REPO and no model artefact at $MODEL_DIR (mount one of them)" >&2
    exit 2
  fi
  python3 - "$MODEL_DIR" "$REPO" <<'PY'
import json, sys
from triton_repo.export import export_model_repository
summary = export_model_repository(sys.argv[1], sys.argv[2], device="gpu", max_batch_size=4096)
print(json.dumps(summary), file=sys.stderr)
PY
fi
exec tritonserver \
  --model-repository="$REPO" \
  --model-control-mode=explicit --load-model=panther_score --load-model=panther_refresh \
  --load-model=panther_user_encoder \
  --disable-auto-complete-config --strict-readiness=true --exit-timeout-secs=30 \
  "$@"
