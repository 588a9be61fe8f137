"""Serving benchmark: Triton (panther_sprm) vs in-process torch, by batch size and window length L.

    python -m bench.triton_bench --json                         # CPU defaults, ~3 minutes on 2 cores
    python -m bench.triton_bench --device gpu --lengths 100 --batches 256,1024,4096 --concurrency 4

For each L: a PANTHER-sized synthetic artefact (random weights, `triton_repo.synthetic`; or `--model`),
exported for the device, served by a LocalTriton on free loopback ports. For each batch size B:
- in-process: `InProcessScorer.score_sync` (the same runner the backend calls), back to back;
- Triton: `TritonScorer.score` from `--concurrency` asyncio workers on one gRPC channel;
throughput = rows scored / wall time, latency = p50/p99 of one call (one request batch).

Client overhead (`--overhead`, at batch 1 on the first L): a trivial identity python model on the same
server gives round trip minus the server's own time per request (Triton's statistics), i.e. what the
client + gRPC + loopback cost per call; `scorer_wrapper_us` is TritonScorer's own Python per call.
Everything scores real windows (random tokens, full length L) with reasons, as the worker would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream.scoring import InProcessScorer, ScoreRequest, TritonScorer
from stream.triton_client import TritonClient
from triton_repo.export import export_model_repository
from triton_repo.schema import MODELS, SPRM
from triton_repo.server import LocalTriton

IDENTITY = "panther_identity"
IDENTITY_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x")
                .as_numpy())]) for r in requests]
"""
IDENTITY_CONFIG = """name: "panther_identity"
backend: "python"
max_batch_size: 64
input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_request(rng: np.random.Generator, b: int, length: int, info: Any) -> ScoreRequest:
    """B full windows of `length` real tokens (worst case for compute), valid profile and features."""
    cards = np.asarray(info.profile_cardinalities, dtype=np.int64)
    return ScoreRequest.from_arrays(
        tokens=rng.integers(4, info.vocab_size, (b, length)),
        lengths=np.full(b, length),
        profile=(rng.random((b, len(cards))) * cards).astype(np.int64),
        new_token=rng.integers(4, info.vocab_size, b),
        txn_features=rng.normal(size=(b, info.n_features)),
        prob_stats=np.tile([20.0, 0.01, 0.01, -6.0, 1.0], (b, 1)),
    )


def summarize(latencies: list[float], rows: int, wall_s: float) -> dict[str, float]:
    lat = np.asarray(latencies) * 1000.0
    return {
        "seq_per_s": round(rows / wall_s, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "calls": len(latencies),
    }


def bench_inprocess(scorer: InProcessScorer, request: ScoreRequest, seconds: float, min_calls: int) -> dict:
    scorer.score_sync(request)  # warm-up (allocations, kernels)
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < min_calls:
        t = time.perf_counter()
        scorer.score_sync(request)
        latencies.append(time.perf_counter() - t)
    return summarize(latencies, len(latencies) * request.size, time.perf_counter() - start)


async def run_concurrent(
    call: Callable[[], Awaitable[Any]], rows: int, concurrency: int, seconds: float, min_calls: int
) -> dict:
    await asyncio.gather(*[call() for _ in range(concurrency)])  # warm-up
    latencies: list[float] = []
    start = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() - start < seconds or len(latencies) < min_calls:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return summarize(latencies, len(latencies) * rows, time.perf_counter() - start)


async def client_overhead(url: str, scorer: TritonScorer, request: ScoreRequest, calls: int = 300) -> dict:
    """Round trip on the identity model minus the server's own time; TritonScorer's Python per call."""
    out: dict[str, Any] = {}
    async with TritonClient(url, timeout_s=10.0) as client:
        x = {"x": np.ones((1, 1), np.float32)}
        for _ in range(20):
            await client.infer(IDENTITY, x)
        before = await client.statistics(IDENTITY)
        latencies = []
        for _ in range(calls):
            t = time.perf_counter()
            await client.infer(IDENTITY, x)
            latencies.append(time.perf_counter() - t)
        after = await client.statistics(IDENTITY)
    server_ns = int(after["inference_stats"]["success"]["ns"]) - int(
        before["inference_stats"]["success"]["ns"]
    )
    server_ms = server_ns / 1e6 / calls
    rtt = np.asarray(latencies) * 1000
    out["identity_rtt_p50_ms"] = round(float(np.percentile(rtt, 50)), 3)
    out["identity_rtt_mean_ms"] = round(float(rtt.mean()), 3)
    out["identity_server_mean_ms"] = round(server_ms, 3)
    out["client_overhead_mean_ms"] = round(float(rtt.mean()) - server_ms, 3)

    class CannedClient(TritonClient):  # everything TritonScorer does except the network call
        async def infer(self, model: str, inputs: Any, outputs: Any = None, timeout_s: Any = None) -> Any:
            return canned

    canned = await scorer.client.infer(SPRM, scorer._inputs(request), scorer.sprm.outputs)
    local = TritonScorer(CannedClient(), scorer.sprm, None)
    t = time.perf_counter()
    for _ in range(calls):
        await local.score(request)
    out["scorer_wrapper_us"] = round((time.perf_counter() - t) / calls * 1e6, 1)
    return out


def _write_identity(repo: Path) -> None:
    (repo / IDENTITY / "1").mkdir(parents=True, exist_ok=True)
    (repo / IDENTITY / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (repo / IDENTITY / "1" / "model.py").write_text(IDENTITY_MODEL)


async def bench_length(args: argparse.Namespace, length: int, work: Path, overhead: bool) -> dict:
    from triton_repo.synthetic import make_artifact

    if args.model:
        model_dir = Path(args.model)
    else:
        log(f"L={length}: a synthetic artefact (V≈{args.vocab}, d={args.d_model}, {args.layers} layers)")
        model_dir = make_artifact(
            work / f"model-{length}",
            vocab=args.vocab,
            d_model=args.d_model,
            n_layers=args.layers,
            n_heads=args.heads,
            max_len=length,
        )
    repo = work / f"repo-{length}"
    export_model_repository(
        model_dir,
        repo,
        device=args.device,
        max_batch_size=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        instances=args.instances,
        precision=args.precision,
        torch_threads=args.torch_threads,
        reference=True,  # this bench measures the full-window model, panther_sprm
    )
    _write_identity(repo)
    http, grpc, metrics = _free_ports(3)
    server = LocalTriton(
        repo,
        work / "home",
        models=(*MODELS, IDENTITY),
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        data_dir=work / f"triton-{length}",
    )
    t = time.perf_counter()
    server.start(wait_s=300)
    log(f"L={length}: tritonserver ready in {time.perf_counter() - t:.1f}s at {server.grpc_url}")
    local = InProcessScorer.from_artifact(model_dir, device="cuda" if args.device == "gpu" else "cpu")
    remote = await TritonScorer.connect(server.grpc_url, timeout_s=args.timeout_s, reference=True)
    info = local.info
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"L": length, "model_version": info.model_version, "rows": rows}
    try:
        for b in args.batches:
            request = make_request(rng, b, min(length, info.max_len), info)
            row: dict[str, Any] = {"batch": b}
            if not args.skip_inprocess:
                row["inprocess"] = await asyncio.to_thread(
                    bench_inprocess, local, request, args.seconds, args.min_calls
                )
            for c in args.concurrency:
                row[f"triton_c{c}"] = await run_concurrent(
                    lambda r=request: remote.score(r), b, c, args.seconds, args.min_calls
                )
            log(f"L={length} B={b}: {json.dumps(row)}")
            rows.append(row)
        if overhead:
            result["overhead_b1"] = await client_overhead(
                server.grpc_url, remote, make_request(rng, 1, length, info)
            )
            log(f"L={length}: overhead {result['overhead_b1']}")
        stats = await remote.client.statistics(SPRM)
        result["server_batches"] = {
            "inference_count": int(stats.get("inference_count", 0)),
            "execution_count": int(stats.get("execution_count", 0)),
        }
    finally:
        await remote.close()
        await local.close()
        server.stop()
    return result


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="panther-triton-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for i, length in enumerate(args.lengths):
        results.append(await bench_length(args, length, work, overhead=args.overhead and i == 0))
    return {
        "bench": "triton",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.triton_bench", *sys.argv[1:]]),
        "machine": machine(),
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "out", "work")},
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an artefact dir (default: synthetic, one per L)")
    p.add_argument("--lengths", type=_ints, default=[50, 100, 200])
    p.add_argument("--batches", type=_ints, default=[1, 8, 64, 256, 1024])
    p.add_argument("--concurrency", type=_ints, default=[1, 2])
    p.add_argument("--seconds", type=float, default=1.0, help="per measurement (at least --min-calls calls)")
    p.add_argument("--min-calls", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--vocab", type=int, default=60_000)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=4096)
    p.add_argument("--queue-delay-us", type=int, default=500)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="intra-op threads of the stub and of in-process torch (default: 1 on cpu, torch's on gpu)",
    )
    p.add_argument("--skip-inprocess", action="store_true")
    p.add_argument("--overhead", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--work", help="working dir (default: a new temp dir)")
    p.add_argument("--out", help="also write the JSON result here")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else there")
    args = p.parse_args(argv)
    if args.torch_threads is None:
        # Two torch processes (stub + in-process) × torch's default threads on a small shared CPU
        # oversubscribe it: OpenMP barriers then cost ~100× (seen: 456 ms instead of 1.5 ms per call).
        args.torch_threads = 1 if args.device == "cpu" else 0
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    text = json.dumps(result, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        for block in result["results"]:
            for row in block["rows"]:
                log(f"L={block['L']} B={row['batch']}: {row}")


if __name__ == "__main__":
    main()
