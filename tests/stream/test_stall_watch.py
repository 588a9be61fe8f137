"""The stall watch seeks back a partition fetched past what its idle agent has seen, and nothing else."""

from __future__ import annotations

import asyncio

from stream.worker.sequence import PartitionSequencer
from stream.worker.stall_watch import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(committed: dict[str, int | None], start_offset: int | None = 0) -> tuple[StallWatch, list, Clock]:
    sought: list[tuple[str, int]] = []

    async def seek(tp: str, offset: int) -> None:
        sought.append((tp, offset))

    clock = Clock()
    sequencer = PartitionSequencer(committed=committed.get, seek=seek)
    return StallWatch(sequencer, idle_s=10, start_offset=start_offset, clock=clock), sought, clock


def _check(watch: StallWatch, positions: dict[str, int]) -> list[str]:
    async def position(tp: str) -> int:
        return positions[tp]

    return asyncio.run(watch.check(positions, position))


def test_an_idle_agent_behind_its_fetch_position_reads_the_partition_again() -> None:
    watch, sought, clock = _watch({"p0": 5, "p1": None, "p2": 7})
    watch.sequencer.expected["p2"] = 9  # the agent has admitted up to offset 8
    positions = {"p0": 38, "p1": 12, "p2": 9}
    assert _check(watch, positions) == []  # not idle long enough yet
    clock.now = 11
    assert _check(watch, positions) == ["p0", "p1"]
    # p0 from its committed offset, p1 (never committed) from the log start; p2 is caught up
    assert sought == [("p0", 5), ("p1", 0)] and watch.reads_again == 2
    clock.now = 15
    assert _check(watch, positions) == []  # the re-read gets a full idle period


def test_a_busy_agent_is_never_second_guessed() -> None:
    watch, sought, clock = _watch({"p0": 0})
    for now in (5, 12, 19, 26):
        clock.now = now
        watch.batch_seen()
        assert _check(watch, {"p0": 500}) == []
    assert sought == []


def test_without_a_known_start_nothing_is_guessed() -> None:
    watch, sought, clock = _watch({"p0": None}, start_offset=None)  # auto_offset_reset=latest
    clock.now = 60
    assert _check(watch, {"p0": 40}) == [] and sought == []
