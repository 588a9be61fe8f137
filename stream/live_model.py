"""The numpy-level parts of a model artefact the stream needs around the scorer.

The scorer (Triton or in-process) owns the network; the stream still has to turn a transaction into
its token, its feature vector and its user's profile ids — the same code the offline evaluation uses.
Reading them here from the artefact's JSON files keeps torch out of the stream process's hot path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.fraud.cached_scoring import ModelTags
from models.fraud.features import FeatureSchema
from models.fraud.head_files import HEAD_JSON
from models.fraud.next_token import NextTokenTable
from models.profile_schema import ProfileSchema
from models.tokenizer import StructuredTokenizer
from stream.errors import PantherError
from stream.events import Transaction, UserProfile


@dataclass(frozen=True)
class ServingContract:
    """What the artefact's scorer answers with — read from its files, so a worker scoring through
    Triton needs neither torch nor an in-process copy of the model to know it."""

    max_len: int  # L: the encoder's window
    signal_names: tuple[str, ...]  # the reasons' order
    sequence_dim: int  # S: the head's own cached sequence input (0: none)


@dataclass(frozen=True)
class LiveModel:
    path: Path
    model_version: str
    tokenizer: StructuredTokenizer
    features: FeatureSchema
    profiles: ProfileSchema | None
    next_token: NextTokenTable  # the frozen encoder's item table: log P_u(x) from a cached h_u
    tags: ModelTags  # which model the cached per-user state belongs to
    head_sha256: str  # the fraud head's weights (fraud_head.json)
    contract: ServingContract | None = None  # None: an artefact fitted before it was recorded

    @classmethod
    def from_artifact_dir(cls, path: str | Path) -> LiveModel:
        path = Path(path)
        head = path / HEAD_JSON
        if not (path / "config.json").is_file():
            raise PantherError(f"{path} is not a model artefact (no config.json): run `panther pretrain`")
        if not head.is_file():
            raise PantherError(f"{path} has no fraud head: run `panther fit-fraud --model {path}` first")
        config = json.loads((path / "config.json").read_text("utf-8"))
        head_info = json.loads(head.read_text("utf-8"))
        schema = config.get("profile_schema")
        model_version = str(config["model_version"])
        head_sha256 = str(head_info.get("weights_sha256", ""))
        serving = head_info.get("serving")
        contract = None
        if serving is not None:
            contract = ServingContract(int(config["model"]["max_len"]), tuple(serving["signal_names"]),
                                       int(serving["sequence_dim"]))  # fmt: skip
        return cls(
            path=path,
            model_version=model_version,
            tokenizer=StructuredTokenizer.load(path / "tokenizer.json"),
            features=FeatureSchema.from_dict(head_info["feature_schema"]),
            profiles=ProfileSchema.from_dict(schema) if schema else None,
            next_token=NextTokenTable.from_artifact_dir(path, float(head_info.get("temperature", 1.0))),
            tags=ModelTags.of(model_version, head_sha256),
            head_sha256=head_sha256,
            contract=contract,
        )

    @property
    def profile_width(self) -> int:
        return len(self.profiles.cardinalities) if self.profiles else 0

    def tokens(self, records: list[dict[str, Any]]) -> np.ndarray:
        """(B,) token ids of transaction records, one vectorized tokenizer call."""
        return np.asarray(self.tokenizer.encode(pd.DataFrame.from_records(records)), dtype=np.int64)

    def transaction_tokens(self, txns: Sequence[Transaction]) -> np.ndarray:
        """(B,) token ids of validated transactions: `tokens` of their dicts, without a dict or a frame
        per batch (`StructuredTokenizer.encode_columns`; equal, tested)."""
        names = {spec.column for spec in self.tokenizer.fields}
        columns = {name: [getattr(txn, name, None) for txn in txns] for name in names}
        return self.tokenizer.encode_columns(columns, len(txns))

    def profile_ids(self, profiles: list[UserProfile]) -> np.ndarray:
        """(B, P) categorical profile ids (0 = missing) of user profiles."""
        if self.profiles is None:
            return np.zeros((len(profiles), 0), dtype=np.int64)
        rows = [profile.model_dump(exclude={"attributes", "schema_version"}) for profile in profiles]
        frame = pd.DataFrame.from_records(rows)
        ids, _ = self.profiles.encode(frame)
        return ids.astype(np.int64)

    def unknown_profile(self) -> np.ndarray:
        """(P,) ids for a user whose profile has not arrived (every field missing)."""
        return np.zeros(self.profile_width, dtype=np.int64)
