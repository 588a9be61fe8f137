"""The encoder's read at chosen positions (`PantherModel.hidden_at`) as a frozen TorchScript graph,
for serving the refresh on a CPU.

Why: in eager mode every op returns to Python, and the thread running it needs the GIL between
kernels. The worker refreshes cached states in a thread beside its event loop, so the two took turns
on the GIL: on the demo model (250 windows × 32 tokens, one torch thread, the worker's 0.5 ms GIL
switch interval) one eager forward took 18.8 ms alone and 74.6 ms beside a busy Python thread; the
frozen graph 16.7 ms and 18.2 ms (`python bench/encoder_gil.py`, docs/BENCHMARKS.md). The graph runs
the same kernels, so its output equals the eager module's (tests hold them equal); the eager module
stays the reference path.

Only the CPU fp32 forward is traced: on a GPU, kernels are launched asynchronously (the GIL is not the
bottleneck), and the bf16 path runs under autocast, which this trace was not checked against. Models
whose attention bias reads event times are served eagerly too (`position_hidden` passes no times).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from models.batch import SequenceBatch
from models.panther import PantherModel

EncoderCall = Callable[[SequenceBatch, torch.Tensor], torch.Tensor]  # (batch, positions (B, K)) → (B, K, d)


class _Forward(torch.nn.Module):
    """tokens (B, T) int64, lengths (B,) int64, profile (B, P) int64, positions (B, K) int64
    → hidden (B, K, d) at those positions (`PantherModel.hidden_at`)."""

    def __init__(self, model: PantherModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, profile: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:  # fmt: skip
        return self.model.hidden_at(SequenceBatch(tokens=tokens, lengths=lengths, profile=profile), positions)


class TracedEncoder:
    """Called like `PantherModel.hidden_at`: a `SequenceBatch` of tokens, lengths and profile, and the
    positions (B, K) to read."""

    def __init__(self, model: PantherModel) -> None:
        length = int(model.config.max_len)
        fields = max(len(model.config.profile_cardinalities), 1)
        example = (
            torch.ones((2, length), dtype=torch.long),
            torch.tensor([length, 1], dtype=torch.long),
            torch.zeros((2, fields), dtype=torch.long),
            torch.tensor([[length - 1, 0], [0, 0]], dtype=torch.long),
        )
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-derived constants
            graph = torch.jit.trace(_Forward(model).eval(), example, check_trace=False)
            self.graph = torch.jit.freeze(graph.eval())

    def __call__(self, batch: SequenceBatch, positions: torch.Tensor) -> torch.Tensor:
        return self.graph(batch.tokens, batch.lengths, batch.profile, positions)


def serving_encoder(model: PantherModel, device: torch.device, precision: str = "fp32") -> EncoderCall:
    """The traced forward where it helps and is exact (module docstring), else the eager model."""
    traceable = device.type == "cpu" and precision == "fp32" and model.config.relative_bias == "none"
    return TracedEncoder(model) if traceable else model.hidden_at
