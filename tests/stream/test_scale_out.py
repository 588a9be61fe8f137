"""Scale-out: two `panther worker` processes in one consumer group share the partitions, and together
score every transaction exactly once with the scores of a single in-process run (a user's state lives
on its partition, so it never matters which worker owns it)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from panther_common.ports import free_port
from stream.produce import produce_file
from stream.topics import create_topics
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import (
    FAUST_DEVLOG,
    Offline,
    WorkerProcess,
    collect,
    exactly_once,
    join_mid_stream,
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


def test_at_least_once_workers_joining_and_leaving_mid_stream_lose_nothing(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline
) -> None:
    """at_least_once scores the next batch while the one before is being delivered (`commit_behind.py`):
    a batch in flight when a rebalance comes is dropped with the batch that read its states, or
    committed before the partitions move. A second worker joins under traffic, then the first leaves
    (SIGTERM, its batch in flight finishing): every event is scored, and every score, repeats included,
    equals the uninterrupted in-process run's."""
    model, data = tiny_model
    first = worker_settings(kafka_bootstrap, unique_topic, tmp_path / "a", model, offline.threshold,
                            partitions=4, delivery="at_least_once")  # fmt: skip
    second = first.model_copy(update={"worker_data_dir": tmp_path / "b" / "worker", "web_port": free_port()})
    create_topics(first)
    workers = [WorkerProcess(settings, tmp_path / f"{name}.log", env=FAUST_DEVLOG, loglevel="info")
               for name, settings in (("a", first), ("b", second))]  # fmt: skip

    def recovered(worker: WorkerProcess) -> bool:
        """`worker` owns every partition (4 each of 2 topics and 2 changelogs, and the assignor's leader
        topic) and has restored its tables."""
        ready = worker.ready()
        flow = ready.get("flow", {})
        restored = flow.get("recovery_completed") and not flow.get("in_recovery")
        return ready.get("assigned_partitions") == 17 and bool(restored)

    try:
        producing = join_mid_stream(workers, first, data, offline.path)
        first_scored = workers[0].scored()
        workers[0].stop(signal.SIGTERM)
        left_mid_stream = producing.is_alive()
        producing.join(90)
        ids = [t.txn_id for t in offline.txns]
        # a stall fails here, with the survivor's diagnosis (its /ready, log, tasks)
        wait_for(lambda: recovered(workers[1]), 120, "the survivor's recovery", workers[1:])
        collect(first, first.topic_scores, len(ids), timeout_s=120)
        time.sleep(3)  # a late repeat would arrive here
        scores = collect(first, first.topic_scores, 10 * len(ids), timeout_s=5)
        second_scored = workers[1].scored()
    finally:
        for worker in workers:
            worker.stop()
    assert left_mid_stream, "the first worker should leave while events still arrive"
    assert first_scored > 0 and second_scored > first_scored / 10, (first_scored, second_scored)
    scored = {s["txn_id"] for s in scores}
    assert scored == set(ids), f"{len(set(ids) - scored)} events never scored"
    worst = max(abs(s["score"] - offline.scores[s["txn_id"]]) for s in scores)
    assert worst <= 1e-5, f"a score (or its repeat) differs from the uninterrupted run by {worst}"
