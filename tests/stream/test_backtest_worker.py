"""Backtest parity with the LIVE worker: for every transaction `panther worker` scored, a backtest of the
same topic gives the score the worker wrote to `transaction-scores`.

Marked `worker` like tests/stream/test_worker.py (deselected by default until issue 6's exactly-once
work lands; run: pytest -m worker tests/stream/test_backtest_worker.py). It reuses that module's worker
process helpers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from panther_common.ports import free_port
from stream.backtest import BacktestConfig, ModelSpec, TimeRange, run_backtest
from stream.backtest.config import epoch_ms
from stream.produce import produce_file
from stream.settings import Settings
from stream.topics import create_topics
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import WorkerProcess, collect, wait_for

__all__ = ["tiny_model"]
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]


def test_backtest_scores_equal_the_live_workers(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model
) -> None:
    model, data = tiny_model
    # retention.ms=-1: replayed history (record time = 2026-01 event time) must outlive the test.
    names = {f"topic_{r}": unique_topic(r) for r in ("transactions", "profiles", "alerts", "scores", "dlq")}
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        partitions=2,
        app_id=unique_topic("app"),
        web_port=free_port(),
        worker_data_dir=tmp_path / "worker",
        model_dir=model,
        scorer="inprocess",
        batch_max=64,
        batch_within_s=0.05,
        standby_replicas=0,
        retention_ms=-1,
        **names,
    )
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        profiles = pd.read_parquet(data / "profiles.parquet")
        produce_file(data / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
        cached = lambda: worker.metric("panther_events_total", 'outcome="profile"') >= len(profiles)  # noqa: E731
        wait_for(cached, 60, "profiles")
        frame = pd.read_parquet(data / "transactions.parquet").iloc[:600]
        path = tmp_path / "transactions.parquet"
        frame.to_parquet(path)
        produce_file(path, settings.topic_transactions, settings, show_progress=False)
        live = {s["txn_id"]: s["score"] for s in collect(settings, settings.topic_scores, len(frame))}
    finally:
        worker.stop()
    assert len(live) == len(frame)

    times = frame["timestamp"].map(epoch_ms)
    config = BacktestConfig(
        topic=settings.topic_transactions,
        time_range=TimeRange(int(times.min()), int(times.max()), lookback_ms=0),
        models=(ModelSpec("live-model", model),),
        report_dir=tmp_path / "report",
        profiles_topic=settings.topic_profiles,
        batch_size=settings.batch_max,
    )
    run_backtest(config, settings, progress=False)
    replayed = pq.read_table(tmp_path / "report" / "scores.parquet").to_pandas()
    assert sorted(replayed["txn_id"]) == sorted(live)
    worst = max(abs(row.score - live[row.txn_id]) for row in replayed.itertuples())
    assert worst <= 1e-5, worst
