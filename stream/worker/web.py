"""Operational endpoints on the worker's web port: liveness, readiness, Prometheus metrics.

/health answers 200 while the worker works, 503 once the app crashed or a batch failed (the worker is
then stopping: `shutdown.py`); /ready only when partitions are assigned and the
scorer answers (a load balancer or Kubernetes should not route to a worker that cannot score).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from stream.worker.metrics import WorkerMetrics


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
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        scorer = await scorer_health()
        is_ready = assigned > 0 and bool(scorer.get("ready")) and not problem()
        body = {"ready": is_ready, "assigned_partitions": assigned, "scorer": scorer}
        return web.json(body, status=200 if is_ready else 503)

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        payload, content_type = metrics.render()
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII anyway.
        return web.bytes(payload, content_type=content_type.split(";")[0] + "; version=0.0.4")
