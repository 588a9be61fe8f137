"""Bad input at the stream's edge: whatever the bytes, decoding never raises, every bad record becomes
a dead letter with a reason and its raw bytes, and the good records around it still decode.

Records go through `decode_events` (stream/worker/decode.py), the worker's own batch entry point,
with stand-ins for Faust events (only `.value` and `.message` are read). The end-to-end check with a
real broker and worker lives with the worker's tests.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.events import (
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    MAX_AMOUNT,
    MAX_ATTRIBUTES,
    MAX_FIELD_CHARS,
    MAX_LETTER_ERRORS,
    ContractError,
    DeadLetter,
    Transaction,
    UserProfile,
    dead_letter,
    decode,
    validate_record,
)
from stream.pan import looks_like_pan, mask_pans_bytes
from stream.worker.decode import decode_events

MAX_BYTES = 4096  # small, so oversized records are cheap to generate; the default is 64 KiB
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT_FIELDS = ("txn_id", "user_id", "merchant_id", "merchant_category", "channel", "city", "country")
FREE_TEXT_FIELDS = ("merchant_category", "channel", "city", "country")

# ---------------------------------------------------------------- generators

# Printable text in any script (emoji, CJK, combining marks, RTL, format characters such as the
# emoji joiner), without whitespace so the contract's stripping leaves it unchanged.
unicode_text = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda text: not looks_like_pan(text))
ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=24)
event_times = st.integers(
    int(EARLIEST_EVENT_TIME.timestamp() * 1000), int(LATEST_EVENT_TIME.timestamp() * 1000) - 1
)


@st.composite
def valid_transactions(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {
        "txn_id": draw(ids),
        "user_id": draw(ids),
        "timestamp": draw(st.one_of(event_times, event_times.map(_iso))),
        "amount": draw(st.floats(0, MAX_AMOUNT, allow_nan=False)),
        "merchant_id": draw(st.one_of(ids, unicode_text)),
    }
    for name in FREE_TEXT_FIELDS:
        if draw(st.booleans()):
            record[name] = draw(unicode_text)
    return record


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


def _control_text(draw: st.DrawFn) -> str:
    """Text with a C0/C1 control character inside it (at the edges, whitespace ones are stripped)."""
    control = draw(st.sampled_from([chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]))
    return draw(ids) + control + draw(ids)


WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(
        st.integers(),
        st.floats(),
        st.booleans(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(ids, ids),
    ),
    "amount": st.one_of(
        st.lists(st.floats(), max_size=3),
        st.dictionaries(ids, st.integers()),
        st.text("abcxyz", min_size=1),
        st.floats(max_value=-0.01),
        st.floats(min_value=MAX_AMOUNT * 1.01),
        st.integers(min_value=10**15, max_value=10**300),
    ),
    "timestamp": st.one_of(
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.sampled_from(["yesterday", "", "2026-13-45", "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00"]),
        st.integers(min_value=-(10**30), max_value=int(EARLIEST_EVENT_TIME.timestamp() * 1000) - 1),
        st.integers(min_value=int(LATEST_EVENT_TIME.timestamp() * 1000), max_value=10**30),
        st.floats(min_value=1e200),
    ),
}


@st.composite
def bad_transactions(draw: st.DrawFn) -> tuple[str, bytes]:
    """(what is wrong, raw bytes) for a record the contract must refuse."""
    good = draw(valid_transactions())
    kind = draw(
        st.sampled_from(
            ["truncated", "binary", "oversized", "wrong_type", "missing", "control", "too_long", "nested",
             "deep_json", "lone_surrogate", "card_number", "not_object", "huge_number"]
        )
    )  # fmt: skip
    raw = json.dumps(good).encode()
    if kind == "truncated":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "binary":
        raw = draw(st.binary(max_size=300))
    elif kind == "oversized":
        raw = json.dumps({**good, "padding": "x" * draw(st.integers(MAX_BYTES, 3 * MAX_BYTES))}).encode()
    elif kind == "wrong_type":
        field = draw(st.sampled_from(["txn_id", "user_id", "merchant_id", "amount", "timestamp"]))
        strategy = WRONG_TYPES.get(field, WRONG_TYPES["text"])
        raw = json.dumps({**good, field: draw(strategy)}).encode()
    elif kind == "missing":
        field = draw(st.sampled_from(["txn_id", "user_id", "merchant_id", "amount", "timestamp"]))
        raw = json.dumps({k: v for k, v in good.items() if k != field}).encode()
    elif kind == "control":
        raw = json.dumps({**good, draw(st.sampled_from(TEXT_FIELDS)): _control_text(draw)}).encode()
    elif kind == "too_long":
        text = "é" * draw(st.integers(MAX_FIELD_CHARS + 1, 2 * MAX_FIELD_CHARS))
        raw = json.dumps({**good, draw(st.sampled_from(TEXT_FIELDS)): text}, ensure_ascii=False).encode()
    elif kind == "nested":  # a container where a scalar belongs
        depth = draw(st.integers(1, 60))
        raw = json.dumps({**good, draw(st.sampled_from(TEXT_FIELDS)): json.loads("[" * depth + "]" * depth)})
        raw = raw.encode()
    elif kind == "deep_json":  # deeper than the JSON parser's recursion limit, even in an unknown field
        depth = draw(st.integers(300, 1500))
        raw = json.dumps(good)[:-1].encode() + b', "extra": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "lone_surrogate":
        raw = json.dumps({**good, "txn_id": "x"}).encode().replace(b'"x"', b'"a\\ud83d"')
    elif kind == "card_number":
        raw = json.dumps({**good, draw(st.sampled_from(FREE_TEXT_FIELDS)): draw(card_text())}).encode()
    elif kind == "not_object":
        raw = json.dumps(draw(st.one_of(st.none(), st.integers(), st.lists(st.integers()), ids))).encode()
    elif kind == "huge_number":  # beyond float range, or a timestamp far past year 9999
        if draw(st.booleans()):
            raw = json.dumps({**good, "amount": 0}).replace('"amount": 0', '"amount": 1e400', 1).encode()
        else:
            digits = "1" + "0" * draw(st.integers(25, 400))
            raw = json.dumps({**good, "timestamp": 0}).replace('"timestamp": 0', f'"timestamp": {digits}', 1)
            raw = raw.encode()
    return kind, raw


@st.composite
def card_text(draw: st.DrawFn) -> str:
    """Free text with a Luhn-valid 16-digit number in the networks' ranges, grouped or not."""
    body = [draw(st.sampled_from("23456"))] + [str(draw(st.integers(0, 9))) for _ in range(14)]
    check = next(d for d in "0123456789" if looks_like_pan("".join(body) + d))
    digits = "".join(body) + check
    sep = draw(st.sampled_from(["", " ", "-"]))
    grouped = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
    return draw(st.sampled_from(["", "paid with ", "card "])) + grouped + draw(st.sampled_from(["", " ok"]))


