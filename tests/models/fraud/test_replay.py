"""No label leakage: a transaction's inputs depend only on events before it.

Proof by perturbation: change, delete and add every event after a cut time t — and shuffle all labels —
then the features, P-statistics, log P_u(x), window hidden states and deviation of every event at or
before t are unchanged (the whole `build_fraud_data` pipeline, PANTHER pass included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.fraud.dataset import FraudData, build_fraud_data
from models.fraud.features import FeatureSchema
from models.sequences import to_epoch_ms


def by_txn(data: FraudData, frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, ...]]:
    ids = frame["txn_id"].to_numpy()[data.row]
    assert data.hidden is not None
    return {str(t): (data.features[i], data.prob_stats[i], data.logp[i], data.hidden[i], data.deviation[i])
            for i, t in enumerate(ids)}


def perturb_future(frame: pd.DataFrame, cut_ms: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    future = to_epoch_ms(frame["timestamp"]) > cut_ms
    out = frame.copy()
    out.loc[future, "amount"] = rng.uniform(0.5, 5_000, int(future.sum()))
    out.loc[future, "device_id"] = "attacker"
    out.loc[future, "merchant_id"] = rng.choice(["mA", "mB"], int(future.sum()))
    out.loc[future, "country"] = "XX"
    drop = future & (rng.random(len(out)) < 0.5)
    extra = out[future].head(50).assign(txn_id=lambda f: f["txn_id"] + "x")
    out = pd.concat([out[~drop], extra], ignore_index=True)
    labels = out["is_fraud"].to_numpy().copy()
    rng.shuffle(labels)
    return out.assign(is_fraud=labels).sample(frac=1.0, random_state=seed)  # row order must not matter


def test_future_events_and_labels_do_not_change_past_inputs(tiny) -> None:
    frame = tiny.txns
    times = to_epoch_ms(frame["timestamp"])
    cut = int(np.quantile(times, 0.6))
    schema = FeatureSchema.fit(frame[times <= cut])
    kw = {"tokenizer": tiny.tokenizer, "schema": schema, "encoder": tiny.model, "profiles": tiny.profiles,
          "profile_schema": tiny.profile_schema}
    original = by_txn(build_fraud_data(frame, **kw), frame)
    changed_frame = perturb_future(frame, cut)
    changed = by_txn(build_fraud_data(changed_frame, **kw), changed_frame)
    past = frame["txn_id"][times <= cut].astype(str)
    assert len(past) > 500
    for txn_id in past:
        for a, b in zip(original[txn_id], changed[txn_id], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    future_ids = [t for t in frame["txn_id"][times > cut].astype(str) if t in changed]
    differs = sum(not np.array_equal(original[t][0], changed[t][0]) for t in future_ids)
    assert differs > 0.5 * len(future_ids)  # the perturbation did reach the future events


def test_label_shuffle_leaves_features_unchanged(tiny) -> None:
    frame = tiny.txns
    schema = FeatureSchema.fit(frame)
    shuffled = frame.assign(is_fraud=np.random.default_rng(1).permutation(frame["is_fraud"].to_numpy()),
                            fraud_scenario=None)
    a = build_fraud_data(frame, tiny.tokenizer, schema)
    b = build_fraud_data(shuffled, tiny.tokenizer, schema)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.labels, b.labels)
