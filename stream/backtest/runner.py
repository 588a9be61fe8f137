"""The replay loop: plan the offsets, then per partition warm, score, and collect — then write the report.

Per partition (users are partition-local, topics are keyed by user_id): load and embed that
partition's profiles, read its records in offset order (the order live read them), decode them (a
malformed record becomes a dead letter in the report, never a crash), and feed the valid ones to every
model's engine in fixed micro-batches of `batch_size` (a remainder is carried across fetches, so the
batches — and the scores — do not depend on how Kafka chunked the fetches). Records stamped in
[T0 − lookback, T0) are scored too, because live state folds the model's own probabilities
(`models.fraud.cached_scoring`), but only events in [T0, T1] are reported. After each batch the
touched users' cached encoder states are refreshed before the next one: the backtest is always exact
(it never scores from a lagging state), and each score equals the full-window reference's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.backtest.config import BacktestConfig, Phase, epoch_ms
from stream.backtest.models import ModelRun, open_model
from stream.backtest.profiles import ProfileSource, embed_profiles
from stream.backtest.reader import PartitionRange, RangeReader, RawRecord
from stream.backtest.sink import ScoreSink
from stream.console import progress_bar, stderr
from stream.events import ContractError, Transaction, dead_letter, decode_keyed
from stream.settings import Settings

MAX_LISTED_DEAD = 1_000  # dead letters listed one by one in report.json (all are counted)


@dataclass(frozen=True)
class Pending:
    txn: Transaction
    phase: Phase
    partition: int
    offset: int


@dataclass
class ReadStats:
    records: int = 0  # read between the planned offsets
    outside: int = 0  # stamped outside [T0 − lookback, T1] (late or early records among them)
    warm: int = 0
    in_range: int = 0  # valid records stamped in [T0, T1]
    payload_time_differs: int = 0  # record timestamp ≠ the payload's event time
    dead_count: int = 0
    dead: list[dict[str, Any]] = field(default_factory=list)
    read_s: float = 0.0
    partitions: list[dict[str, int]] = field(default_factory=list)


@dataclass
class RunResult:
    config: BacktestConfig
    runs: list[ModelRun]
    sink: ScoreSink
    stats: ReadStats
    profiles_loaded: int
    profiles_malformed: int
    wall_s: float


async def replay(config: BacktestConfig, settings: Settings, progress: bool = True) -> RunResult:
    """Reads the range once and scores it with every model; returns what the report needs."""
    config.report_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reader = RangeReader(settings, config.topic, config.fetch_records)
    tr = config.time_range
    plan = reader.plan(tr.warm_start_ms, tr.end_ms + tr.lateness_ms)
    profiles = _profile_source(config, settings, reader.partitions)
    threshold = config.threshold if config.threshold is not None else settings.alert_threshold
    runs = [await open_model(spec, settings, config.scorer, threshold) for spec in config.models]
    sink = ScoreSink(config.report_dir, [run.label for run in runs])
    stats = ReadStats()
    loaded = 0
    try:
        with progress_bar() as bar:
            task = bar.add_task(f"backtest {config.topic}", total=sum(p.size for p in plan), visible=progress)
            for part in plan:
                stats.partitions.append({"partition": part.partition, "start": part.start, "stop": part.stop})
                if part.size == 0:
                    continue
                users = profiles.for_partition(part.partition) if profiles else {}
                loaded += len(users)
                for run in runs:
                    run.reset_partition()
                    begun = time.perf_counter()
                    run.profiles = await embed_profiles(run.live, run.scorer, users)
                    run.embed_s += time.perf_counter() - begun
                await _replay_partition(
                    config,
                    reader,
                    part,
                    runs,
                    sink,
                    stats,
                    settings.max_message_bytes,
                    lambda n: bar.advance(task, n),
                )
    finally:
        reader.close()
        if profiles:
            profiles.close()
        for run in runs:
            await run.scorer.close()
    return RunResult(
        config,
        runs,
        sink,
        stats,
        loaded,
        profiles.malformed if profiles else 0,
        time.perf_counter() - started,
    )


def _profile_source(config: BacktestConfig, settings: Settings, partitions: int) -> ProfileSource | None:
    if not config.profiles_topic:
        return None
    from stream.errors import PantherError

    try:
        reader = RangeReader(settings, config.profiles_topic, config.fetch_records)
    except PantherError as exc:
        stderr.print(f"[yellow]warning:[/yellow] {exc}; scoring without profiles", highlight=False)
        return None
    return ProfileSource(reader, reader.partitions == partitions, settings.max_message_bytes)


async def _replay_partition(
    config: BacktestConfig,
    reader: RangeReader,
    part: PartitionRange,
    runs: list[ModelRun],
    sink: ScoreSink,
    stats: ReadStats,
    max_bytes: int,
    advance: Any,
) -> None:
    pending: list[Pending] = []
    seen = 0
    began = time.perf_counter()
    for chunk in reader.read(part):
        stats.read_s += time.perf_counter() - began
        stats.records += len(chunk)
        pending.extend(_decode(config, chunk, stats, reader.topic, max_bytes))
        while len(pending) >= config.batch_size:
            batch, pending = pending[: config.batch_size], pending[config.batch_size :]
            await _score(batch, runs, sink)
        advance(chunk[-1].offset + 1 - part.start - seen)
        seen = chunk[-1].offset + 1 - part.start
        began = time.perf_counter()
    if pending:
        await _score(pending, runs, sink)
    advance(part.size - seen)  # transaction markers take offsets too


def _decode(
    config: BacktestConfig, chunk: list[RawRecord], stats: ReadStats, topic: str, max_bytes: int
) -> list[Pending]:
    out: list[Pending] = []
    for record in chunk:
        phase = config.time_range.phase(record.timestamp_ms)
        if phase is None:
            stats.outside += 1
            continue
        try:
            txn = decode_keyed(Transaction, record.value, record.key, max_bytes)
        except ContractError as error:
            stats.dead_count += 1
            if len(stats.dead) < MAX_LISTED_DEAD:
                letter = dead_letter(
                    record.value,
                    error,
                    topic=topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                )
                stats.dead.append({**letter.model_dump(mode="json", exclude={"received_at"}), "phase": phase})
            continue
        if epoch_ms(txn.timestamp) != record.timestamp_ms:
            stats.payload_time_differs += 1
        if phase == "warm":
            stats.warm += 1
        else:
            stats.in_range += 1
        out.append(Pending(txn, phase, record.partition, record.offset))
    return out


async def _score(batch: list[Pending], runs: list[ModelRun], sink: ScoreSink) -> None:
    txns = [item.txn for item in batch]
    report = np.asarray([item.phase == "score" for item in batch])
    for run in runs:
        run.tap.last = None
        begun = time.perf_counter()
        # in place: a failed batch ends the backtest, so the copy-on-write of the live worker buys nothing
        outcomes = await run.engine.score(txns, run.states, run.profiles, in_place=True)
        touched = {txn.user_id for txn in txns} & run.states.keys()
        await run.engine.refresh({user: run.states[user] for user in touched}, run.profiles)  # exact mode
        run.batch_ms.append((time.perf_counter() - begun) * 1000)
        run.batch_sizes.append(len(batch))
        kept = []
        keep = np.zeros(len(batch), dtype=bool)
        for i, (item, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            if outcome.duplicate:
                run.duplicates += 1
            elif not report[i]:
                run.warm += 1
            else:
                keep[i] = True
                kept.append((outcome, item.partition, item.offset))
                run.note_reported(epoch_ms(item.txn.timestamp))
        run.scored += len(kept)
        sink.add(run.label, kept)
        tokens = run.tap.last if run.tap.last is not None else run.live.transaction_tokens(txns)
        run.tokens.add(np.asarray(tokens)[keep])
