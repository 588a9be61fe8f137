"""Everything the fraud head needs for every transaction of a frame, computed the way live computes it.

`build_fraud_data` = tokenize → per-user sequences → PANTHER pass (log P_u(x) and window hidden state of
every event, `encoder_pass.encode_events`) → replay through UserState (`replay.replay`: features and the
P-statistics before each event, then the update with that event's P) → deviation features. All arrays are
in the `Sequences`' order (user-major, chronological); `row` maps back to frame rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.batch import PAD_ID
from models.fraud.deviation import DeviationConfig, deviation_features
from models.fraud.encoder_pass import encode_events
from models.fraud.features import FeatureSchema
from models.fraud.head import HeadConfig, HeadInputs
from models.fraud.replay import replay
from models.fraud.txn import TxnColumns
from models.loaders import UserFeatures
from models.panther import PantherModel
from models.profile_schema import ProfileSchema
from models.sequences import Sequences, build_sequences, to_epoch_ms
from models.tokenizer import StructuredTokenizer
from models.tokenizer.risk import as_labels


@dataclass(frozen=True)
class FraudData:
    """Per-event head inputs, labels and bookkeeping, in `seqs` order (N events, U users)."""

    seqs: Sequences
    features: np.ndarray  # (N, F) float32 transaction features
    prob_stats: np.ndarray  # (N, 5) float64 the user's P statistics before the event
    logp: np.ndarray  # (N,) float32 log P_u(x)
    deviation: np.ndarray  # (N, 5) float32 Δ, Δ_log, surprise, P, cold
    hidden: np.ndarray | None  # (N, d) float32 PANTHER window hidden state
    user_embedding: np.ndarray | None  # (U, d) float32 e_u per user row
    profile: np.ndarray  # (U, P) int64 profile ids per user row
    labels: np.ndarray | None  # (N,) bool, None when the frame has no labels
    scenarios: np.ndarray  # (N,) object scenario name or None
    max_len: int  # model window length
    # (N,) float32 a fixed logit the head's output is added to, in training and prediction (None: 0).
    # Stacking on another model's score as a residual: the head learns what that model misses.
    base_logit: np.ndarray | None = None

    def __len__(self) -> int:
        return self.seqs.n_events

    @property
    def times(self) -> np.ndarray:
        return self.seqs.times

    @property
    def event_profiles(self) -> np.ndarray:
        """(N, P) int64 each event's user's profile ids (what the trees read beside the features)."""
        return self.profile[self.seqs.user_of_event]

    @property
    def row(self) -> np.ndarray:
        """(N,) frame row of each event."""
        return self.seqs.row_index

    def windows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Events idx (b,) → their windows: tokens (b, L) right-padded, lengths (b,) (0 = first event)."""
        user = self.seqs.user_of_event[idx]
        starts = np.maximum(self.seqs.offsets[user], idx - self.max_len)
        lengths = idx - starts
        width = max(int(lengths.max()) if len(idx) else 0, 1)
        pos = starts[:, None] + np.arange(width)[None, :]
        real = np.arange(width)[None, :] < lengths[:, None]
        tokens = np.where(real, self.seqs.tokens[np.minimum(pos, max(self.seqs.n_events - 1, 0))], PAD_ID)
        return tokens.astype(np.int64), lengths.astype(np.int64)

    def head_inputs(
        self, idx: np.ndarray, config: HeadConfig, device: torch.device | str = "cpu"
    ) -> HeadInputs:
        """Tensors for the head variant `config` for events idx."""

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        kw: dict[str, Any] = {"features": t(self.features[idx])}
        if config.sequence == "panther":
            kw["hidden"] = t(_need(self.hidden, "hidden")[idx])
        if config.sequence == "textcnn":
            tokens, lengths = self.windows(idx)
            kw |= {"window_tokens": t(tokens), "window_lengths": t(lengths)}
        if config.use_user:
            kw["user"] = t(_need(self.user_embedding, "user_embedding")[self.seqs.user_of_event[idx]])
        if config.use_deviation:
            kw["deviation"] = t(self.deviation[idx])
        return HeadInputs(**kw)


