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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


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
