"""Knobs of the payment simulator, in one frozen object so a run is fully described by it (and its seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

SCENARIOS: tuple[str, ...] = (
    "account_takeover",
    "card_testing",
    "merchant_compromise",
    "geo_anomaly",
    "mule_transfer",
    "routine_replay",  # not in DEFAULT_MIX: only the order and timing of events show it (opt in)
    "new_account_takeover",  # not in DEFAULT_MIX: fraud on accounts with < 5 payments (needs new_accounts)
)

DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("account_takeover", 0.25),
    ("card_testing", 0.25),
    ("merchant_compromise", 0.20),
    ("geo_anomaly", 0.15),
    ("mule_transfer", 0.15),
)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What to simulate. Everything random is drawn from `seed`, so equal configs give equal frames."""

    users: int = 1000
    days: int = 30
    seed: int = 0
    fraud_rate: float = 0.01
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, so day 0 is a weekday
    activity: float = 1.0  # scales discretionary spending; 1.0 gives ≈1.5 transactions per user-day in all
    merchants: int | None = None  # None: derived from `users` (see n_merchants)
    warmup_fraction: float = 0.25  # fraud starts after this share of the window (capped at max_warmup_days)
    max_warmup_days: float = 14.0
    scenario_mix: tuple[tuple[str, float], ...] = field(default=DEFAULT_MIX)
    new_accounts: float = 0.0  # share of users who open their account during the window (`openings.py`)

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be ≥ 1")
        if self.days < 1:
            raise ValueError("days must be ≥ 1")
        if self.seed < 0:
            raise ValueError("seed must be ≥ 0")
        if not 0.0 <= self.fraud_rate < 0.5:
            raise ValueError("fraud_rate must be in [0, 0.5)")
        if self.activity <= 0:
            raise ValueError("activity must be > 0")
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        unknown = {name for name, _ in self.scenario_mix} - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown fraud scenarios in scenario_mix: {sorted(unknown)}")
        names = [name for name, _ in self.scenario_mix]
        if len(names) != len(set(names)):
            raise ValueError("scenario_mix names a scenario twice")
        if any(weight < 0 for _, weight in self.scenario_mix):
            raise ValueError("scenario weights must be ≥ 0")
        if self.fraud_rate > 0 and sum(weight for _, weight in self.scenario_mix) <= 0:
            raise ValueError("fraud_rate > 0 needs at least one scenario with a positive weight")
        if not 0.0 <= self.new_accounts < 1.0:
            raise ValueError("new_accounts must be in [0, 1)")
        if self.new_accounts == 0 and dict(self.scenario_mix).get("new_account_takeover", 0) > 0:
            raise ValueError("the new_account_takeover scenario needs new_accounts > 0 (accounts opened "
                             "during the window to take over)")

    @property
    def n_merchants(self) -> int:
        """Enough merchants that every (city, category) pool has several, growing with the population."""
        return self.merchants if self.merchants is not None else max(1500, self.users // 4)

    @property
    def seconds(self) -> int:
        return self.days * 86_400

    @property
    def warmup_seconds(self) -> int:
        """History every victim has before its first fraud, so detectors can learn a baseline."""
        warm_days = min(self.days * self.warmup_fraction, self.max_warmup_days)
        return int(max(warm_days, min(1.0, self.days / 2)) * 86_400)
