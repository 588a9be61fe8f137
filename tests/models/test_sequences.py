"""Ragged sequences and evaluation sets: ordering, prefixes, leave-last-out and after-time protocols."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import models.sequences
from models.batch import PAD_ID
from models.sequences import build_sequences, make_eval_set, to_epoch_ms


def frame() -> pd.DataFrame:
    # user b: 3 events, user a: 4 events (two at the same time: source order decides), user c: 1 event
    return pd.DataFrame(
        {
            "user_id": ["b", "a", "a", "b", "a", "c", "a", "b"],
            "timestamp": pd.to_datetime([30, 10, 40, 10, 20, 5, 20, 20], unit="ms", utc=True),
        }
    )


def tokens() -> np.ndarray:
    return np.array([13, 20, 23, 11, 21, 30, 22, 12])  # token = 10·user + rank, to read orders easily


def test_doctests() -> None:
    assert doctest.testmod(models.sequences).failed == 0


def test_build_sorts_users_and_time_with_stable_ties() -> None:
    seqs = build_sequences(frame(), tokens())
    assert seqs.user_ids.tolist() == ["a", "b", "c"]
    assert seqs.offsets.tolist() == [0, 4, 7, 8] and seqs.lengths.tolist() == [4, 3, 1]
    assert seqs.tokens.tolist() == [20, 21, 22, 23, 11, 12, 13, 30]
    assert seqs.times.tolist() == [10, 20, 20, 40, 10, 20, 30, 5]
    assert seqs.row_index.tolist() == [1, 4, 6, 2, 3, 7, 0, 5]
    assert np.array_equal(tokens()[seqs.row_index], seqs.tokens)
    assert seqs.user(1).tolist() == [11, 12, 13] and len(seqs) == 3 and seqs.n_events == 8


def test_timestamps_from_strings_numbers_and_naive_datetimes_agree() -> None:
    iso = pd.Series(["1970-01-01T00:00:00.010Z", "1970-01-01T01:00:00+01:00"])
    assert to_epoch_ms(iso).tolist() == [10, 0]
    assert to_epoch_ms(pd.Series([10.0, 0.0])).tolist() == [10, 0]
    assert to_epoch_ms(pd.Series(pd.to_datetime(["1970-01-01 00:00:00.010"]))).tolist() == [10]
    with pytest.raises(ValueError, match="missing timestamps"):
        to_epoch_ms(pd.Series([1.0, None]))


def test_build_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="8 rows"):
        build_sequences(frame(), tokens()[:3])
    with pytest.raises(KeyError, match="ts"):
        build_sequences(frame(), tokens(), time_col="ts")


def test_before_drop_last_and_select_users() -> None:
    seqs = build_sequences(frame(), tokens())
    early = seqs.before(20)
    assert early.lengths.tolist() == [1, 1, 1] and early.tokens.tolist() == [20, 11, 30]
    assert early.user_ids.tolist() == seqs.user_ids.tolist()
    dropped = seqs.drop_last(1)
    assert dropped.lengths.tolist() == [3, 2, 0] and dropped.tokens.tolist() == [20, 21, 22, 11, 12]
    assert seqs.drop_last(5).n_events == 0
    picked = seqs.select_users(np.array([2, 0]))
    assert picked.user_ids.tolist() == ["c", "a"] and picked.tokens.tolist() == [30, 20, 21, 22, 23]
    assert picked.offsets.tolist() == [0, 1, 5]


def test_leave_last_out_and_validation() -> None:
    seqs = build_sequences(frame(), tokens())
    test = make_eval_set(seqs, "leave_last_out")
    assert test.targets.tolist() == [23, 13]  # user c (one event) has no history: skipped
    assert test.user_row.tolist() == [0, 1] and test.target_row.tolist() == [2, 0]
    assert [test.history(i).tolist() for i in range(2)] == [[20, 21, 22], [11, 12]]
    val = make_eval_set(seqs.drop_last(1), "leave_last_out")
    assert val.targets.tolist() == [22, 12] and val.history(0).tolist() == [20, 21]
    short = make_eval_set(seqs, "leave_last_out", max_len=2)
    assert short.history(0).tolist() == [21, 22] and short.lengths.tolist() == [2, 2]
    assert make_eval_set(seqs, "leave_last_out", min_history=3).targets.tolist() == [23]


def test_after_time_histories_include_earlier_test_events() -> None:
    seqs = build_sequences(frame(), tokens())
    ev = make_eval_set(seqs, "after_time", cut_ms=20)
    assert ev.targets.tolist() == [21, 22, 23, 12, 13]  # c's event is before the cut; b's first is too
    assert [ev.history(i).tolist() for i in range(len(ev))] == [[20], [20, 21], [20, 21, 22], [11], [11, 12]]
    assert ev.target_time.tolist() == [20, 20, 40, 20, 30]
    assert ev.offsets.tolist() == [0, 1, 3, 6, 7, 9]
    assert ev.tokens.tolist() == [20, 20, 21, 20, 21, 22, 11, 11, 12]
    with pytest.raises(ValueError, match="cut_ms"):
        make_eval_set(seqs, "after_time")
    with pytest.raises(ValueError, match="unknown mode"):
        make_eval_set(seqs, "random")  # type: ignore[arg-type]


def test_after_time_cap_is_seeded_chronological_and_bounded() -> None:
    rng = np.random.default_rng(0)
    n = 500
    big = pd.DataFrame({"user_id": rng.integers(0, 5, n).astype(str), "timestamp": rng.integers(0, 1000, n)})
    seqs = build_sequences(big, np.arange(n))
    full = make_eval_set(seqs, "after_time", cut_ms=500)
    capped = make_eval_set(seqs, "after_time", cut_ms=500, max_targets_per_user=7, seed=1)
    again = make_eval_set(seqs, "after_time", cut_ms=500, max_targets_per_user=7, seed=1)
    other = make_eval_set(seqs, "after_time", cut_ms=500, max_targets_per_user=7, seed=2)
    assert np.bincount(capped.user_row).max() == 7 and len(capped) == 35
    assert np.array_equal(capped.ends, again.ends) and not np.array_equal(capped.ends, other.ends)
    assert np.all(np.diff(capped.ends) > 0)  # user-major, chronological
    assert set(capped.ends.tolist()) <= set(full.ends.tolist())
    assert (capped.target_time >= 500).all()


def test_padded_right_pads_and_keeps_the_latest_events() -> None:
    seqs = build_sequences(frame(), tokens())
    ev = make_eval_set(seqs, "after_time", cut_ms=20)
    padded, lengths = ev.padded(4)
    assert padded.tolist() == [
        [20, PAD_ID, PAD_ID, PAD_ID],
        [20, 21, PAD_ID, PAD_ID],
        [20, 21, 22, PAD_ID],
        [11, PAD_ID, PAD_ID, PAD_ID],
        [11, 12, PAD_ID, PAD_ID],
    ]
    assert lengths.tolist() == [1, 2, 3, 1, 2]
    latest, lengths = ev.padded(2, rows=slice(2, 4))
    assert latest.tolist() == [[21, 22], [11, PAD_ID]] and lengths.tolist() == [2, 1]
    picked, _ = ev.padded(rows=np.array([4]))
    assert picked.shape == (1, 200) and picked[0, :2].tolist() == [11, 12]
    sub = ev.subset(np.array([0, 4]))
    assert sub.targets.tolist() == [21, 13] and sub.history(1).tolist() == [11, 12]


def test_a_cold_start_set_is_the_held_out_users_first_events_with_their_whole_history() -> None:
    from models.sequences import cold_start_eval_set

    frame = pd.DataFrame({"user_id": ["a"] * 7 + ["b"] * 3 + ["c"] * 6, "timestamp": np.arange(16)})
    seqs = build_sequences(frame, np.arange(16) + 5)
    rows = np.array([2, 0])  # c and a, in any order
    ev = cold_start_eval_set(seqs, rows, max_history=4, max_len=3)
    assert ev.user_row.tolist() == [0] * 4 + [2] * 4  # events 2-5 of each: 1 to 4 earlier events
    assert ev.lengths.tolist() == [1, 2, 3, 3, 1, 2, 3, 3]  # capped at max_len
    assert all(ev.history(i)[-1] == ev.targets[i] - 1 for i in range(len(ev)))  # just before the target
    train = seqs.without_users(rows)
    assert len(train) == len(seqs) and train.lengths.tolist() == [0, 3, 0]  # rows kept, events gone
    with pytest.raises(ValueError, match="max_history"):
        cold_start_eval_set(seqs, rows, max_history=0)
