"""The I/O schema of the two served models, rendered into config.pbtxt (the server's single source).

Why a module: export renders config.pbtxt from it, the python backend reads the rendered config back
(never these constants), and the tests check that `stream.scoring.ScoreRequest`'s fields are exactly
the inputs declared here. Per-row scalars are declared with dims [1] (Triton counts the batch outside
`dims`), so a client sends (B, 1) and the backend sees (B, 1); both sides flatten.

Shapes (B = batch, added by Triton in front of `dims`):

    panther_sprm
      in   tokens (B, L) INT64 · lengths (B, 1) INT64 · profile (B, P) INT64 · new_token (B, 1) INT64
           txn_features (B, F) FP32 · prob_stats (B, 5) FP64 · user_embedding (B, d) FP32 [optional]
      out  p_fraud, logit, deviation, deviation_log (B, 1) FP32   — only with a fraud head
           surprise, logp_new (B, 1) FP32 · seq_embedding, user_embedding (B, d) FP32
           reasons (B, S) FP32                                     — only with a fraud head
    panther_user_encoder
      in   profile (B, P) INT64      out  user_embedding (B, d) FP32

The cached path (what the worker and the backtest use) splits panther_sprm in two; S = the head's own
sequence input (`ArtefactInfo.sequence_dim`; the `sequence` tensors exist only when S > 0):

    panther_refresh                                            the encoder, batched (KIND_GPU on a GPU)
      in   tokens (B, L) INT64 · lengths (B, 1) INT64 · profile (B, P) INT64 · positions (B, K) INT64
      out  hidden (B, K, d) FP32 · lse (B, K) FP32 · sequence (B, K, S) FP32
    panther_score                                              the fusion head from cached state
      in   txn_features (B, F) FP32 · prob_stats (B, 5) FP64 · logp_new (B, 1) FP32 · hidden (B, d) FP32
           profile (B, P) INT64 · sequence (B, S) FP32 · user_embedding (B, d) FP32 [optional]
           reason_threshold (B, 1) FP32 [optional: reasons only for rows with p_fraud ≥ it]
      out  p_fraud, logit, deviation, deviation_log, surprise (B, 1) FP32 · reasons (B, S_signals) FP32
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPRM = "panther_sprm"  # the full-window model: the reference (exported with `panther export --reference`)
USER_ENCODER = "panther_user_encoder"
REFRESH = "panther_refresh"
SCORE = "panther_score"
MODELS = (SCORE, REFRESH, USER_ENCODER, SPRM)  # every model export knows; a repository holds some
WORKER_MODELS = (SCORE, REFRESH, USER_ENCODER)  # what the worker and the backtest call
N_PROB_STATS = 5  # (n, μ_P, σ_P, μ_logP, σ_logP): models.fraud.replay.N_PROB_STATS

NUMPY_DTYPES: dict[str, type[np.generic]] = {"INT64": np.int64, "FP32": np.float32, "FP64": np.float64}
HEAD_OUTPUTS = ("p_fraud", "logit", "deviation", "deviation_log", "reasons")
ENCODER_OUTPUTS = ("surprise", "logp_new", "seq_embedding", "user_embedding")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton name without TYPE_: INT64 | FP32 | FP64
    dims: tuple[int, ...]  # without the batch dimension; -1 = variable
    optional: bool = False

    def render(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        optional = ", optional: true" if self.optional else ""
        return f'  {{ name: "{self.name}", data_type: TYPE_{self.dtype}, dims: [ {dims} ]{optional} }}'


@dataclass(frozen=True)
class ArtefactInfo:
    """What the I/O schema depends on, read from a loaded artefact (`ArtefactRunner.info`)."""

    model_version: str  # config.json model_version, e.g. "panther-1a2b3c4d"
    tokenizer_hash: str  # tokenizer content hash recorded in config.json
    tokenizer_version: str
    vocab_size: int
    max_len: int  # L
    d_model: int  # d
    profile_cardinalities: tuple[int, ...]  # (P,)
    n_features: int = 0  # F; 0 without a fraud head
    signal_names: tuple[str, ...] = field(default_factory=tuple)  # (S,); () without a fraud head
    sequence_dim: int = 0  # the head's own sequence input kept per user (0: it reads h_u, or none)
    head_sha256: str = ""  # fraud_head.json's weights_sha256 ("" without a head)

    @property
    def has_head(self) -> bool:
        return self.n_features > 0

    @property
    def n_profile(self) -> int:
        return len(self.profile_cardinalities)


def _profile_dims(info: ArtefactInfo) -> tuple[int, ...]:
    # Triton rejects a 0 dim; a profile-less model takes (B, 0) through a variable dim.
    return (info.n_profile,) if info.n_profile else (-1,)


def sprm_inputs(info: ArtefactInfo) -> list[TensorSpec]:
    specs = [
        TensorSpec("tokens", "INT64", (info.max_len,)),
        TensorSpec("lengths", "INT64", (1,)),
        TensorSpec("profile", "INT64", _profile_dims(info)),
        TensorSpec("new_token", "INT64", (1,)),
    ]
    if info.has_head:
        specs += [
            TensorSpec("txn_features", "FP32", (info.n_features,)),
            TensorSpec("prob_stats", "FP64", (N_PROB_STATS,)),
        ]
    return [*specs, TensorSpec("user_embedding", "FP32", (info.d_model,), optional=True)]


def sprm_outputs(info: ArtefactInfo) -> list[TensorSpec]:
    d = info.d_model
    specs = []
    if info.has_head:
        specs += [TensorSpec(n, "FP32", (1,)) for n in ("p_fraud", "logit", "deviation", "deviation_log")]
    specs += [
        TensorSpec("surprise", "FP32", (1,)),
        TensorSpec("logp_new", "FP32", (1,)),
        TensorSpec("seq_embedding", "FP32", (d,)),
        TensorSpec("user_embedding", "FP32", (d,)),
    ]
    if info.has_head:
        specs.append(TensorSpec("reasons", "FP32", (len(info.signal_names),)))
    return specs


def encoder_inputs(info: ArtefactInfo) -> list[TensorSpec]:
    return [TensorSpec("profile", "INT64", _profile_dims(info))]


def encoder_outputs(info: ArtefactInfo) -> list[TensorSpec]:
    return [TensorSpec("user_embedding", "FP32", (info.d_model,))]


def refresh_inputs(info: ArtefactInfo) -> list[TensorSpec]:
    return [
        TensorSpec("tokens", "INT64", (info.max_len,)),
        TensorSpec("lengths", "INT64", (1,)),
        TensorSpec("profile", "INT64", _profile_dims(info)),
        TensorSpec("positions", "INT64", (-1,)),
    ]


def refresh_outputs(info: ArtefactInfo) -> list[TensorSpec]:
    specs = [TensorSpec("hidden", "FP32", (-1, info.d_model)), TensorSpec("lse", "FP32", (-1,))]
    if info.sequence_dim:
        specs.append(TensorSpec("sequence", "FP32", (-1, info.sequence_dim)))
    return specs


def score_inputs(info: ArtefactInfo) -> list[TensorSpec]:
    specs = [
        TensorSpec("txn_features", "FP32", (info.n_features,)),
        TensorSpec("prob_stats", "FP64", (N_PROB_STATS,)),
        TensorSpec("logp_new", "FP32", (1,)),
        TensorSpec("hidden", "FP32", (info.d_model,)),
        TensorSpec("profile", "INT64", _profile_dims(info)),
    ]
    if info.sequence_dim:
        specs.append(TensorSpec("sequence", "FP32", (info.sequence_dim,)))
    return [
        *specs,
        TensorSpec("user_embedding", "FP32", (info.d_model,), optional=True),
        TensorSpec("reason_threshold", "FP32", (1,), optional=True),
    ]


def score_outputs(info: ArtefactInfo) -> list[TensorSpec]:
    rows = ("p_fraud", "logit", "deviation", "deviation_log", "surprise")
    reasons = TensorSpec("reasons", "FP32", (len(info.signal_names),))
    return [*(TensorSpec(n, "FP32", (1,)) for n in rows), reasons]
