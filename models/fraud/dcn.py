"""Deep & Cross Network (DCN-v2, Wang et al. 2021): the fusion network g_φ of the hybrid head.

    x0 (B, D) ─┬─ cross layers: x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l   (explicit bounded-degree crosses)
               └─ deep MLP                                            (implicit interactions)
               concat ──► linear ──► logit (B,)

`cross_rank=None` gives the full-rank W_l (D × D); an int r gives the low-rank form W_l = U_l V_lᵀ
(D × r each), cheaper when D is large.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DCNConfig:
    input_dim: int
    cross_layers: int = 3
    cross_rank: int | None = None  # None: full-rank DCN-v2; r: low-rank U Vᵀ
    deep_dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CrossLayer(nn.Module):
    """One DCN-v2 cross: (x0, x) (B, D) each → x0 ⊙ (W x + b) + x (B, D)."""

    def __init__(self, dim: int, rank: int | None = None) -> None:
        super().__init__()
        if rank is None:
            self.project: nn.Module = nn.Linear(dim, dim)
        else:
            self.project = nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim))
        nn.init.zeros_(self._last().bias)

    def _last(self) -> nn.Linear:
        return self.project if isinstance(self.project, nn.Linear) else self.project[-1]

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.project(x) + x


class DCN(nn.Module):
    """(B, D) → logit (B,).

    >>> net = DCN(DCNConfig(input_dim=6, cross_layers=2, deep_dims=(8,)))
    >>> net(torch.zeros(3, 6)).shape
    torch.Size([3])
    """

    def __init__(self, config: DCNConfig) -> None:
        super().__init__()
        self.config = config
        self.cross = nn.ModuleList(
            CrossLayer(config.input_dim, config.cross_rank) for _ in range(config.cross_layers)
        )
        layers: list[nn.Module] = []
        width = config.input_dim
        for dim in config.deep_dims:
            layers += [nn.Linear(width, dim), nn.ReLU(), nn.Dropout(config.dropout)]
            width = dim
        self.deep = nn.Sequential(*layers)
        self.out = nn.Linear(config.input_dim + width, 1)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.out(torch.cat([x, self.deep(x0)], dim=1)).squeeze(1)
