"""`panther bench scorer` on tiny models: the row schema, and both paths agreeing on the same events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.bench_scorer import run_scorer_bench
from stream.cli import main
from tests.stream.model_fixtures import tiny_model
from tests.triton_repo.fixtures import require_tritonserver
from triton_repo.synthetic import make_artifact

__all__ = ["tiny_model"]
ROW_KEYS = {"size", "scorer", "full_ev_s", "cached_ev_s", "refresh_seq_s", "max_abs_diff"}


def test_rows_for_every_size_and_scorer(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    require_tritonserver()
    synthetic = make_artifact(tmp_path / "synthetic", vocab=300, d_model=16, n_layers=1, max_len=12)
    out = run_scorer_bench(("demo", "panther"), ("inprocess", "triton"), events=96, batch=32,
                           home=tmp_path, models={"demo": tiny_model[0], "panther": synthetic})  # fmt: skip
    rows = out["rows"]
    assert [(r["size"], r["scorer"]) for r in rows] == [("demo", "inprocess"), ("demo", "triton"),
                                                        ("panther", "inprocess"), ("panther", "triton")]
    for row in rows:
        assert set(row) >= ROW_KEYS and row["events"] == 96
        assert row["max_abs_diff"] <= 1e-5 and row["max_abs_diff_logp"] <= 1e-4, row
        assert row["full_ev_s"] > 0 and row["cached_ev_s"] > 0 and row["refresh_rows"] > 0
    json.dumps(out)


def test_the_cli_prints_one_json_object_and_refuses_unknown_sizes() -> None:
    result = CliRunner().invoke(main, ["bench", "scorer", "--sizes", "huge", "--json"])
    assert result.exit_code == 2 and "choose from demo, panther" in result.output


@pytest.mark.parametrize("option", ["--scorers", "--sizes"])
def test_an_empty_choice_is_refused(option: str) -> None:
    result = CliRunner().invoke(main, ["bench", "scorer", option, ","])
    assert result.exit_code == 2
