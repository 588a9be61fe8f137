"""`ArtefactRunner`: named numpy arrays in, named numpy arrays out, for one loaded model artefact.

Why one runner for both paths: the Triton python backend (`triton_repo.backend`) and the in-process
scorer (`stream.scoring.InProcessScorer`) call the very same `score()`, so "Triton equals in-process"
reduces to "the transport does not change the numbers" — the parity test checks exactly that.

With a fraud head (`fraud_head.safetensors`, after `panther fit-fraud`) `score()` is
`models.fraud.scorer.FraudScorer.score`. Without one the runner serves what the pretrained encoder
alone gives — log P_u(x), surprise, the window embedding and e_u — through the same models function
FraudScorer uses (`models.fraud.encoder_pass.window_outputs`), and no fraud probability.

Input names and shapes are those of `triton_repo.schema` with per-row scalars either (B,) or (B, 1).
`refresh` and `score_state` are the cached path's two halves (`panther_refresh`, `panther_score`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.artifact import Artifact, load_artifact
from models.fraud.encoder_pass import next_token_lse, position_hidden, window_outputs
from models.fraud.head_io import HEAD_JSON, HEAD_NAME, model_temperature
from models.fraud.scorer import FraudScorer
from models.panther import PantherModel
from triton_repo.schema import N_PROB_STATS, ArtefactInfo

PRECISIONS = ("fp32", "bf16")


class InvalidRequest(ValueError):
    """A request's values are out of range for this model (the message says which input and why)."""


def set_compute_threads(threads: int) -> None:
    """Intra-op threads of torch and of numpy's BLAS (the head in numpy) for this process; 0 keeps
    their defaults.

    On a small shared CPU the defaults (one thread per core) oversubscribe: measured here, a B=256
    score took 820 ms with 2 torch threads under load and 8 ms with 1; the head in numpy, 10 rows,
    8 ms a call with OpenBLAS's 2 threads beside a busy process and 0.26 ms with 1.
    """
    if threads > 0:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads, user_api="blas")  # process-wide, like torch's setting


MALLOC_RETAIN_MB = 512  # the default of `retain_freed_memory` (PANTHER_MALLOC_RETAIN_MB; Triton's)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the largest M_MMAP_THRESHOLD glibc accepts on 64-bit


def retain_freed_memory(megabytes: int) -> bool:
    """Let glibc's malloc keep up to `megabytes` of freed memory for reuse; 0 keeps its defaults.
    → whether the setting took (False off glibc, e.g. musl or macOS: nothing to tune there).

    Why: torch gives every op a new output on CPU, and glibc returns large freed blocks to the OS
    (blocks over its mmap threshold, and a heap top over its trim threshold), so the next call's
    tensors fault their pages in afresh, a cost per page that a virtual machine makes dearer. When it
    does depends on the process's history (glibc moves its thresholds with what was freed before).
    Measured here (`python bench/refresh_call.py`, docs/BENCHMARKS.md): a PANTHER-size refresh of 64
    windows 3,424 → 145 page faults and 57.5 → 52.6 ms a call; the demo model's within the noise
    below 250 windows. The cost: up to `megabytes` of freed memory held by the process.
    """
    if megabytes <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, min(megabytes, 2047) * 1024 * 1024))


def _rows(value: Any, dtype: type[np.generic]) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    return array.reshape(-1) if array.ndim == 2 and array.shape[1] == 1 else array


