"""`python -m models.bench.step_profile`: one training step of each ML-1M ladder variant, alone, profiled.

Why: the first device run of the ladder (8 processes sharing one H200, docs/BENCHMARKS.md) took 17 s per
epoch for SASRec and ~5 min for the relative-bias variants. This times a step of each variant in one
process at the ladder's shapes (B = 128, T = 200, d = 50, V = 3,710, full softmax, fp32) on synthetic
tokens, then lists the operators that take the device time, so the slow one is named, not guessed.
Variants that isolate the suspects: the bias through SDPA vs the naive attention, position-only bias.
Prints one JSON object; `--top` operators per variant from `torch.profiler`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from models.batch import SequenceBatch
from models.losses import LossConfig
from models.panther import PantherModel, panther_config, sasrec_config
from models.training.runtime import autocast, resolve_device
from models.training.trainer import TrainConfig, make_optimizer

SHAPE = {"max_len": 200, "d_model": 50, "dropout": 0.2, "similarity": "cosine"}
DEEP = {"n_layers": 8, "n_heads": 2}
RAB = {"relative_bias": "position_time"}
CARDS = (7, 2, 21, 10)  # ML-1M's profile: age, gender, occupation, region
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sasrec": ("sasrec", {}),
    "sasrec_pos": ("sasrec", {"relative_bias": "position"}),
    "sasrec_rab": ("sasrec", RAB),
    "sasrec_rab_naive": ("sasrec", RAB | {"attention_impl": "naive"}),
    "sasrec_rab_deep": ("sasrec", RAB | DEEP),
    "panther_rab_deep": ("panther", RAB | DEEP),
}


def synthetic_batch(vocab: int, batch: int, width: int, seed: int = 0) -> SequenceBatch:
    """Full-length rows of random items, a rating every ~minute to ~day, ML-1M-like demographics."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab, (batch, width + 1), generator=g)
    gaps = torch.randint(1, 86_400_000, (batch, width), generator=g).cumsum(1)
    demographics = torch.stack([torch.randint(1, 8, (batch,), generator=g)] * 2, 1).float()
    profile = torch.stack([torch.randint(1, c + 1, (batch,), generator=g) for c in CARDS], 1)
    return SequenceBatch(
        tokens=tokens[:, :-1],
        lengths=torch.full((batch,), width),
        profile=profile,
        targets=tokens[:, 1:].contiguous(),
        demographics=demographics,
        times=gaps,
    )


def profile_variant(
    name: str, device: torch.device, steps: int, top: int, bf16: bool, batch_size: int = 128, width: int = 200
) -> dict[str, Any]:
    kind, overrides = VARIANTS[name]
    vocab = 3_710
    shape = SHAPE | {"max_len": width}
    config = (
        sasrec_config(vocab, **shape | overrides)
        if kind == "sasrec"
        else panther_config(vocab, CARDS, **shape | overrides)
    )
    model = PantherModel(config).to(device).train()
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.0))
    loss_fn = LossConfig(kind="full", temperature=0.05).build()
    batch = synthetic_batch(vocab, batch_size, width).to(device)

    def step() -> None:
        with autocast(device, bf16):
            parts = model.training_loss(batch, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer.step()

    def synced() -> float:
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(2):
        synced()
    times = [synced() for _ in range(steps)]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        synced()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ops = []
    for event in sorted(prof.key_averages(), key=lambda e: -getattr(e, sort, 0.0))[:top]:
        ops.append(
            {
                "op": event.key,
                "calls": event.count,
                "self_device_ms": round(getattr(event, "self_device_time_total", 0.0) / 1000, 2),
                "self_cpu_ms": round(event.self_cpu_time_total / 1000, 2),
            }
        )
    return {"step_ms_median": round(1000 * statistics.median(times), 1), "ops": ops}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=SHAPE["max_len"])
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "variants": {}}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    for name in args.variants.split(","):
        out["variants"][name] = profile_variant(
            name, device, args.steps, args.top, args.bf16, args.batch_size, args.width
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
