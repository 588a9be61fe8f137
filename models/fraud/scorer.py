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
(`models.fraud.live.score_events` does the whole loop). That is the full-window path: the reference.

The cached path splits it in two (`models.fraud.cached_scoring` does that loop):

    refresh(tokens (R, W), lengths (R,), profile (R, P), positions (R, K))      the encoder, batched
      → {"hidden" (R, K, d), "lse" (R, K), "sequence" (R, K, S) when S > 0}     states to cache per user
    score_state(txn_features (B, F), prob_stats (B, 5), logp_new (B,), hidden (B, d),
                sequence (B, S) when S > 0, profile (B, P), user_embedding (B, d) optional,
                reason_threshold (B,) optional)                                   the head only
      → {"p_fraud", "logit", "deviation", "deviation_log", "surprise" (B,), "reasons" (B, S_signals)}

S (`sequence_dim`) is what the head reads besides the frozen h_u: the fine-tuned encoder's h_u, the
TextCNN's encoding of the window, or nothing (0). Reasons are computed only for rows whose p_fraud is
at or above their `reason_threshold` (zeros elsewhere): the alerting rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.artifact import Artifact, load_artifact
from models.fraud.deviation import DEVIATION_NAMES, DeviationConfig, deviation_features
from models.fraud.encoder_pass import next_token_lse, position_hidden, window_outputs
from models.fraud.ensemble import HeadEnsemble
from models.fraud.features import FeatureSchema
from models.fraud.head import FraudHead, HeadInputs
from models.fraud.head_io import load_head
from models.fraud.numpy_head import NumpyHead
from models.fraud.numpy_head import deviation_features as numpy_deviation
from models.fraud.reasons import SignalMap, integrated_gradients
from models.fraud.traced import EncoderCall, serving_encoder
from models.fraud.trees import TreeLogit
from models.panther import PantherModel

ArrayLike = np.ndarray | torch.Tensor
DEVIATION_OUTPUTS = ("deviation", "deviation_log", "surprise")  # the columns of Δ a score carries


