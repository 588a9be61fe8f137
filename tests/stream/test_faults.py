"""Faults production throws at the worker, each against a real broker and a real `panther worker` process.

- the worker is killed (SIGKILL) mid-stream and restarted: no lost score, no duplicate score or alert;
  under at_least_once no lost score, and any repeat equal to the first copy;
- the broker is stopped and started again (same data dir and ports) mid-stream: no loss;
- the broker is killed, then the worker is sent SIGTERM: it is gone within its stop deadline;
- a second worker joins while Triton is down in `pause` mode: it gets partitions during the outage, and
  every event is scored once after it;
- Triton is stopped for 10 s: scores fall back to the in-process model marked `degraded`, then Triton
  scores again, every event scored once;
- a producer much faster than the worker: the worker's memory stays bounded while the lag grows.

Every test tallies events produced / scored / alerted / lost / duplicated; set PANTHER_FAULT_REPORT to a
file to collect them as JSON lines (docs/RELIABILITY.md, "Fault tests", comes from such a run).
Marked `worker` (minutes on 2 cores): `pytest -m worker tests/stream/test_faults.py`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from panther_common.ports import free_port, free_ports
from stream.broker import LocalKafka
from stream.live_traffic import plan_passes
from stream.produce import DeliveryReport, _send, make_producer, produce_file
from stream.settings import Settings
from stream.topics import create_topics
from stream.worker.shutdown import EXIT_FORCED
from stream.worker.state_dir import MARKER
from tests.stream.model_fixtures import tiny_model
from tests.stream.worker_harness import (
    Offline,
    WorkerProcess,
    cache_profiles,
    collect,
    kill_inside_an_open_transaction,
    offline,
    produce_in_background,
    read_to_end,
    running_worker,
    serve_model,
    supervised,
    wait_for,
    with_triton,
    worker_settings,
)

__all__ = ["offline", "tiny_model"]  # fixtures, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.worker]

TOLERANCE = 1e-4  # live vs the in-process engine (Triton's float path differs in the last digits)


@dataclass
class Tally:
    fault: str
    produced: int
    scored: int  # distinct txn ids with a committed score
    alerted: int  # distinct txn ids with a committed alert
    lost: int  # produced, never scored
    duplicated: int  # extra score or alert records for a txn id already scored/alerted
    degraded: int = 0
    seconds: float = 0.0
    note: str = ""

    def record(self) -> None:
        path = os.environ.get("PANTHER_FAULT_REPORT")
        if path:
            with open(path, "a") as handle:
                handle.write(json.dumps(asdict(self)) + "\n")
        print(json.dumps(asdict(self)))


def tally(fault: str, settings: Settings, offline: Offline, started: float, note: str = "") -> Tally:
    """Reads every committed score and alert, checks them against the reference run, and records it."""
    ids = [t.txn_id for t in offline.txns]
    scores = collect(settings, settings.topic_scores, len(ids), timeout_s=120)
    time.sleep(3)  # a late duplicate would arrive here
    scores = collect(settings, settings.topic_scores, 10 * len(ids), timeout_s=5)
    alerts = collect(settings, settings.topic_alerts, 10 * len(ids), timeout_s=5)
    scored = {s["txn_id"] for s in scores}
    alerted = {a["txn_id"] for a in alerts}
    result = Tally(
        fault, len(ids), len(scored), len(alerted), len(set(ids) - scored),
        len(scores) - len(scored) + len(alerts) - len(alerted), sum(s["degraded"] for s in scores),
        round(time.monotonic() - started, 1), note,
    )  # fmt: skip
    result.record()
    assert result.lost == 0 and result.duplicated == 0, result
    assert scored == set(ids) and alerted == {s["txn_id"] for s in scores if s["alerted"]}
    live = {s["txn_id"]: s["score"] for s in scores}
    worst = max(abs(live[t] - offline.scores[t]) for t in ids)
    assert worst <= TOLERANCE, (f"live scores differ from the uninterrupted in-process run by {worst}\n"
                                + off_reference(scores, offline))  # fmt: skip
    assert alerted == offline.alerted
    return result


def off_reference(scores: list[dict], offline: Offline, users: int = 3) -> str:
    """Where live scores left the reference: for the users furthest off, each of their events in order
    (live and reference score, state lag, when it was processed), so the first wrong one shows which
    batch — before or after which rebalance, in the workers' logs — lost or repeated a state update."""
    by_id = {s["txn_id"]: s for s in scores}
    gap = {t: s["score"] - offline.scores[t] for t, s in by_id.items()}
    worst = sorted(by_id, key=lambda t: -abs(gap[t]))
    lines = []
    for user in list(dict.fromkeys(by_id[t]["user_id"] for t in worst))[:users]:
        lines.append(f"user {user}:")
        for txn in (t for t in offline.txns if t.user_id == user and t.txn_id in by_id):
            s = by_id[txn.txn_id]
            lines.append(f"  {txn.txn_id} live {s['score']:.5f} reference {offline.scores[txn.txn_id]:.5f} "
                         f"({gap[txn.txn_id]:+.5f}) lag {s['state_lag']} processed {s['processed_at']}")
    return "\n".join(lines)


