"""The decoded-state memo (`stream/worker/state_memo.py`): used only for the very bytes it was kept for."""

from __future__ import annotations

import numpy as np

from models.fraud.state import UserState
from stream.worker.state_memo import StateMemo


def state(n: int) -> UserState:
    s = UserState()
    s.n = n
    return s


def test_a_kept_state_is_lent_for_equal_bytes_only() -> None:
    memo = StateMemo(10)
    kept = state(3)
    raw = kept.to_bytes()
    memo.keep("u", raw, kept)
    states = {"u": bytes(raw)}  # equal bytes, another object: as read back from RocksDB
    hits = memo.lend(states)
    assert states["u"] is kept and hits == 1 and len(memo) == 0  # lent: out of the memo

    memo.keep("u", raw, kept)
    other = state(4).to_bytes()  # written meanwhile by someone else (a rebalance, a restore)
    states = {"u": other}
    hits = memo.lend(states)
    assert states["u"] == other and hits == 0 and len(memo) == 0  # decoded from the bytes


def test_a_retry_gets_the_bytes_back_and_a_dropped_batch_returns_nothing() -> None:
    memo = StateMemo(10)
    kept, raw = state(3), state(3).to_bytes()
    memo.keep("u", raw, kept)
    states: dict = {"u": raw, "v": state(9).to_bytes()}
    memo.lend(states)
    states["u"].n += 1  # a failed attempt folded an event into the lent state
    memo.restore(states)
    assert states["u"] == raw and len(memo) == 0

    memo.keep("u", raw, kept)
    memo.lend(states)
    memo.end_batch()  # the batch was dropped: what it lent is gone, the table's bytes decode it again
    assert len(memo) == 0


def test_the_least_recently_kept_go_first() -> None:
    memo = StateMemo(2)
    for user in ("a", "b", "c"):
        memo.keep(user, state(1).to_bytes(), state(1))
    memo.keep("b", state(2).to_bytes(), state(2))  # b kept again: now the most recent
    memo.keep("d", state(1).to_bytes(), state(1))
    states = {user: state(2 if user == "b" else 1).to_bytes() for user in "abcd"}
    memo.lend(states)
    assert {user for user, s in states.items() if isinstance(s, UserState)} == {"b", "d"}


def test_a_finished_refresh_updates_the_entry_that_still_holds_the_bytes_it_refreshed() -> None:
    """The refresh works on a view (`UserState.refresh_view`) while the memo keeps the state itself;
    its result reaches the entry only when the entry still holds the bytes the refresh started from."""
    from models.fraud.state import Prediction, update
    from models.fraud.txn import TxnView

    kept = UserState()
    for i in range(10):
        update(kept, TxnView(1_000 * i, 10.0 + i, 10 + i, 11, 12, 13, 14, 15, 16, 0, 100 + i), p=0.5)
    before = kept.to_bytes()
    view = kept.refresh_view(4)
    assert list(view.tokens) == [16, 17, 18, 19] and view.n == 10
    view.prediction = Prediction(10, 5, 6, -1.5, np.arange(4, dtype=np.float32), np.zeros(0, np.float32))
    assert kept.prediction is None  # the refresh's result stays in its view…
    after = view.to_bytes_after_refresh(before)  # the refresher's ready bytes
    memo = StateMemo(10)
    memo.keep("u", before, kept)
    memo.refreshed("u", before, after, view)
    states = {"u": bytes(after)}
    assert memo.lend(states) == 1 and states["u"] is kept and kept.prediction == view.prediction
    assert kept.to_bytes() == after  # …until the memo's entry takes it: then bytes and state agree

    memo.keep("u", before, kept)
    memo.refreshed("u", state(9).to_bytes(), after, view)  # the entry was written again since
    assert memo.lend({"u": bytes(after)}) == 0
    memo.refreshed("v", before, after, view)  # never kept (or lent to a batch right now): nothing
    assert len(memo) == 0
