"""`panther bench stream`: the detector end to end — producer → Kafka → `panther worker` → scores topic.

One run tells the whole story, on the same machine and the same events. For each model size (`demo`,
and `panther`: the paper's serving shape, d 64 × 4 blocks, L 100):
- **scorer alone**: the model calls the engine made, replayed back to back (`scorer_ev_s`);
- **engine alone**: tokens, features, state and scorer on the same events, no Kafka (`engine_ev_s`);
- **the worker end to end**, for each `--processes` count and each delivery mode (`exactly_once`,
  `at_least_once`): fresh topics and a fresh group, profiles cached first, a warm-up at full speed
  (unmeasured; `--warmup-events`, default users × the model's L: every window full, as in a stream
  that has run a while), then `--events` new transactions at each offered rate (records/s, or `max`:
  as fast as the producer goes). The engine alone gets the same warm-up first.

Per end-to-end run: sustained scores/s (first record produced → last score visible), visible latency
(score visible to a read_committed consumer − transaction produced) p50/p95/p99/max, and the worker's
record timestamp latency; state lag (scores made from a lagging cached state: count and max); lost
(never scored within the timeout) and duplicated (a txn id seen twice) counts; CPU share of worker /
broker / bench (CPU seconds per wall second, 1.0 = one core, from /proc); the worker's batch sizes and
phases (its /metrics); the encoder rows per scored event on the critical path (users whose cache was
not valid: several events in one batch, or a refresh still queued) and behind it (the refresh), and the
refresh's calls and busy share (`encoder_rows`); and **efficiency = end to end ÷ scorer alone**.

Needs: a broker (PANTHER_KAFKA_BOOTSTRAP, else a local one is started on free ports), models (default:
trained once under $PANTHER_HOME/bench-stream[-panther] by deploy/local/demo_model.py; `--model` and
`--data` for your own, one size) and, for `--scorer triton`, tritonserver (exported and started here).
Progress goes to stderr; `--json` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from panther_common.ports import free_port, free_ports, port_is_free
from stream.broker import LocalKafka
from stream.errors import PantherError
from stream.events import Transaction
from stream.files import read_events
from stream.live_traffic import plan_passes
from stream.produce import RateLimiter, make_producer, produce_file
from stream.settings import Settings
from stream.topics import create_topics
from stream.worker.processes import STOP_TIMEOUT_S

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ processes
def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found += [child, *_children(child)]
    return found


def cpu_seconds(pid: int, descendants: bool = False) -> float:
    """User + system CPU of `pid` (and its live descendants: Triton's python-backend stubs)."""
    total = 0.0
    for p in (pid, *(_children(pid) if descendants else ())):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values) * 1000.0
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "p99_ms": round(p99, 1),
            "max_ms": round(float(array.max()), 1)}  # fmt: skip


