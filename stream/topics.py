"""The topics PANTHER declares, and their idempotent creation.

Transactions and user profiles are co-partitioned by user_id (same partition count, same key), so one
worker owns a user's window and embedding together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream.errors import KafkaUnreachable, PantherError
from stream.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def declared_topics(settings: Settings) -> list[TopicSpec]:
    keep = {"retention.ms": str(settings.retention_ms)}
    return [
        TopicSpec(settings.topic_transactions, settings.partitions, dict(keep)),
        TopicSpec(
            settings.topic_profiles,
            settings.partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        TopicSpec(settings.topic_scores, settings.partitions, dict(keep)),
        TopicSpec(settings.topic_alerts, settings.partitions, dict(keep)),
        TopicSpec(settings.topic_dlq, settings.partitions, {"retention.ms": "-1"}),
    ]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_client_config())


def existing_partitions(admin: AdminClient, settings: Settings) -> dict[str, int]:
    """Topic name → partition count, or KafkaUnreachable when no broker answers."""
    try:
        metadata = admin.list_topics(timeout=settings.kafka_timeout_s)
    except KafkaException as exc:
        raise KafkaUnreachable(settings.kafka_bootstrap, str(exc.args[0].str())) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def create_topics(settings: Settings) -> dict[str, str]:
    """Creates the declared topics that are missing; returns name → "created" | "exists".

    Fails when an existing co-partitioned topic has another partition count, since keys would then
    land on different workers for transactions and profiles.
    """
    admin = admin_client(settings)
    present = existing_partitions(admin, settings)
    specs = declared_topics(settings)
    outcome: dict[str, str] = {}
    missing = [spec for spec in specs if spec.name not in present]
    for spec in specs:
        if spec.name in present:
            outcome[spec.name] = "exists"
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(spec.name, spec.partitions, settings.replication_factor, config=spec.config)
                for spec in missing
            ],
            operation_timeout=settings.kafka_timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                error = exc.args[0]
                if error.name() == "TOPIC_ALREADY_EXISTS":
                    outcome[name] = "exists"
                else:
                    raise PantherError(f"could not create topic {name}: {error.str()}") from None
    _check_copartitioned(admin, settings)
    return outcome


def _check_copartitioned(admin: AdminClient, settings: Settings) -> None:
    """Transactions and profiles must have the same partition count. A topic created a moment ago can
    be missing from metadata (or listed without partitions) for a short while: wait for both first."""
    pair = (settings.topic_transactions, settings.topic_profiles)
    deadline = time.monotonic() + settings.kafka_timeout_s
    counts = existing_partitions(admin, settings)
    while not all(counts.get(name) for name in pair) and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = existing_partitions(admin, settings)
    if counts.get(pair[0]) != counts.get(pair[1]):
        raise PantherError(
            f"{pair[0]} has {counts.get(pair[0])} partitions but {pair[1]} has {counts.get(pair[1])}: "
            "they must be co-partitioned by user_id (same count)"
        )


def topic_retention_ms(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> int | None:
    """The topic's effective `retention.ms` (−1 = forever), or None when it cannot be read."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout_s)
        return int(configs["retention.ms"].value)
    except (KafkaException, KeyError, ValueError, TypeError, TimeoutError):  # a broker gone mid-check
        return None
