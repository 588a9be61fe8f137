"""The fraud head's forward pass in numpy: what the worker's cached path calls for every micro-batch.

Why: the head is ~20 small layers, and in eager torch each one goes through `nn.Module.__call__`, the
dispatcher and a tensor allocation: on the demo model a batch of 10 events spent more time in that
machinery than in arithmetic (`python bench/numpy_head.py`, docs/BENCHMARKS.md, issue 14). The same
arithmetic as numpy calls on float32 arrays costs a fraction of that, and at 1,000 events/s, where the
worker's batches hold 5–25 events, the per-call cost is what the latency is made of.

`NumpyHead.from_torch` copies the weights of a fitted `FraudHead` or `HeadEnsemble` (eval mode: dropout
is the identity); `blocks` and `logit` mirror `FraudHead.blocks` and `FraudHead.fuse` step by step,
and `deviation_features` mirrors `models.fraud.deviation.deviation_features`. The torch head stays the
reference (training, the full-window `score`, reasons), and tests hold the two equal for every head
variant. Reasons (integrated gradients) still run in torch, for the alerting rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.fraud.deviation import DeviationConfig
from models.fraud.ensemble import HeadEnsemble
from models.fraud.head import BLOCKS, FraudHead

Layer = tuple[np.ndarray, np.ndarray | None]  # (weight (out, in), bias (out,) or None)


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().float().numpy())


def _linear(layer: nn.Linear) -> Layer:
    return _f32(layer.weight).T.copy(), None if layer.bias is None else _f32(layer.bias)


def _apply(x: np.ndarray, layer: Layer) -> np.ndarray:
    out = x @ layer[0]
    return out if layer[1] is None else out + layer[1]


@dataclass(frozen=True)
class _Norm:
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32, copy=False) - self.mean) / self.std


def _norm(module: nn.Module | None) -> _Norm | None:
    return None if module is None else _Norm(_f32(module.mean), _f32(module.std))


@dataclass(frozen=True)
class _Fusion:
    """One member's ψ, block projections and DCN (weights transposed: x @ W)."""

    ple: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None  # lower, width, floor, ceiling
    n_numeric: int
    psi: Layer
    projections: dict[str, Layer]
    cross: list[list[Layer]]  # per cross layer: [full] or [U, V] (low rank)
    deep: list[Layer]  # each followed by ReLU
    out: Layer

    @classmethod
    def from_torch(cls, head: FraudHead) -> _Fusion:
        ple = None
        if head.ple is not None:
            ple = (_f32(head.ple.lower), _f32(head.ple.width), _f32(head.ple.floor), _f32(head.ple.ceiling))
        projections = {name: _linear(seq[1]) for name, seq in head.projections.items()}  # Dropout, Linear
        cross = []
        for layer in head.dcn.cross:
            project = layer.project
            low_rank = not isinstance(project, nn.Linear)
            cross.append([_linear(p) for p in project] if low_rank else [_linear(project)])
        deep = [_linear(m) for m in head.dcn.deep if isinstance(m, nn.Linear)]
        psi, out = _linear(head.psi), _linear(head.dcn.out)
        return cls(ple, head.config.n_numeric, psi, projections, cross, deep, out)

    def logit(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """`FraudHead.fuse`: blocks (B, dim each) → (B,) float32."""
        txn = blocks["txn"]
        if self.ple is not None:
            lower, width, floor, ceiling = self.ple
            n = self.n_numeric
            z = (txn[:, :n, None] - lower) / width
            encoded = np.maximum(np.minimum(z, ceiling), floor).reshape(len(txn), -1)
            txn = np.concatenate([encoded, txn[:, n:]], axis=1)
        parts = [_apply(txn, self.psi)]
        for name in BLOCKS[1:]:
            if name in blocks:
                parts.append(_apply(blocks[name], self.projections[name]) if name in self.projections
                             else blocks[name])  # fmt: skip
        x0 = np.concatenate(parts, axis=1)
        x = x0
        for layers in self.cross:
            projected = x
            for layer in layers:
                projected = _apply(projected, layer)
            x = x0 * projected + x
        deep = x0
        for layer in self.deep:
            deep = np.maximum(_apply(deep, layer), 0.0)
        return _apply(np.concatenate([x, deep], axis=1), self.out)[:, 0]


class NumpyHead:
    """A fitted head (or ensemble) as numpy arrays: `blocks` → `logit`, as the torch head computes them."""

    def __init__(self, head: FraudHead | HeadEnsemble) -> None:
        members = list(head.members) if isinstance(head, HeadEnsemble) else [head]
        first: FraudHead = members[0]  # an ensemble's members share the standardization
        self.config = first.config
        self.txn_norm = _norm(first.txn_norm)
        self.hidden_norm = _norm(first.hidden_norm)
        self.user_norm = _norm(first.user_norm)
        self.deviation_norm = _norm(first.deviation_norm)
        self.fusions = [_Fusion.from_torch(m) for m in members]

    def blocks(self, features: np.ndarray, hidden: np.ndarray | None, user: np.ndarray | None,
               deviation: np.ndarray | None, sequence: np.ndarray | None) -> dict[str, np.ndarray]:
        """`FraudHead.blocks` with the cached inputs (a TextCNN head's `sequence` is its encoding)."""
        assert self.txn_norm is not None
        out = {"txn": self.txn_norm(features)}
        if self.hidden_norm is not None:
            out["sequence"] = self.hidden_norm(_given(hidden, "hidden"))
        elif self.config.sequence == "textcnn":
            out["sequence"] = _given(sequence, "sequence").astype(np.float32, copy=False)
        if self.user_norm is not None:
            out["user"] = self.user_norm(_given(user, "user"))
        if self.deviation_norm is not None:
            out["deviation"] = self.deviation_norm(_given(deviation, "deviation"))
        return out

    def logit(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """(B,) float32: the member's logit, or the mean of the members' (`HeadEnsemble.fuse`)."""
        if len(self.fusions) == 1:
            return self.fusions[0].logit(blocks)
        return np.mean([f.logit(blocks) for f in self.fusions], axis=0, dtype=np.float32)


def deviation_features(logp: np.ndarray, stats: np.ndarray, config: DeviationConfig) -> np.ndarray:
    """`models.fraud.deviation.deviation_features` in numpy: logp (B,), stats (B, 5) → (B, 5) float32."""
    logp = np.asarray(logp, dtype=np.float64).reshape(-1)
    n, mu, sigma, mu_log, sigma_log = np.asarray(stats, dtype=np.float64).T
    p = np.exp(logp)
    warm = n >= config.min_history
    delta = np.clip((p - mu) / np.maximum(sigma, config.sigma_floor), -config.clip, config.clip)
    delta_log = np.clip((logp - mu_log) / np.maximum(sigma_log, config.log_sigma_floor), -config.clip,
                        config.clip)  # fmt: skip
    cold = (~warm).astype(np.float64)
    columns = [np.where(warm, delta, 0.0), np.where(warm, delta_log, 0.0), -logp, p, cold]
    return np.stack(columns, axis=1).astype(np.float32)


def _given(value: np.ndarray | None, name: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"this fraud head needs the input {name!r}")
    return value
