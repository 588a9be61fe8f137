"""Peak memory and time per training step: SPRM-only vs full attention (the paper's App. B.4 table).

Variants (all 4 layers, d = 64, 2 heads, full softmax over a small vocabulary so the head does not
dominate; only the sequence mixer differs):

- `sprm`            — SPRM-only blocks (`use_attention=False`): O(T) memory;
- `sprm_recompute`  — the same, recomputing SPRM in the backward pass (`sprm_recompute=True`): only each
  block's SPRM input is kept, as fused attention keeps only q, k, v and recomputes its scores;
- `attention_naive` — attention-only blocks materializing the (T, T) scores: the paper's "Transformer";
- `attention_sdpa`  — attention-only blocks through PyTorch's fused SDPA kernel (flash / memory-efficient
  when the backend has one), i.e. what a modern Transformer costs.

How memory is measured, and why:
- CUDA: `torch.cuda.max_memory_allocated()` minus the allocation before the step — exact tensor bytes.
- CPU, `peak_mb`: the same quantity — the peak bytes of live tensors during one step above those alive
  before it (`models.bench.live_memory.LiveTensorBytes`), exact and repeatable. The ratios use it.
- CPU, `peak_rss_mb`: what the process really took — the RSS high-water mark (`ru_maxrss`) above the
  resident set before the measured steps, each case in a FRESH subprocess (the only clean high-water
  mark: CPU allocators keep freed pages, and earlier cases would mask later ones). It includes allocator
  overhead and fragmentation and varies by ±10 % between identical runs.
A warm-up step on a length-8 batch runs first, so one-off allocations (optimizer state, kernel
workspaces, lazy library init) are part of the baseline, not of the measured step.
Time is the mean wall time of the steps after the first measured one.
Cases whose naive-attention score tensors alone would exceed `memory_cap_gb` are skipped (reported as
such) instead of risking the machine; a case that runs past `case_timeout_s` is reported as a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.batch import SequenceBatch
from models.bench.live_memory import LiveTensorBytes
from models.losses import FullSoftmaxLoss
from models.panther import PantherConfig, PantherModel, sasrec_config, sprm_only_config
from models.training.runtime import autocast, resolve_device

VARIANTS: dict[str, dict[str, Any]] = {
    "sprm": {"use_attention": False, "use_sprm": True},
    "sprm_recompute": {"use_attention": False, "use_sprm": True, "sprm_recompute": True},
    "attention_naive": {"attention_impl": "naive"},
    "attention_sdpa": {"attention_impl": "sdpa"},
}


@dataclass(frozen=True)
class MemoryCase:
    variant: str
    length: int
    batch_size: int = 4
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 2
    vocab_size: int = 1000
    dropout: float = 0.0  # attention dropout would force PyTorch's CPU SDPA off its fused kernel
    steps: int = 3
    device: str = "cpu"
    seed: int = 0

    def model_config(self) -> PantherConfig:
        common = {
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "max_len": self.length,
            "dropout": self.dropout,
        }
        overrides = VARIANTS[self.variant]
        factory = sprm_only_config if overrides.get("use_sprm") else sasrec_config
        return factory(self.vocab_size, **common, **overrides)

    def naive_scores_bytes(self) -> int:
        """Bytes of the (B, h, T, T) fp32 tensors one naive layer keeps for backward (scores + probs)."""
        return 2 * 4 * self.batch_size * self.n_heads * self.length**2 * self.n_layers


def measure_case(case: MemoryCase) -> dict[str, Any]:
    """Run `case.steps` training steps in this process → {"peak_mb", "step_s", ...}."""
    device = resolve_device(case.device)
    torch.manual_seed(case.seed)
    model = PantherModel(case.model_config()).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = FullSoftmaxLoss()

    def make_batch(length: int) -> SequenceBatch:
        tokens = torch.randint(4, case.vocab_size, (case.batch_size, length + 1))
        return SequenceBatch(
            tokens=tokens[:, :-1],
            lengths=torch.full((case.batch_size,), length),
            profile=torch.zeros(case.batch_size, 0, dtype=torch.long),
            targets=tokens[:, 1:],
        ).to(device)

    def step(batch: SequenceBatch) -> None:
        with autocast(device):
            loss = model.training_loss(batch, loss_fn).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(make_batch(min(8, case.length)))  # one-off costs (optimizer state, kernel workspaces) leave the peak
    batch = make_batch(case.length)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _current_rss_bytes()
    times = []
    for _ in range(max(case.steps, 2)):
        start = time.perf_counter()
        step(batch)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    timing = {"step_s": round(sum(times[1:]) / len(times[1:]), 4), "first_step_s": round(times[0], 4)}
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - before) / 2**20
        return {"peak_mb": round(peak_mb, 1), **timing, "method": "cuda_max_allocated"}
    rss_mb = (_peak_rss_bytes() - before) / 2**20
    with LiveTensorBytes() as live:  # after the timed steps: the tracker slows every op
        step(batch)
    return {
        "peak_mb": round(live.peak / 2**20, 1),
        "peak_rss_mb": round(rss_mb, 1),
        **timing,
        "method": "live_tensor_bytes",
    }


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _run_in_subprocess(case: MemoryCase, timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "models.bench.sprm_memory", "--case", json.dumps(asdict(case))]
    root = str(Path(__file__).resolve().parents[2])  # the checkout holding `models/`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout_s}
    if done.returncode != 0:
        return {"status": "failed", "returncode": done.returncode, "stderr": done.stderr[-500:]}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def _run_in_process(case: MemoryCase) -> dict[str, Any]:
    try:
        return {"status": "ok", **measure_case(case)}
    except torch.cuda.OutOfMemoryError:
        return {"status": "OOM"}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_sprm_memory_bench(
    lengths: tuple[int, ...] = (512, 1024, 2048, 4096, 8192),
    variants: tuple[str, ...] = ("sprm", "sprm_recompute", "attention_naive", "attention_sdpa"),
    batch_size: int = 4,
    steps: int = 3,
    device: str = "auto",
    memory_cap_gb: float = 4.0,
    case_timeout_s: float = 300.0,
    budget_s: float | None = None,
    **case_overrides: Any,
) -> dict[str, Any]:
    """Every (variant, length) → peak memory (MiB) and seconds per training step; JSON-able.

    `memory_cap_gb` skips naive-attention cases whose score tensors alone exceed it (on CUDA an OOM is
    caught and reported instead); `budget_s` stops starting new cases once spent.
    """
    dev = resolve_device(device)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for length in lengths:
        for variant in variants:
            if variant not in VARIANTS:
                raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
            case = MemoryCase(variant, length, batch_size, steps=steps, device=str(dev), **case_overrides)
            row: dict[str, Any] = {"variant": variant, "length": length}
            if budget_s is not None and time.perf_counter() - start > budget_s:
                row["status"] = "skipped: time budget spent"
            elif (
                dev.type == "cpu"
                and variant == "attention_naive"
                and case.naive_scores_bytes() > memory_cap_gb * 2**30
            ):
                row["status"] = (
                    f"skipped: naive scores need ~{case.naive_scores_bytes() / 2**30:.1f} GiB > cap"
                )
            else:
                row |= (
                    _run_in_subprocess(case, case_timeout_s) if dev.type == "cpu" else _run_in_process(case)
                )
            rows.append(row)
    reference = MemoryCase("sprm", 0, batch_size, steps=steps, device=str(dev), **case_overrides)
    return {
        "benchmark": "sprm-memory",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(dev),
        "setup": {k: v for k, v in asdict(reference).items() if k not in ("variant", "length")},
        "results": rows,
        **{
            f"ratios_{mine}_over_{theirs.removeprefix('attention_')}": _ratios(rows, mine, theirs)
            for mine in ("sprm", "sprm_recompute")
            for theirs in ("attention_naive", "attention_sdpa")
        },
        "wall_s": round(time.perf_counter() - start, 1),
    }


def _ratios(rows: list[dict[str, Any]], mine: str, other: str) -> dict[str, float]:
    """length → peak of `mine` ÷ peak of `other`, where both ran."""
    ok = {(r["variant"], r["length"]): r for r in rows if r.get("status") == "ok"}
    return {
        str(length): round(ok[(mine, length)]["peak_mb"] / ok[(other, length)]["peak_mb"], 3)
        for (variant, length) in ok
        if variant == other and (mine, length) in ok and ok[(other, length)]["peak_mb"] > 0
    }


def _machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, help="a MemoryCase as JSON (internal: one measurement)")
    case = MemoryCase(**json.loads(parser.parse_args().case))
    print(json.dumps(measure_case(case)))


if __name__ == "__main__":
    main()
