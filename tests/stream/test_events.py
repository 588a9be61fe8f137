"""The event contract: JSON round trips, timestamp forms, and precise errors for bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.events import (
    MAX_FIELD_CHARS,
    SCHEMA_VERSION,
    Alert,
    ContractError,
    DeadLetter,
    Reason,
    Transaction,
    UserProfile,
    dead_letter,
    decode,
)

GOOD = {
    "txn_id": "t1",
    "user_id": "u1",
    "timestamp": "2026-01-02T03:04:05Z",
    "amount": 12.5,
    "merchant_id": "m1",
    "merchant_category": "grocery",
    "channel": "online",
}


def test_transaction_round_trips_through_json() -> None:
    txn = decode(Transaction, json.dumps(GOOD).encode())
    assert txn.schema_version == SCHEMA_VERSION
    assert txn.currency == "USD"
    assert txn.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert decode(Transaction, txn.to_json_bytes()) == txn


@pytest.mark.parametrize(
    "stamp",
    [
        1767323045000,
        "1767323045000",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T04:04:05+01:00",
        "2026-01-02T03:04:05",
    ],
)
def test_timestamp_accepts_iso_and_epoch_millis(stamp: object) -> None:
    txn = Transaction.model_validate({**GOOD, "timestamp": stamp})
    assert txn.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("patch", "field", "reason_part"),
    [
        ({"amount": -1}, "amount", "greater than or equal to 0"),
        ({"amount": "lots"}, "amount", "valid number"),
        ({"timestamp": "yesterday"}, "timestamp", "ISO-8601"),
        ({"user_id": ""}, "user_id", "at least 1 character"),
        ({"merchant_id": "x" * (MAX_FIELD_CHARS + 1)}, "merchant_id", f"at most {MAX_FIELD_CHARS}"),
        ({"currency": "EURO"}, "currency", "at most 3"),
    ],
)
def test_bad_fields_get_field_value_and_reason(patch: dict, field: str, reason_part: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode(Transaction, json.dumps({**GOOD, **patch}).encode())
    error = caught.value.errors[0]
    assert error.field == field
    assert reason_part in error.reason
    assert str(next(iter(patch.values())))[:20] in error.value


def test_missing_field_and_invalid_json_are_explained() -> None:
    record = dict(GOOD)
    del record["user_id"]
    with pytest.raises(ContractError, match="user_id"):
        decode(Transaction, json.dumps(record).encode())
    with pytest.raises(ContractError, match="not valid JSON"):
        decode(Transaction, b"{not json")


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(ContractError, match="larger than 100 bytes"):
        decode(Transaction, json.dumps(GOOD).encode() + b" " * 200, max_bytes=100)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    txn = decode(Transaction, json.dumps({**GOOD, "new_field": 1}).encode())
    assert not hasattr(txn, "new_field")


def test_dead_letter_keeps_raw_bytes_and_reason() -> None:
    raw = b'{"txn_id": 1'
    with pytest.raises(ContractError) as caught:
        decode(Transaction, raw)
    letter = dead_letter(raw, caught.value, topic="transactions", partition=2, offset=7, key=b"u1")
    back = DeadLetter.model_validate_json(letter.to_json_bytes())
    assert back.raw == raw
    assert back.partition == 2 and back.offset == 7 and back.key == "u1"
    assert "JSON" in back.reason


def test_alert_and_profile_round_trip() -> None:
    alert = Alert(
        txn_id="t",
        user_id="u",
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
        score=0.9,
        threshold=0.5,
        deviation=-3.2,
        reasons=[Reason(signal="new_device", contribution=0.4)],
        model_version="panther-abc",
    )
    assert Alert.model_validate_json(alert.to_json_bytes()) == alert
    profile = UserProfile(
        user_id="u", age=31, region="north", attributes={"income_band": "mid", "score": 1.5}
    )
    assert UserProfile.model_validate_json(profile.to_json_bytes()) == profile


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    try:
        decode(Transaction, raw)
    except ContractError as exc:
        assert exc.errors
