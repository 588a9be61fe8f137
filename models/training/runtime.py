"""Device choice, mixed precision and seeding — the only places training code touches the hardware."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" → CUDA when available, else CPU; "cuda" without a GPU is an error (no silent fallback)."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no GPU (use --device auto or cpu)")
    return torch.device(name)


@contextlib.contextmanager
def autocast(device: torch.device, bf16: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA unless `bf16` is off; fp32 on CPU (CPU bf16 is slower and changes numbers)."""
    if device.type == "cuda" and bf16:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so a model's initialization is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
