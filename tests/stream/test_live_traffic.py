"""`panther produce --loop`: every pass is new traffic (ids, times), paced, until stopped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from stream.events import Transaction
from stream.live_traffic import PassPlan, plan_passes, produce_loop
from stream.settings import Settings
from stream.tail import follow
from stream.topics import create_topics

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday


def _event(**extra: object) -> Transaction:
    return Transaction(txn_id="t1", user_id="u1", timestamp=T0, amount=12.5, merchant_id="m1", **extra)


def test_passes_keep_weekday_and_hour_and_never_overlap() -> None:
    plan = plan_passes(T0, T0 + timedelta(days=9), now=T0 + timedelta(days=30))
    assert plan.offset == timedelta(weeks=4) and plan.period == timedelta(weeks=2)
    times = [plan.apply(_event(), k).timestamp for k in range(3)]
    assert all(t.weekday() == T0.weekday() and t.time() == T0.time() for t in times)
    assert times[0] <= T0 + timedelta(days=30) and times[1] - times[0] == plan.period
    assert plan_passes(T0, T0, now=T0 - timedelta(days=1)).offset == timedelta(0)  # never moved back


def test_each_pass_has_new_ids_and_no_labels() -> None:
    plan = PassPlan(run="abc", offset=timedelta(0), period=timedelta(weeks=1))
    first, second = (plan.apply(_event(is_fraud=True, fraud_scenario="card_testing"), k) for k in (0, 1))
    assert (first.txn_id, second.txn_id) == ("t1-abc.0", "t1-abc.1")
    assert first.is_fraud is None and first.fraud_scenario is None
    assert (first.user_id, first.amount, first.merchant_id) == ("u1", 12.5, "m1")


@pytest.mark.integration
def test_loop_produces_pass_after_pass(kafka_bootstrap: str, unique_topic, tmp_path: Path) -> None:
    names = {
        f"topic_{role}": unique_topic(role)
        for role in ("transactions", "profiles", "alerts", "scores", "dlq")
    }
    settings = Settings(kafka_bootstrap=kafka_bootstrap, partitions=2, **names)
    create_topics(settings)
    frame = pd.DataFrame({
        "txn_id": [f"t{i}" for i in range(5)], "user_id": [f"u{i % 2}" for i in range(5)],
        "timestamp": pd.date_range("2026-03-02", periods=5, freq="h", tz="UTC"),
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0], "merchant_id": ["m"] * 5, "is_fraud": [False] * 4 + [True],
    })  # fmt: skip
    frame.to_parquet(tmp_path / "live.parquet")
    report = produce_loop(
        tmp_path / "live.parquet", settings.topic_transactions, settings, rate=200, max_passes=3
    )
    assert (report.sent, report.delivered, report.failed) == (15, 15, 0)
    assert report.seconds >= 14 / 200  # paced
    tail = follow(settings.topic_transactions, settings, True, max_records=15, idle_timeout_s=20)
    records = [json.loads(r.value) for r in tail]
    ids = {r["txn_id"] for r in records}
    assert len(ids) == 15 and {i.rsplit(".", 1)[1] for i in ids} == {"0", "1", "2"}
    assert all(r["is_fraud"] is None for r in records)
    by_pass = {k: sorted(r["timestamp"] for r in records if r["txn_id"].endswith(f".{k}")) for k in range(3)}
    assert by_pass[0][-1] < by_pass[1][0] < by_pass[2][0]
