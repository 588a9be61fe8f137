"""Training windows and evaluation batches from DATA's Sequences / EvalSet: exact window bounds, batch
counts, seeding, profile alignment by id."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models.batch import PAD_ID, UNK_ID
from models.loaders import TrainBatches, UserFeatures, WindowSpec, eval_batches
from models.sequences import build_sequences, make_eval_set


def _seqs(lengths: dict[str, int]):
    """User u's tokens are 100·k + position, so every window can be checked by arithmetic."""
    rows = [
        (user, pos, 100 * (k + 1) + pos) for k, (user, n) in enumerate(lengths.items()) for pos in range(n)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "timestamp", "token"])
    return build_sequences(frame, frame["token"].to_numpy())


def _all_rows(loader: TrainBatches, epoch: int) -> list[tuple[list[int], list[int], int]]:
    out = []
    for batch in loader.epoch(epoch):
        for i in range(batch.tokens.shape[0]):
            n = int(batch.lengths[i])
            tokens, targets = batch.tokens[i].tolist(), batch.targets[i].tolist()
            assert all(t == PAD_ID for t in tokens[n:]) and all(t == PAD_ID for t in targets[n:])
            out.append((tokens[:n], targets[:n], int(batch.user_index[i])))
    return out


def test_windows_all_cover_every_target_once() -> None:
    seqs = _seqs({"a": 11, "b": 4, "c": 1, "d": 2})
    loader = TrainBatches(
        seqs, UserFeatures.empty(len(seqs)), WindowSpec(max_len=4, batch_size=3, mode="all")
    )
    rows = _all_rows(loader, 0)
    predicted: dict[int, list[int]] = {}
    for tokens, targets, user in rows:
        assert 1 <= len(tokens) <= 4
        assert targets == [t + 1 for t in tokens]  # the next token of the same user
        predicted.setdefault(user, []).extend(targets)
    assert sorted(predicted[0]) == [100 + p for p in range(1, 11)]
    assert sorted(predicted[1]) == [200 + p for p in range(1, 4)]
    assert 2 not in predicted  # a single-event user has nothing to predict
    assert sorted(predicted[3]) == [401]


def test_unshuffled_all_windows_have_exact_bounds_and_n_batches_counts_them() -> None:
    seqs = _seqs({"a": 11, "b": 4, "c": 1, "d": 2})  # rows start at offsets 0, 11, 15, 16
    loader = TrainBatches(
        seqs, UserFeatures.empty(4), WindowSpec(max_len=4, batch_size=2, mode="all", shuffle=False)
    )
    users, starts, ends = loader.windows(0)
    # "a": 10 targets, 4 per window, newest first: [6, 11), [2, 7), [0, 3); "c" has no target.
    assert users.tolist() == [0, 0, 0, 1, 3]
    assert starts.tolist() == [6, 2, 0, 11, 16] and ends.tolist() == [11, 7, 3, 15, 18]
    batches = list(loader.epoch(0))
    assert loader.n_batches() == len(batches) == 3
    assert [b.tokens.shape[0] for b in batches] == [2, 2, 1]
    assert batches[0].user_index.tolist() == [0, 0] and batches[2].user_index.tolist() == [3]
    assert batches[2].tokens.tolist() == [[400]] and batches[2].targets.tolist() == [[401]]


def test_the_seed_picks_the_crops() -> None:
    seqs = _seqs({"a": 30, "b": 25})
    crops = [
        TrainBatches(seqs, UserFeatures.empty(2), WindowSpec(max_len=4, mode="random_crop", seed=seed))
        for seed in (0, 0, 1)
    ]
    epochs = [[c.windows(e)[1].tolist() for e in range(5)] for c in crops]
    assert epochs[0] == epochs[1]  # (seed, epoch) alone decides
    assert epochs[0] != epochs[2]


def test_user_features_align_by_id_text_and_empty_has_no_columns() -> None:
    features = UserFeatures.align(
        np.array(["1", "2", "3"]), np.array([2, 1]), np.array([[5], [6]]), None
    )  # int profile ids match str user ids: both sides are compared as text
    assert features.profile.tolist() == [[6], [5], [0]] and features.demographics is None
    profile, demographics = features.take(np.array([2, 0]))
    assert profile.dtype == torch.int64 and profile.tolist() == [[0], [6]] and demographics is None
    empty = UserFeatures.empty(3)
    assert empty.profile.shape == (3, 0) and empty.demographics is None
    assert empty.take(np.array([1]))[0].shape == (1, 0)


