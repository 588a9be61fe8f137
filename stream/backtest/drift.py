"""Input drift without labels: UNK rate and token distribution shift of the replayed range vs training.

The artefact's tokenizer keeps the training count of every token (`StructuredTokenizer.counts`, UNK
included), so the backtest compares like with like: the share of transactions that fall outside the
vocabulary (UNK) and the population stability index / Jensen–Shannon divergence between the training
and the replayed token distributions.

The tokens are the ones the engine itself computed (`TokenTap` wraps the `LiveModel` the engine calls),
so drift costs no second tokenizer pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stream.live_model import LiveModel

UNK_ID = 1  # = models.tokenizer.UNK_ID (not imported: its package imports torch-side modules)
EPS = 1e-6
TOP_SHIFTS = 10


class TokenTap:
    """A `LiveModel` stand-in that remembers the token ids of its last tokenizer call.

    The engine tokenizes each micro-batch once; reading that result here keeps drift in step with
    exactly what was scored. Everything else is delegated to the wrapped LiveModel.
    """

    def __init__(self, live: LiveModel) -> None:
        self._live = live
        self.last: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._live, name)

    def tokens(self, records: list[dict[str, Any]]) -> np.ndarray:
        self.last = self._live.tokens(records)
        return self.last

    def transaction_tokens(self, txns: Sequence[Any]) -> np.ndarray:
        self.last = self._live.transaction_tokens(txns)
        return self.last


class TokenCounts:
    """Running token counts of the scored events of one model."""

    def __init__(self, vocab_size: int) -> None:
        self.counts = np.zeros(vocab_size, dtype=np.int64)

    def add(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens, dtype=np.int64)
        tokens = tokens[(tokens >= 0) & (tokens < len(self.counts))]
        self.counts += np.bincount(tokens, minlength=len(self.counts))

    def report(self, live: LiveModel) -> dict[str, Any]:
        """{"available", "n", "unk_rate", "train_unk_rate", "psi", "js_divergence", "top_shifts"}."""
        tokenizer = live.tokenizer
        train = np.asarray(tokenizer.counts, dtype=np.float64)  # property: (V,) training counts
        n = int(self.counts.sum())
        if train.sum() <= 0 or len(train) != len(self.counts):
            return {"available": False, "reason": "the tokenizer carries no training token counts", "n": n}
        seen = self.counts.astype(np.float64)
        p = train / train.sum()
        q = seen / max(seen.sum(), 1.0)
        out: dict[str, Any] = {
            "available": True,
            "n": n,
            "unk_rate": float(q[UNK_ID]) if n else float("nan"),
            "train_unk_rate": float(p[UNK_ID]),
            "psi": psi(p, q) if n else float("nan"),
            "js_divergence": js_divergence(p, q) if n else float("nan"),
            "tokens_seen": int((self.counts > 0).sum()),
            "vocab_size": len(self.counts),
        }
        shift = q - p
        names = tokenizer.token_names
        order = np.argsort(-np.abs(shift), kind="stable")[:TOP_SHIFTS]
        out["top_shifts"] = [
            {"token": str(names[i]), "train_share": float(p[i]), "backtest_share": float(q[i])}
            for i in order
            if n and shift[i] != 0
        ]
        return out


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index Σ (q−p)·ln(q/p), both smoothed by EPS (0.1 = moderate, 0.25 = large).

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])), 6)
    0.0
    """
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits: 0 = same distribution, 1 = disjoint supports.

    >>> js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    """
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return (kl(p) + kl(q)) / 2
