"""The hybrid fraud head g_φ (paper §3.5): DCN over ψ(txn features), sequence encoding, e_u and Δ.

    P(fraud) = σ(g_φ[ψ(c_new), f_enc(window), e_u, deviation])

Input blocks (each standardized with training statistics stored in the head, so inputs of very
different scales meet the cross layers on equal terms):
- "txn"       (B, F)  hand-crafted transaction features → ψ (B, psi_dim): a linear layer, over the
              standardized features or (`numeric_encoding="ple"`) over their piecewise-linear encoding
- "sequence"  the last ≤ 100 transactions: `"panther"` = the frozen PANTHER window hidden state (B, d);
              `"textcnn"` = a TextCNN over token ids trained with the head (B, 3·filters); `"none"`
- "user"      e_u = PANTHER's `user_embedding(profile)` (B, d)
- "deviation" (B, 5) Δ, Δ_log, surprise, P, cold (models.fraud.deviation)

`blocks()` returns the post-encoder inputs that reasons attribute over; `fuse()` maps them to the logit.
Variants are spelled out only in `head_config()`; "dcn" (txn block only) is the paper's DCN baseline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from models.fraud.dcn import DCN, DCNConfig
from models.fraud.deviation import DEVIATION_NAMES
from models.fraud.encoder_pass import as_windows
from models.fraud.features import NUMERIC_NAMES
from models.fraud.textcnn import TextCNN, TextCNNConfig

SEQUENCE_KINDS = ("panther", "textcnn", "none")
NUMERIC_ENCODINGS = ("standard", "ple")
BLOCKS = ("txn", "sequence", "user", "deviation")
NORMALIZERS = ("txn_norm", "ple", "hidden_norm", "user_norm", "deviation_norm")  # fitted on training data


@dataclass(frozen=True)
class HeadConfig:
    n_features: int
    sequence: str = "panther"  # "panther" | "textcnn" | "none"
    use_user: bool = True
    use_deviation: bool = True
    d_model: int = 64  # PANTHER width (hidden state and e_u)
    vocab_size: int = 0  # TextCNN vocabulary (the tokenizer's)
    psi_dim: int = 32
    numeric_encoding: str = "standard"  # "standard" | "ple": piecewise-linear over quantile bins
    ple_bins: int = 8  # bins per numeric feature for "ple"
    n_numeric: int = 0  # the first n_numeric txn features are numeric (PLE); the rest one-hot
    block_dim: int = 16  # sequence and e_u blocks are projected to this width before the DCN
    block_dropout: float = 0.2  # dropout on those projections (few frauds, wide embeddings: overfitting)
    textcnn_embed: int = 32
    textcnn_kernels: tuple[int, ...] = (2, 3, 5)
    textcnn_filters: int = 32
    cross_layers: int = 3
    cross_rank: int | None = None
    deep_dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    name: str = "hybrid"

    def __post_init__(self) -> None:
        if self.sequence not in SEQUENCE_KINDS:
            raise ValueError(f"sequence must be one of {SEQUENCE_KINDS}, got {self.sequence!r}")
        if self.numeric_encoding not in NUMERIC_ENCODINGS:
            raise ValueError(
                f"numeric_encoding must be one of {NUMERIC_ENCODINGS}, got {self.numeric_encoding!r}")
        if self.sequence == "textcnn" and self.vocab_size < 2:
            raise ValueError("a TextCNN head needs vocab_size")

    @property
    def uses_encoder(self) -> bool:
        """Does scoring need the PANTHER encoder's outputs (hidden, e_u or deviation)?"""
        return self.sequence == "panther" or self.use_user or self.use_deviation

    def textcnn_config(self) -> TextCNNConfig:
        return TextCNNConfig(self.vocab_size, self.textcnn_embed, self.textcnn_kernels, self.textcnn_filters,
                             self.dropout)

    def psi_input_dim(self) -> int:
        """Width of ψ's input: F, or with PLE n_numeric × ple_bins + the one-hot columns."""
        if self.numeric_encoding == "standard":
            return self.n_features
        return self.n_numeric * self.ple_bins + self.n_features - self.n_numeric

    def sequence_dim(self) -> int:
        return {"panther": self.d_model, "textcnn": self.textcnn_config().out_dim, "none": 0}[self.sequence]

    def dcn_config(self) -> DCNConfig:
        dim = self.psi_dim + (self.block_dim if self.sequence != "none" else 0)
        dim += (self.block_dim if self.use_user else 0) + (len(DEVIATION_NAMES) if self.use_deviation else 0)
        return DCNConfig(dim, self.cross_layers, self.cross_rank, self.deep_dims, self.dropout)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


HEAD_VARIANTS = ("dcn", "hybrid_panther", "hybrid_textcnn")