def _user_key(raw: bytes) -> bytes:
    """The key a well-behaved producer sends: the record's user_id as the contract reads it (stripped)."""
    try:
        user_id = json.loads(raw).get("user_id")
    except (ValueError, AttributeError, RecursionError):
        return b"user-key"
    try:
        return user_id.strip().encode() if isinstance(user_id, str) else b"user-key"
    except UnicodeEncodeError:  # a lone surrogate: the record is refused before its key is read
        return b"user-key"


def _events(raws: list[bytes], keys: list[bytes | None] | None = None) -> list[SimpleNamespace]:
    """Stand-ins for Faust events: `decode_events` reads `.value` and `.message` only."""
    keys = [_user_key(raw) for raw in raws] if keys is None else keys
    return [
        SimpleNamespace(value=raw, message=SimpleNamespace(partition=3, offset=100 + i, key=key))
        for i, (raw, key) in enumerate(zip(raws, keys, strict=True))
    ]


def _assert_good_letter(letter: DeadLetter, raw: bytes, offset: int) -> None:
    """A dead letter says why, keeps the raw bytes, survives its own JSON, and carries no card number."""
    assert letter.reason and letter.errors
    assert all(error.field and error.reason for error in letter.errors)
    assert (letter.source_topic, letter.partition, letter.offset) == ("transactions", 3, offset)
    kept = raw[:MAX_BYTES] if len(raw) > MAX_BYTES else raw
    assert letter.raw == mask_pans_bytes(kept)[0]
    assert letter.raw_size == len(raw) and letter.raw_truncated == (len(raw) > MAX_BYTES)
    if letter.raw_masked == 0:
        assert letter.raw == kept  # byte for byte, whenever there was no card number to mask
    wire = letter.to_json_bytes()
    back = DeadLetter.model_validate_json(wire)
    assert back.raw == letter.raw and back.errors == letter.errors
    assert len(wire) < 4 * MAX_BYTES // 3 + MAX_LETTER_ERRORS * 1100 + 1024  # bounded, whatever came in
    readable = wire.decode().replace(letter.raw_b64, "")
    assert not looks_like_pan(readable) and mask_pans_bytes(letter.raw)[1] == 0


# ---------------------------------------------------------------- properties


