"""The fetcher hands each record to the conductor without four asyncio tasks per record.

Faust's fetch loop (faust-streaming 0.15.3, faust/transport/consumer.py `_drain_messages`) hands every
fetched record over as `await self.wait_first(callback(message), self.suspend_flow.wait())`, and
mode's `Service.wait_first` wraps those two awaitables and the consumer's stopped and crashed events
in four tasks, waits for the first, then cancels the other three: per record. At full speed that was
~10 % of the worker's GIL time (py-spy, docs/BENCHMARKS.md, issue 14), for a callback (the
conductor's `on_message`: decode, then `put_nowait` on the channel's queue) that almost never
suspends.

`direct_hand_off` gives the consumer a `wait_first` that, for that call only (two awaitables, no
timeout), awaits the callback directly when nothing could beat it at the moment of the call: neither
the consumer's flow nor the app's flow control suspended (the callback's first await waits for the
latter), the consumer neither stopping nor crashed. In every other case, and for every other
caller, it is mode's own. The one difference: a callback blocked on a full channel queue when a
rebalance suspends flow is not cancelled at once; the rebalance clears the channel queues, which
cancels a blocked put (as before), and a record that still gets through carries the generation it
was fetched in, so the batcher skips and releases it (`batches.py`). Nothing is scored out of order
either way: the partition sequencer (`sequence.py`) admits records strictly in offset order and
reads a partition again after a gap. A stop or a rebalance restart cancels the fetcher task, and
with it the awaited callback, as before.

`bound_long_poll` sets how long the broker may hold a fetch that finds no new records (Kafka's
`fetch.max.wait.ms`; Faust hardcodes 1,500 ms in faust/transport/drivers/aiokafka.py). aiokafka 0.14
(aiokafka/consumer/fetcher.py `_get_actions_per_node`) keeps at most one fetch in flight per broker,
and does not fetch a partition again while its fetched records wait to be consumed; after
`prefetch_backoff` (0.1 s) it fetches the *other* partitions without them. Under load that fetch
holds only the idle ones (the profiles topic): the broker kept it 1.5 s, and the transactions, drained
meanwhile, could not be fetched until it returned. Seen at an offered 5,000 events/s: the batcher
waited ~1.1 s on an empty queue every 4–5 s while the backlog sat on the broker (the worker busy 81 %
of the time, docs/BENCHMARKS.md). A short wait bounds that stall; an idle worker polls more often
instead (`PANTHER_FETCH_MAX_WAIT_MS`, default 10: a hundred empty fetches a second).

With the wait that short, the broker is also asked to hold a fetch until `PANTHER_FETCH_MIN_BYTES`
(default 64 KiB) have arrived: at 1,000 events/s a fetch with Kafka's default of one byte came back
with a record or two, and the round trips cost the worker's consumer thread ~15 % of a core (0.89–0.90
→ 0.72–0.77 cores at 1,000 events/s at_least_once, docs/BENCHMARKS.md). A record then waits at most
the wait for its fetch; a backlog fills 64 KiB at once.

`raw_decode` gives the agent's channel a `decode` that makes the record's Event directly. Faust's
compiled one (faust/serializers/schemas.py `Schema.compile`) looks up and runs the key and the value
codec for every record, and for "raw" topics without types (all of ours) that is `want_bytes` twice and
a model-reconstruction check: ~3 % of the worker's GIL time at full speed (py-spy, issue 14). Installed
only on channels whose schema is exactly that; the Event is the same (tested against Faust's own).
"""

from __future__ import annotations

import inspect
from typing import Any

from mode.services import WaitResults

from stream.worker.patching import install_once


class DirectHandOff:
    """The consumer's `wait_first`, with the fetch loop's per-record call awaited directly."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.original = consumer.wait_first
        self.direct = 0  # records handed over directly (for the tests)

    async def __call__(self, *coros: Any, timeout: Any = None) -> WaitResults:
        consumer = self.consumer
        if (
            len(coros) == 2
            and timeout is None
            and inspect.iscoroutine(coros[0])
            and inspect.iscoroutine(coros[1])
            and not consumer.suspend_flow.is_set()
            and consumer.app.flow_control.is_active()  # the callback's first await would block
            and not consumer._stopped.is_set()
            and not consumer._crashed.is_set()
        ):
            callback, suspended = coros
            suspended.close()  # never awaited: nothing can suspend flow before the callback runs
            self.direct += 1
            return WaitResults([callback], [await callback], False)
        return await self.original(*coros, timeout=timeout)


class RawDecode:
    """A raw, untyped channel's `decode`: the record's key, value and headers as the Event's, as is."""

    def __init__(self, app: Any) -> None:
        self.app, self.event = app, app.conf.Event

    async def __call__(self, message: Any, *, propagate: bool = False) -> Any:
        return self.event(self.app, message.key, message.value, message.headers, message)


def raw_decode(channel: Any) -> RawDecode | None:
    """Install on `channel` (idempotent) when its schema is raw bytes both ways with no types, the only
    case in which Faust's decode returns the record as it came; → the decode, or None (left as it was)."""
    schema = getattr(channel, "schema", None)
    if schema is None or (schema.key_serializer, schema.value_serializer) != ("raw", "raw"):
        return None
    if schema.key_type is not None or schema.value_type is not None:
        return None
    return install_once(channel, "decode", RawDecode, lambda: RawDecode(channel.app))


def direct_hand_off(consumer: Any) -> DirectHandOff:
    """Install on `consumer` (idempotent); the fetch loop looks `wait_first` up on every record."""
    return install_once(consumer, "wait_first", DirectHandOff, lambda: DirectHandOff(consumer))


class BoundedLongPoll:
    """The consumer thread's `_create_worker_consumer`, with the fetch's wait and size set on its result."""

    def __init__(self, thread: Any, wait_ms: int, min_bytes: int) -> None:
        self.original = thread._create_worker_consumer
        self.wait_ms, self.min_bytes = wait_ms, min_bytes

    def __call__(self, transport: Any) -> Any:
        consumer = self.original(transport)
        set_fetch_wait(consumer, self.wait_ms, self.min_bytes)
        return consumer


def set_fetch_wait(consumer: Any, wait_ms: int, min_bytes: int = 1) -> None:
    """On an aiokafka consumer: its fetcher (built at start) reads both for every request it builds."""
    consumer._fetch_max_wait_ms, consumer._fetch_min_bytes = wait_ms, min_bytes
    if consumer._fetcher is not None:
        consumer._fetcher._fetch_max_wait_ms, consumer._fetcher._fetch_min_bytes = wait_ms, min_bytes


def bound_long_poll(consumer: Any, wait_ms: int, min_bytes: int) -> BoundedLongPoll:
    """Install on Faust's consumer (idempotent): on the aiokafka consumer its thread creates at start,
    and on the one it has already created, if any."""
    thread = consumer._thread
    installed = install_once(thread, "_create_worker_consumer", BoundedLongPoll,
                             lambda: BoundedLongPoll(thread, wait_ms, min_bytes))  # fmt: skip
    if thread._consumer is not None:
        set_fetch_wait(thread._consumer, wait_ms, min_bytes)
    return installed
