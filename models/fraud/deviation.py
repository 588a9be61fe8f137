"""Behaviour deviation (paper §3.5): how unlikely is this transaction *for this user*?

    P_u(x)  = the pretrained model's probability of x's token given u's window (its last ≤ L tokens)
    Δ       = (P_u(x) − μ_u) / σ_u      μ_u, σ_u over u's PAST predicted probabilities (before x)
    Δ_log   = the same on log P_u(x)    (probabilities of rare tokens differ by orders of magnitude)
    surprise = −log P_u(x)

μ_u/σ_u are Welford statistics in `UserState.prob_stats()`, updated with P_u(x) *after* scoring x.
Cold users — fewer than `min_history` past predictions — get Δ = Δ_log = 0 and `cold` = 1, so the head
learns a separate intercept for them instead of reading a z-score of two numbers. σ has a floor (a user
whose tokens were always predicted with the same probability would otherwise divide by 0), and Δ is
clipped to ±`clip`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

DEVIATION_NAMES: tuple[str, ...] = ("deviation", "deviation_log", "surprise", "probability", "cold")


@dataclass(frozen=True)
class DeviationConfig:
    min_history: int = 5  # past predictions needed before Δ is trusted
    sigma_floor: float = 0.01  # on P (a probability)
    log_sigma_floor: float = 0.1  # on log P (nats)
    clip: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviationConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def deviation_features(logp: torch.Tensor, stats: torch.Tensor, config: DeviationConfig) -> torch.Tensor:
    """logp (B,) log P_u(x), stats (B, 5) = (n, μ_P, σ_P, μ_logP, σ_logP) before x → (B, 5) float32.

    Columns follow `DEVIATION_NAMES`: Δ, Δ_log, surprise, P, cold.

    >>> stats = torch.tensor([[10.0, 0.2, 0.05, -2.0, 0.5], [1.0, 0.2, 0.0, -1.6, 0.0]])
    >>> deviation_features(torch.log(torch.tensor([0.1, 0.1])), stats, DeviationConfig()).round(decimals=3)
    tensor([[-2.0000, -0.6050,  2.3030,  0.1000,  0.0000],
            [ 0.0000,  0.0000,  2.3030,  0.1000,  1.0000]])
    """
    logp = logp.double()
    stats = stats.double()
    n, mu, sigma, mu_log, sigma_log = stats.unbind(dim=1)
    p = logp.exp()
    warm = n >= config.min_history
    delta = ((p - mu) / sigma.clamp(min=config.sigma_floor)).clamp(-config.clip, config.clip)
    delta_log = (logp - mu_log) / sigma_log.clamp(min=config.log_sigma_floor)
    delta_log = delta_log.clamp(-config.clip, config.clip)
    zero = torch.zeros_like(delta)
    out = torch.stack(
        [torch.where(warm, delta, zero), torch.where(warm, delta_log, zero), -logp, p, (~warm).double()],
        dim=1,
    )
    return out.float()
