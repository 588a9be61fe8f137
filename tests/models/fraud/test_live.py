"""One code path: live per-event scoring equals bulk offline scoring; artefact, restart, duplicates.

The fixture fits a (1-epoch) head into a copy of the tiny artefact with `fit_fraud`, then:
- bulk: `score_frame` (PANTHER prefix pass + replay + head) — what `evaluate_fraud` and the bench use;
- live: `score_events` over the same events in arrival order, micro-batch by micro-batch, with
  `FraudScorer.score` — what the worker and the backtest use.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifact import ArtifactError, load_artifact
from models.fraud.api import evaluate_fraud, fit_fraud, score_frame
from models.fraud.ensemble import HeadEnsemble
from models.fraud.head import FraudHead
from models.fraud.head_io import HEAD_JSON, load_head
from models.fraud.live import LiveEvent, score_events, tokenize_records, top_reasons
from models.fraud.scorer import FraudScorer
from models.fraud.state import UserState
from models.fraud.txn import stable_hash, txn_identity, txn_view
from models.sequences import to_epoch_ms


@pytest.fixture(scope="module")
def fitted(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("fitted") / "model"
    shutil.copytree(tiny.model_dir, model_dir)
    summary = fit_fraud(model_dir, tiny.transactions_path, tiny.profiles_path, epochs=1, device="cpu")
    assert summary["variant"] == "hybrid_panther" and summary["train_events"] > 0
    assert summary["residual"] and (model_dir / "fraud_trees.safetensors").is_file()  # the default
    assert summary["heads"] == 3 == len(summary["members"])  # the default: an ensemble of three heads
    return model_dir


def live_events(tiny, scorer: FraudScorer) -> tuple[list[LiveEvent], list[str]]:
    frame = tiny.txns
    order = np.lexsort((np.arange(len(frame)), to_epoch_ms(frame["timestamp"])))  # arrival = event time
    frame = frame.iloc[order].reset_index(drop=True)
    records = frame.to_dict("records")
    tokens = tokenize_records(scorer.artifact.tokenizer, records)
    ids, _ = scorer.artifact.profile_schema.encode(tiny.profiles)
    profile_of = dict(zip(tiny.profiles["user_id"], ids, strict=True))
    events = [LiveEvent(r["user_id"], txn_view(r, int(t)), profile_of[r["user_id"]])
              for r, t in zip(records, tokens, strict=True)]
    return events, frame["txn_id"].tolist()


def run_live(scorer: FraudScorer, events: list[LiveEvent], batch: int,
             states: dict[str, UserState] | None = None) -> list[float]:
    states = {} if states is None else states
    out: list[float] = []
    for i in range(0, len(events), batch):
        results = score_events(scorer.score, scorer.schema, scorer.max_len, states, events[i : i + batch],
                               reasons=False)
        out += [r.p_fraud for r in results]
    return out


def assert_live_equals_bulk(tiny, model_dir: Path, scorer: FraudScorer,
                            n: int) -> tuple[list[LiveEvent], list[float]]:  # fmt: skip
    """The first `n` arrivals scored live (batches of 40) equal `score_frame`'s → (events, live scores)."""
    events, txn_ids = live_events(tiny, scorer)
    live = run_live(scorer, events[:n], batch=40)
    data, bulk_scores = score_frame(model_dir, tiny.transactions_path, tiny.profiles_path, device="cpu")
    bulk = dict(zip(tiny.txns["txn_id"].to_numpy()[data.row], bulk_scores, strict=True))
    np.testing.assert_allclose(live, [bulk[t] for t in txn_ids[:n]], rtol=1e-4, atol=1e-5)
    return events[:n], live


