"""Legitimate trips: airline booking → hotel → spending in another city (or abroad) → home again.

Trips are why a foreign transaction alone must not look like fraud: a real traveller books a flight first
and is never in two places faster than a plane allows. `locate` says where each user is at any time,
so every other generator can put purchases in the right city.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batch import Events
from .catalog import CAT, CH
from .population import World

BLOCK_DAYS = 60


@dataclass(frozen=True)
class Trips:
    user: np.ndarray
    dep: np.ndarray  # seconds: leaves home
    arrive: np.ndarray  # lands at dest
    ret: np.ndarray  # leaves dest
    back: np.ndarray  # lands home
    dest: np.ndarray  # place index
    booking: np.ndarray  # when the flight was booked (may precede the window)

    def __len__(self) -> int:
        return len(self.user)


def plan_trips(world: World, rng: np.random.Generator) -> Trips:
    """At most one trip per user per 60-day block, likelier for higher incomes; sorted by (user, dep)."""
    u, places, cfg = world.users, world.places, world.cfg
    domestic = np.flatnonzero(places.region >= 0)
    abroad = np.flatnonzero((places.region < 0) & places.tourist)
    users, deps, durs = [], [], []
    for b in range(-(-cfg.days // BLOCK_DAYS)):
        block = min(BLOCK_DAYS, cfg.days - b * BLOCK_DAYS)
        p = np.clip(0.05 + 0.12 * (u.income - 0.6), 0.03, 0.35) * block / BLOCK_DAYS
        who = np.flatnonzero(rng.random(u.n) < p)
        dur = rng.integers(2, 9, size=len(who))
        day = b * BLOCK_DAYS + rng.random(len(who)) * np.maximum(block - dur, 0.5)
        users.append(who)
        deps.append(
            (np.floor(day) * 86_400 + rng.integers(6 * 3600, 21 * 3600, size=len(who))).astype(np.int64)
        )
        durs.append(dur)
    user = np.concatenate(users)
    dep = np.concatenate(deps)
    dur = np.concatenate(durs)
    foreign = rng.random(len(user)) < 0.15 + 0.2 * (u.income_band[user] == 2)
    dom_dest = rng.choice(domestic, size=len(user), p=places.weight[domestic] / places.weight[domestic].sum())
    home = u.home[user]
    dom_dest = np.where(
        dom_dest == home, domestic[(np.searchsorted(domestic, home) + 3) % len(domestic)], dom_dest
    )
    dest = np.where(foreign, rng.choice(abroad, size=len(user)), dom_dest)
    flight = np.where(
        foreign, rng.integers(8 * 3600, 14 * 3600, len(user)), rng.integers(2 * 3600, 6 * 3600, len(user))
    )
    ret = dep + dur * 86_400 + rng.integers(-4 * 3600, 4 * 3600, len(user))
    booking = dep - (rng.uniform(3, 30, len(user)) * 86_400).astype(np.int64)
    order = np.lexsort((dep, user))
    return Trips(
        user=user[order],
        dep=dep[order],
        arrive=(dep + flight)[order],
        ret=ret[order],
        back=(ret + flight)[order],
        dest=dest[order],
        booking=booking[order],
    )


def locate(world: World, trips: Trips, user: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(place, airborne) of each (user, time): home unless inside a trip; airborne while flying."""
    loc = world.users.home[user].copy()
    airborne = np.zeros(len(user), dtype=bool)
    if len(trips) == 0 or len(user) == 0:
        return loc, airborne
    span = np.int64(world.cfg.seconds + 400 * 86_400)
    trip_key = trips.user.astype(np.int64) * span + trips.dep + 200 * 86_400
    key = user.astype(np.int64) * span + t + 200 * 86_400
    i = np.searchsorted(trip_key, key, side="right") - 1
    ok = i >= 0
    i = np.where(ok, i, 0)
    ok &= (trips.user[i] == user) & (t < trips.back[i])
    away = ok & (t >= trips.arrive[i]) & (t < trips.ret[i])
    loc[away] = trips.dest[i[away]]
    airborne[ok & ~away] = True
    return loc, airborne


def trip_events(world: World, trips: Trips, rng: np.random.Generator) -> Events:
    """Flight booking, hotel (prebooked online or paid at check-in) and airport rides."""
    u, cfg = world.users, world.cfg
    n = len(trips)
    foreign = world.places.region[trips.dest] < 0
    scale = np.sqrt(u.income[trips.user])
    parts: list[Events] = []

    def emit(
        mask: np.ndarray,
        cat: str,
        t: np.ndarray,
        loc: np.ndarray,
        amount: np.ndarray,
        channel: int,
        where: np.ndarray | None = None,
    ) -> None:
        """`loc` is where the traveller is; `where` where the merchant is (a hotel booked from home)."""
        where = loc if where is None else where
        keep = mask & (t >= 0) & (t < cfg.seconds)
        idx = np.flatnonzero(keep)
        c = np.full(len(idx), CAT[cat])
        user = trips.user[idx]
        parts.append(
            Events.build(
                user=user,
                t=t[idx],
                cat=c,
                merchant=world.pick_merchant(rng, user, c, where[idx]),
                channel=channel,
                amount=amount[idx],
                loc=loc[idx],
                device=2 * user + (u.second_device[user] & (rng.random(len(idx)) < 0.3)),
            )
        )

    home = u.home[trips.user]
    day = (trips.booking // 86_400) * 86_400
    booked = day + np.clip(rng.normal(20, 2, n), 7, 23.9).astype(np.int64) * 3600 + rng.integers(0, 3600, n)
    fare = np.where(foreign, 950.0, 320.0) * rng.lognormal(0, 0.3, n) * u.income[trips.user] ** 0.3
    at_booking = locate(world, trips, trips.user, booked)[0]  # usually home; maybe on an earlier trip
    emit(np.ones(n, bool), "airline", booked, at_booking, fare, CH["online"])
    nights = np.maximum((trips.ret - trips.arrive) // 86_400, 1)
    room = nights * 140.0 * scale * rng.lognormal(0, 0.25, n)
    prebook = rng.random(n) < 0.6
    emit(
        prebook,
        "hotel",
        booked + rng.integers(300, 2 * 86_400, n),
        at_booking,
        room,
        CH["online"],
        trips.dest,
    )
    emit(
        ~prebook,
        "hotel",
        trips.arrive + rng.integers(1800, 3 * 3600, n),
        trips.dest,
        room,
        CH["card_present"],
    )
    ride = 38.0 * rng.lognormal(0, 0.3, n)
    emit(
        rng.random(n) < 0.5,
        "ride_hailing",
        trips.dep - rng.integers(3600, 3 * 3600, n),
        home,
        ride,
        CH["online"],
    )
    emit(
        rng.random(n) < 0.5,
        "ride_hailing",
        trips.arrive + rng.integers(600, 3600, n),
        trips.dest,
        ride,
        CH["online"],
    )
    emit(
        rng.random(n) < 0.4, "ride_hailing", trips.back + rng.integers(600, 3600, n), home, ride, CH["online"]
    )
    return Events.concat(parts)
