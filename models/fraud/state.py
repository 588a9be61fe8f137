"""Per-user state: the one object the live worker keeps per user (RocksDB) and the offline replay rebuilds.

Everything a transaction's features and deviation need is here, computed only from events that came
before it: a window of the last N events (time, token, amount, merchant/device/country/city hashes),
Welford statistics of log-amounts and of the user's past predicted probabilities P_u (and log P_u),
bounded use-counts of merchants (with their mean log-amount), devices, countries, categories and
channels, an hour-of-day profile and the identities of the last few txn ids (redelivery).

Ordering. Events normally arrive in event-time order per user (Kafka key = user_id). A late event (event
time older than the newest in the window) is *inserted into the window by event time* (after events with
the same time), so windows, velocity counts and the model's token window stay chronological. The
aggregate statistics are order-insensitive (Welford merge, counts) except the bounded-map eviction order,
which follows arrival. Features of a late event read the window only up to its event time
(`context_end`); aggregates then also contain the later events that arrived first — the stream cannot
un-know them; offline replay in event-time order never sees this case.

`update` mutates the state in place and returns it (the worker reads, updates and writes back one value
per event; copying 100-entry windows per event would double the replay cost). Use `copy()` to keep one.
It is `fold` (everything but the model's probability) then `fold_probability`: the cached scoring path
(`models.fraud.cached_scoring`) folds a whole micro-batch first and the probabilities after, once they
are known, in the same order — so both paths build the same state.

Cached prediction state. `prediction` holds what scoring the user's *next* event needs from the encoder
(its last hidden state h_u, the log-normalizer of the next-token distribution, the head's own sequence
encoding), made after `prediction.folded` events, by the model `prediction.tag`, for the profile
`prediction.profile`. It is valid for the next event only while all three still match
(`valid_prediction`). `model_tag` names the encoder whose probabilities the P statistics hold: they are
reset when another encoder adopts the state (`adopt_model`), so Δ never mixes two models' P.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import math
from array import array
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from models.fraud.running import Running
from models.fraud.state_codec import COLUMN_TYPES, WINDOW_FIELDS, pack, unpack, with_prediction
from models.fraud.txn import TxnView

HOUR_MS = 3_600_000
N_PROB_STATS = 5  # (n, μ_P, σ_P, μ_logP, σ_logP), see UserState.prob_stats
HOUR_BUCKETS = 6  # 4-hour buckets of the UTC hour of day
LOG_P_FLOOR = 1e-12
_MAGIC_V1 = b"PUS1"  # before cached prediction state (still loads: no prediction, model_tag 0)
_MAGIC_V2 = b"PUS2"  # recent txn ids as CRC-32 (still loads: those ids are dropped, see `from_bytes`)
_MAGIC = b"PUS3"  # recent txn ids as 63-bit BLAKE2b identities (models.fraud.txn.txn_identity)


@dataclass(frozen=True)
class StateConfig:
    """Bounds of the per-user state (the worker's memory per user is O(window + max_*))."""

    window: int = 100  # events kept; ≥ the model's max_len so the model window is a suffix of it
    max_merchants: int = 256
    max_devices: int = 32
    max_countries: int = 32
    max_categories: int = 64
    max_channels: int = 16
    max_recent_txns: int = 64

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StateConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in known})


