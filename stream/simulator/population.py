"""Who pays and who gets paid: places, users with demographics-driven habits, merchants in pools.

Habits are a smooth function of (age, gender, region, occupation, income) plus a little individual noise,
so demographically similar users (age ± 2, same region) behave alike — what PANTHER's contrastive loss
assumes — while still being individuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalog import (
    CAT,
    CATEGORIES,
    CH,
    CHANNELS,
    FOREIGN,
    GENDER_P,
    HOME_COUNTRY,
    N_CAT,
    OCCUPATIONS,
    REGIONS,
)
from .config import SimulatorConfig
from .sampling import draw_matrix, draw_rows, row_cdf

ONLINE = np.array([c.online for c in CATEGORIES])
N_FAV = 3
# How strongly demographics shape tastes relative to individual noise: the contrastive loss needs
# users of similar age in the same region to look alike, and a model needs individuals to differ.
AGE_WEIGHT = 1.5
REGION_WEIGHT = 1.5
TASTE_NOISE = 0.25
FAV_P = np.array([0.6, 0.3, 0.1])


@dataclass(frozen=True)
class Places:
    """Every city money can move in: domestic ones (by region) first, then abroad."""

    city: np.ndarray  # object: city name
    country: np.ndarray  # object: ISO country code
    region: np.ndarray  # int: region index, -1 abroad
    weight: np.ndarray  # population share among domestic cities (0 abroad)
    tourist: np.ndarray  # bool: legit trips go there
    fraud_origin: np.ndarray  # bool: cloned cards get used there

    @property
    def n(self) -> int:
        return len(self.city)


def build_places() -> Places:
    city, country, region, weight, tourist, origin = [], [], [], [], [], []
    for r, reg in enumerate(REGIONS):
        for name, w in reg.cities:
            city.append(name)
            country.append(HOME_COUNTRY)
            region.append(r)
            weight.append(reg.weight * w)
            tourist.append(True)
            origin.append(False)
    for cc, name, is_tourist, is_origin in FOREIGN:
        city.append(name)
        country.append(cc)
        region.append(-1)
        weight.append(0.0)
        tourist.append(is_tourist)
        origin.append(is_origin)
    return Places(
        city=np.array(city, dtype=object),
        country=np.array(country, dtype=object),
        region=np.array(region),
        weight=np.array(weight) / sum(weight),
        tourist=np.array(tourist),
        fraud_origin=np.array(origin),
    )


@dataclass(frozen=True)
class Users:
    """Struct of arrays, one row per user; the habit fields are what behaviour.py samples from."""

    age: np.ndarray
    gender: np.ndarray
    region: np.ndarray
    home: np.ndarray  # place index
    occupation: np.ndarray
    income: np.ndarray  # amount scale (≈1 for a middle income)
    income_band: np.ndarray  # 0 low, 1 middle, 2 high
    account_age_days: np.ndarray
    second_device: np.ndarray  # bool
    loyalty: np.ndarray  # P(an in-town purchase goes to one of the user's favourite merchants)
    shift: np.ndarray  # chronotype: hours added to discretionary times
    rate: np.ndarray  # discretionary purchases per day
    pref: np.ndarray  # (users × categories) discretionary preference logits
    tilt: np.ndarray  # (users × channels) payment-method preference weights
    commuter: np.ndarray  # bool: rides public transport on workdays
    transit_pass: np.ndarray  # bool: a commuter who buys a monthly pass instead of paying per ride
    coffee: np.ndarray  # bool: morning coffee on workdays
    lunch: np.ndarray  # float: P(buys lunch on a workday)
    grocery_day: np.ndarray  # weekday 0..6 of the weekly shop

    @property
    def n(self) -> int:
        return len(self.age)


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    return (18 + rng.beta(1.7, 2.6, size=n) * 72).astype(np.int64)


def _occupations(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    base = np.array([0.08, 0.12, 0.2, 0.1, 0.08, 0.06, 0.1, 0.07, 0.08, 0.1, 0.05])  # OCCUPATIONS order
    lo = np.array([o.ages[0] for o in OCCUPATIONS])
    hi = np.array([o.ages[1] for o in OCCUPATIONS])
    ok = (age[:, None] >= lo) & (age[:, None] <= hi)
    w = base * ok
    retired = [o.name for o in OCCUPATIONS].index("retired")
    w[:, retired] *= np.where(age >= 67, 40.0, 1.0)
    w[w.sum(axis=1) == 0, retired] = 1.0
    return draw_matrix(rng, w)


def build_users(cfg: SimulatorConfig, rng: np.random.Generator, places: Places) -> Users:
    n = cfg.users
    age = _ages(rng, n)
    gender = rng.choice(len(GENDER_P), size=n, p=GENDER_P)
    region_p = np.array([r.weight for r in REGIONS])
    region = rng.choice(len(REGIONS), size=n, p=region_p / region_p.sum())
    # home city: within the region, by population
    city_w = np.where(places.region[None, :] == region[:, None], places.weight[None, :], 0.0)
    home = draw_matrix(rng, city_w)
    occupation = _occupations(rng, age)
    occ_income = np.array([o.income for o in OCCUPATIONS])[occupation]
    life = 0.75 + 0.45 * np.exp(-(((age - 50) / 18.0) ** 2))
    income = occ_income * life * rng.lognormal(0.0, 0.22, size=n)
    income_band = np.digitize(income, [0.75, 1.3])

    young = rng.random(n) < 0.07
    seasoned = np.minimum(rng.lognormal(np.log(1500), 0.7, size=n), (age - 17) * 365.0)
    account_age = np.where(young, rng.integers(3, 120, size=n), np.maximum(seasoned, 121)).astype(np.int64)

    a = (age - 40) / 20.0
    female = (gender == 0).astype(float) - 0.5 * (gender == 1)
    base = np.array([c.base for c in CATEGORIES])
    pref = (
        base[None, :]
        + AGE_WEIGHT * a[:, None] * np.array([c.age for c in CATEGORIES])[None, :]
        + female[:, None] * np.array([c.gender for c in CATEGORIES])[None, :]
    )
    for r, reg in enumerate(REGIONS):
        for name, shift in reg.taste.items():
            pref[region == r, CAT[name]] += REGION_WEIGHT * shift
    for o, occ in enumerate(OCCUPATIONS):
        for name, shift in occ.taste.items():
            pref[occupation == o, CAT[name]] += shift
    log_inc = np.log(income)
    for name in ("restaurant", "jewelry", "electronics", "clothing", "beauty"):
        pref[:, CAT[name]] += 0.6 * log_inc
    for name in ("fast_food", "convenience_store", "gambling"):
        pref[:, CAT[name]] -= 0.5 * log_inc
    pref += rng.normal(0.0, TASTE_NOISE, size=pref.shape)

    occ = OCCUPATIONS
    works = rng.random(n) < np.array([o.commute for o in occ])[occupation]
    transit = rng.random(n) < np.array([r.transit for r in REGIONS])[region] * np.clip(
        1.2 - 0.4 * a, 0.6, 1.4
    )
    commuter = works & transit
    pref[:, CAT["fuel"]] += np.where(commuter, -0.9, 0.5)
    coffee_p = 1.0 / (1.0 + np.exp(-(pref[:, CAT["coffee_shop"]] - 0.8)))
    coffee = works & (rng.random(n) < 0.8 * coffee_p)
    lunch = np.array([o.lunch for o in occ])[occupation] * works * rng.uniform(0.5, 1.3, size=n)
    lunch = np.minimum(lunch, 0.9)
    grocery_day = rng.choice(7, size=n, p=[0.08, 0.07, 0.08, 0.1, 0.12, 0.33, 0.22])

    # payment method: the young tap and scan, the old insert the card; each user has a clear favourite
    tilt_logit = np.zeros((n, len(CHANNELS)))
    tilt_logit[:, CH["card_present"]] = 0.9 * a + rng.normal(0, 0.9, n)
    tilt_logit[:, CH["contactless"]] = 0.2 + rng.normal(0, 0.9, n)
    tilt_logit[:, CH["qr"]] = -0.9 * a - 0.3 + rng.normal(0, 0.9, n)
    tilt_logit[:, CH["online"]] = 0.0
    tilt = np.exp(2.0 * tilt_logit)
    tilt[:, [CH["online"], CH["transfer"], CH["atm"]]] = 1.0

    rate = (
        0.44
        * cfg.activity
        * np.array([o.activity for o in occ])[occupation]
        * (1.15 - 0.3 * np.clip(a, -1, 2))
        * rng.lognormal(0.0, 0.25, size=n)
    )
    shift = np.clip(np.round((32 - age) / 14.0 + rng.normal(0, 0.6, n)), -1, 3).astype(np.int64)
    return Users(
        age=age,
        gender=gender,
        region=region,
        home=home,
        occupation=occupation,
        income=income,
        income_band=income_band,
        account_age_days=account_age,
        second_device=rng.random(n) < np.clip(0.6 - 0.25 * a, 0.1, 0.9),
        loyalty=rng.beta(6, 2, size=n),
        shift=shift,
        rate=rate,
        pref=pref,
        tilt=tilt,
        commuter=commuter,
        transit_pass=commuter & (rng.random(n) < 0.4),
        coffee=coffee,
        lunch=lunch,
        grocery_day=grocery_day,
    )


@dataclass(frozen=True)
class Merchants:
    """Merchants sorted by pool; a pool is (place, category), or (national, category) for online ones."""

    cat: np.ndarray
    place: np.ndarray  # place index, -1 for national online merchants
    risk: np.ndarray  # 0 low, 1 medium, 2 high
    price: np.ndarray  # price level multiplier
    pool_start: np.ndarray  # (places + 1) × categories
    pool_count: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cat)


def build_merchants(cfg: SimulatorConfig, rng: np.random.Generator, places: Places) -> Merchants:
    n_rows = places.n + 1  # the last row is "national" (online merchants)
    national = places.n
    minimum = np.zeros((n_rows, N_CAT), dtype=np.int64)
    weight = np.zeros((n_rows, N_CAT))
    demand = np.exp(np.clip([c.base if np.isfinite(c.base) else -1.0 for c in CATEGORIES], -3, 3))
    transit = CAT["public_transport"]
    for c, cat in enumerate(CATEGORIES):
        if cat.online:
            minimum[national, c] = 4
            weight[national, c] = demand[c] * 0.5
        elif c == transit:
            minimum[: places.n, c] = 1  # one transit authority per city, no more
        else:
            minimum[: places.n, c] = 1
            weight[: places.n, c] = demand[c] * np.maximum(places.weight, 0.004)
    spare = max(cfg.n_merchants - int(minimum.sum()), 0)
    counts = minimum + rng.multinomial(spare, (weight / weight.sum()).ravel()).reshape(weight.shape)
    flat = counts.ravel()
    pool_start = (np.cumsum(flat) - flat).reshape(counts.shape)
    key = np.repeat(np.arange(flat.size), flat)
    cat = (key % N_CAT).astype(np.int64)
    row = key // N_CAT
    place = np.where(row == national, -1, row)
    risk_p = np.array([c.risk for c in CATEGORIES])
    risk = draw_rows(rng, row_cdf(risk_p), cat)
    price = rng.lognormal(0.0, 0.2, size=len(cat))
    price[cat == transit] = rng.choice([0.9, 0.95, 1.0, 1.05, 1.1], size=int((cat == transit).sum()))
    return Merchants(cat=cat, place=place, risk=risk, price=price, pool_start=pool_start, pool_count=counts)


@dataclass(frozen=True)
class World:
    """Everything fixed before the first transaction: the cast and the stage."""

    cfg: SimulatorConfig
    places: Places
    users: Users
    merchants: Merchants
    favourites: np.ndarray  # users × categories × N_FAV merchant indices (home town or national)

    def pool_key_row(self, cat: np.ndarray, loc: np.ndarray) -> np.ndarray:
        return np.where(ONLINE[cat], self.places.n, loc)

    def random_merchant(self, rng: np.random.Generator, cat: np.ndarray, loc: np.ndarray) -> np.ndarray:
        row = self.pool_key_row(cat, loc)
        start = self.merchants.pool_start[row, cat]
        count = self.merchants.pool_count[row, cat]
        return start + np.minimum((rng.random(len(cat)) * count).astype(np.int64), count - 1)

    def pick_merchant(
        self, rng: np.random.Generator, user: np.ndarray, cat: np.ndarray, loc: np.ndarray
    ) -> np.ndarray:
        """Mostly a favourite merchant at home (online favourites work anywhere), else any in the pool."""
        at_home = ONLINE[cat] | (loc == self.users.home[user])
        fav = at_home & (rng.random(len(user)) < self.users.loyalty[user])
        slot = np.searchsorted(np.cumsum(FAV_P), rng.random(len(user)) * 0.999999, side="right")
        return np.where(fav, self.favourites[user, cat, slot], self.random_merchant(rng, cat, loc))


def build_world(cfg: SimulatorConfig, rng: np.random.Generator) -> World:
    places = build_places()
    users = build_users(cfg, rng, places)
    merchants = build_merchants(cfg, rng, places)
    n, c = users.n, N_CAT
    cat = np.broadcast_to(np.arange(c)[None, :, None], (n, c, N_FAV)).ravel()
    loc = np.broadcast_to(users.home[:, None, None], (n, c, N_FAV)).ravel()
    world = World(cfg, places, users, merchants, np.zeros((n, c, N_FAV), dtype=np.int64))
    fav = world.random_merchant(rng, cat, loc).reshape(n, c, N_FAV)
    object.__setattr__(world, "favourites", fav)
    return world
