"""log P_u(x) of a new transaction from the user's cached encoder state: the item table, no encoder.

The pretrained model scores the next token as `logits = queries(h) · item_table()ᵀ / T` and
normalizes over the whole vocabulary (`models.fraud.encoder_pass.next_token_logprob`). The normalizer
depends only on h, so it is computed once per refresh and cached (`Prediction.lse`); what is left per
event is one row of the item table and one dot product:

    log P_u(x) = queries(h_u) · item_table[x] / T − lse_u

numpy only (the stream imports it, and must not load torch to score through Triton). The table is read
straight from the artefact's `weights.safetensors` with safetensors' numpy loader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.tokenizer.reserved import NON_TARGET_IDS

TOKEN_EMBEDDING = "token_embedding.weight"  # PantherModel's tied item table (state-dict key)
_NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's default


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows to unit L2 norm, as `F.normalize(x, dim=-1)` does (norm floored at 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _NORMALIZE_EPS)


@dataclass(frozen=True)
class NextTokenTable:
    """The frozen encoder's item table in its similarity space, with the temperature it was trained at.

    >>> items = np.zeros((6, 2), np.float32); items[4] = (1.0, 0.0)
    >>> table = NextTokenTable(items, cosine=False, temperature=1.0)
    >>> table.logp(np.array([[2.0, 0.0]], np.float32), np.array([1.5], np.float32), np.array([4]))
    array([0.5], dtype=float32)
    """

    items: np.ndarray  # (V, d) float32 — item_table(): the token embeddings, L2-normalized if cosine
    cosine: bool
    temperature: float

    def __post_init__(self) -> None:
        never = np.zeros(len(self.items), dtype=bool)
        never[[i for i in NON_TARGET_IDS if i < len(never)]] = True
        object.__setattr__(self, "_never", never)

    @classmethod
    def from_artifact_dir(cls, path: str | Path, temperature: float) -> NextTokenTable:
        """From `config.json` (the similarity) and `weights.safetensors` (the token embeddings)."""
        from safetensors import safe_open

        path = Path(path)
        config = json.loads((path / "config.json").read_text("utf-8"))["model"]
        with safe_open(str(path / "weights.safetensors"), framework="np") as weights:
            items = np.ascontiguousarray(weights.get_tensor(TOKEN_EMBEDDING), dtype=np.float32)
        cosine = config.get("similarity", "dot") == "cosine"
        return cls(_normalize(items) if cosine else items, cosine, float(temperature))

    @property
    def vocab_size(self) -> int:
        return int(self.items.shape[0])

    def queries(self, hidden: np.ndarray) -> np.ndarray:
        """(B, d) → (B, d) in the similarity space (PantherModel.queries)."""
        hidden = np.asarray(hidden, dtype=np.float32)
        return _normalize(hidden) if self.cosine else hidden

    def logp(self, hidden: np.ndarray, lse: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """hidden (B, d) float32, lse (B,), tokens (B,) int64 → log P(token | window) (B,) float32."""
        tokens = np.asarray(tokens, dtype=np.int64)
        scores = np.einsum("bd,bd->b", self.queries(hidden), self.items[tokens])
        logits = scores / np.float32(self.temperature)
        logits = np.where(self._never[tokens], -np.inf, logits)  # type: ignore[attr-defined]
        return (logits - np.asarray(lse, dtype=np.float32)).astype(np.float32)
