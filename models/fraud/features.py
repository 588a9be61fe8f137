"""Hand-crafted features of a new transaction given its user's state: `transaction_features(state, txn)`.

Only the state (events before this one) and the new transaction are read, so features cannot leak the
future: the offline replay (`models.fraud.replay`) and the live worker call this same function.

The vector is fixed-length for a given `FeatureSchema`: numeric features (`NUMERIC`), then one-hot
merchant category and channel over vocabularies fit on the training data (+ "other" + "missing").
A field that the data lacks (merchant_category, device_id, country, city, channel, merchant_risk) is not
an error: its features take their "missing" values (new_device = 0, device_missing = 1, …), and
`FeatureSchema.disabled` lists it so reports can say which signals were off.

Each numeric feature belongs to a named *signal* (the unit `reasons` are reported in).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.fraud.state import HOUR_BUCKETS, HOUR_MS, StateConfig, UserState
from models.fraud.txn import OPTIONAL_FIELDS, TxnView, present_fields, stable_hash

DAY_MS = 24 * HOUR_MS
FIRST_GAP_S = 30 * 86_400.0  # "time since last" of a user's first event: a month (not 0 = a burst)

# (feature name, signal) in vector order.
NUMERIC: tuple[tuple[str, str], ...] = (
    ("log_amount", "amount"),
    ("amount_z", "amount_vs_usual"),
    ("amount_vs_window_max", "amount_vs_usual"),
    ("amount_vs_merchant", "amount_vs_usual"),
    ("micro_amount", "micro_amount"),
    ("round_amount", "round_amount"),
    ("log_history", "history_length"),
    ("first_event", "history_length"),
    ("hour_sin", "time_of_day"),
    ("hour_cos", "time_of_day"),
    ("usual_hour_share", "time_of_day"),
    ("dow_sin", "day_of_week"),
    ("dow_cos", "day_of_week"),
    ("log_gap_s", "time_since_last"),
    ("velocity_10m", "velocity_10m"),
    ("velocity_1h", "velocity_1h"),
    ("velocity_24h", "velocity_24h"),
    ("amount_24h", "velocity_24h"),
    ("new_merchant", "new_merchant"),
    ("log_merchant_count", "new_merchant"),
    ("same_merchant_as_last", "new_merchant"),
    ("new_device", "new_device"),
    ("device_changed", "new_device"),
    ("log_devices", "new_device"),
    ("device_missing", "new_device"),
    ("new_country", "location"),
    ("country_changed", "location"),
    ("city_changed", "location"),
    ("country_share", "location"),
    ("country_missing", "location"),
    ("new_category", "category"),
    ("category_share", "category"),
    ("new_channel", "channel"),
    ("channel_share", "channel"),
    ("risk_level", "merchant_risk"),
    ("risk_missing", "merchant_risk"),
)
NUMERIC_NAMES: tuple[str, ...] = tuple(name for name, _ in NUMERIC)
_HOUR = [(math.sin(2 * math.pi * h / 24), math.cos(2 * math.pi * h / 24)) for h in range(24)]
_DOW = [(math.sin(2 * math.pi * d / 7), math.cos(2 * math.pi * d / 7)) for d in range(7)]
# Which optional field each disabled-able signal needs.
FIELD_SIGNALS: dict[str, tuple[str, ...]] = {
    "merchant_category": ("category",), "channel": ("channel",), "country": ("location",),
    "city": ("location",), "device_id": ("new_device",), "merchant_risk": ("merchant_risk",),
}


@dataclass(frozen=True)
class FeatureSchema:
    """What the feature vector holds for one dataset: vocabularies, thresholds, fields present.

    >>> frame = pd.DataFrame({"merchant_category": ["a", "a", "b"], "channel": ["x", None, "x"]})
    >>> schema = FeatureSchema.fit(frame)
    >>> schema.categories, schema.channels, schema.width - len(NUMERIC_NAMES)
    (('a', 'b'), ('x',), 7)
    >>> "device_id" in schema.disabled
    True
    """

    categories: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    present: tuple[tuple[str, bool], ...] = ()  # optional field → has values in the fit data
    micro_amount: float = 2.0  # amounts below are "micro" (card testing)
    round_unit: float = 50.0  # amounts ≥ this that are multiples of it are "round" (mule transfers)
    amount_std_floor: float = 0.25  # σ floor of log-amounts in the z-score (users with steady amounts)
    state: StateConfig = field(default_factory=StateConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_category_slot", {stable_hash(c): i for i, c in enumerate(self.categories)})
        object.__setattr__(self, "_channel_slot", {stable_hash(c): i for i, c in enumerate(self.channels)})

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, max_categories: int = 40, max_channels: int = 12, **kw: Any
    ) -> FeatureSchema:
        """Vocabularies = the most frequent categories / channels of the (training) frame, sorted by name."""
        return cls(
            categories=_top_levels(frame, "merchant_category", max_categories),
            channels=_top_levels(frame, "channel", max_channels),
            present=tuple(sorted(present_fields(frame).items())),
            **kw,
        )

    @property
    def disabled(self) -> list[str]:
        """Optional contract fields absent from the fit data: their features carry no information."""
        present = dict(self.present)
        return [name for name in OPTIONAL_FIELDS if not present.get(name, False)]

    @property
    def disabled_signals(self) -> list[str]:
        off = {s for name in self.disabled for s in FIELD_SIGNALS.get(name, ())}
        if "country" in self.disabled and "city" not in self.disabled:
            off.discard("location")
        return sorted(off)

    @property
    def category_offset(self) -> int:
        return len(NUMERIC)

    @property
    def channel_offset(self) -> int:
        return len(NUMERIC) + len(self.categories) + 2

    @property
    def width(self) -> int:
        """F: length of the feature vector."""
        return self.channel_offset + len(self.channels) + 2

    @property
    def names(self) -> list[str]:
        cats = [f"category={c}" for c in self.categories] + ["category=other", "category=missing"]
        chans = [f"channel={c}" for c in self.channels] + ["channel=other", "channel=missing"]
        return [*NUMERIC_NAMES, *cats, *chans]

    @property
    def signals(self) -> list[str]:
        """(F,) the signal of every feature (one-hots belong to 'category' / 'channel')."""
        return [s for _, s in NUMERIC] + ["category"] * (len(self.categories) + 2) + ["channel"] * (
            len(self.channels) + 2
        )

    def slots(self, txn: TxnView) -> tuple[int, int]:
        """Column indices of the category and channel one-hot bits that are set for `txn`."""
        cats: dict[int, int] = self._category_slot  # type: ignore[attr-defined]
        chans: dict[int, int] = self._channel_slot  # type: ignore[attr-defined]
        nc, nh = len(self.categories), len(self.channels)
        cat = nc + 1 if txn.category == 0 else cats.get(txn.category, nc)
        chan = nh + 1 if txn.channel == 0 else chans.get(txn.channel, nh)
        return self.category_offset + cat, self.channel_offset + chan

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories), "channels": list(self.channels),
            "present": dict(self.present), "micro_amount": self.micro_amount, "round_unit": self.round_unit,
            "amount_std_floor": self.amount_std_floor, "state": self.state.to_dict(),
            "names": self.names, "signals": self.signals, "disabled": self.disabled,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        schema = cls(
            categories=tuple(data["categories"]), channels=tuple(data["channels"]),
            present=tuple(sorted((k, bool(v)) for k, v in data["present"].items())),
            micro_amount=float(data["micro_amount"]), round_unit=float(data["round_unit"]),
            amount_std_floor=float(data["amount_std_floor"]), state=StateConfig.from_dict(data["state"]),
        )
        if "names" in data and list(data["names"]) != schema.names:
            raise ValueError("feature schema: stored feature names differ from the ones this code builds")
        return schema


def _top_levels(frame: pd.DataFrame, column: str, k: int) -> tuple[str, ...]:
    if column not in frame.columns:
        return ()
    values = frame[column].dropna().astype(str).str.strip()
    values = values[values != ""]
    top = values.value_counts().head(k).index
    return tuple(sorted(str(v) for v in top))


def _share(counts: dict[int, int], key: int, total: int) -> float:
    return counts.get(key, 0) / total if total else 0.0


def numeric_features(schema: FeatureSchema, state: UserState, txn: TxnView) -> list[float]:
    """(len(NUMERIC),) the numeric features of `txn` given the user's past, in `NUMERIC` order."""
    t, amount = txn.time_ms, txn.amount
    x = math.log1p(amount)
    k = state.context_end(t)
    times, amounts = state.times, state.amounts
    seen = state.log_amount
    std = max(seen.std, schema.amount_std_floor)
    amount_z = (x - seen.mean) / std if seen.n >= 2 else 0.0
    window_max = math.log1p(max(amounts[:k])) if k else x
    merchant = state.merchant_stats.get(txn.merchant) if txn.merchant else None
    if k:
        gap = math.log1p(max(t - times[k - 1], 0) / 1000.0)
        lo10, lo1h, lo24 = (bisect_left(times, t - w, 0, k) for w in (600_000, HOUR_MS, DAY_MS))
        amount_24h = math.log1p(sum(amounts[lo24:k]))
        last_merchant, last_device = state.merchants[k - 1], state.devices[k - 1]
        last_country, last_city = state.countries[k - 1], state.cities[k - 1]
    else:
        gap, lo10 = math.log1p(FIRST_GAP_S), 0
        lo1h = lo24 = 0
        amount_24h = 0.0
        last_merchant = last_device = last_country = last_city = 0
    n = state.n
    hour = (t // HOUR_MS) % 24
    dow = (t // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    device, country, city = txn.device, txn.country, txn.city
    units = amount / schema.round_unit
    round_amount = amount >= schema.round_unit and abs(units - round(units)) < 1e-9
    return [
        x,
        amount_z,
        x - window_max,
        x - merchant[1] if merchant else 0.0,
        float(amount < schema.micro_amount),
        float(round_amount),
        math.log1p(n),
        float(n == 0),
        *_HOUR[hour],
        (state.hour_counts[hour * HOUR_BUCKETS // 24] + 1.0) / (n + HOUR_BUCKETS),
        *_DOW[dow],
        gap,
        math.log1p(k - lo10),
        math.log1p(k - lo1h),
        math.log1p(k - lo24),
        amount_24h,
        float(n > 0 and txn.merchant != 0 and merchant is None),
        math.log1p(merchant[0]) if merchant else 0.0,
        float(k > 0 and txn.merchant != 0 and txn.merchant == last_merchant),
        float(n > 0 and device != 0 and device not in state.devices_seen),
        float(k > 0 and device != 0 and last_device != 0 and device != last_device),
        math.log1p(len(state.devices_seen)),
        float(device == 0),
        float(n > 0 and country != 0 and country not in state.countries_seen),
        float(k > 0 and country != 0 and last_country != 0 and country != last_country),
        float(k > 0 and city != 0 and last_city != 0 and city != last_city),
        _share(state.countries_seen, country, n),
        float(country == 0),
        float(n > 0 and txn.category != 0 and txn.category not in state.categories_seen),
        _share(state.categories_seen, txn.category, n),
        float(n > 0 and txn.channel != 0 and txn.channel not in state.channels_seen),
        _share(state.channels_seen, txn.channel, n),
        txn.risk / 2.0 if txn.risk >= 0 else 0.0,
        float(txn.risk < 0),
    ]


def fill_features(schema: FeatureSchema, state: UserState, txn: TxnView, out: np.ndarray) -> None:
    """Write `txn`'s features into the zeroed row `out` (F,): the allocation-free form for replays."""
    out[: len(NUMERIC)] = numeric_features(schema, state, txn)
    cat, chan = schema.slots(txn)
    out[cat] = 1.0
    out[chan] = 1.0


def transaction_features(schema: FeatureSchema, state: UserState, txn: TxnView) -> np.ndarray:
    """(F,) float32 features of a new transaction given its user's state (events before it).

    >>> from models.fraud.txn import txn_view
    >>> schema = FeatureSchema.fit(pd.DataFrame({"channel": ["online"]}))
    >>> v = transaction_features(schema, UserState(), txn_view({"timestamp": 0, "amount": 1.0,
    ...                                                         "merchant_id": "m", "channel": "online"}, 5))
    >>> v.shape == (schema.width,), float(v[NUMERIC_NAMES.index("micro_amount")])
    (True, 1.0)
    """
    out = np.zeros(schema.width, dtype=np.float32)
    fill_features(schema, state, txn, out)
    return out


def transaction_features_batch(
    schema: FeatureSchema, states: Sequence[UserState], txns: Sequence[TxnView]
) -> np.ndarray:
    """(B, F) float32 for B (state, txn) pairs (a micro-batch of distinct users' events)."""
    out = np.zeros((len(txns), schema.width), dtype=np.float32)
    for i, (state, txn) in enumerate(zip(states, txns, strict=True)):
        fill_features(schema, state, txn, out[i])
    return out
