"""Table recovery's highwaters come from the broker (stream/worker/recovery.py), against a real broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.worker.recovery import BrokerHighwaters, ask_the_broker


@pytest.mark.integration
async def test_before_a_changelog_partition_is_fetched_only_the_broker_knows_where_it_ends(
    kafka_bootstrap: str, unique_topic
) -> None:
    """What Faust's recovery read in transaction mode (the consumer's last fetched LSO) is None for a
    partition just assigned: recovery then restored nothing. The broker's answer is the true end."""
    topic = unique_topic("changelog")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-txn")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(5):
                await producer.send(topic, key=f"u{i}".encode(), value=b"state")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        async with asyncio.timeout(30):  # the commit's markers are written just after commit returns
            while (await consumer.end_offsets([tp]))[tp] < 6:
                await asyncio.sleep(0.05)
        consumer.assign([tp])
        assert consumer.last_stable_offset(tp) is None  # Faust's lookup: "highwater -1", nothing to read
        highwaters = await BrokerHighwaters(SimpleNamespace(_ensure_consumer=lambda: consumer))([tp])
        assert highwaters == {tp: 6}  # five records and the transaction's commit marker
    finally:
        await consumer.stop()


def test_installed_once_on_the_consumer_thread() -> None:
    thread = SimpleNamespace()
    consumer = SimpleNamespace(_thread=thread)
    first = ask_the_broker(consumer)
    assert thread._highwaters is first and ask_the_broker(consumer) is first
