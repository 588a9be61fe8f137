"""Count-based next-token baselines, scored with the same EvalSet and metrics as the neural models.

- Popularity: the training frequency of each token, whatever the history.
- First-order Markov: P(b | a) = (C[a, b] + β · P_pop(b)) / (C[a, ·] + β), with a = the last token of the
  history. The additive term is a Dirichlet prior centred on popularity, so a rare or unseen `a` backs
  off smoothly to popularity (C[a, ·] = 0 gives exactly P_pop). P_pop is add-one smoothed.
Transition counts are a scipy sparse matrix (V² would be 3.6·10⁹ cells at V = 60K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from models.metrics import exclude_seen, ranking_metrics, target_ranks
from models.sequences import EvalSet, Sequences
from models.tokenizer.reserved import NON_TARGET_IDS, PAD_ID

_MAX_CELLS = 1 << 25  # score matrices up to 32M floats (128 MB) per batch


class NextTokenScorer(Protocol):
    vocab_size: int

    def scores(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """tokens (B, T) int64 right-padded, lengths (B,) → scores (B, V) float32, higher = more likely."""
        ...


def _popularity(seqs: Sequences, vocab_size: int) -> np.ndarray:
    counts = np.bincount(seqs.tokens, minlength=vocab_size)[:vocab_size].astype(np.float64)
    counts[[i for i in NON_TARGET_IDS if i < vocab_size]] = 0.0  # never predicted; UNK keeps its count
    return (counts + 1.0) / (counts.sum() + vocab_size)


@dataclass(frozen=True)
class PopularityBaseline:
    """Scores every history with the training token frequencies (add-one smoothed).

    >>> seqs = Sequences(np.array(["a"], dtype=object), np.array([0, 3]), np.array([4, 5, 5]),
    ...                  np.zeros(3, np.int64), np.arange(3))
    >>> PopularityBaseline.fit(seqs, 6).scores(np.array([[4, 0]]), np.array([1])).argmax(axis=1).tolist()
    [5]
    """

    probabilities: np.ndarray  # (V,) float64
    vocab_size: int

    @classmethod
    def fit(cls, train: Sequences, vocab_size: int) -> PopularityBaseline:
        return cls(_popularity(train, vocab_size), vocab_size)

    def scores(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.probabilities.astype(np.float32), (len(lengths), self.vocab_size))


@dataclass(frozen=True)
class MarkovBaseline:
    """First-order transitions with additive smoothing toward popularity (β pseudo-counts).

    >>> seqs = Sequences(np.array(["a"], dtype=object), np.array([0, 4]), np.array([4, 5, 4, 5]),
    ...                  np.zeros(4, np.int64), np.arange(4))
    >>> MarkovBaseline.fit(seqs, 7).scores(np.array([[5, 4, 0]]), np.array([2])).argmax(axis=1).tolist()
    [5]
    """

    transitions: sp.csr_matrix  # (V, V) float64 counts C[a, b]
    row_totals: np.ndarray  # (V,) float64 C[a, ·]
    popularity: np.ndarray  # (V,) float64
    vocab_size: int
    smoothing: float

    @classmethod
    def fit(cls, train: Sequences, vocab_size: int, smoothing: float = 1.0) -> MarkovBaseline:
        """smoothing β > 0: pseudo-transitions per source token, distributed by popularity."""
        if smoothing <= 0:
            raise ValueError("smoothing must be > 0")
        same_user = train.user_of_event[1:] == train.user_of_event[:-1]
        prev, nxt = train.tokens[:-1][same_user], train.tokens[1:][same_user]
        valid = (prev != PAD_ID) & (nxt != PAD_ID)
        data = np.ones(int(valid.sum()), dtype=np.float64)
        counts = sp.csr_matrix((data, (prev[valid], nxt[valid])), shape=(vocab_size, vocab_size))
        counts.sum_duplicates()
        totals = np.asarray(counts.sum(axis=1)).reshape(-1)
        return cls(counts, totals, _popularity(train, vocab_size), vocab_size, float(smoothing))

    def scores(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        rows = np.arange(len(lengths))
        last = np.where(lengths > 0, tokens[rows, np.maximum(lengths - 1, 0)], PAD_ID)
        beta = self.smoothing
        dense = self.transitions[last].toarray()  # (B, V)
        dense += beta * self.popularity[None, :]
        dense /= (self.row_totals[last] + beta)[:, None]
        return dense.astype(np.float32)


def evaluate_baseline(
    model: NextTokenScorer,
    ev: EvalSet,
    vocab_size: int,
    batch_size: int = 4096,
    exclude: tuple[int, ...] = NON_TARGET_IDS,
    ks: tuple[int, ...] = (1, 5, 10),
    seen_window: int | None = None,
) -> dict[str, float | int | None]:
    """Full-ranking metrics of a scorer on an EvalSet; batches shrink so that B·V stays ≤ 32M cells.

    `seen_window` as `EvalData.seen_window`: None ranks every token, W drops each row's last W history
    tokens from its candidates.
    """
    step = max(1, min(batch_size, _MAX_CELLS // max(vocab_size, 1)))
    ranks = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(ev), step):
        rows = slice(start, min(start + step, len(ev)))
        tokens, lengths = ev.padded(rows=rows)
        scores = model.scores(tokens, lengths)
        if seen_window is not None:
            scores = exclude_seen(scores, ev.padded(seen_window, rows=rows)[0])
        ranks.append(np.asarray(target_ranks(scores, ev.targets[rows], exclude)))
    return ranking_metrics(np.concatenate(ranks), ks=ks)
