"""The few transaction fields per-user state and features read, normalized once: `TxnView`.

Why a separate view: the live worker sees one validated `stream.events.Transaction` (or its dict) at a
time, the offline replay sees millions of frame rows; both must feed *identical* numbers to the same
state and feature code. Strings become stable 32-bit hashes (CRC-32, not Python's salted `hash`, so a
hash computed by the worker equals the one computed in a notebook); a missing value hashes to 0.
`TxnColumns.from_frame` builds the same values column-wise (one CRC per distinct string).

The txn id is the exception: it is the redelivery identity (`UserState.seen`), where a collision would
silently drop a real payment's score, and CRC-32 collisions are easy to construct. It gets a 63-bit
BLAKE2b identity (`txn_identity`; 63 so it fits the int64 columns): a collision among a user's last 64
ids has odds of about 64² / 2⁶⁴ and cannot be forced without breaking BLAKE2b.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

MISSING_HASH = 0
RISK_LEVELS: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
OPTIONAL_FIELDS: tuple[str, ...] = (
    "merchant_category", "channel", "country", "city", "device_id", "merchant_risk",
)


def stable_hash(value: Any) -> int:
    """str → CRC-32 in [1, 2³²); None, NaN and empty strings → 0 (missing).

    >>> stable_hash("m00001") == stable_hash("m00001") != stable_hash("m00002"), stable_hash(None)
    (True, 0)
    """
    if type(value) is str:  # the stream's case: six per event, from a few thousand distinct values
        return _str_hash(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_HASH
    return _str_hash(str(value))


@lru_cache(maxsize=1 << 16)
def _str_hash(value: str) -> int:
    text = value.strip()
    return (zlib.crc32(text.encode("utf-8")) or 1) if text else MISSING_HASH


def txn_identity(value: Any) -> int:
    """A txn id → its 63-bit BLAKE2b identity in [1, 2⁶³); missing → 0 (see the module docstring).

    >>> a, b = "txn-597958", "txn-23020404"  # a CRC-32 collision, found by a birthday search
    >>> stable_hash(a) == stable_hash(b), txn_identity(a) == txn_identity(b)
    (True, False)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_HASH
    text = str(value).strip()
    if not text:
        return MISSING_HASH
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 1) or 1


def risk_code(value: Any) -> int:
    """'low' | 'medium' | 'high' (any case) → 0 | 1 | 2; anything else → −1 (unknown)."""
    if not isinstance(value, str):
        return -1
    return RISK_LEVELS.get(value.strip().lower(), -1)


class TxnView(NamedTuple):
    """One transaction as state and features see it."""

    time_ms: int  # event time, epoch milliseconds (UTC)
    amount: float  # ≥ 0
    token: int  # the PANTHER token id of this transaction (tokenizer.encode)
    merchant: int  # stable hash; 0 = missing
    device: int
    country: int
    city: int
    category: int
    channel: int
    risk: int  # merchant risk level 0/1/2, −1 unknown
    txn: int  # txn_identity of txn_id (redelivery identity, 63-bit BLAKE2b)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _epoch_ms(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value)
    if type(value) is datetime:  # a validated Transaction's: exact integer arithmetic, 20x pd.Timestamp
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _MS
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def txn_view(event: Any, token: int) -> TxnView:
    """A `Transaction` (pydantic), a mapping of its fields, or a frame row → TxnView.

    >>> v = txn_view({"txn_id": "t1", "timestamp": 1_000, "amount": 5.0, "merchant_id": "m"}, token=7)
    >>> v.time_ms, v.token, v.device, v.risk
    (1000, 7, 0, -1)
    """
    get = event.get if isinstance(event, Mapping | pd.Series) else lambda k, d=None: getattr(event, k, d)
    amount = get("amount", 0.0)
    amount = 0.0 if amount is None or not math.isfinite(float(amount)) else max(float(amount), 0.0)
    return TxnView(
        time_ms=_epoch_ms(get("timestamp")),
        amount=amount,
        token=int(token),
        merchant=stable_hash(get("merchant_id")),
        device=stable_hash(get("device_id")),
        country=stable_hash(get("country")),
        city=stable_hash(get("city")),
        category=stable_hash(get("merchant_category")),
        channel=stable_hash(get("channel")),
        risk=risk_code(get("merchant_risk")),
        txn=txn_identity(get("txn_id")),
    )