@FAST
@given(st.lists(st.one_of(valid_transactions().map(lambda r: ("valid", r)), bad_transactions()), max_size=12))
def test_a_batch_splits_into_valid_records_and_explained_dead_letters(items: list[tuple[str, Any]]) -> None:
    raws = [json.dumps(item).encode() if kind == "valid" else item for kind, item in items]
    decoded = decode_events(_events(raws), Transaction, "transactions", MAX_BYTES)  # never raises
    expected_valid = [item for kind, item in items if kind == "valid"]
    assert [txn.txn_id for _, txn in decoded.valid] == [record["txn_id"] for record in expected_valid]
    assert len(decoded.valid) + len(decoded.dead) == len(items)
    for event, letter in decoded.dead:
        kind, raw = items[event.message.offset - 100]
        assert kind != "valid", letter.reason
        _assert_good_letter(letter, raw, event.message.offset)


@FAST
@given(valid_transactions())
def test_valid_records_in_any_script_round_trip(record: dict[str, Any]) -> None:
    raw = json.dumps(record, ensure_ascii=False).encode()
    txn = decode(Transaction, raw, MAX_BYTES)
    assert txn.merchant_id == record["merchant_id"] and txn.city == record.get("city")
    assert decode(Transaction, txn.to_json_bytes(), 2 * MAX_BYTES) == txn


@FAST
@given(bad_transactions())
def test_each_kind_of_bad_record_gets_a_reason_at_the_right_place(case: tuple[str, bytes]) -> None:
    kind, raw = case
    with pytest.raises(ContractError) as caught:
        decode(Transaction, raw, MAX_BYTES)
    reason = str(caught.value)
    expected = {
        "truncated": ("JSON", "<record>"),
        "oversized": (f"larger than {MAX_BYTES} bytes",),
        "deep_json": ("recursion limit",),
        "lone_surrogate": ("JSON",),
        "control": ("control characters",),
        "too_long": (f"at most {MAX_FIELD_CHARS} characters",),
        "card_number": ("payment card number",),
        "missing": ("Field required",),
    }.get(kind)
    if expected:
        assert any(part in reason for part in expected), reason


@FAST
@given(st.binary(max_size=2 * MAX_BYTES), st.sampled_from([Transaction, UserProfile]))
def test_arbitrary_bytes_only_ever_raise_contract_errors(raw: bytes, model: type) -> None:
    try:
        decode(model, raw, MAX_BYTES)
    except ContractError as error:
        _assert_good_letter(
            dead_letter(raw, error, topic="transactions", partition=3, offset=1, key=None), raw, offset=1
        )


# ---------------------------------------------------------------- profiles


@FAST
@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=8),
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(min_value=-(10**350), max_value=10**350),
            st.text(max_size=300),
            st.none(),
            st.lists(st.integers(), max_size=2),
            st.booleans(),
        ),
        max_size=MAX_ATTRIBUTES + 8,
    )
)
def test_profile_attributes_are_bounded_finite_and_printable(attributes: dict[str, Any]) -> None:
    raw = json.dumps({"user_id": "u1", "attributes": attributes}).encode()
    try:
        profile = decode(UserProfile, raw, 64 * 1024)
    except ContractError as error:
        assert all(e.field.startswith("attributes") for e in error.errors), error
        return
    assert len(profile.attributes) <= MAX_ATTRIBUTES
    for value in profile.attributes.values():
        if isinstance(value, str):
            assert len(value) <= MAX_FIELD_CHARS and not looks_like_pan(value)
            assert all(not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) for c in value)
        else:
            assert value == value and abs(value) != float("inf")


# ---------------------------------------------------------------- examples worth naming


GOOD = {"txn_id": "t1", "user_id": "u1", "timestamp": 1767323045000, "amount": 12.5, "merchant_id": "m1"}


