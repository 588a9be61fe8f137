"""An ensemble of fraud heads: M fusion networks fitted with different seeds, their logits averaged.

Why: one fit of the residual head on ~1,000 training frauds varies a lot with its seed (docs/
BENCHMARKS.md, issue 17: single fits ranged from 2.2 points behind the fair trees to 2.6 ahead at an
alert budget of 10 %), while every ensemble of three seeds measured was level with the trees or ahead.

The members share one standardization (member 0's statistics, copied into the others before they
train: `models.fraud.train.fit_ensemble`), so the blocks the reasons attribute over are the same for
all of them, and `HeadEnsemble` is called like a single `FraudHead`: `blocks` is member 0's, `fuse`
the mean of the members' logits (B,). Integrated gradients of a mean are the mean of the members'.
Only heads that read inputs computed outside the head qualify: a TextCNN or a fine-tuned encoder is
the member's own, and the cached state keeps one sequence input per user.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fraud.head import FraudHead, HeadConfig, HeadInputs

DEFAULT_MEMBERS = 3


class HeadEnsemble(nn.Module):
    """M `FraudHead`s of one config and one standardization → the mean of their logits (B,).

    >>> from models.fraud.head import head_config
    >>> config = head_config("hybrid_panther", n_features=4, d_model=8, deep_dims=(8,))
    >>> ensemble = HeadEnsemble([FraudHead(config), FraudHead(config)])
    >>> x = HeadInputs(torch.zeros(2, 4), hidden=torch.zeros(2, 8), user=torch.zeros(2, 8),
    ...                deviation=torch.zeros(2, 5))
    >>> ensemble(x).shape, len(ensemble)
    (torch.Size([2]), 2)
    """

    def __init__(self, members: list[FraudHead]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one head")
        config = members[0].config
        check_ensemble_config(config)
        if any(m.config != config for m in members):
            raise ValueError("the heads of an ensemble must share one config")
        self.config: HeadConfig = config
        self.members = nn.ModuleList(members)

    def __len__(self) -> int:
        return len(self.members)

    def blocks(self, inputs: HeadInputs) -> dict[str, torch.Tensor]:
        return self.members[0].blocks(inputs)

    def baselines(self, blocks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.members[0].baselines(blocks)

    def fuse(self, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([member.fuse(blocks) for member in self.members]).mean(dim=0)

    def forward(self, inputs: HeadInputs) -> torch.Tensor:
        return self.fuse(self.blocks(inputs))


def check_ensemble_config(config: HeadConfig, fine_tune: bool = False) -> None:
    """One clear line when a head cannot be an ensemble member (module docstring: why)."""
    if config.sequence == "textcnn":
        raise ValueError("an ensemble of heads needs a head without its own sequence encoder "
                         "(not hybrid_textcnn): use --heads 1")
    if fine_tune:
        raise ValueError("an ensemble of heads cannot fine-tune the encoder: use --heads 1")
