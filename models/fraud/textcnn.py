"""TextCNN over the token embeddings of a user's last ≤ 100 transactions (the paper's f_enc, §3.5).

Kim (2014): embed tokens, 1-D convolutions of several widths, ReLU, max over time, concatenate. Trained
with the fraud head (not pretrained). Windows are right-padded; each convolution is left-padded so a
window shorter than the kernel still yields outputs, and outputs at padded positions are masked out of
the max. An empty window is the single token [UNK] (the convention of `models.loaders`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.batch import PAD_ID


@dataclass(frozen=True)
class TextCNNConfig:
    vocab_size: int
    embed_dim: int = 32
    kernels: tuple[int, ...] = (2, 3, 5)
    filters: int = 32
    dropout: float = 0.1

    @property
    def out_dim(self) -> int:
        return self.filters * len(self.kernels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextCNN(nn.Module):
    """tokens (B, T) int64, lengths (B,) → (B, filters · len(kernels)).

    >>> enc = TextCNN(TextCNNConfig(vocab_size=10, embed_dim=4, kernels=(2, 3), filters=5))
    >>> enc(torch.tensor([[4, 5, 0], [6, 0, 0]]), torch.tensor([2, 1])).shape
    torch.Size([2, 10])
    """

    def __init__(self, config: TextCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(config.embed_dim, config.filters, k) for k in config.kernels)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)  # (B, e, T)
        real = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]  # (B, T)
        pooled = []
        for conv in self.convs:
            y = F.relu(conv(F.pad(x, (conv.kernel_size[0] - 1, 0))))  # (B, filters, T), causal alignment
            y = y.masked_fill(~real[:, None, :], float("-inf")).amax(dim=2)
            pooled.append(torch.nan_to_num(y, neginf=0.0))
        return self.dropout(torch.cat(pooled, dim=1))
