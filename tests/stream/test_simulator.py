"""The payment simulator: contract, determinism, fraud signatures, and learnable structure in the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stream.events import Transaction, UserProfile
from stream.simulator import SCENARIOS, TXN_COLUMNS, SimulatorConfig, simulate, write_dataset

SMALL = SimulatorConfig(users=500, days=14, seed=1)
CHANNELS = {"card_present", "contactless", "qr", "online", "transfer", "atm"}


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def month() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long enough for monthly bills to recur and for similar users to show similar histories."""
    return simulate(SimulatorConfig(users=1500, days=45, seed=2))


def _fraud(txns: pd.DataFrame, scenario: str) -> pd.DataFrame:
    return txns[txns.fraud_scenario == scenario]


def test_schema_and_dtypes(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, profiles = small
    assert list(txns.columns) == list(TXN_COLUMNS)
    assert isinstance(txns.timestamp.dtype, pd.DatetimeTZDtype) and str(txns.timestamp.dt.tz) == "UTC"
    assert txns.amount.dtype == np.float64 and txns.is_fraud.dtype == bool
    assert txns.txn_id.is_unique and txns.txn_id.str.match(r"^t\d{9}$").all()
    assert txns.user_id.str.match(r"^u\d{6}$").all() and txns.merchant_id.str.match(r"^m\d{5}$").all()
    assert set(txns.channel) <= CHANNELS
    assert set(txns.merchant_risk) == {"low", "medium", "high"}
    assert (txns.currency == "USD").all()
    for column in ("user_id", "merchant_id", "merchant_category", "channel", "country", "city", "device_id"):
        assert txns[column].notna().all(), column
    assert txns.fraud_scenario[~txns.is_fraud].isna().all()
    opt_in = {"routine_replay", "new_account_takeover"}
    assert set(txns.fraud_scenario[txns.is_fraud]) == set(SCENARIOS) - opt_in
    assert set(txns.user_id) <= set(profiles.user_id) and profiles.user_id.is_unique and len(profiles) == 500
    for column in ("age", "account_age_days"):
        assert profiles[column].dtype == np.int64
    assert {"gender", "region", "occupation", "income_band"} <= set(profiles.columns)


def test_rows_satisfy_the_event_contract(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, profiles = small
    sample = pd.concat([txns.sample(200, random_state=0), txns[txns.is_fraud].head(50)])
    for record in sample.to_dict("records"):
        record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
        Transaction.model_validate(record)
    for record in profiles.head(50).to_dict("records"):
        UserProfile.model_validate(record)


def test_same_seed_same_frames_other_seed_differs(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    again = simulate(SimulatorConfig(users=500, days=14, seed=1))
    pd.testing.assert_frame_equal(small[0], again[0])
    pd.testing.assert_frame_equal(small[1], again[1])
    other = simulate(SimulatorConfig(users=500, days=14, seed=2))[0]
    assert len(other) != len(small[0]) or not other.amount.equals(small[0].amount)


def test_fraud_rate_only_adds_fraud(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Legitimate activity comes from its own random stream: changing the fraud rate leaves it untouched."""
    more = simulate(SimulatorConfig(users=500, days=14, seed=1, fraud_rate=0.03))[0]
    cols = ["user_id", "timestamp", "amount", "merchant_id"]
    legit = small[0].loc[~small[0].is_fraud, cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(legit, more.loc[~more.is_fraud, cols].reset_index(drop=True))


@pytest.mark.parametrize("rate", [0.005, 0.01, 0.03])
def test_realized_fraud_rate_matches_config(rate: float) -> None:
    txns, _ = simulate(SimulatorConfig(users=400, days=14, seed=3, fraud_rate=rate))
    assert abs(txns.is_fraud.mean() - rate) <= 0.003


def test_no_fraud_when_rate_is_zero() -> None:
    txns, _ = simulate(SimulatorConfig(users=100, days=7, seed=3, fraud_rate=0.0))
    assert not txns.is_fraud.any() and len(txns) > 500


def test_sorted_inside_window_and_amounts_in_cents(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, _ = small
    assert txns.timestamp.is_monotonic_increasing
    start = pd.Timestamp(SMALL.start)
    assert txns.timestamp.min() >= start and txns.timestamp.max() < start + pd.Timedelta(days=SMALL.days)
    assert (txns.amount >= 0).all()
    assert np.allclose(txns.amount * 100, np.round(txns.amount * 100))


def test_volume_per_user_day(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    per_day = len(small[0]) / (SMALL.users * SMALL.days)
    assert 1.0 <= per_day <= 2.5


def test_fraud_starts_after_history(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, _ = small
    warm = pd.Timestamp(SMALL.start) + pd.Timedelta(seconds=SMALL.warmup_seconds)
    assert txns.timestamp[txns.is_fraud].min() >= warm
    first_fraud = txns[txns.is_fraud].groupby("user_id").timestamp.min()
    first_legit = txns[~txns.is_fraud].groupby("user_id").timestamp.min()
    assert (first_legit.reindex(first_fraud.index) < first_fraud).all()


def test_card_testing_is_micro_bursts(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ct = _fraud(small[0], "card_testing")
    probes = ct[ct.amount <= 2.0]
    assert len(probes) >= 0.8 * len(ct) and (probes.amount >= 0.5).all()
    assert (ct.amount[ct.amount > 2.0] >= 300).all()  # the cash-out after a successful probe
    assert (ct.channel == "online").all()
    gaps = probes.groupby("user_id").timestamp.diff().dropna().dt.total_seconds()
    assert gaps.median() <= 90
    assert probes.groupby("user_id").merchant_id.nunique().max() <= 2


def test_account_takeover_uses_a_device_never_seen_for_that_user(
    small: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    txns, _ = small
    ato = _fraud(txns, "account_takeover")
    own = set(zip(txns.user_id[~txns.is_fraud], txns.device_id[~txns.is_fraud], strict=True))
    assert not any(pair in own for pair in zip(ato.user_id, ato.device_id, strict=True))
    legit = txns[~txns.is_fraud]
    assert ato.amount.median() > 3 * legit.amount.median()
    assert (ato.channel.isin(["online", "transfer"])).all()


def test_merchant_compromise_hits_many_users_at_one_merchant(
    small: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    mc = _fraud(small[0], "merchant_compromise")
    victims = mc.groupby("merchant_id").user_id.nunique()
    assert (victims >= 8).all()
    span = mc.groupby("merchant_id").timestamp.agg(lambda s: s.max() - s.min())
    assert (span <= pd.Timedelta(days=3)).all()


def test_geo_anomaly_is_impossible_travel(small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, profiles = small
    home = profiles.set_index("user_id").home_country
    geo = _fraud(txns, "geo_anomaly")
    assert (geo.country != geo.user_id.map(home)).all()
    # the owner paid at home only hours before: no flight is that fast
    legit_home = txns[~txns.is_fraud & (txns.country == "US")]
    last_home = pd.merge_asof(
        geo[["user_id", "timestamp"]].sort_values("timestamp"),
        legit_home[["user_id", "timestamp"]].rename(columns={"timestamp": "seen"}),
        left_on="timestamp",
        right_on="seen",
        by="user_id",
        direction="backward",
    )
    assert ((last_home.timestamp - last_home.seen) < pd.Timedelta(hours=7)).all()


def test_mule_transfers_are_fast_round_transfers_from_young_accounts(
    small: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    txns, profiles = small
    mule = _fraud(txns, "mule_transfer")
    assert (mule.channel == "transfer").all()
    assert set(mule.merchant_category) <= {"money_transfer", "crypto_exchange"}
    remainder = np.round(mule.amount % 50, 2)
    assert remainder.isin([0.0, 48.01, 47.01, 45.01]).all()
    age = mule.user_id.map(profiles.set_index("user_id").account_age_days)
    assert (age < 120).mean() > 0.9


def test_monthly_bills_recur_with_fixed_merchant_and_amount(month: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, _ = month
    bills = txns[txns.merchant_category.isin(["rent", "streaming", "telecom"]) & ~txns.is_fraud]
    repeats = bills.groupby(["user_id", "merchant_id", "amount"]).timestamp.agg(["count", "min", "max"])
    repeated = repeats[repeats["count"] >= 2]
    # 45 days from Jan 5: a bill due on the 5th-19th falls twice, rent on the 1st once
    assert len(repeated) > 0.35 * len(repeats) and len(repeated) > 1000
    gap = (repeated["max"] - repeated["min"]).dt.days
    assert gap.between(27, 32).mean() > 0.9


def test_weekly_rhythm(month: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, _ = month
    weekend = txns.timestamp.dt.dayofweek >= 5
    share = txns.groupby(weekend).merchant_category.value_counts(normalize=True)
    assert share[True]["grocery"] > 1.5 * share[False]["grocery"]
    assert share[False]["public_transport"] > 3 * share[True].get("public_transport", 0.0)


def test_sequential_dependencies(month: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    txns, _ = month
    ordered = txns.sort_values(["user_id", "timestamp"], kind="stable")
    same = ordered.user_id.to_numpy()[1:] == ordered.user_id.to_numpy()[:-1]
    prev = ordered.merchant_category.to_numpy()[:-1][same]
    nxt = ordered.merchant_category.to_numpy()[1:][same]
    base = (nxt == "convenience_store").mean()
    assert (nxt[prev == "fuel"] == "convenience_store").mean() > 4 * base
    assert (nxt[prev == "bar_nightlife"] == "ride_hailing").mean() > 0.4


def test_foreign_trips_are_booked(month: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Legit spending abroad follows an airline purchase (booked ≤ 30 days ahead, so late trips show it)."""
    txns, _ = month
    abroad = txns[~txns.is_fraud & (txns.country != "US")]
    travellers = abroad.groupby("user_id").timestamp.min()
    travellers = travellers[
        travellers >= pd.Timestamp(txns.timestamp.min()).normalize() + pd.Timedelta(days=31)
    ]
    flights = txns[txns.merchant_category == "airline"].groupby("user_id").timestamp.min()
    booked = flights.reindex(travellers.index) < travellers
    assert len(travellers) >= 3 and booked.all()


def test_next_category_is_learnable(month: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """On held-out users a first-order Markov model of categories beats popularity (accuracy, log-loss)."""
    txns, _ = month
    ordered = txns.sort_values(["user_id", "timestamp"], kind="stable")
    codes, _ = pd.factorize(ordered.merchant_category)
    users = pd.factorize(ordered.user_id)[0]
    same = users[1:] == users[:-1]
    prev, nxt = codes[:-1][same], codes[1:][same]
    test = users[1:][same] % 5 == 0
    k = codes.max() + 1
    counts = np.ones((k, k))
    np.add.at(counts, (prev[~test], nxt[~test]), 1)
    unigram = np.bincount(nxt[~test], minlength=k) + 1.0
    markov = (counts.argmax(axis=1)[prev[test]] == nxt[test]).mean()
    baseline = (nxt[test] == unigram.argmax()).mean()
    assert markov > baseline + 0.06, (markov, baseline)
    transition = counts / counts.sum(axis=1, keepdims=True)
    nll_markov = -np.log(transition[prev[test], nxt[test]]).mean()
    nll_unigram = -np.log(unigram[nxt[test]] / unigram.sum()).mean()
    assert nll_markov < nll_unigram - 0.15, (nll_markov, nll_unigram)


def test_similar_demographics_have_similar_habits(month: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Users of about the same age in the same region spend more alike than random pairs do."""
    txns, profiles = month
    hist = pd.crosstab(txns.user_id, txns.merchant_category).reindex(profiles.user_id).fillna(0).to_numpy()
    hist = hist / np.linalg.norm(hist, axis=1, keepdims=True).clip(min=1e-9)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(profiles), (2, 300_000))
    age, region = profiles.age.to_numpy(), profiles.region.to_numpy()
    similar = (np.abs(age[a] - age[b]) <= 2) & (region[a] == region[b]) & (a != b)
    cosine = (hist[a] * hist[b]).sum(axis=1)
    assert similar.sum() > 1000
    assert cosine[similar].mean() > cosine[~similar].mean() + 0.04


def test_write_dataset_round_trips(tmp_path, small: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow must import (pyarrow ≥ 26 needs numpy ≥ 2)")
    txns, profiles = small
    paths = write_dataset(txns, profiles, tmp_path / "out")
    assert set(paths) == {"transactions", "profiles"}
    back = pd.read_parquet(paths["transactions"])
    assert len(back) == len(txns) and list(back.columns) == list(txns.columns)
    assert back.timestamp.equals(txns.timestamp) and back.txn_id.equals(txns.txn_id)
    assert back.is_fraud.sum() == txns.is_fraud.sum()
    assert len(pd.read_parquet(paths["profiles"])) == len(profiles)


def test_progress_callback_reaches_the_end() -> None:
    seen: list[tuple[str, float]] = []
    simulate(SimulatorConfig(users=50, days=3, seed=0), progress=lambda stage, f: seen.append((stage, f)))
    assert seen[-1] == ("assemble", 1.0) and {"population", "legit", "fraud"} <= {s for s, _ in seen}
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users": 0},
        {"days": 0},
        {"seed": -1},
        {"fraud_rate": 0.7},
        {"scenario_mix": (("phishing", 1.0),)},
        {"scenario_mix": (("card_testing", 1.0), ("card_testing", 2.0))},
        {"scenario_mix": (("card_testing", 0.0),)},
        {"new_accounts": 1.0},
        {"new_accounts": -0.1},
        {"scenario_mix": (("new_account_takeover", 1.0),)},  # without new_accounts: nobody to take over
    ],
)
def test_config_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**kwargs)


def test_routine_replay_repeats_the_victims_own_recent_purchases_in_a_burst() -> None:
    """Only order and timing are off: every replayed event copies one of the victim's last 30 purchases
    before the incident (merchant, category, channel, device, city; amount within ±5 %)."""
    from stream.simulation import parse_scenario_mix

    config = SimulatorConfig(users=400, days=30, seed=4, fraud_rate=0.01,
                             scenario_mix=parse_scenario_mix("routine_replay=1"))  # fmt: skip
    txns, _ = simulate(config)
    replay = _fraud(txns, "routine_replay").sort_values(["user_id", "timestamp"])
    assert len(replay) == int(txns.is_fraud.sum()) > 0
    legit = txns[~txns.is_fraud]
    copied = ["merchant_id", "merchant_category", "channel", "device_id", "city"]
    for user, burst in replay.groupby("user_id"):
        start = burst.timestamp.min()
        past = legit[(legit.user_id == user) & (legit.timestamp < start)].sort_values("timestamp").tail(30)
        for row in burst.itertuples():
            same = past[(past[copied] == pd.Series({c: getattr(row, c) for c in copied})).all(axis=1)]
            assert len(same) and (abs(same.amount / row.amount - 1) <= 0.06).any(), (user, row.txn_id)
        gaps = burst.timestamp.diff().dropna().dt.total_seconds()
        assert (gaps <= 1200).all()  # a burst; the victim's own life goes on around it


def test_new_accounts_only_drop_the_new_accounts_earlier_payments() -> None:
    """`new_accounts` opens a share of the accounts during the window: each such user's payments are a
    suffix of what they would have been (from the opening on), its account age counts from the opening,
    and nobody else's data changes."""
    base, base_profiles = simulate(SimulatorConfig(users=300, days=20, seed=3, fraud_rate=0.0))
    txns, profiles = simulate(SimulatorConfig(users=300, days=20, seed=3, fraud_rate=0.0, new_accounts=0.3))
    columns = ["user_id", "timestamp", "merchant_id", "amount", "device_id"]
    ages = profiles.set_index("user_id").account_age_days
    new = set(profiles.user_id[ages.values != base_profiles.account_age_days.values])
    assert 40 < len(new) < 150 and (ages[sorted(new)] < 20).all()
    assert profiles.drop(columns="account_age_days").equals(base_profiles.drop(columns="account_age_days"))
    old = base[~base.user_id.isin(new)][columns].reset_index(drop=True)
    assert txns[~txns.user_id.isin(new)][columns].reset_index(drop=True).equals(old)
    for user in sorted(new)[:40]:
        before, after = base[base.user_id == user], txns[txns.user_id == user]
        kept = before[before.timestamp >= after.timestamp.min()] if len(after) else before.iloc[:0]
        assert after[columns].reset_index(drop=True).equals(kept[columns].reset_index(drop=True)), user


def test_new_account_takeover_strikes_before_the_fifth_payment() -> None:
    """Cold-start fraud: every incident hits an account opened during the window, before its fifth own
    payment, from a device the account never used, as a burst of online buys or transfers."""
    from stream.simulation import parse_scenario_mix

    config = SimulatorConfig(users=600, days=30, seed=5, fraud_rate=0.01, new_accounts=0.2,
                             scenario_mix=parse_scenario_mix("default,new_account_takeover=0.3"))  # fmt: skip
    txns, profiles = simulate(config)
    taken = _fraud(txns, "new_account_takeover")
    assert len(taken) > 20
    legit = txns[~txns.is_fraud]
    ages = profiles.set_index("user_id").account_age_days
    for user, burst in taken.groupby("user_id"):
        start = burst.timestamp.min()
        own = legit[legit.user_id == user]
        assert (own.timestamp < start).sum() < 5, user
        assert ages[user] < config.days and not set(burst.device_id) & set(own.device_id), user
        assert set(burst.channel) <= {"online", "transfer"}
        assert (burst.timestamp.diff().dropna().dt.total_seconds() <= 900).all()


def test_a_scenario_mix_is_parsed_with_clear_errors() -> None:
    from stream.errors import PantherError
    from stream.simulation import parse_scenario_mix
    from stream.simulator.config import DEFAULT_MIX

    assert parse_scenario_mix(None) == DEFAULT_MIX
    assert parse_scenario_mix("default,routine_replay=0.2") == (*DEFAULT_MIX, ("routine_replay", 0.2))
    two = (("card_testing", 1.0), ("geo_anomaly", 0.0))
    assert parse_scenario_mix("card_testing=1, geo_anomaly=0") == two
    for bad, message in (("phishing=1", "not name=weight"), ("card_testing", "not name=weight"),
                         ("card_testing=x", "not a number")):  # fmt: skip
        with pytest.raises(PantherError, match=message):
            parse_scenario_mix(bad)