def head_config(
    variant: str, n_features: int, d_model: int = 64, vocab_size: int = 0, **kw: Any
) -> HeadConfig:
    """The head variants compared in the bench; the only place they are spelled out.

    - "dcn": the DCN over transaction features alone (the paper's baseline)
    - "hybrid_panther": + frozen PANTHER hidden state, e_u and deviation
    - "hybrid_textcnn": + TextCNN over the window's tokens, e_u and deviation
    """
    presets: dict[str, dict[str, Any]] = {
        "dcn": {"sequence": "none", "use_user": False, "use_deviation": False},
        "hybrid_panther": {"sequence": "panther"},
        "hybrid_textcnn": {"sequence": "textcnn"},
    }
    if variant not in presets:
        raise ValueError(f"unknown head variant {variant!r} (one of {HEAD_VARIANTS})")
    numeric = {"n_numeric": min(len(NUMERIC_NAMES), n_features)}
    return HeadConfig(n_features=n_features, d_model=d_model, vocab_size=vocab_size, name=variant,
                      **(presets[variant] | numeric | kw))


@dataclass(frozen=True)
class HeadInputs:
    """One batch of head inputs; unused ones may be None (shapes: B rows)."""

    features: torch.Tensor  # (B, F) float32
    hidden: torch.Tensor | None = None  # (B, d) PANTHER window hidden state
    window_tokens: torch.Tensor | None = None  # (B, L) int64 right-padded (TextCNN)
    window_lengths: torch.Tensor | None = None  # (B,) int64, 0 = empty window
    user: torch.Tensor | None = None  # (B, d) e_u
    deviation: torch.Tensor | None = None  # (B, 5)
    sequence: torch.Tensor | None = None  # (B, S) a precomputed TextCNN encoding (cached state)


