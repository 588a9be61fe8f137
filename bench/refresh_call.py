"""What one encoder refresh call costs, with glibc's defaults and with freed memory kept:
`python bench/refresh_call.py [--size demo|panther] [--json]`.

The in-process scorer's `refresh_sync` (the cached path's encoder call: the rows of `plan_windows`,
one state read per row) on `panther bench stream`'s demo or PANTHER-size model, full windows of L
random tokens, one torch thread, as the worker runs it. The memory setting is process-wide and cannot
be undone, so each round runs two fresh processes, alternating: glibc's defaults (`retain_mb` 0) and
PANTHER_MALLOC_RETAIN_MB's default (`triton_repo.runner.retain_freed_memory`). Reported: the median
ms per call of each over `--rounds` rounds, and the page faults per call.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
from timing import per_call_ms  # bench/timing.py

from stream.bench_stream import default_model
from stream.cli import emit
from stream.settings import Settings


def child(size: str, rows: list[int], retain_mb: int) -> dict[str, list[float]]:
    """In this process: {rows: [ms per call, page faults per call]}."""
    from models.fraud.window_plan import plan_windows
    from stream.scoring import InProcessScorer, RefreshRequest

    model, _ = default_model(Settings().home, size)
    scorer = InProcessScorer.from_artifact(model, threads=1, retain_mb=retain_mb)
    length, fields = scorer.max_len, max(scorer.info.n_profile, 1)
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {}
    for b in rows:
        windows = [list(rng.integers(5, scorer.info.vocab_size, size=length)) for _ in range(b)]
        plan = plan_windows(windows, [np.zeros(fields, dtype=np.int64)] * b, list(range(b)))
        request = RefreshRequest(tokens=plan.tokens, lengths=plan.lengths, profile=plan.profile,
                                 positions=plan.positions)  # fmt: skip
        calls = max(10, 4000 // (b * length // 8 + 1))
        scorer.refresh_sync(request)  # the first call's pages are new either way: not counted
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ms = per_call_ms(lambda request=request: scorer.refresh_sync(request), calls)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (calls + 1)
        out[str(b)] = [ms, faults]
    return out


@click.command()
@click.option("--size", type=click.Choice(["demo", "panther"]), default="demo", show_default=True)
@click.option("--rows", default="1,8,32,250", show_default=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--child-retain-mb", type=int, default=None, hidden=True)
@click.option("--json", "as_json", is_flag=True)
def main(size: str, rows: str, rounds: int, child_retain_mb: int | None, as_json: bool) -> None:
    counts = [int(r) for r in rows.split(",")]
    if child_retain_mb is not None:
        print(json.dumps(child(size, counts, child_retain_mb)))
        return
    default_model(Settings().home, size)  # trained once, before anything is timed
    settings = {"glibc_defaults": 0, "retained": Settings().malloc_retain_mb}
    runs: dict[str, list[dict[str, list[float]]]] = {name: [] for name in settings}
    for _ in range(rounds):
        for name, megabytes in settings.items():
            done = subprocess.run([sys.executable, str(Path(__file__)), "--size", size, "--rows", rows,
                                   "--child-retain-mb", str(megabytes)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            runs[name].append(json.loads(done.stdout.splitlines()[-1]))
    def median(name: str, column: int, digits: int | None) -> dict[str, float]:
        got = runs[name]
        return {b: round(statistics.median(r[b][column] for r in got), digits) for b in got[0]}

    result = {
        "size": size,
        "rounds": rounds,
        "retain_mb": settings["retained"],
        "ms_per_call": {name: median(name, 0, 3) for name in settings},
        "page_faults_per_call": {name: median(name, 1, None) for name in settings},
    }
    if as_json:
        emit(result, as_json=True)
        return
    print(f"refresh_sync, {size} model, ms per call (page faults per call), median of {rounds} rounds")
    for b in result["ms_per_call"]["retained"]:
        cells = [f"{result['ms_per_call'][n][b]:.2f} ({result['page_faults_per_call'][n][b]})"
                 for n in settings]  # fmt: skip
        print(f"{b:>5} rows  " + "   ".join(f"{n}: {c}" for n, c in zip(settings, cells, strict=True)))


if __name__ == "__main__":
    main()
