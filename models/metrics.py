"""Full-ranking next-token metrics (the generative-recommenders protocol): HR@K, NDCG@K, MRR.

Every id of the vocabulary is a candidate — no sampled negatives. The rank of the target is
1 + the number of candidates scoring at least as high (ties count against the target, so a model that
scores everything equally gets the worst rank, not a lucky one). Excluded ids (PAD, and the other
reserved ids that are never targets) are removed from the competition. With one target per row,
NDCG@K = 1/log2(rank + 1) when rank ≤ K, else 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.batch import PAD_ID

Array = np.ndarray | torch.Tensor


def target_ranks(scores: Array, targets: Array, exclude: Sequence[int] = (PAD_ID,)) -> Array:
    """scores (N, V), targets (N,) → ranks (N,) int64, 1 = best, same library (and device) as `scores`.

    Pessimistic ties; a NaN target score ranks last; NaN candidates never outrank.

    >>> target_ranks(np.array([[0.0, 0.5, 0.5, 0.1]]), np.array([1])).tolist()
    [2]
    >>> target_ranks(np.array([[9.0, 0.5, 0.2, 0.1]]), np.array([2]), exclude=(0,)).tolist()
    [2]
    """
    if isinstance(scores, torch.Tensor):
        return _ranks_torch(scores, torch.as_tensor(targets, device=scores.device), exclude)
    return _ranks_numpy(np.asarray(scores), np.asarray(targets), exclude)


def _ranks_torch(scores: torch.Tensor, targets: torch.Tensor, exclude: Sequence[int]) -> torch.Tensor:
    targets = targets.long()
    vocab = scores.shape[1]
    target_score = scores.gather(1, targets.unsqueeze(1))  # (N, 1)
    beats = scores >= target_score  # (N, V)
    keep = torch.ones(vocab, dtype=torch.bool, device=scores.device)
    excluded = [i for i in exclude if 0 <= i < vocab]
    if excluded:
        keep[torch.tensor(excluded, device=scores.device)] = False
    beats &= keep.unsqueeze(0)
    beats.scatter_(1, targets.unsqueeze(1), False)  # the target does not beat itself
    ranks = beats.sum(dim=1) + 1
    worst = int(keep.sum()) + 1 - keep[targets].long()  # number of candidates including the target
    return torch.where(torch.isnan(target_score.squeeze(1)), worst, ranks)


def _ranks_numpy(scores: np.ndarray, targets: np.ndarray, exclude: Sequence[int]) -> np.ndarray:
    targets = targets.astype(np.int64)
    rows = np.arange(len(targets))
    target_score = scores[rows, targets]  # (N,)
    with np.errstate(invalid="ignore"):
        beats = scores >= target_score[:, None]  # (N, V)
    keep = np.ones(scores.shape[1], dtype=bool)
    excluded = [i for i in exclude if 0 <= i < scores.shape[1]]
    keep[excluded] = False
    beats &= keep[None, :]
    beats[rows, targets] = False
    ranks = beats.sum(axis=1).astype(np.int64) + 1
    worst = int(keep.sum()) + 1 - keep[targets].astype(np.int64)
    return np.where(np.isnan(target_score), worst, ranks)


def exclude_seen(scores: Array, seen: Array) -> Array:
    """scores (N, V), seen (N, W) token ids (PAD-padded) → scores with each row's seen ids at −inf.

    The generative-recommenders MovieLens protocol ranks only items *outside* the user's history window
    (`eval.py`, `filter_invalid_ids=True`): a seen target then ranks last, i.e. counts as a miss. Returns a
    copy (numpy) or a new tensor (torch); `seen` may contain PAD, which is never a candidate anyway.

    >>> exclude_seen(np.array([[0.0, 0.9, 0.5, 0.1]]), np.array([[1, 0]])).tolist()
    [[-inf, -inf, 0.5, 0.1]]
    """
    if isinstance(scores, torch.Tensor):
        seen_t = torch.as_tensor(seen, device=scores.device).long()
        return scores.scatter(1, seen_t, float("-inf"))
    out = np.array(scores, dtype=np.result_type(np.asarray(scores).dtype, np.float32), copy=True)
    seen_np = np.asarray(seen, dtype=np.int64)
    np.put_along_axis(out, seen_np, -np.inf, axis=1)
    return out


def ranking_metrics(
    ranks: Array | Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float | int | None]:
    """ranks (N,) → {"HR@k", "NDCG@k" for each k, "MRR", "n"}; values are None when N = 0.

    >>> m = ranking_metrics([1, 3, 20], ks=(1, 10))
    >>> [round(m[key], 4) for key in ("HR@1", "HR@10", "NDCG@10", "MRR")], m["n"]
    ([0.3333, 0.6667, 0.5, 0.4611], 3)
    """
    values = ranks.detach().cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    values = values.astype(np.float64).reshape(-1)
    n = len(values)
    out: dict[str, float | int | None] = {}
    for k in ks:
        hit = values <= k
        out[f"HR@{k}"] = float(hit.mean()) if n else None
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(values + 1.0), 0.0).mean()) if n else None
    out["MRR"] = float((1.0 / values).mean()) if n else None
    out["n"] = n
    return out
