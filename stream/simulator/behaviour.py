"""Legitimate spending: discretionary purchases, follow-up chains, and turning drafts into transactions.

Generation is two-phase and vectorized: every source (routines, discretionary, chains) first drafts
(user, time, category); `realize` then places each draft (home or trip city), picks the merchant
(favourites first), the payment channel (the user's habit × what the category accepts), the amount
(category median × income × merchant price level) and the device — all with array operations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .batch import Events
from .catalog import CAT, CATEGORIES, CH, CHANNELS, HOUR_PROFILES
from .population import World
from .recurring import recurring_events
from .routines import routine_drafts, weekdays
from .sampling import draw_matrix, draw_rows, row_cdf
from .travel import Trips, locate, plan_trips, trip_events

DOW_RATE = np.array([0.9, 0.9, 0.95, 1.0, 1.2, 1.35, 1.05])
MEDIAN = np.array([c.median for c in CATEGORIES])
SIGMA = np.array([c.sigma for c in CATEGORIES])
WEEKEND = np.array([c.weekend for c in CATEGORIES])
CHANNEL_W = np.array([[c.channels.get(ch, 0.0) for ch in CHANNELS] for c in CATEGORIES])
HOUR_CDF = row_cdf(np.array([HOUR_PROFILES[c.hours] for c in CATEGORIES]))
FIXED_PRICE = np.array([c.sigma == 0.0 for c in CATEGORIES])  # fares and list prices: no income scaling
SHIFTED = np.array([c.hours not in ("morning", "commute") for c in CATEGORIES])

# (from, to, probability, min delay s, max delay s, earliest hour of the first purchase)
# Applied twice, so outings can be three steps long (cinema → dinner → ride home).
CHAINS: tuple[tuple[str, str, float, int, int, int], ...] = (
    ("fuel", "convenience_store", 0.45, 120, 900, 0),
    ("restaurant", "ride_hailing", 0.4, 4200, 9000, 18),
    ("restaurant", "bar_nightlife", 0.15, 4200, 7200, 19),
    ("bar_nightlife", "ride_hailing", 0.6, 2400, 12000, 0),
    ("entertainment", "restaurant", 0.35, 6000, 10800, 0),
    ("healthcare", "pharmacy", 0.55, 900, 3600, 0),
    ("grocery", "pharmacy", 0.1, 600, 2400, 0),
    ("grocery", "pet_supplies", 0.06, 600, 2400, 0),
    ("home_improvement", "fast_food", 0.25, 1200, 3600, 0),
    ("cash_withdrawal", "convenience_store", 0.2, 300, 1800, 0),
    ("gambling", "gambling", 0.45, 300, 2400, 0),
    ("digital_goods", "digital_goods", 0.3, 60, 1200, 0),
    ("clothing", "clothing", 0.3, 600, 3600, 0),
    ("clothing", "beauty", 0.12, 600, 3600, 0),
    ("clothing", "coffee_shop", 0.15, 900, 3600, 0),
    ("online_marketplace", "online_marketplace", 0.2, 60, 1800, 0),
)  # airline → hotel → trip-city spending lives in travel.py

Drafts = tuple[np.ndarray, np.ndarray, np.ndarray]


def discretionary_drafts(world: World, rng: np.random.Generator) -> Drafts:
    """Poisson purchases per user-day; category from the user's weekend-tilted tastes, hour from category."""
    u, days = world.users, world.cfg.days
    wd = weekdays(world)
    counts = rng.poisson(u.rate[:, None] * DOW_RATE[wd][None, :])
    cell = np.repeat(np.arange(u.n * days), counts.ravel())
    user, day = cell // days, cell % days
    pref = np.exp(u.pref - u.pref.max(axis=1, keepdims=True))  # -inf logits (scheduled-only) → 0
    cdf = row_cdf(np.vstack([pref, pref * WEEKEND[None, :]]))
    cat = draw_rows(rng, cdf, user + u.n * (wd[day] >= 5))
    hour = draw_rows(rng, HOUR_CDF, cat)
    hour = (hour + np.where(SHIFTED[cat], u.shift[user], 0)) % 24
    t = day * 86_400 + hour * 3600 + rng.integers(0, 3600, len(user))
    return user, t.astype(np.int64), cat


