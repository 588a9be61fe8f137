"""The prepared device script for the ML-1M ladder runs end to end on a CPU (tiny data, one epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from models.bench.ladder import ladder_rows, markdown

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = (
    *("sasrec_full", "sasrec_rab", "sasrec_rab_deep"),
    *("sprm_rab_deep", "profile_rab_deep", "panther_rab_deep"),
)
RUNS = " ".join(f"{v}:0" for v in VARIANTS)


def test_ml1m_ladder_script_smoke_runs_every_variant_on_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [f"{u}::{rng.integers(1, 30)}::4::{10**6 + 60 * t}" for u in range(1, 16) for t in range(10)]
    (tmp_path / "ratings.dat").write_text("\n".join(rows) + "\n")
    users = [f"{u}::{'MF'[u % 2]}::{[18, 25, 35][u % 3]}::{u % 5}::{u % 3}2345" for u in range(1, 16)]
    (tmp_path / "users.dat").write_text("\n".join(users) + "\n")
    out = tmp_path / "out"
    env = os.environ | {
        "CARRY": "none", "DEVICE": "cpu", "EPOCHS": "1", "LIMIT_S": "300", "RUNS": RUNS, "PREFLIGHT": "0",
        "ML_PATH": str(tmp_path / "ratings.dat"), "OUT": str(out), "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", "bench/gpu/ml1m_ladder.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = ladder_rows(out)
    assert {r["variant"] for r in table} == set(VARIANTS)
    assert all("error" not in r and 0 <= r["HR@10"] <= 1 and r["best_epoch"] == 1 for r in table)
    assert (out / "ladder.md").read_text().count("\n") == len(table) + 2  # header, rule


def test_ladder_table_reports_a_failed_run_as_a_row(tmp_path: Path) -> None:
    (tmp_path / "ml1m_sasrec_full_s1.json").write_text("")
    (rows,) = ladder_rows(tmp_path)
    assert rows["seed"] == 1 and "timed out" in rows["error"]
    assert "sasrec_full | 1 | no result" in markdown([rows])


def test_step_profile_prints_one_json_object_with_every_variant() -> None:
    from models.bench.step_profile import VARIANTS

    done = subprocess.run(
        [sys.executable, "-m", "models.bench.step_profile", *("--device", "cpu", "--steps", "1"),
         *("--top", "3", "--batch-size", "4", "--width", "16")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report["variants"]) == set(VARIANTS)
    assert all(v["step_ms_median"] > 0 and len(v["ops"]) == 3 for v in report["variants"].values())
