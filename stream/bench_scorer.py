"""`panther bench scorer`: today's full-window scoring vs scoring from cached per-user state, same events.

For each size (the demo model, and a PANTHER-sized artefact: V ≈ 60K, d 64, 4 blocks, L 100) and each
scorer (in-process, Triton on free loopback ports), on the same simulated events:
- the users' states are warmed with their earlier events (full windows), then copied for each run;
- `full_ev_s`: the reference loop (`models.fraud.live.score_events`: every event's window through the
  encoder, per-user rounds, reasons in a second call for alerting rows — what the worker ran before);
- `cached_ev_s`: the cached loop (`models.fraud.cached_scoring.score_cached`: log P from the cached h_u
  and normalizer, one head call, reasons only for alerting rows), each user's cache refreshed after
  every batch (`refresh_states`, the worker's refresh behind the stream) — that refresh is timed apart:
- `refresh_seq_s`: encoder rows per second of those refresh calls; `cached_with_refresh_ev_s`: events
  per second of scoring and refreshing together (what one process doing both on one core sustains);
- `max_abs_diff`: the largest |p_fraud cached − p_fraud full| over the events (`max_abs_diff_logp`:
  the same for log P_u(x)).

Events: `SimulatorConfig(users, days)` payments in event order; each user's last `per_user` events are
measured, everything before warms the state. They arrive as live traffic from many users does: a
batch holds at most one event per user (the k-th measured event of every user, then the (k+1)-th,
each user's own events in their order; at least twice as many users as a batch has events), so the
refresh behind each batch is what keeps the caches valid (`critical_encoder_rows` counts the windows
the cached path still had to encode while scoring).
The alert threshold is the score quantile that alerts `ALERT_RATE` of the measured events (a random
head would otherwise alert on most of them, and reasons would dominate both paths). Token ids are the
demo model's own (its tokenizer); the PANTHER-sized artefact has random weights and an item-id
tokenizer, so its events get random tokens.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.fraud.cached_scoring import refresh_states, score_cached
from models.fraud.live import LiveEvent, LiveResult, score_events
from models.fraud.state import UserState, update
from models.fraud.txn import TxnColumns
from models.tokenizer.reserved import FIRST_TOKEN_ID
from stream.engine import cached_calls, reference_score_fn
from stream.live_model import LiveModel

PANTHER_SIZE = {"vocab": 60_000, "d_model": 64, "n_layers": 4, "n_heads": 2, "max_len": 100}
ALERT_RATE = 0.02


@dataclass(frozen=True)
class Workload:
    history: list[LiveEvent]  # folded into the states before anything is timed
    measured: list[LiveEvent]  # scored by both paths, in this order


def panther_artifact(root: Path) -> Path:
    """A PANTHER-sized artefact with random weights and a fraud head (made once under `root`)."""
    from triton_repo.synthetic import make_artifact

    out = root / "panther-size"
    if not (out / "fraud_head.json").is_file():
        make_artifact(out, **PANTHER_SIZE)
    return out


def workload(live: LiveModel, users: int, days: int, per_user: int, seed: int,
             own_tokens: bool) -> Workload:  # fmt: skip
    """Simulated payments → LiveEvents: each user's last `per_user` are measured, the rest is history."""
    from models.sequences import to_epoch_ms
    from stream.simulator import SimulatorConfig, simulate

    frame, _ = simulate(SimulatorConfig(users=users, days=days, seed=seed))
    time_ms = to_epoch_ms(frame["timestamp"])
    order = np.lexsort((np.arange(len(frame)), time_ms))
    frame, time_ms = frame.iloc[order].reset_index(drop=True), time_ms[order]
    rng = np.random.default_rng(seed)
    if own_tokens:
        tokens = live.tokens(frame.to_dict("records"))
    else:
        tokens = rng.integers(FIRST_TOKEN_ID, live.next_token.vocab_size, len(frame))
    cards = live.profiles.cardinalities if live.profiles else ()
    user_ids = frame["user_id"].astype(str).to_numpy()
    profile = {u: np.asarray([rng.integers(0, c) for c in cards], dtype=np.int64) for u in set(user_ids)}
    views = list(TxnColumns.from_frame(frame, tokens, time_ms).rows())
    events = [LiveEvent(u, v, profile[u]) for u, v in zip(user_ids, views, strict=True)]
    remaining = {u: int(c) for u, c in zip(*np.unique(user_ids, return_counts=True), strict=True)}
    history, measured = [], []
    for event in events:
        remaining[event.user_id] -= 1
        if remaining[event.user_id] < per_user:
            measured.append((per_user - 1 - remaining[event.user_id], event))  # (its rank, the event)
        else:
            history.append(event)
    measured.sort(key=lambda ranked: ranked[0])  # stable: time order within a rank
    return Workload(history, [event for _, event in measured])


