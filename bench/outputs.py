"""A batch's score records: one pydantic model per event (the reference) against the bulk encoder.

    python bench/outputs.py [--events 20000] [--json]

The reference is what the worker did per scored event until 2026-12-08: build a `TransactionScore`
(validated) and `model_dump_json` it. The bulk path is `stream.records.score_records` over the
engine's `Outcome`s (numbers only). Times are µs per event, best of `--rounds`, on synthetic events
of the contract's shape (ids, a timestamp with milliseconds, non-trivial floats).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import click

from stream.cli import emit
from stream.engine import Outcome, ScoreNumbers
from stream.events import Transaction
from stream.records import score_records


def outcomes(events: int) -> list[Outcome]:
    start, now = datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC)
    out = []
    for i in range(events):
        txn = Transaction(txn_id=f"t{i:09d}", user_id=f"u{i % 1000:06d}", amount=12.5, merchant_id="m1",
                          timestamp=start + timedelta(milliseconds=1337 * i))  # fmt: skip
        numbers = ScoreNumbers(i / events, 0.1 * i, -0.01 * i, 3.7 + i, i % 100 == 0, i % 3)
        out.append(Outcome(txn, numbers, None, "panther-b64a1322", False, now))
    return out


def best_of(rounds: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


@click.command()
@click.option("--events", default=20_000, show_default=True)
@click.option("--rounds", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(events: int, rounds: int, as_json: bool) -> None:
    batch = outcomes(events)

    def reference() -> list[bytes]:
        fresh = [Outcome(o.txn, o.numbers, None, o.model_version, o.degraded, o.processed_at) for o in batch]
        return [o.score.to_json_bytes() for o in fresh]  # type: ignore[union-attr]

    assert [json.loads(r) for r in reference()] == [json.loads(r) for r in score_records(batch)]
    result = {
        "events": events,
        "reference_us_per_event": round(best_of(rounds, reference) / events * 1e6, 2),
        "bulk_us_per_event": round(best_of(rounds, lambda: score_records(batch)) / events * 1e6, 2),
    }
    emit(result, as_json)


if __name__ == "__main__":
    main()
