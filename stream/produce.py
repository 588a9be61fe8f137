"""Replays a canonical file into Kafka: keyed by user_id, idempotent producer, every delivery counted."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

from stream.console import progress_bar
from stream.errors import KafkaUnreachable
from stream.events import Transaction
from stream.files import count_rows, model_for, read_events
from stream.settings import Settings
from stream.topics import admin_client, existing_partitions, topic_retention_ms


@dataclass
class DeliveryReport:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    oldest_record_ms: int | None = None

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.errors[error.str()] = self.errors.get(error.str(), 0) + 1

    def as_dict(self) -> dict[str, object]:
        rate = self.delivered / self.seconds if self.seconds else 0.0
        return {**self.__dict__, "records_per_s": round(rate, 1)}


def make_producer(settings: Settings, **overrides: object) -> Producer:
    config = {
        **settings.kafka_client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": settings.max_message_bytes * 16,
        **overrides,
    }
    return Producer(config)


class RateLimiter:
    """Keeps a steady records/s by sleeping ahead of schedule; None means as fast as possible."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.start = time.perf_counter()
        self.count = 0

    def wait(self) -> None:
        if not self.interval:
            return
        self.count += 1
        ahead = self.start + self.count * self.interval - time.perf_counter()
        if ahead > 0.001:
            time.sleep(ahead)


def produce_file(
    path: Path | str,
    topic: str,
    settings: Settings,
    rate: float | None = None,
    event_time_as_record_time: bool = True,
    show_progress: bool = True,
) -> DeliveryReport:
    """Sends every row of `path` to `topic`; the record timestamp is the event time unless told otherwise.

    Using the event time keeps `offsets_for_times` (backtests) meaningful for replayed history.
    """
    path = Path(path)
    existing_partitions(admin_client(settings), settings)  # fail fast, one line, if no broker
    producer = make_producer(settings)
    report = DeliveryReport()
    limiter = RateLimiter(rate)
    started = time.perf_counter()
    total = count_rows(path)
    with progress_bar() as progress:
        task = progress.add_task(f"produce → {topic}", total=total, visible=show_progress)
        for chunk in read_events(path, model_for(path)):
            for event in chunk:
                limiter.wait()
                timestamp = (
                    int(event.timestamp.timestamp() * 1000)
                    if event_time_as_record_time and isinstance(event, Transaction)
                    else 0
                )
                _send(producer, topic, event.user_id.encode(), event.to_json_bytes(), timestamp, report)
                if timestamp and (report.oldest_record_ms is None or timestamp < report.oldest_record_ms):
                    report.oldest_record_ms = timestamp
            producer.poll(0)
            progress.update(task, advance=len(chunk))
    finish_delivery(producer, report, started, settings, settings.kafka_timeout_s * 3)
    _warn_if_retention_deletes(settings, topic, report.oldest_record_ms)
    return report


def finish_delivery(
    producer: Producer, report: DeliveryReport, started: float, settings: Settings, flush_s: float
) -> None:
    """Flush, count what was not delivered, and turn "nothing ever arrived" into one clear error."""
    remaining = producer.flush(flush_s)
    report.failed += remaining
    if remaining:
        report.errors["not delivered before the flush timeout"] = remaining
    report.seconds = time.perf_counter() - started
    if report.sent and not report.delivered and report.failed:
        raise KafkaUnreachable(settings.kafka_bootstrap, next(iter(report.errors)))


def _warn_if_retention_deletes(settings: Settings, topic: str, oldest_ms: int | None) -> None:
    """History replayed with its own event times older than the topic's retention is deleted by the
    broker on its next retention check (minutes), silently for every consumer: say so now."""
    if oldest_ms is None:
        return
    retention = topic_retention_ms(admin_client(settings), topic)
    age_ms = int(time.time() * 1000) - oldest_ms
    if retention is not None and retention >= 0 and age_ms > retention:
        warnings.warn(
            f"{topic}: records are up to {age_ms / 86_400_000:.0f} days old (their event times) but the "
            f"topic keeps {retention / 86_400_000:.1f} days; the broker will delete them within minutes. "
            "Create the topic with a longer PANTHER_RETENTION_MS (-1 = forever) or produce with "
            "--record-time now.",
            stacklevel=2,
        )


def _send(
    producer: Producer, topic: str, key: bytes, value: bytes, timestamp: int, report: DeliveryReport
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, timestamp=timestamp, on_delivery=report.on_delivery)
            report.sent += 1
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain (backpressure)