def warm_states(live: LiveModel, history: list[LiveEvent]) -> dict[str, UserState]:
    states: dict[str, UserState] = {}
    for event in history:
        state = states.setdefault(event.user_id, UserState(model_tag=live.tags.encoder))
        update(state, event.txn, 0.01, live.features.state)
    return states


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def alert_threshold(refresh_fn: Any, head_fn: Any, live: LiveModel, max_len: int, sequence_dim: int,
                    warm: dict[str, UserState], batches: list[list[LiveEvent]]) -> float:  # fmt: skip
    """The score quantile that alerts ALERT_RATE of the measured events (an untimed pass)."""
    states = copy.deepcopy(warm)
    p = [r.p_fraud for b in batches for r in score_cached(
        refresh_fn, head_fn, live.next_token, live.features, max_len, states, b, live.tags,
        sequence_dim=sequence_dim).results]  # fmt: skip
    return float(np.quantile(p, 1 - ALERT_RATE))


def compare(scorer: Any, live: LiveModel, work: Workload, warm: dict[str, UserState], batch: int,
            loop: asyncio.AbstractEventLoop) -> dict[str, Any]:  # fmt: skip
    """Both loops over the same events from copies of the same warm states (on a worker thread)."""
    schema, max_len, tags = live.features, scorer.max_len, live.tags
    batches = [work.measured[i : i + batch] for i in range(0, len(work.measured), batch)]
    refresh_fn, head_fn = cached_calls(scorer, loop)
    threshold = alert_threshold(refresh_fn, head_fn, live, max_len, scorer.sequence_dim, warm, batches)
    score_fn = reference_score_fn(scorer, loop, threshold)
    profiles = {e.user_id: e.profile for e in work.history + work.measured}

    def full() -> list[LiveResult]:
        states = copy.deepcopy(warm)
        return [r for b in batches for r in score_events(score_fn, schema, max_len, states, b,
                                                          model_tag=tags.encoder)]  # fmt: skip

    states = copy.deepcopy(warm)
    refresh_states(refresh_fn, max_len, states, profiles, tags)  # the caches a running worker would hold
    cached: list[LiveResult] = []
    cached_s = refresh_s = 0.0
    critical = refreshed = 0

    full_results, full_s = _timed(full)
    for chunk in batches:
        done, seconds = _timed(lambda c=chunk: score_cached(
            refresh_fn, head_fn, live.next_token, schema, max_len, states, c, tags,
            sequence_dim=scorer.sequence_dim, reason_threshold=threshold))  # fmt: skip
        cached += done.results
        cached_s += seconds
        critical += done.encoder_rows
        touched = {e.user_id for e in chunk}
        rows, seconds = _timed(lambda t=touched: refresh_states(
            refresh_fn, max_len, {u: states[u] for u in t}, profiles, tags))  # fmt: skip
        refresh_s += seconds
        refreshed += rows
    n = len(work.measured)
    p_full = np.asarray([r.p_fraud for r in full_results])
    p_cached = np.asarray([r.p_fraud for r in cached])
    logp_diff = np.abs(np.asarray([r.logp_new for r in cached]) - [r.logp_new for r in full_results])
    return {
        "events": n,
        "batch": batch,
        "full_ev_s": round(n / full_s, 1),
        "cached_ev_s": round(n / cached_s, 1),
        "refresh_seq_s": round(refreshed / refresh_s, 1) if refresh_s else None,
        "cached_with_refresh_ev_s": round(n / (cached_s + refresh_s), 1),
        "speedup": round(full_s / cached_s, 1),
        "max_abs_diff": float(np.abs(p_cached - p_full).max()),
        "max_abs_diff_logp": float(logp_diff.max()),
        "critical_encoder_rows": critical,
        "refresh_rows": refreshed,
        "threshold": round(threshold, 6),
        "alerts": int((p_full >= threshold).sum()),
    }


