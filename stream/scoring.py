"""`Scorer`: what the live worker and the backtest call to score a micro-batch — in-process or via Triton.

Three calls (both implementations give the same numbers, to 1e-5, tested, so the worker's degraded mode
can swap one for the other):
- `score_state(StateScoreRequest)` → `StateScoreResult`: the fusion head from each user's cached
  encoder state (`models.fraud.cached_scoring`), on the critical path; Triton model panther_score;
- `refresh(RefreshRequest)` → `RefreshResult`: the encoder over planned window rows
  (`models.fraud.window_plan`), batched, mostly off the critical path; panther_refresh;
- `score(ScoreRequest)` → `ScoreResult`: the full-window reference (every window re-encoded),
  `models.fraud.live.build_request`'s arrays; panther_sprm, served only when exported `--reference`.

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
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from stream.errors import PantherError
from stream.triton_client import TritonClient, TritonRequestError, TritonUnavailable

if TYPE_CHECKING:
    from stream.settings import Settings

SPRM = "panther_sprm"  # the names triton_repo.schema declares (tested to agree)
USER_ENCODER = "panther_user_encoder"
REFRESH = "panther_refresh"
SCORE = "panther_score"
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
        return cls(**_cast(dtypes, arrays))

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays (None fields left out)."""
        return _present(self)


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


@dataclass(frozen=True)
class RefreshRequest:
    """R planned encoder rows (`models.fraud.window_plan.WindowPlan`), states wanted at K positions each."""

    tokens: np.ndarray  # (R, W) int64 — right-padded windows, W ≤ L
    lengths: np.ndarray  # (R,) int64 — real tokens per row, ≥ 1
    profile: np.ndarray  # (R, P) int64
    positions: np.ndarray  # (R, K) int64 — positions whose states are wanted, −1 = none

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RefreshResult:
    hidden: np.ndarray  # (R, K, d) float32 — the frozen encoder's states
    lse: np.ndarray  # (R, K) float32 — the next-token log-normalizer of each state
    sequence: np.ndarray | None = None  # (R, K, S) float32 — the head's own sequence input, when S > 0

    def to_dict(self) -> dict[str, np.ndarray]:
        return _present(self)


@dataclass(frozen=True)
class StateScoreRequest:
    """B transactions scored from their users' cached state (`models.fraud.cached_scoring`)."""

    txn_features: np.ndarray  # (B, F) float32
    prob_stats: np.ndarray  # (B, 5) float64 — before the transaction
    logp_new: np.ndarray  # (B,) float32 — log P_u(x) from the cached h_u and normalizer
    hidden: np.ndarray  # (B, d) float32 — the cached h_u
    profile: np.ndarray  # (B, P) int64
    sequence: np.ndarray | None = None  # (B, S) float32 — the head's own sequence input, when S > 0
    user_embedding: np.ndarray | None = None  # (B, d) float32 — cached e_u; from the profile if None
    reason_threshold: np.ndarray | None = None  # (B,) float32 — reasons for rows with p_fraud ≥ it

    @classmethod
    def from_arrays(cls, **arrays: Any) -> StateScoreRequest:
        dtypes = {f.name: np.float32 for f in fields(cls)} | {"prob_stats": np.float64, "profile": np.int64}
        return cls(**_cast(dtypes, arrays))

    @property
    def size(self) -> int:
        return int(self.txn_features.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return _present(self)


@dataclass(frozen=True)
class StateScoreResult:
    p_fraud: np.ndarray  # (B,) float32
    logit: np.ndarray  # (B,) float32
    deviation: np.ndarray  # (B,) float32 — Δ on P
    deviation_log: np.ndarray  # (B,) float32 — Δ on log P
    surprise: np.ndarray  # (B,) float32 — −log P_u(x)
    reasons: np.ndarray  # (B, S) float32 — zeros for rows below their reason threshold

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, np.ndarray]) -> StateScoreResult:
        return cls(**{f.name: np.asarray(outputs[f.name], dtype=np.float32).reshape(-1)
                      if f.name != "reasons" else np.asarray(outputs[f.name], dtype=np.float32)
                      for f in fields(cls)})  # fmt: skip

    def to_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@runtime_checkable