def tag64(*parts: str | bytes) -> int:
    """A 64-bit identity (BLAKE2b) of strings or bytes, e.g. a model version or a profile's ids; 0 = none.

    64 bits, not CRC-32: two different model versions or profiles must never share a tag in practice.

    >>> tag64("panther-1a2b3c4d") == tag64("panther-1a2b3c4d") != tag64("panther-1a2b3c4e")
    True
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "little") or 1


def profile_tag(profile_ids: np.ndarray) -> int:
    """The identity of the profile ids a window was encoded with (the profile enters every position)."""
    return tag64(np.ascontiguousarray(profile_ids, dtype="<i8").tobytes())


@dataclass(slots=True, eq=False)
class Prediction:
    """What scoring a user's next event needs from the encoder, computed after `folded` events.

    Shapes: d = the encoder's width, S = the head's own sequence input (0 when the head reads `hidden`).
    """

    folded: int  # UserState.n when it was computed
    tag: int  # the model (encoder + head) that computed it: tag64(model_version, head sha)
    profile: int  # profile_tag of the profile ids it was encoded with
    lse: float  # log Σ_v exp(logit_v / T): the next-token distribution's log-normalizer
    hidden: np.ndarray  # (d,) float32 — the frozen encoder's last hidden state h_u
    sequence: np.ndarray  # (S,) float32 — fine-tuned encoder's h_u or TextCNN encoding; (0,) if none

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prediction):
            return NotImplemented
        return (self.folded, self.tag, self.profile, self.lse) == (other.folded, other.tag, other.profile,
                                                                   other.lse) and np.array_equal(
            self.hidden, other.hidden) and np.array_equal(self.sequence, other.sequence)  # fmt: skip

    @property
    def nbytes(self) -> int:
        """What it adds to a serialized state (the header past the model tag, and its floats)."""
        return _PREDICTION_HEADER * 8 + 4 * (self.hidden.size + self.sequence.size)


_PREDICTION_HEADER = 6  # folded, tag, profile, lse, d, S (8 bytes each)
_COUNT_FIELDS = ("devices_seen", "countries_seen", "categories_seen", "channels_seen")


@dataclass(slots=True)
class UserState:
    """One user's state; see the module docstring. Window columns are parallel and sorted by time:
    typed `array.array`s, so the codec copies each whole (`tobytes` / `frombytes`), never per value."""

    times: array = field(default_factory=lambda: array("q"))  # (W,) int64 epoch ms, non-decreasing
    tokens: array = field(default_factory=lambda: array("q"))  # (W,) int64 token ids
    amounts: array = field(default_factory=lambda: array("d"))  # (W,) float64 raw amounts
    merchants: array = field(default_factory=lambda: array("I"))  # (W,) uint32 hashes
    devices: array = field(default_factory=lambda: array("I"))
    countries: array = field(default_factory=lambda: array("I"))
    cities: array = field(default_factory=lambda: array("I"))
    n: int = 0  # events ever seen
    last_time: int = -(2**62)  # newest event time seen, epoch ms
    log_amount: Running = field(default_factory=Running)  # of log1p(amount)
    prob: Running = field(default_factory=Running)  # of the user's past predicted probabilities P_u(x)
    log_prob: Running = field(default_factory=Running)  # of log P_u(x)
    merchant_stats: dict[int, list[float]] = field(default_factory=dict)  # hash → [count, mean log1p amt]
    devices_seen: dict[int, int] = field(default_factory=dict)  # hash → count (LRU order)
    countries_seen: dict[int, int] = field(default_factory=dict)
    categories_seen: dict[int, int] = field(default_factory=dict)
    channels_seen: dict[int, int] = field(default_factory=dict)
    hour_counts: list[int] = field(default_factory=lambda: [0] * HOUR_BUCKETS)
    recent_txns: array = field(default_factory=lambda: array("Q"))  # uint64 txn_identity, oldest first
    model_tag: int = 0  # the encoder whose probabilities `prob` / `log_prob` hold (0: not known)
    prediction: Prediction | None = None  # cached encoder outputs for the next event (see module doc)

    def __post_init__(self) -> None:
        """Columns given as lists (tests, `from_dict`) become the typed arrays the codec copies whole."""
        for name, typecode in COLUMN_TYPES.items():
            column = getattr(self, name)
            if not isinstance(column, array) or column.typecode != typecode:
                setattr(self, name, array(typecode, column))

    # ---- reading ------------------------------------------------------------------------------------
    def context_end(self, time_ms: int) -> int:
        """Window entries [0, k) are at or before `time_ms` (all of them for an in-order event)."""
        if not self.times or time_ms >= self.times[-1]:
            return len(self.times)
        return bisect_right(self.times, time_ms)

    def window_tokens(self, time_ms: int | None = None, max_len: int | None = None) -> list[int]:
        """The ≤ max_len tokens before an event at `time_ms` (chronological) — the model's window."""
        k = len(self.tokens) if time_ms is None else self.context_end(time_ms)
        start = 0 if max_len is None else max(0, k - max_len)
        return self.tokens[start:k].tolist()

    def prob_stats(self) -> tuple[float, float, float, float, float]:
        """(n, μ_P, σ_P, μ_logP, σ_logP) of the user's past predicted probabilities (deviation input)."""
        return (float(self.prob.n), self.prob.mean, self.prob.std, self.log_prob.mean, self.log_prob.std)

    def seen(self, txn: int) -> bool:
        """Was this txn id (its `txn_identity`) among the last `max_recent_txns` updates (a redelivery)?"""
        return txn in self.recent_txns

    def copy(self) -> UserState:
        """An independent copy, field by field: `copy.deepcopy`'s generic walk (the reference,
        `deep_copy_reference`) was 29 % of a backtest's samples. Shared safely: `Running` tuples and
        `merchant_stats`' value lists, which `update` replaces and never mutates."""
        p = self.prediction
        return UserState(
            self.times[:], self.tokens[:], self.amounts[:], self.merchants[:], self.devices[:],
            self.countries[:], self.cities[:], self.n, self.last_time, self.log_amount, self.prob,
            self.log_prob, dict(self.merchant_stats), dict(self.devices_seen), dict(self.countries_seen),
            dict(self.categories_seen), dict(self.channels_seen), self.hour_counts[:], self.recent_txns[:],
            self.model_tag,
            None if p is None else Prediction(p.folded, p.tag, p.profile, p.lse, p.hidden.copy(),
                                              p.sequence.copy()),
        )  # fmt: skip

    def refresh_view(self, max_len: int) -> UserState:
        """What a refresh reads and writes — the last `max_len` tokens, `n`, the model and the
        prediction — as a state of its own: the refresh (`models.fraud.cached_scoring.refresh_states`,
        on a thread) caches its prediction there while a later batch may fold events into this one.
        Not a state to score or serialize (its other fields are empty)."""
        return UserState(tokens=self.tokens[-max_len:], n=self.n, model_tag=self.model_tag,
                         prediction=self.prediction)  # fmt: skip

    def deep_copy_reference(self) -> UserState:
        """What `copy` must equal: Python's deep copy."""
        return _copy.deepcopy(self)

    def valid_prediction(self, tag: int, profile: int) -> Prediction | None:
        """The cached prediction if it was made for exactly this state, model and profile, else None."""
        p = self.prediction
        if p is not None and p.folded == self.n and p.tag == tag and p.profile == profile:
            return p
        return None

    def adopt_model(self, model_tag: int) -> None:
        """Scored by encoder `model_tag` from now on: P statistics of another encoder are reset.

        A state of unknown origin (model_tag 0: written before states recorded it) keeps its statistics.
        """
        if model_tag == self.model_tag:
            return
        if self.model_tag != 0:
            self.prob, self.log_prob = Running(), Running()
        self.model_tag = model_tag

    @staticmethod
    def last_time_of(state: UserState | bytes) -> int:
        """The newest event time (epoch ms) of a state or of its bytes, read from the fixed header of
        every layout (PUS1–PUS3) without decoding the rest: what a retention sweep over millions of
        stored states reads."""
        if isinstance(state, UserState):
            return state.last_time
        return int.from_bytes(bytes(state[12:20]), "little", signed=True)

    # ---- serialization (RocksDB value) --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able; bounded maps as [key, value] pairs so their LRU order survives."""
        out: dict[str, Any] = {name: list(getattr(self, name)) for name in WINDOW_FIELDS}
        out |= {"n": self.n, "last_time": self.last_time, "hour_counts": list(self.hour_counts),
                "recent_txns": list(self.recent_txns)}
        out |= {name: list(getattr(self, name)) for name in ("log_amount", "prob", "log_prob")}
        out["merchant_stats"] = [[k, v[0], v[1]] for k, v in self.merchant_stats.items()]
        out |= {name: [[k, v] for k, v in getattr(self, name).items()] for name in _COUNT_FIELDS}
        out["model_tag"] = self.model_tag
        p = self.prediction
        out["prediction"] = None if p is None else {
            "folded": p.folded, "tag": p.tag, "profile": p.profile, "lse": p.lse,
            "hidden": p.hidden.tolist(), "sequence": p.sequence.tolist()}  # fmt: skip
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserState:
        state = cls(**{name: [*data[name]] for name in WINDOW_FIELDS})
        state.n, state.last_time = int(data["n"]), int(data["last_time"])
        state.hour_counts = [int(c) for c in data["hour_counts"]]
        state.recent_txns = array("Q", [int(t) for t in data["recent_txns"]])
        for name in ("log_amount", "prob", "log_prob"):
            n, mean, m2 = data[name]
            setattr(state, name, Running(int(n), float(mean), float(m2)))
        state.merchant_stats = {int(k): [float(c), float(m)] for k, c, m in data["merchant_stats"]}
        for name in _COUNT_FIELDS:
            setattr(state, name, {int(k): int(v) for k, v in data[name]})
        state.model_tag = int(data.get("model_tag", 0))
        p = data.get("prediction")
        if p:
            state.prediction = Prediction(int(p["folded"]), int(p["tag"]), int(p["profile"]), float(p["lse"]),
                                          np.asarray(p["hidden"], np.float32),
                                          np.asarray(p["sequence"], np.float32))  # fmt: skip
        return state

    def to_bytes(self) -> bytes:
        """Compact binary form (PUS3): one `struct.pack` (`state_codec.pack`), byte for byte what
        `to_bytes_reference` writes — 5–10x faster, and on the worker's path twice per event."""
        return pack(self)

    def to_bytes_after_refresh(self, before: bytes) -> bytes:
        """`to_bytes`, given `before`: this state's bytes before a refresh changed its prediction (and
        model tag) and nothing else. Only the tail is rewritten (`state_codec.with_prediction`)."""
        return with_prediction(before, self.model_tag, self.prediction)

    def to_bytes_reference(self) -> bytes:
        """Compact binary form (≈ 3.5 KB for a full 100-event window with few merchants, 5.4 KB with 30:
        `python -m bench.state_disk`; + the prediction: 48 bytes and 4 per float of h_u and the head's
        sequence input), exact round trip."""
        ints = [self.n, self.last_time, self.log_amount.n, self.prob.n, self.log_prob.n, len(self.times),
                len(self.merchant_stats), *(len(getattr(self, f)) for f in _COUNT_FIELDS),
                len(self.recent_txns)]
        floats = [self.log_amount.mean, self.log_amount.m2, self.prob.mean, self.prob.m2,
                  self.log_prob.mean, self.log_prob.m2]
        merchant_keys = list(self.merchant_stats)
        merchant_values = [x for v in self.merchant_stats.values() for x in v]
        parts = [
            np.asarray(ints, dtype=np.int64), np.asarray(floats, dtype=np.float64),
            np.asarray(self.hour_counts, dtype=np.int64),
            np.asarray(self.times, dtype=np.int64), np.asarray(self.tokens, dtype=np.int64),
            np.asarray(self.amounts, dtype=np.float64),
            np.asarray([*self.merchants, *self.devices, *self.countries, *self.cities], dtype=np.uint32),
            np.asarray(merchant_keys, dtype=np.uint32), np.asarray(merchant_values, dtype=np.float64),
        ]
        for name in _COUNT_FIELDS:
            counts = getattr(self, name)
            parts += [np.asarray(list(counts), dtype=np.uint32), np.asarray(list(counts.values()), np.int64)]
        parts.append(np.asarray(self.recent_txns, dtype=np.uint64))
        p = self.prediction
        if p is None:
            parts.append(np.asarray([self.model_tag, 0], dtype=np.uint64))
        else:
            parts += [np.asarray([self.model_tag, 1, p.folded, p.tag, p.profile], dtype=np.uint64),
                      np.asarray([p.lse], dtype=np.float64),
                      np.asarray([p.hidden.size, p.sequence.size], dtype=np.int64),
                      np.asarray(p.hidden, dtype=np.float32), np.asarray(p.sequence, dtype=np.float32)]
        return _MAGIC + b"".join(p.tobytes() for p in parts)

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        """Reads every layout; PUS3 with one `struct.unpack_from` (`state_codec.unpack`), older ones
        with `from_bytes_reference`. Equal to the reference on every state (tested)."""
        if bytes(raw[:4]) == _MAGIC:
            return unpack(cls.__new__(cls), raw, Prediction)
        return cls.from_bytes_reference(raw)

    @classmethod
    def from_bytes_reference(cls, raw: bytes) -> UserState:
        """Reads every layout: PUS3, PUS2 (CRC-32 txn ids) and PUS1 (no cached prediction either).

        The recent txn ids of PUS1/PUS2 are CRC-32s, not comparable with today's identities: they are
        dropped, so only a redelivery of one of a migrated user's last 64 events, in the same moment as
        the upgrade, could be scored twice (never dropped).
        """
        magic = bytes(raw[:4])
        if magic not in (_MAGIC, _MAGIC_V2, _MAGIC_V1):
            raise ValueError("not a serialized UserState (bad magic)")
        reader = _Reader(memoryview(raw)[4:])
        ints = reader.take(np.int64, 12).tolist()
        n, last_time, na, np_, nl, w, nm, *ncounts, nr = ints
        floats = reader.take(np.float64, 6).tolist()
        state = cls()
        state.n, state.last_time = n, last_time
        state.log_amount = Running(na, floats[0], floats[1])
        state.prob = Running(np_, floats[2], floats[3])
        state.log_prob = Running(nl, floats[4], floats[5])
        state.hour_counts = reader.take(np.int64, HOUR_BUCKETS).tolist()
        state.times = array("q", reader.take(np.int64, w).tolist())
        state.tokens = array("q", reader.take(np.int64, w).tolist())
        state.amounts = array("d", reader.take(np.float64, w).tolist())
        hashes = reader.take(np.uint32, 4 * w).tolist()
        state.merchants, state.devices = array("I", hashes[:w]), array("I", hashes[w : 2 * w])
        state.countries, state.cities = array("I", hashes[2 * w : 3 * w]), array("I", hashes[3 * w :])
        keys = reader.take(np.uint32, nm).tolist()
        values = reader.take(np.float64, 2 * nm).tolist()
        state.merchant_stats = {k: [values[2 * i], values[2 * i + 1]] for i, k in enumerate(keys)}
        for name, count in zip(_COUNT_FIELDS, ncounts, strict=True):
            keys = reader.take(np.uint32, count).tolist()
            setattr(state, name, dict(zip(keys, reader.take(np.int64, count).tolist(), strict=True)))
        if magic == _MAGIC:
            state.recent_txns = array("Q", reader.take(np.uint64, nr).tolist())
        else:
            reader.take(np.uint32, nr)  # CRC-32 ids: dropped (see above)
        if magic != _MAGIC_V1:
            state.model_tag, has_prediction = reader.take(np.uint64, 2).tolist()
            if has_prediction:
                folded, tag, profile = reader.take(np.uint64, 3).tolist()
                lse = float(reader.take(np.float64, 1)[0])
                d, s = reader.take(np.int64, 2).tolist()
                hidden = reader.take(np.float32, d).copy()
                sequence = reader.take(np.float32, s).copy()
                state.prediction = Prediction(folded, tag, profile, lse, hidden, sequence)
        return state


