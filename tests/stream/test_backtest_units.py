"""Backtest pieces without a broker: range arithmetic, option parsing, model labels, drift measures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from stream.backtest.config import (
    BacktestConfig,
    ModelSpec,
    TimeRange,
    epoch_ms,
    parse_duration_ms,
    parse_rate,
    parse_time_ms,
)
from stream.backtest.drift import UNK_ID, TokenCounts, js_divergence, psi
from stream.errors import PantherError


def test_both_ends_are_included_and_warm_up_precedes_t0() -> None:
    tr = TimeRange(start_ms=10_000, end_ms=20_000, lookback_ms=5_000)
    assert [tr.phase(t) for t in (4_999, 5_000, 9_999, 10_000, 20_000, 20_001)] == [
        None, "warm", "warm", "score", "score", None,
    ]  # fmt: skip
    assert TimeRange(1_000, 2_000, lookback_ms=10**9).warm_start_ms == 0


def test_times_durations_and_rates_parse_or_fail_clearly() -> None:
    assert parse_time_ms("2026-01-05", "--start") == epoch_ms(datetime(2026, 1, 5, tzinfo=UTC))
    assert parse_time_ms("2026-01-05T01:00:00+01:00", "--start") == parse_time_ms("2026-01-05", "--start")
    assert parse_time_ms("1767571200123", "--end") == 1_767_571_200_123
    assert epoch_ms(datetime(2026, 1, 5, 0, 0, 0, 999_999, tzinfo=UTC)) % 1000 == 999  # floor, no float drift
    assert [parse_duration_ms(x) for x in ("7d", "12h", "30m", "90", "250ms", "2w")] == [
        604_800_000, 43_200_000, 1_800_000, 90_000, 250, 1_209_600_000,
    ]  # fmt: skip
    assert parse_rate("1%") == pytest.approx(0.01) and parse_rate("0.05") == 0.05
    for bad in (lambda: parse_time_ms("soon", "--start"), lambda: parse_duration_ms("a week"),
                lambda: parse_rate("0"), lambda: TimeRange(2, 1)):  # fmt: skip
        with pytest.raises(PantherError):
            bad()


def test_model_labels_are_unique_and_options_are_checked(tmp_path: Path) -> None:
    (tmp_path / "a" / "m").mkdir(parents=True)
    (tmp_path / "b" / "m").mkdir(parents=True)
    specs = ModelSpec.parse_all((str(tmp_path / "a" / "m"), str(tmp_path / "b" / "m")))
    assert [s.label for s in specs] == ["m#1", "m#2"]
    assert ModelSpec.parse_all((f"champion={tmp_path / 'a' / 'm'}",))[0].label == "champion"
    tr = TimeRange(0, 1)
    with pytest.raises(PantherError, match="not both"):
        BacktestConfig("t", tr, specs, tmp_path, threshold=0.5, alert_rate=0.01)
    with pytest.raises(PantherError, match="one model"):
        BacktestConfig("t", tr, specs, tmp_path, scorer="triton")


def test_drift_measures() -> None:
    p = np.array([0.0, 0.1, 0.6, 0.3])
    assert psi(p, p) == pytest.approx(0.0, abs=1e-9) and js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    q = np.array([0.0, 0.5, 0.3, 0.2])
    assert psi(p, q) > 0.1 and 0 < js_divergence(p, q) < 1
    counts = TokenCounts(4)
    counts.add(np.array([1, 1, 2, 3, 99]))  # out-of-vocabulary ids are ignored, not crashed on
    assert counts.counts.tolist() == [0, 2, 1, 1]


def test_unk_id_matches_the_models() -> None:
    from models.batch import UNK_ID as MODEL_UNK_ID

    assert UNK_ID == MODEL_UNK_ID
