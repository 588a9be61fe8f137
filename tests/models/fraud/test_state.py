"""UserState: window bounds, out-of-order placement, serialization round trips, idempotence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.fraud.running import Running
from models.fraud.state import StateConfig, UserState, update
from models.fraud.txn import TxnView, stable_hash


def txn(t: int, amount: float = 10.0, token: int = 5, merchant: str = "m1", device: str | None = "d1",
        country: str | None = "US", txn_id: str | None = None) -> TxnView:
    return TxnView(t, amount, token, stable_hash(merchant), stable_hash(device), stable_hash(country),
                   stable_hash("c"), stable_hash("grocery"), stable_hash("online"), 0,
                   stable_hash(txn_id or f"t{t}"))


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
    assert state.times == sorted(state.times) and state.times[-1] == 29_000
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
    assert state.times == [1_000, 2_000, 3_000, 5_000]
    assert state.tokens == [1, 2, 3, 5]
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
    assert a.times == b.times and a.tokens == b.tokens
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


def test_bounded_maps_and_idempotence() -> None:
    config = StateConfig(max_merchants=4, max_devices=2, max_recent_txns=3)
    state = UserState()
    for i in range(10):
        update(state, txn(i, merchant=f"m{i}", device=f"d{i}", txn_id=f"id{i}"), config=config)
    assert len(state.merchant_stats) == 4 and len(state.devices_seen) == 2
    assert stable_hash("m9") in state.merchant_stats and stable_hash("m0") not in state.merchant_stats
    assert state.seen(stable_hash("id9")) and not state.seen(stable_hash("id0"))


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
    code = ("import sys, models.fraud, models.fraud.replay, models.fraud.live; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_live_pad_id_matches_the_batch_contract() -> None:
    from models.batch import PAD_ID
    from models.fraud.live import PAD_ID as LIVE_PAD_ID

    assert LIVE_PAD_ID == PAD_ID
