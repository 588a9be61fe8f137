"""User profile: the learnable profile representation and the demographic contrastive loss (paper §3.4).

`ProfileEncoder` turns categorical profile ids (B, P) into one vector (B, d): the sum of one embedding per
field, then a linear layer. PANTHER adds it to every position ("profile as positional encoding") or
prepends it as a first token; it is also the user embedding e_u served to the fraud head.

`info_nce` is a supervised InfoNCE (SupCon form) over in-batch user representations: positives are the
other users whose demographics match under a `DemographicRule` (default: |age_i − age_j| ≤ 2 and same
region), every other user is a negative in the denominator; anchors without a positive are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ProfileEncoder(nn.Module):
    """Profile ids (B, P) int64 (0 = missing, its own learned slot) → (B, d).

    >>> enc = ProfileEncoder(cardinalities=[3, 5], d_model=4)
    >>> enc(torch.tensor([[0, 4], [2, 1]])).shape
    torch.Size([2, 4])
    """

    def __init__(self, cardinalities: Sequence[int], d_model: int) -> None:
        super().__init__()
        if not cardinalities:
            raise ValueError("a profile encoder needs at least one profile field")
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.cardinalities = tuple(int(c) for c in cardinalities)
        self.fields = nn.Embedding(
            sum(self.cardinalities), d_model
        )  # all fields in one table, offset per field
        nn.init.normal_(self.fields.weight, std=0.02)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        limits = torch.tensor(self.cardinalities, device=profile.device)
        ids = torch.where((profile >= 0) & (profile < limits), profile, 0)  # unseen ids → the missing slot
        return self.proj(self.fields(ids + self.offsets).sum(dim=1))


@dataclass(frozen=True)
class DemographicRule:
    """Which users count as demographically alike: |x_i,c − x_j,c| ≤ tolerances[c] for every column c.

    Columns follow the batch's `demographics` (B, D) (the profile schema's demographic fields, by default
    age then region code); a tolerance of 0 means "equal". NaN (missing) never matches.
    """

    tolerances: tuple[float, ...] = (2.0, 0.0)

    def positives(self, demographics: torch.Tensor) -> torch.Tensor:
        """(B, D) float → (B, B) bool, True where i ≠ j are alike (never, for a rule without columns)."""
        if not self.tolerances:
            return torch.zeros(
                len(demographics), len(demographics), dtype=torch.bool, device=demographics.device
            )
        d = demographics[:, : len(self.tolerances)].float()
        if d.shape[1] < len(self.tolerances):
            raise ValueError(f"rule needs {len(self.tolerances)} demographic columns, batch has {d.shape[1]}")
        tol = torch.tensor(self.tolerances, dtype=d.dtype, device=d.device)
        close = (d.unsqueeze(1) - d.unsqueeze(0)).abs() <= tol  # NaN compares False
        alike = close.all(dim=-1)
        return alike & ~torch.eye(len(d), dtype=torch.bool, device=d.device)


def info_nce(z: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised InfoNCE: z (B, e), positives (B, B) bool → scalar.

    For each anchor i with positives P(i): −mean_{p∈P(i)} log(exp(s_ip/τ) / Σ_{a≠i} exp(s_ia/τ)), s = cosine.
    Averaged over anchors that have a positive; 0 (still differentiable) when no anchor has one.

    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> pos = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    >>> round(info_nce(z, pos, temperature=0.1).item(), 4)
    0.0
    """
    z = F.normalize(z.float(), dim=-1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = sim - sim.masked_fill(self_mask, float("-inf")).logsumexp(dim=1, keepdim=True)
    pos = positives.float()
    n_pos = pos.sum(dim=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~positives, 0.0) * pos).sum(dim=1)[has_pos] / n_pos[has_pos]
    return per_anchor.mean()


class ContrastiveHead(nn.Module):
    """Projection of user representations for the contrastive loss: (B, d) → (B, d).

    A separate head (SimCLR practice) lets the loss shape the shared representation without forcing the
    next-token hidden state itself onto the unit sphere of demographic clusters.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)
