"""`panther pretrain`: tokenizer + PANTHER pretraining on a transactions file, with the paper's ablations.

    report = pretrain_transactions("transactions.parquet", "profiles.parquet", "model/", epochs=5)

1. Read transactions (and profiles); chronological split: training = events in the first
   `train_fraction` of the time range, test = every later event (its history = all of the user's
   earlier events, as a streaming scorer sees them).
2. Fit the structured tokenizer and the profile schema on the training part only; build sequences.
3. Train the ablation ladder (SPRM only, + profile first token, + profile PE, + contrastive = full
   PANTHER) and SASRec with one `TrainConfig`; fit popularity and Markov; evaluate all on the test rows
   with full ranking over the vocabulary.
4. Save full PANTHER as the model artefact (`save_artifact`) with every model's metrics.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.artifact import frame_fingerprint, save_artifact
from models.loaders import UserFeatures
from models.panther import PantherConfig, ablation_configs, sasrec_config
from models.profile_schema import ProfileSchema
from models.sequences import Sequences, build_sequences, cold_start_eval_set, make_eval_set, to_epoch_ms
from models.tokenizer import StructuredTokenizer, TokenizerConfig
from models.training.compare import PreparedData, compare_models, device_name, summary_table
from models.training.evaluation import EvalData
from models.training.trainer import TrainConfig

PANTHER_ONLY_FIELDS = frozenset(
    {
        "use_sprm",
        "n_prototypes",
        "prototype_heads",
        "conv_kernel",
        "dilations",
        "profile_mode",
        "profile_cardinalities",
        "contrastive_weight",
        "contrastive_temperature",
        "contrastive_tolerances",
        "name",
    }
)
READERS = {".parquet": pd.read_parquet, ".csv": pd.read_csv}


def read_table(path: str | Path) -> pd.DataFrame:
    """A transactions / profiles file as a DataFrame (.parquet or .csv)."""
    path = Path(path)
    if path.suffix not in READERS:
        raise ValueError(f"{path}: expected one of {sorted(READERS)}")
    return READERS[path.suffix](path)


def chronological_cut(times_ms: np.ndarray, train_fraction: float) -> int:
    """Epoch ms at `train_fraction` of the time range: earlier events train, later events test."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError("train_fraction must be in (0, 1)")
    lo, hi = int(times_ms.min()), int(times_ms.max())
    return lo + round((hi - lo) * train_fraction)


