"""`natural_batches`: what arrived while a batch was processed is the next batch at once; idle lingers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from stream.worker.batches import natural_batches


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
