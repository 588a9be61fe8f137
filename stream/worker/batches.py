"""Natural micro-batches: take what has arrived, wait only when nothing has.

Faust's `take_events(max, within)` waits `within` on *every* batch (unless `max` events arrive first)
and blocks its buffer while a batch is processed, so at 1,000 events/s every event sat out up to
`within` after the previous batch ended, and more only piled up in front of the buffer. Here the
buffer keeps filling while a batch is processed (up to `max`: backpressure, not memory growth); when
the batch ends, everything that arrived meanwhile is the next batch, at once. Only an idle worker (an
empty buffer) lingers: after the first event it waits up to `linger_s` for more, or until `max` are in.
Batches grow with the load by themselves — one event when traffic is light, `max` under a flood —
which is what keeps both the latency at low rates and the throughput at full speed.

Acks stay manual, as in `take_events`: events are acked (for Faust's sensors) after the batch's body
returns; whether an ack makes an offset committable is the committer's decision (`transactions.py`).

Two ways to get there, one setting (`PANTHER_INGEST`):
- `channel_batches` (`direct`, the default) takes the batch off the agent's channel queue itself,
  in bulk. Faust's stream iterator (`faust/streams.py` `_py_aiter`) spends per event an
  `asyncio.sleep(0)` (a whole event-loop turn), four sensor calls, a tracing context per processor
  and our buffering processor: ~5 % of the worker's GIL time at full speed (py-spy, docs/BENCHMARKS.md,
  issue 14). What the stream does that matters is done here too, per event and in the same order:
  an event fetched while flow is suspended or in an older consumer generation is skipped and
  released (as the stream skips it; `sequence.py` reads the partition again), every other one is
  tracked as unacked (a rebalance waits for it) before the batch is handed on. The channel's own
  queue (`stream_buffer_maxsize`) is the buffer, and a full one blocks the fetch loop's put until the
  next batch is taken. Faust would instead take a partition out of the fetch once the queue is 80 %
  full and put it back once it drained to 40 %, and while none is left in the fetch its fetch loop
  sleeps a whole second (`_wait_next_records`): at full speed the worker sat idle 15 % of the time
  (busy share 0.84–0.86 → 0.93–0.95 without it, docs/BENCHMARKS.md). So this channel never reports
  pressure; a full queue holds the other topics' records (profiles) until the next batch is taken.
- `natural_batches` (`faust`) runs Faust's stream with a buffering processor: the reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.types import EventT


async def natural_batches(stream: Any, max_: int, linger_s: float) -> AsyncIterator[list[Any]]:
    """Batches of ≤ `max_` Faust events of `stream`, in arrival order (see the module docstring)."""
    buffer: list[Any] = []
    arrived = asyncio.Event()  # the buffer is not empty
    room = asyncio.Event()  # the buffer holds fewer than max_
    full = asyncio.Event()  # the buffer holds max_
    room.set()

    async def add_to_buffer(value: Any) -> Any:
        while len(buffer) >= max_:
            room.clear()
            await stream.wait(room)
            if stream.should_stop:
                return value
        event = stream.current_event
        if event is None:
            raise RuntimeError("natural_batches: no current_event for a value")
        buffer.append(event)
        arrived.set()
        if len(buffer) >= max_:
            full.set()
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acked after the batch's body, below
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))  # as Faust's own take_events drains the stream
    try:
        while not stream.should_stop:
            if not buffer:
                await stream.wait_for_stopped(arrived)
                if linger_s > 0 and len(buffer) < max_:
                    await stream.wait_for_stopped(full, timeout=linger_s)
            if not buffer:
                continue
            batch = buffer[:]
            buffer.clear()
            arrived.clear()
            full.clear()
            room.set()
            yield batch
            for event in batch:
                await stream.ack(event)
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add_to_buffer)


async def channel_batches(stream: Any, max_: int, linger_s: float) -> AsyncIterator[list[Any]]:
    """Batches of ≤ `max_` Faust events off `stream`'s channel queue, in arrival order (see above)."""
    app = stream.app
    queue = stream.channel.queue
    unacked = app.consumer.unacked
    acking_topics = app.topics.acking_topics
    flow_control = app.flow_control
    await stream.maybe_start()  # as Faust's stream iterator starts it
    queue.__dict__["pressure_high_size"] = queue.maxsize + 1  # no buffer-pressure pause (module doc)
    while not stream.should_stop:
        arrived: list[Any] = []
        try:
            if queue.empty():
                arrived.append(await queue.get())  # idle: wait for a first event, then linger for more
                if linger_s > 0:
                    await asyncio.sleep(linger_s)
            while len(arrived) < max_ and not queue.empty():
                arrived.append(queue.get_nowait())
        except StopAsyncIteration:  # a stop: Faust ends a channel's iteration by throwing it in
            return  # what was taken was never tracked nor made committable: read again after a restart
        batch = []
        generation = app.consumer_generation_id
        flowing = flow_control.is_active()
        for event in arrived:
            if not isinstance(event, EventT):
                continue  # a topic channel carries events only
            message = event.message
            if not flowing or message.generation_id != generation:
                event.ack()  # skipped and released, as Faust's stream does
                continue
            if message.topic in acking_topics and not message.tracked:
                message.tracked = True  # Faust's `track_message`, as its stream inlines it
                unacked.add(message)
            batch.append(event)
        if not batch:
            continue
        yield batch
        for event in batch:
            event.ack()  # released (a no-op when the committer acked it); offsets: transactions.py
