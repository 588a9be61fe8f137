"""Integer-coded events → the contract's pandas frames (strings attached once, by table lookup)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .batch import LEGIT, Events
from .catalog import CATEGORIES, CHANNELS, CURRENCY, GENDERS, INCOME_BANDS, OCCUPATIONS, REGIONS, RISK_LEVELS
from .config import SCENARIOS
from .population import World

TXN_COLUMNS: tuple[str, ...] = (
    "txn_id",
    "user_id",
    "timestamp",
    "amount",
    "currency",
    "merchant_id",
    "merchant_category",
    "merchant_risk",
    "channel",
    "country",
    "city",
    "device_id",
    "is_fraud",
    "fraud_scenario",
)


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    width = max(width, len(str(max(n - 1, 0))))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def user_ids(n: int) -> np.ndarray:
    return _ids("u", n, 6)


def device_names(n_users: int, n_extra: int, seed: int) -> np.ndarray:
    """Opaque ids for every device slot (2 per user, then attackers'), shuffled so a name reveals nothing:
    neither its owner nor whether it belongs to a fraudster."""
    total = 2 * n_users + n_extra
    return _ids("d", total, 7)[np.random.default_rng([seed, 0xDE71CE]).permutation(total)]


def transactions_frame(world: World, events: Events, extra_devices: int) -> pd.DataFrame:
    """Sorted by time (ties by user, then merchant); txn ids follow that order so they are deterministic."""
    order = np.lexsort((events.merchant, events.user, events.t))
    ev = events.take(order)
    n = len(ev)
    start_ns = pd.Timestamp(world.cfg.start).as_unit("ns").value
    timestamp = pd.to_datetime(start_ns + ev.t * 1_000_000_000, unit="ns", utc=True)
    scenario_names = np.array([*SCENARIOS, None], dtype=object)
    scenario = np.where(ev.scenario == LEGIT, len(SCENARIOS), ev.scenario)  # legit → None
    cat_names = np.array([c.name for c in CATEGORIES], dtype=object)
    places = world.places
    return pd.DataFrame(
        {
            "txn_id": _ids("t", n, 9),
            "user_id": user_ids(world.users.n)[ev.user],
            "timestamp": timestamp,
            "amount": ev.amount,
            "currency": np.full(n, CURRENCY, dtype=object),
            "merchant_id": _ids("m", world.merchants.n, 5)[ev.merchant],
            "merchant_category": cat_names[ev.cat],
            "merchant_risk": np.array(RISK_LEVELS, dtype=object)[world.merchants.risk[ev.merchant]],
            "channel": np.array(CHANNELS, dtype=object)[ev.channel],
            "country": places.country[ev.loc],
            "city": places.city[ev.loc],
            "device_id": device_names(world.users.n, extra_devices, world.cfg.seed)[ev.device],
            "is_fraud": ev.scenario != LEGIT,
            "fraud_scenario": pd.Series(scenario_names[scenario], dtype=object),
        },
        columns=list(TXN_COLUMNS),
    )


def profiles_frame(world: World) -> pd.DataFrame:
    u, places = world.users, world.places
    return pd.DataFrame(
        {
            "user_id": user_ids(u.n),
            "age": u.age.astype(np.int64),
            "gender": np.array(GENDERS, dtype=object)[u.gender],
            "region": np.array([r.name for r in REGIONS], dtype=object)[u.region],
            "occupation": np.array([o.name for o in OCCUPATIONS], dtype=object)[u.occupation],
            "account_age_days": u.account_age_days.astype(np.int64),
            "income_band": np.array(INCOME_BANDS, dtype=object)[u.income_band],
            "home_city": places.city[u.home],
            "home_country": places.country[u.home],
        }
    )
