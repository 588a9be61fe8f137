"""Training loop, evaluation, and the pretraining pipeline end to end on a tiny synthetic frame."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from models.artifact import load_artifact, save_artifact
from models.batch import SequenceBatch
from models.loaders import UserFeatures
from models.losses import LossConfig
from models.panther import PantherModel, panther_config, sasrec_config
from models.sequences import build_sequences, make_eval_set
from models.tokenizer import StructuredTokenizer, TokenizerConfig
from models.training import (
    EvalData,
    TrainConfig,
    evaluate_next_token,
    evaluate_transactions,
    pretrain_transactions,
    resolve_device,
    train_next_token,
)
from models.training.pretrain import chronological_cut, read_table
from models.training.trainer import make_optimizer

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 16, "n_prototypes": 8, "dropout": 0.0}


def _cyclic_frame(n_users: int = 12, n_events: int = 30, seed: int = 0) -> pd.DataFrame:
    """Each user cycles through its own 5 items: next item is a deterministic function of the last."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(40, size=5, replace=False)
        for t in range(n_events):
            rows.append((f"u{u:02d}", t * 60_000 + u, f"i{items[t % 5]}"))
    return pd.DataFrame(rows, columns=["user_id", "timestamp", "item_id"])


def _prepared(frame: pd.DataFrame):
    tokenizer = StructuredTokenizer.fit(frame, TokenizerConfig.for_items("item_id"))
    seqs = build_sequences(frame, tokenizer.encode(frame))
    ev = make_eval_set(seqs, "leave_last_out", max_len=16)
    return tokenizer, seqs, ev


def test_training_learns_a_cyclic_pattern_and_is_deterministic() -> None:
    tokenizer, seqs, ev = _prepared(_cyclic_frame())
    features = UserFeatures.empty(len(seqs))
    config = TrainConfig(epochs=40, batch_size=4, lr=1e-2, device="cpu", progress=False)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = PantherModel(sasrec_config(tokenizer.vocab_size, **TINY))
        result = train_next_token(model, seqs.drop_last(1), features, config)
        models.append(model)
    assert result.history[-1]["loss"] < 0.3 * result.history[0]["loss"]
    metrics = evaluate_next_token(model, EvalData(ev, features), device="cpu")
    assert metrics["HR@1"] > 0.9 and metrics["n"] == 12
    # every target of a 5-cycle is in the 16-event window: excluding seen items makes each one a miss
    filtered = evaluate_next_token(model, EvalData(ev, features, seen_window=16), device="cpu")
    assert filtered["HR@10"] == 0.0 and filtered["n"] == 12
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed → same weights


def test_validation_early_stopping_restores_the_best_epoch() -> None:
    tokenizer, seqs, ev = _prepared(_cyclic_frame(n_users=6, n_events=12))
    features = UserFeatures.empty(len(seqs))
    torch.manual_seed(0)
    model = PantherModel(panther_config(tokenizer.vocab_size, **TINY))
    config = TrainConfig(
        epochs=6,
        batch_size=4,
        lr=1e-2,
        device="cpu",
        progress=False,
        early_stopping_patience=0,
        loss=LossConfig(kind="sampled", n_negatives=8, temperature=0.1),
    )
    result = train_next_token(model, seqs.drop_last(1), features, config, validation=EvalData(ev, features))
    ndcgs = [row["validation"]["NDCG@10"] for row in result.history]
    assert result.best_validation["NDCG@10"] == max(ndcgs)
    assert result.best_epoch == 1 + int(np.argmax(ndcgs))
    assert evaluate_next_token(model, EvalData(ev, features), "cpu")["NDCG@10"] == pytest.approx(max(ndcgs))
    if len(ndcgs) < 6:
        assert ndcgs[-1] <= max(ndcgs[:-1])  # stopped right after the first non-improving run


def test_optimizer_groups_and_device_resolution() -> None:
    model = PantherModel(panther_config(30, (3,), **TINY))
    decay, no_decay = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and model.position_embedding.weight in no_decay["params"]
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no GPU"):
            resolve_device("cuda")


def test_artifact_roundtrip_gives_identical_outputs(tmp_path) -> None:
    tokenizer, _, _ = _prepared(_cyclic_frame(n_users=3, n_events=6))
    torch.manual_seed(0)
    model = PantherModel(panther_config(tokenizer.vocab_size, (4, 3), **TINY)).eval()
    save_artifact(tmp_path / "m", model.config.to_dict(), tokenizer, None, model.state_dict(), {"x": 1})
    loaded = PantherModel.from_artifact(load_artifact(tmp_path / "m"))
    batch = SequenceBatch(
        tokens=torch.tensor([[4, 5, 6, 0]]), lengths=torch.tensor([3]), profile=torch.tensor([[1, 2]])
    )
    with torch.no_grad():
        assert torch.equal(
            model.logits(model.sequence_embedding(batch)), loaded.logits(loaded.sequence_embedding(batch))
        )
        assert torch.equal(model.user_embedding(batch.profile), loaded.user_embedding(batch.profile))
    assert loaded.config == model.config


