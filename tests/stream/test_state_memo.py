"""The decoded-state memo (`stream/worker/state_memo.py`): used only for the very bytes it was kept for."""

from __future__ import annotations

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
