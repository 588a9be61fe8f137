"""The PUS3 state layout with one `struct` call each way: the worker's per-event state codec.

A user's state is read from RocksDB and written back on every event, and the numpy codec
(`UserState.to_bytes_reference` / `from_bytes_reference`: ~20 small arrays each way, then `tolist`)
was a fifth of the worker's GIL time at full speed (py-spy, docs/BENCHMARKS.md, issue 14). Here a
state's window columns and recent txn ids are typed `array.array`s copied whole (`tobytes` /
`frombytes`: no Python object per window value, either way), and the small bounded maps are one cached
`struct.Struct` per shape, one C call each way. Same bytes as the reference, byte for byte (tested), so
no migration.

Layout, little-endian, after the 4-byte magic (each section's length is in the header):
  12 int64 header (n, last_time, the three Welford counts, W, merchants, the four count maps, txn ids)
  6 float64 (the Welford means and M2s) · 6 int64 hour buckets
  W int64 times · W int64 tokens · W float64 amounts · 4W uint32 hashes (merchant, device, country, city)
  merchants: uint32 keys, (count, mean log-amount) float64 pairs · each count map: uint32 keys, int64 counts
  uint64 txn ids · uint64 model tag, uint64 has-prediction
  [prediction: uint64 folded, tag, profile · float64 lse · int64 d, S · d float32 h_u · S float32]
"""

from __future__ import annotations

import struct
import sys
from array import array
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np

from models.fraud.running import Running

MAGIC = b"PUS3"
_HEAD = struct.Struct("<12q6d6q")
_TAIL = struct.Struct("<2Q")  # model tag, has-prediction
_PREDICTION_HEAD = struct.Struct("<3Qd2q")
COUNT_FIELDS = ("devices_seen", "countries_seen", "categories_seen", "channels_seen")
WINDOW_FIELDS = ("times", "tokens", "amounts", "merchants", "devices", "countries", "cities")
COLUMN_TYPES = {"times": "q", "tokens": "q", "amounts": "d", "merchants": "I", "devices": "I",
                "countries": "I", "cities": "I", "recent_txns": "Q"}  # fmt: skip
_LITTLE = sys.byteorder == "little"
if any(array(code).itemsize != (4 if code == "I" else 8) for code in COLUMN_TYPES.values()):
    raise ImportError("this platform's array.array sizes do not match the PUS3 layout")  # pragma: no cover


@lru_cache(maxsize=4096)
def _maps(nm: int, c0: int, c1: int, c2: int, c3: int) -> struct.Struct:
    """The merchant and count maps for one shape (a few hundred shapes in a live population)."""
    counts = "".join(f"{c}I{c}q" for c in (c0, c1, c2, c3))
    return struct.Struct(f"<{nm}I{2 * nm}d{counts}")


def _le(column: array) -> bytes:
    if _LITTLE:
        return column.tobytes()
    swapped = array(column.typecode, column)  # pragma: no cover - big-endian hosts
    swapped.byteswap()  # pragma: no cover
    return swapped.tobytes()  # pragma: no cover


def _column(typecode: str, view: memoryview, at: int, count: int) -> tuple[array, int]:
    """`count` values of `typecode` at byte offset `at` → (the column, the offset after it)."""
    column = array(typecode)
    end = at + count * column.itemsize
    column.frombytes(view[at:end])
    if not _LITTLE:
        column.byteswap()  # pragma: no cover - big-endian hosts
    return column, end


def pack(state: Any) -> bytes:
    """`state` (a `UserState`) → its PUS3 bytes."""
    maps = [getattr(state, name) for name in COUNT_FIELDS]
    w, nm, nr = len(state.times), len(state.merchant_stats), len(state.recent_txns)
    la, pr, lp = state.log_amount, state.prob, state.log_prob
    head = _HEAD.pack(state.n, state.last_time, la.n, pr.n, lp.n, w, nm, *map(len, maps), nr,
                      la.mean, la.m2, pr.mean, pr.m2, lp.mean, lp.m2, *state.hour_counts)  # fmt: skip
    stats = state.merchant_stats
    flat = chain(stats.keys(), chain.from_iterable(stats.values()),
                 *(chain(m.keys(), m.values()) for m in maps))  # fmt: skip
    p = state.prediction
    parts = [MAGIC, head, *(_le(getattr(state, name)) for name in WINDOW_FIELDS),
             _maps(nm, *map(len, maps)).pack(*flat), _le(state.recent_txns),
             _TAIL.pack(state.model_tag, p is not None)]  # fmt: skip
    if p is not None:
        hidden = np.ascontiguousarray(p.hidden, dtype="<f4")
        sequence = np.ascontiguousarray(p.sequence, dtype="<f4")
        parts += [_PREDICTION_HEAD.pack(p.folded, p.tag, p.profile, p.lse, hidden.size, sequence.size),
                  hidden.tobytes(), sequence.tobytes()]  # fmt: skip
    return b"".join(parts)


def unpack(state: Any, raw: bytes | bytearray | memoryview, prediction_type: type) -> Any:
    """Fill a bare `UserState` (`cls.__new__`: no field set yet) from PUS3 bytes (the magic already
    checked) and return it. Every field is assigned here: building the state through its constructor
    first (eight default columns and maps, then `__post_init__`) cost as much as the decode itself."""
    view = memoryview(raw)
    head = _HEAD.unpack_from(view, 4)
    n, last_time, na, np_, nl, w, nm, c0, c1, c2, c3, nr = head[:12]
    state.n, state.last_time = n, last_time
    state.log_amount = Running(na, head[12], head[13])
    state.prob = Running(np_, head[14], head[15])
    state.log_prob = Running(nl, head[16], head[17])
    state.hour_counts = list(head[18:24])
    at = 4 + _HEAD.size
    for name in WINDOW_FIELDS:
        column, at = _column(COLUMN_TYPES[name], view, at, w)
        setattr(state, name, column)
    maps_struct = _maps(nm, c0, c1, c2, c3)
    body = maps_struct.unpack_from(view, at)
    at += maps_struct.size
    keys, values = body[:nm], iter(body[nm : 3 * nm])
    state.merchant_stats = {k: [c, m] for k, c, m in zip(keys, values, values, strict=False)}
    i = 3 * nm
    for name, c in zip(COUNT_FIELDS, (c0, c1, c2, c3), strict=True):
        setattr(state, name, dict(zip(body[i : i + c], body[i + c : i + 2 * c], strict=True)))
        i += 2 * c
    state.recent_txns, at = _column("Q", view, at, nr)
    state.model_tag, has_prediction = _TAIL.unpack_from(view, at)
    state.prediction = None
    if has_prediction:
        at += _TAIL.size
        folded, tag, profile, lse, d, s = _PREDICTION_HEAD.unpack_from(view, at)
        at += _PREDICTION_HEAD.size
        hidden = np.frombuffer(view, dtype="<f4", count=d, offset=at).astype(np.float32)
        sequence = np.frombuffer(view, dtype="<f4", count=s, offset=at + 4 * d).astype(np.float32)
        state.prediction = prediction_type(folded, tag, profile, lse, hidden, sequence)
    return state
