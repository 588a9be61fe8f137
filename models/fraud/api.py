"""`fit_fraud` and `evaluate_fraud`: what `panther fit-fraud` and `panther evaluate` call.

    fit_fraud("model/", "transactions.parquet", "profiles.parquet")        # writes fraud_head into model/
    evaluate_fraud("model/", "transactions.parquet", "profiles.parquet")   # → fraud metrics (labels needed)

Both read the canonical files of DESIGN.md; optional fields that are missing are reported under
"disabled_fields" (their features carry no information) — nothing fails because of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.artifact import Artifact, load_artifact
from models.fraud.dataset import FraudData, build_fraud_data, chronological_split
from models.fraud.deviation import DeviationConfig
from models.fraud.ensemble import DEFAULT_MEMBERS, check_ensemble_config
from models.fraud.features import FeatureSchema
from models.fraud.head import HEAD_VARIANTS, HeadConfig, head_config
from models.fraud.head_io import HEAD_JSON, HEAD_NAME, load_head, model_temperature, save_head
from models.fraud.metrics import fraud_metrics
from models.fraud.train import FitConfig, FitResult, fit_ensemble, fit_head, predict_logits
from models.fraud.trees import RESIDUAL_FOLDS, TreeLogit, residual_base
from models.panther import PantherModel
from models.training.pretrain import read_table
from models.training.progress import progress_bar
from models.training.runtime import resolve_device

DEFAULT_VARIANT = "hybrid_panther"
TREE_FITS = RESIDUAL_FOLDS + 1  # the residual head's trees: the out-of-fold blocks' and the served ones


@dataclass(frozen=True)
class Loaded:
    artifact: Artifact
    encoder: PantherModel
    frame: pd.DataFrame
    profiles: pd.DataFrame | None
    temperature: float


def load_inputs(model_dir: str | Path, transactions_path: str | Path,
                profiles_path: str | Path | None) -> Loaded:
    art = load_artifact(model_dir)
    frame = read_table(transactions_path)
    profiles = read_table(profiles_path) if profiles_path is not None else None
    return Loaded(art, PantherModel.from_artifact(art), frame, profiles, model_temperature(art))


def prepare_data(loaded: Loaded, schema: FeatureSchema, deviation: DeviationConfig,
                 device: torch.device) -> FraudData:
    art = loaded.artifact
    return build_fraud_data(loaded.frame, art.tokenizer, schema, loaded.encoder, loaded.profiles,
                            art.profile_schema, deviation, loaded.temperature, device)


def variant_config(data: FraudData, variant: str, **head_kw: Any) -> HeadConfig:
    vocab = int(data.seqs.tokens.max()) + 1 if variant == "hybrid_textcnn" else 0
    d_model = int(data.hidden.shape[1]) if data.hidden is not None else 64
    return head_config(variant, data.features.shape[1], d_model=d_model, vocab_size=vocab, **head_kw)


def fit_variant(data: FraudData, train: np.ndarray, val: np.ndarray, variant: str, fit: FitConfig,
                encoder: PantherModel | None, **head_kw: Any) -> FitResult:
    return fit_head(data, train, val, variant_config(data, variant, **head_kw), fit, encoder)


def ensemble_size(heads: int | None, config: HeadConfig, fine_tune: bool) -> int:
    """`fit-fraud --heads`: `DEFAULT_MEMBERS`, or one head where a head cannot be an ensemble member
    (its own TextCNN, a fine-tuned encoder: `models.fraud.ensemble.check_ensemble_config` says why)."""
    if heads is None:
        try:
            check_ensemble_config(config, fine_tune)
        except ValueError:
            return 1
        return DEFAULT_MEMBERS
    if heads > 1:
        check_ensemble_config(config, fine_tune)
    return heads


def on_residual_trees(data: FraudData, train: np.ndarray, val: np.ndarray, seed: int = 0,
                      on_fit: Callable[[], None] | None = None) -> tuple[FraudData, TreeLogit]:  # fmt: skip
    """`data` with the residual head's base logit (out of fold on `train`, `residual_base`), and the
    trees to serve: what a residual head is fitted on, in `fit_fraud` and in `panther bench fraud`."""
    if data.labels is None:
        raise ValueError("the residual head's trees need labelled data")
    base, trees = residual_base(data.features, data.event_profiles, data.labels, train, val, seed=seed,
                                on_fit=on_fit)  # fmt: skip
    return replace(data, base_logit=base), trees


def fit_fraud(
    model_dir: str | Path,
    transactions_path: str | Path,
    profiles_path: str | Path | None = None,
    variant: str = DEFAULT_VARIANT,
    *,
    val_fraction: float = 0.15,
    epochs: int = 8,
    device: str = "auto",
    fine_tune: bool = False,
    seed: int = 0,
    fit_overrides: dict[str, Any] | None = None,
    residual: bool = True,
    heads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the fraud head on every labelled event (the last `val_fraction` of time for early stopping)
    and save it into the artefact. → JSON-able summary.

    `residual=True` (the default, docs/MODEL.md says why): gradient-boosted trees over the same
    hand-made inputs are fitted first, and the head learns what they miss — its logit is added to
    theirs (out of fold on the training period, `models.fraud.trees.residual_base`); the trees ship in
    the artefact and are served with the head. `residual=False`: the head alone.

    `heads`: an ensemble of that many heads, fitted with seeds `seed`, `seed + 1`, … on one
    standardization, their logits averaged (`models.fraud.ensemble`; default `ensemble_size`)."""
    if variant not in HEAD_VARIANTS:
        raise ValueError(f"variant must be one of {HEAD_VARIANTS}")
    start = time.perf_counter()
    dev = resolve_device(device)
    loaded = load_inputs(model_dir, transactions_path, profiles_path)
    schema = FeatureSchema.fit(loaded.frame)
    deviation = DeviationConfig()
    data = prepare_data(loaded, schema, deviation, dev)
    if data.labels is None:
        raise ValueError(f"{transactions_path} has no is_fraud labels: fit-fraud needs labelled data")
    train, val, _, _ = chronological_split(data.times, 1.0, val_fraction)
    config = variant_config(data, variant)
    members = ensemble_size(heads, config, fine_tune)  # refused here, before the trees' minutes
    fit = FitConfig(epochs=epochs, device=str(dev), fine_tune=fine_tune, seed=seed, **(fit_overrides or {}))
    trees = None
    with progress_bar("fitting the trees and heads", TREE_FITS * residual + members, enabled=progress) as bar:
        if residual:
            data, trees = on_residual_trees(data, train, val, seed, on_fit=bar.advance)
        head, fits, val_pr_auc = fit_ensemble(data, train, val, config, fit, members, bar.advance,
                                              loaded.encoder)  # fmt: skip
    tuned = fits[0].encoder
    summary = {
        "variant": variant, "residual": residual, "heads": members, "train_events": len(train),
        "val_events": len(val), "train_fraud": int(data.labels[train].sum()),
        "val_fraud": int(data.labels[val].sum()), "best_epoch": fits[0].best_epoch, "val_pr_auc": val_pr_auc,
        "history": fits[0].history, "fit_config": fit.to_dict(), "disabled_fields": schema.disabled,
        "cached_state": cached_state(head.config, tuned is not None),
        "members": [{"seed": seed + i, "best_epoch": f.best_epoch, "val_pr_auc": f.best_val_pr_auc}
                    for i, f in enumerate(fits)],
    }
    encoder_state = tuned.state_dict() if tuned is not None else None
    save_head(model_dir, head, schema, deviation, loaded.temperature, summary, encoder_state, trees=trees)
    return {"command": "fit-fraud", "model": str(model_dir), **summary,
            "wall_s": round(time.perf_counter() - start, 1)}


