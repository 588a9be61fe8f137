"""`natural_batches`: what arrived while a batch was processed is the next batch at once; idle lingers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace
from typing import Any

from faust.events import Event
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from stream.worker.batches import channel_batches, natural_batches


class FakeStream:
    """The parts of a Faust stream `natural_batches` uses; `feed` plays the passive drainer."""

    def __init__(self) -> None:
        self._processors: list[Any] = []
        self.enable_acks, self.should_stop, self.current_event = True, False, None
        self.acked: list[Any] = []
        self.channel = self

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel: Any) -> None:
        pass

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def ack(self, event: Any) -> None:
        self.acked.append(event)

    async def feed(self, event: Any) -> None:
        self.current_event = event
        for processor in self._processors:
            await processor(event)


async def test_what_arrives_during_a_batch_is_the_next_batch_without_lingering() -> None:
    stream = FakeStream()
    batches: list[tuple[list[int], float]] = []

    async def consume() -> None:
        async for batch in natural_batches(stream, 100, linger_s=0.05):
            batches.append((batch, time.perf_counter()))
            if len(batches) == 1:
                for event in (2, 3):  # arrive while batch 1 is processed
                    await stream.feed(event)
                await asyncio.sleep(0.1)
                processed = time.perf_counter()
            if len(batches) == 2:
                stream.should_stop = True
                assert batches[1][1] - processed < 0.03, "the waiting events were made to linger"
                return

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await stream.feed(1)
    await asyncio.wait_for(task, 5)
    assert [b for b, _ in batches] == [[1], [2, 3]]
    assert batches[0][1] - started >= 0.04, "an idle worker lingers for more after a first event"
    assert stream.acked == [1] and stream.enable_acks  # acked after each batch's body; acks restored


async def test_the_buffer_holds_at_most_max_events() -> None:
    stream = FakeStream()
    batches: list[list[int]] = []

    async def consume() -> None:
        async for batch in natural_batches(stream, 2, linger_s=0.0):
            batches.append(batch)
            await asyncio.sleep(0.02)
            if sum(map(len, batches)) == 5:
                stream.should_stop = True
                return

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    for event in range(1, 6):
        await stream.feed(event)  # blocks while the buffer is full: backpressure
    await asyncio.wait_for(task, 5)
    assert all(len(batch) <= 2 for batch in batches)
    assert [e for batch in batches for e in batch] == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------ channel_batches (PANTHER_INGEST=direct)
class FakeFlow:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeApp:
    """What `channel_batches` reads of Faust's app: the consumer's unacked set, flow, generation."""

    def __init__(self) -> None:
        self.consumer = SimpleNamespace(unacked=set())
        self.consumer.ack = self._release  # Faust's Consumer.ack, on a message's final ack
        self.topics = SimpleNamespace(acking_topics={"transactions"})
        self.flow_control = FakeFlow()
        self.consumer_generation_id = 1

    def _release(self, message: Any) -> bool:
        message.acked = True
        self.consumer.unacked.discard(message)
        return True


class ChannelStream:
    """The parts of a Faust stream `channel_batches` uses: its app and its channel's queue."""

    def __init__(self) -> None:
        self.app = FakeApp()
        self.channel = SimpleNamespace(queue=asyncio.Queue())
        self.should_stop = False
        self.started = False

    async def maybe_start(self) -> None:
        self.started = True

    def put(self, offset: int, generation: int = 1) -> Event:
        message = ConsumerMessage("transactions", 0, offset, 0.0, 0, [], b"u", b"{}", None,
                                  generation_id=generation)  # fmt: skip
        event = Event(self.app, b"u", b"{}", {}, message)  # type: ignore[arg-type]
        self.channel.queue.put_nowait(event)
        return event


def offsets(batch: list[Any]) -> list[int]:
    return [event.message.offset for event in batch]


