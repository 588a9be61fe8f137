"""`TritonClient`: breaker and retry logic, and behaviour against a real tritonserver."""

from __future__ import annotations

import time

import numpy as np
import pytest

from panther_common.ports import free_port
from stream.triton_client import (
    CircuitBreaker,
    CircuitOpen,
    RetryPolicy,
    TritonClient,
    TritonModelError,
    TritonRequestError,
    TritonUnavailable,
)
from tests.triton_repo.fixtures import Served, shared_served
from triton_repo.schema import USER_ENCODER


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Served:
    return shared_served(request)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=5.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 5.0
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # only one probe at a time
    breaker.record_failure()  # the probe failed: open again, new cooldown
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_retry_delays_are_jittered_and_bounded() -> None:
    policy = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.03)
    delays = [policy.delay(a) for a in range(6) for _ in range(50)]
    assert min(delays) >= 0 and max(delays) <= 0.03 and len(set(delays)) > 100


async def test_unreachable_server_fails_after_retries_then_fast_with_breaker_open() -> None:
    client = TritonClient(
        f"127.0.0.1:{free_port()}",
        timeout_s=1.0,
        retry=RetryPolicy(attempts=2, base_delay_s=0.001),
        breaker=CircuitBreaker(failure_threshold=2, reset_timeout_s=30),
    )
    try:
        for _ in range(2):
            with pytest.raises(TritonUnavailable, match="UNAVAILABLE after 2 tries") as caught:
                await client.infer(USER_ENCODER, {"profile": np.zeros((1, 5), np.int64)})
            assert not isinstance(caught.value, CircuitOpen)
        started = time.perf_counter()
        with pytest.raises(CircuitOpen, match="calls suspended"):
            await client.infer(USER_ENCODER, {"profile": np.zeros((1, 5), np.int64)})
        assert time.perf_counter() - started < 0.01
        assert (await client.health())["live"] is False
    finally:
        await client.close()


async def test_infer_returns_non_empty_outputs(served: Served) -> None:
    async with TritonClient(served.server.grpc_url) as client:
        out = await client.infer(USER_ENCODER, {"profile": np.zeros((3, 5), np.int64)})
        assert out["user_embedding"].shape == (3, 16) and out["user_embedding"].dtype == np.float32
        assert out["user_embedding"].size and np.abs(out["user_embedding"]).sum() > 0  # numpy ≥ 2 gives EMPTY
        health = await client.health([USER_ENCODER])
        assert health == {
            "url": served.server.grpc_url,
            "live": True,
            "ready": True,
            "breaker": "closed",
            "models": {USER_ENCODER: True},
        }


async def test_wrong_shape_or_dtype_is_rejected_with_the_servers_message(served: Served) -> None:
    async with TritonClient(served.server.grpc_url, timeout_s=5.0) as client:
        started = time.perf_counter()
        with pytest.raises(
            TritonRequestError, match=r"unexpected shape for input 'profile'.*Expected \[-1,5\], got \[2,7\]"
        ):
            await client.infer(USER_ENCODER, {"profile": np.zeros((2, 7), np.int64)})
        with pytest.raises(
            TritonRequestError, match=r"'profile' data-type is 'FP32', but .* expects 'INT64'"
        ):
            await client.infer(USER_ENCODER, {"profile": np.zeros((2, 5), np.float32)})
        with pytest.raises(TritonRequestError, match="profile ids out of range"):
            await client.infer(USER_ENCODER, {"profile": np.full((2, 5), 999, np.int64)})
        assert time.perf_counter() - started < 2.0 and client.breaker.state == "closed"
        with pytest.raises(TritonModelError, match=r"unknown model|not found"):
            await client.infer("no_such_model", {"profile": np.zeros((2, 5), np.int64)})


async def test_a_stuck_server_costs_one_deadline_not_a_hung_call() -> None:
    # A gRPC server that takes the inference call and never answers: the call must end at its
    # deadline. (A real tritonserver answers a warm loopback call too fast for a deadline test to be
    # deterministic: even 1 µs once came back in time under CI's load, 2026-12-04.)
    import asyncio

    import grpc

    async def never_answer(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(30)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(never_answer)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with TritonClient(f"127.0.0.1:{port}", timeout_s=0.3, retry=RetryPolicy(attempts=1)) as client:
            started = time.perf_counter()
            with pytest.raises(TritonUnavailable, match="DEADLINE_EXCEEDED"):
                await client.infer(USER_ENCODER, {"profile": np.zeros((64, 5), np.int64)})
            assert 0.25 < time.perf_counter() - started < 2.0
    finally:
        await server.stop(grace=None)


async def test_breaker_opens_while_server_is_stopped_and_closes_when_it_returns(served: Served) -> None:
    # The probe must come after gRPC's reconnect backoff (capped at 0.25 s here) has expired.
    client = TritonClient(
        served.server.grpc_url,
        timeout_s=2.0,
        retry=RetryPolicy(attempts=2, base_delay_s=0.01),
        breaker=CircuitBreaker(failure_threshold=2, reset_timeout_s=0.5),
        max_reconnect_backoff_s=0.25,
    )
    profile = {"profile": np.zeros((2, 5), np.int64)}
    try:
        await client.infer(USER_ENCODER, profile)
        served.server.stop()
        for _ in range(2):
            with pytest.raises(TritonUnavailable):
                await client.infer(USER_ENCODER, profile)
        with pytest.raises(CircuitOpen):
            await client.infer(USER_ENCODER, profile)
        assert client.breaker.state == "open"
        served.server.start(wait_s=120)
        time.sleep(0.5)
        out = await client.infer(USER_ENCODER, profile)  # the half-open probe succeeds
        assert out["user_embedding"].shape == (2, 16) and client.breaker.state == "closed"
    finally:
        await client.close()


def test_client_from_settings_uses_the_configured_retries_and_breaker() -> None:
    from stream.settings import Settings

    settings = Settings(triton_retries=0, triton_breaker_failures=2, triton_breaker_reset_s=0.5,
                        triton_timeout_s=0.7, triton_grpc_port=9123)  # fmt: skip
    client = TritonClient.from_settings(settings)
    assert client.url.endswith(":9123") and client.timeout_s == 0.7
    assert client.retry.attempts == 1
    assert (client.breaker.failure_threshold, client.breaker.reset_timeout_s) == (2, 0.5)
