"""The simulated world's fixed vocabulary: categories, channels, places, occupations.

Plain data, kept apart from the sampling code so the habits it encodes can be read (and tuned) in one place.
Amounts are medians in USD; `age` and `gender` are logit shifts per 20 years above 40 and for women.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CHANNELS: tuple[str, ...] = ("card_present", "contactless", "qr", "online", "transfer", "atm")
CH = {name: i for i, name in enumerate(CHANNELS)}
RISK_LEVELS: tuple[str, ...] = ("low", "medium", "high")
HOME_COUNTRY = "US"
CURRENCY = "USD"


class Category(NamedTuple):
    name: str
    online: bool  # merchants are national (no city) and the channel is mostly online/transfer
    median: float
    sigma: float
    base: float  # discretionary preference logit; -inf: only scheduled (recurring, routine, travel)
    age: float
    gender: float
    channels: dict[str, float]
    hours: str
    risk: tuple[float, float, float]  # P(low), P(medium), P(high) of a merchant of this category
    weekend: float = 1.0  # discretionary weight multiplier on Saturday/Sunday


_IN_STORE = {"card_present": 0.45, "contactless": 0.4, "qr": 0.15}
_CARD = {"card_present": 0.8, "contactless": 0.2}
_FUEL = {"card_present": 0.7, "contactless": 0.3}
_TAP = {"contactless": 0.6, "qr": 0.4}
_SHOP = {"card_present": 0.5, "contactless": 0.2, "online": 0.3}
_WEB = {"online": 0.95, "qr": 0.05}
_APP = {"online": 1.0}
_CRYPTO = {"online": 0.6, "transfer": 0.4}
_REMIT = {"transfer": 0.9, "online": 0.1}
_BILL = {"online": 0.7, "transfer": 0.3}
_POLICY = {"online": 0.5, "transfer": 0.5}
_BANK = {"transfer": 1.0}
_ATM = {"atm": 1.0}
_LOW = (0.96, 0.035, 0.005)
_SOME = (0.86, 0.13, 0.01)
_MID = (0.72, 0.25, 0.03)
_RISKY = (0.05, 0.4, 0.55)
_GIFT = (0.1, 0.5, 0.4)
NO = float("-inf")

# fmt: off
CATEGORIES: tuple[Category, ...] = (
    #        name                online median sigma base   age  gender channels  hours     risk  weekend
    Category("grocery",            False, 42.0, 0.5,  1.0,  0.3,  0.3, _IN_STORE, "day",     _LOW, 1.3),
    Category("restaurant",         False, 34.0, 0.5,  1.0,  0.0,  0.0, _IN_STORE, "meal",    _LOW, 1.4),
    Category("fast_food",          False, 11.5, 0.35, 0.9, -0.7, -0.2, _IN_STORE, "meal",    _LOW, 1.0),
    Category("coffee_shop",        False, 5.4,  0.25, 0.5, -0.4,  0.3, _IN_STORE, "morning", _LOW, 0.8),
    Category("bar_nightlife",      False, 29.0, 0.55, 0.0, -1.3, -0.4, _IN_STORE, "night",   _SOME, 2.2),
    Category("fuel",               False, 47.0, 0.3,  0.6,  0.2, -0.4, _FUEL,     "day",     _LOW),
    Category("convenience_store",  False, 8.5,  0.45, 0.3, -0.5, -0.2, _IN_STORE, "any",     _LOW),
    Category("public_transport",   False, 2.75, 0.0,  NO,   0.0,  0.0, _TAP,      "commute", _LOW),
    Category("pharmacy",           False, 21.0, 0.55, 0.1,  0.8,  0.4, _IN_STORE, "day",     _LOW),
    Category("healthcare",         False, 90.0, 0.7, -0.8,  0.9,  0.3, _CARD,     "day",     _LOW, 0.2),
    Category("clothing",           False, 58.0, 0.55, -0.1, -0.4, 0.7, _IN_STORE, "day",     _LOW, 1.8),
    Category("electronics",        False, 190.0, 0.75, -1.4, -0.4, -0.6, _SHOP,   "day",     _SOME, 1.5),
    Category("home_improvement",   False, 68.0, 0.65, -0.6, 0.6, -0.4, _IN_STORE, "day",     _LOW, 2.0),
    Category("entertainment",      False, 36.0, 0.45, -0.3, -0.6, 0.0, _IN_STORE, "evening", _LOW, 2.0),
    Category("beauty",             False, 42.0, 0.45, -0.8, -0.1, 1.4, _IN_STORE, "day",     _LOW, 1.3),
    Category("pet_supplies",       False, 33.0, 0.45, -1.0, 0.3,  0.3, _IN_STORE, "day",     _LOW, 1.3),
    Category("jewelry",            False, 320.0, 0.7, -3.2, 0.3,  0.5, _CARD,     "day",     _MID, 1.5),
    Category("cash_withdrawal",    False, 100.0, 0.5, -0.6, 0.7,  0.0, _ATM,      "day",     _LOW),
    Category("hotel",              False, 160.0, 0.4, NO,   0.0,  0.0, _CARD,     "evening", _LOW),
    Category("online_marketplace", True,  37.0, 0.75, 0.5, -0.4,  0.4, _WEB,      "evening", _SOME, 1.2),
    Category("food_delivery",      True,  28.0, 0.35, -0.2, -1.0, 0.0, _APP,      "evening", _LOW, 1.4),
    Category("ride_hailing",       True,  17.0, 0.45, -0.2, -0.8, 0.2, _APP,      "evening", _LOW, 1.3),
    Category("digital_goods",      True,  4.99, 0.6, -0.9, -1.2, -0.3, _APP,      "night",   _MID),
    Category("charity",            True,  25.0, 0.6, -3.0,  0.8,  0.4, _APP,      "evening", _MID),
    Category("gambling",           True,  40.0, 0.8, -2.8, -0.6, -1.2, _WEB,      "night",   _RISKY, 1.6),
    Category("crypto_exchange",    True,  150.0, 0.9, -3.2, -1.4, -1.0, _CRYPTO,  "night",   _RISKY),
    Category("gift_cards",         True,  50.0, 0.45, -2.8, 0.0,  0.3, _WEB,      "day",     _GIFT),
    Category("money_transfer",     True,  200.0, 0.5, NO,   0.0,  0.0, _REMIT,    "day",     _RISKY),
    Category("streaming",          True,  12.99, 0.0, NO,   0.0,  0.0, _APP,      "night",   _LOW),
    Category("telecom",            True,  65.0, 0.0,  NO,   0.0,  0.0, _APP,      "night",   _LOW),
    Category("utilities",          True,  110.0, 0.0, NO,   0.0,  0.0, _BILL,     "night",   _LOW),
    Category("insurance",          True,  140.0, 0.0, NO,   0.0,  0.0, _POLICY,   "night",   _LOW),
    Category("fitness",            True,  45.0, 0.0,  NO,   0.0,  0.0, _APP,      "night",   _LOW),
    Category("rent",               True,  1500.0, 0.0, NO,  0.0,  0.0, _BANK,     "night",   _LOW),
    Category("airline",            True,  420.0, 0.5, NO,   0.0,  0.0, _APP,      "evening", _LOW),
)
# fmt: on
CAT = {c.name: i for i, c in enumerate(CATEGORIES)}
N_CAT = len(CATEGORIES)


def _bumps(*peaks: tuple[float, float, float]) -> np.ndarray:
    """A 24-hour profile as a sum of (centre, width, weight) bumps on a circle, plus a small floor."""
    hours = np.arange(24) + 0.5
    out = np.full(24, 0.003)
    for centre, width, weight in peaks:
        d = np.minimum(np.abs(hours - centre), 24 - np.abs(hours - centre))
        out += weight * np.exp(-0.5 * (d / width) ** 2)
    return out / out.sum()


HOUR_PROFILES: dict[str, np.ndarray] = {
    "day": _bumps((11.5, 2.0, 1.0), (17.0, 2.0, 0.8)),
    "meal": _bumps((12.6, 0.8, 1.0), (19.5, 1.3, 0.9)),
    "morning": _bumps((8.3, 1.0, 1.0), (15.0, 1.5, 0.25)),
    "evening": _bumps((19.5, 2.0, 1.0), (13.0, 2.0, 0.3)),
    "night": _bumps((22.5, 1.6, 1.0), (1.0, 1.0, 0.3)),
    "any": _bumps((13.0, 4.5, 1.0), (21.0, 2.0, 0.4)),
    "commute": _bumps((8.0, 0.7, 1.0), (18.0, 0.9, 1.0)),
}


class Region(NamedTuple):
    name: str
    cities: tuple[tuple[str, float], ...]  # (city, population weight)
    weight: float
    rent: float  # monthly rent scale
    transit: float  # share of commuters who ride public transport rather than drive
    taste: dict[str, float]  # category logit shifts shared by everyone living there


# fmt: off
REGIONS: tuple[Region, ...] = (
    Region("northeast", (("New York", 0.6), ("Boston", 0.25), ("Philadelphia", 0.15)), 0.2, 1.35, 0.75,
           {"coffee_shop": 0.4, "food_delivery": 0.5, "fuel": -0.8, "ride_hailing": 0.3}),
    Region("southeast", (("Atlanta", 0.4), ("Miami", 0.35), ("Charlotte", 0.25)), 0.18, 0.95, 0.25,
           {"fuel": 0.4, "fast_food": 0.3, "bar_nightlife": 0.3, "gambling": 0.3}),
    Region("midwest", (("Chicago", 0.55), ("Detroit", 0.25), ("Minneapolis", 0.2)), 0.18, 0.85, 0.4,
           {"fuel": 0.3, "home_improvement": 0.4, "restaurant": -0.2, "grocery": 0.2}),
    Region("south", (("Houston", 0.45), ("Dallas", 0.35), ("Austin", 0.2)), 0.16, 0.9, 0.15,
           {"fuel": 0.6, "fast_food": 0.5, "restaurant": 0.2, "coffee_shop": -0.3}),
    Region("west", (("Los Angeles", 0.45), ("San Francisco", 0.3), ("Seattle", 0.25)), 0.2, 1.5, 0.5,
           {"coffee_shop": 0.5, "ride_hailing": 0.6, "crypto_exchange": 0.6, "online_marketplace": 0.3}),
    Region("mountain", (("Denver", 0.4), ("Phoenix", 0.4), ("Salt Lake City", 0.2)), 0.08, 1.0, 0.2,
           {"fuel": 0.5, "home_improvement": 0.3, "entertainment": 0.3, "bar_nightlife": -0.3}),
)
# fmt: on

# Abroad: (country, city, tourist destination?, usual fraud origin?).
FOREIGN: tuple[tuple[str, str, bool, bool], ...] = (
    ("CA", "Toronto", True, False),
    ("MX", "Cancun", True, False),
    ("GB", "London", True, True),
    ("FR", "Paris", True, True),
    ("IT", "Rome", True, False),
    ("JP", "Tokyo", True, False),
    ("NG", "Lagos", False, True),
    ("RO", "Bucharest", False, True),
    ("ID", "Jakarta", False, True),
    ("VN", "Ho Chi Minh City", False, True),
    ("BR", "Sao Paulo", False, True),
    ("UA", "Kyiv", False, True),
    ("PH", "Manila", False, True),
)


class Occupation(NamedTuple):
    name: str
    income: float  # amount scale
    commute: float  # P(commutes on weekdays)
    lunch: float  # P(buys lunch on a workday)
    activity: float  # discretionary rate multiplier
    ages: tuple[int, int]  # plausible age range
    taste: dict[str, float]


# fmt: off
OCCUPATIONS: tuple[Occupation, ...] = (
    #          name                 income commute lunch activity ages   taste
    Occupation("student",           0.55, 0.6,  0.25, 1.1, (18, 27), {"fast_food": 0.6, "digital_goods": 0.8,
               "bar_nightlife": 0.6, "food_delivery": 0.4, "fuel": -0.6, "home_improvement": -1.5}),
    Occupation("retail_worker",     0.75, 0.8,  0.35, 0.9, (18, 66), {"fast_food": 0.4,
               "convenience_store": 0.4}),
    Occupation("office_worker",     1.0,  0.85, 0.6,  1.0, (22, 66), {"coffee_shop": 0.5, "restaurant": 0.2}),
    Occupation("engineer",          1.45, 0.8,  0.55, 1.0, (22, 66), {"electronics": 0.7, "coffee_shop": 0.3,
               "online_marketplace": 0.4, "crypto_exchange": 0.5}),
    Occupation("healthcare_worker", 1.15, 0.9,  0.3,  0.9, (22, 68), {"pharmacy": 0.3, "coffee_shop": 0.3,
               "convenience_store": 0.3}),
    Occupation("teacher",           0.95, 0.9,  0.15, 0.9, (23, 67), {"charity": 0.6, "clothing": 0.2,
               "entertainment": 0.2}),
    Occupation("tradesperson",      1.0,  0.9,  0.45, 1.0, (18, 67), {"fuel": 0.7, "home_improvement": 1.0,
               "fast_food": 0.4, "coffee_shop": -0.2}),
    Occupation("manager",           1.8,  0.75, 0.55, 1.1, (28, 68), {"restaurant": 0.5, "jewelry": 0.5,
               "electronics": 0.3, "bar_nightlife": 0.2}),
    Occupation("self_employed",     1.25, 0.25, 0.3,  1.0, (22, 75), {"fuel": 0.3, "online_marketplace": 0.3,
               "electronics": 0.2}),
    Occupation("retired",           0.85, 0.0,  0.0,  0.8, (60, 90), {"pharmacy": 0.6, "healthcare": 0.6,
               "charity": 0.6, "grocery": 0.3, "bar_nightlife": -1.0, "digital_goods": -1.0}),
    Occupation("unemployed",        0.5,  0.0,  0.0,  0.7, (18, 66), {"fast_food": 0.3, "gambling": 0.5,
               "convenience_store": 0.4}),
)
# fmt: on

GENDERS: tuple[str, ...] = ("female", "male", "nonbinary")
GENDER_P = (0.49, 0.48, 0.03)
INCOME_BANDS: tuple[str, ...] = ("low", "middle", "high")
