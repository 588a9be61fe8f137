"""Training the fraud head on labelled events (chronological train / validation split).

Optimizer: AdamW with a one-cycle schedule (10% warm-up, cosine decay to ~0 at the last epoch), which
keeps the late epochs from jumping around the validation optimum.

Class imbalance: binary cross-entropy with `pos_weight` — by default √(negatives / positives) (≈ 10 at
1% fraud). Full balancing (≈ 100) is available ("balanced"); the √ form keeps gradients from a handful
of frauds from dominating every batch. Legit events may be subsampled per epoch (`legit_keep` < 1,
fresh sample each epoch, each kept legit event weighted 1 / legit_keep so the loss stays unbiased);
fraud is always kept. The epoch with the best validation average precision (PR-AUC) is restored;
validation is the last part of the training period, never the test period.

The PANTHER encoder is frozen by default (its window hidden states are precomputed once). With
`fine_tune=True` the "panther" sequence block is recomputed from the windows each step and the encoder
trains with its own, smaller learning rate; deviation and e_u still come from the frozen model (the
generative model is the behaviour model; fine-tuning it for fraud would change what "usual" means).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from models.batch import SequenceBatch
from models.fraud.dataset import FraudData
from models.fraud.encoder_pass import as_windows
from models.fraud.ensemble import DEFAULT_MEMBERS, HeadEnsemble, check_ensemble_config
from models.fraud.head import FraudHead, HeadConfig, HeadInputs
from models.panther import PantherModel


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-4
    legit_keep: float = 1.0  # share of legit training events used per epoch
    pos_weight: float | str = "sqrt"  # "sqrt" | "balanced" | a number
    patience: int = 2  # epochs without validation gain before stopping
    seed: int = 0
    device: str = "cpu"
    fine_tune: bool = False  # train the PANTHER encoder with the head ("panther" sequence only)
    encoder_lr: float = 1e-4
    norm_sample: int = 50_000  # events used for the standardization statistics
    eval_batch_size: int = 4096

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    head: FraudHead
    encoder: PantherModel | None  # the fine-tuned encoder, when fine_tune
    history: list[dict[str, float]]
    best_epoch: int
    best_val_pr_auc: float
    wall_s: float


def positive_weight(labels: np.ndarray, setting: float | str) -> float:
    """pos_weight for BCE: "sqrt" = √(neg/pos), "balanced" = neg/pos, or the given number."""
    pos = max(int(labels.sum()), 1)
    neg = max(len(labels) - pos, 1)
    if setting == "sqrt":
        return math.sqrt(neg / pos)
    if setting == "balanced":
        return neg / pos
    return float(setting)


def _encoder_hidden(
    encoder: PantherModel, data: FraudData, idx: np.ndarray, device: torch.device
) -> torch.Tensor:
    tokens, lengths = data.windows(idx)
    tokens_t, lengths_t = as_windows(torch.from_numpy(tokens), torch.from_numpy(lengths))
    batch = SequenceBatch(tokens=tokens_t, lengths=lengths_t,
                          profile=torch.from_numpy(data.profile[data.seqs.user_of_event[idx]]))
    return encoder.sequence_embedding(batch.to(device))


def batch_inputs(data: FraudData, idx: np.ndarray, config: HeadConfig, device: torch.device,
                 encoder: PantherModel | None = None) -> HeadInputs:
    """Head inputs for events idx; with a (fine-tuned) encoder the hidden state is recomputed."""
    inputs = data.head_inputs(idx, config if encoder is None else _without_hidden(config), device)
    if encoder is not None:
        inputs = replace(inputs, hidden=_encoder_hidden(encoder, data, idx, device))
    return inputs


def _without_hidden(config: HeadConfig) -> HeadConfig:
    return HeadConfig.from_dict({**config.to_dict(), "sequence": "none"})


@torch.no_grad()
def predict_logits(head: FraudHead | HeadEnsemble, data: FraudData, idx: np.ndarray,
                   device: torch.device | str = "cpu", batch_size: int = 4096,
                   encoder: PantherModel | None = None) -> np.ndarray:
    """(len(idx),) fraud logits of events idx."""
    device = torch.device(device)
    head.eval().to(device)
    if encoder is not None:
        encoder.eval().to(device)
    out = []
    for i in range(0, len(idx), batch_size):
        rows = idx[i : i + batch_size]
        logits = with_base_logit(head(batch_inputs(data, rows, head.config, device, encoder)), data, rows)
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def with_base_logit(logits: torch.Tensor, data: FraudData, idx: np.ndarray) -> torch.Tensor:
    """(b,) the head's logits plus `data.base_logit` of events idx, when the data carries one."""
    if data.base_logit is None:
        return logits
    return logits + torch.from_numpy(np.ascontiguousarray(data.base_logit[idx], np.float32)).to(logits.device)