class Scorer(Protocol):
    """What the worker and the backtest need from a scorer."""

    @property
    def model_version(self) -> str: ...

    @property
    def max_len(self) -> int: ...  # L: the longest window the model reads

    @property
    def signal_names(self) -> tuple[str, ...]: ...

    @property
    def sequence_dim(self) -> int: ...  # S: the head's own sequence input in the cached state

    async def score(self, request: ScoreRequest) -> ScoreResult: ...  # the full-window reference

    async def refresh(self, request: RefreshRequest) -> RefreshResult: ...

    async def score_state(self, request: StateScoreRequest) -> StateScoreResult: ...

    async def embed_users(self, profile: np.ndarray) -> np.ndarray: ...  # (B, P) int64 → (B, d) float32

    async def close(self) -> None: ...


class InProcessScorer:
    """The artefact in this process; torch runs on one dedicated thread (the loop is never blocked)."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panther-scorer")

    @classmethod
    def from_artifact(cls, model_dir: str | Path, device: str = "cpu", threads: int = 0,
                      torchscript: bool = True, retain_mb: int = 0) -> InProcessScorer:  # fmt: skip
        """`threads`: torch's and BLAS's (`set_compute_threads`); `retain_mb`: freed memory glibc keeps
        for the next call's tensors (`retain_freed_memory`); 0 keeps the defaults of each."""
        from triton_repo.runner import ArtefactRunner, retain_freed_memory, set_compute_threads  # torch

        set_compute_threads(threads)
        retain_freed_memory(retain_mb)
        return cls(ArtefactRunner.from_artifact(model_dir, device, torchscript=torchscript))

    @classmethod
    def from_settings(cls, model_dir: str | Path, settings: Settings) -> InProcessScorer:
        """As the worker, the backtest and the stream bench run it: threads, TorchScript and memory
        from `PANTHER_TORCH_THREADS`, `PANTHER_SCORER_TORCHSCRIPT`, `PANTHER_MALLOC_RETAIN_MB`."""
        return cls.from_artifact(model_dir, threads=settings.torch_threads,
                                 torchscript=settings.scorer_torchscript,
                                 retain_mb=settings.malloc_retain_mb)  # fmt: skip

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

    @property
    def sequence_dim(self) -> int:
        return int(self._runner.info.sequence_dim)

    def refresh_sync(self, request: RefreshRequest) -> RefreshResult:
        """`refresh` on the caller's thread (the engine's worker thread)."""
        arrays = request.arrays()
        self._checked(self._runner.validate_refresh, arrays)
        return RefreshResult(**self._runner.refresh(arrays))

    def score_state_sync(self, request: StateScoreRequest) -> StateScoreResult:
        """`score_state` on the caller's thread."""
        arrays = request.arrays()
        self._checked(self._runner.validate_state_score, arrays)
        return StateScoreResult.from_outputs(self._runner.score_state(arrays))

    @staticmethod
    def _checked(validate: Callable[[Any], None], arrays: dict[str, np.ndarray]) -> None:
        from triton_repo.runner import InvalidRequest

        try:
            validate(arrays)
        except InvalidRequest as exc:
            raise RequestRejected(f"in-process scorer: {exc}") from None

    async def refresh(self, request: RefreshRequest) -> RefreshResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.refresh_sync, request)

    async def score_state(self, request: StateScoreRequest) -> StateScoreResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.score_state_sync, request)

    def score_sync(self, request: ScoreRequest, reasons: bool = True) -> ScoreResult:
        """The same as `score`, on the caller's thread (offline loops, `models.fraud.live.score_events`).

        `reasons=False` skips the per-signal contributions (integrated gradients, ~45% of the model's
        time): the engine asks for them only for the rows that alert.
        """
        arrays = request.arrays()
        self._checked(self._runner.validate, arrays)
        outputs = self._runner.score(arrays, reasons=reasons)
        return ScoreResult.from_outputs(outputs, self.model_version, self.signal_names)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.score_sync, request)

    async def embed_users(self, profile: np.ndarray) -> np.ndarray:
        profile = np.ascontiguousarray(profile, dtype=np.int64)
        self._checked(self._runner.validate_profile, profile)  # type: ignore[arg-type]
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
    """The served models on Triton. Build with `await TritonScorer.connect(url)`.

    panther_score, panther_refresh and panther_user_encoder by default; panther_sprm (the full-window
    reference) with `reference=True`. Every model it connects to must serve the same artefact (model
    version and fraud head), which `connect` checks.
    """

    def __init__(self, client: TritonClient, models: Mapping[str, ServedModel]) -> None:
        self.client = client
        self.models = dict(models)
        anchor = self.models.get(REFRESH) or self.models[SPRM]
        self._max_len = anchor.inputs["tokens"][0]
        params = anchor.parameters
        self._signals = tuple(json.loads(params.get("signal_names", "[]") or "[]"))
        self._sequence_dim = int(params.get("sequence_dim", "0") or 0)

    @property
    def encoder(self) -> ServedModel | None:
        return self.models.get(USER_ENCODER)

    @classmethod
    async def connect(
        cls,
        url: str = "127.0.0.1:8001",
        client: TritonClient | None = None,
        *,
        user_encoder: bool = True,
        reference: bool = False,
        cached: bool = True,
        **client_options: Any,
    ) -> TritonScorer:
        """Read the served configs (ScorerUnavailable if the server or a model is not there, or the
        models serve different artefacts)."""
        client = client or TritonClient(url, **client_options)
        names = [*((SCORE, REFRESH) if cached else ()), *((USER_ENCODER,) if user_encoder else ()),
                 *((SPRM,) if reference else ())]  # fmt: skip
        try:
            models = {name: ServedModel.from_config(await client.model_config(name)) for name in names}
        except (TritonUnavailable, TritonRequestError) as exc:
            raise ScorerUnavailable(f"cannot read the served models at {client.url}: {exc}") from None
        served = {(m.parameters.get("model_version"), m.parameters.get("head_sha256", ""))
                  for m in models.values()}  # fmt: skip
        if len(served) > 1:
            raise ScorerUnavailable(f"the models at {client.url} serve different artefacts {sorted(served)}: "
                                    "export one artefact into every model (panther export)")  # fmt: skip
        return cls(client, models)

    @property
    def model_version(self) -> str:
        return next(iter(self.models.values())).parameters.get("model_version", "unknown")

    @property
    def max_len(self) -> int:
        return self._max_len

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self._signals

    @property
    def sequence_dim(self) -> int:
        return self._sequence_dim

    @property
    def head_sha256(self) -> str:
        return next(iter(self.models.values())).parameters.get("head_sha256", "")

    def _model(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise ScorerUnavailable(f"this TritonScorer was connected without {name}")
        return model

    def _padded_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """(B, W) → (B, L): the same shape for every request, so the dynamic batcher can merge them."""
        b, width = tokens.shape
        if width > self._max_len:
            raise RequestRejected(f"tokens window {width} is longer than the model's L={self._max_len}")
        if width == self._max_len:
            return tokens
        padded = np.zeros((b, self._max_len), dtype=np.int64)
        padded[:, :width] = tokens
        return padded

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """The full-window reference (panther_sprm)."""
        model = self._model(SPRM)
        b = request.size
        arrays = request.arrays() | {"tokens": self._padded_tokens(request.tokens)}
        arrays["lengths"] = arrays["lengths"].reshape(b, 1)
        arrays["new_token"] = arrays["new_token"].reshape(b, 1)
        outputs = await self._rows(model, {k: v for k, v in arrays.items() if k in model.inputs}, b)
        return ScoreResult.from_outputs(outputs, self.model_version, self._signals)

    async def refresh(self, request: RefreshRequest) -> RefreshResult:
        model = self._model(REFRESH)
        r, k = request.positions.shape
        width = 1 << max(k - 1, 0).bit_length()  # K padded to a power of two: fewer distinct shapes
        positions = np.full((r, width), -1, dtype=np.int64)
        positions[:, :k] = request.positions
        arrays = {"tokens": self._padded_tokens(request.tokens), "lengths": request.lengths.reshape(r, 1),
                  "profile": request.profile, "positions": positions}  # fmt: skip
        out = await self._rows(model, arrays, r)
        sequence = out.get("sequence")
        return RefreshResult(out["hidden"][:, :k], out["lse"][:, :k],
                             None if sequence is None else sequence[:, :k])  # fmt: skip

    async def score_state(self, request: StateScoreRequest) -> StateScoreResult:
        model = self._model(SCORE)
        b = request.size
        arrays = request.arrays()
        arrays["logp_new"] = arrays["logp_new"].reshape(b, 1)
        if "reason_threshold" in arrays:
            arrays["reason_threshold"] = arrays["reason_threshold"].reshape(b, 1)
        outputs = await self._rows(model, {k: v for k, v in arrays.items() if k in model.inputs}, b)
        return StateScoreResult.from_outputs(outputs)

    async def embed_users(self, profile: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            raise ScorerUnavailable("this TritonScorer was connected without the user encoder")
        profile = np.ascontiguousarray(profile, dtype=np.int64)
        return (await self._rows(self.encoder, {"profile": profile}, len(profile)))["user_embedding"]

    async def _rows(
        self, model: ServedModel, inputs: dict[str, np.ndarray], rows: int
    ) -> dict[str, np.ndarray]:
        """One call per `max_batch_size` rows, concurrently; outputs concatenated and checked."""
        step = model.max_batch_size or rows
        chunks = [{k: v[i : i + step] for k, v in inputs.items()} for i in range(0, rows, step)]
        parts = await asyncio.gather(*[self._call(model, chunk) for chunk in chunks])
        outputs = parts[0] if len(parts) == 1 else {
            k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        _check_rows(outputs, rows, model.name)
        return outputs

    async def _call(self, model: ServedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return await self.client.infer(model.name, inputs, model.outputs)
        except TritonRequestError as exc:
            raise RequestRejected(str(exc)) from None
        except TritonUnavailable as exc:
            raise ScorerUnavailable(str(exc)) from None

    async def close(self) -> None:
        await self.client.close()


def blocking_call(
    call: Callable[[Any], Awaitable[Any]], loop: asyncio.AbstractEventLoop
) -> Callable[[Any], Any]:
    """A synchronous form of an async scorer method, for a worker thread: each call runs on `loop`
    (never call it on `loop`'s own thread: it would wait on itself)."""

    def run(request: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(call(request), loop).result()

    return run


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


def _cast(dtypes: Mapping[str, type[np.generic]], arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The given (non-None) arrays as contiguous arrays of their field's dtype; unknown keys ignored."""
    return {name: np.ascontiguousarray(arrays[name], dtype=dtype) for name, dtype in dtypes.items()
            if arrays.get(name) is not None}  # fmt: skip


def _present(record: Any) -> dict[str, np.ndarray]:
    """A request/result dataclass's fields that are set, by name."""
    return {f.name: v for f in fields(record) if (v := getattr(record, f.name)) is not None}


def _check_rows(outputs: Mapping[str, np.ndarray], rows: int, model: str) -> None:
    """Every output must have one row per request row: an EMPTY tensor means a broken stub (numpy ≥ 2)."""
    for name, value in outputs.items():
        if value.shape[:1] != (rows,) or value.size == 0:
            raise ScoringError(
                f"{model} returned {name} with shape {value.shape} for {rows} rows: an empty output means "
                "the python backend's interpreter has numpy ≥ 2 (install numpy<2 there)"
            )
