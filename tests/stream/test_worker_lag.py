"""The lag bound (`PANTHER_MAX_STATE_LAG`) in a real `panther worker` against a real broker: every
transaction scored exactly once, no score further than the bound behind its user's last encoder
refresh, and the lagging ones counted and marked (`state_lag` on the score) — also across a rebalance,
where the refreshes of the partitions that moved (queued, running, or superseded and kept for the
user's next batch) must not reach the new owner's scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from panther_common.ports import free_port
from stream.produce import produce_file
from stream.topics import create_topics
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import (
    Offline,
    WorkerProcess,
    cache_profiles,
    exactly_once,
    join_mid_stream,
    offline,
    running_worker,
    worker_settings,
)

__all__ = ["offline", "tiny_model"]  # fixtures, imported for pytest
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]
MAX_LAG = 2


def test_no_score_lags_its_users_refresh_by_more_than_the_bound(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline
) -> None:
    model, data = tiny_model
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold,
                               max_state_lag=MAX_LAG, batch_max=256)  # fmt: skip
    with running_worker(settings, tmp_path / "worker.log", profiles_from=None) as worker:
        cache_profiles(settings, worker, data)
        produce_file(offline.path, settings.topic_transactions, settings, show_progress=False)
        scores = exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
        lagged = worker.metric("panther_lagged_scores_total")
    lags = [s["state_lag"] for s in scores]
    assert max(lags) == MAX_LAG, sorted(set(lags))  # all at once: users with several events per batch
    assert lagged == sum(1 for lag in lags if lag) > 0
    assert not any(s["degraded"] for s in scores)


def test_a_worker_joining_mid_stream_under_the_bound_scores_each_event_once(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline
) -> None:
    model, data = tiny_model
    first = worker_settings(kafka_bootstrap, unique_topic, tmp_path / "a", model, offline.threshold,
                            partitions=4, max_state_lag=MAX_LAG)  # fmt: skip
    second = first.model_copy(update={"worker_data_dir": tmp_path / "b" / "worker", "web_port": free_port()})
    create_topics(first)
    workers = [WorkerProcess(settings, tmp_path / f"{name}.log")
               for name, settings in (("a", first), ("b", second))]  # fmt: skip
    try:
        producing = join_mid_stream(workers, first, data, offline.path)
        joined_mid_stream = producing.is_alive()
        producing.join(90)
        scores = exactly_once(first, first.topic_scores, [t.txn_id for t in offline.txns])
        per_worker = [w.scored() for w in workers]
    finally:
        for worker in workers:
            worker.stop()
    assert joined_mid_stream, "the second worker should join while events still arrive"
    assert all(n > 0 for n in per_worker), per_worker  # both scored (a batch a rebalance overtook
    # counts on the worker that dropped it too: the topic, read above, is what holds each score once)
    assert max(s["state_lag"] for s in scores) <= MAX_LAG
