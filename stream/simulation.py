"""`panther simulate`: runs the payment simulator with a progress bar and summarises what it wrote."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stream.console import progress_bar
from stream.errors import PantherError
from stream.simulator import SimulatorConfig, simulate, write_dataset
from stream.simulator.config import DEFAULT_MIX, SCENARIOS


def parse_scenario_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """"name=weight,…" → the simulator's scenario mix; a leading "default," keeps the default mix and
    adds or re-weights the named scenarios (e.g. "default,routine_replay=0.2"). None → the default."""
    if text is None:
        return DEFAULT_MIX
    mix: dict[str, float] = {}
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if i == 0 and part == "default":
            mix |= dict(DEFAULT_MIX)
            continue
        name, sep, weight = part.partition("=")
        if not sep or name.strip() not in SCENARIOS:
            names = ", ".join(SCENARIOS)
            raise PantherError(f"scenario mix: {part!r} is not name=weight with a name in {names}")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise PantherError(f"scenario mix: {weight!r} is not a number") from None
    return tuple(mix.items())


def run_simulation(users: int, days: int, seed: int, fraud_rate: float, out_dir: Path,
                   scenario_mix: str | None = None, new_accounts: float = 0.0) -> dict[str, Any]:  # fmt: skip
    try:
        config = SimulatorConfig(users=users, days=days, seed=seed, fraud_rate=fraud_rate,
                                 scenario_mix=parse_scenario_mix(scenario_mix),
                                 new_accounts=new_accounts)  # fmt: skip
    except ValueError as exc:
        raise PantherError(f"simulate: {exc}") from None
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