class FraudScorer:
    """Pretrained encoder (frozen) + fitted fraud head + the feature schema they were trained with."""

    def __init__(
        self,
        encoder: PantherModel,
        head: FraudHead | HeadEnsemble,
        schema: FeatureSchema,
        deviation: DeviationConfig,
        temperature: float = 1.0,
        model_version: str = "unknown",
        tuned_encoder: PantherModel | None = None,
        device: str | torch.device = "cpu",
        reason_steps: int = 8,
        trees: TreeLogit | None = None,
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
        self.trees = trees  # a residual head's: their logit is added to the head's (`_logit`)
        self.signals = SignalMap.build(head, schema.signals)
        self.artifact: Artifact | None = None
        self._encoder_call: EncoderCall = self.encoder.hidden_at  # the refresh's (`trace_for_serving`)
        self._tuned_call: EncoderCall | None = (
            self.tuned_encoder.hidden_at if self.tuned_encoder is not None else None
        )
        self.numpy_head: NumpyHead | None = None  # `score_state`'s fast path (`trace_for_serving`)

    def trace_for_serving(self, precision: str = "fp32") -> None:
        """Serve `refresh` through frozen TorchScript graphs where that is exact and helps (CPU fp32:
        `models.fraud.traced`), and `score_state` through the head in numpy on a CPU
        (`models.fraud.numpy_head`); the eager modules stay the reference path (`score`, training)."""
        self._encoder_call = serving_encoder(self.encoder, self.device, precision)
        if self.tuned_encoder is not None:
            self._tuned_call = serving_encoder(self.tuned_encoder, self.device, precision)
        if self.device.type == "cpu" and precision == "fp32":
            self.numpy_head = NumpyHead(self.head)

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
                     art.model_version, tuned, device, trees=bundle.trees)
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
    def sequence_dim(self) -> int:
        """S: the width of the head's own sequence input that the cached state keeps (0: none)."""
        kind = self.head.config.sequence
        if kind == "textcnn":
            return self.head.config.sequence_dim()
        return int(self.encoder.config.d_model) if kind == "panther" and self.tuned_encoder is not None else 0

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

    @torch.no_grad()
    def refresh(
        self, tokens: ArrayLike, lengths: ArrayLike, profile: ArrayLike, positions: ArrayLike
    ) -> dict[str, np.ndarray]:
        """Encoder states at planned positions (see the module docstring for shapes)."""
        tokens_t, lengths_t = self._t(tokens, torch.long), self._t(lengths, torch.long)
        profile_t, positions_t = self._t(profile, torch.long), self._t(positions, torch.long)
        rows = (tokens_t, lengths_t, profile_t, positions_t)
        hidden = position_hidden(self._encoder_call, *rows)  # (R, K, d)
        valid = positions_t >= 0
        lse = torch.zeros(positions_t.shape, dtype=torch.float32, device=self.device)
        lse[valid] = next_token_lse(self.encoder, hidden[valid], self.temperature)
        out = {"hidden": hidden.float(), "lse": lse}
        if self.sequence_dim:
            out["sequence"] = self._sequence_states(*rows)
        return {k: v.cpu().numpy() for k, v in out.items()}

    def _sequence_states(self, tokens: torch.Tensor, lengths: torch.Tensor, profile: torch.Tensor,
                         positions: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """(R, K, S): the fine-tuned encoder's states, or the TextCNN over each window tokens[:pos + 1]."""
        if self._tuned_call is not None:
            return position_hidden(self._tuned_call, tokens, lengths, profile, positions).float()
        r, k = positions.shape
        windows = tokens.repeat_interleave(k, dim=0)  # (R·K, W): row r's tokens, once per position
        encoded = self.head.encode_sequence(windows, (positions.reshape(-1) + 1).clamp(min=0))
        encoded = encoded.reshape(r, k, -1)
        return torch.where((positions >= 0).unsqueeze(-1), encoded, torch.zeros_like(encoded)).float()

    def _logit(self, blocks: dict[str, torch.Tensor], txn_features: ArrayLike,
               profile: ArrayLike) -> torch.Tensor:  # fmt: skip
        """(B,) the head's logit, plus the trees' for a residual head (reasons explain the head's part:
        `integrated_gradients` attributes `head.fuse`, the trees' logit is a per-row constant to it)."""
        logit = self.head.fuse(blocks)
        if self.trees is None:
            return logit
        tree = self.trees(_numpy(txn_features), _numpy(profile))
        return logit + torch.from_numpy(tree).to(device=logit.device, dtype=logit.dtype)

    @torch.no_grad()
    def score_state(
        self,
        txn_features: ArrayLike,
        prob_stats: ArrayLike,
        logp_new: ArrayLike,
        hidden: ArrayLike,
        profile: ArrayLike,
        sequence: ArrayLike | None = None,
        user_embedding: ArrayLike | None = None,
        reason_threshold: ArrayLike | None = None,
    ) -> dict[str, np.ndarray]:
        """The fusion head from cached state: no encoder, no pass over the vocabulary."""
        if self.numpy_head is not None:
            return self._score_state_numpy(self.numpy_head, txn_features, prob_stats, logp_new, hidden,
                                           profile, sequence, user_embedding, reason_threshold)  # fmt: skip
        logp = self._t(logp_new, torch.float32).reshape(-1)
        profile_t = self._t(profile, torch.long)
        e_u = (self._t(user_embedding, torch.float32) if user_embedding is not None
               else self.encoder.user_embedding(profile_t).float())  # fmt: skip
        dev = deviation_features(logp, self._t(prob_stats, torch.float64), self.deviation_config)
        own = self._t(sequence, torch.float32) if sequence is not None else None
        if self.sequence_dim and own is None:
            raise ValueError("this head needs the cached `sequence` input")
        kind = self.head.config.sequence
        head_hidden = None
        if kind == "panther":  # the fine-tuned encoder's state when there is one, else the frozen h_u
            head_hidden = own if self.tuned_encoder is not None else self._t(hidden, torch.float32)
        inputs = HeadInputs(features=self._t(txn_features, torch.float32), hidden=head_hidden, user=e_u,
                            deviation=dev, sequence=own if kind == "textcnn" else None)  # fmt: skip
        blocks = self.head.blocks(inputs)
        logit = self._logit(blocks, txn_features, profile)
        p_fraud = torch.sigmoid(logit).float()
        columns = {name: dev[:, DEVIATION_NAMES.index(name)] for name in DEVIATION_OUTPUTS}
        outputs = {"p_fraud": p_fraud, "logit": logit.float(), **columns}
        out = {k: v.detach().cpu().numpy() for k, v in outputs.items()}
        out["reasons"] = self._alert_reasons(blocks, out["p_fraud"], reason_threshold)
        return out

    def _score_state_numpy(
        self, head: NumpyHead, txn_features: ArrayLike, prob_stats: ArrayLike, logp_new: ArrayLike,
        hidden: ArrayLike, profile: ArrayLike, sequence: ArrayLike | None, user_embedding: ArrayLike | None,
        reason_threshold: ArrayLike | None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """`score_state` with the head in numpy (same inputs, same outputs, equal to float32 rounding);
        the reasons of the alerting rows from the torch head."""
        features = _numpy(txn_features).astype(np.float32, copy=False)
        logp = _numpy(logp_new).astype(np.float32, copy=False).reshape(-1)
        e_u = _numpy(user_embedding) if user_embedding is not None else self.user_embedding(profile)
        dev = numpy_deviation(logp, _numpy(prob_stats), self.deviation_config)
        own = _numpy(sequence) if sequence is not None else None
        if self.sequence_dim and own is None:
            raise ValueError("this head needs the cached `sequence` input")
        head_hidden = None
        if self.head.config.sequence == "panther":
            head_hidden = own if self.tuned_encoder is not None else _numpy(hidden)
        blocks = head.blocks(features, head_hidden, e_u, dev, own)
        logit = head.logit(blocks)
        if self.trees is not None:
            logit = logit + self.trees(features, _numpy(profile)).astype(np.float32, copy=False)
        p_fraud = sigmoid(logit)
        columns = {name: dev[:, DEVIATION_NAMES.index(name)] for name in DEVIATION_OUTPUTS}
        reasons = self._alert_reasons(blocks, p_fraud, reason_threshold)
        return {"p_fraud": p_fraud, "logit": logit, **columns, "reasons": reasons}

    def _alert_reasons(self, blocks: dict[str, Any], p_fraud: np.ndarray,
                       reason_threshold: ArrayLike | None) -> np.ndarray:  # fmt: skip
        """(B, S) float32: the torch head's integrated gradients for the rows whose p_fraud is at or
        above their threshold (the alerting rows), zeros elsewhere; `blocks` torch or numpy (B, dim)."""
        reasons = np.zeros((len(p_fraud), len(self.signal_names)), dtype=np.float32)
        if reason_threshold is None:
            return reasons
        rows = np.flatnonzero(p_fraud >= _numpy(reason_threshold).astype(np.float32).reshape(-1))
        if rows.size:
            chosen = {name: self._t(np.ascontiguousarray(_numpy(value)[rows]), torch.float32)
                      for name, value in blocks.items()}  # fmt: skip
            attributed = integrated_gradients(self.head, chosen, self.signals, self.reason_steps)
            reasons[rows] = attributed.detach().cpu().numpy()
        return reasons

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
            logit = self._logit(blocks, txn_features, profile)
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) in x's float dtype, without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _numpy(value: ArrayLike) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