def test_live_scores_equal_bulk_scores(tiny, fitted: Path) -> None:
    scorer = FraudScorer.from_artifact(fitted)
    events, txn_ids = live_events(tiny, scorer)
    events, txn_ids = events[:700], txn_ids[:700]  # the first 700 arrivals: their states are complete
    live = dict(zip(txn_ids, run_live(scorer, events, batch=64), strict=True))
    data, bulk_scores = score_frame(fitted, tiny.transactions_path, tiny.profiles_path, device="cpu")
    bulk = dict(zip(tiny.txns["txn_id"].to_numpy()[data.row], bulk_scores, strict=True))
    np.testing.assert_allclose([live[t] for t in txn_ids], [bulk[t] for t in txn_ids], rtol=1e-4, atol=1e-5)


def test_batch_boundaries_and_restarts_do_not_change_scores(tiny, fitted: Path) -> None:
    scorer = FraudScorer.from_artifact(fitted)
    events, _ = live_events(tiny, scorer)
    events = events[:100]
    reference = run_live(scorer, events, batch=64)
    one_by_one = run_live(scorer, events, batch=1)
    np.testing.assert_allclose(one_by_one, reference, rtol=1e-5, atol=1e-6)
    states: dict[str, UserState] = {}
    first = run_live(scorer, events[:60], batch=30, states=states)
    restored = {user: UserState.from_bytes(state.to_bytes()) for user, state in states.items()}  # restart
    second = run_live(scorer, events[60:], batch=30, states=restored)
    np.testing.assert_allclose(first + second, reference, rtol=1e-5, atol=1e-6)


def test_redelivered_event_is_not_scored_twice(tiny, fitted: Path) -> None:
    scorer = FraudScorer.from_artifact(fitted)
    events, _ = live_events(tiny, scorer)
    states: dict[str, UserState] = {}
    score_events(scorer.score, scorer.schema, scorer.max_len, states, events[:30])
    user = events[29].user_id
    before = states[user].to_bytes()
    again = score_events(scorer.score, scorer.schema, scorer.max_len, states, [events[29], events[29]])
    assert [r.duplicate for r in again] == [True, True]
    assert states[user].to_bytes() == before


def test_two_txn_ids_with_one_crc32_are_both_scored(tiny, fitted: Path) -> None:
    """Issue 15: the second of two ids with the same CRC-32 was taken for a redelivery and never scored."""
    scorer = FraudScorer.from_artifact(fitted)
    events, _ = live_events(tiny, scorer)
    first = events[0]
    later = next(e for e in events[1:] if e.user_id == first.user_id)
    colliding = [LiveEvent(e.user_id, e.txn._replace(txn=txn_identity(txn_id)), e.profile)
                 for e, txn_id in ((first, "txn-597958"), (later, "txn-23020404"))]
    results = score_events(scorer.score, scorer.schema, scorer.max_len, {}, colliding)
    assert stable_hash("txn-597958") == stable_hash("txn-23020404")
    assert [r.duplicate for r in results] == [False, False]


def test_score_outputs_and_reasons(tiny, fitted: Path) -> None:
    scorer = FraudScorer.from_artifact(fitted)
    events, _ = live_events(tiny, scorer)
    states: dict[str, UserState] = {}
    results = score_events(scorer.score, scorer.schema, scorer.max_len, states, events[:64])
    assert all(0.0 <= r.p_fraud <= 1.0 and r.reasons is not None for r in results)
    assert results[0].reasons.shape == (len(scorer.signal_names),)
    reasons = top_reasons(results[-1].reasons, scorer.signal_names, k=3)
    assert len(reasons) == 3 and {"signal", "contribution"} == set(reasons[0])
    from models.fraud.live import build_request

    request = build_request(scorer.schema, scorer.max_len, [UserState()] * 2, events[:2])
    out = scorer.score(**request)
    assert out["p_fraud"].shape == (2,) and out["seq_embedding"].shape == (2, 16)
    assert out["reasons"].shape == (2, len(scorer.signal_names))
    cached = scorer.score(**request, user_embedding=scorer.user_embedding(request["profile"]))
    np.testing.assert_allclose(cached["p_fraud"], out["p_fraud"], rtol=1e-6)


