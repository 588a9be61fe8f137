"""A complete model artefact with random weights, for serving tests and benchmarks.

Why: the serving path (export → tritonserver → client) must be testable and benchmarkable before, and
independently of, a trained model. The artefact is built through the same public API a trained one is
(`save_artifact`, `PantherModel`, `save_head`), so it exercises exactly the files export copies and the
checks `initialize()` runs; only the numbers are meaningless.

>>> import tempfile
>>> out = make_artifact(tempfile.mkdtemp(), vocab=40, d_model=8, n_layers=1, max_len=6, with_head=False)
>>> sorted(p.name for p in out.iterdir())
['config.json', 'metrics.json', 'tokenizer.json', 'weights.safetensors']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.artifact import save_artifact
from models.fraud.deviation import DeviationConfig
from models.fraud.ensemble import HeadEnsemble
from models.fraud.features import FeatureSchema
from models.fraud.head import FraudHead, head_config
from models.fraud.head_io import save_head
from models.fraud.trees import TreeLogit, categorical_columns, tree_inputs
from models.panther import PantherModel, panther_config
from models.profile_schema import ProfileSchema
from models.tokenizer import StructuredTokenizer, TokenizerConfig


def _profiles(users: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(users)],
            "age": rng.integers(18, 80, users),
            "gender": rng.choice(["f", "m"], users),
            "region": rng.choice([f"r{i}" for i in range(8)], users),
            "occupation": rng.choice([f"o{i}" for i in range(6)], users),
            "account_age_days": rng.integers(0, 3000, users),
        }
    )


def make_artifact(
    out_dir: str | Path,
    vocab: int = 500,
    d_model: int = 16,
    n_layers: int = 1,
    n_heads: int = 2,
    max_len: int = 20,
    with_head: bool = True,
    seed: int = 0,
    name: str = "panther",
    residual: bool = False,
    heads: int = 1,
) -> Path:
    """Write an artefact (tokenizer of ≈`vocab` ids, profile schema, PANTHER weights [+ fraud head
    (an ensemble of `heads` when more than one) [+ the trees of a residual head, fitted on random
    rows]])."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(vocab)]})
    tokenizer = StructuredTokenizer.fit(items, TokenizerConfig.for_items("item_id", top_k=vocab))
    schema = ProfileSchema.fit(_profiles(64, rng))
    torch.manual_seed(seed)
    config = panther_config(
        tokenizer.vocab_size,
        schema.cardinalities,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        max_len=max_len,
        dropout=0.0,
        name=name,
    )
    model = PantherModel(config).eval()
    out = save_artifact(out_dir, config.to_dict(), tokenizer, schema, model.state_dict(), {"synthetic": True})
    if with_head:
        features = FeatureSchema()
        config = head_config("hybrid_panther", features.width, d_model=d_model, deep_dims=(32,))
        members = [FraudHead(config) for _ in range(heads)]
        head = members[0] if heads == 1 else HeadEnsemble(members)
        trees = random_trees(features.width, schema.cardinalities, rng)[1] if residual else None
        save_head(out, head.eval(), features, DeviationConfig(), temperature=1.0, trees=trees)
    return Path(out)


def random_trees(width: int, cardinalities: list[int] | tuple[int, ...], rng: np.random.Generator,
                 rows: int = 2000, **hgb: Any) -> tuple[Any, TreeLogit, np.ndarray, np.ndarray]:
    """Trees fitted on random rows (features (rows, width), profile ids of `cardinalities`): a residual
    head's served part for serving tests, and what `bench/tree_logit.py` times. → (the sklearn model,
    its `TreeLogit`, the features, the profile ids). `hgb`: HistGradientBoostingClassifier settings."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    features = rng.normal(size=(rows, width)).astype(np.float32)
    profile = np.stack([rng.integers(0, c, rows) for c in cardinalities], axis=1)
    signal = features[:, 0] * features[:, 1] + np.sin(3 * features[:, 2]) + (profile[:, 0] % 3 == 0)
    labels = signal + rng.normal(size=rows) > 1.5
    categorical = categorical_columns(width, profile)
    settings = {"max_iter": 20, "max_leaf_nodes": 8, "early_stopping": False, "random_state": 0} | hgb
    model = HistGradientBoostingClassifier(categorical_features=categorical, **settings)
    model.fit(tree_inputs(features, profile), labels)
    return model, TreeLogit.from_sklearn(model, categorical), features, profile


def state_score_inputs(n_features: int, d_model: int, profile_fields: int, sequence_dim: int, rows: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray | None]:  # fmt: skip
    """Random but plausible `FraudScorer.score_state` inputs (no e_u: the scorer embeds the profile)."""
    stats = np.column_stack([rng.integers(0, 9, rows), rng.uniform(0, 0.3, rows), rng.uniform(0, 0.1, rows),
                             rng.normal(-4, 1, rows), rng.uniform(0, 1, rows)])  # fmt: skip
    return {
        "txn_features": rng.normal(size=(rows, n_features)).astype(np.float32),
        "prob_stats": stats,
        "logp_new": rng.normal(-4, 2, rows).astype(np.float32),
        "hidden": rng.normal(size=(rows, d_model)).astype(np.float32),
        "profile": np.zeros((rows, profile_fields), dtype=np.int64),
        "sequence": rng.normal(size=(rows, sequence_dim)).astype(np.float32) if sequence_dim else None,
    }
