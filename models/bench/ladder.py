"""`python -m models.bench.ladder DIR`: one markdown table from the per-variant ML-1M JSON files of a run.

Reads every `ml1m_<variant>_s<seed>.json` in DIR (the output of `bench/gpu/ml1m_ladder.sh`) and prints a
row per variant and seed: test metrics at the validation-selected epoch, that epoch, and the wall time.
A file that is empty or not JSON (a run that failed or timed out) is a row saying so, not a crash.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

_NAME = re.compile(r"ml1m_(?P<variant>.+)_s(?P<seed>\d+)\.json$")
_KEYS = ("HR@1", "HR@5", "HR@10", "NDCG@10")


def ladder_rows(directory: Path) -> list[dict[str, Any]]:
    """One dict per result file: variant, seed, model, the four metrics, best epoch, wall s (or error)."""
    rows = []
    for path in sorted(directory.glob("ml1m_*_s*.json")):
        match = _NAME.search(path.name)
        if match is None:
            continue
        row: dict[str, Any] = {"variant": match["variant"], "seed": int(match["seed"])}
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            rows.append(row | {"error": "no result (failed or timed out; see the .log)"})
            continue
        name = next(n for n in result["models"] if n not in ("popularity", "markov"))
        report = result["models"][name]
        metrics = report["metrics"]
        row |= {k: metrics[k] for k in _KEYS}
        row |= {"best_epoch": report["best_epoch"], "epochs_run": report["epochs_run"]}
        rows.append(row | {"train_wall_s": report["train_wall_s"]})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | seed | HR@1 | HR@5 | HR@10 | NDCG@10 | best epoch / run | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['seed']} | {r['error']} | | | | | |")
            continue
        metrics = " | ".join(f"{r[k]:.4f}" for k in _KEYS)
        lines.append(
            f"| {r['variant']} | {r['seed']} | {metrics} | {r['best_epoch']} / {r['epochs_run']} "
            f"| {r['train_wall_s']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(ladder_rows(Path(sys.argv[1]))))