async def _inprocess(path: Path, device: str) -> Any:
    from stream.scoring import InProcessScorer

    return InProcessScorer.from_artifact(path, device="cuda" if device == "gpu" else "cpu", threads=1)


class _Served:
    """The artefact exported (with the reference model) and served by a local tritonserver."""

    def __init__(self, path: Path, work: Path, device: str) -> None:
        from panther_common.ports import free_ports
        from triton_repo.export import export_model_repository
        from triton_repo.server import LocalTriton

        repo = work / f"repo-{path.name}"
        export_model_repository(path, repo, device=device,  # type: ignore[arg-type]
                                reference=True, max_batch_size=4096, torch_threads=1)  # fmt: skip
        http, grpc, metrics = free_ports(3)
        self.server = LocalTriton(repo, work / "home", http_port=http, grpc_port=grpc, metrics_port=metrics,
                                  data_dir=work / f"triton-{path.name}")  # fmt: skip

    async def __aenter__(self) -> Any:
        from stream.scoring import TritonScorer

        self.server.start(wait_s=300)
        self.scorer = await TritonScorer.connect(self.server.grpc_url, reference=True, timeout_s=60.0)
        return self.scorer

    async def __aexit__(self, *exc: object) -> None:
        await self.scorer.close()
        self.server.stop()


async def _bench(sizes: dict[str, Path], scorers: list[str], events: int, batch: int, device: str,
                 work: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for size, path in sizes.items():
        live = LiveModel.from_artifact_dir(path)
        max_len = int(json.loads((path / "config.json").read_text("utf-8"))["model"]["max_len"])
        per_user = max(2, events // (2 * batch))  # ≥ 2 users per batch slot: no user twice in a batch
        users = max(1, events // per_user)
        days = int(1.2 * max_len) + 10  # ~1.4 payments a day: windows full before the measured events
        load = workload(live, users, days, per_user, seed=7, own_tokens=size == "demo")
        warm = warm_states(live, load.history)
        say(f"{size}: {len(load.measured)} events of {users} users, {len(load.history)} earlier ones warm "
            f"the states (mean window {np.mean([len(s.tokens) for s in warm.values()]):.0f})")
        for kind in scorers:
            loop = asyncio.get_running_loop()
            if kind == "triton":
                async with _Served(path, work, device) as scorer:
                    row = await asyncio.to_thread(compare, scorer, live, load, warm, batch, loop)
            else:
                scorer = await _inprocess(path, device)
                row = await asyncio.to_thread(compare, scorer, live, load, warm, batch, loop)
                await scorer.close()
            row = {"size": size, "scorer": kind, **row}
            say(f"{size} {kind}: full {row['full_ev_s']} ev/s, cached {row['cached_ev_s']} ev/s "
                f"({row['speedup']}×), refresh {row['refresh_seq_s']} seq/s, "
                f"max |Δp| {row['max_abs_diff']:.2e}")
            rows.append(row)
    return rows


def run_scorer_bench(
    sizes: tuple[str, ...] = ("demo", "panther"),
    scorers: tuple[str, ...] = ("inprocess", "triton"),
    events: int = 2000,
    batch: int = 256,
    device: str = "cpu",
    home: Path | None = None,
    models: dict[str, Path] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """→ the JSON object `panther bench scorer --json` prints (one row per size × scorer)."""
    from stream.bench_stream import default_model
    from stream.settings import Settings

    home = home or Settings().home
    paths = dict(models or {})
    for size in set(sizes) - paths.keys():
        paths[size] = default_model(home)[0] if size == "demo" else panther_artifact(home / "bench-scorer")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="panther-bench-scorer-") as tmp:
        rows = asyncio.run(_bench({s: paths[s] for s in sizes}, list(scorers), events, batch, device,
                                  Path(tmp), say))  # fmt: skip
    return {
        "command": "bench scorer",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "device": device,
                    "load_avg": [round(x, 2) for x in os.getloadavg()]},
        "alert_rate": ALERT_RATE,
        "rows": rows,
        "wall_s": round(time.perf_counter() - started, 1),
    }
