"""`panther bench movielens`: PANTHER vs SASRec vs popularity vs Markov on MovieLens-1M, full ranking.

Protocol (generative-recommenders, the one behind the published ML-1M numbers): every user's last rating
is the test target, its history the up-to-`max_len` ratings before it; models train on each user's
sequence without that last rating; ranking is over the item ids (~3,700 for ML-1M) the user has not rated
in the model's input window (the latest `max_len` ratings) — the reference's `eval.py` filters those
(`filter_invalid_ids=True`), and the published numbers (.2853 SASRec, .3294 HSTU-large, .3078 PANTHER)
come from it. Every result is also reported over all items, nothing filtered ("all_items"), the
stricter view our transaction evaluation uses.
Items are tokens (`TokenizerConfig.for_items("item_id")`) fit on the whole file so that every item is
a candidate, as in the reference. The `.user` file beside the ratings gives PANTHER its profile
(age, gender, occupation, region = first zip digit); contrastive positives: same age code and region.

The reference setup (`configs/ml-1m/sasrec-sampled-softmax-n128-final.gin`, validated 04/11/2024, 101
epochs): max_len 200, embedding 50, 2 blocks, 1 head, FFN 50, dropout 0.2, L2-normalized (cosine)
scores, sampled softmax with 128 uniform negatives at τ = 0.05, AdamW lr 1e-3, betas (0.9, 0.98), no
weight decay, batch 128, one window per user = the latest max_len + 1 ratings. `ML1M_SETUP` is that
setup; PANTHER uses the same sizes and training, plus SPRM, the profile and the contrastive term.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.loaders import UserFeatures
from models.losses import LossConfig
from models.movielens import default_movielens_path, load_movielens
from models.panther import PantherConfig, panther_config, sasrec_config
from models.profile_schema import ProfileSchema
from models.sequences import build_sequences, make_eval_set
from models.tokenizer import StructuredTokenizer, TokenizerConfig
from models.training.compare import PreparedData, compare_models, device_name, summary_table
from models.training.evaluation import EvalData
from models.training.trainer import TrainConfig

PUBLISHED = {  # HR@10 / NDCG@10, generative-recommenders README and PANTHER Table 2 (HR only)
    "sasrec_generative_recommenders": {"HR@10": 0.2853, "NDCG@10": 0.1603},
    "hstu_large_generative_recommenders": {"HR@10": 0.3294, "NDCG@10": 0.1893},
    "panther_paper": {"HR@1": 0.0705, "HR@5": 0.2103, "HR@10": 0.3078},
    "sasrec_paper": {"HR@1": 0.0627, "HR@5": 0.1906, "HR@10": 0.2853},
}


@dataclass(frozen=True)
class MovieLensSetup:
    """Model sizes and training shared by every neural model of the benchmark."""

    max_len: int = 200
    d_model: int = 50
    n_layers: int = 2
    n_heads: int = 1
    ffn_mult: int = 1
    dropout: float = 0.2
    similarity: str = "cosine"
    loss: LossConfig = field(
        default_factory=lambda: LossConfig(kind="sampled", temperature=0.05, n_negatives=128)
    )
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    batch_size: int = 128
    window_mode: str = "latest"
    relative_bias: str = "none"  # "none" | "position" | "position_time" (models.attention)
    validation: bool = False  # hold out each user's second-to-last rating; keep the best epoch
    eval_every: int = 5  # epochs between validation runs
    patience: int | None = 4  # validation runs without an NDCG@10 gain before stopping
    bf16: bool = False  # fp32 on CUDA as the reference trains; d = 50 gains nothing from bf16

    def with_sampler(self, sampler: str) -> MovieLensSetup:
        """The same setup with another negative sampler for the sampled softmax (`models.losses.SAMPLERS`)."""
        return replace(self, loss=replace(self.loss, sampler=sampler))

    def with_loss(self, kind: str) -> MovieLensSetup:
        """The same setup trained with `"full"` (softmax over every item) or `"sampled"` softmax."""
        return replace(self, loss=replace(self.loss, kind=kind))

    def with_overrides(self, overrides: dict[str, Any]) -> MovieLensSetup:
        """Setup fields by name (JSON from the command line); unknown names are a clear error."""
        known = {f.name for f in fields(self)} - {"loss"}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown setup fields {sorted(unknown)}; choose from {sorted(known)}")
        return replace(self, **overrides)

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "max_len": self.max_len,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "ffn_mult": self.ffn_mult,
            "dropout": self.dropout,
            "similarity": self.similarity,
            "relative_bias": self.relative_bias,
        }

    def train_config(self, epochs: int, device: str, seed: int, progress: bool, **kw: Any) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
            seed=seed,
            device=device,
            window_mode=self.window_mode,
            loss=self.loss,
            progress=progress,
            eval_every=self.eval_every,
            early_stopping_patience=self.patience,
            bf16=self.bf16,
            **kw,
        )


ML1M_SETUP = MovieLensSetup()
MOVIELENS_MODELS = ("panther", "sasrec")  # the neural models `movielens_configs` builds


def movielens_configs(
    vocab_size: int,
    cards: list[int],
    setup: MovieLensSetup,
    models: tuple[str, ...] = MOVIELENS_MODELS,
    **panther_overrides: Any,
) -> dict[str, PantherConfig]:
    """name → config; PANTHER and SASRec share `setup`'s sizes."""
    factories = {
        "panther": lambda: panther_config(vocab_size, cards, **(setup.model_kwargs() | panther_overrides)),
        "sasrec": lambda: sasrec_config(vocab_size, **setup.model_kwargs()),
    }
    unknown = set(models) - set(factories)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {sorted(factories)}")
    return {name: factories[name]() for name in models}


