"""The fair trees as a served part of the fraud head: the residual head's base logit.

A residual head (`fit_fraud(residual=True)`) learns what gradient-boosted trees over the same hand-made
inputs miss: its logit is *added* to the trees' logit (issue 17, docs/MODEL.md). Training adds an
out-of-fold tree logit (`residual_base`), so no training event's own label shaped the logit it is
trained on; serving adds the logit of the trees fitted on the whole training period, which ship in the
artefact and run wherever the head runs (in process, in Triton).

    trees = TreeLogit.from_sklearn(hgb, categorical)
    logit = trees(txn_features (B, F) float32, profile (B, P) int64)   # → (B,) float32, the raw margin

Evaluated by treelite's compiled evaluator (GTIL), not by sklearn: sklearn's `decision_function`
costs 3.5 ms for 8 rows and 5 ms for 250 on one OpenMP thread (input validation and thread start per
call), which a worker's small batches at 1,000 events/s cannot afford (docs/MODEL.md, measured).
Equal to sklearn's `decision_function` to float rounding (tested), categorical splits included: a
category the trees never saw in training is missing data to sklearn, so it is made NaN here first
(treelite alone would send it right).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import treelite
import treelite.gtil

from models.fraud.baselines import GBTBaseline, GBTConfig

CATEGORY_LIMIT = 255  # HistGradientBoosting's categorical features take codes below this
RESIDUAL_FOLDS = 4  # chronological blocks of the out-of-fold base (`residual_base`)


def tree_inputs(features: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """(N, F + P) float32: the transaction features (F) and the user's profile ids (P), the trees' columns.

    Everything hand-made the hybrid reads: the features (merchant risk level among them) directly, the
    profile through e_u."""
    return np.concatenate([np.asarray(features, np.float32), np.asarray(profile, np.float32)], axis=1)


def categorical_columns(n_features: int, profile: np.ndarray) -> np.ndarray:
    """(F + P,) bool: profile ids are categories for the trees where they fit HistGradientBoosting's
    255-level limit (`profile` (N, P): the training rows' ids), numbers otherwise."""
    fits = np.asarray(profile).max(axis=0, initial=0) < CATEGORY_LIMIT
    return np.concatenate([np.zeros(n_features, dtype=bool), fits])


@dataclass(frozen=True)
class TreeLogit:
    """Fitted trees over `tree_inputs` columns → their raw logit (sklearn's `decision_function`)."""

    model: treelite.Model
    n_inputs: int  # F + P
    known: Mapping[int, np.ndarray]  # categorical column → the categories seen in training (sorted)

    @classmethod
    def from_sklearn(cls, model: object, categorical: np.ndarray | None = None) -> TreeLogit:
        """From a fitted `HistGradientBoostingClassifier` (binary) and its (F + P,) categorical mask."""
        columns = np.flatnonzero(categorical) if categorical is not None else np.zeros(0, np.int64)
        known: dict[int, np.ndarray] = {}
        if columns.size:  # sklearn puts the categorical columns first, in their order (its _preprocessor)
            thresholds = model._bin_mapper.bin_thresholds_  # type: ignore[attr-defined]
            known = {int(c): np.asarray(thresholds[i], np.float64) for i, c in enumerate(columns)}
        return cls(treelite.sklearn.import_model(model), int(model.n_features_in_), known)  # type: ignore[attr-defined]

    def __call__(self, features: np.ndarray, profile: np.ndarray) -> np.ndarray:
        """(B,) float32 logits of B rows: features (B, F), profile ids (B, P)."""
        x = tree_inputs(features, profile)
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"the trees read {self.n_inputs} columns (features + profile ids), "
                             f"got {x.shape[1]}")
        for column, categories in self.known.items():
            values = x[:, column]
            unseen = unseen_categories(values, categories)
            if unseen.any():
                values[unseen] = np.nan
        margin = treelite.gtil.predict(self.model, x, pred_margin=True, nthread=1)
        return np.asarray(margin, np.float32).reshape(len(x))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to keep in the artefact (a safetensors file): the treelite model's bytes and, per
        categorical column, its known categories."""
        out = {"treelite": np.frombuffer(self.model.serialize_bytes(), dtype=np.uint8).copy(),
               "n_inputs": np.asarray([self.n_inputs], np.int64)}  # fmt: skip
        out |= {f"categories.{column}": categories for column, categories in self.known.items()}
        return out

    def __reduce__(self) -> tuple[object, tuple[dict[str, np.ndarray]]]:
        """Copied and pickled through its bytes (a treelite handle is not picklable)."""
        return TreeLogit.from_state_dict, (self.state_dict(),)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> TreeLogit:
        known = {int(name.split(".", 1)[1]): np.asarray(value, np.float64)
                 for name, value in state.items() if name.startswith("categories.")}  # fmt: skip
        model = treelite.Model.deserialize_bytes(np.asarray(state["treelite"], np.uint8).tobytes())
        return cls(model, int(np.asarray(state["n_inputs"])[0]), known)


def unseen_categories(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(B,) bool: which values are not among the sorted `known` categories (NaN never is).

    A binary search: `np.isin` (the reference, `unseen_categories_reference`) sorts both arrays on
    every call, 1.7 % of the worker's GIL time at full speed for a batch of a few hundred rows."""
    if known.size == 0:
        return np.ones(values.shape, dtype=bool)
    at = np.searchsorted(known, values).clip(max=known.size - 1)
    return known[at] != values


def unseen_categories_reference(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    return ~np.isin(values, known)


def fit_trees(x: np.ndarray, y: np.ndarray, rows: np.ndarray, val: np.ndarray, categorical: np.ndarray,
              seed: int) -> TreeLogit:  # fmt: skip
    """Trees fitted on `rows`, their iteration count chosen on `val` (`GBTBaseline`)."""
    gbt = GBTBaseline(GBTConfig(seed=seed), categorical).fit(x[rows], y[rows], x[val], y[val])
    return TreeLogit.from_sklearn(gbt.model, categorical)


def residual_base(features: np.ndarray, profile: np.ndarray, labels: np.ndarray, train: np.ndarray,
                  val: np.ndarray, seed: int = 0, folds: int = RESIDUAL_FOLDS,
                  on_fit: Callable[[], None] | None = None) -> tuple[np.ndarray, TreeLogit]:  # fmt: skip
    """(N,) float32 tree logits that no training event's own label shaped, and the trees to serve.

    The training period is cut into `folds` chronological blocks, each scored by trees fitted on the
    others; every other event (validation, test) by the trees fitted on the whole training period,
    which are the ones served. `features` (N, F), `profile` (N, P) per event, `labels` (N,) bool.
    `on_fit` is called after each of the `folds + 1` fits (minutes each at 12,000 users: a progress bar)."""
    done = on_fit or (lambda: None)
    x = tree_inputs(features, profile)
    categorical = categorical_columns(features.shape[1], profile[train])
    y = np.asarray(labels).astype(np.int64)
    if np.unique(y[train]).size < 2:
        raise ValueError("the residual head's trees need both frauds and legitimate events in the training "
                         "period")
    served = fit_trees(x, y, train, val, categorical, seed)
    done()
    column = served(features, profile)
    for fold in np.array_split(train, folds):
        others = np.setdiff1d(train, fold)
        if np.unique(y[others]).size < 2:  # e.g. every fraud in this block: trees would learn nothing
            positives = float(y[others].sum())
            column[fold] = np.log((positives + 0.5) / (len(others) - positives + 0.5))  # the prior's logit
        else:
            column[fold] = fit_trees(x, y, others, val, categorical, seed)(features[fold], profile[fold])
        done()
    return column, served