class ArtefactRunner:
    """One artefact on one device; thread-compatible (one caller at a time)."""

    def __init__(
        self,
        artifact: Artifact,
        encoder: PantherModel,
        scorer: FraudScorer | None,
        device: torch.device,
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.artifact = artifact
        self.encoder = encoder
        self.scorer = scorer
        self.device = device
        self.precision = precision
        self.temperature = model_temperature(artifact)
        self.info = self._info()

    @classmethod
    def from_artifact(
        cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32",
        torchscript: bool = True,
    ) -> ArtefactRunner:
        """Load (and verify) the artefact once; the fraud head is used when the artefact has one.
        `torchscript`: the serving fast paths where exact (`FraudScorer.trace_for_serving`: the refresh
        through frozen graphs, the head in numpy on a CPU)."""
        device = torch.device(device)
        has_head = (Path(path) / f"{HEAD_NAME}.safetensors").is_file() and (Path(path) / HEAD_JSON).is_file()
        if has_head:
            scorer = FraudScorer.from_artifact(path, device)
            if torchscript:
                scorer.trace_for_serving(precision)
            assert scorer.artifact is not None
            return cls(scorer.artifact, scorer.encoder, scorer, device, precision)
        artifact = load_artifact(path)
        encoder = PantherModel.from_artifact(artifact).to(device).eval()
        return cls(artifact, encoder, None, device, precision)

    def _info(self) -> ArtefactInfo:
        config = self.encoder.config
        tokenizer = self.artifact.config.get("tokenizer") or {}
        return ArtefactInfo(
            model_version=self.artifact.model_version,
            tokenizer_hash=str(tokenizer.get("content_hash", "")),
            tokenizer_version=str(tokenizer.get("version", "")),
            vocab_size=int(config.vocab_size),
            max_len=int(config.max_len),
            d_model=int(config.d_model),
            profile_cardinalities=tuple(int(c) for c in config.profile_cardinalities),
            n_features=self.scorer.n_features if self.scorer is not None else 0,
            signal_names=tuple(self.scorer.signal_names) if self.scorer is not None else (),
            sequence_dim=self.scorer.sequence_dim if self.scorer is not None else 0,
            head_sha256=self._head_sha256(),
        )

    def _head_sha256(self) -> str:
        path = self.artifact.path / HEAD_JSON
        if self.scorer is None or not path.is_file():
            return ""
        return str(json.loads(path.read_text("utf-8")).get("weights_sha256", ""))

    # ---- checks ---------------------------------------------------------------------------------
    def validate(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Raise InvalidRequest when a request cannot be scored (ids out of range, wrong widths, NaN).

        Triton already enforces dtypes and declared dims; this catches values, which would otherwise
        fail the whole batched forward (an embedding index error) for every request in it.
        """
        info = self.info
        tokens, _ = self._windows(arrays, min_length=0)
        b = tokens.shape[0]
        new_token = _rows(arrays["new_token"], np.int64)
        profile = np.asarray(arrays["profile"])
        _check(new_token.shape == (b,), f"new_token must be ({b},)")
        _check(profile.shape == (b, info.n_profile), f"profile must be ({b}, {info.n_profile})")
        _check(bool(((new_token >= 0) & (new_token < info.vocab_size)).all()), "new_token out of [0, vocab)")
        self.validate_profile(profile)
        if self.scorer is not None:
            features = np.asarray(arrays["txn_features"])
            stats = np.asarray(arrays["prob_stats"])
            _check(features.shape == (b, info.n_features), f"txn_features must be ({b}, {info.n_features})")
            _check(stats.shape == (b, N_PROB_STATS), f"prob_stats must be ({b}, {N_PROB_STATS})")
            _check(bool(np.isfinite(features).all()), "txn_features has NaN/inf")
            _check(bool(np.isfinite(stats).all()), "prob_stats has NaN/inf")
        user = arrays.get("user_embedding")
        if user is not None:
            user = np.asarray(user)
            _check(user.shape == (b, info.d_model), f"user_embedding must be ({b}, {info.d_model})")
            _check(bool(np.isfinite(user).all()), "user_embedding has NaN/inf")

    def validate_refresh(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Rows of `models.fraud.window_plan`: tokens (R, ≤L), lengths (R,), profile, positions (R, K)."""
        tokens, lengths = self._windows(arrays, min_length=1)
        r = tokens.shape[0]
        positions = np.asarray(arrays["positions"])
        _check(positions.ndim == 2 and positions.shape[0] == r, f"positions must be ({r}, K)")
        inside = (positions >= -1) & (positions < lengths[:, None])
        _check(bool(inside.all()), "positions out of [-1, length)")
        self.validate_profile(np.asarray(arrays["profile"]))

    def _windows(self, arrays: Mapping[str, np.ndarray], min_length: int) -> tuple[np.ndarray, np.ndarray]:
        """tokens (B, ≤L) with ids in the vocabulary and lengths (B,) in [min_length, width]."""
        tokens = np.asarray(arrays["tokens"])
        if tokens.ndim != 2 or tokens.shape[1] > self.info.max_len:
            raise InvalidRequest(f"tokens must be (B, ≤{self.info.max_len}), got {tokens.shape}")
        lengths = _rows(arrays["lengths"], np.int64)
        _check(lengths.shape == (tokens.shape[0],), f"lengths must be ({tokens.shape[0]},)")
        _check(bool(((tokens >= 0) & (tokens < self.info.vocab_size)).all()), "tokens out of [0, vocab)")
        inside = (lengths >= min_length) & (lengths <= tokens.shape[1])
        _check(bool(inside.all()), f"lengths out of [{min_length}, L]")
        return tokens, lengths

    def validate_state_score(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The head's inputs from cached state (see `models.fraud.scorer`)."""
        info = self.info
        _check(self.scorer is not None, "this artefact has no fraud head: nothing to score")
        features = np.asarray(arrays["txn_features"])
        b = features.shape[0] if features.ndim == 2 else -1
        _check(features.shape == (b, info.n_features), f"txn_features must be (B, {info.n_features})")
        shapes = {"prob_stats": (b, N_PROB_STATS), "hidden": (b, info.d_model),
                  "profile": (b, info.n_profile)}  # fmt: skip
        if info.sequence_dim:
            shapes["sequence"] = (b, info.sequence_dim)
        if arrays.get("user_embedding") is not None:
            shapes["user_embedding"] = (b, info.d_model)
        for name, shape in shapes.items():
            _check(name in arrays and np.asarray(arrays[name]).shape == shape, f"{name} must be {shape}")
        for name in ("logp_new", "reason_threshold"):
            if arrays.get(name) is not None or name == "logp_new":
                _check(_rows(arrays[name], np.float32).shape == (b,), f"{name} must be ({b},)")
        for name in ("txn_features", "prob_stats", "hidden", "sequence", "user_embedding"):
            if arrays.get(name) is not None:
                _check(bool(np.isfinite(np.asarray(arrays[name])).all()), f"{name} has NaN/inf")
        _check(not bool(np.isnan(_rows(arrays["logp_new"], np.float32)).any()), "logp_new has NaN")
        self.validate_profile(np.asarray(arrays["profile"]))

    def validate_profile(self, profile: np.ndarray) -> None:
        cards = np.asarray(self.info.profile_cardinalities, dtype=np.int64)
        _check(profile.ndim == 2 and profile.shape[1] == len(cards), f"profile must be (B, {len(cards)})")
        _check(bool(((profile >= 0) & (profile < cards)).all()), "profile ids out of range for the schema")

    # ---- inference ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        enabled = self.precision == "bf16" and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled):
            yield

    def score(self, arrays: Mapping[str, np.ndarray], reasons: bool = True) -> dict[str, np.ndarray]:
        """Named inputs (see module docstring) → outputs of `triton_repo.schema.sprm_outputs`, (B,) rows."""
        tokens = np.asarray(arrays["tokens"], dtype=np.int64)
        lengths = _rows(arrays["lengths"], np.int64)
        new_token = _rows(arrays["new_token"], np.int64)
        profile = np.asarray(arrays["profile"], dtype=np.int64)
        user = arrays.get("user_embedding")
        with self._precision():
            if self.scorer is not None:
                return self.scorer.score(
                    tokens,
                    lengths,
                    profile,
                    new_token,
                    np.asarray(arrays["txn_features"], dtype=np.float32),
                    np.asarray(arrays["prob_stats"], dtype=np.float64),
                    None if user is None else np.asarray(user, dtype=np.float32),
                    reasons=reasons,
                )
            return self._encoder_only(tokens, lengths, profile, new_token, user)

    def refresh(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encoder states at planned positions → hidden (R, K, d), lse (R, K) [, sequence (R, K, S)]."""
        tokens = np.asarray(arrays["tokens"], dtype=np.int64)
        lengths = _rows(arrays["lengths"], np.int64)
        profile = np.asarray(arrays["profile"], dtype=np.int64)
        positions = np.asarray(arrays["positions"], dtype=np.int64)
        with self._precision():
            if self.scorer is not None:
                return self.scorer.refresh(tokens, lengths, profile, positions)
            return self._refresh_encoder_only(tokens, lengths, profile, positions)

    @torch.no_grad()
    def _refresh_encoder_only(self, tokens: np.ndarray, lengths: np.ndarray, profile: np.ndarray,
                              positions: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
        dev = self.device
        positions_t = torch.from_numpy(positions).to(dev)
        hidden = position_hidden(self.encoder.hidden_at, torch.from_numpy(tokens).to(dev),
                                 torch.from_numpy(lengths).to(dev), torch.from_numpy(profile).to(dev),
                                 positions_t)  # fmt: skip
        valid = positions_t >= 0
        lse = torch.zeros(positions_t.shape, dtype=torch.float32, device=dev)
        lse[valid] = next_token_lse(self.encoder, hidden[valid], self.temperature)
        return {"hidden": hidden.float().cpu().numpy(), "lse": lse.cpu().numpy()}

    def score_state(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The head from cached state → p_fraud, logit, Δ, Δ_log, surprise (B,), reasons (B, S)."""
        if self.scorer is None:
            raise InvalidRequest("this artefact has no fraud head: nothing to score")

        def optional(name: str, dtype: type[np.generic]) -> np.ndarray | None:
            value = arrays.get(name)
            return None if value is None else np.asarray(value, dtype=dtype)

        threshold = arrays.get("reason_threshold")
        with self._precision():
            return self.scorer.score_state(
                np.asarray(arrays["txn_features"], dtype=np.float32),
                np.asarray(arrays["prob_stats"], dtype=np.float64),
                _rows(arrays["logp_new"], np.float32),
                np.asarray(arrays["hidden"], dtype=np.float32),
                np.asarray(arrays["profile"], dtype=np.int64),
                sequence=optional("sequence", np.float32),
                user_embedding=optional("user_embedding", np.float32),
                reason_threshold=None if threshold is None else _rows(threshold, np.float32),
            )

    @torch.no_grad()
    def _encoder_only(
        self,
        tokens: np.ndarray,
        lengths: np.ndarray,
        profile: np.ndarray,
        new_token: np.ndarray,
        user: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        dev = self.device
        profile_t = torch.from_numpy(profile).to(dev)
        logp, hidden = window_outputs(
            self.encoder,
            torch.from_numpy(tokens).to(dev),
            torch.from_numpy(lengths).to(dev),
            profile_t,
            torch.from_numpy(new_token).to(dev),
            self.temperature,
        )
        e_u = (
            torch.as_tensor(np.asarray(user, np.float32), device=dev)
            if user is not None
            else self.encoder.user_embedding(profile_t)
        )
        logp = logp.float()
        out = {
            "surprise": -logp,
            "logp_new": logp,
            "seq_embedding": hidden.float(),
            "user_embedding": e_u.float(),
        }
        return {k: v.cpu().numpy() for k, v in out.items()}

    @torch.inference_mode()
    def embed_users(self, profile: np.ndarray) -> np.ndarray:
        """profile ids (B, P) → e_u (B, d) float32 (what `panther_user_encoder` serves)."""
        profile_t = torch.as_tensor(np.asarray(profile, dtype=np.int64), device=self.device)
        with self._precision():
            return self.encoder.user_embedding(profile_t).float().cpu().numpy()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidRequest(message)
