"""The PUS3 state layout with one `struct` call each way: the worker's per-event state codec.

A user's state is read from RocksDB and written back on every event, and the numpy codec
(`UserState.to_bytes_reference` / `from_bytes_reference`: ~20 small arrays each way, then `tolist`)
was a fifth of the worker's GIL time at full speed (py-spy, docs/BENCHMARKS.md, issue 14). Here a
state's sections are one `struct.Struct` per shape (window length, map sizes, txn ids, prediction),
cached, so packing is one C call over a flat list and unpacking one C call into a tuple sliced into
the lists the state works on. Same bytes as the reference, byte for byte (tested), so no migration.

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
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np

from models.fraud.running import Running

MAGIC = b"PUS3"
_HEAD = struct.Struct("<12q6d6q")
_PREDICTION_HEAD = struct.Struct("<3Qd2q")
COUNT_FIELDS = ("devices_seen", "countries_seen", "categories_seen", "channels_seen")


@lru_cache(maxsize=4096)
def _body(w: int, nm: int, c0: int, c1: int, c2: int, c3: int, nr: int) -> struct.Struct:
    """The sections after the header for one shape (a few hundred shapes in a live population)."""
    counts = "".join(f"{c}I{c}q" for c in (c0, c1, c2, c3))
    return struct.Struct(f"<{w}q{w}q{w}d{4 * w}I{nm}I{2 * nm}d{counts}{nr}Q2Q")


def pack(state: Any) -> bytes:
    """`state` (a `UserState`) → its PUS3 bytes."""
    maps = [getattr(state, name) for name in COUNT_FIELDS]
    w, nm, nr = len(state.times), len(state.merchant_stats), len(state.recent_txns)
    la, pr, lp = state.log_amount, state.prob, state.log_prob
    head = _HEAD.pack(state.n, state.last_time, la.n, pr.n, lp.n, w, nm, *map(len, maps), nr,
                      la.mean, la.m2, pr.mean, pr.m2, lp.mean, lp.m2, *state.hour_counts)  # fmt: skip
    p = state.prediction
    flat = chain(
        state.times, state.tokens, state.amounts, state.merchants, state.devices, state.countries,
        state.cities, state.merchant_stats.keys(), chain.from_iterable(state.merchant_stats.values()),
        *(chain(m.keys(), m.values()) for m in maps), state.recent_txns, (state.model_tag, p is not None),
    )  # fmt: skip
    body = _body(w, nm, *map(len, maps), nr).pack(*flat)
    if p is None:
        return MAGIC + head + body
    hidden = np.ascontiguousarray(p.hidden, dtype="<f4")
    sequence = np.ascontiguousarray(p.sequence, dtype="<f4")
    prediction = _PREDICTION_HEAD.pack(p.folded, p.tag, p.profile, p.lse, hidden.size, sequence.size)
    return b"".join((MAGIC, head, body, prediction, hidden.tobytes(), sequence.tobytes()))


def unpack(state: Any, raw: bytes | bytearray | memoryview, prediction_type: type) -> Any:
    """Fill a fresh `UserState` from PUS3 bytes (the magic already checked) and return it."""
    head = _HEAD.unpack_from(raw, 4)
    n, last_time, na, np_, nl, w, nm, c0, c1, c2, c3, nr = head[:12]
    state.n, state.last_time = n, last_time
    state.log_amount = Running(na, head[12], head[13])
    state.prob = Running(np_, head[14], head[15])
    state.log_prob = Running(nl, head[16], head[17])
    state.hour_counts = list(head[18:24])
    body_struct = _body(w, nm, c0, c1, c2, c3, nr)
    body = body_struct.unpack_from(raw, 4 + _HEAD.size)
    (state.times, state.tokens, state.amounts, state.merchants, state.devices, state.countries,
     state.cities) = (list(body[k * w : (k + 1) * w]) for k in range(7))
    at = 7 * w
    keys, values = body[at : at + nm], iter(body[at + nm : at + 3 * nm])
    state.merchant_stats = {k: [c, m] for k, c, m in zip(keys, values, values, strict=False)}
    at += 3 * nm
    for name, c in zip(COUNT_FIELDS, (c0, c1, c2, c3), strict=True):
        setattr(state, name, dict(zip(body[at : at + c], body[at + c : at + 2 * c], strict=True)))
        at += 2 * c
    state.recent_txns = list(body[at : at + nr])
    state.model_tag, has_prediction = body[at + nr], body[at + nr + 1]
    if has_prediction:
        at = 4 + _HEAD.size + body_struct.size
        folded, tag, profile, lse, d, s = _PREDICTION_HEAD.unpack_from(raw, at)
        at += _PREDICTION_HEAD.size
        hidden = np.frombuffer(raw, dtype="<f4", count=d, offset=at).astype(np.float32)
        sequence = np.frombuffer(raw, dtype="<f4", count=s, offset=at + 4 * d).astype(np.float32)
        state.prediction = prediction_type(folded, tag, profile, lse, hidden, sequence)
    return state
