"""Structured tokenizer: names, reserved ids, top-K with ties, coverage/UNK arithmetic, missing values,
risk levels, amount buckets, chunked fit, determinism and the JSON format."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models.tokenizer.amount
import models.tokenizer.levels
import models.tokenizer.risk
import models.tokenizer.structured
from models.tokenizer import (
    FIRST_TOKEN_ID,
    MISSING,
    PAD_ID,
    RESERVED_TOKENS,
    UNK_ID,
    StructuredTokenizer,
    TokenizerConfig,
    TokenizerFormatError,
)
from models.tokenizer.amount import GRID, bucket_labels, quantile_edges


def transactions(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    merchant = rng.integers(0, 40, n)
    return pd.DataFrame(
        {
            "txn_id": [f"t{i}" for i in range(n)],
            "user_id": rng.integers(0, 20, n).astype(str),
            "channel": rng.choice(["online", "card_present", "qr"], n),
            "amount": np.round(np.exp(rng.normal(3.0, 1.2, n)), 2),
            "merchant_id": [f"m{m}" for m in merchant],
            "merchant_category": np.array(["grocery", "fuel", "travel", "games"])[merchant % 4],
            "is_fraud": (merchant == 7) | (rng.random(n) < 0.02),
        }
    )


@pytest.mark.parametrize(
    "module",
    [models.tokenizer.amount, models.tokenizer.levels, models.tokenizer.risk, models.tokenizer.structured],
)
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0


def test_names_reserved_ids_and_encode_range() -> None:
    frame = transactions()
    tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=4))
    names = tok.token_names
    assert names[:FIRST_TOKEN_ID] == list(RESERVED_TOKENS) == ["[PAD]", "[UNK]", "[MASK]", "[PROFILE]"]
    assert len(names) == tok.vocab_size == FIRST_TOKEN_ID + tok.fit_stats["kept"]
    parts = names[FIRST_TOKEN_ID].split("|")
    assert parts[0] in {"online", "card_present", "qr"} and parts[1].startswith("$")
    assert parts[2] in {"grocery", "fuel", "travel", "games"} and parts[3] in {"low", "medium", "high"}
    ids = tok.encode(frame)
    assert ids.dtype == np.int64 and ids.shape == (len(frame),)
    assert (ids != PAD_ID).all() and ids.min() >= UNK_ID and ids.max() < tok.vocab_size
    assert tok.decode(ids[:3]) == [names[i] for i in ids[:3]]


def test_top_k_keeps_most_frequent_with_name_tie_break_and_coverage_arithmetic() -> None:
    config = TokenizerConfig.for_items("item", top_k=2)
    train = pd.DataFrame({"item": ["a", "a", "a", "c", "c", "b", "b", "d"]})
    tok = StructuredTokenizer.fit(train, config)
    assert tok.token_names[FIRST_TOKEN_ID:] == ["a", "b"]  # b and c tie at 2: name order decides
    assert tok.token_counts.tolist() == [3, 2]
    assert tok.counts.tolist() == [0, 3, 0, 0, 3, 2]  # UNK holds the 3 uncovered rows (c, c, d)
    assert tok.fit_stats == {
        "transactions": 8,
        "distinct_raw": 4,
        "kept": 2,
        "covered": 5 / 8,
        "unk_rate": 3 / 8,
        "risk_source": None,
    }
    assert tok.encode(train).tolist() == [4, 4, 4, UNK_ID, UNK_ID, 5, 5, UNK_ID]
    test = pd.DataFrame({"item": ["a", "b", "z", "z", None]})
    report = tok.coverage(test)
    assert report["transactions"] == 5
    assert report["covered"] == pytest.approx(2 / 5) and report["unk_rate"] == pytest.approx(3 / 5)
    assert report["distinct_raw"] == 4  # a, b, z, ∅
    assert report["unseen_level_rate"] == {"item": pytest.approx(3 / 5)}
    assert tok.coverage(train)["covered"] == pytest.approx(tok.fit_stats["covered"])


def test_top_k_tie_break_does_not_depend_on_row_order() -> None:
    config = TokenizerConfig.for_items("item", top_k=3)
    items = ["x", "y", "z", "w", "v"] * 2
    one = StructuredTokenizer.fit(pd.DataFrame({"item": items}), config)
    two = StructuredTokenizer.fit(pd.DataFrame({"item": items[::-1]}), config)
    assert one.token_names[FIRST_TOKEN_ID:] == ["v", "w", "x"]
    assert one.to_json_bytes() == two.to_json_bytes()


def test_missing_values_get_the_missing_level_and_never_crash() -> None:
    frame = pd.DataFrame(
        {
            "channel": ["online", None, np.nan, ""],
            "amount": [10.0, np.nan, -5.0, 20.0],
            "merchant_category": [None, "fuel", "fuel", "fuel"],
            "merchant_risk": ["LOW", "high", None, "low"],
        }
    )
    tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=2))
    names = tok.decode(tok.encode(frame))
    assert names[0].startswith("online|") and names[0].endswith(f"|{MISSING}|low")  # risk lower-cased
    assert names[1] == f"{MISSING}|{MISSING}|fuel|high"  # NaN amount → ∅
    assert names[2] == f"{MISSING}|{MISSING}|fuel|{MISSING}"  # negative amount → ∅
    assert names[3].startswith(f"{MISSING}|$")
    # a frame without the channel and risk columns: absent columns read as all-missing
    bare = pd.DataFrame({"amount": [10.0], "merchant_category": [None]})
    assert tok.decode(tok.encode(bare)) == ["[UNK]"]
    assert tok.encode(pd.DataFrame()).shape == (0,)


def test_risk_from_column_when_present() -> None:
    frame = transactions().assign(merchant_risk="Medium")
    tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=2))
    assert tok.fit_stats["risk_source"] == "column"
    assert {name.split("|")[3] for name in tok.token_names[FIRST_TOKEN_ID:]} == {"medium"}


def test_risk_derived_from_smoothed_fraud_rate() -> None:
    frame = transactions(n=2000)
    tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=2, risk_prior_strength=10.0))
    risk = tok.fields[3]
    assert risk.source == "derived" and risk.entity == "merchant_id"
    assert risk.risky.get("m7") == "high"  # every transaction of m7 is fraud
    levels = pd.Series(tok.decode(tok.encode(frame))).str.split("|").str[3]
    assert set(levels[frame["merchant_id"] == "m7"]) == {"high"}
    # an unseen merchant has the prior (global) rate → low; a missing merchant → ∅
    new = frame.head(2).assign(merchant_id=["never-seen", None])
    assert risk.raw_levels(new).tolist() == ["low", MISSING]
    assert risk.codes(new).tolist()[0] == risk.levels.index("low")


def test_smoothing_shrinks_small_merchants_toward_the_global_rate() -> None:
    base = pd.DataFrame({"merchant_id": [f"m{i % 50}" for i in range(5000)], "is_fraud": False})
    one_off = pd.DataFrame({"merchant_id": ["tiny"], "is_fraud": [True]})
    frame = pd.concat([base, one_off, one_off.assign(merchant_id="big")], ignore_index=True)
    frame.loc[frame.index[:100], "is_fraud"] = True  # m0..m49 share 100 frauds: the global rate ≈ 2%
    frame = pd.concat(
        [frame, pd.DataFrame({"merchant_id": ["big"] * 60, "is_fraud": True})], ignore_index=True
    )
    config = TokenizerConfig(
        contextual=(), counterparty=("merchant_risk",), numeric=(), risk_prior_strength=50.0
    )
    risky = StructuredTokenizer.fit(frame, config).fields[0].risky
    assert risky.get("big") == "high"  # 61 of 61 transactions
    assert "tiny" not in risky  # 1 of 1: (1 + 50p)/(1 + 50) ≈ 0.04 ≈ 2p → low
    without = StructuredTokenizer.fit(
        frame, TokenizerConfig(**{**config.__dict__, "risk_prior_strength": 0.0})
    )
    assert without.fields[0].risky.get("tiny") == "high"


def test_no_labels_means_unknown_risk() -> None:
    frame = transactions().drop(columns=["is_fraud"])
    tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=2))
    assert tok.fit_stats["risk_source"] == "none"
    assert {name.split("|")[3] for name in tok.decode(tok.encode(frame))} == {"unknown"}
    unlabelled = transactions().assign(is_fraud=None)
    assert StructuredTokenizer.fit(unlabelled, TokenizerConfig(amount_buckets=2)).fields[3].source == "none"


def test_amount_edges_are_log_quantiles_on_round_numbers() -> None:
    amounts = np.exp(np.random.default_rng(3).normal(3.5, 1.5, 20_000))
    histogram = np.zeros(len(GRID) + 2, dtype=np.int64)
    np.add.at(histogram, np.searchsorted(GRID, amounts, side="right"), 1)
    edges = quantile_edges(histogram, 4)
    assert len(edges) == 3 and np.all(np.diff(edges) > 0) and np.isin(edges, GRID).all()
    shares = np.bincount(np.searchsorted(edges, amounts, side="right"), minlength=4) / len(amounts)
    assert np.allclose(shares, 0.25, atol=0.03)
    assert bucket_labels(np.array([0.5, 50.0, 1200.0])) == ["$<0.5", "$0.5-50", "$50-1.2k", "$≥1.2k"]
    # a point mass collapses duplicate edges: fewer buckets, never empty ones
    point = np.zeros_like(histogram)
    point[np.searchsorted(GRID, 9.99, side="right")] = 100
    assert len(quantile_edges(point, 16)) == 0


def test_chunked_fit_equals_whole_fit_and_is_order_independent() -> None:
    frame = transactions(n=600)
    config = TokenizerConfig(amount_buckets=6, top_k=30)
    whole = StructuredTokenizer.fit(frame, config)
    chunks = StructuredTokenizer.fit((frame.iloc[i : i + 70] for i in range(0, len(frame), 70)), config)
    backwards = StructuredTokenizer.fit([frame.iloc[300:], frame.iloc[:300]], config)
    assert whole.to_json_bytes() == chunks.to_json_bytes() == backwards.to_json_bytes()
    assert chunks.fit_stats["transactions"] == 600 and chunks.fit_stats["kept"] == 30


def test_fit_rejects_non_frames() -> None:
    with pytest.raises(TypeError, match="chunk 1 is a list"):
        StructuredTokenizer.fit([transactions(10), [1, 2]])


def test_save_load_round_trip_is_byte_identical_and_hash_stable(tmp_path) -> None:
    frame = transactions()
    tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=5))
    path = tok.save(tmp_path / "tokenizer.json")
    again = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=5)).save(tmp_path / "again.json")
    assert path.read_bytes() == again.read_bytes()
    loaded = StructuredTokenizer.load(path)
    assert loaded.to_json_bytes() == path.read_bytes()
    assert loaded.content_hash == tok.content_hash and len(tok.content_hash) == 64
    assert loaded.version == "1"
    assert np.array_equal(loaded.encode(frame), tok.encode(frame))
    data = json.loads(path.read_text("utf-8"))
    assert (
        data["format"] == "panther-tokenizer" and data["tokens"]["names"] == tok.token_names[FIRST_TOKEN_ID:]
    )


def test_load_refuses_edited_or_foreign_files(tmp_path) -> None:
    tok = StructuredTokenizer.fit(transactions(), TokenizerConfig(amount_buckets=3))
    data = tok.to_dict()
    edited = json.loads(json.dumps(data))
    edited["tokens"]["counts"][0] += 1
    with pytest.raises(TokenizerFormatError, match="content hash mismatch"):
        StructuredTokenizer.from_dict(edited)
    with pytest.raises(TokenizerFormatError, match="version '9' is not supported"):
        StructuredTokenizer.from_dict({**data, "version": "9"})
    with pytest.raises(TokenizerFormatError, match="not a PANTHER tokenizer"):
        StructuredTokenizer.from_dict({"format": "bpe"})
    (tmp_path / "bad.json").write_text("{", "utf-8")
    with pytest.raises(TokenizerFormatError, match="cannot read tokenizer"):
        StructuredTokenizer.load(tmp_path / "bad.json")


def test_item_config_fits_movielens_ids() -> None:
    frame = pd.DataFrame({"item_id": [10, 20, 10, 30, np.nan]})
    tok = StructuredTokenizer.fit(frame, TokenizerConfig.for_items("item_id"))
    assert tok.token_names[FIRST_TOKEN_ID:] == ["10", "20", "30", MISSING]
    assert tok.encode(pd.DataFrame({"item_id": ["20", "99"]})).tolist() == [5, UNK_ID]


def test_config_validation_and_round_trip() -> None:
    config = TokenizerConfig(amount_buckets=8, top_k=100)
    assert TokenizerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="duplicate"):
        TokenizerConfig(contextual=("a",), counterparty=("a",), numeric=(), risk_field=None)
    with pytest.raises(ValueError, match="top_k"):
        TokenizerConfig(top_k=0)
    with pytest.raises(ValueError, match="unknown tokenizer config keys"):
        TokenizerConfig.from_dict({"bogus": 1})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["online", "qr", None]),
            st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
            st.sampled_from(["fuel", "grocery", None]),
            st.sampled_from(["m1", "m2", "m3", None]),
            st.sampled_from([True, False, None]),
        ),
        min_size=1,
        max_size=60,
    ),
    split=st.integers(0, 60),
    top_k=st.integers(1, 20),
)
def test_property_chunking_never_changes_the_tokenizer(rows, split, top_k) -> None:
    frame = pd.DataFrame(rows, columns=["channel", "amount", "merchant_category", "merchant_id", "is_fraud"])
    config = TokenizerConfig(amount_buckets=4, top_k=top_k)
    whole = StructuredTokenizer.fit(frame, config)
    parts = StructuredTokenizer.fit([frame.iloc[:split], frame.iloc[split:]], config)
    assert whole.to_json_bytes() == parts.to_json_bytes()
    ids = whole.encode(frame)
    assert ids.min() >= UNK_ID and ids.max() < whole.vocab_size
    assert whole.vocab_size <= FIRST_TOKEN_ID + top_k
    covered = (ids != UNK_ID).mean()
    assert covered == pytest.approx(whole.fit_stats["covered"])


_TEXT = st.one_of(st.none(), st.sampled_from(["online", " qr ", "card_present", "", "grocery", "fuel", "m7",
                                              "m1", "Medium", "HIGH", "low", "never-seen", "games"]))
_AMOUNT = st.one_of(st.none(), st.sampled_from([0.0, -1.0, float("nan"), float("inf")]),
                    st.floats(0.0, 1e6, allow_nan=False), st.integers(0, 10_000))  # fmt: skip


@pytest.mark.parametrize("risk", ["column", "derived", "none"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_TEXT, _AMOUNT, _TEXT, _TEXT, _TEXT), min_size=0, max_size=30))
def test_encode_columns_equals_encode_on_a_frame_of_the_same_values(risk: str, rows: list[tuple]) -> None:
    """The stream's frame-free encoder (per-value memos) against the vectorised frame path."""
    train = transactions(n=2000)
    if risk == "column":
        train = train.assign(merchant_risk=np.array(["low", "Medium", "high"])[np.arange(2000) % 3])
    elif risk == "none":
        train = train.drop(columns=["is_fraud"])
    tok = StructuredTokenizer.fit(train, TokenizerConfig(amount_buckets=4, risk_prior_strength=10.0))
    assert tok.fit_stats["risk_source"] == risk
    names = ("channel", "amount", "merchant_category", "merchant_risk", "merchant_id")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})
    expected = tok.encode(frame).tolist()
    assert tok.encode_columns(columns, len(rows)).tolist() == expected
    assert tok.encode_columns(columns, len(rows)).tolist() == expected  # again, from the memos
    bare = {"amount": columns["amount"]}  # absent columns read as missing, as in a frame without them
    assert tok.encode_columns(bare, len(rows)).tolist() == tok.encode(frame[["amount"]]).tolist()