def held_out_users(user_ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """A seeded `share` of the distinct user ids (sorted first, so the draw does not depend on row order)."""
    if not 0.0 <= share < 1.0:
        raise ValueError("cold_users must be in [0, 1)")
    users = np.sort(user_ids.unique())
    count = round(len(users) * share)
    if count == 0:
        return users[:0]
    return np.sort(np.random.default_rng(seed).choice(users, size=count, replace=False))


def profile_features(
    seqs: Sequences, profiles: pd.DataFrame | None, schema: ProfileSchema | None
) -> UserFeatures:
    """Profile ids and demographics aligned with `seqs`' users (empty without profiles)."""
    if profiles is None or schema is None:
        return UserFeatures.empty(len(seqs))
    ids, demographics = schema.encode(profiles)
    return UserFeatures.align(seqs.user_ids, profiles[schema.user_col].to_numpy(), ids, demographics)


def fit_profile_schema(profiles: pd.DataFrame | None, **kw: Any) -> ProfileSchema | None:
    """Profile schema over the default fields that the file actually has (demographics: age, region)."""
    if profiles is None:
        return None
    fields = [
        f for f in ("age", "gender", "region", "occupation", "account_age_days") if f in profiles.columns
    ]
    demographic = [d for d in ("age", "region") if d in fields]
    return ProfileSchema.fit(profiles, fields=fields, demographic=demographic, **kw) if fields else None


def contrastive_tolerances(schema: ProfileSchema | None) -> tuple[float, ...]:
    """The default rule per demographic column: age ± 2, every other column equal."""
    return tuple(2.0 if name == "age" else 0.0 for name in (schema.demographic if schema else ()))


def pretrain_transactions(
    transactions_path: str | Path,
    profiles_path: str | Path | None,
    out_dir: str | Path,
    epochs: int = 5,
    device: str = "auto",
    max_len: int = 100,
    *,
    train_fraction: float = 0.8,
    seed: int = 0,
    batch_size: int = 128,
    ablations: bool = True,
    include_first_token: bool = True,
    max_eval_targets_per_user: int | None = None,
    cold_users: float = 0.0,
    cold_max_history: int = 4,
    tokenizer_config: TokenizerConfig | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain and compare; writes the artefact to `out_dir`; → JSON-able report.

    `cold_users` > 0 holds that share of the users (seeded) out of everything fitted — tokenizer,
    profile schema, training — and reports every model on their first events (1 to `cold_max_history`
    earlier events, `cold_start_eval_set`) under `metrics_other["cold_start"]`: the new customer,
    known by a profile and a few transactions. The main test then covers the other users only.
    """
    start = time.perf_counter()
    frame = read_table(transactions_path)
    profiles = read_table(profiles_path) if profiles_path is not None else None
    times = to_epoch_ms(frame["timestamp"])
    cut_ms = chronological_cut(times, train_fraction)
    cold_ids = held_out_users(frame["user_id"], cold_users, seed)
    warm_rows = ~frame["user_id"].isin(cold_ids).to_numpy()
    train_rows = (times < cut_ms) & warm_rows
    tokenizer = StructuredTokenizer.fit(frame[train_rows], tokenizer_config or TokenizerConfig())
    seqs = build_sequences(frame, tokenizer.encode(frame))
    warm_profiles = None if profiles is None else profiles[~profiles["user_id"].isin(cold_ids)]
    schema = fit_profile_schema(warm_profiles)
    features = profile_features(seqs, profiles, schema)
    test = make_eval_set(
        seqs,
        "after_time",
        cut_ms=cut_ms,
        max_len=max_len,
        max_targets_per_user=max_eval_targets_per_user,
        seed=seed,
    )
    cold_rows = np.flatnonzero(np.isin(seqs.user_ids, cold_ids))
    others: dict[str, EvalData] = {}
    if len(cold_rows):
        test = test.subset(np.flatnonzero(~np.isin(test.user_row, cold_rows)))
        cold = cold_start_eval_set(seqs, cold_rows, cold_max_history, max_len)
        others["cold_start"] = EvalData(cold, features)
    train = seqs.before(cut_ms).without_users(cold_rows)
    data = PreparedData(tokenizer.vocab_size, train, features, EvalData(test, features), other_tests=others)

    cards = schema.cardinalities if schema is not None else []
    common = {"max_len": max_len, "contrastive_tolerances": contrastive_tolerances(schema)} | (
        model_overrides or {}
    )
    configs = transaction_model_configs(tokenizer.vocab_size, cards, ablations, include_first_token, **common)
    train_config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        progress=progress,
        **(train_overrides or {}),
    )
    reports, trained = compare_models(configs, data, train_config)

    summary = summary_table(reports)
    result = {
        "command": "pretrain",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_name(device),
        "data": {
            "transactions": str(transactions_path),
            "profiles": str(profiles_path) if profiles_path else None,
            "rows": len(frame),
            "users": len(seqs),
            "train_rows": int(train_rows.sum()),
            "test_targets": len(test),
            "cold_start_users": len(cold_rows),
            "cold_start_targets": len(others["cold_start"]) if others else 0,
            "cut": datetime.fromtimestamp(cut_ms / 1000, UTC).isoformat(),
            "vocab_size": tokenizer.vocab_size,
            "tokenizer_coverage_train": tokenizer.coverage(frame[train_rows]),
            "tokenizer_coverage_test": tokenizer.coverage(frame[~train_rows]),
            "profile_fields": schema.field_names if schema else [],
        },
        "train_config": train_config.to_dict(),
        "summary": summary,
        **({"summary_cold_start": summary_table(reports, protocol="cold_start")} if others else {}),
        "models": reports,
    }
    if "panther" in summary and "sasrec" in summary and summary["sasrec"]["HR@1"]:
        result["panther_vs_sasrec_hr1_relative"] = round(
            summary["panther"]["HR@1"] / summary["sasrec"]["HR@1"] - 1, 4
        )
    final = trained["panther"]
    artifact_dir = save_artifact(
        out_dir,
        final.config.to_dict(),
        tokenizer,
        schema,
        final.state_dict(),
        metrics={
            "next_token": reports["panther"]["metrics"],
            "comparison": summary,
            "train_config": train_config.to_dict(),
            "cut": result["data"]["cut"],
        },
        training_data_hash=frame_fingerprint(frame[train_rows]),
    )
    result["artifact"] = str(artifact_dir)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def transaction_model_configs(
    vocab_size: int, cards: list[int], ablations: bool, include_first_token: bool, **common: Any
) -> dict[str, PantherConfig]:
    """The ladder ending in full PANTHER (or PANTHER alone), then SASRec — same sizes for all."""
    ladder = ablation_configs(vocab_size, cards, include_first_token=include_first_token, **common)
    if not ablations:
        ladder = {"panther": ladder["panther"]}
    sasrec_common = {k: v for k, v in common.items() if k not in PANTHER_ONLY_FIELDS}
    return ladder | {"sasrec": sasrec_config(vocab_size, **sasrec_common)}