def fit_head(
    data: FraudData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    config: HeadConfig,
    fit: FitConfig | None = None,
    encoder: PantherModel | None = None,
    normalize_like: FraudHead | None = None,
) -> FitResult:
    """Train a FraudHead of variant `config` on events `train_idx`; choose the epoch on `val_idx`.

    `normalize_like`: standardize with that head's statistics instead of this fit's own sample (an
    ensemble's members share one, `models.fraud.ensemble`); the sample is still drawn, so the seed's
    random stream, and everything else about the fit, stays as without it."""
    fit = fit or FitConfig()
    if data.labels is None:
        raise ValueError("fitting the fraud head needs labels (is_fraud)")
    start = time.perf_counter()
    device = torch.device(fit.device)
    torch.manual_seed(fit.seed)
    rng = np.random.default_rng(fit.seed)
    head = FraudHead(config).to(device)
    tuned = None
    if fit.fine_tune and config.sequence == "panther":
        if encoder is None:
            raise ValueError("fine_tune needs the PANTHER encoder")
        tuned = copy.deepcopy(encoder).to(device).train()
    sample = np.sort(rng.choice(train_idx, size=min(fit.norm_sample, len(train_idx)), replace=False))
    head.fit_normalization(batch_inputs(data, sample, config, device, tuned))
    if normalize_like is not None:
        head.copy_normalization(normalize_like)
    groups = [{"params": head.parameters(), "lr": fit.lr}]
    if tuned is not None:
        groups.append({"params": tuned.parameters(), "lr": fit.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=fit.weight_decay)
    steps_per_epoch = -(-len(_epoch_sample(train_idx, data.labels, fit.legit_keep, rng)[0]) // fit.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(fit.epochs * steps_per_epoch, 1) + 1,
        pct_start=0.1, anneal_strategy="cos")
    labels = data.labels
    pos_weight = torch.tensor(positive_weight(labels[train_idx], fit.pos_weight), device=device)
    history: list[dict[str, float]] = []
    best = (-1.0, 0, copy.deepcopy(head.state_dict()), None)
    stale = 0
    for epoch in range(fit.epochs):
        head.train()
        if tuned is not None:
            tuned.train()
        epoch_idx, weights = _epoch_sample(train_idx, labels, fit.legit_keep, rng)
        total, steps = 0.0, 0
        for i in range(0, len(epoch_idx), fit.batch_size):
            idx = epoch_idx[i : i + fit.batch_size]
            logits = with_base_logit(head(batch_inputs(data, idx, config, device, tuned)), data, idx)
            target = torch.from_numpy(labels[idx].astype(np.float32)).to(device)
            weight = torch.from_numpy(weights[i : i + fit.batch_size]).to(device)
            loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            optimizer.step()
            if schedule.last_epoch + 1 < schedule.total_steps:
                schedule.step()
            total, steps = total + float(loss.detach()), steps + 1
        val_ap = validation_pr_auc(head, data, val_idx, device, fit.eval_batch_size, tuned)
        history.append({"epoch": epoch + 1, "loss": total / max(steps, 1), "val_pr_auc": val_ap})
        if val_ap > best[0]:
            best = (val_ap, epoch + 1, copy.deepcopy(head.state_dict()),
                    copy.deepcopy(tuned.state_dict()) if tuned is not None else None)
            stale = 0
        else:
            stale += 1
            if stale > fit.patience:
                break
    head.load_state_dict(best[2])
    if tuned is not None and best[3] is not None:
        tuned.load_state_dict(best[3])
        tuned.eval()
    head.fit_sequence_baseline(batch_inputs(data, sample[:4096], config, device, tuned))
    head.eval()
    return FitResult(head, tuned, history, best[1], best[0], time.perf_counter() - start)


def _epoch_sample(train_idx: np.ndarray, labels: np.ndarray, keep: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled events of one epoch and their loss weights (1 / keep for subsampled legit events)."""
    fraud = labels[train_idx]
    kept = fraud | (rng.random(len(train_idx)) < keep)
    idx = rng.permutation(train_idx[kept])
    weights = np.where(labels[idx], 1.0, 1.0 / keep).astype(np.float32)
    return idx, weights


def fit_ensemble(
    data: FraudData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    config: HeadConfig,
    fit: FitConfig,
    members: int = DEFAULT_MEMBERS,
    on_member: Callable[[], None] | None = None,
    encoder: PantherModel | None = None,
) -> tuple[HeadEnsemble | FraudHead, list[FitResult], float]:
    """Members with seeds fit.seed, fit.seed + 1, …; member 0 is exactly `fit_head(config, fit,
    encoder)` (`encoder`: what a fine-tuned single head trains). → (the head to ship: the single head
    when `members` is 1, its members' fits, the validation PR-AUC of what ships)."""
    if members < 1:
        raise ValueError(f"members must be ≥ 1, got {members}")
    if members > 1:
        check_ensemble_config(config, fit.fine_tune)
    fits: list[FitResult] = []
    for i in range(members):
        like = fits[0].head if fits else None
        member = replace(fit, seed=fit.seed + i)
        fits.append(fit_head(data, train_idx, val_idx, config, member, encoder, normalize_like=like))
        if on_member is not None:
            on_member()
    if members == 1:
        return fits[0].head, fits, fits[0].best_val_pr_auc
    ensemble = HeadEnsemble([f.head for f in fits])
    return ensemble, fits, validation_pr_auc(ensemble, data, val_idx, fit.device)


def validation_pr_auc(head: FraudHead | HeadEnsemble, data: FraudData, val_idx: np.ndarray,
                      device: torch.device | str, batch_size: int = 4096,
                      encoder: PantherModel | None = None) -> float:  # fmt: skip
    """PR-AUC of the head's logits on the validation events (0 when they hold no fraud): what picks a
    fit's epoch, and what an ensemble reports."""
    if data.labels is None or not data.labels[val_idx].any():
        return 0.0
    scores = predict_logits(head, data, val_idx, device, batch_size, encoder)
    return float(average_precision_score(data.labels[val_idx], scores))
