"""The refresh's encoder call three ways, alone and beside a busy Python thread (the GIL).

The worker refreshes cached states in a thread next to its event loop; this measures what that costs
each way: the full forward (every position of every block: the reference, and what the refresh served
before 2026-12-07), eagerly and as a frozen TorchScript graph, and the read of each window's last
position (`PantherModel.hidden_at`: the last block only there), eagerly and as the frozen graph the
worker serves (models/fraud/traced.py). Prints one JSON object.

    python bench/encoder_gil.py [--model DIR] [--rows 250] [--calls 10] [--switch-interval-s 0.0005]

The default model is the stream bench's demo model (`panther bench stream` builds it on first use).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

from models.batch import SequenceBatch
from models.fraud.scorer import FraudScorer
from models.fraud.traced import TracedEncoder

DEFAULT_MODEL = Path.home() / ".cache/panther/bench-stream/model"


class Spinner:
    """A pure-Python thread counting loop iterations: how much of the GIL the other thread leaves it."""

    def __init__(self) -> None:
        self.count, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._spin)

    def _spin(self) -> None:
        while not self.stop.is_set():
            self.count += 1

    def run_for(self, work: object) -> tuple[float, float]:
        """Spin while `work()` runs; → (seconds, iterations/s)."""
        self.thread.start()
        started = time.perf_counter()
        work()  # type: ignore[operator]
        elapsed = time.perf_counter() - started
        self.stop.set()
        self.thread.join()
        return elapsed, self.count / elapsed


def _forwards(forward: object, batch: SequenceBatch, calls: int) -> None:
    with torch.inference_mode():
        for _ in range(calls):
            forward(batch)  # type: ignore[operator]


class _Full(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        return self.model(SequenceBatch(tokens=tokens, lengths=lengths, profile=profile))


def _variants(model: torch.nn.Module, batch: SequenceBatch) -> dict[str, object]:
    """name → batch → hidden states, as the refresh calls each."""
    last = (batch.lengths - 1).unsqueeze(1)  # (B, 1): each window's state for its next event
    traced = TracedEncoder(model)  # type: ignore[arg-type]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-derived constants
        example = (batch.tokens, batch.lengths, batch.profile)
        full = torch.jit.freeze(torch.jit.trace(_Full(model).eval(), example, check_trace=False))
    return {
        "eager_full": model,
        "torchscript_full": lambda b: full(b.tokens, b.lengths, b.profile),
        "eager_last": lambda b: model.hidden_at(b, last),  # type: ignore[operator]
        "torchscript_last": lambda b: traced(b, last),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rows", type=int, default=250)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--switch-interval-s", type=float, default=0.0005)  # the worker's default
    args = parser.parse_args()
    if not args.model.is_dir():
        sys.exit(f"--model {args.model}: no such artefact (run `panther bench stream` once to build it)")
    torch.set_num_threads(1)
    sys.setswitchinterval(args.switch_interval_s)
    model = FraudScorer.from_artifact(args.model).encoder
    config = model.config
    width = int(config.max_len)
    batch = SequenceBatch(
        tokens=torch.randint(5, config.vocab_size, (args.rows, width)),
        lengths=torch.full((args.rows,), width),
        profile=torch.zeros((args.rows, max(len(config.profile_cardinalities), 1)), dtype=torch.long),
    )
    _, alone_rate = Spinner().run_for(lambda: time.sleep(1.0))
    out: dict[str, object] = {"rows": args.rows, "width": width, "d_model": config.d_model,
                              "switch_interval_s": args.switch_interval_s,
                              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    for name, forward in _variants(model, batch).items():
        _forwards(forward, batch, 3)  # warm-up
        started = time.perf_counter()
        _forwards(forward, batch, args.calls)
        alone_ms = 1000 * (time.perf_counter() - started) / args.calls
        busy_s, rate = Spinner().run_for(lambda f=forward: _forwards(f, batch, args.calls))
        out[name] = {"alone_ms": round(alone_ms, 2), "beside_python_ms": round(1000 * busy_s / args.calls, 2),
                     "python_thread_speed": round(rate / alone_rate, 2)}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
