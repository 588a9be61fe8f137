"""Running mean and variance (Welford), kept incrementally in per-user state.

Why Welford rather than sums of squares: the stream keeps μ/σ of a user's log-amounts and of their
predicted probabilities for months; the naive Σx² − (Σx)²/n loses all precision when the variance is
small next to the mean. `merge` (Chan et al.) makes the statistic order-insensitive, which is what lets an
out-of-order event update it as if it had arrived on time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple


class Running(NamedTuple):
    """Count, mean and M2 (sum of squared deviations) of a stream of floats.

    >>> r = Running().add(1.0).add(2.0).add(4.0)
    >>> round(r.mean, 6), round(r.variance, 6), r.n
    (2.333333, 1.555556, 3)
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> Running:
        n = self.n + 1
        delta = x - self.mean
        mean = self.mean + delta / n
        return Running(n, mean, self.m2 + delta * (x - mean))

    def merge(self, other: Running) -> Running:
        """The statistic of both streams together (Chan's parallel update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        return Running(n, mean, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def variance(self) -> float:
        """Population variance (divides by n); 0 for fewer than two values."""
        return self.m2 / self.n if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    @classmethod
    def of(cls, values: Iterable[float]) -> Running:
        out = cls()
        for value in values:
            out = out.add(float(value))
        return out
