"""Operational endpoints on the worker's web port: liveness, readiness, Prometheus metrics.

/health answers 200 while the worker works, 503 once the app crashed or a batch failed (the worker is
then stopping: `shutdown.py`); /ready only when partitions are assigned and the
scorer answers (a load balancer or Kubernetes should not route to a worker that cannot score), with
Faust's rebalance/recovery state alongside; /debug/tasks lists every asyncio task and what it awaits.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from stream.worker.metrics import WorkerMetrics
from stream.worker.recovery import BrokerHighwaters


def install_endpoints(
    app: faust.App, metrics: WorkerMetrics, scorer_health: Callable[[], Awaitable[dict[str, Any]]],
    problem: Callable[[], str] = lambda: "",
) -> None:
    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        why = problem()
        if why:
            return web.json({"status": "failed", "reason": why}, status=503)
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        consumer = _consumer(app)
        assigned = len(consumer.assignment()) if consumer else 0
        scorer = await scorer_health()
        is_ready = assigned > 0 and bool(scorer.get("ready")) and not problem()
        body = {"ready": is_ready, "assigned_partitions": assigned, "scorer": scorer, "flow": flow_state(app)}
        return web.json(body, status=200 if is_ready else 503)

    @app.page("/debug/tasks")
    async def tasks(web: View, request: Request) -> Response:
        return web.text(await partition_positions(app) + asyncio_tasks(app))

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        payload, content_type = metrics.render()
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII anyway.
        return web.bytes(payload, content_type=content_type.split(";")[0] + "; version=0.0.4")


def flow_state(app: faust.App) -> dict[str, Any]:
    """Where Faust's rebalance and recovery stand: a worker with partitions assigned fetches nothing
    while it is rebalancing, recovering its tables, or holding partitions paused."""
    consumer = _consumer(app)
    recovery = app.tables.recovery
    paused = getattr(consumer, "_paused_partitions", ())
    return {
        "rebalancing": bool(app.rebalancing),
        "recovery_completed": recovery.completed.is_set(),
        "in_recovery": bool(recovery.in_recovery),
        "flow_active": bool(getattr(consumer, "flow_active", False)),
        "flow_control_active": app.flow_control.is_active(),
        "paused_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in paused),
        "active_partitions": len(getattr(consumer, "_active_partitions", None) or ()),
        "generation": app.consumer_generation_id,
        "changelog_ends_from_broker": broker_highwater_lookups(consumer),
    }


def broker_highwater_lookups(consumer: Any) -> int:
    """How often table recovery asked the broker where the changelogs end (`recovery.py`); 0 if never."""
    installed = getattr(getattr(consumer, "_thread", None), "__dict__", {}).get("_highwaters")
    return int(installed.calls) if isinstance(installed, BrokerHighwaters) else 0


async def partition_positions(app: faust.App) -> str:
    """Each assigned partition's fetch position, high watermark and whether Faust keeps it active: a
    partition behind its high watermark that is active but never moves is fetched by nobody."""
    consumer = _consumer(app)
    if consumer is None:
        return "== partitions: no consumer\n"
    active = getattr(consumer, "_active_partitions", None) or set()
    lines = ["== partitions (position / highwater / active)"]
    for tp in sorted(consumer.assignment()):
        try:
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
        except Exception as exc:  # a diagnostic page: say what failed, never fail the page
            position, highwater = type(exc).__name__, "?"
        state = "active" if tp in active else "-"
        lines.append(f"{tp.topic}:{tp.partition} {position} / {highwater} / {state}")
    return "\n".join(lines) + "\n"


def asyncio_tasks(app: faust.App) -> str:
    """Every asyncio task of the worker's loop and of the consumer's thread loop, with the line each one
    waits on: what a stack sampler cannot show of a worker that is idle but does not consume."""
    loops = {"main": asyncio.get_running_loop()}
    thread = getattr(_consumer(app), "_thread", None)
    if thread is not None and getattr(thread, "thread_loop", None) is not None:
        loops["consumer-thread"] = thread.thread_loop
    out = io.StringIO()
    agents = getattr(app, "agents", None) or {}
    out.write(f"== agents: {len(agents)}\n")
    for agent in agents.values():  # their tasks await a coroutine wrapper, which hides the chain: from here
        for actor in list(getattr(agent, "_actors", ())):
            out.write(f"{agent.name}: {' -> '.join(_await_chain(getattr(actor, 'it', None)))}\n")
    for name, loop in loops.items():
        pending = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
        out.write(f"== {name} loop: {len(pending)} tasks\n")
        for task in pending:
            out.write(f"{task.get_name()}: {' -> '.join(_await_chain(task.get_coro()))}\n")
    return out.getvalue()


def _consumer(app: faust.App) -> Any:
    """The app's consumer, or None before Faust has built it (or in a test's stand-in app)."""
    return getattr(app, "consumer", None) or None


def _await_chain(coro: Any) -> list[str]:
    """`function:line` of each coroutine a task is suspended in, outermost first, then what it awaits."""
    chain: list[str] = []
    while coro is not None and len(chain) < 30:
        frame = _first_attr(coro, "cr_frame", "gi_frame", "ag_frame")
        if frame is None:
            chain.append(type(coro).__name__)
            break
        chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = _first_attr(coro, "cr_await", "gi_yieldfrom", "ag_await")
    return chain


def _first_attr(obj: Any, *names: str) -> Any:
    return next((v for v in (getattr(obj, n, None) for n in names) if v is not None), None)
