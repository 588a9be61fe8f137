"""Merchant risk level derived from training labels when the data carries none.

Why additive (empirical-Bayes style) smoothing: a merchant seen once with one fraud would otherwise
be "100% fraud". Each merchant's rate is shrunk toward the global rate p with `strength`
pseudo-transactions: r_m = (fraud_m + strength·p) / (n_m + strength), and bucketed by the ratio r_m / p
(default ≤ 2 low, ≤ 5 medium, > 5 high). A merchant never seen in training gets r = p, i.e. "low",
so only the medium/high merchants need to be stored. Without any labels every merchant is "unknown".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOW, MEDIUM, HIGH, UNKNOWN = "low", "medium", "high", "unknown"
RISK_ORDER: tuple[str, ...] = (LOW, MEDIUM, HIGH, UNKNOWN)


class RiskCounter:
    """Per-merchant (transactions, frauds) counts accumulated chunk by chunk over merchant codes."""

    def __init__(self) -> None:
        self.n = np.zeros(0, dtype=np.int64)
        self.fraud = np.zeros(0, dtype=np.int64)

    def add(self, merchant: np.ndarray, label: np.ndarray) -> None:
        """merchant (N,) int64 codes; label (N,) float64 in {0, 1} or NaN (unlabelled rows are skipped)."""
        labelled = ~np.isnan(label)
        size = max(len(self.n), int(merchant.max()) + 1 if len(merchant) else 0)
        n = np.bincount(merchant[labelled], minlength=size)
        fraud = np.bincount(merchant[labelled], weights=label[labelled], minlength=size).astype(np.int64)
        self.n = np.pad(self.n, (0, size - len(self.n))) + n
        self.fraud = np.pad(self.fraud, (0, size - len(self.fraud))) + fraud

    def levels(self, strength: float, thresholds: tuple[float, float], size: int) -> list[str]:
        """Risk level per merchant code 0..size-1.

        >>> c = RiskCounter(); c.add(np.array([0, 0, 1, 1] * 50), np.array([0.0, 0.0, 1.0, 0.0] * 50))
        >>> c.levels(strength=10.0, thresholds=(1.5, 3.0), size=3)
        ['low', 'medium', 'low']
        """
        n = np.pad(self.n, (0, max(0, size - len(self.n))))[:size].astype(np.float64)
        fraud = np.pad(self.fraud, (0, max(0, size - len(self.fraud))))[:size].astype(np.float64)
        total = n.sum()
        if total == 0:
            return [UNKNOWN] * size
        prior = fraud.sum() / total
        if prior == 0:
            return [LOW] * size
        rate = (fraud + strength * prior) / np.maximum(n + strength, 1e-12)
        ratio = np.where(n > 0, rate, prior) / prior
        names = np.array([LOW, MEDIUM, HIGH], dtype=object)
        return names[np.searchsorted(np.asarray(thresholds), ratio, side="left")].tolist()


def as_labels(values: object) -> np.ndarray:
    """Fraud labels (bool / 0-1 / None / NaN / 'true') → (N,) float64 in {0, 1} or NaN."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if series.dtype == object or str(series.dtype).startswith(("string", "str")):
        lowered = series.astype("string").str.strip().str.lower()
        mapped = lowered.map({"true": 1.0, "1": 1.0, "1.0": 1.0, "false": 0.0, "0": 0.0, "0.0": 0.0})
        return pd.to_numeric(mapped, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    numeric = pd.to_numeric(series.astype("Float64"), errors="coerce")
    out = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(out), np.nan, (out > 0).astype(np.float64))
