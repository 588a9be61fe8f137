"""`panther simulate`: runs the payment simulator with a progress bar and summarises what it wrote."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stream.console import progress_bar
from stream.simulator import SimulatorConfig, simulate, write_dataset


def run_simulation(users: int, days: int, seed: int, fraud_rate: float, out_dir: Path) -> dict[str, Any]:
    config = SimulatorConfig(users=users, days=days, seed=seed, fraud_rate=fraud_rate)
    started = time.perf_counter()
    with progress_bar(transient=True) as progress:
        task = progress.add_task("simulate", total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=f"simulate: {stage}")

        transactions, profiles = simulate(config, progress=report)
    simulated_s = time.perf_counter() - started
    paths = write_dataset(transactions, profiles, out_dir)
    fraud = transactions[transactions["is_fraud"]]
    return {
        "transactions": len(transactions),
        "users": len(profiles),
        "fraud_rate": round(float(transactions["is_fraud"].mean()), 5),
        "scenarios": {str(k): int(v) for k, v in fraud["fraud_scenario"].value_counts().sort_index().items()},
        "simulate_seconds": round(simulated_s, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        "files": {name: str(path) for name, path in paths.items()},
    }
