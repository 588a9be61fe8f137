"""Monthly bills: rent, phone, utilities, subscriptions, insurance, gym, transit passes, remittances.

Each is one (user, merchant) item with a fixed day of the month, hour and channel and a fixed (or, for
utilities, similar) amount — the most predictable tokens in a sequence, as in real payment data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from .batch import Events
from .catalog import CAT, CATEGORIES, CHANNELS, REGIONS
from .population import World
from .sampling import draw_rows, row_cdf


@dataclass(frozen=True)
class Items:
    user: np.ndarray
    cat: np.ndarray
    merchant: np.ndarray
    channel: np.ndarray
    dom: np.ndarray  # day of month, 1..28
    second: np.ndarray  # second of the day it is billed
    amount: np.ndarray
    jitter: np.ndarray  # relative month-to-month variation of the amount


STREAMING_PRICES = np.array([6.99, 9.99, 11.99, 15.49, 17.99, 22.99])
PHONE_PRICES = np.array([35.0, 45.0, 55.0, 65.0, 85.0, 110.0])
GYM_PRICES = np.array([24.99, 39.99, 59.0, 89.0])


def build_items(world: World, rng: np.random.Generator) -> Items:
    u = world.users
    n = u.n
    a = (u.age - 40) / 20.0
    parts: list[tuple[np.ndarray, str, np.ndarray, np.ndarray, np.ndarray, float, int]] = []

    def add(
        mask: np.ndarray,
        cat: str,
        amount: np.ndarray,
        dom: np.ndarray,
        night: bool,
        jitter: float,
        slot: int = 0,
    ) -> None:
        """Bills are charged overnight by the merchant; transfers the user makes by day."""
        idx = np.flatnonzero(mask)
        hour = rng.integers(1, 7, size=len(idx)) if night else rng.integers(8, 21, size=len(idx))
        second = hour * 3600 + rng.integers(0, 3600, size=len(idx))
        parts.append((idx, cat, np.asarray(amount)[idx], np.asarray(dom)[idx], second, jitter, slot))

    rent_p = np.clip(0.75 - 0.35 * a, 0.2, 0.9)
    rent = np.round(
        1150 * np.array([r.rent for r in REGIONS])[u.region] * np.sqrt(u.income) * rng.lognormal(0, 0.15, n),
        -1,
    )
    add(
        rng.random(n) < rent_p,
        "rent",
        rent,
        np.where(rng.random(n) < 0.7, 1, rng.integers(1, 6, n)),
        False,
        0.0,
    )
    add(rng.random(n) < 0.93, "telecom", rng.choice(PHONE_PRICES, n), rng.integers(1, 29, n), True, 0.0)
    utilities = 55 + 80 * np.sqrt(u.income) * rng.lognormal(0, 0.3, n)
    add(
        rng.random(n) < np.clip(0.55 + 0.2 * a, 0.3, 0.9),
        "utilities",
        utilities,
        rng.integers(10, 26, n),
        True,
        0.12,
    )
    add(
        rng.random(n) < np.clip(0.35 + 0.25 * a, 0.1, 0.8),
        "insurance",
        np.round(60 + 120 * u.income, 2),
        rng.integers(1, 29, n),
        True,
        0.0,
    )
    add(
        rng.random(n) < np.clip(0.35 - 0.2 * a, 0.08, 0.6),
        "fitness",
        rng.choice(GYM_PRICES, n),
        rng.integers(1, 29, n),
        True,
        0.0,
    )
    add(
        rng.random(n) < 0.05 + 0.05 * (u.income_band == 0),
        "money_transfer",
        rng.choice([100.0, 150.0, 200.0, 300.0, 500.0], n),
        rng.integers(1, 29, n),
        False,
        0.0,
    )
    fare = (
        world.merchants.price[world.favourites[:, CAT["public_transport"], 0]]
        * CATEGORIES[CAT["public_transport"]].median
    )
    add(u.transit_pass, "public_transport", np.round(fare * 40), rng.integers(1, 4, n), False, 0.0)
    n_streams = rng.binomial(3, np.clip(0.55 - 0.2 * a, 0.1, 0.9))
    for k in range(3):
        add(n_streams > k, "streaming", rng.choice(STREAMING_PRICES, n), rng.integers(1, 29, n), True, 0.0, k)

    user = np.concatenate([p[0] for p in parts])
    cat = np.concatenate([np.full(len(p[0]), CAT[p[1]]) for p in parts])
    # each streaming service is a different favourite merchant; other bills go to favourite 0
    slot = np.concatenate([np.full(len(p[0]), p[6]) for p in parts])
    merchant = world.favourites[user, cat, slot]
    chan_w = np.array([[c.channels.get(ch, 0.0) for ch in CHANNELS] for c in CATEGORIES])
    channel = draw_rows(rng, row_cdf(chan_w + 1e-12 * (chan_w.sum(axis=1, keepdims=True) == 0)), cat)
    return Items(
        user=user,
        cat=cat,
        merchant=merchant,
        channel=channel,
        dom=np.concatenate([p[3] for p in parts]),
        second=np.concatenate([p[4] for p in parts]),
        amount=np.concatenate([p[2] for p in parts]).astype(np.float64),
        jitter=np.concatenate([np.full(len(p[0]), p[5]) for p in parts]),
    )


def _month_starts(start: datetime, end: datetime) -> list[datetime]:
    first = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    while first < end:
        months.append(first)
        first = (first + timedelta(days=32)).replace(day=1)
    return months


def recurring_events(world: World, rng: np.random.Generator) -> Events:
    """Every bill due inside the window. Merchant-initiated, so it carries the billing (home) address even
    while the user travels — a naive "country changed" rule must not mistake that for impossible travel."""
    cfg = world.cfg
    items = build_items(world, rng)
    end = cfg.start + timedelta(days=cfg.days)
    parts: list[Events] = []
    for month in _month_starts(cfg.start, end):
        offset = int((month - cfg.start).total_seconds())
        t = offset + (items.dom - 1) * 86_400 + items.second
        keep = (t >= 0) & (t < cfg.seconds)
        idx = np.flatnonzero(keep)
        amount = items.amount[idx] * (1 + items.jitter[idx] * rng.normal(0, 1, len(idx)))
        parts.append(
            Events.build(
                user=items.user[idx],
                t=t[idx],
                cat=items.cat[idx],
                merchant=items.merchant[idx],
                channel=items.channel[idx],
                amount=np.maximum(amount, 1.0),
                loc=world.users.home[items.user[idx]],
                device=2 * items.user[idx],
            )
        )
    return Events.concat(parts) if parts else Events.empty()
