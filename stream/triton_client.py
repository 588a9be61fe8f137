"""The one Triton client of the stream: async gRPC, one channel, timeouts, retries, a circuit breaker.

Why each piece:
- one `tritonclient.grpc.aio` channel per client, created lazily inside the running event loop and
  reused by every call (HTTP/2 multiplexes concurrent calls; a channel per call costs a handshake);
- a per-call deadline (`timeout_s`): a stuck server costs one timeout, never a hung worker;
- bounded retries with full jitter, only for transport failures (UNAVAILABLE, DEADLINE_EXCEEDED):
  a request the server rejected (INVALID_ARGUMENT: bad shape, dtype, values) fails at once with the
  server's message (`TritonRequestError`), since sending it again cannot help; other server failures
  (model not loaded, internal error) raise `TritonModelError`, a `TritonUnavailable`;
- a circuit breaker: after `failure_threshold` consecutive failed calls the client stops calling
  (`CircuitOpen`, raised in microseconds — the worker switches to its degraded mode instead of
  waiting out timeouts per event); after `reset_timeout_s` one probe call goes through (half-open);
  its success closes the breaker, its failure opens it again;
- gRPC's reconnect backoff is capped at `max_reconnect_backoff_s` (default gRPC grows it to 120 s), so
  a server that comes back is found by the next probe, not minutes later.

Arrays go in and out as numpy without per-row Python: inputs are serialized with `tobytes` of the
whole batch, outputs are `np.frombuffer` views.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.errors import PantherError

if TYPE_CHECKING:
    from stream.settings import Settings

RETRYABLE = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"})
REJECTED = "StatusCode.INVALID_ARGUMENT"  # the request's fault: shape, dtype, values
MAX_MESSAGE_BYTES = 2**31 - 1


class TritonClientError(PantherError):
    """Base of the client's errors; `status` is the gRPC status name when the server answered."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class TritonUnavailable(TritonClientError):
    """The server did not answer in time or is unreachable (after the retries)."""


class CircuitOpen(TritonUnavailable):
    """Calls are suspended after repeated failures; the next probe is allowed at `retry_at`."""

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class TritonModelError(TritonUnavailable):
    """The server answered with a failure that is not the request's fault (model not loaded, internal
    error): not retried, but counted by the breaker, since the next request would fail the same way."""


class TritonRequestError(TritonClientError):
    """The server rejected this request (wrong shape, dtype or values): its message says why."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries per call, the first included
    base_delay_s: float = 0.02
    max_delay_s: float = 0.5

    def delay(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(max, base · 2^attempt)]."""
        return random.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


class CircuitBreaker:
    """closed → open after `failure_threshold` consecutive failures → half-open after `reset_timeout_s`.

    >>> clock = iter([0.0, 1.0, 10.0]).__next__  # opened at t=0, asked at t=1 and t=10
    >>> breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5.0, clock=clock)
    >>> breaker.record_failure(); breaker.record_failure(); breaker.state
    'open'
    >>> breaker.allow()   # t = 1: still cooling down
    False
    >>> breaker.allow(), breaker.state   # t = 10: one probe may go
    (True, 'half_open')
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._probing else "open"

    @property
    def retry_at(self) -> float:
        return (self._opened_at or 0.0) + self.reset_timeout_s

    def allow(self) -> bool:
        """May a call go out now? In half-open state only the single probe may."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() < self.retry_at:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at, self._probing = self._clock(), False

    def release_probe(self) -> None:
        """A probe that ended without telling anything about the server (e.g. a rejected request)."""
        self._probing = False