def prepare_movielens(
    path: str | Path | None, max_len: int, validation: bool = False
) -> tuple[PreparedData, dict[str, Any], list[int]]:
    """Leave-last-out data → (PreparedData, dataset stats, profile cardinalities).

    `validation`: each user's second-to-last rating becomes a validation target (same protocol as the
    test) and training stops before it, so model selection never sees the test and the validation
    targets are not training targets; the test history still includes it, as in the reference.
    """
    frame, profiles = load_movielens(path)
    tokenizer = StructuredTokenizer.fit(frame, TokenizerConfig.for_items("item_id"))
    seqs = build_sequences(frame, tokenizer.encode(frame))
    features, cards = UserFeatures.empty(len(seqs)), []
    if profiles is not None:
        fields = [f for f in ("age", "gender", "occupation", "region") if f in profiles.columns]
        schema = ProfileSchema.fit(profiles, fields=fields, demographic=("age", "region"))
        ids, demographics = schema.encode(profiles)
        features = UserFeatures.align(seqs.user_ids, profiles["user_id"].to_numpy(), ids, demographics)
        cards = schema.cardinalities
    test = make_eval_set(seqs, "leave_last_out", max_len=max_len)
    held_out = 2 if validation else 1
    valid = (
        EvalData(make_eval_set(seqs.drop_last(1), "leave_last_out", max_len=max_len), features, max_len)
        if validation
        else None
    )
    data = PreparedData(
        tokenizer.vocab_size,
        seqs.drop_last(held_out),
        features,
        EvalData(test, features, seen_window=max_len),
        validation=valid,
        other_tests={"all_items": EvalData(test, features)},
    )
    stats = {
        "path": str(path or default_movielens_path()),
        "ratings": len(frame),
        "users": len(seqs),
        "items": tokenizer.vocab_size - 4,
        "vocab_size": tokenizer.vocab_size,
        "test_targets": len(test),
        "validation_targets": len(valid) if valid is not None else 0,
        "profile": profiles is not None,
    }
    return data, stats, cards


def run_movielens_bench(
    path: str | Path | None = None,
    epochs: int = 3,
    device: str = "auto",
    max_len: int = 200,
    *,
    seed: int = 0,
    models: tuple[str, ...] = MOVIELENS_MODELS,
    setup: MovieLensSetup = ML1M_SETUP,
    time_budget_s: float | None = None,
    progress: bool = True,
    **panther_overrides: Any,
) -> dict[str, Any]:
    """Train and evaluate on ML-1M (or another RecBole `.inter` / GroupLens `ratings.dat`) → JSON-able dict.

    `epochs` is the same for every neural model (the reference trains 101; a CPU run affords a few).
    `time_budget_s` caps each model's training (stops after the epoch that crosses it).
    """
    start = time.perf_counter()
    setup = replace(setup, max_len=max_len)
    data, stats, cards = prepare_movielens(path, max_len, setup.validation)
    configs = movielens_configs(data.vocab_size, cards, setup, models, **panther_overrides)
    train_config = setup.train_config(epochs, device, seed, progress, time_budget_s=time_budget_s)
    reports, _ = compare_models(configs, data, train_config)
    return {
        "benchmark": "movielens",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "device": device_name(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "data": stats,
        "setup": asdict(setup) | {"epochs": epochs, "seed": seed, "panther_overrides": panther_overrides},
        "protocol": "summary: the input window's items are not candidates (reference); all_items: every item",
        "summary": summary_table(reports),
        "summary_all_items": summary_table(reports, protocol="all_items"),
        "published": PUBLISHED,
        "models": reports,
        "wall_s": round(time.perf_counter() - start, 1),
    }