def _need(value: np.ndarray | None, name: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name} is missing: build the data with a PANTHER encoder")
    return value


def frame_labels(frame: pd.DataFrame) -> np.ndarray | None:
    """(N,) bool fraud labels, or None when the frame has none (unknown labels count as legit)."""
    if "is_fraud" not in frame.columns or frame["is_fraud"].isna().all():
        return None
    labels = as_labels(frame["is_fraud"])
    return np.nan_to_num(labels, nan=0.0) > 0


def user_profiles(seqs: Sequences, profiles: pd.DataFrame | None, schema: ProfileSchema | None) -> np.ndarray:
    """(U, P) profile ids aligned with `seqs`' users (0 = missing; (U, 0) without a schema)."""
    if profiles is None or schema is None:
        return np.zeros((len(seqs), len(schema.fields) if schema else 0), dtype=np.int64)
    ids, _ = schema.encode(profiles)
    return UserFeatures.align(seqs.user_ids, profiles[schema.user_col].to_numpy(), ids, None).profile


@torch.no_grad()
def build_fraud_data(
    frame: pd.DataFrame,
    tokenizer: StructuredTokenizer,
    schema: FeatureSchema,
    encoder: PantherModel | None = None,
    profiles: pd.DataFrame | None = None,
    profile_schema: ProfileSchema | None = None,
    deviation_config: DeviationConfig | None = None,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> FraudData:
    """Frame (+ profiles) → FraudData. Without an encoder, the PANTHER inputs stay empty (baselines)."""
    times = to_epoch_ms(frame["timestamp"])
    tokens = tokenizer.encode(frame)
    seqs = build_sequences(frame, tokens)
    profile = user_profiles(seqs, profiles, profile_schema)
    n = seqs.n_events
    logp_seq = np.zeros(n, dtype=np.float32)
    hidden = user_emb = None
    if encoder is not None:
        out = encode_events(encoder, seqs, profile, temperature, batch_size, device)
        logp_seq, hidden = out.logp, out.hidden
        user_emb = encoder.eval().to(device).user_embedding(
            torch.from_numpy(profile).to(device)).float().cpu().numpy()
    probs = np.zeros(n, dtype=np.float64)
    probs[seqs.row_index] = np.exp(logp_seq.astype(np.float64))
    result = replay(seqs, TxnColumns.from_frame(frame, tokens, times), schema,
                    probs if encoder is not None else None)
    prob_stats = result.prob_stats[seqs.row_index]
    deviation = deviation_features(torch.from_numpy(logp_seq), torch.from_numpy(prob_stats),
                                   deviation_config or DeviationConfig()).numpy()
    labels = frame_labels(frame)
    scenario_col = frame["fraud_scenario"] if "fraud_scenario" in frame.columns else pd.Series([None] * n)
    scenarios = np.asarray(scenario_col.astype(object).where(scenario_col.notna(), None), dtype=object)
    return FraudData(
        seqs=seqs,
        features=result.features[seqs.row_index],
        prob_stats=prob_stats,
        logp=logp_seq,
        deviation=deviation,
        hidden=hidden,
        user_embedding=user_emb,
        profile=profile,
        labels=None if labels is None else labels[seqs.row_index],
        scenarios=scenarios[seqs.row_index],
        max_len=encoder.config.max_len if encoder is not None else schema.state.window,
    )


def chronological_split(
    times: np.ndarray, train_fraction: float = 0.7, val_fraction: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Event indices (train, validation, test) and the cut (epoch ms).

    Test = events at or after `train_fraction` of the time range; validation = the last `val_fraction`
    of the training time range (early stopping and model choice never look at the test period).
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError("train_fraction must be in (0, 1]")
    lo, hi = int(times.min()), int(times.max())
    cut = lo + round((hi - lo) * train_fraction) if train_fraction < 1.0 else hi + 1  # 1.0: no test
    val_cut = lo + round((cut - lo) * (1.0 - val_fraction))
    train = np.flatnonzero(times < val_cut)
    val = np.flatnonzero((times >= val_cut) & (times < cut))
    test = np.flatnonzero(times >= cut)
    return train, val, test, cut
