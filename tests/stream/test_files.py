"""Canonical file reading: chunked, row-numbered errors, unknown columns ignored with one warning."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stream.errors import PantherError
from stream.events import Transaction, UserProfile
from stream.files import FileRowError, model_for, read_events


def _frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "txn_id": [f"t{i}" for i in range(n)],
            "user_id": [f"u{i % 2}" for i in range(n)],
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "amount": [1.5 * i for i in range(n)],
            "merchant_id": ["m1"] * n,
            "merchant_category": [None] + ["grocery"] * (n - 1),
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_reads_both_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"transactions{suffix}"
    frame = _frame()
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    events = [event for chunk in read_events(path) for event in chunk]
    assert [event.txn_id for event in events] == list(frame["txn_id"])
    assert events[0].merchant_category is None
    assert events[3].amount == 4.5
    assert isinstance(events[0], Transaction)


def test_bad_row_names_row_field_and_reason(tmp_path: Path) -> None:
    frame = _frame().astype({"amount": object})
    frame.loc[3, "amount"] = "-2"
    path = tmp_path / "transactions.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(FileRowError, match=r"row 4: field 'amount' = '-2': .*greater than or equal to 0"):
        list(read_events(path))


def test_unknown_columns_warn_once(tmp_path: Path) -> None:
    path = tmp_path / "transactions.parquet"
    _frame().assign(extra=1, other="x").to_parquet(path)
    with pytest.warns(UserWarning, match="ignoring unknown columns extra, other") as record:
        list(read_events(path))
    assert len(record) == 1


def test_profile_extras_become_attributes(tmp_path: Path) -> None:
    path = tmp_path / "profiles.parquet"
    pd.DataFrame({"user_id": ["u1"], "age": [30], "region": ["north"], "income_band": ["mid"]}).to_parquet(
        path
    )
    assert model_for(path) is UserProfile
    [[profile]] = list(read_events(path))
    assert profile.attributes == {"income_band": "mid"}


def test_missing_file_and_wrong_type_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PantherError, match="no such file"):
        list(read_events(tmp_path / "nope.parquet"))
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(PantherError, match="unsupported file type"):
        list(read_events(tmp_path / "t.json"))
