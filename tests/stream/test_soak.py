"""The soak: a long run through several real workers, one broker and one Triton, with faults on a
schedule, counted by an independent read_committed consumer. Not in the default suite (it runs only
when `PANTHER_SOAK_S` is set); docs/RELIABILITY.md ("Soak") has the figures and the command:

    PANTHER_SOAK_S=1200 PANTHER_SOAK_RATE=1000 pytest tests/stream/test_soak.py -s

Schedule, as fractions of the duration D: one worker from the start, a second at 0.05·D, a third at
0.15·D (a rolling scale-up while traffic flows); workers 1 and 2 SIGKILLed in turn every D/7 and
restarted at once (worker 0 is never killed: its memory is the "flat after warm-up" measure); the broker
stopped and started again at 0.45·D; Triton stopped for 30 s at 0.7·D (scores fall back, `degraded`).
1 % of the records are malformed. Counted at the end: produced, scored (distinct), duplicated, lost,
dead-lettered, restarts, worker 0's memory after warm-up and at the end, and the visible latency
(score record time − produce time) p50/p99 outside the fault windows (each fault + 30 s).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from panther_common.ports import free_port
from stream.broker import LocalKafka
from stream.events import Transaction
from stream.files import read_events
from stream.live_traffic import plan_passes
from stream.produce import make_producer
from stream.settings import Settings
from stream.topics import create_topics
from tests.stream.model_fixtures import tiny_model
from tests.stream.test_faults import own_broker
from tests.stream.worker_harness import WorkerProcess, serve_model, with_triton, worker_settings

__all__ = ["own_broker", "tiny_model"]  # fixtures, imported for pytest
SOAK_S = float(os.environ.get("PANTHER_SOAK_S", "0"))
RATE = float(os.environ.get("PANTHER_SOAK_RATE", "1000"))
ONLY_ON_REQUEST = pytest.mark.skipif(not SOAK_S, reason="the soak runs only when PANTHER_SOAK_S is set")
pytestmark = [pytest.mark.integration, pytest.mark.slow, ONLY_ON_REQUEST]
MALFORMED_EVERY = 100


class Traffic(threading.Thread):
    """The tiny data set replayed pass after pass at RATE records/s, every 100th record malformed."""

    def __init__(self, settings: Settings, path: Path) -> None:
        super().__init__(daemon=True)
        self.settings, self.events = settings, [t for c in read_events(path, Transaction) for t in c]
        self.sent_ms: dict[str, int] = {}  # txn id → produce wall time (epoch ms)
        self.malformed = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        times = [e.timestamp for e in self.events]
        plan = plan_passes(min(times), max(times), datetime.now(UTC))
        producer = make_producer(self.settings)
        topic, interval, k, n = self.settings.topic_transactions, 1.0 / RATE, 0, 0
        began = time.perf_counter()
        while not self.stop_event.is_set():
            for event in self.events:
                if self.stop_event.is_set():
                    break
                n += 1
                ahead = began + n * interval - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
                live = plan.apply(event, k)
                if n % MALFORMED_EVERY == 0:
                    truncated = b'{"txn_id": "' + str(n).encode()
                    producer.produce(topic, key=live.user_id.encode(), value=truncated)
                    self.malformed += 1
                    continue
                self.sent_ms[live.txn_id] = int(time.time() * 1000)
                producer.produce(topic, key=live.user_id.encode(), value=live.to_json_bytes())
                producer.poll(0)
            k += 1
        assert producer.flush(120) == 0, "records not delivered"


def _read_all(settings: Settings, topic: str) -> list[tuple[bytes, int]]:
    """(value, record time ms) of every committed record of `topic`, to its end."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"soak-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end, out = dict.fromkeys(partitions, False), []
        while not all(at_end.values()):
            for message in consumer.consume(10_000, timeout=2):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        at_end[message.partition()] = True
                    continue
                at_end[message.partition()] = False
                out.append((message.value(), message.timestamp()[1]))
        return out
    finally:
        consumer.close()


