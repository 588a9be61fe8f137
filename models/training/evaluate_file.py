"""`panther evaluate`: next-transaction metrics of a saved artefact on a held-out transactions file.

The artefact's own tokenizer and profile schema encode the file (nothing is refit). Every event at or
after `start` (default: the file's first timestamp) that has at least one earlier event of the same user
in the file is a target; its history is the user's preceding events in the file, as the stream sees
them. Ranking is full over the vocabulary, as in `pretrain`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from models.artifact import load_artifact
from models.panther import PantherModel
from models.sequences import build_sequences, make_eval_set, to_epoch_ms
from models.training.evaluation import EvalData, evaluate_next_token
from models.training.pretrain import profile_features, read_table
from models.training.runtime import resolve_device


def evaluate_transactions(
    model_dir: str | Path,
    transactions_path: str | Path,
    profiles_path: str | Path | None = None,
    device: str = "auto",
    *,
    start: str | None = None,
    max_targets_per_user: int | None = None,
    batch_size: int = 512,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """→ {"model_version", "metrics": HR@1/5/10, NDCG@10, MRR, n, "coverage": tokenizer UNK rate, …}."""
    begin = time.perf_counter()
    artifact = load_artifact(model_dir)
    model = PantherModel.from_artifact(artifact)
    frame = read_table(transactions_path)
    profiles = read_table(profiles_path) if profiles_path is not None else None
    seqs = build_sequences(frame, artifact.tokenizer.encode(frame))
    cut_ms = int(to_epoch_ms(pd.Series([_utc(start)]))[0]) if start else int(seqs.times.min())
    features = profile_features(seqs, profiles, artifact.profile_schema)
    ev = make_eval_set(
        seqs,
        "after_time",
        cut_ms=cut_ms,
        max_len=model.config.max_len,
        max_targets_per_user=max_targets_per_user,
        seed=seed,
    )
    metrics = evaluate_next_token(model, EvalData(ev, features), device, batch_size, progress=progress)
    return {
        "command": "evaluate",
        "model_version": artifact.model_version,
        "device": str(resolve_device(device)),
        "transactions": str(transactions_path),
        "start": datetime.fromtimestamp(cut_ms / 1000, UTC).isoformat(),
        "users": len(seqs),
        "coverage": artifact.tokenizer.coverage(frame),
        "profiles": profiles is not None,
        "metrics": metrics,
        "wall_s": round(time.perf_counter() - begin, 1),
    }


def _utc(value: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
