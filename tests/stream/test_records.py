"""Score records in bulk (`stream.records`) against the contract's model, their reference."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from stream.engine import Outcome, ScoreNumbers
from stream.events import Transaction, TransactionScore
from stream.records import json_time, score_records

TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(str.strip)
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-05, 1e16, 1e22, 5e-324, 0.30000000000000004, math.nan, -math.inf]),
)
STAMP = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC))


def _txn(txn_id: str, user_id: str, stamp: datetime) -> Transaction:
    return Transaction(txn_id=txn_id, user_id=user_id, timestamp=stamp, amount=1.0, merchant_id="m")


def _reference(outcome: Outcome) -> dict:
    """The record as the contract's model writes it (`TransactionScore.model_dump_json`)."""
    assert outcome.score is not None
    return json.loads(outcome.score.model_dump_json())


@given(
    st.lists(
        st.tuples(
            TEXT, TEXT, STAMP, st.floats(0, 1), NUMBER, NUMBER, NUMBER, st.booleans(), st.integers(0, 10**6)
        ),
        min_size=1,
        max_size=8,
    ),
    st.booleans(),
    STAMP,
    TEXT,
)
def test_bulk_records_parse_to_the_models_records_key_for_key(rows, degraded, processed_at, model) -> None:
    outcomes = [
        Outcome(
            _txn(tid, uid, stamp).model_copy(),
            ScoreNumbers(score, dev, dev_log, surprise, alerted, lag),
            None,
            model,
            degraded,
            processed_at,
        )
        for tid, uid, stamp, score, dev, dev_log, surprise, alerted, lag in rows
    ]
    fast = [json.loads(record) for record in score_records(outcomes)]
    reference = [_reference(outcome) for outcome in outcomes]
    assert fast == reference
    assert [list(record) for record in fast] == [list(record) for record in reference]  # the same key order


def test_a_batch_of_two_engine_calls_keeps_each_calls_constants() -> None:
    """The worker's batch may be scored in two calls (users waiting on a refresh): each call's own
    processed_at and degraded flag go with its records."""
    first, second = (
        datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
    )
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = [
        Outcome(_txn("t1", "u1", stamp), ScoreNumbers(0.1, 0.0, 0.0, 1.0, False, 0), None, "m", False, first),
        Outcome(_txn("t2", "u2", stamp), ScoreNumbers(0.9, 1.0, 2.0, 3.0, True, 2), None, "m", True, second),
    ]
    records = [json.loads(record) for record in score_records(outcomes)]
    assert [(r["processed_at"], r["degraded"]) for r in records] == [
        ("2026-01-02T03:04:05.120000Z", False),
        ("2026-01-02T03:04:06Z", True),
    ]
    assert records == [_reference(outcome) for outcome in outcomes]


def test_non_finite_numbers_are_null_as_pydantic_writes_them() -> None:
    outcome = Outcome(_txn("t", "u", datetime(2026, 1, 1, tzinfo=UTC)),
                      ScoreNumbers(0.5, math.nan, math.inf, -math.inf, False, 0), None, "m", False,
                      datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    record = json.loads(score_records([outcome])[0])
    assert (record["deviation"], record["deviation_log"], record["surprise"]) == (None, None, None)
    assert record == _reference(outcome)


def test_times_are_written_in_utc_as_pydantic_writes_them() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    for stamp in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=east)):
        reference = TransactionScore(txn_id="t", user_id="u", event_time=stamp, score=0.5, deviation=0.0,
                                     surprise=0.0, model_version="m", processed_at=stamp)  # fmt: skip
        written = json.loads(reference.model_dump_json())["event_time"]
        assert datetime.fromisoformat(json_time(stamp)) == datetime.fromisoformat(written) == stamp
        if stamp.tzinfo is UTC:
            assert json_time(stamp) == written


def test_the_score_object_is_built_on_first_use_and_a_duplicate_has_none() -> None:
    txn = _txn("t", "u", datetime(2026, 1, 1, tzinfo=UTC))
    outcome = Outcome(txn, ScoreNumbers(0.5, 0.1, 0.2, 0.3, False, 1), None, "m", True,
                      datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert outcome.score is outcome.score  # built once
    assert (outcome.score.state_lag, outcome.score.degraded, outcome.duplicate) == (1, True, False)
    duplicate = Outcome(txn, None)
    assert duplicate.duplicate and duplicate.score is None