class _Reader:
    def __init__(self, view: memoryview) -> None:
        self.view, self.pos = view, 0

    def take(self, dtype: type[np.generic], count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        out = np.frombuffer(self.view[self.pos : self.pos + size], dtype=dtype)
        self.pos += size
        return out


def _touch(counts: dict[int, int], key: int, cap: int) -> None:
    """count += 1 and move to the most-recent end; evict the least recently used beyond `cap`."""
    if key == 0:  # missing value: not an entity
        return
    counts[key] = counts.pop(key, 0) + 1
    if len(counts) > cap:
        del counts[next(iter(counts))]


DEFAULT_STATE = StateConfig()


def update(
    state: UserState, txn: TxnView, p: float | None = None, config: StateConfig = DEFAULT_STATE
) -> UserState:
    """Fold transaction `txn` (and its predicted probability P_u(x), if scored) into `state`.

    Call it *after* computing the transaction's features and deviation from the same state: features
    see only the past. Returns `state` (mutated in place).
    """
    fold(state, txn, config)
    if p is not None:
        fold_probability(state, p)
    return state


def fold_probability(state: UserState, p: float) -> None:
    """Add the model's P_u(x) of a transaction to the user's P statistics (the deviation's μ, σ)."""
    state.prob = state.prob.add(p)
    state.log_prob = state.log_prob.add(math.log(max(p, LOG_P_FLOOR)))


def fold(state: UserState, txn: TxnView, config: StateConfig = DEFAULT_STATE) -> None:
    """Everything of `update` but the probability: window, counts, amounts, hours, txn ids."""
    t = txn.time_ms
    x = math.log1p(txn.amount)
    row = (t, txn.token, txn.amount, txn.merchant, txn.device, txn.country, txn.city)
    window = (state.times, state.tokens, state.amounts, state.merchants, state.devices, state.countries,
              state.cities)
    if not state.times or t >= state.times[-1]:
        for column, value in zip(window, row, strict=True):
            column.append(value)
    else:  # late event: place it by event time, after events with the same time
        at = bisect_right(state.times, t)
        for column, value in zip(window, row, strict=True):
            column.insert(at, value)
    if len(state.times) > config.window:
        for column in window:
            del column[0]
    state.n += 1
    state.last_time = max(state.last_time, t)
    state.log_amount = state.log_amount.add(x)
    if txn.merchant:
        count, mean = state.merchant_stats.pop(txn.merchant, None) or (0.0, 0.0)
        count += 1.0  # a new list, never an update in place: copies share these lists (`copy`)
        state.merchant_stats[txn.merchant] = [count, mean + (x - mean) / count]
        if len(state.merchant_stats) > config.max_merchants:
            del state.merchant_stats[next(iter(state.merchant_stats))]
    _touch(state.devices_seen, txn.device, config.max_devices)
    _touch(state.countries_seen, txn.country, config.max_countries)
    _touch(state.categories_seen, txn.category, config.max_categories)
    _touch(state.channels_seen, txn.channel, config.max_channels)
    state.hour_counts[(t // HOUR_MS) % 24 * HOUR_BUCKETS // 24] += 1
    if txn.txn:
        state.recent_txns.append(txn.txn)
        if len(state.recent_txns) > config.max_recent_txns:
            del state.recent_txns[0]
