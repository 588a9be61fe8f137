"""Which fields make a token, and how the numeric and risk fields are discretised.

Why a dataclass: the same tokenizer code serves transactions (channel × amount bucket × merchant
category × merchant risk) and item catalogues (one raw id per token, MovieLens), so the schema is
data, not code. The config is stored inside tokenizer.json, so a saved tokenizer re-encodes exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TokenizerConfig:
    """Token = Cartesian product of `contextual + counterparty` field levels, joined by `separator`.

    - fields in `numeric` are bucketed on log-quantile edges fit on the training data
      (`amount_buckets` buckets at most; fewer when the data has heavy point masses);
    - `risk_field` comes from the data when that column exists, else it is derived per
      `risk_entity` (merchant) from the smoothed training fraud rate in `label_field`, else "unknown";
    - every other field is categorical (its string value; missing → "∅").

    >>> TokenizerConfig().fields
    ('channel', 'amount', 'merchant_category', 'merchant_risk')
    >>> TokenizerConfig.for_items("item_id", top_k=5000).fields
    ('item_id',)
    """

    contextual: tuple[str, ...] = ("channel", "amount")
    counterparty: tuple[str, ...] = ("merchant_category", "merchant_risk")
    numeric: tuple[str, ...] = ("amount",)
    amount_buckets: int = 16
    currency_symbol: str = "$"
    risk_field: str | None = "merchant_risk"
    risk_entity: str = "merchant_id"
    label_field: str = "is_fraud"
    risk_prior_strength: float = 50.0  # pseudo-transactions at the global fraud rate (additive smoothing)
    risk_thresholds: tuple[float, float] = (
        2.0,
        5.0,
    )  # smoothed rate / global rate: ≤2 low, ≤5 medium, >5 high
    top_k: int = 60_000
    separator: str = "|"

    def __post_init__(self) -> None:
        names = self.fields
        if not names:
            raise ValueError("TokenizerConfig needs at least one field")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate token fields: {names}")
        unknown = [n for n in self.numeric if n not in names]
        if unknown:
            raise ValueError(f"numeric fields {unknown} are not token fields {names}")
        if self.risk_field is not None and self.risk_field in self.numeric:
            raise ValueError(f"risk field {self.risk_field!r} cannot also be numeric")
        if self.top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {self.top_k}")
        if self.amount_buckets < 1:
            raise ValueError(f"amount_buckets must be ≥ 1, got {self.amount_buckets}")
        low, high = self.risk_thresholds
        if not 0 < low <= high:
            raise ValueError(f"risk_thresholds must satisfy 0 < low ≤ high, got {self.risk_thresholds}")
        if self.risk_prior_strength < 0:
            raise ValueError("risk_prior_strength must be ≥ 0")

    @property
    def fields(self) -> tuple[str, ...]:
        """Token fields in name order: contextual first, then counterparty."""
        return tuple(self.contextual) + tuple(self.counterparty)

    def kind(self, name: str) -> str:
        """'numeric', 'risk' or 'categorical' for a token field."""
        if name in self.numeric:
            return "numeric"
        if name == self.risk_field:
            return "risk"
        return "categorical"

    @classmethod
    def for_items(cls, field: str = "item_id", top_k: int = 60_000) -> TokenizerConfig:
        """One raw categorical field per token (MovieLens: the movie id)."""
        return cls(contextual=(), counterparty=(field,), numeric=(), risk_field=None, top_k=top_k)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerConfig:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"unknown tokenizer config keys: {extra}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
