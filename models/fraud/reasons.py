"""Why a transaction scored high: attribution of the fraud logit to named signals.

Integrated gradients (Sundararajan et al. 2017) over the head's input blocks (`FraudHead.blocks`):
contribution_i = (x_i − x̄_i) · mean_α ∂logit/∂x_i at x̄ + α(x − x̄), α at `steps` midpoints, where the
baseline x̄ is the training mean of each block (0 after standardization; the mean TextCNN encoding).
Contributions add up (up to the Riemann error) to logit(x) − logit(x̄): "how far above an average
transaction this one is, and because of what". `steps=1` is gradient × input at the midpoint.

Per-feature contributions are summed into signals: the transaction features by their `FeatureSchema`
signal (amount_vs_usual, new_device, velocity_1h, …), the sequence block into "sequence", e_u into
"user_profile", Δ / Δ_log / cold into "deviation" and surprise / P into "surprise". Only the head is
differentiated (the encoder outputs are inputs here), so the cost is one batched forward/backward of
the small DCN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.fraud.deviation import DEVIATION_NAMES
from models.fraud.head import FraudHead

DEVIATION_SIGNALS = {"deviation": "deviation", "deviation_log": "deviation", "cold": "deviation",
                     "surprise": "surprise", "probability": "surprise"}
BLOCK_SIGNALS = {"sequence": "sequence", "user": "user_profile"}


@dataclass(frozen=True)
class SignalMap:
    """Which signal every input dimension of every block belongs to."""

    names: tuple[str, ...]  # (S,) signal names, output column order
    index: dict[str, torch.Tensor]  # block → (dim,) int64 signal column per input dimension

    @classmethod
    def build(cls, head: FraudHead, feature_signals: Sequence[str]) -> SignalMap:
        names: list[str] = []

        def column(signal: str) -> int:
            if signal not in names:
                names.append(signal)
            return names.index(signal)

        index = {"txn": torch.tensor([column(s) for s in feature_signals], dtype=torch.long)}
        config = head.config
        if config.sequence != "none":
            index["sequence"] = torch.full((config.sequence_dim(),), column("sequence"), dtype=torch.long)
        if config.use_user:
            index["user"] = torch.full((config.d_model,), column("user_profile"), dtype=torch.long)
        if config.use_deviation:
            index["deviation"] = torch.tensor([column(DEVIATION_SIGNALS[n]) for n in DEVIATION_NAMES])
        return cls(tuple(names), index)


def integrated_gradients(
    head: FraudHead, blocks: dict[str, torch.Tensor], signals: SignalMap, steps: int = 8
) -> torch.Tensor:
    """blocks (each (B, dim)) → contributions (B, S) to the logit, grouped by `signals.names`."""
    base = head.baselines(blocks)
    b = next(iter(blocks.values())).shape[0]
    alphas = (torch.arange(steps, dtype=torch.float32, device=blocks["txn"].device) + 0.5) / steps
    with torch.enable_grad():
        path = {
            name: (base[name].unsqueeze(0) + alphas[:, None, None] * (x - base[name]).unsqueeze(0))
            .reshape(steps * b, -1).detach().requires_grad_(True)
            for name, x in blocks.items()
        }
        logits = head.fuse(path)
        grads = torch.autograd.grad(logits.sum(), list(path.values()))
    out = torch.zeros(b, len(signals.names), device=blocks["txn"].device)
    for (name, x), grad in zip(blocks.items(), grads, strict=True):
        mean_grad = grad.reshape(steps, b, -1).mean(dim=0)
        contribution = (mean_grad * (x - base[name])).detach()
        out.index_add_(1, signals.index[name].to(out.device), contribution)
    return out
