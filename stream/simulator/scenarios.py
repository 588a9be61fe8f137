"""Labelled fraud, injected into the histories of existing users after a warm-up period.

Each scenario gets an exact share of the fraud budget, split into incidents (a burst, a compromised
merchant's victims, a cloned-card spree…) and generated with array operations per scenario. Fraud only
adds transactions: the victim's own activity goes on around it, so fraud interleaves with normal life.
The signal each scenario leaves — and which detectors should find it — is described in docs/SIMULATOR.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .batch import Events
from .behaviour import MEDIAN
from .catalog import CAT, CH
from .config import SCENARIOS
from .population import World
from .sampling import segment_cumsum, segment_positions, split_budget


@dataclass
class FraudContext:
    """What every scenario needs: the world, the legitimate history, and a supply of fresh devices."""

    world: World
    legit: Events
    extra_devices: int = 0  # attackers' phones and bots, numbered after the users' own 2 per user
    opened: np.ndarray | None = None  # (users,) when each account opened (`openings.py`), −1: before

    @cached_property
    def by_user(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The legitimate history in (user, time) order: (order into `legit`, users, times), sorted
        once for every scenario that looks up a victim's own past."""
        order = np.lexsort((self.legit.t, self.legit.user))
        return order, self.legit.user[order], self.legit.t[order]

    def new_devices(self, k: int) -> np.ndarray:
        first = 2 * self.world.users.n + self.extra_devices
        self.extra_devices += k
        return np.arange(first, first + k, dtype=np.int64)

    def victims(self, rng: np.random.Generator, k: int, *prefer: np.ndarray) -> np.ndarray:
        """k users who have a history before the warm-up ends, distinct while possible; users in the
        `prefer` masks come first, in that order, then everyone else."""
        n = self.world.users.n
        left = np.bincount(self.legit.user[self.legit.t < self.start], minlength=n) > 0
        if not left.any():
            left[:] = True
        tiers = []
        for mask in (*prefer, np.ones(n, dtype=bool)):
            tiers.append(rng.permutation(np.flatnonzero(mask & left)))
            left &= ~mask
        pool = np.concatenate(tiers)
        return pool[:k] if len(pool) >= k else rng.choice(pool, size=k)

    @property
    def start(self) -> int:
        return self.world.cfg.warmup_seconds

    @property
    def end(self) -> int:
        return self.world.cfg.seconds

    def times(self, rng: np.random.Generator, k: int, night: float = 0.0) -> np.ndarray:
        """Incident start times after the warm-up; a share `night` of them between 01:00 and 05:00."""
        first_day = self.start // 86_400
        day = rng.integers(first_day, max(self.end // 86_400, first_day + 1), size=k)
        hour = np.where(rng.random(k) < night, rng.integers(1, 5, k), rng.integers(0, 24, k))
        t = day * 86_400 + hour * 3600 + rng.integers(0, 3600, k)
        return np.clip(t, self.start, self.end - 1)


def _mix(rng: np.random.Generator, n: int, options: dict[str, float]) -> np.ndarray:
    names = list(options)
    p = np.array([options[name] for name in names])
    return np.array([CAT[name] for name in names])[rng.choice(len(names), size=n, p=p / p.sum())]


def _burst(
    ctx: FraudContext, sizes: np.ndarray, t0: np.ndarray, gap_lo: int, gap_hi: int, rng: np.random.Generator
) -> np.ndarray:
    """Event times of bursts: incident start + restarting cumulative gaps, kept inside the window."""
    gaps = rng.integers(gap_lo, gap_hi + 1, int(sizes.sum()))
    gaps[np.cumsum(sizes) - sizes] = 0
    return np.minimum(np.repeat(t0, sizes) + segment_cumsum(gaps, sizes), ctx.end - 1)


def account_takeover(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """A new device logs in, then a burst of big online buys in unusual categories, mostly at night."""
    sizes = split_budget(rng, budget, 3, 12)
    k = len(sizes)
    return _takeover(ctx, rng, ctx.victims(rng, k), sizes, ctx.times(rng, k, night=0.65))


def new_account_takeover(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """An account opened during the window is taken over (credentials phished at sign-up, or opened with
    a stolen identity) before it has made five payments — the same burst as `account_takeover`, on a
    user with almost no history: only the profile and the event itself can tell."""
    sizes = split_budget(rng, budget, 2, 8)
    victim, t0 = _cold_victims(ctx, rng, len(sizes))
    return _takeover(ctx, rng, victim, sizes, t0)


COLD_HISTORY = 5  # a new_account_takeover incident starts before the victim's fifth own payment


def _cold_victims(ctx: FraudContext, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k accounts opened after the warm-up and an incident start for each: 1–48 h after the opening,
    and before the account's `COLD_HISTORY`-th legitimate payment."""
    assert ctx.opened is not None, "new_account_takeover needs the accounts' opening times"
    pool = np.flatnonzero(ctx.opened >= ctx.start)
    if not len(pool):
        raise ValueError("new_account_takeover: no account opened after the warm-up (raise new_accounts)")
    victim = rng.permutation(pool)[:k] if len(pool) >= k else rng.choice(pool, size=k)
    opened = ctx.opened[victim]
    t0 = opened + rng.integers(3600, 48 * 3600, size=k)
    _, users, times = ctx.by_user
    first = np.searchsorted(users, victim, side="left")
    count = np.searchsorted(users, victim, side="right") - first
    has_fifth = count >= COLD_HISTORY
    fifth = times[np.where(has_fifth, first + COLD_HISTORY - 1, 0)]
    t0 = np.where(has_fifth, np.minimum(t0, fifth - 1), t0)
    return victim, np.clip(np.maximum(t0, opened + 60), 0, ctx.end - 1)


def _takeover(ctx: FraudContext, rng: np.random.Generator, victim: np.ndarray, sizes: np.ndarray,
              t0: np.ndarray) -> Events:  # fmt: skip
    """An attacker's device, a burst from `t0` (1–15 min apart) of big online buys in cash-like
    categories (transfers partly by bank transfer), at the victim's home."""
    u = ctx.world.users
    k = len(sizes)
    devices = ctx.new_devices(k)
    user = np.repeat(victim, sizes)
    t = _burst(ctx, sizes, t0, 60, 900, rng)
    cat = _mix(
        rng,
        len(user),
        {
            "electronics": 0.25,
            "gift_cards": 0.25,
            "crypto_exchange": 0.15,
            "money_transfer": 0.15,
            "online_marketplace": 0.15,
            "jewelry": 0.05,
        },
    )
    loc = u.home[user]
    channel = np.where(
        np.isin(cat, [CAT["money_transfer"], CAT["crypto_exchange"]]) & (rng.random(len(user)) < 0.6),
        CH["transfer"],
        CH["online"],
    )
    amount = MEDIAN[cat] * u.income[user] ** 0.6 * rng.uniform(2.5, 8.0, len(user))
    return Events.build(
        user=user,
        t=t,
        cat=cat,
        merchant=ctx.world.random_merchant(rng, cat, loc),
        channel=channel,
        amount=amount,
        loc=loc,
        device=np.repeat(devices, sizes),
    )


def card_testing(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """A bot probes a stolen card with micro-charges at one or two online merchants, may cash out once."""
    u = ctx.world.users
    sizes = split_budget(rng, budget, 6, 22)
    k = len(sizes)
    victim = ctx.victims(rng, k)
    bots = ctx.new_devices(max(2, k // 5))  # one bot works through many stolen cards
    bot = bots[rng.integers(0, len(bots), k)]
    test_cat = _mix(rng, 2 * k, {"digital_goods": 0.7, "charity": 0.3})
    home = u.home[victim]
    test_merchant = ctx.world.random_merchant(rng, test_cat, np.tile(home, 2)).reshape(2, k)
    user = np.repeat(victim, sizes)
    n = len(user)
    pos = segment_positions(sizes)
    last = pos == np.repeat(sizes, sizes) - 1
    cash_out = last & np.repeat(rng.random(k) < 0.5, sizes) & (np.repeat(sizes, sizes) >= 4)
    gaps = np.where(cash_out, rng.integers(120, 1800, n), rng.integers(5, 91, n))
    gaps[np.cumsum(sizes) - sizes] = 0
    t = np.minimum(np.repeat(ctx.times(rng, k), sizes) + segment_cumsum(gaps, sizes), ctx.end - 1)
    second = rng.random(n) < 0.3
    probe_merchant = np.where(second, np.repeat(test_merchant[1], sizes), np.repeat(test_merchant[0], sizes))
    probe_cat = np.where(second, np.repeat(test_cat[k:], sizes), np.repeat(test_cat[:k], sizes))
    big_cat = _mix(rng, n, {"electronics": 0.5, "gift_cards": 0.5})
    loc = u.home[user]
    cat = np.where(cash_out, big_cat, probe_cat)
    merchant = np.where(cash_out, ctx.world.random_merchant(rng, big_cat, loc), probe_merchant)
    amount = np.where(cash_out, rng.uniform(300, 1500, n), rng.uniform(0.5, 2.0, n))
    return Events.build(
        user=user,
        t=t,
        cat=cat,
        merchant=merchant,
        channel=CH["online"],
        amount=amount,
        loc=loc,
        device=np.repeat(bot, sizes),
    )


def merchant_compromise(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """An insider or breached terminal charges many customers of one merchant within 1-3 days, inflated
    amounts, often in an after-hours batch: invisible per user, plain at the merchant level."""
    world, u, m = ctx.world, ctx.world.users, ctx.world.merchants
    sizes = split_budget(rng, budget, 8, 30)
    physical_cats = np.array(
        [CAT[c] for c in ("grocery", "restaurant", "fuel", "convenience_store", "fast_food")]
    )
    online_cats = np.array([CAT[c] for c in ("online_marketplace", "food_delivery", "digital_goods")])
    city_users = np.bincount(u.home, minlength=world.places.n)
    parts = []
    for size in sizes:  # one loop turn per compromised merchant (a handful per run)
        size = int(size)
        city = int(rng.choice(world.places.n, p=city_users / city_users.sum()))
        physical = rng.random() < 0.7 and city_users[city] >= size
        cat = int(rng.choice(physical_cats if physical else online_cats))
        merchant = int(world.random_merchant(rng, np.array([cat]), np.array([city]))[0])
        regulars = (world.favourites[:, cat, :] == merchant).any(axis=1)
        townspeople = (u.home == city) if physical else np.zeros(u.n, dtype=bool)
        victim = ctx.victims(rng, size, regulars, townspeople)
        day = int(ctx.times(rng, 1)[0]) // 86_400 + rng.integers(0, int(rng.integers(1, 4)), size)
        after_hours = rng.random() < 0.5
        hour = rng.integers(0, 4, size) if after_hours else rng.integers(9, 21, size)
        t = np.clip(day * 86_400 + hour * 3600 + rng.integers(0, 3600, size), ctx.start, ctx.end - 1)
        loc = np.full(size, city) if physical else u.home[victim]
        amount = MEDIAN[cat] * m.price[merchant] * rng.uniform(2.0, 6.0, size)
        channel = CH["card_present"] if physical else CH["online"]
        parts.append(
            Events.build(
                user=victim,
                t=t,
                cat=np.full(size, cat),
                merchant=np.full(size, merchant),
                channel=channel,
                amount=amount,
                loc=loc,
                device=2 * victim,
            )
        )
    return Events.concat(parts) if parts else Events.empty()


def geo_anomaly(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """A cloned card is used abroad minutes to hours after the owner paid at home: impossible travel."""
    world, u, legit = ctx.world, ctx.world.users, ctx.legit
    sizes = split_budget(rng, budget, 1, 4)
    k = len(sizes)
    ok = (legit.t >= ctx.start) & (legit.t < ctx.end - 6 * 3600) & (legit.loc == u.home[legit.user])
    eligible = np.flatnonzero(ok)
    if len(eligible) == 0:
        eligible = np.arange(len(legit))
    anchor = rng.choice(eligible, size=k, replace=k > len(eligible))
    victim = legit.user[anchor]
    origins = np.flatnonzero(world.places.fraud_origin)
    dest = rng.choice(origins, size=k)
    t0 = legit.t[anchor] + rng.integers(20 * 60, 3 * 3600, k)
    t = _burst(ctx, sizes, t0, 300, 2700, rng)
    user = np.repeat(victim, sizes)
    loc = np.repeat(dest, sizes)
    cat = _mix(
        rng,
        len(user),
        {
            "cash_withdrawal": 0.3,
            "electronics": 0.25,
            "jewelry": 0.2,
            "clothing": 0.1,
            "restaurant": 0.1,
            "convenience_store": 0.05,
        },
    )
    merchant = world.random_merchant(rng, cat, loc)
    amount = MEDIAN[cat] * world.merchants.price[merchant] * rng.uniform(1.5, 4.0, len(user))
    cash = cat == CAT["cash_withdrawal"]
    amount[cash] = np.round(rng.uniform(200, 800, int(cash.sum())) / 20) * 20
    channel = np.where(cash, CH["atm"], CH["card_present"])
    return Events.build(
        user=user, t=t, cat=cat, merchant=merchant, channel=channel, amount=amount, loc=loc, device=2 * user
    )


MULE_AMOUNTS = np.array(
    [200.0, 250.0, 300.0, 400.0, 500.0, 750.0, 900.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0]
)


def mule_transfer(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """A young account passes money on: quick round-sum transfers to money-transfer / crypto services."""
    u = ctx.world.users
    sizes = split_budget(rng, budget, 3, 10)
    k = len(sizes)
    victim = ctx.victims(rng, k, u.account_age_days < 120)
    user = np.repeat(victim, sizes)
    n = len(user)
    t0 = ctx.times(rng, k)
    t = _burst(ctx, sizes, t0, 120, 1800, rng)
    inc_cat = _mix(rng, k, {"money_transfer": 0.7, "crypto_exchange": 0.3})
    loc = u.home[victim]
    dest = ctx.world.random_merchant(rng, np.tile(inc_cat, 2), np.tile(loc, 2)).reshape(2, k)
    second = rng.random(n) < 0.3
    merchant = np.where(second, np.repeat(dest[1], sizes), np.repeat(dest[0], sizes))
    amount = rng.choice(MULE_AMOUNTS, n) - np.where(
        rng.random(n) < 0.25, rng.choice([1.99, 2.99, 4.99], n), 0
    )
    return Events.build(
        user=user,
        t=t,
        cat=np.repeat(inc_cat, sizes),
        merchant=merchant,
        channel=CH["transfer"],
        amount=amount,
        loc=np.repeat(loc, sizes),
        device=2 * user,
    )


REPLAY_POOL = 30  # a replay copies among the victim's last this-many purchases before it starts


def routine_replay(ctx: FraudContext, rng: np.random.Generator, budget: int) -> Events:
    """Someone with the victim's phone and card replays the victim's own recent purchases: the same
    merchants, categories, channels, device and place, amounts within ±5 %, but out of their usual order
    and cadence — a burst 2–20 min apart, a third of them starting at night. Only the order and timing
    of events are off."""
    legit = ctx.legit
    sizes = split_budget(rng, budget, 3, 8)
    k = len(sizes)
    victim = ctx.victims(rng, k)
    t0 = ctx.times(rng, k, night=0.35)
    order, users, times = ctx.by_user
    key = users.astype(np.int64) * (ctx.end + 1) + times
    first = np.searchsorted(users, victim, side="left")
    before = np.searchsorted(key, victim.astype(np.int64) * (ctx.end + 1) + t0, side="left")
    before = np.maximum(before, first + 1)  # victims have a history before the warm-up: ≥ 1 purchase
    low = np.maximum(first, before - REPLAY_POOL)
    pool = np.repeat(before - low, sizes)
    source = order[np.repeat(low, sizes) + (rng.random(len(pool)) * pool).astype(np.int64)]
    amount = np.round(legit.amount[source] * rng.uniform(0.95, 1.05, len(source)), 2)
    return Events.build(
        user=np.repeat(victim, sizes),
        t=_burst(ctx, sizes, t0, 120, 1200, rng),
        cat=legit.cat[source],
        merchant=legit.merchant[source],
        channel=legit.channel[source],
        amount=np.maximum(amount, 0.01),
        loc=legit.loc[source],
        device=legit.device[source],
    )


GENERATORS: dict[str, Callable[[FraudContext, np.random.Generator, int], Events]] = {
    "account_takeover": account_takeover,
    "card_testing": card_testing,
    "merchant_compromise": merchant_compromise,
    "geo_anomaly": geo_anomaly,
    "mule_transfer": mule_transfer,
    "routine_replay": routine_replay,
    "new_account_takeover": new_account_takeover,
}
assert set(GENERATORS) == set(SCENARIOS)


def budgets(total: int, mix: tuple[tuple[str, float], ...]) -> dict[str, int]:
    """Largest-remainder split of `total` fraud transactions by scenario weight (sums exactly to total)."""
    weights = np.array([w for _, w in mix], dtype=float)
    if total <= 0 or weights.sum() <= 0:
        return {name: 0 for name, _ in mix}
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - int(out.sum())]] += 1
    return {name: int(v) for (name, _), v in zip(mix, out, strict=True)}


def fraud_count(n_legit: int, rate: float) -> int:
    """Fraud transactions needed for `rate` of the final total: f / (n + f) = rate."""
    return round(rate * n_legit / (1.0 - rate)) if rate > 0 else 0


def inject_fraud(world: World, legit: Events, rng: np.random.Generator,
                 opened: np.ndarray | None = None) -> tuple[Events, int]:  # fmt: skip
    """All fraud events (scenario-coded) and how many new devices they introduced."""
    cfg = world.cfg
    ctx = FraudContext(world, legit, opened=opened)
    parts = []
    for name, budget in budgets(fraud_count(len(legit), cfg.fraud_rate), cfg.scenario_mix).items():
        if budget <= 0:
            continue
        events = GENERATORS[name](ctx, rng, budget)
        events.scenario[:] = SCENARIOS.index(name)
        parts.append(events)
    return (Events.concat(parts) if parts else Events.empty()), ctx.extra_devices
