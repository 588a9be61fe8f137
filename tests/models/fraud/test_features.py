"""Transaction features by hand, schema round trip, missing fields, batch = single."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest

import models.fraud.features
from models.fraud.features import (
    NUMERIC_NAMES,
    FeatureSchema,
    transaction_features,
    transaction_features_batch,
)
from models.fraud.state import UserState, update
from models.fraud.txn import TxnColumns, txn_view

H = 3_600_000
BASE = 1_767_571_200_000  # 2026-01-05 00:00 UTC, a Monday


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.features).failed == 0


def record(t: int, amount: float, merchant: str = "m1", device: str | None = "d1", country: str | None = "US",
           category: str | None = "grocery", channel: str | None = "card_present") -> dict:
    return {"txn_id": f"t{t}", "timestamp": t, "amount": amount, "merchant_id": merchant, "device_id": device,
            "country": country, "city": "Boston", "merchant_category": category, "channel": channel,
            "merchant_risk": "low"}


@pytest.fixture
def schema() -> FeatureSchema:
    frame = pd.DataFrame([record(0, 1.0), record(1, 1.0, category="fuel", channel="online")])
    return FeatureSchema.fit(frame)


def features_of(schema: FeatureSchema, history: list[dict], new: dict) -> dict[str, float]:
    state = UserState()
    for r in history:
        update(state, txn_view(r, 5))
    vector = transaction_features(schema, state, txn_view(new, 5))
    return dict(zip(schema.names, vector.tolist(), strict=True))


def test_features_by_hand(schema: FeatureSchema) -> None:
    history = [record(BASE + i * H, 20.0) for i in range(5)] + [record(BASE + 5 * H + 50 * 60_000, 20.0)]
    new = record(BASE + 6 * H, 500.0, merchant="m2", device="d9", country="FR", category="fuel")
    f = features_of(schema, history, new)
    assert f["log_amount"] == pytest.approx(math.log1p(500.0))
    assert f["amount_z"] == pytest.approx((math.log1p(500) - math.log1p(20)) / 0.25, rel=1e-5)  # σ floor
    assert f["amount_vs_window_max"] == pytest.approx(math.log1p(500) - math.log1p(20), rel=1e-5)
    assert f["amount_vs_merchant"] == 0.0 and f["new_merchant"] == 1.0 and f["log_merchant_count"] == 0.0
    assert f["velocity_10m"] == pytest.approx(math.log1p(1))  # the event 10 minutes before
    assert f["velocity_1h"] == pytest.approx(math.log1p(1))
    assert f["velocity_24h"] == pytest.approx(math.log1p(6))
    assert f["amount_24h"] == pytest.approx(math.log1p(120.0), rel=1e-5)
    assert f["log_gap_s"] == pytest.approx(math.log1p(600.0), rel=1e-5)
    assert f["new_device"] == 1.0 and f["device_changed"] == 1.0 and f["device_missing"] == 0.0
    assert f["new_country"] == 1.0 and f["country_changed"] == 1.0 and f["country_share"] == 0.0
    assert f["new_category"] == 1.0 and f["category=fuel"] == 1.0 and f["category=grocery"] == 0.0
    assert f["channel=card_present"] == 1.0 and f["new_channel"] == 0.0 and f["channel_share"] == 1.0
    assert f["hour_sin"] == pytest.approx(math.sin(2 * math.pi * 6 / 24), abs=1e-6)
    assert f["dow_sin"] == pytest.approx(0.0, abs=1e-6)  # Monday
    assert f["usual_hour_share"] == pytest.approx((2 + 1) / (6 + 6))  # 04:00-07:59 bucket held 2 of 6
    assert f["log_history"] == pytest.approx(math.log1p(6)) and f["first_event"] == 0.0
    assert f["risk_level"] == 0.0 and f["risk_missing"] == 0.0


def test_first_event_and_micro_round(schema: FeatureSchema) -> None:
    f = features_of(schema, [], record(BASE, 1.5))
    assert f["first_event"] == 1.0 and f["micro_amount"] == 1.0 and f["new_device"] == 0.0
    assert f["log_gap_s"] == pytest.approx(math.log1p(30 * 86_400), rel=1e-5)
    assert features_of(schema, [], record(BASE, 250.0))["round_amount"] == 1.0
    assert features_of(schema, [], record(BASE, 247.01))["round_amount"] == 0.0


def test_missing_fields_degrade() -> None:
    frame = pd.DataFrame([{"txn_id": "a", "timestamp": 0, "amount": 3.0, "merchant_id": "m"}])
    schema = FeatureSchema.fit(frame)
    assert set(schema.disabled) == {"merchant_category", "channel", "country", "city", "device_id",
                                    "merchant_risk"}
    assert {"category", "channel", "location", "new_device", "merchant_risk"} <= set(schema.disabled_signals)
    history = [{"txn_id": f"t{i}", "timestamp": i * H, "amount": 3.0, "merchant_id": "m"} for i in range(3)]
    state = UserState()
    for r in history:
        update(state, txn_view(r, 5))
    f = dict(zip(schema.names, transaction_features(schema, state, txn_view(history[0] | {"timestamp": 5 * H},
                                                                               5)).tolist(), strict=True))
    assert f["device_missing"] == 1.0 and f["new_device"] == 0.0 and f["country_missing"] == 1.0
    assert f["category=missing"] == 1.0 and f["channel=missing"] == 1.0 and f["risk_missing"] == 1.0
    assert np.isfinite(list(f.values())).all()


def test_schema_round_trip_and_names(schema: FeatureSchema) -> None:
    again = FeatureSchema.from_dict(schema.to_dict())
    assert again == schema and again.names == schema.names
    assert len(schema.names) == len(schema.signals) == schema.width
    assert schema.names[: len(NUMERIC_NAMES)] == list(NUMERIC_NAMES)


def test_batch_equals_single(schema: FeatureSchema) -> None:
    states, txns = [], []
    for u in range(4):
        state = UserState()
        for i in range(u + 1):
            update(state, txn_view(record(BASE + i * H, 10.0 * (i + u)), 5))
        states.append(state)
        txns.append(txn_view(record(BASE + 9 * H, 33.0 + u), 5))
    batch = transaction_features_batch(schema, states, txns)
    single = np.stack([transaction_features(schema, s, t) for s, t in zip(states, txns, strict=True)])
    np.testing.assert_array_equal(batch, single)


def test_columns_equal_views() -> None:
    records = [record(BASE + i, 5.0 + i, device=None if i % 2 else "d") for i in range(5)]
    frame = pd.DataFrame(records)
    cols = TxnColumns.from_frame(frame, np.arange(5), frame["timestamp"].to_numpy())
    assert list(cols.rows()) == [txn_view(r, i) for i, r in enumerate(records)]
    frame_dt = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
    assert txn_view(frame_dt.iloc[2], 2) == cols.row(2)


def test_contract_transaction_gives_the_same_view_as_its_frame_row() -> None:
    from stream.events import Transaction

    record = {"txn_id": "t1", "user_id": "u1", "timestamp": "2026-01-05T08:30:00.123Z", "amount": 12.5,
              "merchant_id": "m7", "merchant_category": "grocery", "channel": "online", "country": "US",
              "city": "Boston", "device_id": "d1"}
    event = Transaction.model_validate(record)
    frame = pd.DataFrame([record]).assign(timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True))
    from models.sequences import to_epoch_ms

    cols = TxnColumns.from_frame(frame, np.array([9]), to_epoch_ms(frame["timestamp"]))
    assert txn_view(event, 9) == txn_view(record, 9) == cols.row(0)
    assert txn_view(event, 9).time_ms == 1_767_601_800_123
