"""The fraud bench end to end on the tiny artefact (no pretraining): one JSON-able report."""

from __future__ import annotations

import json
import shutil

from models.fraud.bench import run_fraud_bench


def test_bench_reports_every_model(tiny, tmp_path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny.model_dir, model_dir)
    report = run_fraud_bench(tiny.transactions_path, tiny.profiles_path, model_dir=model_dir, device="cpu",
                             head_epochs=1, progress=False, fit_overrides={"batch_size": 256},
                             gbt_overrides={"max_iter": 30})
    json.dumps(report)  # JSON-able
    assert set(report["models"]) == {"rules", "gbt", "dcn", "hybrid_textcnn", "hybrid_panther", "hybrid"}
    for metrics in report["models"].values():
        assert {"recall@0.1%", "recall@1%", "recall@10%", "precision@1%", "pr_auc", "roc_auc"} <= set(metrics)
        assert set(metrics["per_scenario"]) <= {"account_takeover", "card_testing", "merchant_compromise",
                                                "geo_anomaly", "mule_transfer"}
    assert report["hybrid_variant"] in ("hybrid_textcnn", "hybrid_panther")
    assert report["data"]["test_events"] > 0 and report["data"]["disabled_fields"] == []
    assert "hybrid_over_gbt_recall@1%" in report["targets"]
    assert (model_dir / "fraud_head.json").is_file()
