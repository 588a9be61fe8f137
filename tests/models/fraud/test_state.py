"""UserState: window bounds, out-of-order placement, serialization round trips, idempotence."""

from __future__ import annotations

import math
from array import array

import numpy as np
import pytest

from models.fraud.running import Running
from models.fraud.state import Prediction, StateConfig, UserState, profile_tag, tag64, update
from models.fraud.state_codec import COLUMN_TYPES
from models.fraud.txn import TxnView, stable_hash, txn_identity, txn_view

# A state written by the code before cached predictions (layout PUS1, git 6efa… models/fraud/state.py):
# three events of one user (t0..t2, amounts 10, 11, 12, merchants m0/m1, device d1, DE, food, online).
V1_STATE = bytes.fromhex(
    "505553310300000000000000c0c62d0000000000030000000000000003000000000000000300000000000000030000"
    "00000000000200000000000000010000000000000001000000000000000100000000000000010000000000000003"
    "000000000000005ecbd6df54dc034022bc22e6e9978c3f9b9999999999c93f7c14ae47e17a943f294a07240a49fbbf"
    "f5cd55c5a8c0e33f030000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000040420f000000000080841e0000000000c0c62d00000000000500000000000000060000000000"
    "0000070000000000000000000000000024400000000000002640000000000000284" "0b93753b72f0754c0b93753b7"
    "66bc961166bc961166bc9611e12d7ad3e12d7ad3e12d7ad30000000000000000000000002f0754c0b93753b7000000"
    "000000f03f7d9ed3bc16e103400000000000000040ce6158f1f3d9034066bc96110300000000000000e12d7ad30300"
    "000000000000f72938d40300000000000000eabe329e0300000000000000a19e532c37ae545b8dff5dc2"
)


# The same three events written by the layout before 64-bit txn ids (PUS2, git b45b36e), with a cached
# prediction (model "panther-1", head "head", profile ids [0, 1], lse −3.25, h = [0, .25, .5, .75],
# S = [0, 1]).
V2_STATE = bytes.fromhex(
    "505553320300000000000000c0c62d000000000003000000000000000300000000000000030000000000000003000000"
    "000000000200000000000000010000000000000001000000000000000100000000000000010000000000000003000000"
    "000000005ecbd6df54dc034022bc22e6e9978c3f9b9999999999c93f7c14ae47e17a943f294a07240a49fbbff5cd55c5"
    "a8c0e33f0300000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000040420f000000000080841e0000000000c0c62d00000000000500000000000000060000000000000007000000"
    "00000000000000000000244000000000000026400000000000002840b93753b72f0754c0b93753b766bc961166bc9611"
    "66bc9611e12d7ad3e12d7ad3e12d7ad30000000000000000000000002f0754c0b93753b7000000000000f03f7d9ed3bc"
    "16e103400000000000000040ce6158f1f3d9034066bc96110300000000000000e12d7ad30300000000000000f72938d4"
    "0300000000000000eabe329e0300000000000000a19e532c37ae545b8dff5dc2b6beb73cc30e5cae0100000000000000"
    "0300000000000000ff7e3c8cddb5aed425f188589bf8565f0000000000000ac004000000000000000200000000000000"
    "000000000000803e0000003f0000403f000000000000803f"
)


def txn(t: int, amount: float = 10.0, token: int = 5, merchant: str = "m1", device: str | None = "d1",
        country: str | None = "US", txn_id: str | None = None) -> TxnView:
    return TxnView(t, amount, token, stable_hash(merchant), stable_hash(device), stable_hash(country),
                   stable_hash("c"), stable_hash("grocery"), stable_hash("online"), 0,
                   txn_identity(txn_id or f"t{t}"))


def filled(n: int = 30, config: StateConfig | None = None) -> UserState:
    config = config or StateConfig(window=8)
    state = UserState()
    for i in range(n):
        update(state, txn(1_000 * i, amount=float(i + 1), merchant=f"m{i % 5}", device=f"d{i % 3}"),
               p=0.1 + 0.01 * i, config=config)
    return state


def test_window_is_bounded_and_chronological() -> None:
    state = filled(30)
    assert len(state.times) == 8 and state.n == 30
    assert list(state.times) == sorted(state.times) and state.times[-1] == 29_000
    assert state.log_amount.n == 30
    np.testing.assert_allclose(state.log_amount.mean, np.mean(np.log1p(np.arange(1, 31))))


