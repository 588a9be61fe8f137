"""The fetch loop's direct hand-off (`stream/worker/fetch.py`) against mode's own `wait_first`."""

from __future__ import annotations

import asyncio
import warnings
from types import SimpleNamespace

import pytest
from mode import Service

from stream.worker.fetch import DirectHandOff, direct_hand_off


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