async def test_the_channel_queue_is_the_next_batch_at_once_up_to_max() -> None:
    stream = ChannelStream()
    events = [stream.put(offset) for offset in range(5)]
    batches = []
    started = time.perf_counter()
    async for batch in channel_batches(stream, 2, linger_s=0.5):
        batches.append(offsets(batch))
        assert all(e.message.tracked and e.message in stream.app.consumer.unacked for e in batch)
        assert not any(e.message.acked for e in batch), "acked only after the batch's body"
        if len(batches) == 3:
            stream.should_stop = True
    assert batches == [[0, 1], [2, 3], [4]]
    assert time.perf_counter() - started < 0.25, "queued events were made to linger"
    assert stream.started and all(e.message.acked for e in events)


async def test_an_idle_channel_lingers_after_a_first_event() -> None:
    stream = ChannelStream()

    async def later() -> None:
        await asyncio.sleep(0.02)
        stream.put(1)
        await asyncio.sleep(0.01)
        stream.put(2)

    task = asyncio.ensure_future(later())
    async for batch in channel_batches(stream, 10, linger_s=0.05):
        assert offsets(batch) == [1, 2]
        break
    await task


async def test_events_of_another_generation_or_while_flow_is_suspended_are_skipped_and_released() -> None:
    stream = ChannelStream()
    old = stream.put(0, generation=0)
    kept = stream.put(1)
    async for batch in channel_batches(stream, 10, linger_s=0.0):
        assert batch == [kept]
        break
    assert old.message.acked and old.message not in stream.app.consumer.unacked
    stream.app.flow_control.active = False
    suspended = stream.put(2)
    stream.app.flow_control.active = True

    async def stop_soon() -> None:
        await asyncio.sleep(0.02)
        stream.should_stop = True
        stream.put(3)  # wakes the idle wait; the loop then sees should_stop

    task = asyncio.ensure_future(stop_soon())
    stream.app.flow_control.active = False
    got = [offsets(batch) async for batch in channel_batches(stream, 10, linger_s=0.0)]
    await task
    assert got == [] and suspended.message.acked


async def test_channel_batches_deliver_what_the_stream_reference_delivers() -> None:
    """Same arrivals, both paths: the same events in the same order, no batch over max."""
    reference, direct = FakeStream(), ChannelStream()
    for offset in range(7):
        direct.put(offset)
    want: list[int] = []

    async def consume_reference() -> None:
        async for batch in natural_batches(reference, 3, linger_s=0.0):
            assert len(batch) <= 3
            want.extend(batch)
            if len(want) == 7:
                reference.should_stop = True
                return

    task = asyncio.ensure_future(consume_reference())
    await asyncio.sleep(0)
    for offset in range(7):
        await reference.feed(offset)
    await asyncio.wait_for(task, 5)
    got: list[int] = []
    async for batch in channel_batches(direct, 3, linger_s=0.0):
        assert len(batch) <= 3
        got.extend(offsets(batch))
        if len(got) == 7:
            break
    assert got == want == list(range(7))


async def test_a_stop_thrown_into_the_channel_ends_the_batches() -> None:
    """Faust ends a channel's iteration (a worker stopping) by throwing StopAsyncIteration into it."""
    stream = ChannelStream()

    async def stop_soon() -> None:
        await asyncio.sleep(0.01)
        for getter in stream.channel.queue._getters:  # what mode's ThrowableQueue._throw does
            getter.set_exception(StopAsyncIteration())

    task = asyncio.ensure_future(stop_soon())
    got = [batch async for batch in channel_batches(stream, 10, linger_s=0.0)]
    await task
    assert got == []


async def test_the_channel_never_takes_its_partitions_out_of_the_fetch() -> None:
    """A full queue blocks the fetch loop's put; Faust's pressure pause idled the fetch loop 1 s."""
    stream = ChannelStream()
    stream.channel.queue = ThrowableQueue(maxsize=10, flow_control=FlowControlEvent())
    for offset in range(10):
        stream.put(offset)
    assert stream.channel.queue.in_pressure_high_state(lambda: None), "Faust's queue, as it comes"
    stream.channel.queue._pending_pressure_drop_callbacks.clear()
    async for batch in channel_batches(stream, 3, linger_s=0.0):
        assert len(batch) == 3
        break
    for offset in range(3):
        stream.put(10 + offset)
    assert stream.channel.queue.full()
    assert not stream.channel.queue.in_pressure_high_state(lambda: None)
