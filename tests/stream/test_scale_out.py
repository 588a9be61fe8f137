"""Scale-out: two `panther worker` processes in one consumer group share the partitions, and together
score every transaction exactly once with the scores of a single in-process run (a user's state lives
on its partition, so it never matters which worker owns it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stream.produce import produce_file
from stream.topics import create_topics
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import (
    FAUST_DEVLOG,
    Offline,
    WorkerProcess,
    exactly_once,
    offline,
    wait_for,
    worker_settings,
)

__all__ = ["offline", "tiny_model"]  # fixtures, imported for pytest
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]


def test_two_workers_share_the_partitions_and_score_each_event_once(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline
) -> None:
    model, data = tiny_model
    first = worker_settings(
        kafka_bootstrap, unique_topic, tmp_path / "a", model, offline.threshold, partitions=4
    )
    second = first.model_copy(
        update={"worker_data_dir": tmp_path / "b" / "worker", "web_port": first.web_port + 1}
    )
    create_topics(first)
    workers = [  # Faust's developer log on: the stall this test once caught dropped records silently
        WorkerProcess(settings, tmp_path / f"{name}.log", env=FAUST_DEVLOG, loglevel="info")
        for name, settings in (("a", first), ("b", second))
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(timeout_s=120)  # ready = partitions assigned to *this* worker

        profiles = len(pd.read_parquet(data / "profiles.parquet"))
        produce_file(data / "profiles.parquet", first.topic_profiles, first, show_progress=False)
        wait_for(
            lambda: sum(w.metric("panther_events_total", 'outcome="profile"') for w in workers) >= profiles,
            90,
            "profiles on both workers",
            workers,
        )
        produce_file(offline.path, first.topic_transactions, first, show_progress=False)

        scores = exactly_once(first, first.topic_scores, [t.txn_id for t in offline.txns])
        live = {s["txn_id"]: s["score"] for s in scores}
        assert max(abs(live[t] - offline.scores[t]) for t in offline.scores) <= 1e-5
        per_worker = [w.scored() for w in workers]
        assert sum(per_worker) == len(offline.txns)
        assert all(n > 0 for n in per_worker), per_worker  # both took part
    finally:
        for worker in workers:
            worker.stop()