def _transactions(n_users: int = 24, days: int = 10, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small payments frame with habits (each user repeats its own merchants) and profiles."""
    rng = np.random.default_rng(seed)
    channels, categories = (
        ["online", "card_present", "qr"],
        ["grocery", "fuel", "travel", "dining", "telecom"],
    )
    rows = []
    for u in range(n_users):
        habit = [
            (rng.choice(channels), rng.choice(categories), float(rng.choice([5, 20, 80, 300])))
            for _ in range(3)
        ]
        for k in range(days * 3):
            channel, category, amount = habit[k % 3]
            rows.append(
                {
                    "txn_id": f"t{u}-{k}",
                    "user_id": f"u{u:03d}",
                    "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=8 * k + u % 5),
                    "amount": amount * rng.uniform(0.9, 1.1),
                    "merchant_id": f"m{category}",
                    "merchant_category": category,
                    "channel": channel,
                    "merchant_risk": "low",
                    "is_fraud": False,
                }
            )
    profiles = pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in range(n_users)],
            "age": rng.integers(20, 60, n_users),
            "gender": rng.choice(["f", "m"], n_users),
            "region": rng.choice(["north", "south"], n_users),
        }
    )
    return pd.DataFrame(rows), profiles


def test_pretrain_transactions_end_to_end(tmp_path) -> None:
    txns, profiles = _transactions()
    txns.to_parquet(tmp_path / "transactions.parquet", index=False)
    profiles.to_csv(tmp_path / "profiles.csv", index=False)
    report = pretrain_transactions(
        tmp_path / "transactions.parquet",
        tmp_path / "profiles.csv",
        tmp_path / "model",
        epochs=2,
        device="cpu",
        max_len=16,
        model_overrides={"d_model": 16, "n_layers": 1, "n_prototypes": 8},
        progress=False,
    )
    json.dumps(report)  # JSON-able
    assert list(report["summary"]) == [
        "sprm_only",
        "profile_first_token",
        "profile_pe",
        "panther",
        "sasrec",
        "popularity",
        "markov",
    ]
    for name, row in report["summary"].items():
        assert 0.0 <= row["HR@1"] <= row["HR@5"] <= row["HR@10"] <= 1.0, name
    assert report["data"]["profile_fields"] == ["age", "gender", "region"]
    assert report["models"]["panther"]["config"]["contrastive_weight"] == 0.1
    assert report["models"]["sasrec"]["config"]["use_sprm"] is False
    n_test = report["data"]["test_targets"]
    assert all(r["metrics"]["n"] == n_test for r in report["models"].values())  # same rows for everyone

    artifact = load_artifact(report["artifact"])
    assert artifact.metrics["next_token"] == report["models"]["panther"]["metrics"]
    model = PantherModel.from_artifact(artifact)
    # re-evaluating the loaded model on the same held-out rows reproduces the recorded metrics exactly
    frame = read_table(tmp_path / "transactions.parquet")
    seqs = build_sequences(frame, artifact.tokenizer.encode(frame))
    cut = chronological_cut(seqs.times, 0.8)
    ids, demo = artifact.profile_schema.encode(profiles)
    features = UserFeatures.align(seqs.user_ids, profiles["user_id"].to_numpy(), ids, demo)
    ev = make_eval_set(seqs, "after_time", cut_ms=cut, max_len=16)
    assert evaluate_next_token(model, EvalData(ev, features), "cpu") == report["models"]["panther"]["metrics"]
    # and so does `panther evaluate` on the file, starting at the recorded cut
    evaluated = evaluate_transactions(
        report["artifact"],
        tmp_path / "transactions.parquet",
        tmp_path / "profiles.csv",
        "cpu",
        start=report["data"]["cut"],
        progress=False,
    )
    assert evaluated["metrics"] == report["models"]["panther"]["metrics"]
    assert evaluated["model_version"] == artifact.model_version


def test_pretrain_holds_cold_users_out_and_scores_every_model_on_their_first_events(tmp_path) -> None:
    txns, profiles = _transactions()
    txns.to_parquet(tmp_path / "transactions.parquet", index=False)
    profiles.to_csv(tmp_path / "profiles.csv", index=False)
    report = pretrain_transactions(
        tmp_path / "transactions.parquet", tmp_path / "profiles.csv", tmp_path / "model", epochs=1,
        device="cpu", max_len=16, ablations=False, cold_users=0.25, cold_max_history=4,
        model_overrides={"d_model": 16, "n_layers": 1, "n_prototypes": 8}, progress=False,
    )  # fmt: skip
    data = report["data"]
    cold_users = round(txns["user_id"].nunique() * 0.25)
    assert data["cold_start_users"] == cold_users
    assert data["cold_start_targets"] == 4 * cold_users  # every user here has > 5 events
    assert set(report["summary_cold_start"]) == {"panther", "sasrec", "popularity", "markov"}
    for name, model in report["models"].items():
        assert model["metrics_other"]["cold_start"]["n"] == data["cold_start_targets"], name
    # the main test no longer holds the cold users' events, and training never saw them
    warm = pretrain_transactions(
        tmp_path / "transactions.parquet", tmp_path / "profiles.csv", tmp_path / "warm", epochs=1,
        device="cpu", max_len=16, ablations=False,
        model_overrides={"d_model": 16, "n_layers": 1, "n_prototypes": 8}, progress=False,
    )  # fmt: skip
    assert data["test_targets"] < warm["data"]["test_targets"]
    assert data["train_rows"] < warm["data"]["train_rows"] and "summary_cold_start" not in warm


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_training_step() -> None:
    tokenizer, seqs, ev = _prepared(_cyclic_frame(n_users=4, n_events=10))
    model = PantherModel(panther_config(tokenizer.vocab_size, **TINY))
    config = TrainConfig(epochs=1, batch_size=4, device="cuda", progress=False)
    result = train_next_token(model, seqs.drop_last(1), UserFeatures.empty(len(seqs)), config)
    assert np.isfinite(result.history[0]["loss"]) and result.device.startswith("cuda")
    assert evaluate_next_token(model, EvalData(ev, UserFeatures.empty(len(seqs))), "cuda")["n"] == 4
