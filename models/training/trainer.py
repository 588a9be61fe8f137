"""Next-token training loop: AdamW, seeded windows, bf16 autocast on CUDA, optional early stopping.

    result = train_next_token(model, train_seqs, features, TrainConfig(epochs=10), validation=EvalData(...))

Defaults follow the paper's App. B (AdamW, lr 1e-3, batch 128) with betas (0.9, 0.98) from the
generative-recommenders setup. Weight decay applies to matrices only (not biases, LayerNorms or the
position table). With a validation set the best epoch by NDCG@10 is restored at the end.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from models.loaders import TrainBatches, UserFeatures, WindowSpec
from models.losses import LossConfig
from models.panther import PantherModel
from models.training.evaluation import EvalData, evaluate_next_token
from models.training.progress import progress_bar
from models.training.runtime import autocast, resolve_device

if TYPE_CHECKING:
    from models.sequences import Sequences


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    window_mode: str = "all"  # see models.loaders.WINDOW_MODES; "all" = every target once per epoch
    loss: LossConfig = field(default_factory=LossConfig)
    eval_every: int = 1  # epochs between validation runs (when a validation set is given)
    early_stopping_patience: int | None = None  # validation runs without NDCG@10 gain before stopping
    eval_batch_size: int = 512
    max_steps_per_epoch: int | None = None  # smoke runs
    time_budget_s: float | None = None  # stop after the epoch that crosses it
    bf16: bool = True  # bf16 autocast on CUDA; off = fp32 everywhere (reference reproductions)
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    history: list[dict[str, Any]]  # one row per epoch: loss parts, seconds, validation metrics if any
    best_epoch: int | None  # by validation NDCG@10; None without validation
    best_validation: dict[str, Any] | None
    wall_s: float
    steps: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices and embeddings, none on biases, norms and positions."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.ndim >= 2 and "position_embedding" not in name else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def train_next_token(
    model: PantherModel,
    train_seqs: Sequences,
    features: UserFeatures,
    config: TrainConfig,
    validation: EvalData | None = None,
) -> TrainResult:
    """Train `model` in place on next-token prediction (+ its contrastive term) and return the history."""
    device = resolve_device(config.device)
    model.to(device).train()
    spec = WindowSpec(model.config.max_len, config.batch_size, config.window_mode, config.seed)
    batches = TrainBatches(train_seqs, features, spec)
    optimizer = make_optimizer(model, config)
    loss_fn = config.loss.build()
    torch.manual_seed(config.seed)  # dropout and negative sampling
    history: list[dict[str, Any]] = []
    best_ndcg, best_epoch, best_metrics, best_state, stale = -1.0, None, None, None, 0
    steps, start = 0, time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        sums = torch.zeros(3, device=device)  # on the device: no host sync per step
        n_steps = batches.n_batches(epoch)
        if config.max_steps_per_epoch is not None:
            n_steps = min(n_steps, config.max_steps_per_epoch)
        done = 0
        with progress_bar(
            f"{model.config.name} epoch {epoch + 1}/{config.epochs}", n_steps, config.progress
        ) as bar:
            for batch in batches.epoch(epoch):
                if done >= n_steps:
                    break
                with autocast(device, config.bf16):
                    parts = model.training_loss(batch.to(device), loss_fn)
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                values = torch.stack([parts.total, parts.generative, parts.contrastive]).detach().float()
                sums += values
                done += 1
                bar.advance(info=f"loss {values[0]:.4f}" if config.progress else "")
        steps += done
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(sums[0] / max(done, 1)),
            "generative": float(sums[1] / max(done, 1)),
            "contrastive": float(sums[2] / max(done, 1)),
            "steps": done,
            "seconds": time.perf_counter() - epoch_start,
        }
        last_epoch = epoch + 1 == config.epochs
        out_of_time = config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s
        if validation is not None and (
            last_epoch or out_of_time or (epoch + 1) % max(config.eval_every, 1) == 0
        ):
            metrics = evaluate_next_token(model, validation, device, config.eval_batch_size, bf16=config.bf16)
            row["validation"] = metrics
            if metrics["NDCG@10"] > best_ndcg:
                best_ndcg, best_epoch, best_metrics, stale = metrics["NDCG@10"], epoch + 1, metrics, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(row)
        patience_over = config.early_stopping_patience is not None and stale > config.early_stopping_patience
        if out_of_time or patience_over:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(history, best_epoch, best_metrics, time.perf_counter() - start, steps, str(device))
