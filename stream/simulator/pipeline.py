"""`simulate`: world → legitimate activity → fraud → frames, and `write_dataset` for the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .batch import Events
from .behaviour import legit_transactions
from .config import SimulatorConfig
from .frames import profiles_frame, transactions_frame
from .openings import open_accounts
from .population import build_world
from .scenarios import inject_fraud

Progress = Callable[[str, float], None]
# share of the overall run each stage covers (measured at 20,000 users × 60 days)
STAGES: dict[str, tuple[float, float]] = {
    "population": (0.0, 0.05),
    "legit": (0.05, 0.4),
    "fraud": (0.4, 0.45),
    "assemble": (0.45, 1.0),
}


def simulate(config: SimulatorConfig, progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, profiles) for `config`; identical for equal configs.

    `progress(stage, fraction)` gets the current stage (population, legit, fraud, assemble) and the
    overall completion in [0, 1], non-decreasing, ending at ("assemble", 1.0): one bar can show it.
    Separate random streams for the world, legitimate spending and fraud mean that changing only
    `fraud_rate` or the scenario mix leaves the legitimate transactions untouched.
    """

    def tick(stage: str, fraction: float) -> None:
        if progress is not None:
            lo, hi = STAGES[stage]
            progress(stage, lo + (hi - lo) * fraction)

    # a fourth stream for the openings: the first three are what they were (spawn is index-keyed)
    world_seed, legit_seed, fraud_seed, openings_seed = np.random.SeedSequence(config.seed).spawn(4)
    tick("population", 0.0)
    world = build_world(config, np.random.default_rng(world_seed))
    tick("population", 1.0)
    legit, _ = legit_transactions(world, np.random.default_rng(legit_seed), tick)
    world, legit, opened = open_accounts(world, legit, np.random.default_rng(openings_seed))
    fraud, extra_devices = inject_fraud(world, legit, np.random.default_rng(fraud_seed), opened)
    tick("fraud", 1.0)
    events = Events.concat([legit, fraud])
    tick("assemble", 0.1)
    txns = transactions_frame(world, events, extra_devices)
    profiles = profiles_frame(world)
    tick("assemble", 1.0)
    return txns, profiles


def write_dataset(txns: pd.DataFrame, profiles: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Writes `transactions.parquet` and `profiles.parquet` into `out_dir` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"transactions": out / "transactions.parquet", "profiles": out / "profiles.parquet"}
    txns.to_parquet(paths["transactions"], index=False)
    profiles.to_parquet(paths["profiles"], index=False)
    return paths