class WorkerProcess:
    """`panther worker --processes N` as a child process, configured through its environment (PANTHER_*)."""

    def __init__(self, settings: Settings, log: Path, processes: int = 1) -> None:
        env = dict(os.environ)
        for name, value in settings.model_dump(exclude_none=True).items():
            if name not in {"kafka_sasl_password", "kafka_ssl_key_password"}:
                env[f"PANTHER_{name.upper()}"] = str(value)
        self.settings = settings
        self.log = log
        self.ports = [settings.web_port + i for i in range(processes)]
        command = [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warning",
                   "--processes", str(processes)]  # fmt: skip
        self.proc = subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def metrics_text(self) -> str:
        """Every worker process's /metrics, concatenated (sums over processes add up)."""
        bodies = []
        for port in self.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                bodies.append(response.read().decode())
        return "\n".join(bodies)

    def metric(self, name: str, label: str = "") -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.metrics_text().splitlines()
                   if line.startswith(name) and label in line)  # fmt: skip

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(self.ports)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PantherError(
                    f"the worker exited ({self.proc.returncode}):\n{self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{pending[0]}/ready", timeout=2):
                    pending.pop(0)
            except OSError:
                time.sleep(0.5)
        if pending:
            raise PantherError(f"the worker was not ready in {timeout_s:.0f} s (log: {self.log})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S + 15)  # the supervisor's own bound on its workers
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ScoreWatcher(threading.Thread):
    """Reads the scores topic read_committed and notes when each txn id's score became visible."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        group = f"bench-{uuid.uuid4().hex[:8]}"
        config = {"enable.auto.commit": False, "group.id": group, "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"}  # fmt: skip
        self.consumer = Consumer({**settings.kafka_client_config(), **config})
        self.consumer.subscribe([settings.topic_scores])
        # txn id → (visible at, record timestamp, degraded, state lag)
        self.seen: dict[str, tuple[float, float, bool, int]] = {}
        self.times_seen: dict[str, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for message in consume_arrived(self.consumer, 1000, 0.2):
                if message.error():
                    continue
                now = time.time()
                body = json.loads(message.value())
                txn_id = body["txn_id"]
                self.times_seen[txn_id] = self.times_seen.get(txn_id, 0) + 1
                if txn_id not in self.seen:  # the first copy is the one a subscriber acts on
                    self.seen[txn_id] = (now, message.timestamp()[1] / 1000.0, bool(body["degraded"]),
                                         int(body.get("state_lag", 0)))  # fmt: skip
        self.consumer.close()


def consume_arrived(consumer: Any, max_messages: int, timeout_s: float) -> list[Any]:
    """What has arrived, at once: up to `timeout_s` for the first record, then what is already fetched.

    librdkafka's `consume(n, timeout)` returns only when it holds `n` records or the timeout ends, so
    at 1,000 scores/s `consume(1000, 0.2)` held each record up to 200 ms and the visible latency it
    measured was the watcher's own (p50 ~130 ms where the scores were written ~21 ms after the event).
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)]


# ------------------------------------------------------------------------------------------ inputs
SIZES = ("demo", "panther")
WARMUP_EVENTS: int | None = None  # None: `window_fill` — every user's window full before measuring
BROKER_WARMUP_S = 20.0  # paced traffic before a fresh broker's first measured run (its JIT: BENCHMARKS)


def window_fill(live: Path, model: Path) -> int:
    """Warm-up events that fill every user's window (on average): users × the model's L.

    Why: a configuration starts with fresh state, and with the earlier 3,000-event warm-up its users
    had seen ~3–20 events when measured — at the PANTHER size (L 100) windows a tenth full, whose
    encoder rows cost a fraction of a full window's: those rows were an upper bound
    (docs/BENCHMARKS.md, "At the PANTHER size the issue command measures short windows")."""
    import pyarrow.parquet as pq

    users = len(pq.read_table(live, columns=["user_id"]).column("user_id").unique())
    max_len = int(json.loads((model / "config.json").read_text())["model"]["max_len"])
    return max(users * max_len, 1)


def default_model(home: Path, size: str = "demo") -> tuple[Path, Path]:
    """(model dir, data dir) of the demo-sized or PANTHER-sized model; trained once when absent."""
    root = home / ("bench-stream" if size == "demo" else f"bench-stream-{size}")
    if not (root / "model" / "fraud_head.json").is_file():  # the script skips what exists
        script = REPO / "deploy" / "local" / "demo_model.py"
        if not script.is_file():
            raise PantherError("no model: pass --model and --data, or run from a PANTHER checkout")
        # its summary line goes to stderr: `--json` prints exactly one object on stdout
        subprocess.run([sys.executable, str(script), str(root), size], check=True, stdout=sys.stderr)
    return root / "model", root / "data"


