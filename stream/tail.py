"""`panther tail`: prints a topic's records as they arrive, without joining any real consumer group."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from stream.errors import PantherError
from stream.settings import Settings
from stream.topics import admin_client, existing_partitions


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int

    def json(self) -> object:
        try:
            return json.loads(self.value)
        except ValueError:
            return self.value.decode("utf-8", "replace")


def _record(message: Message) -> Record:
    key = message.key()
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=message.value() or b"",
        timestamp_ms=message.timestamp()[1],
    )


def follow(
    topic: str,
    settings: Settings,
    from_beginning: bool = False,
    max_records: int | None = None,
    idle_timeout_s: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Record]:
    """Yields records until `max_records`, `idle_timeout_s` without a record, or `should_stop()`."""
    partitions = existing_partitions(admin_client(settings), settings)
    if topic not in partitions:
        raise PantherError(
            f"topic {topic!r} does not exist at {settings.kafka_bootstrap} (panther topics create)"
        )
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"panther-tail-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    seen = 0
    last = time.monotonic()
    try:
        while not should_stop():
            if max_records is not None and seen >= max_records:
                return
            if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(message.error())
            seen += 1
            last = time.monotonic()
            yield _record(message)
    finally:
        consumer.close()


def render(record: Record) -> None:
    """One readable line per record: alerts and scores get their headline fields first."""
    from stream.console import stderr

    body = record.json()
    if isinstance(body, dict) and "score" in body:
        headline = (
            f"[bold red]{body.get('score', 0):.3f}[/bold red] "
            f"txn={body.get('txn_id')} user={body.get('user_id')}"
            f" Δlog={body.get('deviation_log', 0):+.2f} ΔP={body.get('deviation', 0):+.2f}"
            + (f" lag={body['state_lag']}" if body.get("state_lag") else "")
        )
        reasons = ", ".join(str(reason.get("signal")) for reason in body.get("reasons", [])[:3])
        stderr.print(f"{headline} {reasons}", highlight=False)
    elif isinstance(body, dict) and "amount" in body:
        stderr.print(
            f"{body.get('timestamp')} {body.get('user_id')} {body.get('amount'):>9} {body.get('channel')} "
            f"{body.get('merchant_category')} {body.get('fraud_scenario') or ''}",
            highlight=False,
        )
    else:
        stderr.print(f"p{record.partition}@{record.offset} {record.key}: {body}", highlight=False)
