"""Tiny fixtures for the fraud tests: a simulated frame, a tokenizer, an untrained tiny PANTHER artefact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from models.artifact import save_artifact
from models.panther import PantherModel, panther_config
from models.profile_schema import ProfileSchema
from models.tokenizer import StructuredTokenizer, TokenizerConfig
from models.training.pretrain import fit_profile_schema
from stream.simulator import SimulatorConfig, simulate, write_dataset

TINY_MODEL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 12, "n_prototypes": 8, "dropout": 0.0}


@dataclass(frozen=True)
class Tiny:
    txns: pd.DataFrame
    profiles: pd.DataFrame
    tokenizer: StructuredTokenizer
    profile_schema: ProfileSchema
    model: PantherModel
    model_dir: Path
    transactions_path: Path
    profiles_path: Path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    txns, profiles = simulate(SimulatorConfig(users=60, days=20, seed=3, fraud_rate=0.05))
    root = tmp_path_factory.mktemp("fraud")
    paths = write_dataset(txns, profiles, root / "data")
    tokenizer = StructuredTokenizer.fit(txns, TokenizerConfig(amount_buckets=6))
    schema = fit_profile_schema(profiles)
    assert schema is not None
    torch.manual_seed(0)
    model = PantherModel(panther_config(tokenizer.vocab_size, schema.cardinalities, **TINY_MODEL)).eval()
    model_dir = save_artifact(root / "model", model.config.to_dict(), tokenizer, schema, model.state_dict(),
                              metrics={"train_config": {"loss": {"temperature": 1.0}}})
    return Tiny(txns, profiles, tokenizer, schema, model, model_dir, paths["transactions"], paths["profiles"])