def cached_state(config: Any, fine_tuned: bool) -> dict[str, Any]:
    """What the live path keeps per user for this head (every variant is cacheable: docs/FRAUD.md).

    >>> from models.fraud.head import head_config
    >>> cached_state(head_config("hybrid_textcnn", 40, d_model=64, vocab_size=500), False)["sequence_input"]
    'TextCNN encoding of the window (96 floats)'
    """
    kind = config.sequence
    own = {"textcnn": config.sequence_dim(), "panther": config.d_model if fine_tuned else 0}.get(kind, 0)
    what = {"textcnn": f"TextCNN encoding of the window ({own} floats)",
            "panther": "the fine-tuned encoder's h_u" if fine_tuned else "the frozen encoder's h_u (shared)",
            "none": "none"}[kind]  # fmt: skip
    return {"cacheable": True, "sequence_input": what, "floats_per_user": config.d_model + own}


def has_fraud_head(model_dir: str | Path) -> bool:
    """Does the artefact directory hold a fitted fraud head?"""
    root = Path(model_dir)
    return (root / HEAD_JSON).is_file() and (root / f"{HEAD_NAME}.safetensors").is_file()


def score_frame(model_dir: str | Path, transactions_path: str | Path, profiles_path: str | Path | None = None,
                device: str = "auto") -> tuple[FraudData, np.ndarray]:
    """Bulk scoring of a whole file with a fitted artefact: (data, p_fraud (N,) in data order)."""
    dev = resolve_device(device)
    loaded = load_inputs(model_dir, transactions_path, profiles_path)
    bundle = load_head(loaded.artifact, dev)
    data = prepare_data(loaded, bundle.schema, bundle.deviation, dev)
    tuned = None
    if bundle.encoder_state is not None:
        tuned = PantherModel.from_artifact(loaded.artifact)
        tuned.load_state_dict(bundle.encoder_state)
    if bundle.trees is not None:
        data = replace(data, base_logit=bundle.trees(data.features, data.event_profiles))
    logits = predict_logits(bundle.head, data, np.arange(len(data)), dev, encoder=tuned)
    return data, 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def evaluate_fraud(
    model_dir: str | Path,
    transactions_path: str | Path,
    profiles_path: str | Path | None = None,
    device: str = "auto",
    since: str | None = None,
) -> dict[str, Any]:
    """Fraud metrics of the fitted artefact on a labelled file (events at or after `since`, if given;
    earlier events still build the users' state). Scores are computed the way live computes them.

    Without a fraud head in the artefact, or without labels in the file, → {"fraud": None, "reason": …}
    (so `panther evaluate` can always call it)."""
    start = time.perf_counter()
    if not has_fraud_head(model_dir):
        return {"command": "evaluate", "fraud": None, "reason": "the model has no fraud head (run fit-fraud)"}
    data, scores = score_frame(model_dir, transactions_path, profiles_path, device)
    if data.labels is None:
        return {"command": "evaluate", "fraud": None, "reason": "no is_fraud labels in the file"}
    keep = np.ones(len(data), dtype=bool)
    if since is not None:
        keep = data.times >= int(pd.Timestamp(since, tz="UTC").value // 1_000_000)
    metrics = fraud_metrics(scores[keep], data.labels[keep], data.scenarios[keep])
    return {"command": "evaluate", "model": str(model_dir), "fraud": metrics,
            "wall_s": round(time.perf_counter() - start, 1)}
