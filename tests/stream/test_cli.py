"""The console script: exit codes and one-line errors for user mistakes, clean `--json` stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from panther_common.ports import free_port


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def test_unreachable_kafka_is_one_line_and_nonzero(tmp_path: Path) -> None:
    env = {"PANTHER_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "PANTHER_KAFKA_TIMEOUT_S": "2"}
    result = run("topics", "create", env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "not reachable at 127.0.0.1:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_bad_file_row_is_reported_with_row_and_field(
    tmp_path: Path, kafka_bootstrap: str, unique_topic
) -> None:
    path = tmp_path / "transactions.csv"
    path.write_text(
        "txn_id,user_id,timestamp,amount,merchant_id\nt1,u1,2026-01-01T00:00:00Z,1.0,m1\nt2,u1,soon,2.0,m1\n"
    )
    result = run(
        "produce",
        "--input",
        str(path),
        "--topic",
        unique_topic("bad"),
        env={"PANTHER_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "row 2: field 'timestamp' = 'soon'" in result.stderr


def test_simulate_json_prints_one_object_on_stdout(tmp_path: Path) -> None:
    pytest.importorskip("stream.simulator")
    result = run("simulate", "--users", "200", "--days", "7", "--seed", "3", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["users"] == 200
    frame = pd.read_parquet(tmp_path / "transactions.parquet")
    assert len(frame) == summary["transactions"]


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("kafka", "topics", "simulate", "produce", "tail"):
        assert command in result.stdout


def test_bench_movielens_models_option_and_both_protocols(tmp_path: Path) -> None:
    rows = [f"{u}::{(u * 7 + t * 3) % 29 + 1}::4::{10**6 + 60 * t}" for u in range(1, 16) for t in range(10)]
    (tmp_path / "ratings.dat").write_text("\n".join(rows) + "\n")
    path = str(tmp_path / "ratings.dat")
    args = ("--path", path, "--models", "sasrec", "--epochs", "1", "--max-len", "8", "--device", "cpu")
    result = run("bench", "movielens", *args, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out["summary"]) == set(out["summary_all_items"]) == {"sasrec", "popularity", "markov"}
    options = ("--loss", "full", "--relative-bias", "position_time", "--validation")
    tuned = json.loads(run("bench", "movielens", *args, *options, "--json").stdout)
    assert tuned["setup"]["loss"]["kind"] == "full" and tuned["setup"]["validation"] is True
    assert tuned["models"]["sasrec"]["config"]["relative_bias"] == "position_time"
    bad = run("bench", "movielens", "--path", path, "--models", "sasrec,lstm", "--json")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "choose from panther, sasrec" in bad.stderr


def test_pretrain_cold_users_option_is_a_share(tmp_path: Path) -> None:
    assert "--cold-users" in run("pretrain", "--help").stdout
    (tmp_path / "t.csv").write_text("txn_id,user_id,timestamp,amount,merchant_id\n")
    bad = run("pretrain", "--transactions", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"),
              "--cold-users", "1.5")  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--cold-users" in bad.stderr