def chain_drafts(world: World, rng: np.random.Generator, drafts: Drafts) -> Drafts:
    """Follow-ups that make the next category depend on the last one (fuel → snack, dinner → ride home)."""
    user, t, cat = drafts
    hour = (t % 86_400) // 3600
    out_u, out_t, out_c = [], [], []
    for src, dst, p, lo, hi, min_hour in CHAINS:
        hit = np.flatnonzero((cat == CAT[src]) & (hour >= min_hour))
        hit = hit[rng.random(len(hit)) < p]
        out_u.append(user[hit])
        out_t.append(t[hit] + rng.integers(lo, hi + 1, len(hit)))
        out_c.append(np.full(len(hit), CAT[dst]))
    keep = np.concatenate(out_t) < world.cfg.seconds
    return np.concatenate(out_u)[keep], np.concatenate(out_t)[keep], np.concatenate(out_c)[keep]


def realize(
    world: World, rng: np.random.Generator, trips: Trips, drafts: Drafts, routine: np.ndarray
) -> Events:
    """Drafts → transactions: place, merchant, channel, amount, device. Routines pause while travelling."""
    user, t, cat = drafts
    u, m = world.users, world.merchants
    loc, airborne = locate(world, trips, user, t)
    keep = ~airborne & ~(routine & (loc != u.home[user]))
    user, t, cat, loc = user[keep], t[keep], cat[keep], loc[keep]
    merchant = world.pick_merchant(rng, user, cat, loc)
    channel = draw_matrix(rng, CHANNEL_W[cat] * u.tilt[user])
    scale = np.where(FIXED_PRICE[cat], 1.0, u.income[user] ** 0.6)
    amount = MEDIAN[cat] * scale * m.price[merchant] * np.exp(SIGMA[cat] * rng.standard_normal(len(user)))
    fare = cat == CAT["public_transport"]
    amount[fare] = np.round(amount[fare] / 0.05) * 0.05
    cash = cat == CAT["cash_withdrawal"]
    amount[cash] = np.maximum(np.round(amount[cash] / 20) * 20, 20)
    amount = np.maximum(amount, 0.5)
    app = (channel == CH["online"]) | (channel == CH["qr"])
    device = 2 * user + (u.second_device[user] & app & (rng.random(len(user)) < 0.35))
    return Events.build(
        user=user, t=t, cat=cat, merchant=merchant, channel=channel, amount=amount, loc=loc, device=device
    )


def legit_transactions(
    world: World, rng: np.random.Generator, progress: Callable[[str, float], None] | None = None
) -> tuple[Events, Trips]:
    """All legitimate activity in the window, unsorted, plus the trips (fraud needs to know who is away)."""

    def tick(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    trips = plan_trips(world, rng)
    tick("legit", 0.1)
    routine = routine_drafts(world, rng)
    tick("legit", 0.3)
    free = discretionary_drafts(world, rng)
    tick("legit", 0.5)
    both = tuple(np.concatenate([a, b]) for a, b in zip(routine, free, strict=True))
    chained = chain_drafts(world, rng, both)  # type: ignore[arg-type]
    again = chain_drafts(world, rng, chained)
    drafts = tuple(np.concatenate([a, b, c]) for a, b, c in zip(both, chained, again, strict=True))
    is_routine = np.zeros(len(drafts[0]), dtype=bool)
    is_routine[: len(routine[0])] = True
    spent = realize(world, rng, trips, drafts, is_routine)  # type: ignore[arg-type]
    tick("legit", 0.8)
    bills = recurring_events(world, rng)
    travel = trip_events(world, trips, rng)
    tick("legit", 1.0)
    return Events.concat([spent, bills, travel]), trips
