"""`FraudScorer`: the one inference entry point — tensors in, numpy out, no pandas.

The stream's in-process scorer, the Triton python backend (issues 5/6) and the backtest (issue 7) all
call `score()`. One call scores B transactions of (normally distinct) users:

    tokens (B, L) int64      each user's window: the ≤ L tokens before the new transaction, right-padded
    lengths (B,) int64       real tokens per row (0 for a user's first transaction)
    profile (B, P) int64     profile ids (the artefact's ProfileSchema), used for e_u unless given
    new_token (B,) int64     the new transaction's token id
    txn_features (B, F)      `transaction_features(schema, state, txn)` rows
    prob_stats (B, 5)        `UserState.prob_stats()` rows: (n, μ_P, σ_P, μ_logP, σ_logP) before x
    user_embedding (B, d)    optional cached e_u (the stream's user_embeddings table)
→ {"p_fraud" (B,), "logit" (B,), "deviation" (B,) Δ, "deviation_log" (B,), "surprise" (B,),
   "logp_new" (B,) log P_u(x), "seq_embedding" (B, d), "user_embedding" (B, d),
   "reasons" (B, S) signal contributions in `signal_names` order}

After scoring, the caller folds each transaction into its user's state with p = exp(logp_new)
(`models.fraud.live.score_events` does the whole loop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.artifact import Artifact, load_artifact
from models.fraud.deviation import DEVIATION_NAMES, DeviationConfig, deviation_features
from models.fraud.encoder_pass import window_outputs
from models.fraud.features import FeatureSchema
from models.fraud.head import FraudHead, HeadInputs
from models.fraud.head_io import load_head
from models.fraud.reasons import SignalMap, integrated_gradients
from models.panther import PantherModel

ArrayLike = np.ndarray | torch.Tensor


class FraudScorer:
    """Pretrained encoder (frozen) + fitted fraud head + the feature schema they were trained with."""

    def __init__(
        self,
        encoder: PantherModel,
        head: FraudHead,
        schema: FeatureSchema,
        deviation: DeviationConfig,
        temperature: float = 1.0,
        model_version: str = "unknown",
        tuned_encoder: PantherModel | None = None,
        device: str | torch.device = "cpu",
        reason_steps: int = 8,
    ) -> None:
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.tuned_encoder = tuned_encoder.eval().to(self.device) if tuned_encoder is not None else None
        self.head = head.eval().to(self.device)
        self.schema = schema
        self.deviation_config = deviation
        self.temperature = temperature
        self.model_version = model_version
        self.reason_steps = reason_steps
        self.signals = SignalMap.build(head, schema.signals)
        self.artifact: Artifact | None = None

    @classmethod
    def from_artifact(cls, path: str | Path, device: str | torch.device = "cpu") -> FraudScorer:
        art = load_artifact(path)
        bundle = load_head(art, device)
        encoder = PantherModel.from_artifact(art)
        tuned = None
        if bundle.encoder_state is not None:
            tuned = PantherModel.from_artifact(art)
            tuned.load_state_dict(bundle.encoder_state)
        scorer = cls(encoder, bundle.head, bundle.schema, bundle.deviation, bundle.temperature,
                     art.model_version, tuned, device)
        scorer.artifact = art
        return scorer

    @property
    def max_len(self) -> int:
        """L: window length the encoder reads (the state keeps at least this many events)."""
        return int(self.encoder.config.max_len)

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self.signals.names

    @property
    def n_features(self) -> int:
        return self.schema.width

    def _t(self, value: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value,
                               dtype=dtype, device=self.device)

    @torch.no_grad()
    def user_embedding(self, profile: ArrayLike) -> np.ndarray:
        """profile ids (B, P) → e_u (B, d) float32: what the stream caches per user."""
        return self.encoder.user_embedding(self._t(profile, torch.long)).float().cpu().numpy()

    def score(
        self,
        tokens: ArrayLike,
        lengths: ArrayLike,
        profile: ArrayLike,
        new_token: ArrayLike,
        txn_features: ArrayLike,
        prob_stats: ArrayLike,
        user_embedding: ArrayLike | None = None,
        reasons: bool = True,
    ) -> dict[str, np.ndarray]:
        """Score B transactions; see the module docstring for shapes."""
        tokens_t, lengths_t = self._t(tokens, torch.long), self._t(lengths, torch.long)
        profile_t, new_t = self._t(profile, torch.long), self._t(new_token, torch.long)
        with torch.no_grad():
            windows = (tokens_t, lengths_t, profile_t, new_t)
            logp, hidden = window_outputs(self.encoder, *windows, self.temperature)
            if self.tuned_encoder is not None:
                _, hidden_for_head = window_outputs(self.tuned_encoder, *windows)
            else:
                hidden_for_head = hidden
            e_u = (self._t(user_embedding, torch.float32) if user_embedding is not None
                   else self.encoder.user_embedding(profile_t).float())
            dev = deviation_features(logp, self._t(prob_stats, torch.float64), self.deviation_config)
            inputs = HeadInputs(features=self._t(txn_features, torch.float32), hidden=hidden_for_head.float(),
                                window_tokens=tokens_t, window_lengths=lengths_t, user=e_u, deviation=dev)
            blocks = self.head.blocks(inputs)
            logit = self.head.fuse(blocks)
        out: dict[str, Any] = {
            "p_fraud": torch.sigmoid(logit).float(),
            "logit": logit.float(),
            "deviation": dev[:, DEVIATION_NAMES.index("deviation")],
            "deviation_log": dev[:, DEVIATION_NAMES.index("deviation_log")],
            "surprise": dev[:, DEVIATION_NAMES.index("surprise")],
            "logp_new": logp.float(),
            "seq_embedding": hidden.float(),
            "user_embedding": e_u.float(),
        }
        if reasons:
            out["reasons"] = integrated_gradients(self.head, blocks, self.signals, self.reason_steps)
        return {k: v.detach().cpu().numpy() for k, v in out.items()}
