"""The fetch loop's direct hand-off (`stream/worker/fetch.py`) against mode's own `wait_first`, and the
bounded long poll against a real broker."""

from __future__ import annotations

import asyncio
import time
import warnings
from types import SimpleNamespace

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.types.tuples import Message
from mode import Service

from stream.worker.fetch import DirectHandOff, bound_long_poll, direct_hand_off, raw_decode, set_fetch_wait


class FakeConsumer(Service):
    """A mode service with the consumer's flow events, as Faust's fetch loop sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.flowing = True
        self.app = SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: self.flowing))


async def hand_over(consumer: FakeConsumer, record: int) -> tuple[list, list, bool]:
    """One record through the fetch loop's call shape: `wait_first(callback(m), suspend_flow.wait())`."""

    async def callback(message: int) -> int:
        await asyncio.sleep(0)
        return message * 2

    result = await consumer.wait_first(callback(record), consumer.suspend_flow.wait())
    return [type(done).__name__ for done in result.done], result.results, result.stopped


async def test_the_direct_hand_off_returns_what_mode_returns() -> None:
    reference = FakeConsumer()
    direct = FakeConsumer()
    hand_off = direct_hand_off(direct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a never-awaited coroutine would warn
        for record in range(5):
            assert await hand_over(direct, record) == await hand_over(reference, record)
    assert hand_off.direct == 5


def suspend_consumer_flow(consumer: FakeConsumer) -> None:
    consumer.suspend_flow.set()


def suspend_app_flow(consumer: FakeConsumer) -> None:
    consumer.flowing = False


def stop(consumer: FakeConsumer) -> None:
    consumer._stopped.set()


@pytest.mark.parametrize("condition", [suspend_consumer_flow, suspend_app_flow, stop])
async def test_whatever_could_beat_the_callback_takes_modes_path(condition) -> None:
    consumer = FakeConsumer()
    hand_off = direct_hand_off(consumer)
    condition(consumer)
    done, _, stopped = await hand_over(consumer, 1)
    assert hand_off.direct == 0
    assert stopped == (condition is stop)
    assert stopped or len(done) >= 1  # mode's wait_first: the suspension may win the race


async def test_other_call_shapes_take_modes_path() -> None:
    consumer = FakeConsumer()
    hand_off = direct_hand_off(consumer)

    async def value() -> int:
        return 7

    assert (await consumer.wait_first(value())).results == [7]
    result = await consumer.wait_first(value(), consumer.suspend_flow.wait(), timeout=1.0)
    assert 7 in result.results
    assert hand_off.direct == 0


async def test_a_cancelled_fetcher_cancels_the_awaited_callback() -> None:
    consumer = FakeConsumer()
    direct_hand_off(consumer)
    blocked = asyncio.Event()
    finished = False

    async def callback() -> None:
        nonlocal finished
        blocked.set()
        await asyncio.sleep(30)  # a full channel queue
        finished = True

    task = asyncio.ensure_future(consumer.wait_first(callback(), consumer.suspend_flow.wait()))
    await blocked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not finished


def test_installing_twice_keeps_one_hand_off() -> None:
    consumer = FakeConsumer()
    first = direct_hand_off(consumer)
    assert direct_hand_off(consumer) is first
    assert isinstance(consumer.wait_first, DirectHandOff)
    assert first.original.__func__ is Service.wait_first


# ------------------------------------------------------------------------------ the bounded long poll
async def _next_record_after_a_long_poll(bootstrap: str, busy: str, idle: str, wait_ms: int | None,
                                         min_bytes: int = 1) -> float:
    """Seconds from consuming the busy topic's buffered records to receiving its next one, when the
    fetcher had meanwhile long-polled the idle topic alone (what a loaded worker's fetcher does)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=1500)  # Faust's  # fmt: skip
    await producer.start()
    await consumer.start()
    try:
        if wait_ms is not None:
            set_fetch_wait(consumer, wait_ms, min_bytes)
        busy_tp, idle_tp = TopicPartition(busy, 0), TopicPartition(idle, 0)
        for i in range(5):
            await producer.send_and_wait(busy, f"r{i}".encode())
        consumer.assign([busy_tp, idle_tp])
        async with asyncio.timeout(30):
            while busy_tp not in consumer._fetcher._records:  # fetched, not consumed yet
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # > prefetch_backoff (0.1 s): a fetch of the idle topic alone is out
        await producer.send_and_wait(busy, b"next")
        buffered = await consumer.getmany(busy_tp, timeout_ms=1000)
        assert len(buffered[busy_tp]) == 5
        started = time.perf_counter()
        async with asyncio.timeout(30):
            while not (await consumer.getmany(busy_tp, timeout_ms=50)).get(busy_tp):
                pass
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


@pytest.mark.integration
async def test_a_long_poll_of_an_idle_topic_no_longer_holds_the_busy_one_back(
    kafka_bootstrap: str, unique_topic
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [unique_topic(name) for name in ("busy-ref", "idle-ref", "busy", "idle", "busy-min", "idle-min")]
    created = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in topics])
    for future in created.values():
        future.result(timeout=30)
    held = await _next_record_after_a_long_poll(kafka_bootstrap, topics[0], topics[1], None)
    bounded = await _next_record_after_a_long_poll(kafka_bootstrap, topics[2], topics[3], 10)
    # Faust's 1,500 ms: the record waited for the idle topic's poll to come back (measured ~1.3 s; with
    # 50 ms ~0.01 s)
    assert held > 0.8, (held, bounded)
    assert bounded < 0.5, (held, bounded)
    # The worker's default: the broker holds a fetch for 64 KiB, so a lone record waits out the wait.
    gathered = await _next_record_after_a_long_poll(kafka_bootstrap, topics[4], topics[5], 10, 65_536)
    assert gathered < 0.5, (held, bounded, gathered)


def test_the_fetch_wait_is_set_on_the_consumer_the_thread_creates_and_on_one_it_has() -> None:
    created = SimpleNamespace(_fetch_max_wait_ms=1500, _fetcher=None)
    thread = SimpleNamespace(_consumer=None, _create_worker_consumer=lambda transport: created)
    installed = bound_long_poll(SimpleNamespace(_thread=thread), 50, 1)
    assert bound_long_poll(SimpleNamespace(_thread=thread), 50, 1) is installed  # once
    assert thread._create_worker_consumer("transport") is created and created._fetch_max_wait_ms == 50

    running = SimpleNamespace(_fetch_max_wait_ms=1500, _fetcher=SimpleNamespace(_fetch_max_wait_ms=1500))
    thread = SimpleNamespace(_consumer=running, _create_worker_consumer=lambda transport: running)
    bound_long_poll(SimpleNamespace(_thread=thread), 20, 4096)
    assert running._fetch_max_wait_ms == running._fetcher._fetch_max_wait_ms == 20
    assert running._fetch_min_bytes == running._fetcher._fetch_min_bytes == 4096


def _message(key: bytes | None, value: bytes | None, headers: list) -> Message:
    return Message("t", 0, 7, 1.5, 0, headers, key, value, None)


async def test_the_raw_decode_makes_the_event_fausts_decode_makes() -> None:
    app = faust.App("raw-decode-test", broker="kafka://127.0.0.1:1")
    channel = app.topic("t", key_serializer="raw", value_serializer="raw").clone(is_iterator=True)
    faust_decode = channel.decode
    assert raw_decode(channel) is channel.decode is raw_decode(channel)  # installed once
    records = [(b"u1", b'{"a": 1}', []), (None, None, []), (b"", b"\x00\xff", [("h", b"v")])]
    for key, value, headers in records:
        message = _message(key, value, headers)
        mine, theirs = await channel.decode(message), await faust_decode(message, propagate=True)
        assert type(mine) is type(theirs)
        assert (mine.key, mine.value, mine.headers, mine.message) == (
            theirs.key, theirs.value, theirs.headers, theirs.message
        )  # fmt: skip


def test_the_raw_decode_is_not_installed_on_typed_or_other_codecs() -> None:
    app = faust.App("raw-decode-typed", broker="kafka://127.0.0.1:1")
    typed = app.topic("t", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    for channel in (app.topic("t", key_serializer="raw", value_serializer="json"), typed):
        before = channel.decode
        assert raw_decode(channel) is None and channel.decode is before
