"""The streaming detector end to end: real broker, real `panther worker` process, real model artefact.

One tiny model is trained per session (tests/stream/model_fixtures.py, ~30 s). Profiles are produced
first and awaited, so every transaction is scored with its user's cached embedding, exactly as the
offline engine run it is compared with. The worker harness is shared with test_faults.py.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.produce import make_producer, produce_file
from stream.worker.state_dir import MARKER
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import (
    Offline,
    cache_profiles,
    exactly_once,
    offline,
    read_to_end,
    running_worker,
    serve_model,
    wait_for,
    with_triton,
    worker_settings,
)
from triton_repo.server import LocalTriton

__all__ = ["offline", "tiny_model"]  # fixtures, imported for pytest

# The first test runs in `make test`; the restart and Triton ones are marked `worker` (deselected by
# default, ~3 min together on 2 cores): `pytest -m worker tests/stream/test_worker.py`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MALFORMED = [b"{not json", b'{"txn_id": "x1", "user_id": "u000001"}', b'{"txn_id": "x2", "user_id": "u1", '
             b'"timestamp": "2026-01-01T00:00:00Z", "amount": -5, "merchant_id": "m1"}']  # fmt: skip
# Each one's dead letter: the fields at fault and the start of its reason.
DEAD_REASONS = {
    MALFORMED[0]: (["<record>"], "not valid JSON: "),
    MALFORMED[1]: (["timestamp", "amount", "merchant_id"],
                   "timestamp={'txn_id': 'x1', 'user_id': 'u000001'}: Field required; amount="),
    MALFORMED[2]: (["amount"], "amount=-5: Input should be greater than or equal to 0"),
}


@pytest.fixture
def live_setup(kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline) -> Iterator[tuple]:
    model, data = tiny_model
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold)
    with running_worker(settings, tmp_path / "worker.log", profiles_from=None) as worker:
        yield settings, worker, model, data


def _assert_live_equals_offline(scores: list[dict], offline: Offline, tolerance: float) -> None:
    live = {s["txn_id"]: s["score"] for s in scores}
    worst = max(abs(live[t] - offline.scores[t]) for t in offline.scores)
    assert worst <= tolerance, worst
    assert not any(s["degraded"] for s in scores)


def test_every_valid_transaction_is_scored_once_and_bad_ones_reach_the_dlq(live_setup, offline) -> None:
    settings, worker, _, data = live_setup
    cache_profiles(settings, worker, data)
    producer = make_producer(settings)
    for raw in MALFORMED:
        producer.produce(settings.topic_transactions, key=b"u000001", value=raw)
    producer.flush(10)
    produce_file(offline.path, settings.topic_transactions, settings, show_progress=False)
    # A redelivered transaction (same txn_id) must not be scored twice.
    first = offline.txns[0]
    producer.produce(settings.topic_transactions, key=first.user_id.encode(), value=first.to_json_bytes())
    # A valid transaction keyed by its txn id, not its user_id: a dead letter, never a score (issue 15).
    wrong = first.model_copy(update={"txn_id": "keyed-by-its-txn-id"})
    producer.produce(settings.topic_transactions, key=b"keyed-by-its-txn-id", value=wrong.to_json_bytes())
    producer.flush(10)

    scores = exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
    # The whole DLQ, to its end: exactly one letter per malformed record (the redelivered duplicate and
    # the valid transactions none), each with its own reason.
    dead = read_to_end(settings, settings.topic_dlq)
    keyed = [d for d in dead if d["errors"][0]["field"] == "<key>"]
    assert len(keyed) == 1 and keyed[0]["key"] == "keyed-by-its-txn-id", [d["reason"] for d in dead]
    assert f"the record key must be its user_id '{first.user_id}'" in keyed[0]["reason"]
    dead = [d for d in dead if d is not keyed[0]]
    assert sorted(base_raw(d) for d in dead) == sorted(MALFORMED), [d["reason"] for d in dead]
    for letter in dead:
        fields, reason = DEAD_REASONS[base_raw(letter)]
        assert [e["field"] for e in letter["errors"]] == fields, letter
        assert letter["reason"].startswith(reason), letter
        assert (letter["source_topic"], letter["key"]) == (settings.topic_transactions, "u000001")
    assert len({(d["partition"], d["offset"]) for d in dead}) == len(MALFORMED)

    # Live equals the in-process engine on the same events (one code path for state and features).
    _assert_live_equals_offline(scores, offline, 1e-5)
    # Planted fraud is alerted at the recall the offline run predicts for this threshold.
    alerts = exactly_once(settings, settings.topic_alerts, sorted(offline.alerted))
    alerted = {a["txn_id"] for a in alerts}
    assert 0 < offline.recall(offline.alerted) < 1
    assert offline.recall(alerted) == offline.recall(offline.alerted)
    # What a stall would be diagnosed with (the harness prints it on a timeout): readiness with Faust's
    # flow state, and every partition's position and every asyncio task.
    status, ready = worker.get("/ready")
    assert status == 200 and json.loads(ready)["flow"]["recovery_completed"] is True
    status, tasks = worker.get("/debug/tasks")
    listed = f"{settings.topic_transactions}:0 "
    assert status == 200 and "== main loop:" in tasks and "== consumer-thread loop:" in tasks, tasks[:2000]
    assert "score-transactions: run:" in tasks and "embed-profiles: run:" in tasks, tasks[:3000]
    assert listed in tasks and " / active" in tasks, tasks[:2000]
    assert {a["threshold"] for a in alerts} == {offline.threshold}

    status, body = worker.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert worker.metric("panther_events_total", 'outcome="scored"') == len(offline.txns)
    assert worker.metric("panther_events_total", 'outcome="duplicate"') == 1
    # Live equals offline with states read from the memo of decoded states (state_memo.py), not only
    # decoded from their bytes.
    assert worker.metric("panther_state_memo_total", 'outcome="hit"') > 0


@pytest.mark.worker
@pytest.mark.parametrize("stop, data_dir", [(signal.SIGTERM, "kept"), (signal.SIGTERM, "wiped"),
                                            (signal.SIGKILL, "kept")])  # fmt: skip
def test_a_restarted_worker_scores_every_transaction_once_as_an_uninterrupted_run(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline, stop: int, data_dir: str
) -> None:
    model, data = tiny_model
    # Static membership: the restarted worker takes its partitions back at once (a killed member
    # would otherwise hold them until the 60 s session timeout).
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold,
                               worker_group_instance_id=unique_topic("member"))  # fmt: skip
    with running_worker(settings, tmp_path / "worker.log", profiles_from=data) as worker:
        rate = 250.0  # ~2.4 s of traffic: the stop lands mid-stream, the rest arrives while it is down
        producing = threading.Thread(
            target=produce_file, args=(offline.path, settings.topic_transactions, settings, rate),
            kwargs={"show_progress": False},
        )  # fmt: skip
        producing.start()
        scored = lambda: worker.metric("panther_events_total", 'outcome="scored"')  # noqa: E731
        wait_for(lambda: scored() >= len(offline.txns) // 5, 60, "the first scores")
        before = scored()
        worker.stop(stop)
        assert before < len(offline.txns), "the stop should land mid-stream"
        marked = any(settings.worker_data_dir.rglob(MARKER))  # type: ignore[union-attr]
        assert marked == (stop == signal.SIGTERM), "a clean stop marks the store, a kill does not"
        if data_dir == "wiped":
            shutil.rmtree(settings.worker_data_dir)  # type: ignore[arg-type]
        producing.join(60)
        worker.start()
        worker.wait_ready()
        scores = exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
        _assert_live_equals_offline(scores, offline, 1e-5)
        alerts = exactly_once(settings, settings.topic_alerts, sorted(offline.alerted))
        assert offline.recall({a["txn_id"] for a in alerts}) == offline.recall(offline.alerted)


@pytest.fixture(scope="module")
def triton_for_tiny_model(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """A real tritonserver serving the worker's own artefact, exported as `panther export` does."""
    yield from serve_model(tiny_model[0], tmp_path_factory.mktemp("worker-triton"))  # type: ignore[misc]


@pytest.mark.worker
def test_the_worker_scores_through_triton_as_in_process(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline: Offline, triton_for_tiny_model
) -> None:
    model, data = tiny_model
    server = triton_for_tiny_model
    settings = with_triton(worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold),
                           server, degraded_mode="pause")  # fmt: skip
    with running_worker(settings, tmp_path / "worker.log", profiles_from=data) as worker:
        produce_file(offline.path, settings.topic_transactions, settings, show_progress=False)
        scores = exactly_once(settings, settings.topic_scores, [t.txn_id for t in offline.txns])
        _assert_live_equals_offline(scores, offline, 1e-4)
        alerts = exactly_once(settings, settings.topic_alerts, sorted(offline.alerted))
        assert offline.recall({a["txn_id"] for a in alerts}) == offline.recall(offline.alerted)
        assert worker.metric("panther_degraded_total") == 0


def base_raw(letter: dict) -> bytes:
    import base64

    return base64.b64decode(letter["raw_b64"])