def test_prob_stats_equal_batch_computation() -> None:
    state = filled(30)
    probs = [0.1 + 0.01 * i for i in range(30)]
    n, mu, sigma, mu_log, sigma_log = state.prob_stats()
    assert n == 30
    np.testing.assert_allclose([mu, sigma], [np.mean(probs), np.std(probs)], rtol=1e-12)
    logs = np.log(probs)
    np.testing.assert_allclose([mu_log, sigma_log], [logs.mean(), logs.std()], rtol=1e-12)


def test_late_event_is_placed_by_event_time() -> None:
    state = UserState()
    for t in (1_000, 3_000, 5_000):
        update(state, txn(t, token=t // 1000))
    update(state, txn(2_000, token=2))  # arrives late
    assert list(state.times) == [1_000, 2_000, 3_000, 5_000]
    assert list(state.tokens) == [1, 2, 3, 5]
    assert state.last_time == 5_000
    assert state.context_end(2_500) == 2 and state.window_tokens(2_500) == [1, 2]
    assert state.window_tokens(None, max_len=2) == [3, 5]


def test_order_insensitive_aggregates() -> None:
    events = [txn(1_000 * i, amount=float(3 * i % 7 + 1), merchant=f"m{i % 3}") for i in range(12)]
    a, b = UserState(), UserState()
    for e in events:
        update(a, e, p=e.amount / 10)
    for e in [*events[6:], *events[:6]]:  # second half first, first half late
        update(b, e, p=e.amount / 10)
    assert a.times == b.times and a.tokens == b.tokens  # array == array compares values
    for name in ("log_amount", "prob", "log_prob"):
        ra, rb = getattr(a, name), getattr(b, name)
        assert ra.n == rb.n
        np.testing.assert_allclose([ra.mean, ra.m2], [rb.mean, rb.m2], rtol=1e-9)
    assert {k: v[0] for k, v in a.merchant_stats.items()} == {k: v[0] for k, v in b.merchant_stats.items()}
    assert a.hour_counts == b.hour_counts


def test_serialization_round_trips_exactly() -> None:
    state = filled(30)
    state.log_amount = Running(30, math.pi, 1e-300)
    again = UserState.from_bytes(state.to_bytes())
    assert again == state
    assert list(again.merchant_stats) == list(state.merchant_stats)  # LRU order kept
    assert UserState.from_dict(state.to_dict()) == state
    assert UserState.from_bytes(UserState().to_bytes()) == UserState()
    assert len(state.to_bytes()) < 4_000
    with pytest.raises(ValueError, match="magic"):
        UserState.from_bytes(b"nope")


def _the_three_stored_events() -> UserState:
    """The state V1_STATE and V2_STATE were written from (before their own extras)."""
    expected = UserState()
    for i in range(3):
        update(expected, txn_view({"txn_id": f"t{i}", "timestamp": 1_000_000 * (i + 1), "amount": 10.0 + i,
                                   "merchant_id": f"m{i % 2}", "device_id": "d1", "country": "DE",
                                   "merchant_category": "food", "channel": "online"}, 5 + i),
               p=0.1 * (i + 1))  # fmt: skip
    return expected


def test_states_of_the_previous_layout_still_load() -> None:
    """Migration: PUS1 bytes load as the same state, with no cached prediction and an unknown model."""
    old = UserState.from_bytes(V1_STATE)
    expected = _the_three_stored_events()
    expected.recent_txns = array("Q")  # CRC-32 ids of the old layouts are dropped
    assert old == expected and old.prediction is None and old.model_tag == 0
    assert UserState.from_bytes(old.to_bytes()) == old and old.to_bytes()[:4] == b"PUS3"


def test_states_with_crc32_txn_ids_still_load() -> None:
    """Migration: PUS2 bytes (with a cached prediction) load whole but for their CRC-32 txn ids."""
    old = UserState.from_bytes(V2_STATE)
    expected = _the_three_stored_events()
    expected.recent_txns = array("Q")
    expected.model_tag = tag64("panther-1")
    expected.prediction = Prediction(3, tag64("panther-1", "head"), profile_tag(np.arange(2)), -3.25,
                                     np.arange(4, dtype=np.float32) / 4, np.arange(2, dtype=np.float32))
    assert old == expected
    assert UserState.from_bytes(old.to_bytes()) == old


def test_the_cached_prediction_round_trips_and_costs_what_it_holds() -> None:
    state = filled(30)
    plain = len(state.to_bytes())
    hidden, sequence = np.arange(64, dtype=np.float32) / 7, np.arange(96, dtype=np.float32)
    state.model_tag = tag64("panther-1")
    state.prediction = Prediction(state.n, tag64("panther-1", "head"), profile_tag(np.arange(5)), -3.25,
                                  hidden, sequence)  # fmt: skip
    raw = state.to_bytes()
    assert len(raw) - plain == 6 * 8 + 4 * (64 + 96) == state.prediction.nbytes
    again = UserState.from_bytes(raw)
    assert again == state and again.prediction.lse == -3.25 and again.model_tag == tag64("panther-1")
    assert again.valid_prediction(tag64("panther-1", "head"), profile_tag(np.arange(5))) is not None
    assert again.valid_prediction(tag64("panther-2", "head"), profile_tag(np.arange(5))) is None  # model
    assert again.valid_prediction(tag64("panther-1", "head"), profile_tag(np.zeros(5))) is None  # profile
    update(again, txn(99_000))
    assert again.valid_prediction(tag64("panther-1", "head"), profile_tag(np.arange(5))) is None  # folded


def test_bounded_maps_and_idempotence() -> None:
    config = StateConfig(max_merchants=4, max_devices=2, max_recent_txns=3)
    state = UserState()
    for i in range(10):
        update(state, txn(i, merchant=f"m{i}", device=f"d{i}", txn_id=f"id{i}"), config=config)
    assert len(state.merchant_stats) == 4 and len(state.devices_seen) == 2
    assert stable_hash("m9") in state.merchant_stats and stable_hash("m0") not in state.merchant_stats
    assert state.seen(txn_identity("id9")) and not state.seen(txn_identity("id0"))


def test_txn_ids_with_the_same_crc32_are_different_events() -> None:
    """Issue 15: the redelivery check used CRC-32, so a colliding id's score was silently dropped."""
    first, second = "txn-597958", "txn-23020404"  # found by a birthday search over "txn-<n>"
    assert stable_hash(first) == stable_hash(second)
    state = UserState()
    update(state, txn(1_000, txn_id=first))
    assert state.seen(txn_identity(first)) and not state.seen(txn_identity(second))
    again = UserState.from_bytes(state.to_bytes())
    assert again.seen(txn_identity(first)) and not again.seen(txn_identity(second))


def test_missing_entities_are_not_counted() -> None:
    state = UserState()
    update(state, txn(0, device=None, country=None))
    assert state.devices_seen == {} and state.countries_seen == {}


def test_stream_side_modules_do_not_import_torch() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    code = ("import sys, models.fraud, models.fraud.replay, models.fraud.live, models.fraud.cached_scoring, "
            "models.fraud.next_token, models.fraud.window_plan; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_live_pad_id_matches_the_batch_contract() -> None:
    from models.batch import PAD_ID
    from models.fraud.live import PAD_ID as LIVE_PAD_ID

    assert LIVE_PAD_ID == PAD_ID


def test_txn_doctests() -> None:
    import doctest

    import models.fraud.txn

    result = doctest.testmod(models.fraud.txn)
    assert result.attempted > 0 and result.failed == 0


def test_the_struct_codec_writes_and_reads_what_the_numpy_reference_does() -> None:
    """`to_bytes` / `from_bytes` (one struct call each, `state_codec`) equal the numpy reference byte
    for byte: empty, short and full windows, late events, evicted maps, with and without a prediction."""
    rng = np.random.default_rng(7)
    config = StateConfig(window=20, max_merchants=6, max_devices=3, max_recent_txns=9)
    for trial in range(40):
        state = UserState()
        for i in range(int(rng.integers(0, 60))):
            t = 1_000 * i - (5_000 if rng.random() < 0.1 else 0)  # some late events
            device = f"d{i % 5}" if rng.random() < 0.8 else None
            update(state, txn(t, amount=float(rng.lognormal(2, 1)), token=int(rng.integers(1, 900)),
                              merchant=f"m{rng.integers(10)}", device=device, country=f"c{rng.integers(4)}"),
                   p=float(rng.random()) if rng.random() < 0.8 else None, config=config)  # fmt: skip
        if trial % 2:
            state.model_tag = tag64(f"m{trial}")
            state.prediction = Prediction(state.n, tag64("m", "h"), trial + 1, -float(trial),
                                          rng.standard_normal(8).astype(np.float32),
                                          rng.standard_normal(trial % 3).astype(np.float32))  # fmt: skip
        raw = state.to_bytes()
        assert raw == state.to_bytes_reference()
        fast, reference = UserState.from_bytes(raw), UserState.from_bytes_reference(raw)
        assert fast == reference == state
        assert list(fast.merchant_stats) == list(state.merchant_stats)
        assert all(type(x) is int for x in [*fast.times, *fast.recent_txns])  # no numpy scalars leak out
        assert fast.prediction is None or fast.prediction.hidden.flags.writeable
        assert {name: getattr(fast, name).typecode for name in COLUMN_TYPES} == COLUMN_TYPES  # typed columns


def test_the_memoised_string_hash_is_the_crc_of_the_stripped_text() -> None:
    """`stable_hash` caches strings (six per event); every input still hashes as its stripped CRC-32."""
    import zlib

    from models.fraud.txn import stable_hash

    for value in ["m00001", "  m00001 ", "ü-city", "", "   ", 42, 4.5, None, float("nan")]:
        text = "" if value is None or value != value else str(value).strip()
        expected = (zlib.crc32(text.encode()) or 1) if text else 0
        assert stable_hash(value) == stable_hash(value) == expected, value


def test_a_datetime_event_time_is_the_same_millisecond_as_pandas_reads_it() -> None:
    """`txn_view`'s datetime fast path (integer timedelta arithmetic) equals pd.Timestamp's floor to ms:
    before 1970, sub-millisecond, other offsets, naive (= UTC)."""
    import random
    from datetime import UTC, datetime, timedelta, timezone

    import pandas as pd

    rng = random.Random(3)
    for _ in range(2_000):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(-10**15, 4 * 10**15))
        moment = moment.astimezone(timezone(timedelta(minutes=rng.choice([0, 60, -330, 345]))))
        for value in (moment, moment.replace(tzinfo=None)):
            stamp = pd.Timestamp(value)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            assert txn_view({"timestamp": value, "amount": 1.0}, 0).time_ms == stamp.value // 1_000_000


def test_copy_equals_a_deep_copy_and_shares_nothing_an_update_changes() -> None:
    state = filled(40, StateConfig(window=8, max_merchants=3))
    state.prob = Running().add(0.25)
    state.prediction = Prediction(40, tag64("m"), 7, -1.5, np.arange(4, dtype=np.float32),
                                  np.ones(2, dtype=np.float32))  # fmt: skip
    before = state.to_bytes()
    fast, reference = state.copy(), state.deep_copy_reference()
    assert fast == reference == state
    for i in range(12):  # the same merchants again (their stats change), new ones (evictions), a late one
        update(fast, txn(50_000 + 1_000 * i, amount=3.0 + i, merchant=f"m{i % 7}", device=f"e{i}"),
               config=StateConfig(window=8, max_merchants=3))  # fmt: skip
    update(fast, txn(100, merchant="m1"), config=StateConfig(window=8, max_merchants=3))
    fast.hour_counts[0] += 5
    fast.prediction.hidden[:] = -1.0
    assert state.to_bytes() == before and state == reference


def test_splicing_a_new_prediction_into_the_bytes_equals_packing_the_state_again() -> None:
    """`with_prediction` (the refresh's tail splice) = `pack` of the state with the new model tag and
    prediction: from no prediction, over an old one, and back to none; every window and map shape."""
    from models.fraud.state_codec import with_prediction

    rng = np.random.default_rng(11)
    config = StateConfig(window=20, max_merchants=6, max_devices=3, max_recent_txns=9)
    for trial in range(40):
        state = UserState()
        for i in range(int(rng.integers(0, 60))):
            event = txn(1_000 * i, amount=float(rng.lognormal(2, 1)), token=int(rng.integers(1, 900)),
                        merchant=f"m{rng.integers(10)}", device=f"d{i % 5}", country=f"c{rng.integers(4)}")
            update(state, event, p=float(rng.random()), config=config)
        if trial % 3 == 1:
            state.prediction = Prediction(state.n, tag64("old"), 7, -1.0, np.ones(8, np.float32),
                                          np.ones(2, np.float32))  # fmt: skip
        raw = state.to_bytes()
        for new in (Prediction(state.n, tag64("m", str(trial)), trial, -float(trial),
                               rng.standard_normal(8).astype(np.float32),
                               rng.standard_normal(trial % 3).astype(np.float32)), None):  # fmt: skip
            state.model_tag, state.prediction = tag64(f"m{trial}"), new
            assert with_prediction(raw, state.model_tag, new) == state.to_bytes()
