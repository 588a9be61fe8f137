"""/debug/tasks: every asyncio task of the worker with the chain of awaits it is suspended in — what
tells a worker that is alive and idle but does not consume (a py-spy dump only shows the idle loop)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from stream.worker.web import asyncio_tasks


async def test_each_task_shows_the_awaits_it_is_suspended_in() -> None:
    gate = asyncio.Event()

    async def inner() -> None:
        await gate.wait()

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer(), name="stuck-one")
    await asyncio.sleep(0)
    dump = asyncio_tasks(SimpleNamespace(consumer=None))  # type: ignore[arg-type]
    gate.set()
    await task
    line = next(line for line in dump.splitlines() if line.startswith("stuck-one:"))
    assert "== main loop:" in dump
    assert "outer:" in line and "inner:" in line and "wait:" in line
    assert line.index("outer:") < line.index("inner:") < line.index("wait:")
