"""Welford statistics: incremental equals batch; merge equals concatenation (order-insensitive)."""

from __future__ import annotations

import doctest

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import models.fraud.running
from models.fraud.running import Running

floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


def test_doctests() -> None:
    assert doctest.testmod(models.fraud.running).failed == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=0, max_size=40))
def test_incremental_equals_batch(values: list[float]) -> None:
    r = Running.of(values)
    assert r.n == len(values)
    if values:
        np.testing.assert_allclose(r.mean, np.mean(values), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(r.std, np.std(values), rtol=1e-7, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, max_size=20), st.lists(floats, max_size=20))
def test_merge_equals_concatenation(a: list[float], b: list[float]) -> None:
    merged, whole = Running.of(a).merge(Running.of(b)), Running.of(a + b)
    assert merged.n == whole.n
    np.testing.assert_allclose([merged.mean, merged.std], [whole.mean, whole.std], rtol=1e-7, atol=1e-7)
