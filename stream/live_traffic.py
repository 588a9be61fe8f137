"""`panther produce --loop`: a file replayed as endless live traffic, for the demo and soak runs.

Replaying the same records again would be no traffic at all: the worker skips a txn_id it has seen.
So each pass is made new — txn ids get a run and pass suffix, event times move forward by whole weeks
(hour of day and weekday stay what the model learned), labels are dropped (live traffic has none) —
and records are paced at a steady rate with the produce time as their Kafka timestamp.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stream.console import stderr
from stream.errors import PantherError
from stream.events import Transaction
from stream.files import read_events
from stream.produce import DeliveryReport, RateLimiter, _send, finish_delivery, make_producer
from stream.settings import Settings
from stream.topics import admin_client, existing_partitions

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class PassPlan:
    """How pass k of a file is made new: event time + offset + k·period, txn id + f"-{run}.{k}"."""

    run: str
    offset: timedelta
    period: timedelta

    def apply(self, event: Transaction, k: int) -> Transaction:
        return event.model_copy(
            update={
                "txn_id": f"{event.txn_id}-{self.run}.{k}",
                "timestamp": event.timestamp + self.offset + k * self.period,
                "is_fraud": None,
                "fraud_scenario": None,
            }
        )


def plan_passes(first: datetime, last: datetime, now: datetime) -> PassPlan:
    """Whole weeks: the first pass starts in the week before `now`, each pass after the previous one.

    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> plan = plan_passes(t0, t0 + timedelta(days=2), t0 + timedelta(days=20))
    >>> plan.offset.days, plan.period.days
    (14, 7)
    """
    offset_weeks = max(0, math.floor((now - first) / WEEK))
    period_weeks = max(1, math.ceil((last - first + timedelta(seconds=1)) / WEEK))
    return PassPlan(
        run=format(int(now.timestamp()), "x"), offset=offset_weeks * WEEK, period=period_weeks * WEEK
    )


def _transactions(path: Path) -> Iterator[Transaction]:
    for chunk in read_events(path, Transaction):
        yield from chunk


def _time_range(path: Path) -> tuple[datetime, datetime]:
    first = last = None
    for event in _transactions(path):
        first = event.timestamp if first is None else min(first, event.timestamp)
        last = event.timestamp if last is None else max(last, event.timestamp)
    if first is None or last is None:
        raise PantherError(f"{path} has no transactions to replay")
    return first, last


def produce_loop(
    path: Path | str,
    topic: str,
    settings: Settings,
    rate: float,
    max_passes: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    report_every_s: float = 10.0,
) -> DeliveryReport:
    """Replays `path` pass after pass at `rate` records/s until `max_passes`, `should_stop()` or SIGTERM."""
    path = Path(path)
    existing_partitions(admin_client(settings), settings)  # fail fast, one line, if no broker
    plan = plan_passes(*_time_range(path), datetime.now(UTC))
    producer = make_producer(settings)
    report = DeliveryReport()
    limiter = RateLimiter(rate)
    started = last_said = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    k = 0
    try:
        while (max_passes is None or k < max_passes) and not should_stop():
            for event in _transactions(path):
                if should_stop():
                    break
                limiter.wait()
                live = plan.apply(event, k)
                _send(producer, topic, live.user_id.encode(), live.to_json_bytes(), 0, report)
                producer.poll(0)
                if time.perf_counter() - last_said >= report_every_s:
                    last_said = time.perf_counter()
                    stderr.print(
                        f"live → {topic}: pass {k + 1}, {report.sent:,} sent, {report.delivered:,} acked, "
                        f"{report.sent / (last_said - started):.1f}/s",
                        highlight=False,
                    )
            k += 1
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    finish_delivery(producer, report, started, settings, settings.kafka_timeout_s)
    return report


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
