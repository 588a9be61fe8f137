"""The event contract: what travels on PANTHER's topics, as pydantic v2 models (JSON on the wire).

Every record carries `schema_version`; decoding a record that breaks the contract raises
`ContractError` with one `FieldError` (field, value, reason) per problem, which the stream turns into
a dead-letter record and the file readers into a row-numbered message.

Limits (docs/RELIABILITY.md, "Bad input"): a message of at most `max_bytes` (PANTHER_MAX_MESSAGE_BYTES,
64 KiB) is parsed at all; text fields are 1–256 characters with no control characters or lone
surrogates; free-text fields refuse card numbers (stream/pan.py, docs/SECURITY.md); amounts are finite
and at most MAX_AMOUNT; event times lie in [EARLIEST_EVENT_TIME, LATEST_EVENT_TIME); a profile has at
most MAX_ATTRIBUTES attributes. `decode` raises nothing but ContractError, whatever the bytes.
The checks run inside pydantic-core's single validation pass (Rust); Python runs only for the
timestamp and for free-text values long enough to hold a card number.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    field_validator,
)

from stream.pan import MIN_PAN_DIGITS, looks_like_pan, mask_pans, mask_pans_bytes

SCHEMA_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024  # PANTHER_MAX_MESSAGE_BYTES overrides it in the stream
MAX_FIELD_CHARS = 256  # every text field: ids, merchant, category, city, attribute keys and values
MAX_ATTRIBUTES = 64  # per profile
MAX_AMOUNT = 1e12  # in the currency's unit; large enough for any currency's real transactions
MAX_ACCOUNT_AGE_DAYS = 50_000  # ~137 years
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
MAX_LETTER_ERRORS = 20  # field errors kept per dead letter (the count of the rest goes in the reason)
MAX_LETTER_KEY_CHARS = 1024  # a Kafka key is unbounded; a dead letter must stay under the broker limit


# Checked by pydantic-core's Rust regex inside the one validation pass (no Python call per field):
# no C0/C1 control characters (log injection, terminal escapes). Lone surrogates never get this far
# (the JSON parser and pydantic-core both refuse them).
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL_REASON = "control characters (U+0000-U+001F, U+007F-U+009F) are not allowed"


def _no_card_number(value: str) -> str:
    """Free text must not carry a payment card number (docs/SECURITY.md); short values skip the scan."""
    if len(value) >= MIN_PAN_DIGITS and looks_like_pan(value):
        raise ValueError("looks like a payment card number (PAN); send a token, never raw card data")
    return value


_Bounded = StringConstraints(
    strip_whitespace=True, min_length=1, max_length=MAX_FIELD_CHARS, pattern=NO_CONTROL_CHARS
)
Text = Annotated[str, _Bounded]  # identifiers: any printable characters
FreeText = Annotated[str, _Bounded, AfterValidator(_no_card_number)]  # descriptive text: no card numbers
OptionalText = Text | None
OptionalFreeText = FreeText | None
Currency = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=3, pattern=NO_CONTROL_CHARS)
]


def parse_event_time(value: Any) -> datetime:
    """ISO-8601 strings or epoch milliseconds (int/float/numeric str) → aware UTC datetime.

    Raises ValueError only (never OverflowError/OSError), so a pydantic validator turns any bad
    timestamp into a field error instead of an exception that escapes the decoder.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("timestamp must be finite")
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("timestamp out of range (expected epoch milliseconds)") from None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return parse_event_time(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("expected ISO-8601 or epoch milliseconds") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("expected ISO-8601 or epoch milliseconds")


class Event(BaseModel):
    """Base: strict about unknown types, tolerant of extra fields (newer producers may add some)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class Transaction(Event):
    txn_id: Text
    user_id: Text
    timestamp: datetime
    amount: float = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)
    currency: Currency = "USD"
    merchant_id: Text
    merchant_category: OptionalFreeText = None
    merchant_risk: OptionalFreeText = None  # low/medium/high when the acquirer provides it (tokenizer field)
    channel: OptionalFreeText = None
    country: OptionalFreeText = None
    city: OptionalFreeText = None
    device_id: OptionalText = None
    is_fraud: bool | None = None
    fraud_scenario: OptionalFreeText = None

    _parse_timestamp = field_validator("timestamp", mode="before")(parse_event_time)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """UTC, and within the contract's range: epoch seconds or microseconds sent as milliseconds,
        or a default date (0001-01-01), land outside it and are refused instead of scored."""
        try:
            value = value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("timestamp out of range") from None
        if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
            raise ValueError(
                f"timestamp {value.isoformat()} is outside [{EARLIEST_EVENT_TIME.date()}, "
                f"{LATEST_EVENT_TIME.date()}) (seconds or microseconds instead of milliseconds?)"
            )
        return value


def _unprintable(char: str) -> bool:
    return char < " " or "\x7f" <= char <= "\x9f" or "\ud800" <= char <= "\udfff"


def _attribute_value(value: Any) -> str | float:
    """A profile attribute: text (≤ MAX_FIELD_CHARS, printable, no card number) or a finite number.

    One Python check instead of a pydantic union, so a bad value gets one error at
    `attributes.<key>` rather than one per union branch.
    """
    if isinstance(value, str):
        if len(value) > MAX_FIELD_CHARS:
            raise ValueError(f"text attributes have at most {MAX_FIELD_CHARS} characters")
        if not value.isprintable() and any(_unprintable(char) for char in value):
            raise ValueError(_CONTROL_REASON + ", nor are lone surrogates")
        return _no_card_number(value)
    if isinstance(value, int | float):  # bool included, as before: True → 1.0
        number = float(value) if -1e308 < value < 1e308 else math.inf
        if not math.isfinite(number):
            raise ValueError("numeric attributes must be finite numbers")
        return number
    raise ValueError("an attribute is text or a number")


AttributeValue = Annotated[str | float, PlainValidator(_attribute_value)]


class UserProfile(Event):
    user_id: Text
    age: int | None = Field(default=None, ge=0, le=130)
    gender: OptionalFreeText = None
    region: OptionalFreeText = None
    occupation: OptionalFreeText = None
    account_age_days: int | None = Field(default=None, ge=0, le=MAX_ACCOUNT_AGE_DAYS)
    attributes: dict[Text, AttributeValue] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)
    signal: str
    contribution: float


class TransactionScore(Event):
    """One scored transaction, as written to `transaction-scores`."""

    txn_id: str
    user_id: str
    event_time: datetime
    score: float = Field(ge=0, le=1)
    deviation: float  # Δ: z-score of P_u(x) among the user's past P (≈ 0 with a large vocabulary)
    deviation_log: float = 0.0  # Δ_log: the same on log P_u(x) — the deviation an analyst reads
    surprise: float
    model_version: str
    degraded: bool = False
    alerted: bool = False
    state_lag: int = Field(default=0, ge=0)  # events scored past the user's last encoder refresh
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Alert(Event):
    """A score at or above the threshold, as written to `fraud-alerts`."""

    txn_id: str
    user_id: str
    event_time: datetime
    score: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    deviation: float
    deviation_log: float = 0.0
    reasons: list[Reason] = Field(default_factory=list)
    model_version: str
    degraded: bool = False
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}={self.value}: {self.reason}"


class DeadLetter(Event):
    """A record the worker could not accept, kept with its raw bytes so nothing is lost silently.

    `raw_b64` is the record's value byte for byte, with two exceptions a reader can see:
    `raw_truncated` (an oversized record keeps only its first `max_bytes`, so the letter itself fits
    the broker's message limit; `raw_size` is the original length) and `raw_masked` (that many
    PAN-like digit runs were masked in place: the DLQ never stores card numbers, docs/SECURITY.md).
    """

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    raw_b64: str
    raw_size: int | None = None  # bytes of the original record (None in letters before this field)
    raw_truncated: bool = False
    raw_masked: int = 0
    reason: str
    errors: list[FieldError] = Field(default_factory=list)
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)


E = TypeVar("E", bound=Event)


class ContractError(ValueError):
    """A record breaks the contract; `errors` says where and why.

    `raw_limit`: set when the record was refused for its size, so its dead letter keeps only that
    many bytes of it.
    """

    def __init__(
        self, errors: list[FieldError], summary: str | None = None, raw_limit: int | None = None
    ) -> None:
        self.errors = errors
        self.raw_limit = raw_limit
        if summary is None:
            summary = "; ".join(str(error) for error in errors[:MAX_LETTER_ERRORS])
            if len(errors) > MAX_LETTER_ERRORS:
                summary += f"; and {len(errors) - MAX_LETTER_ERRORS} more problems"
        super().__init__(summary)


def _clip(text: str, limit: int = 80) -> str:
    """Safe to print: control characters escaped, card numbers masked, at most `limit` characters."""
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    text = mask_pans(text[: limit * 2])  # mask before cutting, so a cut never leaves a PAN's prefix
    if len(text) <= limit:
        return text
    return mask_pans(text[: limit - 1]) + "…"  # and after: a cut long number can leave a PAN-like prefix


def _short(value: Any, limit: int = 80) -> str:
    """A bounded, printable rendering of a bad input value (never raises: it runs on the error path)."""
    if isinstance(value, str | bytes):
        value = value[: limit * 2]
    elif isinstance(value, dict | list | tuple) and len(value) > 16:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's 4300-digit str() limit
        text = f"<{type(value).__name__} too large to print>"
    return _clip(text, limit)


def _is_control_error(error: Any) -> bool:
    return (
        error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NO_CONTROL_CHARS
    )


def field_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors → our (field, value, reason) triples, printable and free of card numbers."""
    return [
        FieldError(
            field=_clip(".".join(str(part) for part in error["loc"]), 120) or "<record>",
            value=_short(error.get("input")),
            reason=_CONTROL_REASON if _is_control_error(error) else _clip(error["msg"], 300),
        )
        for error in exc.errors(include_url=False)
    ]


def validate_record(model: type[E], record: dict[str, Any]) -> E:
    """Validates a decoded mapping; raises ContractError with precise field errors."""
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        raise ContractError(field_errors(exc)) from None


def decode(model: type[E], raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> E:
    """Bytes from a topic → a validated event, or ContractError explaining why not.

    Never raises anything else: the size is checked before parsing (so a huge record costs no
    parse), pydantic-core's JSON parser bounds nesting depth, and any other exception is a bug in a
    validator that must still dead-letter the record rather than stop the stream.
    """
    if len(raw) > max_bytes:
        error = FieldError(
            field="<record>", value=f"{len(raw)} bytes", reason=f"larger than {max_bytes} bytes"
        )
        raise ContractError([error], raw_limit=max_bytes)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        try:
            errors = field_errors(exc)
        except Exception as bug:  # reporting must not be what stops the stream either
            raise _undecodable(raw, bug) from None
        if any(error.reason.startswith("Invalid JSON") for error in errors):
            raise ContractError(errors, "not valid JSON: " + errors[0].reason) from None
        raise ContractError(errors) from None
    except Exception as exc:  # the last line of defence of the stream's edge
        raise _undecodable(raw, exc) from None


def decode_keyed(
    model: type[E], raw: bytes, key: bytes | None, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> E:
    """`decode`, and the record's Kafka key must be its user_id, byte for byte (UTF-8).

    Why refuse instead of scoring: the key picks the partition, and a user's state lives on the
    partition of their key; a record keyed otherwise (a txn id, no key, " u1" for "u1") lands where
    the user's state is not and would silently start a second copy of it. It is dead-lettered with the
    reason; re-sending it keyed by user_id scores it (docs/STREAMING.md, "Keys").
    """
    record = decode(model, raw, max_bytes)
    user_id = getattr(record, "user_id", None)
    if user_id is not None and key != user_id.encode("utf-8"):
        shown = "none" if key is None else _short(key.decode("utf-8", "replace"))
        error = FieldError(field="<key>", value=shown,
                           reason=f"the record key must be its user_id {_short(user_id)}: keyed otherwise it "
                                  "lands on a partition that does not hold the user's state")  # fmt: skip
        raise ContractError([error])
    return record


def _undecodable(raw: bytes, exc: BaseException) -> ContractError:
    reason = f"could not be decoded: {type(exc).__name__}"
    return ContractError([FieldError(field="<record>", value=f"{len(raw)} bytes", reason=reason)])


def dead_letter(
    raw: bytes,
    error: ContractError,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
) -> DeadLetter:
    """The DLQ record for `raw`: bounded in size, printable, and free of card numbers (raw included)."""
    kept = raw[: error.raw_limit] if error.raw_limit is not None else raw
    kept, masked = mask_pans_bytes(kept)
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=_clip(key.decode("utf-8", "replace"), MAX_LETTER_KEY_CHARS) if key is not None else None,
        raw_b64=base64.b64encode(kept).decode("ascii"),
        raw_size=len(raw),
        raw_truncated=len(kept) < len(raw),
        raw_masked=masked,
        reason=str(error),
        errors=error.errors[:MAX_LETTER_ERRORS],
    )
