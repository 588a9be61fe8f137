"""Profile schema: ids per field (0 = missing/unseen), numeric buckets, demographics, round trip."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import models.profile_schema
from models.profile_schema import ProfileSchema


def profiles() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "age": [1, 18, 25, 25, None],  # coded ages (few distinct values) stay exact
            "gender": ["F", "M", None, "M", "F"],
            "region": ["EU", "US", "US", "", "APAC"],
            "occupation": ["10", "16", "15", "10", "0"],
            "account_age_days": [5, 50, 500, 5000, 50000],
        }
    )


def test_doctests() -> None:
    assert doctest.testmod(models.profile_schema).failed == 0


def test_fit_and_encode_ids_and_cardinalities() -> None:
    schema = ProfileSchema.fit(profiles(), numeric_buckets=2, max_exact=3)
    assert schema.field_names == ["age", "gender", "region", "occupation", "account_age_days"]
    ids, demo = schema.encode(profiles())
    assert ids.dtype == np.int64 and ids.shape == (5, 5)
    assert ids[:, 0].tolist() == [1, 2, 3, 3, 0]  # exact levels 1, 18, 25; missing → 0
    assert ids[:, 1].tolist() == [1, 2, 0, 2, 1]  # F, M by name; None → 0
    assert ids[:, 2].tolist() == [2, 3, 3, 0, 1]  # APAC, EU, US; "" → missing
    assert schema.cardinalities[:4] == [4, 3, 4, 5]  # occupation: 0, 10, 15, 16
    assert ids[:, 4].tolist() == [1, 1, 2, 2, 2]  # 2 quantile buckets, median edge 500
    assert demo.dtype == np.float32 and demo.shape == (5, 2)
    assert np.array_equal(demo[:, 0], np.array([1, 18, 25, 25, np.nan], np.float32), equal_nan=True)
    assert np.array_equal(demo[:, 1], np.array([2, 3, 3, np.nan, 1], np.float32), equal_nan=True)
    assert schema.demographic_kinds == ["numeric", "categorical"]


def test_unseen_and_absent_values_map_to_zero() -> None:
    schema = ProfileSchema.fit(profiles())
    new = pd.DataFrame({"user_id": ["x"], "gender": ["X"], "region": ["MARS"]})  # no age, occupation...
    ids, demo = schema.encode(new)
    assert ids.tolist() == [[0, 0, 0, 0, 0]] and np.isnan(demo).all()


def test_max_levels_keeps_the_most_frequent() -> None:
    schema = ProfileSchema.fit(profiles(), fields=("occupation",), demographic=(), max_levels=1)
    assert schema.fields[0].levels == ("10",)
    assert schema.encode(profiles())[0][:, 0].tolist() == [1, 0, 0, 1, 0]


def test_index_of_users_with_duplicates_and_other_frames() -> None:
    frame = pd.concat([profiles(), profiles().head(1).assign(age=99)], ignore_index=True)
    schema = ProfileSchema.fit(frame)
    assert schema.index_of(["u3", "u1", "nobody"]).tolist() == [2, 0, -1]  # duplicate u1 → first row
    other = profiles().iloc[::-1].reset_index(drop=True)
    assert schema.index_of(np.array(["u5", "u1"]), profiles=other).tolist() == [0, 4]
    loaded = ProfileSchema.from_dict(schema.to_dict())
    with pytest.raises(ValueError, match="needs a profiles frame"):
        loaded.index_of(["u1"])


def test_round_trip_encodes_identically_and_hash_is_stable() -> None:
    schema = ProfileSchema.fit(profiles())
    loaded = ProfileSchema.from_dict(schema.to_dict())
    assert loaded == schema
    for a, b in zip(schema.encode(profiles()), loaded.encode(profiles()), strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    assert schema.to_dict()["content_hash"] == ProfileSchema.fit(profiles()).to_dict()["content_hash"]
    with pytest.raises(ValueError, match="not supported"):
        ProfileSchema.from_dict({**schema.to_dict(), "version": "0"})


def test_demographic_must_be_a_profile_field() -> None:
    with pytest.raises(ValueError, match="must also be profile fields"):
        ProfileSchema.fit(profiles(), fields=("gender",), demographic=("age",))
