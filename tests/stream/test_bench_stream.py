"""The pieces of `panther bench stream` that need no broker (the end-to-end run is the benchmark itself)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from stream.bench_stream import cpu_seconds, make_runs, parse_rates, percentiles, state_lag
from stream.errors import PantherError


def test_rates_parse_numbers_and_max() -> None:
    assert parse_rates("500, 1000,max") == [500.0, 1000.0, None]
    with pytest.raises(PantherError, match="fast"):
        parse_rates("500,fast")


def test_percentiles_are_in_milliseconds() -> None:
    stats = percentiles([0.001 * i for i in range(1, 101)])  # 1 ms … 100 ms
    assert stats["p50_ms"] == pytest.approx(50.5, abs=0.1)
    assert stats["p99_ms"] == pytest.approx(99.0, abs=0.1)
    assert stats["max_ms"] == 100.0
    assert percentiles([]) == {}


def test_state_lag_counts_the_lagged_scores_and_how_far_they_lag() -> None:
    import doctest

    import stream.bench_stream

    assert doctest.testmod(stream.bench_stream).failed == 0
    assert state_lag([0, 0, 0]) == {"scores": 0, "max": 0, "mean": 0.0, "p99": 0.0}
    lags = [0] * 90 + [1] * 9 + [40]
    assert state_lag(lags) == {"scores": 10, "max": 40, "mean": 0.49, "p99": 1.39}
    assert state_lag([]) == {"scores": 0, "max": 0, "mean": 0.0, "p99": 0.0}


def test_cpu_seconds_counts_this_process_working() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.1


def test_each_run_gets_new_transactions(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame({
        "txn_id": [f"t{i}" for i in range(3)], "user_id": ["u1", "u2", "u1"],
        "timestamp": [start + timedelta(hours=i) for i in range(3)], "amount": [10.0, 20.0, 30.0],
        "merchant_id": ["m1", "m2", "m3"],
    })  # fmt: skip
    frame.to_parquet(tmp_path / "live.parquet")
    runs = make_runs(tmp_path / "live.parquet", [5, 5])
    assert [len(run) for run in runs] == [5, 5]
    ids = [t.txn_id for run in runs for t in run]
    assert len(set(ids)) == len(ids), "a replayed txn id would be skipped as a duplicate"
    assert all(t.timestamp > start for run in runs for t in run)
    longer = make_runs(tmp_path / "live.parquet", [8, 5, 5])  # a longer warm-up first
    assert [len(run) for run in longer] == [8, 5, 5]
    ids = [t.txn_id for run in longer for t in run]
    assert len(set(ids)) == len(ids)
    assert max(t.timestamp for t in longer[0]) < min(t.timestamp for t in longer[1]), "warm-up first in time"


def test_choices_are_checked_with_one_clear_line() -> None:
    from stream.bench_stream import parse_choices

    assert parse_choices("--delivery", "exactly_once, at_least_once", ("exactly_once", "at_least_once")) == (
        "exactly_once", "at_least_once")  # fmt: skip
    assert parse_choices("--processes", "1,2", None) == ("1", "2")
    with pytest.raises(PantherError, match="--processes: '0'"):
        parse_choices("--processes", "1,0", None)
    with pytest.raises(PantherError, match="--sizes: 'huge' is not one of demo, panther"):
        parse_choices("--sizes", "huge", ("demo", "panther"))


def test_the_watcher_takes_what_has_arrived_without_waiting_for_a_full_batch() -> None:
    from stream.bench_stream import consume_arrived

    class Consumer:  # librdkafka's consume(n, t) would wait t for n records: the watcher must not
        def __init__(self, queued: list[int]) -> None:
            self.queued, self.calls = queued, []

        def poll(self, timeout: float) -> int | None:
            self.calls.append(("poll", timeout))
            return self.queued.pop(0) if self.queued else None

        def consume(self, n: int, timeout: float) -> list[int]:
            self.calls.append(("consume", n, timeout))
            taken, self.queued = self.queued[:n], self.queued[n:]
            return taken

    consumer = Consumer([1, 2, 3])
    assert consume_arrived(consumer, 1000, 0.2) == [1, 2, 3]
    assert consumer.calls == [("poll", 0.2), ("consume", 999, 0)]
    assert consume_arrived(Consumer([]), 1000, 0.2) == []


def test_the_default_warm_up_fills_every_window(tmp_path: Path) -> None:
    """users × L: the PANTHER-size rows were measured on windows a tenth full before (BENCHMARKS)."""
    import json

    from stream.bench_stream import window_fill

    pd.DataFrame({"user_id": ["u1", "u2", "u1", "u3"]}).to_parquet(tmp_path / "live.parquet")
    (tmp_path / "config.json").write_text(json.dumps({"model": {"max_len": 100, "d_model": 64}}))
    assert window_fill(tmp_path / "live.parquet", tmp_path) == 300
