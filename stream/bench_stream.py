"""`panther bench stream`: the detector end to end — producer → Kafka → `panther worker` → scores topic.

For each rate (records/s, or None = as fast as the producer goes) N fresh transactions are produced with
the produce time as their Kafka timestamp, and a read_committed consumer in this process waits for
every one of their scores. Per run:
- throughput: scores/s from the first record produced to the last score visible;
- end-to-end latency: score visible to a read_committed consumer − transaction produced (what a
  downstream reader waits: decode, score, transactional commit), and score record timestamp −
  transaction timestamp (until the worker sent it, before the commit), p50/p95/p99/max;
- CPU share of each process (seconds of CPU per second of wall time, 1.0 = one core), from /proc.

Standalone reference on the same machine, before the worker starts: the same engine and scorer on the
same events without Kafka, states kept as bytes between batches as the worker's table keeps them
(`engine_ev_s`), and the scorer alone replaying exactly the calls the engine made (`scorer_ev_s`).
Pipeline efficiency = the full-speed run's throughput ÷ scorer_ev_s (the model's standalone
throughput); engine efficiency = the same ÷ engine_ev_s (what Kafka, Faust and the tables cost).

Needs: a broker (PANTHER_KAFKA_BOOTSTRAP, else a local one is started on free ports), a model (default:
the demo-sized model under $PANTHER_HOME/bench-stream, trained once by deploy/local/demo_model.py) and,
for `--scorer triton`, tritonserver (exported and started here on free ports).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream.broker import LocalKafka, free_port, free_ports
from stream.errors import PantherError
from stream.events import Transaction
from stream.files import read_events
from stream.live_traffic import plan_passes
from stream.produce import RateLimiter, make_producer, produce_file
from stream.settings import Settings
from stream.topics import create_topics

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
    """`panther worker` as a child process, configured through its environment (PANTHER_*)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = dict(os.environ)
        for name, value in settings.model_dump(exclude_none=True).items():
            if name not in {"kafka_sasl_password", "kafka_ssl_key_password"}:
                env[f"PANTHER_{name.upper()}"] = str(value)
        self.settings = settings
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warning"],
                                     env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip

    def metric(self, name: str, label: str = "") -> float:
        url = f"http://127.0.0.1:{self.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith(name) and label in line)  # fmt: skip

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PantherError(
                    f"the worker exited ({self.proc.returncode}):\n{self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.web_port}/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise PantherError(f"the worker was not ready in {timeout_s:.0f} s (log: {self.log})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
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
        self.seen: dict[str, tuple[float, float, bool]] = {}  # txn id → (visible at, record ts, degraded)
        self.duplicates = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for message in self.consumer.consume(1000, 0.2):
                if message.error():
                    continue
                now = time.time()
                body = json.loads(message.value())
                if body["txn_id"] in self.seen:
                    self.duplicates += 1
                self.seen[body["txn_id"]] = (now, message.timestamp()[1] / 1000.0, bool(body["degraded"]))
        self.consumer.close()


# ------------------------------------------------------------------------------------------ inputs
def default_model(home: Path) -> tuple[Path, Path]:
    """(model dir, data dir) of the demo-sized model; trained once (~1 min) when absent."""
    root = home / "bench-stream"
    if not (root / "model" / "fraud_head.json").is_file():  # the script skips what exists
        script = REPO / "deploy" / "local" / "demo_model.py"
        if not script.is_file():
            raise PantherError("no model: pass --model and --data, or run from a PANTHER checkout")
        # its summary line goes to stderr: `--json` prints exactly one object on stdout
        subprocess.run([sys.executable, str(script), str(root)], check=True, stdout=sys.stderr)
    return root / "model", root / "data"


def make_runs(path: Path, events: int, runs: int) -> list[list[Transaction]]:
    """`runs` lists of `events` new transactions each: passes of `path` with fresh txn ids and times."""
    base = [t for chunk in read_events(path, Transaction) for t in chunk]
    if not base:
        raise PantherError(f"{path} has no transactions")
    plan = plan_passes(base[0].timestamp, max(t.timestamp for t in base), datetime.now(UTC))
    per_run = -(-events // len(base))
    out = []
    for r in range(runs):
        txns = [plan.apply(t, r * per_run + k) for k in range(per_run) for t in base]
        out.append(txns[:events])
    return out


# ------------------------------------------------------------------------------------------ reference
def standalone(model: Path, profiles: Path, txns: list[Transaction], batch: int,
               make_scorer: Callable[[], Awaitable[Any]]) -> dict[str, float]:  # fmt: skip
    """ev/s of the engine (tokens, features, state, scorer) and of the scorer alone, without Kafka."""
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
        started = time.perf_counter()
        for i in range(0, len(txns), batch):
            chunk = txns[i : i + batch]
            await engine.score(chunk, states, cached)
            touched = {t.user_id for t in chunk}
            await engine.refresh({u: states[u] for u in touched}, cached)  # as the worker, after each batch
            states = {
                user: s if isinstance(s, bytes) else s.to_bytes() for user, s in states.items()
            }  # as in a table
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


def one_run(settings: Settings, watcher: ScoreWatcher, txns: list[Transaction], rate: float | None,
            pids: dict[str, int], timeout_s: float) -> dict[str, Any]:  # fmt: skip
    cpu0 = {name: cpu_seconds(pid, name == "triton") for name, pid in pids.items()}
    batches0 = worker_batches(settings)
    wall0 = time.time()
    sent, produce_s = _produce(settings, txns, rate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(t not in watcher.seen for t in sent):
        time.sleep(0.1)
    got = {t: watcher.seen[t] for t in sent if t in watcher.seen}
    last = max((seen[0] for seen in got.values()), default=time.time())
    wall = max(last - wall0, 1e-9)
    cpu = {
        name: round((cpu_seconds(pid, name == "triton") - cpu0[name]) / wall, 2) for name, pid in pids.items()
    }
    batches = {k: v - batches0.get(k, 0.0) for k, v in worker_batches(settings).items()}
    count = max(batches.get("panther_batch_size_count", 0.0), 1.0)
    return {
        "rate": rate or "max",
        "events": len(sent),
        "produced_per_s": round(len(sent) / produce_s, 1),
        "scored": len(got),
        "lost": len(sent) - len(got),
        "degraded": sum(seen[2] for seen in got.values()),
        "throughput_per_s": round(len(got) / wall, 1),
        "latency_visible": percentiles([got[t][0] - sent[t] for t in got]),
        "latency_record": percentiles([max(got[t][1] - sent[t], 0.0) for t in got]),
        "cpu_share": cpu,
        "worker_batches": {
            "count": int(count),
            "mean_size": round(batches.get("panther_batch_size_sum", 0.0) / count, 1),
            "mean_ms": round(1000 * batches.get("panther_batch_seconds_sum", 0.0) / count, 1),
            "score_ms": round(1000 * batches.get("panther_score_seconds_sum", 0.0) / count, 1),
            "commit_ms": round(1000 * batches.get("panther_commit_seconds_sum", 0.0) / count, 1),
            "busy_share": round(batches.get("panther_batch_seconds_sum", 0.0) / wall, 2),
        },
    }


def worker_batches(settings: Settings) -> dict[str, float]:
    """The worker's per-batch histogram sums and counts (its /metrics)."""
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("panther_batch_", "panther_score_seconds", "panther_commit_seconds")) and (
            name.endswith("_sum") or name.endswith("_count")
        ):
            out[name] = float(value)
    return out


def run_stream_bench(events: int, rates: list[float | None], scorer: str = "inprocess",
                     model_dir: Path | None = None, data_dir: Path | None = None,
                     timeout_s: float = 300.0, say: Any = print) -> dict[str, Any]:  # fmt: skip
    base = Settings()
    # The stack (worker, Triton, broker) closes before the directory they write into is removed.
    with (
        tempfile.TemporaryDirectory(prefix="panther-bench-", ignore_cleanup_errors=True) as tmp,
        ExitStack() as stack,
    ):
        root = Path(tmp)
        if model_dir is None:
            model_dir, default_data = default_model(base.home)
            data_dir = data_dir or default_data
        if data_dir is None:
            raise PantherError("--data is needed with --model (a directory with live.parquet or "
                               "transactions.parquet, and profiles.parquet)")  # fmt: skip
        live = (
            data_dir / "live.parquet"
            if (data_dir / "live.parquet").is_file()
            else data_dir / "transactions.parquet"
        )
        pids: dict[str, int] = {"bench": os.getpid()}
        bootstrap = os.environ.get("PANTHER_KAFKA_BOOTSTRAP")
        if not bootstrap:
            port, controller = free_ports(2)
            kafka = LocalKafka(base.home, version=base.kafka_version, port=port, controller_port=controller,
                               heap=base.broker_heap, data_dir=root / "kafka")  # fmt: skip
            say(f"starting a local broker on {kafka.bootstrap}")
            kafka.start(wait_s=120)
            stack.callback(kafka.stop)
            bootstrap = kafka.bootstrap
            if (pid := kafka.status().pid) is not None:
                pids["broker"] = pid
        tag = uuid.uuid4().hex[:6]
        triton = _start_triton(model_dir, root, base, stack, pids, say) if scorer == "triton" else {}
        settings = base.model_copy(update={
            "kafka_bootstrap": bootstrap, "model_dir": model_dir, "scorer": scorer, "app_id": f"bench-{tag}",
            "web_port": free_port(), "worker_data_dir": root / "worker", "standby_replicas": 0,
            "retention_ms": -1, **triton, **{f"topic_{role}": f"bench-{tag}-{role}" for role in
                                             ("transactions", "profiles", "alerts", "scores", "dlq")},
        })  # fmt: skip

        async def make_scorer() -> Any:
            from stream.scoring import InProcessScorer, TritonScorer

            if scorer == "triton":
                return await TritonScorer.connect(f"127.0.0.1:{settings.triton_grpc_port}")
            return InProcessScorer.from_artifact(model_dir, threads=settings.torch_threads)

        runs = make_runs(live, events, len(rates))
        say(f"standalone reference ({scorer} scorer, {min(events, 5000)} events, batch {settings.batch_max})")
        reference = standalone(model_dir, data_dir / "profiles.parquet", runs[0][:5000], settings.batch_max,
                               make_scorer)  # fmt: skip
        create_topics(settings)
        worker = WorkerProcess(settings, root / "worker.log")
        kept_log = base.home / "bench-stream" / "last-worker.log"
        kept_log.parent.mkdir(parents=True, exist_ok=True)
        stack.callback(lambda: shutil.copyfile(worker.log, kept_log))  # after the worker stopped
        stack.callback(worker.stop)
        worker.wait_ready(180)
        pids["worker"] = worker.proc.pid
        produce_file(data_dir / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
        users = sum(1 for chunk in read_events(data_dir / "profiles.parquet") for _ in chunk)
        while worker.metric("panther_events_total", 'outcome="profile"') < users:
            time.sleep(0.5)
        watcher = ScoreWatcher(settings)
        watcher.start()
        stack.callback(watcher.stopping.set)
        results = []
        for rate, txns in zip(rates, runs, strict=True):
            say(f"run: {len(txns)} events at {rate or 'full speed'}/s")
            results.append(one_run(settings, watcher, txns, rate, pids, timeout_s))
            say(json.dumps(results[-1]))
        full = [r["throughput_per_s"] for r in results if r["rate"] == "max"]
        best = full[0] if full else max(r["throughput_per_s"] for r in results)
        load = os.getloadavg()
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} CPUs",
            "load_average_at_end": [round(x, 2) for x in load],
            "model": _model_summary(model_dir),
            "scorer": scorer,
            "batch_max": settings.batch_max,
            "batch_within_s": settings.batch_within_s,
            "partitions": settings.partitions,
            "standalone": reference,
            "runs": results,
            "duplicates": watcher.duplicates,
            "pipeline_efficiency": round(best / reference["scorer_ev_s"], 2),
            "engine_efficiency": round(best / reference["engine_ev_s"], 2),
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
