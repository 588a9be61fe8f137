"""State retention in a real `panther worker` against a real broker: an idle user's state is deleted
and a tombstone reaches the table's changelog (read_committed), so compaction frees it there too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.produce import make_producer
from stream.tail import follow
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import running_worker, wait_for, worker_settings

__all__ = ["tiny_model"]  # a fixture, imported for pytest
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]
DAY_MS = 86_400_000
T0 = 1_750_000_000_000  # 2025-06-15, epoch ms


def _txn(txn_id: str, user_id: str, time_ms: int) -> bytes:
    return json.dumps({"txn_id": txn_id, "user_id": user_id, "timestamp": time_ms, "amount": 12.5,
                       "merchant_id": "m-1", "channel": "online"}).encode()  # fmt: skip


def test_an_idle_user_is_deleted_with_a_changelog_tombstone(kafka_bootstrap: str, unique_topic,
                                                            tmp_path: Path, tiny_model) -> None:  # fmt: skip
    model, _ = tiny_model
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, 0.5, partitions=1,
                               state_retention_days=1.0, state_sweep_interval_s=0.0)  # fmt: skip
    # interval 0: the one late event's batch sweeps, however soon after the first batch's sweep it comes
    changelog = f"{settings.app_id}-user_windows-changelog"
    with running_worker(settings, tmp_path / "worker.log", profiles_from=None) as worker:
        producer = make_producer(settings)
        first = [("idle", T0), ("idle", T0 + 60_000), ("active", T0 + 120_000)]
        for i, (user, time_ms) in enumerate(first):
            value = _txn(f"t{i}", user, time_ms)
            producer.produce(settings.topic_transactions, key=user.encode(), value=value)
        producer.flush(10)
        wait_for(lambda: worker.scored() >= 3, 60, "the first three scores")
        assert worker.metric("panther_state_evictions_total") == 0
        # Two days later (event time) only "active" pays: "idle" has been idle past the 1-day retention.
        producer.produce(settings.topic_transactions, key=b"active",
                         value=_txn("t3", "active", T0 + 2 * DAY_MS))  # fmt: skip
        producer.flush(10)
        wait_for(lambda: worker.metric("panther_state_evictions_total") >= 1, 60, "the eviction")
        records = follow(changelog, settings, from_beginning=True, max_records=10, idle_timeout_s=10)
        assert worker.metric("panther_state_evictions_total") == 1 and worker.scored() == 4
    by_key = [(r.key, r.value == b"") for r in records]
    assert by_key.count(("idle", True)) == 1 and by_key[-1] in {("idle", True), ("active", False)}
    assert [k for k, tombstone in by_key if tombstone] == ["idle"]  # "active" is kept
    last_idle = max(i for i, (k, _) in enumerate(by_key) if k == "idle")
    assert by_key[last_idle] == ("idle", True), "the tombstone must be the user's last changelog record"