def record_view(record: Any, token: int) -> TxnView:
    """`txn_view` of an object carrying every contract field as an attribute (a validated
    `Transaction`): the same values with plain attribute reads, the per-event form of the stream's
    hot path (tested equal to `txn_view`)."""
    amount = record.amount
    amount = 0.0 if amount is None or not math.isfinite(amount) else max(float(amount), 0.0)
    return TxnView(
        _epoch_ms(record.timestamp), amount, int(token), stable_hash(record.merchant_id),
        stable_hash(record.device_id), stable_hash(record.country), stable_hash(record.city),
        stable_hash(record.merchant_category), stable_hash(record.channel), risk_code(record.merchant_risk),
        txn_identity(record.txn_id),
    )  # fmt: skip


def hash_column(frame: pd.DataFrame, name: str, hasher: Callable[[Any], int] = stable_hash) -> np.ndarray:
    """(N,) int64 hashes of a column, one per distinct value (0 where missing or the column is absent)."""
    if name not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64)
    codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
    table = np.array([hasher(u) for u in uniques] + [MISSING_HASH], dtype=np.int64)
    return table[codes]  # code −1 (missing) → the trailing 0


def present_fields(frame: pd.DataFrame) -> dict[str, bool]:
    """Which optional contract fields the frame actually carries (a column with at least one value)."""
    return {name: bool(name in frame.columns and frame[name].notna().any()) for name in OPTIONAL_FIELDS}


@dataclass(frozen=True)
class TxnColumns:
    """Column-wise TxnViews of N transactions (the offline replay's input); `row(i)` = the i-th TxnView."""

    time_ms: np.ndarray  # (N,) int64
    amount: np.ndarray  # (N,) float64
    token: np.ndarray  # (N,) int64
    merchant: np.ndarray  # (N,) int64 hashes
    device: np.ndarray
    country: np.ndarray
    city: np.ndarray
    category: np.ndarray
    channel: np.ndarray
    risk: np.ndarray  # (N,) int64
    txn: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, tokens: np.ndarray, time_ms: np.ndarray) -> TxnColumns:
        amount = pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=np.float64, na_value=0.0)
        if "merchant_risk" in frame.columns:
            levels, uniques = pd.factorize(frame["merchant_risk"], use_na_sentinel=True)
            risk = np.array([risk_code(u) for u in uniques] + [-1], dtype=np.int64)[levels]
        else:
            risk = np.full(len(frame), -1, dtype=np.int64)
        return cls(
            time_ms=np.asarray(time_ms, dtype=np.int64),
            amount=np.maximum(np.nan_to_num(amount, nan=0.0, posinf=0.0), 0.0),
            token=np.asarray(tokens, dtype=np.int64),
            merchant=hash_column(frame, "merchant_id"),
            device=hash_column(frame, "device_id"),
            country=hash_column(frame, "country"),
            city=hash_column(frame, "city"),
            category=hash_column(frame, "merchant_category"),
            channel=hash_column(frame, "channel"),
            risk=risk,
            txn=hash_column(frame, "txn_id", txn_identity),
        )

    def __len__(self) -> int:
        return len(self.time_ms)

    def take(self, index: np.ndarray) -> TxnColumns:
        return TxnColumns(*(getattr(self, f)[index] for f in TxnView._fields))

    def rows(self) -> Iterator[TxnView]:
        """TxnViews in column order, as Python scalars (fast: one zip over `.tolist()`s)."""
        columns = [getattr(self, f).tolist() for f in TxnView._fields]
        return (TxnView._make(values) for values in zip(*columns, strict=True))

    def row(self, i: int) -> TxnView:
        return TxnView._make(getattr(self, f)[i].item() for f in TxnView._fields)