def make_runs(path: Path, sizes: list[int]) -> list[list[Transaction]]:
    """One list of new transactions per entry of `sizes`: passes of `path` with fresh txn ids, each
    list later in event time than the one before (a list starts a new pass)."""
    base = [t for chunk in read_events(path, Transaction) for t in chunk]
    if not base:
        raise PantherError(f"{path} has no transactions")
    plan = plan_passes(base[0].timestamp, max(t.timestamp for t in base), datetime.now(UTC))
    out, passes = [], 0
    for size in sizes:
        per_run = -(-size // len(base))
        txns = [plan.apply(t, passes + k) for k in range(per_run) for t in base]
        out.append(txns[:size])
        passes += per_run
    return out


# ------------------------------------------------------------------------------------------ reference
def standalone(model: Path, profiles: Path, txns: list[Transaction], batch: int,
               make_scorer: Callable[[], Awaitable[Any]],
               warmup: list[Transaction] | None = None) -> dict[str, float]:  # fmt: skip
    """ev/s of the engine (tokens, features, state, scorer) and of the scorer alone, without Kafka;
    `warmup` (earlier in event time) is fed first, unmeasured: the users' windows as the worker's."""
    from stream.engine import CachedProfile, ScoringEngine
    from stream.events import UserProfile
    from stream.live_model import LiveModel

    live = LiveModel.from_artifact_dir(model)

    async def run() -> dict[str, float]:
        scorer = await make_scorer()
        recorded: list[tuple[str, Any]] = []  # (method, request) as the engine called them

        class Recording:  # the scorer, noting each call the engine makes
            model_version, max_len, signal_names = scorer.model_version, scorer.max_len, scorer.signal_names
            sequence_dim = scorer.sequence_dim

            async def refresh(self, request: Any) -> Any:
                recorded.append(("refresh", request))
                return await scorer.refresh(request)

            async def score_state(self, request: Any) -> Any:
                recorded.append(("score_state", request))
                return await scorer.score_state(request)

        class RecordingSync(Recording):
            def refresh_sync(self, request: Any) -> Any:
                recorded.append(("refresh_sync", request))
                return scorer.refresh_sync(request)

            def score_state_sync(self, request: Any) -> Any:
                recorded.append(("score_state_sync", request))
                return scorer.score_state_sync(request)

        users = [p for chunk in read_events(profiles, UserProfile) for p in chunk]
        ids = live.profile_ids(users)
        embeddings = await scorer.embed_users(ids)
        cached = {
            u.user_id: CachedProfile(r, e, live.model_version, 0)
            for u, r, e in zip(users, ids, embeddings, strict=True)
        }
        wrapper = RecordingSync() if hasattr(scorer, "score_state_sync") else Recording()
        engine = ScoringEngine(live, wrapper, 0.5)  # type: ignore[arg-type]
        states: dict[str, Any] = {}

        async def feed(events: list[Transaction]) -> None:
            nonlocal states
            for i in range(0, len(events), batch):
                chunk = events[i : i + batch]
                await engine.score(chunk, states, cached)
                touched = {t.user_id for t in chunk}
                await engine.refresh({u: states[u] for u in touched}, cached)  # as the worker, after a batch
                states = {
                    user: s if isinstance(s, bytes) else s.to_bytes() for user, s in states.items()
                }  # as in a table

        await feed(warmup or [])
        recorded.clear()
        started = time.perf_counter()
        await feed(txns)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        for method, request in recorded:
            result = getattr(scorer, method)(request)
            if asyncio.iscoroutine(result):
                await result
        scorer_s = time.perf_counter() - started
        await scorer.close()
        return {
            "events": len(txns),
            "batch": batch,
            "engine_ev_s": round(len(txns) / engine_s, 1),
            "scorer_ev_s": round(len(txns) / scorer_s, 1),
            "scorer_calls": len(recorded),
        }

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------ the run
def _produce(
    settings: Settings, txns: list[Transaction], rate: float | None
) -> tuple[dict[str, float], float]:
    producer = make_producer(settings)
    payload = [(t.txn_id, t.user_id.encode(), t.to_json_bytes()) for t in txns]  # outside the timed loop
    sent: dict[str, float] = {}
    limiter = RateLimiter(rate)
    started = time.perf_counter()
    for txn_id, key, value in payload:
        limiter.wait()
        now = time.time()
        while True:
            try:
                producer.produce(settings.topic_transactions, value=value, key=key, timestamp=int(now * 1000))
                break
            except BufferError:
                producer.poll(0.01)
        sent[txn_id] = now
        producer.poll(0)
    producer.flush(60)
    return sent, time.perf_counter() - started


def state_lag(lags: list[int]) -> dict[str, float]:
    """How stale the h_u behind the scores was: events folded into a state but not into its cached
    encoder state (0 everywhere unless `PANTHER_MAX_STATE_LAG` allows it, or the refresh fell behind
    past `PANTHER_REFRESH_BACKLOG`).

    >>> state_lag([0, 0, 3, 1])
    {'scores': 2, 'max': 3, 'mean': 1.0, 'p99': 2.94}
    """
    p99 = float(np.percentile(lags, 99)) if lags else 0.0
    return {"scores": sum(1 for lag in lags if lag), "max": max(lags, default=0),
            "mean": round(sum(lags) / len(lags), 2) if lags else 0.0, "p99": round(p99, 2)}  # fmt: skip


def one_run(settings: Settings, watcher: ScoreWatcher, txns: list[Transaction], rate: float | None,
            pids: dict[str, int], timeout_s: float, worker: WorkerProcess) -> dict[str, Any]:  # fmt: skip
    descendants = {"triton", "worker"}  # python-backend stubs; the worker processes under --processes
    cpu0 = {name: cpu_seconds(pid, name in descendants) for name, pid in pids.items()}
    batches0 = worker_batches(worker)
    wall0 = time.time()
    sent, produce_s = _produce(settings, txns, rate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(t not in watcher.seen for t in sent):
        time.sleep(0.1)
    # CPU up to now, not after the wait below: a refresh still running behind would count as this run's
    cpu_wall = max(time.time() - wall0, 1e-9)
    cpu = {
        name: round((cpu_seconds(pid, name in descendants) - cpu0[name]) / cpu_wall, 2)
        for name, pid in pids.items()
    }
    got = {t: watcher.seen[t] for t in sent if t in watcher.seen}
    last = max((seen[0] for seen in got.values()), default=time.time())
    wall = max(last - wall0, 1e-9)
    time.sleep(1.0)  # a late second copy of a score is still counted as a duplicate
    batches = {k: v - batches0.get(k, 0.0) for k, v in worker_batches(worker).items()}
    count = max(batches.get("panther_batch_size_count", 0.0), 1.0)
    lags = [seen[3] for seen in got.values()]
    scored = max(len(got), 1)

    def phase_ms(phase: str) -> float:
        key = f'panther_batch_phase_seconds_sum{{phase="{phase}"}}'
        return round(1000 * batches.get(key, 0.0) / count, 1)

    return {
        "rate": rate or "max",
        "events": len(sent),
        "produced_per_s": round(len(sent) / produce_s, 1),
        "scored": len(got),
        "lost": len(sent) - len(got),
        "duplicates": sum(watcher.times_seen.get(t, 0) - 1 for t in got),
        "degraded": sum(seen[2] for seen in got.values()),
        "state_lag": state_lag(lags),
        "throughput_per_s": round(len(got) / wall, 1),
        "latency_visible": percentiles([got[t][0] - sent[t] for t in got]),
        "latency_record": percentiles([max(got[t][1] - sent[t], 0.0) for t in got]),
        "cpu_share": cpu,
        "worker_batches": {
            "count": int(count),
            "mean_size": round(batches.get("panther_batch_size_sum", 0.0) / count, 1),
            "mean_ms": round(1000 * batches.get("panther_batch_seconds_sum", 0.0) / count, 1),
            "score_ms": round(1000 * batches.get("panther_score_seconds_sum", 0.0) / count, 1),
            "committer_ms": round(1000 * batches.get("panther_commit_seconds_sum", 0.0) / count, 1),
            **{f"{phase}_ms": phase_ms(phase) for phase in ("decode", "settle", "load", "outputs", "deliver",
                                                            "write", "commit")},
            "busy_share": round(batches.get("panther_batch_seconds_sum", 0.0) / wall, 2),
        },
        "encoder_rows": {  # per scored event: on the critical path (in the batch) and behind it
            "critical_per_event": round(batches.get("panther_critical_encoder_rows_total", 0.0) / scored, 3),
            "refresh_per_event": round(batches.get("panther_refresh_rows_total", 0.0) / scored, 3),
            "refresh_calls": int(batches.get("panther_refresh_seconds_count", 0.0)),
            "refresh_busy_share": round(batches.get("panther_refresh_seconds_sum", 0.0) / wall, 2),
        },
    }


HISTOGRAMS = ("panther_batch_", "panther_score_seconds", "panther_commit_seconds", "panther_refresh_seconds")


def worker_batches(worker: WorkerProcess) -> dict[str, float]:
    """The worker's per-batch histogram sums and counts, summed over its processes (/metrics)."""
    out: dict[str, float] = {}
    for line in worker.metrics_text().splitlines():
        name, _, value = line.rpartition(" ")
        histogram = name.startswith(HISTOGRAMS) and ("_sum" in name or "_count" in name)
        if histogram or name in ("panther_critical_encoder_rows_total", "panther_refresh_rows_total"):
            out[name] = out.get(name, 0.0) + float(value)
    return out


@dataclass
class Stack:
    """What every end-to-end configuration shares: the broker, this process's pid, the temp root."""

    base: Settings
    bootstrap: str
    root: Path
    pids: dict[str, int]
    say: Any
    broker_warm: bool = False  # a paced warm-up has run on this broker (its JIT is past the worst)


def run_stack(stack: Stack, size: str, model_dir: Path, data_dir: Path, triton: dict[str, int],
              scorer: str, delivery: str, processes: int, runs: list[tuple[float | None, list[Transaction]]],
              warmup: list[Transaction], timeout_s: float, reference: dict[str, Any],
              paced: tuple[float, list[Transaction]] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One worker configuration on fresh topics and a fresh group: `warmup` at full speed (unmeasured:
    the worker's first batches and its users' first states), then `paced` events at its rate
    (unmeasured: a fresh broker's JIT compiles for ~20 s of traffic, and at 1,000 events/s took half a
    core from the measured runs, docs/BENCHMARKS.md), then every rate of `runs` in turn."""
    tag = uuid.uuid4().hex[:6]
    settings = stack.base.model_copy(update={
        "kafka_bootstrap": stack.bootstrap, "model_dir": model_dir, "scorer": scorer,
        "app_id": f"bench-{tag}",
        "web_port": free_port_block(processes), "worker_data_dir": stack.root / f"worker-{tag}",
        "standby_replicas": 0, "retention_ms": -1, "delivery": delivery, **triton,
        **{f"topic_{role}": f"bench-{tag}-{role}" for role in ("transactions", "profiles", "alerts", "scores",
                                                              "dlq")},
    })  # fmt: skip
    create_topics(settings)
    worker = WorkerProcess(settings, stack.root / f"worker-{tag}.log", processes)
    pids = {**stack.pids, "worker": worker.proc.pid}
    with ExitStack() as cleanup:
        kept_log = stack.base.home / "bench-stream" / "last-worker.log"
        kept_log.parent.mkdir(parents=True, exist_ok=True)
        cleanup.callback(lambda: shutil.copyfile(worker.log, kept_log))  # after the worker stopped
        cleanup.callback(worker.stop)
        worker.wait_ready(180)
        produce_file(data_dir / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
        users = sum(1 for chunk in read_events(data_dir / "profiles.parquet") for _ in chunk)
        deadline = time.monotonic() + 120
        while worker.metric("panther_events_total", 'outcome="profile"') < users:
            if time.monotonic() > deadline:
                raise PantherError(f"the worker did not cache {users} profiles in 120 s (log: {worker.log})")
            time.sleep(0.5)
        watcher = ScoreWatcher(settings)
        watcher.start()
        cleanup.callback(watcher.stopping.set)
        stack.say(f"{size} · {delivery} · {processes} process(es): warm-up, {len(warmup)} events")
        one_run(settings, watcher, warmup, None, pids, timeout_s, worker)  # JVM JIT, torch, users' states
        if paced is not None and paced[1]:
            rate, txns = paced
            stack.say(f"{size} · {delivery} · {processes} process(es): broker warm-up, {len(txns)} events "
                      f"at {rate:g}/s")  # fmt: skip
            one_run(settings, watcher, txns, rate, pids, timeout_s, worker)
        stack.broker_warm = True
        results = []
        for rate, txns in runs:
            stack.say(f"{size} · {delivery} · {processes} process(es): {len(txns)} events at "
                      f"{rate or 'full speed'}/s")  # fmt: skip
            row = one_run(settings, watcher, txns, rate, pids, timeout_s, worker)
            row = {"size": size, "delivery": delivery, "processes": processes, **row,
                   "efficiency": round(row["throughput_per_s"] / reference["scorer_ev_s"], 2)}  # fmt: skip
            stack.say("  " + json.dumps({k: row[k] for k in ("throughput_per_s", "latency_visible", "lost",
                                                              "duplicates", "state_lag", "efficiency")}))
            results.append(row)
        return results


def free_port_block(count: int) -> int:
    """A first port such that it and the `count - 1` after it are free (the worker processes' web ports)."""
    for _ in range(50):
        first = free_port()
        if all(port_is_free("127.0.0.1", first + i) for i in range(1, count)):
            return first
    raise PantherError(f"no block of {count} free ports found")


def run_stream_bench(events: int, rates: list[float | None], scorer: str = "inprocess",
                     model_dir: Path | None = None, data_dir: Path | None = None,
                     timeout_s: float = 300.0, say: Any = print, *,
                     deliveries: tuple[str, ...] = ("exactly_once", "at_least_once"),
                     sizes: tuple[str, ...] = ("demo",), processes: tuple[int, ...] = (1,),
                     warmup_s: float = BROKER_WARMUP_S,
                     warmup_events: int | None = WARMUP_EVENTS) -> dict[str, Any]:  # fmt: skip
    base = Settings()
    if model_dir is not None and data_dir is None:
        raise PantherError("--data is needed with --model (a directory with live.parquet or "
                           "transactions.parquet, and profiles.parquet)")  # fmt: skip
    if model_dir is not None:
        sizes = ("custom",)
    started = time.perf_counter()
    # The stack (workers, Triton, broker) closes before the directory they write into is removed.
    with (
        tempfile.TemporaryDirectory(prefix="panther-bench-", ignore_cleanup_errors=True) as tmp,
        ExitStack() as cleanup,
    ):
        root = Path(tmp)
        pids: dict[str, int] = {"bench": os.getpid()}
        bootstrap = os.environ.get("PANTHER_KAFKA_BOOTSTRAP")
        if not bootstrap:
            port, controller = free_ports(2)
            kafka = LocalKafka(base.home, version=base.kafka_version, port=port, controller_port=controller,
                               heap=base.broker_heap, data_dir=root / "kafka")  # fmt: skip
            say(f"starting a local broker on {kafka.bootstrap}")
            kafka.start(wait_s=120)
            cleanup.callback(kafka.stop)
            bootstrap = kafka.bootstrap
            if (pid := kafka.status().pid) is not None:
                pids["broker"] = pid
        stack = Stack(base, bootstrap, root, pids, say)
        results: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []  # configurations that could not run (reported, not hidden)
        standalone_by_size: dict[str, Any] = {}
        models: dict[str, Any] = {}
        warmups: dict[str, int] = {}  # per size: the events each configuration was warmed with
        for size in sizes:
            if size == "custom":
                model, data = model_dir, data_dir
            else:
                model, data = default_model(base.home, size)
            assert model is not None and data is not None
            live = data / "live.parquet"
            live = live if live.is_file() else data / "transactions.parquet"
            with ExitStack() as per_size:
                triton = (_start_triton(model, root / size, base, per_size, pids, say)
                          if scorer == "triton" else {})  # fmt: skip

                async def make_scorer(model: Path = model, triton: dict[str, int] = triton) -> Any:
                    from stream.scoring import InProcessScorer, TritonScorer

                    if scorer == "triton":
                        return await TritonScorer.connect(f"127.0.0.1:{triton['triton_grpc_port']}")
                    return InProcessScorer.from_settings(model, base)

                warm = warmup_events if warmup_events is not None else window_fill(live, model)
                warmups[size] = warm
                configs = [(p, d) for p in processes for d in deliveries]
                per_config = len(rates) + 1  # + the warm-up
                paced_rate = min((r for r in rates if r is not None), default=1000.0)
                paced_events = 0 if stack.broker_warm else round(paced_rate * warmup_s)
                lengths = []  # per configuration: its warm-up (+ the paced broker warm-up first), its rates
                for k in range(len(configs)):
                    lengths += [warm + (paced_events if k == 0 else 0), *[events] * len(rates)]
                all_runs = make_runs(live, [*lengths, events])  # the last: the scorer and engine alone
                say(f"{size}: scorer and engine alone ({scorer} scorer, {min(events, 5000)} events after "
                    f"{warm} unmeasured, batch {base.batch_max})")  # fmt: skip
                reference = standalone(model, data / "profiles.parquet", all_runs[-1][:5000], base.batch_max,
                                       make_scorer, all_runs[0][:warm])  # fmt: skip
                standalone_by_size[size] = reference
                models[size] = _model_summary(model)
                for k, (count, delivery) in enumerate(configs):
                    warmup, *measured = all_runs[k * per_config : (k + 1) * per_config]
                    runs = list(zip(rates, measured, strict=True))
                    paced = (paced_rate, warmup[warm:]) if k == 0 and paced_events else None
                    try:
                        results += run_stack(stack, size, model, data, triton, scorer, delivery, count, runs,
                                             warmup[:warm], timeout_s, reference, paced)  # fmt: skip
                    except PantherError as exc:  # one configuration failing does not void the others
                        say(f"{size} · {delivery} · {count} process(es) failed: {exc}")
                        failures.append({"size": size, "delivery": delivery, "processes": count,
                                         "error": str(exc)})  # fmt: skip
        if not results:
            raise PantherError(f"no configuration ran: {failures}")
        first = results[0]["size"]
        full = [r for r in results if r["rate"] == "max" and r["size"] == first and r["processes"] == 1
                and r["delivery"] == "exactly_once"]  # fmt: skip
        best = full[0]["throughput_per_s"] if full else max(r["throughput_per_s"] for r in results)
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} CPUs",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "wall_s": round(time.perf_counter() - started, 1),
            "models": models,
            "scorer": scorer,
            "batch_max": base.batch_max,
            "batch_within_s": base.batch_within_s,
            "refresh_backlog": base.refresh_backlog,  # beyond it, scores carry state_lag instead of waiting
            "max_state_lag": base.max_state_lag,  # scores may lag their user's refresh by this many events
            "broker_warmup_s": warmup_s,
            "warmup_events": warmups,
            "partitions": base.partitions,
            "standalone": standalone_by_size,
            "runs": results,
            "failed": failures,
            "duplicates": sum(r["duplicates"] for r in results),
            "lost": sum(r["lost"] for r in results),
            "pipeline_efficiency": round(best / standalone_by_size[first]["scorer_ev_s"], 2),
            "engine_efficiency": round(best / standalone_by_size[first]["engine_ev_s"], 2),
        }


def _start_triton(model: Path, root: Path, base: Settings, stack: ExitStack, pids: dict[str, int],
                  say: Any) -> dict[str, int]:  # fmt: skip
    """The artefact exported and served by tritonserver on free ports; returns the worker's port settings."""
    from triton_repo.export import export_model_repository
    from triton_repo.server import LocalTriton

    export_model_repository(model, root / "repo", max_batch_size=base.triton_max_batch_size,
                            queue_delay_us=base.triton_queue_delay_us)  # fmt: skip
    http, grpc, metrics = free_ports(3)
    server = LocalTriton(root / "repo", root / "home", http_port=http, grpc_port=grpc, metrics_port=metrics)
    say(f"starting tritonserver on {server.grpc_url}")
    server.start(wait_s=180)
    stack.callback(server.stop)
    if (pid := server.status().pid) is not None:
        pids["triton"] = pid
    return {"triton_grpc_port": grpc, "triton_http_port": http, "triton_metrics_port": metrics}


def _model_summary(model: Path) -> dict[str, Any]:
    config = json.loads((model / "config.json").read_text()).get("model", {})
    keys = ("d_model", "n_layers", "n_heads", "max_len", "vocab_size")
    return {"dir": str(model), **{k: config[k] for k in keys if k in config}}


def parse_rates(text: str) -> list[float | None]:
    """ "500,1000,max" → [500.0, 1000.0, None] (None: as fast as the producer goes)."""
    out: list[float | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in {"max", "full", "inf"}:
            out.append(None)
        else:
            try:
                out.append(float(part))
            except ValueError:
                raise PantherError(f"--rates: {part!r} is not a number or 'max'") from None
    return out


def parse_choices(option: str, text: str, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    """ "a,b" → ("a", "b"), each in `allowed` (None: positive integers), else one clear error line."""
    out = tuple(part.strip() for part in text.split(",") if part.strip())
    for part in out:
        ok = part in allowed if allowed is not None else part.isdigit() and int(part) >= 1
        if not ok:
            expected = ", ".join(allowed) if allowed is not None else "positive integers"
            raise PantherError(f"{option}: {part!r} is not one of {expected}")
    if not out:
        raise PantherError(f"{option}: nothing given")
    return out
