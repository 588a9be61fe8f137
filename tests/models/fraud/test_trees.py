"""The served trees (`models.fraud.trees`) against sklearn, and the residual head's out-of-fold base."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from models.fraud.trees import (
    TreeLogit,
    categorical_columns,
    residual_base,
    tree_inputs,
    unseen_categories,
    unseen_categories_reference,
)


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (n, 6) with NaNs, profile ids (n, 3), labels) where both kinds of input matter."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 6)).astype(np.float32)
    features[rng.random(features.shape) < 0.05] = np.nan
    profile = np.stack([rng.integers(0, 12, n), rng.integers(0, 40, n), rng.integers(0, 900, n)], axis=1)
    signal = np.nan_to_num(features[:, 0]) + 1.5 * (profile[:, 0] % 3 == 0) + 0.002 * profile[:, 2]
    labels = signal + rng.normal(size=n) > 2.0
    return features, profile.astype(np.int64), labels


@pytest.fixture(scope="module")
def fitted() -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    features, profile, labels = _rows(4000)
    categorical = categorical_columns(features.shape[1], profile)
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, early_stopping=False,
                                           categorical_features=categorical, random_state=0)  # fmt: skip
    return model.fit(tree_inputs(features, profile), labels), categorical


def test_the_profile_ids_under_the_category_limit_are_categories() -> None:
    _, profile, _ = _rows(500)
    assert categorical_columns(6, profile).tolist() == [False] * 6 + [True, True, False]


def test_the_served_logit_equals_sklearns_decision_function(fitted) -> None:
    model, categorical = fitted
    trees = TreeLogit.from_sklearn(model, categorical)
    features, profile, _ = _rows(300, seed=1)
    profile[:5, 0] = 11  # a category seen in training
    profile[5:10, 1] = 200  # never seen: sklearn reads it as missing
    expected = model.decision_function(tree_inputs(features, profile))
    got = trees(features, profile)
    assert got.dtype == np.float32 and got.shape == (300,)
    assert np.abs(got - expected).max() < 1e-5


def test_a_single_row_and_a_round_trip_through_the_state_dict(fitted) -> None:
    model, categorical = fitted
    trees = TreeLogit.from_sklearn(model, categorical)
    again = TreeLogit.from_state_dict({k: v.copy() for k, v in trees.state_dict().items()})
    features, profile, _ = _rows(8, seed=2)
    np.testing.assert_array_equal(again(features, profile), trees(features, profile))
    one = model.decision_function(tree_inputs(features[:1], profile[:1]))[0]
    assert abs(trees(features[:1], profile[:1])[0] - one) < 1e-5


def test_the_wrong_number_of_columns_is_one_clear_error(fitted) -> None:
    trees = TreeLogit.from_sklearn(*fitted)
    features, profile, _ = _rows(4)
    with pytest.raises(ValueError, match="read 9 columns"):
        trees(features[:, :5], profile)


def test_the_residual_base_is_out_of_fold_on_training_and_the_served_trees_elsewhere() -> None:
    features, profile, labels = _rows(3000, seed=3)
    train, val = np.arange(2400), np.arange(2400, 3000)
    fits: list[int] = []
    column, served = residual_base(features, profile, labels, train, val, seed=0, folds=3,
                                   on_fit=lambda: fits.append(1))  # fmt: skip
    assert column.shape == (3000,) and column.dtype == np.float32 and len(fits) == 4  # served + 3 blocks
    np.testing.assert_allclose(column[val], served(features[val], profile[val]), atol=1e-6)
    assert np.abs(column[train] - served(features[train], profile[train])).mean() > 1e-3  # other trees
    assert np.corrcoef(column[train], labels[train])[0, 1] > 0.2  # and still informative


def test_copied_and_pickled_through_its_bytes(fitted) -> None:
    import copy
    import pickle

    trees = TreeLogit.from_sklearn(*fitted)
    features, profile, _ = _rows(16, seed=4)
    for again in (copy.deepcopy(trees), pickle.loads(pickle.dumps(trees))):
        np.testing.assert_array_equal(again(features, profile), trees(features, profile))


@pytest.mark.filterwarnings("ignore:No positive class found")  # the validation period holds no fraud here
def test_a_block_whose_other_blocks_hold_no_fraud_gets_the_prior_and_no_fraud_at_all_is_refused() -> None:
    features, profile, _ = _rows(1200, seed=5)
    labels = np.zeros(1200, dtype=bool)
    labels[200:300:5] = True  # every training fraud in the first of three blocks
    train, val = np.arange(900), np.arange(900, 1200)
    column, _ = residual_base(features, profile, labels, train, val, folds=3)
    np.testing.assert_allclose(column[:300], np.log(0.5 / 600.5), rtol=1e-6)  # blocks 2-3 hold no fraud
    with pytest.raises(ValueError, match="both frauds and legitimate"):
        residual_base(features, profile, np.zeros(1200, dtype=bool), train, val)


def test_unseen_categories_equal_the_reference() -> None:
    rng = np.random.default_rng(6)
    values = rng.integers(-3, 50, 500).astype(np.float64)
    values[::17] = np.nan
    for known in (np.arange(0.0, 40.0, 3.0), np.asarray([7.0]), np.zeros(0), np.asarray([-3.0, 49.0])):
        want = unseen_categories_reference(values, known)
        np.testing.assert_array_equal(unseen_categories(values, known), want)
