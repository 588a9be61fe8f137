"""The baselines the hybrid head must beat, on the same transaction features (`features.py`).

- `rule_score`: what a rules engine does — amount far above the user's usual (z-score) and velocity
  thresholds, plus new-device / new-country flags — as one continuous score (no training).
- `GBTBaseline`: scikit-learn's HistGradientBoostingClassifier on the hand-crafted per-user features.
- The DCN without PANTHER inputs is `head_config("dcn", …)` trained like the hybrid (train.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier


def rule_score(features: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(N, F) features → (N,) rule score: z-score of the amount above 2, velocity over thresholds, flags.

    >>> names = ["amount_z", "velocity_1h", "velocity_24h", "new_device", "new_country"]
    >>> rule_score(np.array([[4.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]), names).tolist()
    [1.0, 0.0]
    """
    col = {name: i for i, name in enumerate(names)}
    amount_z = features[:, col["amount_z"]]
    count_1h = np.expm1(features[:, col["velocity_1h"]])  # events in the hour before, from log1p
    count_24h = np.expm1(features[:, col["velocity_24h"]])
    score = np.clip((amount_z - 2.0) / 2.0, 0.0, 2.0)  # amount ≥ 2σ above the user's usual
    score += np.clip((count_1h - 2.0) / 3.0, 0.0, 2.0)  # more than 2 payments in the last hour
    score += np.clip((count_24h - 10.0) / 10.0, 0.0, 1.0)  # more than 10 in a day
    score += 0.5 * features[:, col["new_device"]] + 0.5 * features[:, col["new_country"]]
    return score


@dataclass(frozen=True)
class GBTConfig:
    max_iter: int = 400
    learning_rate: float = 0.05
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GBTBaseline:
    """Gradient-boosted trees on transaction features; early stopping on a held-out validation set."""

    def __init__(self, config: GBTConfig | None = None, categorical: np.ndarray | None = None) -> None:
        self.config = config or GBTConfig()
        self.categorical = categorical  # (F,) bool: columns holding category codes (< 255), e.g. profile ids
        self.model: HistGradientBoostingClassifier | None = None

    def fit(self, features: np.ndarray, labels: np.ndarray, val_features: np.ndarray | None = None,
            val_labels: np.ndarray | None = None) -> GBTBaseline:
        c = self.config
        model = HistGradientBoostingClassifier(
            max_iter=c.max_iter, learning_rate=c.learning_rate, max_leaf_nodes=c.max_leaf_nodes,
            min_samples_leaf=c.min_samples_leaf, l2_regularization=c.l2_regularization, random_state=c.seed,
            early_stopping=val_features is None, n_iter_no_change=30,
            categorical_features=self.categorical,
        )
        model.fit(features, labels.astype(np.int64))
        if val_features is not None and val_labels is not None:
            model = _best_iteration(model, features, labels, val_features, val_labels)
        self.model = model
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the GBT baseline first")
        return self.model.predict_proba(features)[:, 1]


def _best_iteration(model: HistGradientBoostingClassifier, features: np.ndarray, labels: np.ndarray,
                    val_features: np.ndarray, val_labels: np.ndarray) -> HistGradientBoostingClassifier:
    """Refit with the iteration count that maximized validation average precision (chronological val)."""
    from sklearn.metrics import average_precision_score

    best, best_iter = -1.0, model.n_iter_
    for i, proba in enumerate(model.staged_predict_proba(val_features), start=1):
        if i % 25 and i != model.n_iter_:
            continue
        ap = average_precision_score(val_labels, proba[:, 1])
        if ap > best:
            best, best_iter = ap, i
    if best_iter == model.n_iter_:
        return model
    params = model.get_params() | {"max_iter": best_iter, "early_stopping": False}
    return HistGradientBoostingClassifier(**params).fit(features, labels.astype(np.int64))
