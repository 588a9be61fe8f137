"""The event contract: what travels on PANTHER's topics, as pydantic v2 models (JSON on the wire).

Every record carries `schema_version`; decoding a record that breaks the contract raises
`ContractError` with one `FieldError` (field, value, reason) per problem, which the stream turns into
a dead-letter record and the file readers into a row-numbered message.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1
MAX_FIELD_CHARS = 256

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_FIELD_CHARS)]
OptionalText = Annotated[
    str | None, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_FIELD_CHARS)
]


def parse_event_time(value: Any) -> datetime:
    """ISO-8601 strings or epoch milliseconds (int/float/numeric str) → aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("timestamp must be finite")
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
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
    amount: float = Field(ge=0, allow_inf_nan=False)
    currency: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=3)] = "USD"
    merchant_id: Text
    merchant_category: OptionalText = None
    merchant_risk: OptionalText = None  # low/medium/high when the acquirer provides it (tokenizer field)
    channel: OptionalText = None
    country: OptionalText = None
    city: OptionalText = None
    device_id: OptionalText = None
    is_fraud: bool | None = None
    fraud_scenario: OptionalText = None

    _parse_timestamp = field_validator("timestamp", mode="before")(parse_event_time)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class UserProfile(Event):
    user_id: Text
    age: int | None = Field(default=None, ge=0, le=130)
    gender: OptionalText = None
    region: OptionalText = None
    occupation: OptionalText = None
    account_age_days: int | None = Field(default=None, ge=0)
    attributes: dict[Text, str | float] = Field(default_factory=dict, max_length=64)


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
    deviation: float
    surprise: float
    model_version: str
    degraded: bool = False
    alerted: bool = False
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Alert(Event):
    """A score at or above the threshold, as written to `fraud-alerts`."""

    txn_id: str
    user_id: str
    event_time: datetime
    score: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    deviation: float
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
    """A record the worker could not accept, kept with its raw bytes so nothing is lost silently."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    raw_b64: str
    reason: str
    errors: list[FieldError] = Field(default_factory=list)
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)


E = TypeVar("E", bound=Event)


class ContractError(ValueError):
    """A record breaks the contract; `errors` says where and why."""

    def __init__(self, errors: list[FieldError], summary: str | None = None) -> None:
        self.errors = errors
        super().__init__(summary or "; ".join(str(error) for error in errors))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors → our (field, value, reason) triples."""
    return [
        FieldError(
            field=".".join(str(part) for part in error["loc"]) or "<record>",
            value=_short(error.get("input")),
            reason=error["msg"],
        )
        for error in exc.errors(include_url=False)
    ]


def validate_record(model: type[E], record: dict[str, Any]) -> E:
    """Validates a decoded mapping; raises ContractError with precise field errors."""
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        raise ContractError(field_errors(exc)) from None


def decode(model: type[E], raw: bytes, max_bytes: int = 64 * 1024) -> E:
    """Bytes from a topic → a validated event, or ContractError explaining why not."""
    if len(raw) > max_bytes:
        raise ContractError(
            [FieldError(field="<record>", value=f"{len(raw)} bytes", reason=f"larger than {max_bytes} bytes")]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if any(error.reason.startswith("Invalid JSON") for error in errors):
            raise ContractError(errors, "not valid JSON: " + errors[0].reason) from None
        raise ContractError(errors) from None


def dead_letter(
    raw: bytes,
    error: ContractError,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
) -> DeadLetter:
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        raw_b64=base64.b64encode(raw).decode("ascii"),
        reason=str(error),
        errors=error.errors,
    )
