"""Triton python backend of every PANTHER model (copied into each version dir by `panther export`).

Everything but the bootstrap lives in `triton_repo.backend` (importable, unit-tested), which picks
the backend by the model's name (`BACKENDS`);
the network comes from the `models` package through the artefact. The stub ignores PYTHONPATH, so
the project root that export recorded (`project_root` parameter, empty when PANTHER is
pip-installed) goes on sys.path first — ahead of any editable install of another checkout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import triton_python_backend_utils as pb_utils


def _bootstrap(args: dict[str, str]) -> None:
    params = json.loads(args["model_config"]).get("parameters") or {}
    root = (params.get("project_root") or {}).get("string_value", "")
    if root and root not in sys.path:
        sys.path.insert(0, root)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        _bootstrap(args)
        from triton_repo.backend import BACKENDS

        self.backend = BACKENDS[args["model_name"]](args, pb_utils)

    def execute(self, requests: list[Any]) -> list[Any]:
        return self.backend.execute(requests)

    def finalize(self) -> None:
        self.backend = None