class TritonClient:
    """Async client of one Triton server (gRPC). Use from one event loop; close() when done."""

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        *,
        timeout_s: float = 2.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        max_reconnect_backoff_s: float = 1.0,
        ssl: bool = False,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.ssl = ssl
        self._max_backoff_ms = int(max_reconnect_backoff_s * 1000)
        self._client: Any = None
        self._outputs: dict[tuple[str, ...], list[Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TritonClient:
        """The client of `PANTHER_TRITON_HOST`:`PANTHER_TRITON_GRPC_PORT` with the timeout, retries and
        circuit breaker of `PANTHER_TRITON_TIMEOUT_S`, `_RETRIES`, `_BREAKER_FAILURES`, `_BREAKER_RESET_S`."""
        options: dict[str, Any] = {
            "timeout_s": settings.triton_timeout_s,
            "retry": RetryPolicy(attempts=settings.triton_retries + 1),
            "breaker": CircuitBreaker(settings.triton_breaker_failures, settings.triton_breaker_reset_s),
        } | overrides
        return cls(f"{settings.triton_host}:{settings.triton_grpc_port}", **options)

    def _grpc(self) -> Any:
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient  # deferred: grpc import costs ~0.3 s

            self._client = grpcclient.InferenceServerClient(
                self.url,
                ssl=self.ssl,
                channel_args=[
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.keepalive_time_ms", 30_000),
                    ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.initial_reconnect_backoff_ms", min(100, self._max_backoff_ms)),
                    ("grpc.min_reconnect_backoff_ms", min(100, self._max_backoff_ms)),
                    ("grpc.max_reconnect_backoff_ms", self._max_backoff_ms),
                ],
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> TritonClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ---- inference -----------------------------------------------------------------------------
    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        """One inference call: named arrays in (batch first), named arrays out.

        Raises CircuitOpen (fast) while the breaker is open, TritonUnavailable after the retries,
        TritonModelError for other server-side failures, TritonRequestError when the server rejects
        the request (not retried, not a breaker failure).
        """
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        if not self.breaker.allow():
            raise CircuitOpen(
                f"Triton at {self.url} is failing: calls suspended until the breaker's next probe "
                f"(in {max(0.0, self.breaker.retry_at - time.monotonic()):.1f}s)",
                self.breaker.retry_at,
            )
        tensors = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            datatype = np_to_triton_dtype(array.dtype)
            if datatype is None:
                raise TritonRequestError(f"input {name!r}: numpy dtype {array.dtype} has no Triton type")
            tensor = grpcclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = self._requested(outputs)
        deadline = self.timeout_s if timeout_s is None else timeout_s
        client = self._grpc()
        for attempt in range(self.retry.attempts):
            try:
                result = await client.infer(model, tensors, outputs=requested, client_timeout=deadline)
            except InferenceServerException as exc:
                status = str(exc.status())
                if status == REJECTED:
                    self.breaker.record_success()  # the server is up and answering
                    raise TritonRequestError(
                        f"Triton rejected the request to {model}: {exc.message()}", status
                    ) from None
                if status not in RETRYABLE:
                    self.breaker.record_failure()
                    raise TritonModelError(
                        f"Triton at {self.url} ({model}): {status.removeprefix('StatusCode.')}:"
                        f" {exc.message()}",
                        status,
                    ) from None
                if attempt + 1 < self.retry.attempts:
                    await asyncio.sleep(self.retry.delay(attempt))
                    continue
                self.breaker.record_failure()
                raise TritonUnavailable(
                    f"Triton at {self.url} ({model}): {status.removeprefix('StatusCode.')} after "
                    f"{self.retry.attempts} tries: {exc.message()}",
                    status,
                ) from None
            except BaseException:
                self.breaker.release_probe()
                raise
            self.breaker.record_success()
            response = result.get_response()
            return {out.name: result.as_numpy(out.name) for out in response.outputs}
        raise AssertionError("unreachable")

    def _requested(self, outputs: Sequence[str] | None) -> list[Any] | None:
        if outputs is None:
            return None
        key = tuple(outputs)
        if key not in self._outputs:
            import tritonclient.grpc as grpcclient

            self._outputs[key] = [grpcclient.InferRequestedOutput(name) for name in key]
        return self._outputs[key]

    # ---- health and metadata ---------------------------------------------------------------------
    async def server_live(self, timeout_s: float = 1.0) -> bool:
        return await self._probe(lambda c: c.is_server_live(client_timeout=timeout_s))

    async def server_ready(self, timeout_s: float = 1.0) -> bool:
        return await self._probe(lambda c: c.is_server_ready(client_timeout=timeout_s))

    async def model_ready(self, model: str, timeout_s: float = 1.0) -> bool:
        return await self._probe(lambda c: c.is_model_ready(model, client_timeout=timeout_s))

    async def health(self, models: Sequence[str] = (), timeout_s: float = 1.0) -> dict[str, Any]:
        """{"live", "ready", "breaker", "models": {name: ready}} — never raises (for /ready endpoints)."""
        live = await self.server_live(timeout_s)
        ready = live and await self.server_ready(timeout_s)
        model_states = {m: ready and await self.model_ready(m, timeout_s) for m in models}
        return {
            "url": self.url,
            "live": live,
            "ready": ready,
            "breaker": self.breaker.state,
            "models": model_states,
        }

    async def model_config(self, model: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The served config.pbtxt as a dict (inputs, outputs, parameters, max_batch_size, …)."""
        reply = await self._call(lambda c: c.get_model_config(model, as_json=True, client_timeout=timeout_s))
        return dict(reply.get("config", reply))

    async def statistics(self, model: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Triton's inference statistics for `model` (counts and cumulative ns per phase, batch stats)."""
        reply = await self._call(
            lambda c: c.get_inference_statistics(model, as_json=True, client_timeout=timeout_s)
        )
        stats = reply.get("model_stats") or [{}]
        return dict(stats[0])

    async def _probe(self, call: Callable[[Any], Any]) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(await call(self._grpc()))
        except InferenceServerException:
            return False

    async def _call(self, call: Callable[[Any], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return await call(self._grpc())
        except InferenceServerException as exc:
            kind = TritonRequestError if exc.status() == REJECTED else TritonUnavailable
            raise kind(f"Triton at {self.url}: {exc.message()}", exc.status()) from None
