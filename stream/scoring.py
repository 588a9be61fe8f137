"""`Scorer`: what the live worker and the backtest call to score a micro-batch — in-process or via Triton.

Both implementations take the same `ScoreRequest` and return the same `ScoreResult` (numbers equal to
1e-5, tested), so the worker's degraded mode can swap one for the other. The arrays are what
`models.fraud.live.build_request` builds (`ScoreRequest.from_arrays(**build_request(...))`) and
`ScoreResult.to_dict()` is shaped like `FraudScorer.score`'s answer.

- `InProcessScorer`: the artefact loaded in this process (`triton_repo.runner.ArtefactRunner`, which
  calls `models.fraud.scorer.FraudScorer`); torch runs in one worker thread, so the event loop keeps
  serving Kafka while a batch is scored.
- `TritonScorer`: `panther_sprm` / `panther_user_encoder` on a Triton server through
  `stream.triton_client.TritonClient` (timeouts, retries, circuit breaker). It reads the served
  config once (window length L, inputs, outputs, model_version) and pads windows to L, so every
  request has the same shape and Triton's dynamic batcher can merge them.

Errors: `RequestRejected` (this request cannot be scored: dead-letter it), `ScorerUnavailable` (the
scorer cannot answer now: back off or degrade). Both are PantherErrors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stream.errors import PantherError
from stream.triton_client import TritonClient, TritonRequestError, TritonUnavailable

SPRM = "panther_sprm"  # the names triton_repo.schema declares (tested to agree)
USER_ENCODER = "panther_user_encoder"
ROW_OUTPUTS = ("p_fraud", "logit", "deviation", "deviation_log", "surprise", "logp_new")


class ScoringError(PantherError):
    """Base of scorer failures."""


class RequestRejected(ScoringError):
    """The request cannot be scored (shape, dtype or values out of range); the message says which."""


class ScorerUnavailable(ScoringError):
    """The scorer cannot answer now (Triton down, slow, or its breaker open); try later or degrade."""


@dataclass(frozen=True)
class ScoreRequest:
    """B transactions to score, one row each (B ≥ 1)."""

    tokens: np.ndarray  # (B, W) int64 — user windows right-padded with PAD=0, W ≤ the model's L
    lengths: np.ndarray  # (B,) int64 — real tokens per row (0 = the user's first transaction)
    profile: np.ndarray  # (B, P) int64 — profile ids (the artefact's ProfileSchema)
    new_token: np.ndarray  # (B,) int64 — token of the transaction being scored
    txn_features: np.ndarray  # (B, F) float32 — `models.fraud.features.transaction_features` rows
    prob_stats: np.ndarray  # (B, 5) float64 — `UserState.prob_stats()` rows (n, μ_P, σ_P, μ_logP, σ_logP)
    user_embedding: np.ndarray | None = None  # (B, d) float32 — cached e_u; computed from profile if None

    @classmethod
    def from_arrays(cls, **arrays: Any) -> ScoreRequest:
        """From `build_request(...)`-style keyword arrays; casts dtypes, ignores unknown keys."""
        dtypes = {
            "tokens": np.int64,
            "lengths": np.int64,
            "profile": np.int64,
            "new_token": np.int64,
            "txn_features": np.float32,
            "prob_stats": np.float64,
            "user_embedding": np.float32,
        }
        values = {
            name: np.ascontiguousarray(arrays[name], dtype=dtype)
            for name, dtype in dtypes.items()
            if arrays.get(name) is not None
        }
        return cls(**values)

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays (None fields left out)."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class ScoreResult:
    """Scores of a ScoreRequest's B rows. Fraud outputs are None when the model has no fraud head."""

    logp_new: np.ndarray  # (B,) float32 — log P_u(x) of the new token
    surprise: np.ndarray  # (B,) float32 — −log P_u(x)
    seq_embedding: np.ndarray  # (B, d) float32 — the window's last hidden state
    user_embedding: np.ndarray  # (B, d) float32 — e_u used
    model_version: str
    p_fraud: np.ndarray | None = None  # (B,) float32 in [0, 1]
    logit: np.ndarray | None = None  # (B,) float32
    deviation: np.ndarray | None = None  # (B,) float32 — Δ
    deviation_log: np.ndarray | None = None  # (B,) float32 — Δ on log P
    reasons: np.ndarray | None = None  # (B, S) float32 — contributions in `signal_names` order
    signal_names: tuple[str, ...] = ()

    @classmethod
    def from_outputs(
        cls, outputs: Mapping[str, np.ndarray], model_version: str, signal_names: tuple[str, ...]
    ) -> ScoreResult:
        """From named model outputs (per-row scalars as (B,) or (B, 1))."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in outputs:
                array = np.asarray(outputs[f.name], dtype=np.float32)
                values[f.name] = array.reshape(-1) if f.name in ROW_OUTPUTS else array
        return cls(**values, model_version=model_version, signal_names=signal_names)

    def to_dict(self) -> dict[str, np.ndarray]:
        """`FraudScorer.score`-shaped dict (present outputs only)."""
        return {f.name: v for f in fields(self) if isinstance(v := getattr(self, f.name), np.ndarray)}


@runtime_checkable
class Scorer(Protocol):
    """What the worker and the backtest need from a scorer."""

    @property
    def model_version(self) -> str: ...

    @property
    def max_len(self) -> int: ...  # L: the longest window the model reads

    @property
    def signal_names(self) -> tuple[str, ...]: ...

    async def score(self, request: ScoreRequest) -> ScoreResult: ...

    async def embed_users(self, profile: np.ndarray) -> np.ndarray: ...  # (B, P) int64 → (B, d) float32

    async def close(self) -> None: ...


class InProcessScorer:
    """The artefact in this process; torch runs on one dedicated thread (the loop is never blocked)."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panther-scorer")

    @classmethod
    def from_artifact(cls, model_dir: str | Path, device: str = "cpu", threads: int = 0) -> InProcessScorer:
        from triton_repo.runner import ArtefactRunner, set_torch_threads  # deferred: imports torch

        set_torch_threads(threads)
        return cls(ArtefactRunner.from_artifact(model_dir, device))

    @property
    def info(self) -> Any:
        """The artefact's `triton_repo.schema.ArtefactInfo` (vocabulary, L, d, profile, features)."""
        return self._runner.info

    @property
    def model_version(self) -> str:
        return str(self._runner.info.model_version)

    @property
    def max_len(self) -> int:
        return int(self._runner.info.max_len)

    @property
    def signal_names(self) -> tuple[str, ...]:
        return tuple(self._runner.info.signal_names)

    def score_sync(self, request: ScoreRequest, reasons: bool = True) -> ScoreResult:
        """The same as `score`, on the caller's thread (offline loops, `models.fraud.live.score_events`).

        `reasons=False` skips the per-signal contributions (integrated gradients, ~45% of the model's
        time): the engine asks for them only for the rows that alert.
        """
        from triton_repo.runner import InvalidRequest

        arrays = request.arrays()
        try:
            self._runner.validate(arrays)
        except InvalidRequest as exc:
            raise RequestRejected(f"in-process scorer: {exc}") from None
        outputs = self._runner.score(arrays, reasons=reasons)
        return ScoreResult.from_outputs(outputs, self.model_version, self.signal_names)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.score_sync, request)

    async def embed_users(self, profile: np.ndarray) -> np.ndarray:
        from triton_repo.runner import InvalidRequest

        profile = np.ascontiguousarray(profile, dtype=np.int64)
        try:
            self._runner.validate_profile(profile)
        except InvalidRequest as exc:
            raise RequestRejected(f"in-process scorer: {exc}") from None
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._runner.embed_users, profile)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class ServedModel:
    """What TritonScorer learns from a served config.pbtxt."""

    name: str
    inputs: dict[str, tuple[int, ...]]  # name → dims without batch
    outputs: tuple[str, ...]
    max_batch_size: int
    parameters: dict[str, str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServedModel:
        return cls(
            name=str(config["name"]),
            inputs={i["name"]: tuple(int(d) for d in i["dims"]) for i in config.get("input", [])},
            outputs=tuple(o["name"] for o in config.get("output", [])),
            max_batch_size=int(config.get("max_batch_size", 0)),
            parameters={
                k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()
            },
        )


class TritonScorer:
    """`panther_sprm` and `panther_user_encoder` on Triton. Build with `await TritonScorer.connect(url)`."""

    def __init__(self, client: TritonClient, sprm: ServedModel, encoder: ServedModel | None) -> None:
        self.client = client
        self.sprm = sprm
        self.encoder = encoder
        self._max_len = sprm.inputs["tokens"][0]
        self._signals = tuple(json.loads(sprm.parameters.get("signal_names", "[]") or "[]"))

    @classmethod
    async def connect(
        cls,
        url: str = "127.0.0.1:8001",
        client: TritonClient | None = None,
        *,
        user_encoder: bool = True,
        **client_options: Any,
    ) -> TritonScorer:
        """Read both served configs (raises ScorerUnavailable if the server or a model is not there)."""
        client = client or TritonClient(url, **client_options)
        try:
            sprm = ServedModel.from_config(await client.model_config(SPRM))
            encoder = (
                ServedModel.from_config(await client.model_config(USER_ENCODER)) if user_encoder else None
            )
        except (TritonUnavailable, TritonRequestError) as exc:
            raise ScorerUnavailable(f"cannot read the served models at {client.url}: {exc}") from None
        return cls(client, sprm, encoder)

    @property
    def model_version(self) -> str:
        return self.sprm.parameters.get("model_version", "unknown")

    @property
    def max_len(self) -> int:
        return self._max_len

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self._signals

    def _inputs(self, request: ScoreRequest) -> dict[str, np.ndarray]:
        b, width = request.tokens.shape
        if width > self._max_len:
            raise RequestRejected(f"tokens window {width} is longer than the model's L={self._max_len}")
        tokens = request.tokens
        if width < self._max_len:  # same shape for every request: the dynamic batcher can merge them
            tokens = np.zeros((b, self._max_len), dtype=np.int64)
            tokens[:, :width] = request.tokens
        arrays = request.arrays() | {"tokens": tokens}
        arrays["lengths"] = arrays["lengths"].reshape(b, 1)
        arrays["new_token"] = arrays["new_token"].reshape(b, 1)
        return {name: value for name, value in arrays.items() if name in self.sprm.inputs}

    async def score(self, request: ScoreRequest) -> ScoreResult:
        inputs = self._inputs(request)
        step = self.sprm.max_batch_size or request.size
        parts = await asyncio.gather(
            *[
                self._call(self.sprm, {k: v[i : i + step] for k, v in inputs.items()})
                for i in range(0, request.size, step)
            ]
        )
        outputs = (
            parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        )
        _check_rows(outputs, request.size, self.sprm.name)
        return ScoreResult.from_outputs(outputs, self.model_version, self._signals)

    async def embed_users(self, profile: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            raise ScorerUnavailable("this TritonScorer was connected without the user encoder")
        profile = np.ascontiguousarray(profile, dtype=np.int64)
        step = self.encoder.max_batch_size or len(profile)
        parts = await asyncio.gather(
            *[
                self._call(self.encoder, {"profile": profile[i : i + step]})
                for i in range(0, len(profile), step)
            ]
        )
        out = (
            np.concatenate([p["user_embedding"] for p in parts])
            if len(parts) > 1
            else parts[0]["user_embedding"]
        )
        _check_rows({"user_embedding": out}, len(profile), self.encoder.name)
        return out

    async def _call(self, model: ServedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return await self.client.infer(model.name, inputs, model.outputs)
        except TritonRequestError as exc:
            raise RequestRejected(str(exc)) from None
        except TritonUnavailable as exc:
            raise ScorerUnavailable(str(exc)) from None

    async def close(self) -> None:
        await self.client.close()


def blocking_score_fn(
    scorer: Scorer, loop: asyncio.AbstractEventLoop
) -> Callable[..., dict[str, np.ndarray]]:
    """A synchronous `score_fn(**arrays, reasons=...)` for `models.fraud.live.score_events`, run in a
    worker thread (`await asyncio.to_thread(score_events, blocking_score_fn(scorer, loop), ...)`): each
    call is scored on `loop` by the async scorer, so one per-event loop (rounds, duplicates, state
    updates) serves the live worker, the backtest and offline evaluation alike. Never call it on `loop`'s
    own thread (it would wait on itself)."""

    def score_fn(**arrays: Any) -> dict[str, np.ndarray]:
        request = ScoreRequest.from_arrays(**arrays)
        return asyncio.run_coroutine_threadsafe(scorer.score(request), loop).result().to_dict()

    return score_fn


def _check_rows(outputs: Mapping[str, np.ndarray], rows: int, model: str) -> None:
    """Every output must have one row per request row: an EMPTY tensor means a broken stub (numpy ≥ 2)."""
    for name, value in outputs.items():
        if value.shape[:1] != (rows,) or value.size == 0:
            raise ScoringError(
                f"{model} returned {name} with shape {value.shape} for {rows} rows: an empty output means "
                "the python backend's interpreter has numpy ≥ 2 (install numpy<2 there)"
            )