def test_artifact_round_trip_and_refusals(fitted: Path, tmp_path: Path) -> None:
    art = load_artifact(fitted)
    bundle = load_head(art)
    assert bundle.schema.width == bundle.head.config.n_features
    assert "fraud_head" in art.config["weights"] or "fraud_head.safetensors" in art.config["weights"]
    broken = tmp_path / "model"
    shutil.copytree(fitted, broken)
    (broken / HEAD_JSON).write_text((broken / HEAD_JSON).read_text().replace('"weights_sha256": "',
                                                                             '"weights_sha256": "0'))
    with pytest.raises(ArtifactError, match="fit-fraud"):
        load_head(load_artifact(broken))


def test_evaluate_reports_fraud_metrics(tiny, fitted: Path) -> None:
    report = evaluate_fraud(fitted, tiny.transactions_path, tiny.profiles_path, device="cpu")
    metrics = report["fraud"]
    assert metrics["fraud"] == int(tiny.txns["is_fraud"].sum())
    assert {"recall@1%", "precision@10%", "pr_auc", "roc_auc", "per_scenario"} <= set(metrics)


def test_fine_tuned_encoder_is_saved_and_served(tiny, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny.model_dir, model_dir)
    fit_fraud(model_dir, tiny.transactions_path, tiny.profiles_path, epochs=1, device="cpu", fine_tune=True,
              fit_overrides={"batch_size": 512})
    assert (model_dir / "fraud_encoder.safetensors").is_file()
    scorer = FraudScorer.from_artifact(model_dir)
    assert scorer.tuned_encoder is not None
    assert_live_equals_bulk(tiny, model_dir, scorer, 80)


def test_a_residual_head_serves_its_trees_live_as_in_bulk(tiny, fitted: Path) -> None:
    """`fit_fraud(residual=True)`, the default: the trees ship in the artefact; live scores (the head's
    logit plus the trees') equal the bulk path's, and without the trees the head alone scores something
    else."""
    model_dir = fitted
    scorer = FraudScorer.from_artifact(model_dir)
    assert scorer.trees is not None
    events, live = assert_live_equals_bulk(tiny, model_dir, scorer, 120)
    scorer.trees = None
    assert np.abs(np.asarray(run_live(scorer, events, batch=40)) - live).max() > 1e-3


def test_a_residual_artefact_without_its_trees_is_refused(fitted: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(fitted, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    del config["weights"]["fraud_trees.safetensors"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="trees"):
        FraudScorer.from_artifact(model_dir)


def test_the_default_ensemble_is_saved_and_loaded_whole(fitted: Path) -> None:
    bundle = load_head(load_artifact(fitted))
    assert isinstance(bundle.head, HeadEnsemble) and len(bundle.head) == 3
    assert bundle.info["ensemble"] == 3
    assert [m["seed"] for m in bundle.info["summary"]["members"]] == [0, 1, 2]
    first, second = (member.psi.weight for member in bundle.head.members[:2])
    assert not torch.equal(first, second)


def test_the_head_alone_is_still_two_flags_away(tiny, tmp_path: Path) -> None:
    """One head without trees; its fraud_head.json without "ensemble" (as before ensembles) loads too."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny.model_dir, model_dir)
    summary = fit_fraud(model_dir, tiny.transactions_path, tiny.profiles_path, epochs=1, device="cpu",
                        residual=False, heads=1, fit_overrides={"batch_size": 512})  # fmt: skip
    assert not summary["residual"] and FraudScorer.from_artifact(model_dir).trees is None
    info = json.loads((model_dir / HEAD_JSON).read_text())
    assert info.pop("ensemble") == 1
    (model_dir / HEAD_JSON).write_text(json.dumps(info))
    assert isinstance(load_head(load_artifact(model_dir)).head, FraudHead)


def test_evaluate_without_a_head_says_why(tiny) -> None:
    report = evaluate_fraud(tiny.model_dir, tiny.transactions_path, tiny.profiles_path, device="cpu")
    assert report["fraud"] is None and "fit-fraud" in report["reason"]
