"""The fraud head's forward pass in numpy: what the worker's cached path calls for every micro-batch.

Why: the head is ~20 small layers, and in eager torch each one goes through `nn.Module.__call__`, the
dispatcher and a tensor allocation: on the demo model a batch of 10 events spent more time in that
machinery than in arithmetic (`python bench/numpy_head.py`, docs/BENCHMARKS.md, issue 14). The same
arithmetic as numpy calls on float32 arrays costs a fraction of that, and at 1,000 events/s, where the
worker's batches hold 5–25 events, the per-call cost is what the latency is made of.

`NumpyHead(head)` copies the weights of a fitted `FraudHead` or `HeadEnsemble` (eval mode: dropout is
the identity; an ensemble's members' layers stacked, so three heads cost about the numpy calls of
one); `blocks` and `logit` mirror `FraudHead.blocks` and `FraudHead.fuse` step by step,
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

Layer = tuple[np.ndarray, np.ndarray | None]  # weight, bias or None: (in, out), (out,) for one head;
#                                                (M, in, out), (M, 1, out) stacked over M members


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().float().numpy())


def _stacked(layers: list[nn.Linear]) -> Layer:
    """The same layer of M members: x (M, B, in) @ W (M, in, out) [+ b]; one head's stays 2-D (a
    stack of one through `np.matmul` cost up to 1.5x the plain product on small batches)."""
    weights = [_f32(layer.weight).T for layer in layers]
    biases = None if layers[0].bias is None else [_f32(layer.bias) for layer in layers]
    if len(layers) == 1:
        return np.ascontiguousarray(weights[0]), None if biases is None else biases[0]
    return np.stack(weights), None if biases is None else np.stack(biases)[:, None, :]


def _apply(x: np.ndarray, layer: Layer) -> np.ndarray:
    out = np.matmul(x, layer[0])
    return out if layer[1] is None else out + layer[1]


@dataclass(frozen=True)
class _Shared:
    """One layer of M members over the same input (ψ, the block projections): one (in, M·out) product
    instead of M, its result split per member → (M, B, out); one head's: (B, out)."""

    weight: np.ndarray  # (in, M·out)
    bias: np.ndarray  # (M·out,)
    members: int

    @classmethod
    def of(cls, layers: list[nn.Linear]) -> _Shared:
        weight = np.concatenate([_f32(layer.weight).T for layer in layers], axis=1)
        return cls(np.ascontiguousarray(weight), np.concatenate([_f32(layer.bias) for layer in layers]),
                   len(layers))  # fmt: skip

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x @ self.weight + self.bias
        if self.members == 1:
            return out
        return np.ascontiguousarray(out.reshape(len(x), self.members, -1).transpose(1, 0, 2))


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
    """The members' ψ, block projections and DCNs, each layer stacked over the M members, so an
    ensemble costs as many numpy calls as one head (calls, not arithmetic, are what a small batch pays).
    Members share the standardization and the PLE bins (`FraudHead.copy_normalization`): member 0's."""

    ple: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None  # lower, width, floor, ceiling
    n_numeric: int
    psi: _Shared
    projections: dict[str, _Shared]
    cross: list[list[Layer]]  # per cross layer: [full] or [U, V] (low rank)
    deep: list[Layer]  # each followed by ReLU
    out: Layer

    @classmethod
    def from_torch(cls, members: list[FraudHead]) -> _Fusion:
        first = members[0]
        bins = first.ple
        ple = None
        if bins is not None:
            ple = (_f32(bins.lower), _f32(bins.width), _f32(bins.floor), _f32(bins.ceiling))
        projections = {name: _Shared.of([m.projections[name][1] for m in members])  # (Dropout, Linear)
                       for name in first.projections}  # fmt: skip
        cross = []
        for i, layer in enumerate(first.dcn.cross):
            if isinstance(layer.project, nn.Linear):
                cross.append([_stacked([m.dcn.cross[i].project for m in members])])
            else:  # low rank: U then V
                cross.append([_stacked([m.dcn.cross[i].project[j] for m in members]) for j in range(2)])
        deep = [_stacked([m.dcn.deep[i] for m in members])
                for i, module in enumerate(first.dcn.deep) if isinstance(module, nn.Linear)]  # fmt: skip
        psi, out = _Shared.of([m.psi for m in members]), _stacked([m.dcn.out for m in members])
        return cls(ple, first.config.n_numeric, psi, projections, cross, deep, out)

    def logits(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """`FraudHead.fuse` of every member: blocks (B, dim each) → (M, B) float32 ((B,): one head)."""
        txn = blocks["txn"]
        if self.ple is not None:
            lower, width, floor, ceiling = self.ple
            n = self.n_numeric
            z = (txn[:, :n, None] - lower) / width
            encoded = np.maximum(np.minimum(z, ceiling), floor).reshape(len(txn), -1)
            txn = np.concatenate([encoded, txn[:, n:]], axis=1)
        psi = self.psi(txn)
        parts = [psi]
        for name in BLOCKS[1:]:
            if name in blocks:
                value = blocks[name]
                if name in self.projections:
                    parts.append(self.projections[name](value))
                else:  # the raw block (Δ), the same for every member
                    parts.append(value if psi.ndim == 2 else np.broadcast_to(value, (len(psi), *value.shape)))
        x0 = np.concatenate(parts, axis=-1)
        x = x0
        for layers in self.cross:
            projected = x
            for layer in layers:
                projected = _apply(projected, layer)
            x = x0 * projected + x
        deep = x0
        for layer in self.deep:
            deep = np.maximum(_apply(deep, layer), 0.0)
        return _apply(np.concatenate([x, deep], axis=-1), self.out)[..., 0]


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
        self.fusion = _Fusion.from_torch(members)

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
        """(B,) float32: the head's logit, or the mean of the members' (`HeadEnsemble.fuse`)."""
        logits = self.fusion.logits(blocks)
        return logits if logits.ndim == 1 else logits.mean(axis=0, dtype=np.float32)


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
