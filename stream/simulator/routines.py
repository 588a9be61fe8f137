"""The weekly rhythm: commute rides and morning coffee on workdays, lunch out, the weekly grocery shop.

Each habit happens at the user's own habitual time (± minutes), at the user's usual merchant: this is the
day-of-week and time-of-day structure a sequence model should pick up. Drafts only (user, time,
category); behaviour.realize decides place, merchant, channel and amount like for any other purchase.
"""

from __future__ import annotations

import numpy as np

from .catalog import CAT
from .population import World

HOUR = 3600
MIN = 60


def weekdays(world: World) -> np.ndarray:
    """Weekday (0 = Monday) of each simulated day."""
    return (world.cfg.start.weekday() + np.arange(world.cfg.days)) % 7


def routine_drafts(world: World, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, days = world.users, world.cfg.days
    wd = weekdays(world)
    workday = wd < 5
    n = u.n
    leave = rng.uniform(7.0, 8.75, n) * HOUR  # habitual departure, per user
    come_back = rng.uniform(17.0, 19.0, n) * HOUR
    users, times, cats = [], [], []

    def add(mask: np.ndarray, base: np.ndarray, jitter_s: float, cat: np.ndarray | int) -> None:
        uu, dd = np.nonzero(mask)
        t = dd * 86_400 + base[uu] + rng.normal(0, jitter_s, len(uu))
        users.append(uu)
        times.append(t.astype(np.int64))
        cats.append(np.full(len(uu), cat, dtype=np.int64) if np.ndim(cat) == 0 else cat[uu].astype(np.int64))

    commute = (u.commuter & ~u.transit_pass)[:, None] & workday[None, :]
    morning = commute & (rng.random((n, days)) < 0.88)
    add(morning, leave, 6 * MIN, CAT["public_transport"])
    add(commute & (rng.random((n, days)) < 0.82), come_back, 12 * MIN, CAT["public_transport"])
    coffee = u.coffee[:, None] & workday[None, :] & (rng.random((n, days)) < 0.7)
    add(coffee, leave + np.where(u.commuter, 35 * MIN, 20 * MIN), 5 * MIN, CAT["coffee_shop"])
    lunch = workday[None, :] & (rng.random((n, days)) < u.lunch[:, None])
    sit_down = rng.random(n) < np.clip(0.25 + 0.25 * np.log(u.income), 0.05, 0.8)
    lunch_cat = np.where(sit_down, CAT["restaurant"], CAT["fast_food"])
    add(lunch, np.full(n, 12.6 * HOUR), 20 * MIN, lunch_cat)
    shop_hour = np.clip(rng.normal(14.0, 3.0, n), 9.0, 20.0) * HOUR
    weekly = (wd[None, :] == u.grocery_day[:, None]) & (rng.random((n, days)) < 0.87)
    add(weekly, shop_hour, 40 * MIN, CAT["grocery"])
    user = np.concatenate(users)
    t = np.clip(np.concatenate(times), 0, world.cfg.seconds - 1)
    return user, t, np.concatenate(cats)
