"""Topics, produce and tail against the real broker of the session fixture."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stream.errors import KafkaUnreachable, PantherError
from stream.produce import produce_file
from stream.settings import Settings
from stream.tail import follow
from stream.topics import create_topics, declared_topics

pytestmark = pytest.mark.integration


def _settings(bootstrap: str, unique_topic: Callable[[str], str], **extra: object) -> Settings:
    names = {
        f"topic_{role}": unique_topic(role)
        for role in ("transactions", "profiles", "alerts", "scores", "dlq")
    }
    return Settings(kafka_bootstrap=bootstrap, partitions=3, **names, **extra)


def _transactions(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "txn_id": [f"t{i:04d}" for i in range(n)],
            "user_id": [f"u{i % 7}" for i in range(n)],
            "timestamp": pd.date_range("2026-03-01", periods=n, freq="min", tz="UTC"),
            "amount": [round(3.25 * (i + 1), 2) for i in range(n)],
            "merchant_id": [f"m{i % 5}" for i in range(n)],
            "channel": ["online", "card_present"] * (n // 2) + ["qr"] * (n % 2),
        }
    )


def test_topics_are_created_idempotently_and_copartitioned(kafka_bootstrap: str, unique_topic) -> None:
    settings = _settings(kafka_bootstrap, unique_topic)
    first = create_topics(settings)
    assert set(first.values()) == {"created"}
    second = create_topics(settings)
    assert set(second.values()) == {"exists"}

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    for spec in declared_topics(settings):
        assert len(metadata[spec.name].partitions) == 3
    resource = ConfigResource(ResourceType.TOPIC, settings.topic_profiles)
    config = admin.describe_configs([resource])[resource].result()
    assert config["cleanup.policy"].value == "compact"


def test_mismatched_partitions_are_refused(kafka_bootstrap: str, unique_topic) -> None:
    settings = _settings(kafka_bootstrap, unique_topic)
    create_topics(settings)
    other = settings.model_copy(update={"topic_profiles": unique_topic("profiles"), "partitions": 2})
    with pytest.raises(PantherError, match="co-partitioned"):
        create_topics(other)


def test_produce_then_tail_returns_every_record_keyed_and_in_order(
    kafka_bootstrap: str, unique_topic, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, unique_topic)
    create_topics(settings)
    frame = _transactions(200)
    path = tmp_path / "transactions.parquet"
    frame.to_parquet(path)

    report = produce_file(path, settings.topic_transactions, settings, show_progress=False)
    assert (report.sent, report.delivered, report.failed) == (200, 200, 0)

    records = list(
        follow(settings.topic_transactions, settings, from_beginning=True, max_records=200, idle_timeout_s=20)
    )
    assert len(records) == 200
    bodies = [json.loads(record.value) for record in records]
    assert sorted(body["txn_id"] for body in bodies) == list(frame["txn_id"])
    assert all(record.key == body["user_id"] for record, body in zip(records, bodies, strict=True))
    # Keyed by user: one user's records share a partition and keep their order.
    for user in frame["user_id"].unique():
        mine = [
            (r.partition, r.offset, b["txn_id"])
            for r, b in zip(records, bodies, strict=True)
            if r.key == user
        ]
        assert len({partition for partition, _, _ in mine}) == 1
        assert [t for _, _, t in sorted(mine)] == sorted(t for _, _, t in mine)
    # Record timestamps carry the event time (backtests seek on it).
    first = min(records, key=lambda r: r.timestamp_ms)
    assert first.timestamp_ms == int(frame["timestamp"].iloc[0].timestamp() * 1000)


def test_rate_limited_produce_takes_the_expected_time(
    kafka_bootstrap: str, unique_topic, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, unique_topic)
    create_topics(settings)
    path = tmp_path / "transactions.parquet"
    _transactions(100).to_parquet(path)
    report = produce_file(path, settings.topic_transactions, settings, rate=200, show_progress=False)
    assert report.delivered == 100
    assert 0.4 <= report.seconds <= 3.0


def test_unreachable_broker_is_one_clear_error(tmp_path: Path) -> None:
    from panther_common.ports import free_port

    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_timeout_s=2)
    path = tmp_path / "transactions.parquet"
    _transactions(3).to_parquet(path)
    with pytest.raises(KafkaUnreachable, match=r"not reachable at 127\.0\.0\.1:\d+"):
        produce_file(path, "transactions", settings, show_progress=False)


def test_history_older_than_the_topic_retention_is_flagged(
    kafka_bootstrap: str, unique_topic, tmp_path: Path
) -> None:
    path = tmp_path / "transactions.parquet"
    _transactions(10).to_parquet(path)  # March 2026: older than a 7-day retention
    short = _settings(kafka_bootstrap, unique_topic, retention_ms=7 * 24 * 3600 * 1000)
    create_topics(short)
    with pytest.warns(UserWarning, match="will delete them"):
        produce_file(path, short.topic_transactions, short, show_progress=False)

    forever = _settings(kafka_bootstrap, unique_topic, retention_ms=-1)
    create_topics(forever)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = produce_file(path, forever.topic_transactions, forever, show_progress=False)
    assert report.delivered == 10