def test_latest_and_random_crop_windows() -> None:
    seqs = _seqs({"a": 11, "b": 3})
    latest = TrainBatches(seqs, UserFeatures.empty(2), WindowSpec(max_len=4, mode="latest"))
    rows = sorted(_all_rows(latest, 0), key=lambda r: r[2])
    assert rows[0][0] == [106, 107, 108, 109] and rows[0][1] == [107, 108, 109, 110]
    assert rows[1][0] == [200, 201] and rows[1][1] == [201, 202]
    crop = TrainBatches(seqs, UserFeatures.empty(2), WindowSpec(max_len=4, mode="random_crop", seed=3))
    first_tokens = set()
    for epoch in range(30):
        for tokens, targets, user in _all_rows(crop, epoch):
            assert targets == [t + 1 for t in tokens]
            if user == 0:
                assert len(tokens) == 4
                first_tokens.add(tokens[0])
    assert first_tokens == set(range(100, 107))  # every crop position of the long user shows up
    # seeded: the same epoch gives the same batches, another epoch another order
    a = [b.tokens.tolist() for b in crop.epoch(5)]
    assert a == [b.tokens.tolist() for b in crop.epoch(5)]


def test_batches_carry_profile_and_demographics() -> None:
    seqs = _seqs({"u1": 5, "u2": 3, "u3": 6})
    features = UserFeatures.align(
        seqs.user_ids,
        np.array(["u3", "u1"]),
        np.array([[3, 1], [2, 2]]),
        np.array([[40.0, 1.0], [30.0, 2.0]], np.float32),
    )
    assert features.profile.tolist() == [[2, 2], [0, 0], [3, 1]]
    assert np.isnan(features.demographics[1]).all()
    loader = TrainBatches(seqs, features, WindowSpec(max_len=8, batch_size=2, mode="latest"))
    batches = list(loader.epoch(0))
    assert [b.tokens.shape[0] for b in batches] == [2, 1]
    for batch in batches:
        assert batch.tokens.shape[1] == int(batch.lengths.max())  # trimmed to the longest row
        for i, user in enumerate(batch.user_index.tolist()):
            assert batch.profile[i].tolist() == features.profile[user].tolist()
            torch.testing.assert_close(
                batch.demographics[i], torch.from_numpy(features.demographics[user]), equal_nan=True
            )
    assert loader.n_batches() == 2
    with pytest.raises(ValueError, match="window mode"):
        WindowSpec(max_len=4, mode="sliding")


def test_eval_batches_match_the_eval_set() -> None:
    seqs = _seqs({"a": 8, "b": 3, "c": 2})
    ev = make_eval_set(seqs, "leave_last_out", max_len=4)
    features = UserFeatures(np.array([[1], [2], [3]]), None)
    got = list(eval_batches(ev, features, max_len=4, batch_size=2))
    assert [len(t) for _, t in got] == [2, 1]
    tokens = torch.cat([torch.nn.functional.pad(b.tokens, (0, 4 - b.tokens.shape[1])) for b, _ in got])
    lengths = torch.cat([b.lengths for b, _ in got])
    targets = torch.cat([t for _, t in got])
    assert targets.tolist() == [107, 202, 301]
    assert lengths.tolist() == [4, 2, 1]
    assert tokens[0].tolist() == [103, 104, 105, 106] and tokens[1].tolist() == [200, 201, PAD_ID, PAD_ID]
    assert torch.cat([b.profile for b, _ in got]).squeeze(1).tolist() == [1, 2, 3]


def test_eval_batches_give_empty_histories_an_unk() -> None:
    seqs = _seqs({"a": 3})
    ev = make_eval_set(seqs, "after_time", cut_ms=0, max_len=4, min_history=0)
    ((batch, targets),) = list(eval_batches(ev, UserFeatures.empty(1), max_len=4))
    assert targets.tolist() == [100, 101, 102]
    assert batch.lengths.tolist() == [1, 1, 2] and batch.tokens[0, 0].item() == UNK_ID