@pytest.mark.parametrize(
    ("patch", "field", "reason_part"),
    [
        ({"timestamp": 1767323045}, "timestamp", "seconds or microseconds instead of milliseconds"),
        ({"timestamp": 5_000_000_000_000}, "timestamp", "outside [2000-01-01, 2100-01-01)"),
        ({"timestamp": 1767323045000000}, "timestamp", "out of range"),
        ({"timestamp": 1e300}, "timestamp", "out of range"),
        ({"timestamp": "9999-12-31T23:59:59-14:00"}, "timestamp", "out of range"),
        ({"amount": 2e12}, "amount", "less than or equal to"),
        ({"city": "Paris\x1b[31m"}, "city", "control characters"),
        ({"user_id": "u\u0085x"}, "user_id", "control characters"),
        ({"city": "card 4111 1111 1111 1111"}, "city", "payment card number"),
    ],
)
def test_limits_name_the_field_and_the_rule(patch: dict[str, Any], field: str, reason_part: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode(Transaction, json.dumps({**GOOD, **patch}).encode())
    (error,) = caught.value.errors
    assert error.field == field and reason_part in error.reason, error


def test_nan_and_infinity_literals_are_refused() -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        raw = json.dumps({**GOOD, "amount": 0}).encode().replace(b'"amount": 0', b'"amount": ' + literal)
        with pytest.raises(ContractError, match="finite"):
            decode(Transaction, raw)


def test_card_numbers_are_masked_in_the_letter_and_its_raw_bytes() -> None:
    raw = json.dumps({**GOOD, "city": "4111-1111-1111-1111", "txn_id": "x" * 300}).encode()
    with pytest.raises(ContractError) as caught:
        decode(Transaction, raw)
    letter = dead_letter(raw, caught.value, topic="t", partition=0, offset=0, key=b"4111111111111111")
    wire = letter.to_json_bytes().decode()
    assert "4111111111111111" not in wire and "4111-1111-1111-1111" not in wire
    assert b"4111-1111-1111-1111" not in letter.raw
    assert letter.raw_masked == 1 and b"****-****-****-1111" in letter.raw
    assert letter.key == "************1111"
    assert len(letter.raw) == len(raw)  # masked in place: parser positions still line up


def test_identifiers_that_happen_to_pass_luhn_are_accepted() -> None:
    """Ids are not scanned: numeric ids pass Luhn one time in ten (docs/SECURITY.md, PAN policy)."""
    txn = decode(Transaction, json.dumps({**GOOD, "txn_id": "4111111111111111"}).encode())
    assert txn.txn_id == "4111111111111111"


def test_a_letter_keeps_at_most_a_bounded_number_of_errors() -> None:
    attributes = {f"k{i}": [i] for i in range(MAX_ATTRIBUTES)}
    raw = json.dumps({"user_id": "u1", "attributes": attributes}).encode()
    with pytest.raises(ContractError) as caught:
        decode(UserProfile, raw)
    letter = dead_letter(raw, caught.value, topic="user-profiles", partition=0, offset=0, key=None)
    assert len(caught.value.errors) == MAX_ATTRIBUTES and len(letter.errors) == MAX_LETTER_ERRORS
    assert f"and {MAX_ATTRIBUTES - MAX_LETTER_ERRORS} more problems" in letter.reason


def test_a_validator_bug_still_becomes_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise OverflowError("simulated bug")

    monkeypatch.setattr(Transaction, "model_validate_json", broken)
    with pytest.raises(ContractError, match="could not be decoded: OverflowError"):
        decode(Transaction, json.dumps(GOOD).encode())


@pytest.mark.parametrize("key", [None, b"t-1", b" u1", b"U1", "u1\u00e9".encode("latin-1")])
def test_a_record_not_keyed_by_its_user_id_is_a_dead_letter(key: bytes | None) -> None:
    """Issue 15: a record keyed otherwise lands where the user's state is not and started a second copy."""
    record = {"txn_id": "t-1", "user_id": "u1", "timestamp": 1_700_000_000_000, "amount": 5.0,
              "merchant_id": "m1"}  # fmt: skip
    raw = json.dumps(record).encode()
    decoded = decode_events(_events([raw, raw], [b"u1", key]), Transaction, "transactions", MAX_BYTES)
    assert [txn.user_id for _, txn in decoded.valid] == ["u1"]
    [(event, letter)] = decoded.dead
    assert event.message.offset == 101 and letter.raw == raw
    assert [e.field for e in letter.errors] == ["<key>"] and "must be its user_id 'u1'" in letter.reason
    assert letter.key == (None if key is None else key.decode("utf-8", "replace"))
    profile = json.dumps({"user_id": "u1", "age": 30}).encode()
    assert decode_events(_events([profile], [key]), UserProfile, "user-profiles", MAX_BYTES).dead


def test_files_get_the_same_limits() -> None:
    """The file readers validate with the same models, so a file cannot smuggle in what Kafka can't."""
    with pytest.raises(ContractError, match="control characters"):
        validate_record(Transaction, {**GOOD, "merchant_id": "m\x00"})
    with pytest.raises(ContractError, match="lone surrogates"):
        validate_record(UserProfile, {"user_id": "u", "attributes": {"a": "x\ud800"}})


def test_raw_bytes_survive_base64_exactly() -> None:
    raw = bytes(range(256))
    with pytest.raises(ContractError) as caught:
        decode(Transaction, raw)
    letter = dead_letter(raw, caught.value, topic="t", partition=1, offset=2, key=b"\xff\xfe")
    assert base64.b64decode(json.loads(letter.to_json_bytes())["raw_b64"]) == raw
    assert letter.key == "\ufffd\ufffd"  # undecodable key bytes are replaced, not an exception
