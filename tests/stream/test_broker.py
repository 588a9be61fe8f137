"""The local KRaft broker (stream/broker.py) and the two Kafka clients PANTHER uses against it.

Unit tests check the rendered configuration without Java. Integration tests run against a real
broker (`kafka_bootstrap`): confluent-kafka (producer, admin, replay) and aiokafka (Faust's client,
including the transactional producer that Faust's exactly-once processing relies on).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.protocol.admin import CreateTopicsRequest
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from panther_common.ports import free_ports
from stream.broker import (
    BrokerAlreadyRunning,
    BrokerStartError,
    FormatError,
    LocalKafka,
    PortInUse,
    new_cluster_id,
    render_properties,
    server_properties,
)
from stream.settings import Settings

N_RECORDS = 300
USERS = [f"user-{i}" for i in range(7)]
TIMEOUT_S = 30.0


# ---- unit: configuration ---------------------------------------------------------------------------
def _parse(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_server_properties_describe_one_combined_kraft_node(tmp_path: Path) -> None:
    props = _parse(render_properties(server_properties("127.0.0.1", 19092, 19093, tmp_path / "kraft")))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props  # Kafka 4: dynamic quorum, formatted --standalone
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kraft")
    assert props["auto.create.topics.enable"] == "false"
    single_node = [
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
    ]
    assert all(props[key] == "1" for key in single_node)
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_render_properties_escapes_backslashes() -> None:
    assert "log.dirs=C:\\\\kafka\n" in render_properties({"log.dirs": "C:\\kafka"})


def test_cluster_id_looks_like_kafkas_uuid() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


def test_from_settings_keeps_jars_apart_from_data(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_version="4.1.1", broker_port=29092, controller_port=29093)
    kafka = LocalKafka.from_settings(settings)
    assert kafka.bootstrap == "127.0.0.1:29092"
    assert kafka.jar_dir == tmp_path / "jars" / "kafka-4.1.1"
    assert kafka.data_dir == tmp_path / "broker"
    other = LocalKafka.from_settings(settings, data_dir=tmp_path / "elsewhere")
    assert other.data_dir == tmp_path / "elsewhere" and other.jar_dir == kafka.jar_dir


def test_status_without_a_broker_is_not_running(tmp_path: Path) -> None:
    status = LocalKafka(tmp_path, port=free_ports(1)[0]).status()
    assert not status.running and not status.ready and status.pid is None


def test_start_refuses_a_port_held_by_another_process(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    with socket.create_server(("127.0.0.1", port)):
        kafka = LocalKafka(tmp_path, port=port, controller_port=controller_port)
        with pytest.raises(PortInUse, match=rf"127\.0\.0\.1:{port} \(broker port\) is already in use"):
            kafka.start()


def test_format_refuses_a_data_dir_formatted_for_another_controller(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, port=19092, controller_port=19093)
    kafka.kraft_dir.mkdir(parents=True)
    (kafka.kraft_dir / "meta.properties").write_text("cluster.id=abc\n")
    kafka.cluster_file.write_text(
        json.dumps({"cluster_id": "abc", "host": "127.0.0.1", "controller_port": 1})
    )
    with pytest.raises(FormatError, match=r"formatted for controller 127\.0\.0\.1:1,"):
        kafka.format()


# ---- integration: the broker itself --------------------------------------------------------------
@pytest.mark.integration
def test_status_reports_the_running_broker(local_kafka: LocalKafka) -> None:
    status = local_kafka.status()
    assert status.running and status.ready
    assert status.pid is not None and status.bootstrap == local_kafka.bootstrap
    assert status.version == local_kafka.version


@pytest.mark.integration
def test_second_start_on_the_same_data_dir_says_it_already_runs(local_kafka: LocalKafka) -> None:
    twin = LocalKafka(
        local_kafka.home,
        version=local_kafka.version,
        port=local_kafka.port,
        controller_port=local_kafka.controller_port,
        data_dir=local_kafka.data_dir,
    )
    with pytest.raises(BrokerAlreadyRunning) as excinfo:
        twin.start()
    message = str(excinfo.value)
    assert "already running" in message and local_kafka.bootstrap in message and "\n" not in message
    assert local_kafka.status().ready  # the refused start left the running broker alone


@pytest.mark.integration
def test_a_broker_that_dies_at_start_reports_its_log(local_kafka: LocalKafka, tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    doomed = LocalKafka(
        local_kafka.home,
        version=local_kafka.version,
        port=port,
        controller_port=controller_port,
        heap="1k",
        data_dir=tmp_path / "broker",
    )
    with pytest.raises(BrokerStartError, match="exited with code") as excinfo:
        doomed.start(wait_s=30)
    assert "heap" in str(excinfo.value).lower()  # the JVM's own complaint, from stdout.log
    assert not doomed.status().running and not doomed.pid_file.exists()


@pytest.mark.integration
@pytest.mark.slow
def test_stop_and_restart_keep_the_data(
    local_kafka: LocalKafka, tmp_path: Path, unique_topic: Callable[[str], str]
) -> None:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(
        local_kafka.home,
        version=local_kafka.version,
        port=port,
        controller_port=controller_port,
        data_dir=tmp_path / "broker",
    )
    topic = unique_topic("restart")
    try:
        kafka.start()
        _create_topic(kafka.bootstrap, topic, partitions=1)
        _produce(kafka.bootstrap, topic, [("user-0", {"seq": 0})])
        assert kafka.stop() is True
        assert not kafka.status().running and not kafka.pid_file.exists()
        kafka.start()
        reader = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": topic})
        try:  # watermarks need no consumer group, so this stays fast on a fresh broker
            assert reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S) == (0, 1)
        finally:
            reader.close()
    finally:
        kafka.stop()


# ---- integration: clients ------------------------------------------------------------------------
def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=TIMEOUT_S)


def _records() -> list[tuple[str, dict[str, int]]]:
    """Keyed by user id; `seq` counts each user's records so per-key order can be checked."""
    per_user: dict[str, int] = defaultdict(int)
    out = []
    for i in range(N_RECORDS):
        user = USERS[(i * 5 + i // 3) % len(USERS)]
        out.append((user, {"seq": per_user[user], "i": i}))
        per_user[user] += 1
    return out


def _produce(bootstrap: str, topic: str, records: list[tuple[str, dict[str, int]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors: list[object] = []
    for key, value in records:
        producer.produce(
            topic,
            key=key,
            value=json.dumps(value),
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(TIMEOUT_S) == 0
    assert errors == []


def _consume_confluent(bootstrap: str, topic: str, expected: int) -> list[tuple[str, dict[str, int]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-confluent",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[str, dict[str, int]]] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.key().decode(), json.loads(msg.value())))
    finally:
        consumer.close()
    return got


async def _consume_aiokafka(
    bootstrap: str, topic: str, expected: int, **kwargs: object
) -> list[tuple[str, dict]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-aiokafka",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kwargs,
    )
    await consumer.start()
    got: list[tuple[str, dict]] = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while len(got) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                got += [(m.key.decode(), json.loads(m.value)) for msgs in batches.values() for m in msgs]
    except TimeoutError:
        pass  # the assertion in the test reports what is missing
    finally:
        await consumer.stop()
    return got


def _assert_same_records(got: list[tuple[str, dict]], sent: list[tuple[str, dict]]) -> None:
    assert sorted(got, key=lambda r: r[1]["i"]) == sent
    for user in USERS:
        seqs = [value["seq"] for key, value in got if key == user]
        assert seqs == sorted(seqs), f"records of {user} came back out of order"


@pytest.mark.integration
def test_confluent_roundtrip_keeps_keys_values_and_per_key_order(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("txns")
    _create_topic(kafka_bootstrap, topic, partitions=3)
    sent = _records()
    _produce(kafka_bootstrap, topic, sent)
    _assert_same_records(_consume_confluent(kafka_bootstrap, topic, expected=len(sent)), sent)


@pytest.mark.integration
async def test_aiokafka_consumer_group_reads_what_confluent_wrote(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("txns")
    _create_topic(kafka_bootstrap, topic, partitions=3)
    sent = _records()
    _produce(kafka_bootstrap, topic, sent)
    _assert_same_records(await _consume_aiokafka(kafka_bootstrap, topic, expected=len(sent)), sent)


@pytest.mark.integration
async def test_aiokafka_transactions_commit_abort_and_offsets(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    """What Faust's exactly-once mode does: transactional sends plus offsets committed in the txn."""
    topic, source = unique_topic("scores"), unique_topic("source")
    _create_topic(kafka_bootstrap, topic, partitions=3)
    _create_topic(kafka_bootstrap, source, partitions=1)
    group = f"{topic}-eos"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-txn")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(10):
                await producer.send(
                    topic, key=USERS[i % 3].encode(), value=json.dumps({"seq": i, "i": i}).encode()
                )
            await producer.send_offsets_to_transaction({AioTopicPartition(source, 0): 42}, group)
        await producer.begin_transaction()
        await producer.send(topic, key=b"user-0", value=json.dumps({"seq": -1, "i": -1}).encode())
        await producer.abort_transaction()
        async with producer.transaction():  # a committed record behind the aborted one, same key
            await producer.send(topic, key=b"user-0", value=json.dumps({"seq": 10, "i": 10}).encode())
    finally:
        await producer.stop()

    got = await _consume_aiokafka(kafka_bootstrap, topic, expected=11, isolation_level="read_committed")
    assert sorted(value["i"] for _, value in got) == list(range(11))  # the aborted record stays hidden

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        assert await consumer.committed(AioTopicPartition(source, 0)) == 42
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_aiokafka_create_topics_like_faust(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    """Faust creates its changelog/repartition topics with a raw CreateTopics request over aiokafka."""
    topic = unique_topic("changelog")
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap)
    await client.bootstrap()
    try:
        node_id = next(iter(client.cluster.brokers())).nodeId
        request = CreateTopicsRequest([(topic, 3, 1, [], [("cleanup.policy", "compact")])], 30_000, False)
        response = await client.send(node_id, request)
        assert response.topic_errors[0][1] == 0, response.topic_errors
    finally:
        await client.close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert len(admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions) == 3


@pytest.mark.integration
@pytest.mark.containers
def test_kafka_in_a_container_roundtrip(
    kafka_container_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("container")
    _create_topic(kafka_container_bootstrap, topic, partitions=3)
    sent = _records()
    _produce(kafka_container_bootstrap, topic, sent)
    _assert_same_records(_consume_confluent(kafka_container_bootstrap, topic, expected=len(sent)), sent)