def test_soak(own_broker: LocalKafka, unique_topic, tmp_path: Path, tiny_model) -> None:
    model, data = tiny_model
    triton_root = tmp_path / "triton"
    triton_root.mkdir()
    servers = serve_model(model, triton_root)
    triton = next(servers)
    base = worker_settings(own_broker.bootstrap, unique_topic, tmp_path, model, 0.5, partitions=6,
                           batch_max=512)  # fmt: skip
    settings = with_triton(base, triton, degraded_mode="fallback", triton_breaker_reset_s=1.0)
    create_topics(settings)
    workers = [WorkerProcess(settings.model_copy(update={
        "worker_data_dir": tmp_path / f"w{i}", "web_port": free_port(),
        "worker_group_instance_id": f"soak-{i}"}), tmp_path / f"w{i}.log") for i in range(3)]  # fmt: skip
    traffic = Traffic(settings, data / "transactions.parquet")
    faults: list[tuple[str, float, float]] = []  # (what, start, end) in seconds since the start
    memory: list[tuple[float, int]] = []
    restarts = 0
    began, wall_began = time.monotonic(), time.time()

    def now() -> float:
        return time.monotonic() - began

    def at(fraction: float) -> None:
        """Wait until `fraction` of the run, sampling memory and restarting any worker that died."""
        nonlocal restarts
        while now() < fraction * SOAK_S:
            memory.append((now(), workers[0].rss_bytes()))
            for worker in workers:  # a worker that died on its own is restarted as a supervisor would
                if worker.proc is not None and not worker.alive:
                    restarts += 1
                    worker.start()
            time.sleep(min(5.0, max(0.0, fraction * SOAK_S - now())))

    try:
        workers[0].start()
        workers[0].wait_ready(120)
        traffic.start()
        schedule: list[tuple[float, str]] = [(0.05, "start 1"), (0.15, "start 2"), (0.45, "broker"),
                                             (0.70, "triton")]  # fmt: skip
        schedule += [(k / 7, f"kill {1 + k % 2}") for k in range(1, 7)]
        for fraction, action in sorted(schedule):
            at(fraction)
            started = now()
            if action.startswith("start"):
                workers[int(action[-1])].start()
            elif action.startswith("kill"):
                victim = workers[int(action[-1])]
                if victim.alive:
                    victim.stop(signal.SIGKILL)
                    restarts += 1
                    victim.start()
            elif action == "broker":
                own_broker.stop()
                time.sleep(5)
                own_broker.start(wait_s=120)
            elif action == "triton":
                triton.stop()
                time.sleep(30)
                triton.start(wait_s=120)
            faults.append((action, started, now()))
        at(1.0)
        traffic.stop_event.set()
        traffic.join(180)
        produced = len(traffic.sent_ms)
        deadline = time.monotonic() + 600
        scores: list[tuple[bytes, int]] = []
        while time.monotonic() < deadline:  # drain: until every produced event has a committed score
            scores = _read_all(settings, settings.topic_scores)
            if len({json.loads(v)["txn_id"] for v, _ in scores}) >= produced:
                break
            time.sleep(10)
        drained_s = now()
        time.sleep(5)
        scores = _read_all(settings, settings.topic_scores)
        dead = [json.loads(v) for v, _ in _read_all(settings, settings.topic_dlq)]
    finally:
        for worker in workers:
            worker.stop()
        next(servers, None)

    bodies = [(json.loads(v), t) for v, t in scores]
    scored = {b["txn_id"] for b, _ in bodies}
    def in_a_fault(sent_ms: int) -> bool:
        at_s = sent_ms / 1000 - wall_began
        return any(start - 1 <= at_s <= end + 30 for _, start, end in faults)

    sent = traffic.sent_ms
    quiet = [t - sent[b["txn_id"]] for b, t in bodies
             if b["txn_id"] in sent and not in_a_fault(sent[b["txn_id"]])]  # fmt: skip
    warm = [rss for t, rss in memory if t >= 0.2 * SOAK_S and rss]
    result = {
        "command": f"PANTHER_SOAK_S={SOAK_S:g} PANTHER_SOAK_RATE={RATE:g} pytest tests/stream/test_soak.py",
        "seconds": round(SOAK_S), "rate": RATE, "produced": produced, "scored": len(scored & sent.keys()),
        "duplicated": len(bodies) - len(scored), "lost": len(sent.keys() - scored),
        "malformed": traffic.malformed, "dead_lettered": len(dead),
        "dead_letter_reasons_ok": all("not valid JSON" in d["reason"] for d in dead),
        "degraded": sum(b["degraded"] for b, _ in bodies), "restarts": restarts,
        "rss_mb_after_warmup": round(min(warm) / 2**20) if warm else None,
        "rss_mb_end": round(warm[-1] / 2**20) if warm else None,
        "latency_ms_outside_faults": None if not quiet else {
            "p50": float(np.percentile(quiet, 50)), "p99": float(np.percentile(quiet, 99)), "n": len(quiet)},
        "drained_at_s": round(drained_s), "faults": [(w, round(s), round(e)) for w, s, e in faults],
    }  # fmt: skip
    print(json.dumps(result))
    if os.environ.get("PANTHER_SOAK_REPORT"):
        with open(os.environ["PANTHER_SOAK_REPORT"], "a") as handle:
            handle.write(json.dumps(result) + "\n")
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["dead_lettered"] == traffic.malformed and result["dead_letter_reasons_ok"], result