@pytest.fixture
def started_worker(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline
) -> Iterator[tuple]:
    model, data = tiny_model
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold,
                               worker_group_instance_id=unique_topic("member"))  # fmt: skip
    with running_worker(settings, tmp_path / "worker.log", profiles_from=data) as worker:
        yield settings, worker


def test_a_killed_worker_restarts_without_losing_or_repeating_a_score(started_worker, offline) -> None:
    settings, worker = started_worker
    started = time.monotonic()
    producing = produce_in_background(settings, offline.path, rate=150.0)
    wait_for(lambda: worker.scored() >= len(offline.txns) // 5, 60, "the first scores")
    before = worker.scored()
    # No shutdown, and inside a transaction whose scores are already on the broker: a store ahead of
    # its changelog, records the restart must abort (fence) and a batch it must score again, once.
    open_records = kill_inside_an_open_transaction(settings, worker)
    assert before < len(offline.txns), "the kill should land mid-stream"
    producing.join(60)
    worker.start()
    worker.wait_ready(timeout_s=120)
    tally("worker SIGKILL mid-stream, restarted", settings, offline, started,
          note=f"killed after {int(before)} scores, {open_records} in an open transaction")  # fmt: skip
    committed = Counter(s["txn_id"] for s in read_to_end(settings, settings.topic_scores))
    everything = read_to_end(settings, settings.topic_scores, isolation="read_uncommitted")
    aborted = Counter(s["txn_id"] for s in everything) - committed
    assert aborted, "the kill should have left scores in a transaction that was then aborted"
    assert all(committed[txn_id] == 1 for txn_id in aborted), "each aborted score committed once after"


def test_at_least_once_a_killed_worker_repeats_scores_but_never_loses_one(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline
) -> None:
    """PANTHER_DELIVERY=at_least_once: SIGKILL mid-stream, restart. Every event scored; a repeat carries
    the same txn id, key and score (it was computed from the same state), so a subscriber can drop it."""
    model, data = tiny_model
    settings = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold,
                               delivery="at_least_once",
                               worker_group_instance_id=unique_topic("member"))  # fmt: skip
    with running_worker(settings, tmp_path / "worker.log", profiles_from=data) as worker:
        started = time.monotonic()
        producing = produce_in_background(settings, offline.path, rate=150.0)
        wait_for(lambda: worker.scored() >= len(offline.txns) // 5, 60, "the first scores")
        before = worker.scored()
        worker.stop(signal.SIGKILL)  # outputs sent, offsets not yet committed
        assert before < len(offline.txns), "the kill should land mid-stream"
        producing.join(60)
        worker.start()
        worker.wait_ready(timeout_s=120)
        ids = [t.txn_id for t in offline.txns]
        collect(settings, settings.topic_scores, len(ids), timeout_s=120)  # plain records: visible at once
        time.sleep(3)
        scores = collect(settings, settings.topic_scores, 10 * len(ids), timeout_s=5)
    scored = {s["txn_id"] for s in scores}
    Tally("at_least_once: worker SIGKILL mid-stream, restarted", len(ids), len(scored), 0,
          len(set(ids) - scored), len(scores) - len(scored), 0, round(time.monotonic() - started, 1),
          note=f"killed after {int(before)} scores; repeats allowed").record()  # fmt: skip
    assert scored == set(ids), f"{len(set(ids) - scored)} events never scored"
    worst = max(abs(s["score"] - offline.scores[s["txn_id"]]) for s in scores)
    assert worst <= TOLERANCE, f"a score (or its repeat) differs from the uninterrupted run by {worst}"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test may stop and start (the session's broker serves other tests)."""
    if os.environ.get("PANTHER_KAFKA_BOOTSTRAP"):
        pytest.skip("PANTHER_KAFKA_BOOTSTRAP is set: this test needs a local broker it can restart")
    settings = Settings()
    port, controller_port = free_ports(2)
    kafka = LocalKafka(settings.home, version=settings.kafka_version, port=port,
                       controller_port=controller_port, heap=settings.broker_heap,
                       data_dir=tmp_path / "kafka")  # fmt: skip
    kafka.start(wait_s=120)
    try:
        yield kafka
    finally:
        kafka.stop()


def test_a_broker_restart_mid_stream_loses_nothing(own_broker: LocalKafka, unique_topic, tmp_path: Path,
                                                   tiny_model, offline) -> None:  # fmt: skip
    model, data = tiny_model
    settings = worker_settings(own_broker.bootstrap, unique_topic, tmp_path, model, offline.threshold)
    with running_worker(settings, tmp_path / "worker.log", profiles_from=data) as worker:
        started = time.monotonic()
        producing = produce_in_background(settings, offline.path, rate=100.0)
        wait_for(lambda: worker.scored() >= len(offline.txns) // 5, 60, "the first scores")
        before = worker.scored()
        # A transaction commit that fails while the broker is away stops the worker (shutdown.py),
        # within its shutdown deadline, and its supervisor starts it again.
        with supervised(worker) as exits:
            own_broker.stop()
            time.sleep(5)
            own_broker.start(wait_s=120)
            assert before < len(offline.txns), "the restart should land mid-stream"
            producing.join(90)
            tally("broker stopped 5 s mid-stream, same data dir and ports", settings, offline, started,
                  note=f"stopped after {int(before)} scores; worker restarts: {len(exits)} (exit codes "
                       f"{exits})")  # fmt: skip
        assert len(exits) <= 1, f"the worker should ride out a broker restart, or stop once: {exits}"


def test_a_worker_stopped_after_its_broker_died_exits_in_bounded_time(
    own_broker: LocalKafka, unique_topic, tmp_path: Path, tiny_model, offline
) -> None:
    """Issue 15: SIGTERM with the broker gone left the worker alive (and later in a new broker's group)."""
    model, data = tiny_model
    timeout_s = 8.0
    settings = worker_settings(own_broker.bootstrap, unique_topic, tmp_path, model, offline.threshold,
                               shutdown_timeout_s=timeout_s)  # fmt: skip
    log = tmp_path / "worker.log"
    with running_worker(settings, log, profiles_from=data) as worker:
        produce_in_background(settings, offline.path, rate=100.0)
        wait_for(lambda: worker.scored() >= 50, 60, "the first scores")
        own_broker.stop(timeout_s=0)  # killed: no controlled shutdown, nothing answers any more
        assert worker.alive
        began = time.monotonic()
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(timeout=timeout_s + 30)  # TimeoutExpired: the bug is back
        took = time.monotonic() - began
    assert took <= timeout_s + 15, f"the worker took {took:.0f} s to stop"
    if code != 0:  # the stop could not finish without the broker: the deadline ended it, and said so
        text = log.read_text()
        assert code == EXIT_FORCED and "exiting now without committing" in text, text[-2000:]
        assert not any(settings.worker_data_dir.rglob(MARKER)), "a forced exit must not mark the store clean"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def triton_server(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    yield from serve_model(tiny_model[0], tmp_path_factory.mktemp("faults-triton"))


def test_a_triton_outage_degrades_then_catches_up(kafka_bootstrap: str, unique_topic, tmp_path: Path,
                                                  tiny_model, offline, triton_server) -> None:  # fmt: skip
    model, data = tiny_model
    base = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold)
    settings = with_triton(base, triton_server, degraded_mode="fallback", triton_breaker_reset_s=1.0)
    create_topics(settings)
    half = len(offline.txns) // 2
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    frame = pd.read_parquet(offline.path)
    frame.iloc[:half].to_parquet(first)
    frame.iloc[half:].to_parquet(second)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        cache_profiles(settings, worker, data)
        started = time.monotonic()
        producing = produce_in_background(settings, first, rate=30.0)  # ~10 s of traffic
        wait_for(lambda: worker.scored() >= 30, 60, "the first scores")
        triton_server.stop()  # type: ignore[attr-defined]
        down = time.monotonic()
        time.sleep(10)
        triton_server.start(wait_s=120)  # type: ignore[attr-defined]
        outage_s = time.monotonic() - down
        producing.join(60)
        wait_for(lambda: worker.scored() >= half, 60, "the first half scored")
        # The worker's /ready probes Triton through its own gRPC channel: once it answers, the channel
        # has reconnected (a channel left in reconnect backoff fails fast, and the breaker would send
        # a whole burst to the fallback until its next probe).
        wait_for(lambda: worker.get("/ready")[0] == 200, 60, "the worker to see Triton again")
        degraded_first = worker.metric("panther_degraded_total")
        produce_file(second, settings.topic_transactions, settings, show_progress=False)
        result = tally("Triton stopped ~10 s, degraded_mode=fallback", settings, offline, started,
                       note=f"Triton unreachable {outage_s:.0f} s (stop + restart)")  # fmt: skip
        assert degraded_first > 0, "events during the outage are scored by the fallback, marked degraded"
        assert result.degraded == degraded_first, "after Triton is back, nothing is degraded any more"
    finally:
        worker.stop()


def test_a_flooded_worker_keeps_its_memory_bounded(started_worker, offline) -> None:
    """180k records (~2.4 KB each: random padding the contract ignores) at full speed into a worker that
    scores a few hundred per second: the lag grows to nearly all of them, the worker's RSS grows by a
    fixed budget, far less than the backlog (Faust pauses fetching when its stream buffer is full:
    backpressure). The budget covers the fetch buffers and the first full-size batches' allocations."""
    settings, worker = started_worker
    plan = plan_passes(offline.txns[0].timestamp, offline.txns[-1].timestamp, datetime.now(UTC))
    records = [(t.user_id.encode(), plan.apply(t, k).to_json_bytes()[:-1] + _padding())
               for k in range(FLOOD_PASSES) for t in offline.txns]  # fmt: skip
    producer = make_producer(settings, **{"linger.ms": 20})
    report = DeliveryReport()
    warm_up, records = records[: len(offline.txns)], records[len(offline.txns) :]
    backlog_mb = sum(len(value) for _, value in records) / 2**20
    for key, value in warm_up:  # the first batches allocate the model's buffers: not backlog memory
        _send(producer, settings.topic_transactions, key, value, 0, report)
    producer.flush(30)
    wait_for(lambda: worker.scored() >= len(warm_up), 120, "the warm-up pass")
    baseline = worker.rss_bytes()
    started = time.monotonic()
    samples: list[tuple[float, int, float]] = []  # (seconds, rss, scored)
    for i, (key, value) in enumerate(records):
        _send(producer, settings.topic_transactions, key, value, 0, report)
        if i % 2000 == 0:
            producer.poll(0)
            samples.append((time.monotonic() - started, worker.rss_bytes(), worker.scored()))
    producer.flush(30)
    flooded_s = time.monotonic() - started
    while time.monotonic() - started < flooded_s + 20:  # the worker works on the backlog
        samples.append((time.monotonic() - started, worker.rss_bytes(), worker.scored()))
        time.sleep(0.5)
    assert report.delivered == len(warm_up) + len(records)
    peak = max(rss for _, rss, _ in samples)
    scored = worker.scored()
    lag = len(warm_up) + len(records) - scored
    growth_mb = (peak - baseline) / 2**20
    note = (f"flood {flooded_s:.1f} s, backlog {backlog_mb:.0f} MB; worker RSS {baseline / 2**20:.0f} MB -> "
            f"peak {peak / 2**20:.0f} MB (+{growth_mb:.0f} MB) with {lag:.0f} records unprocessed; "
            f"scored {scored:.0f} in the 20 s after; stopped with its backlog")  # fmt: skip
    Tally("producer faster than the worker", len(warm_up) + len(records), int(scored), -1, -1, -1,
          seconds=round(time.monotonic() - started, 1), note=note).record()  # fmt: skip
    assert lag > len(records) // 2, "the flood should outrun the worker"
    assert worker.alive
    print("rss (s, MB, scored):", [(round(t, 1), round(r / 2**20), int(n)) for t, r, n in samples[::10]])
    assert growth_mb < MEMORY_BUDGET_MB < backlog_mb / 3, note


FLOOD_PASSES = 300  # x LIVE_ROWS records: a backlog (~410 MB) several times the memory budget
MEMORY_BUDGET_MB = 128


def _padding() -> bytes:
    """~2 KB that lz4 cannot shrink: Kafka's fetch limits count compressed bytes, so a compressible
    padding would let one 1 MB fetch carry ~100 MB of records and measure the compressor instead."""
    return b',"padding":"' + base64.b64encode(os.urandom(1536)) + b'"}'


def test_a_rebalance_during_a_triton_outage_in_pause_mode_loses_nothing(
    kafka_bootstrap: str, unique_topic, tmp_path: Path, tiny_model, offline, triton_server
) -> None:
    """Issue 15: a batch held through a Triton outage (`degraded_mode=pause`) held the group's rebalance
    too: a worker joining meanwhile got no partition until Triton came back. Now the held batch is
    given up when the rebalance starts; the joiner gets its partitions during the outage, and once
    Triton answers every event is scored exactly once by one of the two, neither worker crashed."""
    model, data = tiny_model
    base = worker_settings(kafka_bootstrap, unique_topic, tmp_path, model, offline.threshold)
    settings = with_triton(base, triton_server, degraded_mode="pause", triton_breaker_reset_s=1.0)
    joiner = settings.model_copy(update={"worker_data_dir": tmp_path / "b" / "worker",
                                         "web_port": free_port()})  # fmt: skip
    create_topics(settings)
    first = WorkerProcess(settings, tmp_path / "first.log")
    second = WorkerProcess(joiner, tmp_path / "second.log")
    first.start()
    try:
        first.wait_ready()
        cache_profiles(settings, first, data)
        started = time.monotonic()
        producing = produce_in_background(settings, offline.path, rate=60.0)  # ~10 s of traffic
        wait_for(lambda: first.scored() >= 30, 60, "the first scores")
        triton_server.stop()  # type: ignore[attr-defined]
        down = time.monotonic()
        wait_for(lambda: first.metric("panther_scorer_up") == 0, 30, "the first worker to pause")
        second.start()

        wait_for(lambda: second.assigned() > 0, 45, "the joiner's partitions while Triton is still down")
        during = time.monotonic() - down
        triton_server.start(wait_s=120)  # type: ignore[attr-defined]
        producing.join(60)
        result = tally("rebalance during a Triton outage, degraded_mode=pause", settings, offline, started,
                       note=f"the joiner had partitions {during:.0f} s into the outage")  # fmt: skip
        assert first.alive and second.alive, "neither worker may crash (or be fenced) over it"
        assert result.degraded == 0, "pause mode never scores degraded"
        # the joiner restored its tables to where the broker says they end (stream/worker/recovery.py)
        assert second.ready()["flow"]["changelog_ends_from_broker"] >= 1
    finally:
        second.stop()
        first.stop()
        if not triton_server.status().running:  # type: ignore[attr-defined]
            triton_server.start(wait_s=120)  # type: ignore[attr-defined]
