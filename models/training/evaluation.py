"""Next-token evaluation: full ranking over the whole vocabulary (the generative-recommenders protocol).

Each evaluation row is (history, target); the model scores every token id from the hidden state at the
history's last position, and DATA's `target_ranks` / `ranking_metrics` turn the scores into HR@K and
NDCG@K (PAD excluded, ties counted against the target). Scores are computed in fp32 even under bf16
autocast: bf16 logits would create ties among thousands of items.

`EvalData.seen_window` picks the candidate set: None ranks every token (our strict default, and the only
sensible choice for payments, where repeating a merchant/amount token is the norm); an int W removes each
row's last W history tokens from its candidates, the generative-recommenders MovieLens protocol behind the
published SASRec/HSTU/PANTHER numbers (`models.metrics.exclude_seen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.loaders import UserFeatures, eval_batches
from models.metrics import exclude_seen, ranking_metrics, target_ranks
from models.panther import PantherModel
from models.tokenizer.reserved import NON_TARGET_IDS
from models.training.progress import progress_bar
from models.training.runtime import autocast, resolve_device

if TYPE_CHECKING:
    from models.sequences import EvalSet


@dataclass(frozen=True)
class EvalData:
    """An evaluation set and the profile features of the `Sequences` its `user_row`s point into."""

    eval_set: EvalSet
    features: UserFeatures
    seen_window: int | None = None  # None: rank every token; W: drop the row's last W history tokens

    def seen(self, rows: slice) -> np.ndarray | None:
        """(n, W) the history tokens removed from these rows' candidates, or None when nothing is."""
        return None if self.seen_window is None else self.eval_set.padded(self.seen_window, rows=rows)[0]

    def __len__(self) -> int:
        return len(self.eval_set.targets)


@torch.no_grad()
def target_ranks_of(
    model: PantherModel,
    data: EvalData,
    device: str | torch.device = "auto",
    batch_size: int = 512,
    progress: bool = False,
    bf16: bool = True,
) -> np.ndarray:
    """(N,) int64 rank of each row's target among all V tokens (1 = best)."""
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    ranks: list[np.ndarray] = []
    n_batches = -(-len(data) // batch_size)
    batches = eval_batches(data.eval_set, data.features, model.config.max_len, batch_size)
    with progress_bar(f"eval {model.config.name}", n_batches, progress) as bar:
        for start, (batch, targets) in zip(range(0, len(data), batch_size), batches, strict=True):
            batch = batch.to(device)
            with autocast(device, bf16):
                embedding = model.sequence_embedding(batch)
            scores = model.logits(embedding.float())
            seen = data.seen(slice(start, start + batch_size))
            if seen is not None:
                scores = exclude_seen(scores, torch.from_numpy(seen))
            ranks.append(
                np.asarray(_to_numpy(target_ranks(scores, targets.to(device), exclude=NON_TARGET_IDS)))
            )
            bar.advance()
    model.train(was_training)
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def evaluate_next_token(
    model: PantherModel,
    data: EvalData,
    device: str | torch.device = "auto",
    batch_size: int = 512,
    ks: tuple[int, ...] = (1, 5, 10),
    progress: bool = False,
    bf16: bool = True,
) -> dict[str, Any]:
    """→ {"HR@1", "HR@5", "HR@10", "NDCG@10", "MRR", "n"} with full ranking over the vocabulary."""
    return ranking_metrics(target_ranks_of(model, data, device, batch_size, progress, bf16), ks=ks)


def _to_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
