"""Table recovery reads a changelog to the end the broker reports, not to what was fetched so far.

Faust (faust-streaming 0.15.3, faust/transport/drivers/aiokafka.py `_highwaters`) asks, in transaction
mode, for each changelog partition's *last stable offset* as the consumer last saw it in a fetch
response (aiokafka `last_stable_offset`): None for a partition not fetched yet. Recovery reads None as
"highwater -1", so a changelog partition assigned a moment before recovery starts is judged to have
nothing to restore, and its table starts empty. Seen twice (issue 15's rebalance test, 2026-12-06 and
-07, docs/RELIABILITY.md): a worker that joined during a Triton outage scored its new partitions with
neither the users' windows nor their profiles — every live score of the affected users equals the
uninterrupted run with those users' earlier events and profiles removed, to five digits — with nothing
lost or repeated.

`ask_the_broker` replaces that lookup on the consumer's thread with a ListOffsets request (aiokafka
`end_offsets`), which under `read_committed` — the isolation exactly_once consumes with — the broker
answers with the partition's last stable offset: the same value once the partition has been fetched,
and the right one before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stream.worker.patching import install_once


class BrokerHighwaters:
    """The consumer thread's `_highwaters`: ListOffsets (read_committed → the last stable offset)."""

    def __init__(self, thread: Any) -> None:
        self.thread = thread
        self.calls = 0  # for the tests

    async def __call__(self, partitions: Iterable[Any]) -> Mapping[Any, int]:
        self.calls += 1
        return await self.thread._ensure_consumer().end_offsets(list(partitions))


def ask_the_broker(consumer: Any) -> BrokerHighwaters:
    """Install on Faust's consumer (idempotent; before its first rebalance). Faust looks `_highwaters`
    up on its thread at each call (`call_thread(self._highwaters, …)`)."""
    thread = consumer._thread
    return install_once(thread, "_highwaters", BrokerHighwaters, lambda: BrokerHighwaters(thread))
