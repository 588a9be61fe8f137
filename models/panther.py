"""The PANTHER model: token + positional embeddings, user profile, SPRM-transformer blocks, tied head.

    batch.tokens (B, T) ──embed──► (B, T, d) + positions ──profile──► blocks ×L ──LN──► hidden (B, T, d)
    logits(hidden)  = queries(hidden) @ item_table()ᵀ            (…, d) → (…, V)   tied to the embeddings

Profile modes (paper §3.4, `profile_mode`): `"none"`; `"positional"` — the profile vector is added to
every position (the paper's better variant, our default); `"first_token"` — the profile vector is a
token prepended at position 0 and the output is shifted back, so the API is identical.

SASRec and the paper's ablations are the same class with different `PantherConfig`s; use the small
factories at the bottom (`panther_config`, `sasrec_config`, `ablation_configs`), never flags in callers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.batch import PAD_ID, SequenceBatch
from models.block import BlockConfig, PantherBlock
from models.losses import NextTokenLoss
from models.profile import ContrastiveHead, DemographicRule, ProfileEncoder, info_nce
from models.relative_bias import RELATIVE_BIASES, RelativeIndex, relative_index
from models.sprm import SPRMConfig
from models.tokenizer.reserved import NON_TARGET_IDS


@dataclass(frozen=True)
class PantherConfig:
    vocab_size: int
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 2
    max_len: int = 100
    dropout: float = 0.1
    ffn_mult: int = 4
    use_attention: bool = True
    use_sprm: bool = True
    attention_impl: str = "sdpa"  # "sdpa" | "naive"
    n_prototypes: int = 64
    prototype_heads: int | None = None  # None → n_heads
    conv_kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4)
    sprm_recompute: bool = False  # recompute SPRM in backward (less memory, ~one more SPRM forward)
    profile_mode: str = "positional"  # "none" | "positional" | "first_token"
    profile_cardinalities: tuple[int, ...] = ()
    contrastive_weight: float = 0.1  # λ in L = L_gen + λ·L_CL
    contrastive_temperature: float = 0.1  # τ of the InfoNCE term
    contrastive_tolerances: tuple[float, ...] = (2.0, 0.0)  # per demographic column (age ± 2, same region)
    similarity: str = "dot"  # "dot" | "cosine" — how queries meet the tied item table
    scale_embeddings: bool = False  # token embeddings × √d before the positions (SASRec / HSTU reference)
    relative_bias: str = "none"  # "none" | "position" | "position_time" (models.relative_bias)
    name: str = "panther"

    def __post_init__(self) -> None:
        if self.profile_mode not in PROFILE_MODES:
            raise ValueError(
                f"profile_mode must be one of {sorted(PROFILE_MODES)}, got {self.profile_mode!r}"
            )
        if self.profile_mode != "none" and not self.profile_cardinalities:
            raise ValueError(f"profile_mode={self.profile_mode!r} needs profile_cardinalities")
        if self.relative_bias not in RELATIVE_BIASES:
            raise ValueError(f"relative_bias must be one of {RELATIVE_BIASES}, got {self.relative_bias!r}")
        if self.similarity not in _SIMILARITIES:
            raise ValueError(f"similarity must be one of {sorted(_SIMILARITIES)}, got {self.similarity!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PantherConfig:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def block_config(self) -> BlockConfig:
        sprm = SPRMConfig(
            d_model=self.d_model,
            n_prototypes=self.n_prototypes,
            kernel=self.conv_kernel,
            dilations=self.dilations,
            n_heads=self.prototype_heads or self.n_heads,
            dropout=self.dropout,
            recompute=self.sprm_recompute,
        )
        return BlockConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            dropout=self.dropout,
            ffn_mult=self.ffn_mult,
            use_attention=self.use_attention,
            use_sprm=self.use_sprm,
            attention_impl=self.attention_impl,
            sprm=sprm,
            relative_bias=self.relative_bias,
            max_len=self.max_len + PROFILE_MODES[self.profile_mode].extra_positions,
        )


class _NoProfile:
    extra_positions = 0

    @staticmethod
    def inject(h: torch.Tensor, profile: torch.Tensor | None) -> torch.Tensor:
        return h

    @staticmethod
    def strip(hidden: torch.Tensor) -> torch.Tensor:
        return hidden


class _PositionalProfile(_NoProfile):
    """Profile vector (B, d) added to every position of (B, T, d)."""

    @staticmethod
    def inject(h: torch.Tensor, profile: torch.Tensor | None) -> torch.Tensor:
        assert profile is not None
        return h + profile.unsqueeze(1)


class _FirstTokenProfile(_NoProfile):
    """Profile vector prepended as position 0: (B, T, d) → (B, T+1, d); `strip` drops it again."""

    extra_positions = 1

    @staticmethod
    def inject(h: torch.Tensor, profile: torch.Tensor | None) -> torch.Tensor:
        assert profile is not None
        return torch.cat([profile.unsqueeze(1), h], dim=1)

    @staticmethod
    def strip(hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 1:]


PROFILE_MODES: dict[str, type[_NoProfile]] = {
    "none": _NoProfile,
    "positional": _PositionalProfile,
    "first_token": _FirstTokenProfile,
}
_RESIDUAL_WRITERS = ("attention.out", "prototypes.out", "ffn.3")  # module names ending a residual branch
_SIMILARITIES = {"dot": lambda x: x, "cosine": lambda x: F.normalize(x, dim=-1)}


class LossParts(NamedTuple):
    total: torch.Tensor  # scalar: generative + λ · contrastive
    generative: torch.Tensor  # scalar
    contrastive: torch.Tensor  # scalar (0 when disabled or no anchor has a positive)


class PantherModel(nn.Module):
    """PANTHER / SASRec / ablations: `forward(batch)` (B, T) → hidden (B, T, d).

    >>> model = PantherModel(sasrec_config(vocab_size=20, d_model=8, n_layers=1, n_heads=1, max_len=6))
    >>> batch = SequenceBatch(tokens=torch.tensor([[2, 3, 0]]), lengths=torch.tensor([2]),
    ...                       profile=torch.zeros(1, 0, dtype=torch.long))
    >>> model(batch).shape, model.logits(model.sequence_embedding(batch)).shape
    (torch.Size([1, 3, 8]), torch.Size([1, 20]))
    """

    def __init__(self, config: PantherConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self._profile_mode = PROFILE_MODES[config.profile_mode]
        self._similarity = _SIMILARITIES[config.similarity]
        self.token_embedding = nn.Embedding(config.vocab_size, d, padding_idx=PAD_ID)
        self.position_embedding = nn.Embedding(config.max_len + self._profile_mode.extra_positions, d)
        self.profile_encoder = (
            ProfileEncoder(config.profile_cardinalities, d) if config.profile_mode != "none" else None
        )
        self.embed_dropout = nn.Dropout(config.dropout)
        block_config = config.block_config()
        self.blocks = nn.ModuleList(PantherBlock(block_config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.contrastive_head = ContrastiveHead(d) if config.contrastive_weight > 0 else None
        self._rule = DemographicRule(config.contrastive_tolerances)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2-style init: every linear and embedding N(0, 0.02), zero biases, and the projections that
        write into the residual stream scaled by 1/√(2·n_layers), so that at init the token and position
        embeddings are not drowned by the blocks' outputs (PyTorch's default linear init gives block
        outputs ~25× larger than 0.02-scale embeddings) and the stream's variance does not grow with depth.
        """
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=residual_std if name.endswith(_RESIDUAL_WRITERS) else 0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        with torch.no_grad():
            self.token_embedding.weight[PAD_ID].zero_()

    @classmethod
    def from_artifact(cls, artifact: Any) -> PantherModel:
        """Rebuild from a loaded artefact (`models.artifact.load_artifact`): config["model"] + weights."""
        model = cls(PantherConfig.from_dict(artifact.config["model"]))
        model.load_state_dict(artifact.state_dict)
        return model.eval()

    # ---- encoding ---------------------------------------------------------------------------------
    def forward(self, batch: SequenceBatch) -> torch.Tensor:
        """tokens (B, T) [+ profile (B, P)] → hidden (B, T, d); causal, padding-proof."""
        h, index = self._embed(batch)
        for block in self.blocks:
            h = block(h, index)
        return self._profile_mode.strip(self.final_norm(h))

    def hidden_at(self, batch: SequenceBatch, positions: torch.Tensor) -> torch.Tensor:
        """`forward(batch)` read at `positions` (B, K) (each in 0..T−1) → (B, K, d), equal to gathering
        them from the full output (tested). The last block runs only for those positions: a serving
        call reads one state per window, and the last block's queries, branch outputs and feed-forward
        over the other T − 1 positions were work nobody read (`models.fraud.encoder_pass`)."""
        h, index = self._embed(batch)
        for block in self.blocks[:-1]:
            h = block(h, index)
        at = positions + self._profile_mode.extra_positions  # a prepended profile token shifts them
        return self.final_norm(self.blocks[-1].forward_at(h, at, index))

    def _embed(self, batch: SequenceBatch) -> tuple[torch.Tensor, RelativeIndex | None]:
        """tokens (B, T) [+ profile (B, P)] → the first block's input (B, T [+1], d) and the relative
        indices every block's bias reads."""
        tokens = batch.tokens
        if tokens.shape[1] > self.config.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len={self.config.max_len}")
        h = self.token_embedding(tokens)
        if self.config.scale_embeddings:
            h = h * math.sqrt(self.config.d_model)
        profile = self.profile_encoder(batch.profile) if self.profile_encoder is not None else None
        h = self._profile_mode.inject(h, profile)
        positions = torch.arange(h.shape[1], device=tokens.device)
        h = self.embed_dropout(h + self.position_embedding(positions))
        return h, self._relative_index(batch, h.shape[1])

    def _relative_index(self, batch: SequenceBatch, width: int) -> RelativeIndex | None:
        """The relative positions [and time buckets] every block's bias reads; None without a bias.

        A prepended profile token takes the time of the row's first event (gap 0 to it)."""
        if self.config.relative_bias == "none":
            return None
        times = batch.times
        if times is not None and self._profile_mode.extra_positions:
            times = torch.cat([times[:, :1], times], dim=1)
        use_time = self.config.relative_bias == "position_time"
        return relative_index(times, width, use_time, device=batch.tokens.device)

    def sequence_embedding(self, batch: SequenceBatch, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) → (B, d): the hidden state at each row's last real position (it predicts the next token)."""
        hidden = self(batch) if hidden is None else hidden
        last = (batch.lengths - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def user_embedding(self, profile: torch.Tensor) -> torch.Tensor:
        """Profile ids (B, P) → (B, d): the learned profile vector e_u; zeros for models without a profile."""
        if self.profile_encoder is None:
            return torch.zeros(profile.shape[0], self.config.d_model, device=profile.device)
        return self.profile_encoder(profile)

    # ---- scoring ----------------------------------------------------------------------------------
    def queries(self, hidden: torch.Tensor) -> torch.Tensor:
        """(…, d) → (…, d) in the similarity space (L2-normalized when `similarity="cosine"`)."""
        return self._similarity(hidden)

    def item_table(self) -> torch.Tensor:
        """(V, d): the tied token embeddings in the similarity space."""
        return self._similarity(self.token_embedding.weight)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(…, d) → (…, V) next-token scores; the reserved non-target ids (PAD, MASK, PROFILE) are −inf."""
        scores = self.queries(hidden) @ self.item_table().T.to(hidden.dtype)
        never = torch.tensor([i for i in NON_TARGET_IDS if i < scores.shape[-1]], device=scores.device)
        return scores.index_fill(-1, never, float("-inf"))

    # ---- training objective -----------------------------------------------------------------------
    def training_loss(self, batch: SequenceBatch, next_token_loss: NextTokenLoss) -> LossParts:
        """L = L_gen + λ·L_CL on a batch with `targets` (B, T) (PAD where none), optional `demographics`."""
        if batch.targets is None:
            raise ValueError("training_loss needs batch.targets")
        hidden = self(batch)
        real = (batch.targets != PAD_ID) & batch.padding_mask
        generative = next_token_loss(self.queries(hidden[real]), batch.targets[real], self.item_table())
        contrastive = self._contrastive(batch, hidden)
        total = generative + self.config.contrastive_weight * contrastive
        return LossParts(total, generative.detach(), contrastive.detach())

    def _contrastive(self, batch: SequenceBatch, hidden: torch.Tensor) -> torch.Tensor:
        """InfoNCE on the projected mean of each user's real hidden states; positives by demographics."""
        if self.contrastive_head is None or batch.demographics is None:
            return hidden.new_zeros((), dtype=torch.float32)
        mask = batch.padding_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        positives = self._rule.positives(batch.demographics)
        return info_nce(self.contrastive_head(pooled), positives, self.config.contrastive_temperature)


# ---- factories: the only place model variants are spelled out -----------------------------------------
def panther_config(
    vocab_size: int, profile_cardinalities: tuple[int, ...] | list[int] = (), **kw: Any
) -> PantherConfig:
    """Full PANTHER: SPRM ∥ attention, profile as positional encoding, contrastive λ = 0.1.

    Without profile fields the profile and the contrastive term are switched off (nothing to encode).
    """
    cards = tuple(int(c) for c in profile_cardinalities)
    base: dict[str, Any] = {"profile_mode": "positional", "name": "panther"}
    if not cards:
        base |= {"profile_mode": "none", "contrastive_weight": 0.0}
    return PantherConfig(vocab_size=vocab_size, profile_cardinalities=cards, **(base | kw))


def sasrec_config(vocab_size: int, **kw: Any) -> PantherConfig:
    """SASRec: the same causal transformer without SPRM, profile or contrastive term."""
    base: dict[str, Any] = {
        "use_sprm": False,
        "profile_mode": "none",
        "contrastive_weight": 0.0,
        "name": "sasrec",
    }
    return PantherConfig(vocab_size=vocab_size, **(base | kw))


def sprm_only_config(vocab_size: int, **kw: Any) -> PantherConfig:
    """Ablation step 1 ("SPRM only"): SPRM ∥ attention, no profile, no contrastive term."""
    base: dict[str, Any] = {"profile_mode": "none", "contrastive_weight": 0.0, "name": "sprm_only"}
    return PantherConfig(vocab_size=vocab_size, **(base | kw))


@dataclass(frozen=True)
class AblationStep:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


# The paper's Table 1 ladder, each step on top of "SPRM only".
ABLATION_LADDER: tuple[AblationStep, ...] = (
    AblationStep("sprm_only", {"profile_mode": "none", "contrastive_weight": 0.0}),
    AblationStep("profile_first_token", {"profile_mode": "first_token", "contrastive_weight": 0.0}),
    AblationStep("profile_pe", {"profile_mode": "positional", "contrastive_weight": 0.0}),
    AblationStep("panther", {}),
)


def ablation_configs(
    vocab_size: int,
    profile_cardinalities: tuple[int, ...] | list[int],
    include_first_token: bool = True,
    **kw: Any,
) -> dict[str, PantherConfig]:
    """name → config for the ablation ladder (SPRM only, [+ first token], + profile PE, + contrastive)."""
    full = panther_config(vocab_size, profile_cardinalities, **kw)
    steps = [s for s in ABLATION_LADDER if include_first_token or s.name != "profile_first_token"]
    if not full.profile_cardinalities:  # no profile: every step would equal "SPRM only"
        return {"panther": full}
    return {s.name: replace(full, name=s.name, **s.overrides) for s in steps}
