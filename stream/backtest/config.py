"""What a backtest replays and with what: the time range, the models, the alert rule — parsed and checked.

Times are epoch milliseconds, UTC, and both ends are inclusive: an event stamped exactly T0 or exactly
T1 is reported. A record's time is its Kafka record timestamp (the only time Kafka can seek by;
`panther produce` sets it to the event's own timestamp) — see docs/BACKTEST.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from stream.errors import PantherError
from stream.events import parse_event_time

DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
Phase = Literal["warm", "score"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Exact integer epoch milliseconds (floor), as `panther produce` stamps records; no float rounding."""
    return (moment - _EPOCH) // _MS


def parse_time_ms(text: str, what: str) -> int:
    """ISO-8601 (naive = UTC) or epoch milliseconds → epoch ms; a clear error otherwise."""
    try:
        return epoch_ms(parse_event_time(text))
    except ValueError:
        raise PantherError(f"{what} {text!r} is not a time (ISO-8601 or epoch ms)") from None


def parse_duration_ms(text: str, what: str = "--lookback") -> int:
    """'7d', '12h', '30m', '90s', '250ms', '2w' (or a bare number of seconds) → milliseconds."""
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        return int(float(text) * 1000)
    match = _DURATION.match(text)
    if not match:
        raise PantherError(f"{what} {text!r} is not a duration (e.g. 7d, 12h, 30m, 90s)")
    return int(float(match.group(1)) * DURATION_UNITS_MS[match.group(2)])


def parse_rate(text: str) -> float:
    """'0.01' or '1%' → 0.01 (share of scored transactions to alert on)."""
    try:
        rate = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise PantherError(f"--alert-rate {text!r} is not a rate: use e.g. 0.01 or 1%") from None
    if not 0 < rate <= 1:
        raise PantherError(f"--alert-rate {text!r} must be in (0, 1] (or (0%, 100%])")
    return rate


@dataclass(frozen=True)
class TimeRange:
    """[start − lookback, start) warms state; [start, end] is scored and reported (ends inclusive)."""

    start_ms: int
    end_ms: int
    lookback_ms: int = 0
    lateness_ms: int = 0  # read this far past `end` for late (out-of-order) records stamped ≤ end

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise PantherError("--end is before --start: the range must run forwards (T0 ≤ T1)")
        if self.lookback_ms < 0 or self.lateness_ms < 0:
            raise PantherError("--lookback and --lateness must not be negative")

    @property
    def warm_start_ms(self) -> int:
        return max(0, self.start_ms - self.lookback_ms)

    def phase(self, timestamp_ms: int) -> Phase | None:
        """Where a record stamped `timestamp_ms` belongs: warm-up, scored, or outside (None)."""
        if self.start_ms <= timestamp_ms <= self.end_ms:
            return "score"
        if self.warm_start_ms <= timestamp_ms < self.start_ms:
            return "warm"
        return None


@dataclass(frozen=True)
class ModelSpec:
    """One `--model [LABEL=]DIR`; the label names the model in every table and plot."""

    label: str
    path: Path

    @classmethod
    def parse_all(cls, values: tuple[str, ...]) -> tuple[ModelSpec, ...]:
        specs: list[ModelSpec] = []
        for value in values:
            label, sep, path = value.partition("=")
            spec = cls(label, Path(path)) if sep and label else cls(Path(value).name or value, Path(value))
            if not spec.path.is_dir():
                raise PantherError(f"--model {value}: not a directory (a model artefact)")
            specs.append(spec)
        labels = [spec.label for spec in specs]
        if len(set(labels)) != len(labels):  # same directory name twice: number them
            specs = [cls(f"{spec.label}#{i + 1}", spec.path) for i, spec in enumerate(specs)]
        return tuple(specs)


@dataclass(frozen=True)
class BacktestConfig:
    topic: str
    time_range: TimeRange
    models: tuple[ModelSpec, ...]
    report_dir: Path
    threshold: float | None = None  # alert on score ≥ threshold …
    alert_rate: float | None = None  # … or on the top `alert_rate` share of each model's scores
    scorer: Literal["inprocess", "triton"] = "inprocess"
    batch_size: int = 256  # events per engine call (the worker's PANTHER_BATCH_MAX)
    fetch_records: int = 5_000  # records per Kafka fetch: bounds memory together with per-partition state
    profiles_topic: str | None = None  # None: no profiles (every user scored with missing profile fields)
    ks: tuple[float, ...] = field(default=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0))

    def __post_init__(self) -> None:
        if not self.models:
            raise PantherError("no --model given (a directory made by panther pretrain + fit-fraud)")
        if self.threshold is not None and self.alert_rate is not None:
            raise PantherError("give --threshold or --alert-rate, not both")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise PantherError(f"--threshold {self.threshold} must be in [0, 1]")
        if self.scorer == "triton" and len(self.models) > 1:
            raise PantherError("--scorer triton serves one model: compare several --model in-process")
        if self.batch_size < 1 or self.fetch_records < 1:
            raise PantherError("--batch-size must be at least 1")
