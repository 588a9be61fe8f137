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
_FLOAT32 = np.dtype(np.float32)
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


_WINDOW_LAYOUT = tuple((name, code, 4 if code == "I" else 8)  # (field, array code, bytes a value)
                       for name, code in COLUMN_TYPES.items() if name in WINDOW_FIELDS)  # fmt: skip
_WINDOW_ROW = sum(size for _, _, size in _WINDOW_LAYOUT)  # bytes of one window entry, all columns
_as_le = array.tobytes if _LITTLE else _le  # a column as its little-endian bytes (a C call, no frame)


def _f4(values: np.ndarray) -> bytes:
    """A prediction vector as little-endian float32 bytes (no conversion when it already is that)."""
    if _LITTLE and values.dtype == _FLOAT32 and values.flags.c_contiguous:
        return values.tobytes()
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def pack(state: Any) -> bytes:
    """`state` (a `UserState`) → its PUS3 bytes. Spelled out field by field (no `getattr` loops or
    generators: 12.3 → 8.4 µs a state, `python bench/state_codec.py`), as a state is written for every
    scored event."""
    devices, countries, categories, channels = (state.devices_seen, state.countries_seen,
                                                state.categories_seen, state.channels_seen)  # fmt: skip
    stats = state.merchant_stats
    w, nm, nr = len(state.times), len(stats), len(state.recent_txns)
    n0, n1, n2, n3 = len(devices), len(countries), len(categories), len(channels)
    la, pr, lp = state.log_amount, state.prob, state.log_prob
    head = _HEAD.pack(state.n, state.last_time, la.n, pr.n, lp.n, w, nm, n0, n1, n2, n3, nr,
                      la.mean, la.m2, pr.mean, pr.m2, lp.mean, lp.m2, *state.hour_counts)  # fmt: skip
    maps = _maps(nm, n0, n1, n2, n3).pack(
        *stats, *chain.from_iterable(stats.values()), *devices, *devices.values(), *countries,
        *countries.values(), *categories, *categories.values(), *channels, *channels.values(),
    )  # fmt: skip
    return b"".join([MAGIC, head, _as_le(state.times), _as_le(state.tokens), _as_le(state.amounts),
                     _as_le(state.merchants), _as_le(state.devices), _as_le(state.countries),
                     _as_le(state.cities), maps, _as_le(state.recent_txns),
                     *_tail(state.model_tag, state.prediction)])  # fmt: skip


def _tail(model_tag: int, p: Any) -> list[bytes]:
    """The layout's last section: model tag, has-prediction, and the prediction when there is one."""
    if p is None:
        return [_TAIL.pack(model_tag, False)]
    hidden, sequence = p.hidden, p.sequence
    return [_TAIL.pack(model_tag, True),
            _PREDICTION_HEAD.pack(p.folded, p.tag, p.profile, p.lse, hidden.size, sequence.size),
            _f4(hidden), _f4(sequence)]  # fmt: skip


def _prediction_at(raw: bytes) -> int:
    """Where the tail starts: the sections' lengths are in the header, the maps' size in `_maps`."""
    w, nm, c0, c1, c2, c3, nr = _HEAD.unpack_from(raw, 4)[5:12]
    return 4 + _HEAD.size + _WINDOW_ROW * w + _maps(nm, c0, c1, c2, c3).size + 8 * nr


def with_prediction(raw: bytes, model_tag: int, prediction: Any) -> bytes:
    """PUS3 `raw` with its model tag and cached prediction replaced: byte for byte `pack` of the same
    state with those two set (tested). The refresh changes nothing else, and the worker writes each
    refreshed state right after packing it without one: splicing the tail costs ~1 µs where packing
    the whole state again was ~4.5 % of the worker's GIL samples at full speed (issue 14)."""
    return b"".join([raw[: _prediction_at(raw)], *_tail(model_tag, prediction)])


def unpack(state: Any, raw: bytes | bytearray | memoryview, prediction_type: type) -> Any:
    """Fill a bare `UserState` (`cls.__new__`: no field set yet) from PUS3 bytes (the magic already
    checked) and return it. Every field is assigned here: building the state through its constructor
    first (eight default columns and maps, then `__post_init__`) cost as much as the decode itself.
    Each column one `array(code, bytes)` call (no memoryview slices or helper calls): 11.8 → 10.2 µs a
    state."""
    if not isinstance(raw, bytes | bytearray):
        raw = bytes(raw)
    head = _HEAD.unpack_from(raw, 4)
    n, last_time, na, np_, nl, w, nm, c0, c1, c2, c3, nr = head[:12]
    state.n, state.last_time = n, last_time
    state.log_amount = Running(na, head[12], head[13])
    state.prob = Running(np_, head[14], head[15])
    state.log_prob = Running(nl, head[16], head[17])
    state.hour_counts = list(head[18:24])
    at = 4 + _HEAD.size
    for name, typecode, size in _WINDOW_LAYOUT:
        end = at + size * w
        setattr(state, name, array(typecode, raw[at:end]))  # one C call: bytes → column
        at = end
    maps_struct = _maps(nm, c0, c1, c2, c3)
    body = maps_struct.unpack_from(raw, at)
    at += maps_struct.size
    keys, values = body[:nm], iter(body[nm : 3 * nm])
    state.merchant_stats = {k: [c, m] for k, c, m in zip(keys, values, values, strict=False)}
    i, counts = 3 * nm, []
    for c in (c0, c1, c2, c3):
        counts.append(dict(zip(body[i : i + c], body[i + c : i + 2 * c], strict=True)))
        i += 2 * c
    state.devices_seen, state.countries_seen, state.categories_seen, state.channels_seen = counts
    end = at + 8 * nr
    state.recent_txns = array("Q", raw[at:end])
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        for name in (*WINDOW_FIELDS, "recent_txns"):
            getattr(state, name).byteswap()
    state.model_tag, has_prediction = _TAIL.unpack_from(raw, end)
    state.prediction = None
    if has_prediction:
        at = end + _TAIL.size
        folded, tag, profile, lse, d, s = _PREDICTION_HEAD.unpack_from(raw, at)
        at += _PREDICTION_HEAD.size
        hidden = np.frombuffer(raw, dtype="<f4", count=d, offset=at).astype(np.float32)
        sequence = np.frombuffer(raw, dtype="<f4", count=s, offset=at + 4 * d).astype(np.float32)
        state.prediction = prediction_type(folded, tag, profile, lse, hidden, sequence)
    return state
