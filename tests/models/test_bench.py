"""Benchmarks on tiny inputs: MovieLens from a GroupLens-format file, and the SPRM memory table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.bench import MovieLensSetup, run_movielens_bench, run_sprm_memory_bench
from models.bench.__main__ import main as bench_main
from models.bench.sprm_memory import MemoryCase, measure_case
from models.losses import LossConfig

TINY_SETUP = MovieLensSetup(d_model=8, n_layers=1, n_heads=1, loss=LossConfig(kind="sampled", n_negatives=8))


@pytest.fixture
def grouplens(tmp_path):
    rng = np.random.default_rng(0)
    ratings = [
        f"{u}::{rng.integers(1, 30)}::4::{1_000_000 + 60 * t}" for u in range(1, 21) for t in range(12)
    ]
    (tmp_path / "ratings.dat").write_text("\n".join(ratings) + "\n")
    users = [f"{u}::{'MF'[u % 2]}::{[18, 25, 35][u % 3]}::{u % 5}::{u % 3}2345" for u in range(1, 21)]
    (tmp_path / "users.dat").write_text("\n".join(users) + "\n")
    return tmp_path / "ratings.dat"


def test_movielens_bench_runs_all_models(grouplens) -> None:
    result = run_movielens_bench(
        grouplens, epochs=1, device="cpu", max_len=8, setup=TINY_SETUP, progress=False
    )
    json.dumps(result)
    assert set(result["summary"]) == {"panther", "sasrec", "popularity", "markov"}
    assert (
        result["data"]["users"] == 20 and result["data"]["test_targets"] == 20 and result["data"]["profile"]
    )
    assert result["models"]["panther"]["config"]["profile_mode"] == "positional"
    assert result["models"]["panther"]["config"]["similarity"] == "cosine"
    assert result["models"]["sasrec"]["config"]["use_sprm"] is False
    assert result["setup"]["max_len"] == 8 and result["setup"]["epochs"] == 1
    for row in result["summary"].values():
        assert 0 <= row["HR@1"] <= row["HR@10"] <= 1
    # the same test rows over all items (nothing filtered) are reported beside the reference protocol
    assert set(result["summary_all_items"]) == set(result["summary"])
    for name in ("popularity", "markov"):
        seen_filtered = result["models"][name]["metrics"]["MRR"]
        assert result["models"][name]["metrics_other"]["all_items"]["MRR"] != seen_filtered


def test_sprm_memory_bench_in_subprocesses() -> None:
    result = run_sprm_memory_bench(
        lengths=(32,), steps=2, d_model=8, n_layers=1, vocab_size=50, memory_cap_gb=1e-6
    )
    json.dumps(result)
    rows = {r["variant"]: r for r in result["results"]}
    assert rows["sprm"]["status"] == "ok" and rows["sprm"]["peak_mb"] >= 0 and rows["sprm"]["step_s"] > 0
    assert rows["sprm"]["method"] == "live_tensor_bytes" and rows["sprm"]["peak_rss_mb"] >= 0
    assert rows["attention_naive"]["status"].startswith("skipped")  # above the (tiny) cap
    assert rows["attention_sdpa"]["status"] == "ok"
    assert result["setup"]["batch_size"] == 4


def test_memory_case_in_process_and_variants() -> None:
    case = MemoryCase("attention_naive", 16, batch_size=2, d_model=8, n_layers=1, vocab_size=20, steps=2)
    assert not case.model_config().use_sprm and case.model_config().attention_impl == "naive"
    assert not MemoryCase("sprm", 16).model_config().use_attention
    out = measure_case(case)
    assert out["step_s"] > 0 and out["method"] == "live_tensor_bytes"
    # tensor-exact peaks: naive attention keeps (B, h, T, T) fp32 probabilities for backward, SPRM does not
    sizes = {"batch_size": 2, "d_model": 8, "n_layers": 1, "vocab_size": 20, "steps": 2}
    naive, sprm, recompute = (
        measure_case(MemoryCase(variant, 256, **sizes))["peak_mb"]
        for variant in ("attention_naive", "sprm", "sprm_recompute")
    )
    assert naive * 2**20 >= 2 * 256 * 256 * 4 and sprm < naive / 4 and recompute <= sprm
    with pytest.raises(ValueError, match="variant"):
        run_sprm_memory_bench(lengths=(8,), variants=("lstm",))


def test_bench_entry_point_prints_one_json_object(capsys) -> None:
    bench_main(["sprm-memory", "--lengths", "16", "--device", "cpu", "--budget-s", "0"])
    out = json.loads(capsys.readouterr().out)
    assert all(r["status"].startswith("skipped") for r in out["results"])


def test_movielens_validation_split_full_softmax_and_relative_bias(grouplens) -> None:
    setup = TINY_SETUP.with_loss("full").with_overrides(
        {"relative_bias": "position_time", "validation": True, "eval_every": 1, "patience": 0}
    )
    result = run_movielens_bench(
        grouplens, epochs=3, device="cpu", max_len=8, setup=setup, models=("sasrec",), progress=False
    )
    assert result["data"]["validation_targets"] == 20 and result["data"]["test_targets"] == 20
    report = result["models"]["sasrec"]
    assert report["config"]["relative_bias"] == "position_time"
    assert result["setup"]["loss"]["kind"] == "full"
    validated = [row for row in report["history"] if "validation" in row]
    assert validated and report["best_epoch"] in {row["epoch"] for row in validated}
    assert report["epochs_run"] <= 3  # patience 0: stops at the first validation run without a gain


def test_movielens_setup_overrides_reject_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown setup fields"):
        TINY_SETUP.with_overrides({"n_layer": 8})