class _Standardize(nn.Module):
    """x → (x − mean) / std with training statistics (buffers, saved with the head)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, values: torch.Tensor) -> None:
        values = values.detach().float()
        self.mean.copy_(values.mean(dim=0))
        self.std.copy_(values.std(dim=0).nan_to_num(1.0).clamp(min=1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class FraudHead(nn.Module):
    """HeadInputs → fraud logit (B,).

    >>> head = FraudHead(head_config("hybrid_panther", n_features=4, d_model=8, deep_dims=(8,)))
    >>> x = HeadInputs(torch.zeros(2, 4), hidden=torch.zeros(2, 8), user=torch.zeros(2, 8),
    ...                deviation=torch.zeros(2, 5))
    >>> head(x).shape, list(head.blocks(x))
    (torch.Size([2]), ['txn', 'sequence', 'user', 'deviation'])
    """

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.txn_norm = _Standardize(config.n_features)
        self.ple = (PiecewiseLinear(config.n_numeric, config.ple_bins)
                    if config.numeric_encoding == "ple" else None)
        self.psi = nn.Linear(config.psi_input_dim(), config.psi_dim)
        self.hidden_norm = _Standardize(config.d_model) if config.sequence == "panther" else None
        self.textcnn = TextCNN(config.textcnn_config()) if config.sequence == "textcnn" else None
        self.user_norm = _Standardize(config.d_model) if config.use_user else None
        self.deviation_norm = _Standardize(len(DEVIATION_NAMES)) if config.use_deviation else None
        seq_dim = config.sequence_dim()
        self.register_buffer("sequence_baseline", torch.zeros(seq_dim))  # TextCNN: mean training encoding
        self.projections = nn.ModuleDict()
        if config.sequence != "none":
            self.projections["sequence"] = _projection(seq_dim, config)
        if config.use_user:
            self.projections["user"] = _projection(config.d_model, config)
        self.dcn = DCN(config.dcn_config())

    def fit_normalization(self, inputs: HeadInputs) -> None:
        """Standardization statistics from (a sample of) the training inputs."""
        self.txn_norm.fit(inputs.features)
        if self.ple is not None:
            self.ple.fit(self.txn_norm(inputs.features)[:, : self.config.n_numeric])
        for norm, values in ((self.hidden_norm, inputs.hidden), (self.user_norm, inputs.user),
                             (self.deviation_norm, inputs.deviation)):
            if norm is not None and values is not None:
                norm.fit(values)

    @torch.no_grad()
    def copy_normalization(self, other: FraudHead) -> None:
        """Take `other`'s standardization (and PLE bins): the members of an ensemble share one."""
        if other.config != self.config:
            raise ValueError("copy_normalization needs a head of the same config")
        for name in NORMALIZERS:
            mine = getattr(self, name)
            if mine is not None:
                mine.load_state_dict(getattr(other, name).state_dict())

    @torch.no_grad()
    def fit_sequence_baseline(self, inputs: HeadInputs) -> None:
        """The reasons' reference point for a TextCNN encoding: its mean over training windows."""
        if self.textcnn is not None:
            was = self.training
            self.eval()
            self.sequence_baseline.copy_(self.blocks(inputs)["sequence"].mean(dim=0))
            self.train(was)

    def blocks(self, inputs: HeadInputs) -> dict[str, torch.Tensor]:
        """The attribution-level inputs: standardized txn features, sequence encoding, e_u, deviation."""
        out = {"txn": self.txn_norm(inputs.features)}
        if self.hidden_norm is not None:
            out["sequence"] = self.hidden_norm(_need(inputs.hidden, "hidden"))
        elif self.textcnn is not None:
            out["sequence"] = inputs.sequence if inputs.sequence is not None else self.encode_sequence(
                _need(inputs.window_tokens, "window_tokens"), _need(inputs.window_lengths, "window_lengths"))
        if self.user_norm is not None:
            out["user"] = self.user_norm(_need(inputs.user, "user"))
        if self.deviation_norm is not None:
            out["deviation"] = self.deviation_norm(_need(inputs.deviation, "deviation"))
        return out

    def encode_sequence(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The TextCNN's encoding of windows (B, T), lengths (B,) (0 = empty) → (B, S); what the cached
        path stores per user, since it depends on the window alone."""
        if self.textcnn is None:
            raise ValueError("this head has no TextCNN")
        return self.textcnn(*as_windows(tokens, lengths))

    def baselines(self, blocks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reference inputs for attribution: the training mean of every block (0 after standardizing)."""
        out = {name: torch.zeros_like(value) for name, value in blocks.items()}
        if "sequence" in out and self.textcnn is not None:
            out["sequence"] = self.sequence_baseline.expand_as(blocks["sequence"])
        return out

    def fuse(self, blocks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Blocks → logit: ψ(txn), projected sequence and e_u, raw deviation, concatenated into the DCN."""
        parts = [self.psi(self.encode_txn(blocks["txn"]))]
        for name in BLOCKS[1:]:
            if name in blocks:
                project = self.projections[name] if name in self.projections else nn.Identity()
                parts.append(project(blocks[name]))
        return self.dcn(torch.cat(parts, dim=1))

    def encode_txn(self, txn: torch.Tensor) -> torch.Tensor:
        """Standardized features (B, F) → ψ's input (B, psi_input_dim)."""
        if self.ple is None:
            return txn
        n = self.config.n_numeric
        return torch.cat([self.ple(txn[:, :n]), txn[:, n:]], dim=1)

    def forward(self, inputs: HeadInputs) -> torch.Tensor:
        return self.fuse(self.blocks(inputs))


class PiecewiseLinear(nn.Module):
    """(B, F) → (B, F·T): each feature's piecewise-linear encoding over T quantile bins of training data.

    Gorishniy et al. 2022 ("On embeddings for numerical features in tabular deep learning"): component t
    is 0 below bin t, 1 above it and linear inside, the first bin open below and the last open above,
    so ψ, a linear layer over it, learns a piecewise-linear function of every feature. Why: the trees
    beat a DCN over standardized features on the same inputs, and heavy-tailed or step-like features
    (gaps, velocities, z-scores) are what an affine map of a standardized value fits worst.
    """

    def __init__(self, n: int, bins: int) -> None:
        super().__init__()
        self.register_buffer("lower", torch.zeros(n, bins))  # left edge of bin t
        self.register_buffer("width", torch.ones(n, bins))
        low = torch.zeros(bins)
        low[0] = -torch.inf
        high = torch.ones(bins)
        high[-1] = torch.inf
        self.register_buffer("floor", low)
        self.register_buffer("ceiling", high)

    @torch.no_grad()
    def fit(self, values: torch.Tensor) -> None:
        """Bin edges at the quantiles of (N, F) training values (standardized). A feature with fewer
        distinct values than bins (a flag) repeats edges: an inner zero-width bin acts as a step."""
        bins = self.lower.shape[1]
        q = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
        edges = torch.quantile(values.detach().double(), q, dim=0).T  # (F, T + 1)
        width = edges[:, 1:] - edges[:, :-1]
        open_ended = torch.zeros_like(width, dtype=torch.bool)
        open_ended[:, [0, -1]] = True
        # an open bin of zero width would extrapolate with slope 10⁶: give it one σ instead
        width = torch.where(open_ended & (width < 1e-6), torch.ones_like(width), width.clamp(min=1e-6))
        self.lower.copy_(edges[:, :-1].float())
        self.width.copy_(width.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.float().unsqueeze(2) - self.lower) / self.width
        return torch.maximum(torch.minimum(z, self.ceiling), self.floor).flatten(1)


def _projection(dim: int, config: HeadConfig) -> nn.Module:
    return nn.Sequential(nn.Dropout(config.block_dropout), nn.Linear(dim, config.block_dim))


def _need(value: torch.Tensor | None, name: str) -> torch.Tensor:
    if value is None:
        raise ValueError(f"this fraud head needs the input {name!r}")
    return value
