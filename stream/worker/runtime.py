"""Assembles the worker: settings → app, topics, tables, engine, agents, endpoints; and runs it."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
from mode.utils.futures import maybe_cancel

from stream.engine import ScoringEngine
from stream.errors import PantherError
from stream.live_model import LiveModel, ServingContract
from stream.scoring import (
    RefreshRequest,
    RefreshResult,
    Scorer,
    ScoreRequest,
    ScoreResult,
    ScorerUnavailable,
    StateScoreRequest,
    StateScoreResult,
)
from stream.settings import Settings
from stream.worker.app import create_app
from stream.worker.channels import Channels, declare_channels
from stream.worker.metrics import WorkerMetrics
from stream.worker.profile_agent import ProfileAgent
from stream.worker.scoring_agent import ScoringAgent
from stream.worker.shutdown import StopDeadline, health_problem, stop_on_crash
from stream.worker.state_dir import LocalState
from stream.worker.tables import ChangelogOffsets, Tables, declare_tables, rocksdb_options
from stream.worker.transactions import BatchCommitter
from stream.worker.web import install_endpoints


class ReconnectingTritonScorer:
    """A TritonScorer that connects on first use and again after the server went away.

    The worker starts even when Triton is not up yet; until it answers, calls raise ScorerUnavailable
    and the engine degrades (fallback) or pauses, as configured.
    """

    def __init__(self, settings: Settings, model_version: str, contract: ServingContract,
                 head_sha256: str) -> None:  # fmt: skip
        self.settings = settings
        self.model_version = model_version  # the worker's artefact: Triton must serve the same
        self.contract = contract
        self.head_sha256 = head_sha256
        self._scorer: Any = None
        self._lock = asyncio.Lock()

    @property
    def max_len(self) -> int:
        return self.contract.max_len

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self.contract.signal_names

    @property
    def sequence_dim(self) -> int:
        return self.contract.sequence_dim

    async def _connected(self) -> Any:
        from stream.scoring import TritonScorer
        from stream.triton_client import TritonClient

        async with self._lock:
            if self._scorer is None:
                client = TritonClient.from_settings(self.settings)
                try:
                    self._scorer = await TritonScorer.connect(client=client)
                except ScorerUnavailable:
                    await client.close()
                    raise
                served = (self._scorer.model_version, self._scorer.head_sha256)
                if served != (self.model_version, self.head_sha256):
                    await self._scorer.close()
                    self._scorer = None
                    raise PantherError(
                        f"Triton serves model {served[0]} (fraud head {served[1][:12] or 'none'}) but the "
                        f"worker's artefact is {self.model_version} (fraud head {self.head_sha256[:12]}): "
                        "export the same artefact (panther export) or point PANTHER_MODEL_DIR at it"
                    )
            return self._scorer

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await (await self._connected()).score(request)

    async def refresh(self, request: RefreshRequest) -> RefreshResult:
        return await (await self._connected()).refresh(request)

    async def score_state(self, request: StateScoreRequest) -> StateScoreResult:
        return await (await self._connected()).score_state(request)

    async def embed_users(self, profile: np.ndarray) -> np.ndarray:
        return await (await self._connected()).embed_users(profile)

    async def health(self) -> dict[str, Any]:
        try:
            scorer = await self._connected()
        except (ScorerUnavailable, PantherError) as exc:
            return {"ready": False, "error": str(exc)}
        return {"ready": True, **await scorer.client.health()}

    async def close(self) -> None:
        if self._scorer is not None:
            await self._scorer.close()


@dataclass
class Worker:
    app: faust.App
    settings: Settings
    channels: Channels
    tables: Tables
    engine: ScoringEngine
    metrics: WorkerMetrics
    committer: BatchCommitter


def build_worker(settings: Settings) -> Worker:
    model_dir = settings.model_dir or settings.home / "model"
    live = LiveModel.from_artifact_dir(model_dir)

    def in_process() -> Scorer:  # loads torch: only when the worker scores, or falls back, in-process
        from stream.scoring import InProcessScorer

        return InProcessScorer.from_settings(model_dir, settings)

    if settings.scorer == "inprocess":
        primary: Any = in_process()
        fallback = None
    else:
        fallback = in_process() if settings.degraded_mode == "fallback" else None
        contract = live.contract
        if contract is None:  # fitted before fraud_head.json recorded it: ask the model itself
            reference = fallback or in_process()
            contract = ServingContract(reference.max_len, tuple(reference.signal_names),
                                       reference.sequence_dim)  # fmt: skip
        primary = ReconnectingTritonScorer(settings, live.model_version, contract, live.head_sha256)
    engine = ScoringEngine(live, primary, settings.alert_threshold, fallback=fallback,
                           retention_ms=settings.state_retention_ms, inline_max=settings.inline_batch_max,
                           max_lag=settings.max_state_lag, cache_next=False)  # fmt: skip
    app = create_app(settings)
    channels = declare_channels(app, settings)
    tables = declare_tables(app, settings.partitions,
                            rocksdb_options(settings.state_write_buffer_mb, settings.state_block_cache_mb),
                            wal=not settings.exactly_once)  # fmt: skip
    metrics = WorkerMetrics()

    def observe(phase: str, seconds: float) -> None:
        metrics.phase_seconds.labels(phase).observe(seconds)

    committer = BatchCommitter(app, exactly_once=settings.exactly_once, observe=observe,
                               on_delivered=ChangelogOffsets(app, tables, settings.exactly_once))
    ScoringAgent(app, settings, channels, tables, engine, metrics, committer)
    ProfileAgent(app, settings, channels, tables, engine, metrics, committer)

    async def scorer_health() -> dict[str, Any]:
        if isinstance(primary, ReconnectingTritonScorer):
            return await primary.health()
        return {"ready": True, "scorer": "inprocess"}

    install_endpoints(app, metrics, scorer_health, problem=lambda: health_problem(app, committer))
    return Worker(app, settings, channels, tables, engine, metrics, committer)


class _Worker(faust.Worker):
    """Faust's Worker, stopping on a crash of the app and within `deadline` of any stop (shutdown.py)."""

    def __init__(self, app: faust.App, *, deadline: StopDeadline, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.deadline = deadline
        self._crash_watch: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        self._crash_watch = asyncio.ensure_future(stop_on_crash(self.app, self.stop_after_crash))
        await super().on_start()

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self.deadline.arm(f"{signal.name}")
        super()._schedule_shutdown(signal)

    def stop_after_crash(self, reason: BaseException) -> None:
        """Stop as a SIGTERM would: a crashed worker must not keep its partitions (exit code 1)."""
        self.deadline.arm(f"a crash ({type(reason).__name__})")
        if not self._signal_stop_time:
            self.log.error("stopping: the app crashed (%r); its partitions go to the group again", reason)
            self._signal_stop_time = self.loop.time()
            self._signal_stop_future = asyncio.ensure_future(self._stop_crashed(), loop=self.loop)

    async def _stop_crashed(self) -> None:
        await self.stop()
        maybe_cancel(self._starting_fut)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Raise the root logger to the chosen level, not only its handler.

        mode leaves the root logger at DEBUG and filters in the handler, so every `log.debug` in
        aiokafka's and Faust's send path built a LogRecord for each record sent (3% of the worker's
        time at full speed, py-spy) only to drop it.
        """
        super().on_setup_root_logger(logger, level)
        if level:
            logger.setLevel(level)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Blocks until the worker is stopped (SIGTERM/SIGINT); Faust's Worker handles the signals.

    The GIL switch interval is shortened first (`PANTHER_GIL_SWITCH_INTERVAL_S`): Faust fetches in a
    thread of its own, and with Python's default 5 ms each of its many short turns waited for the
    scoring thread's slice — at 1,000 events/s the worker sat idle 40 % of the time while records
    piled up in front of it (docs/BENCHMARKS.md, issue 14).

    Any stop (a signal, or a crash of the app: `shutdown.py`) ends within `PANTHER_SHUTDOWN_TIMEOUT_S`.
    Under exactly-once the local table store is kept only if the previous run shut down cleanly, and
    marked clean again only if everything this run wrote was committed (see state_dir.py).
    """
    sys.setswitchinterval(settings.gil_switch_interval_s)
    worker = build_worker(settings)
    tune_gc(settings.gc_threshold)
    local = LocalState(worker.app.conf.tabledir) if worker.committer.exactly_once else None
    if local is not None and not local.open():
        worker.app.log.info("no clean shutdown marker: tables are restored from their changelogs")
    try:
        deadline = StopDeadline(settings.shutdown_timeout_s)
        _Worker(worker.app, deadline=deadline, loglevel=loglevel).execute_from_commandline()
    finally:
        if local is not None:
            local.close(clean=worker.committer.clean)


def tune_gc(threshold: int) -> None:
    """Freeze what start-up built out of the cyclic collector, and collect gen 0 every `threshold`
    allocations (see `Settings.gc_threshold`); 0 leaves Python's defaults."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
