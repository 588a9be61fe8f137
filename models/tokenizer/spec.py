"""One token field as fitted: its kind, its levels and, per kind, how raw values reach a level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.tokenizer.amount import as_amounts, bucket_of
from models.tokenizer.levels import column_levels, level_string
from models.tokenizer.reserved import MISSING
from models.tokenizer.risk import LOW, RISK_ORDER, UNKNOWN

KINDS = ("categorical", "numeric", "risk")
RISK_SOURCES = ("column", "derived", "none")


@dataclass(frozen=True)
class FieldSpec:
    """A fitted token field.

    levels: the level strings used by the kept vocabulary (ordered: buckets ascending, risk
    low→high, others by string). Codes index this tuple; `len(levels)` is the code of an unseen level.
    edges: numeric only, the bucket edges (ascending). labels: numeric only, one per bucket.
    source/entity/risky: risk only — where the level comes from; for "derived", the entity column and
    the entities whose level is not "low" (all others, including unseen ones, are "low").
    """

    name: str
    kind: str
    levels: tuple[str, ...]
    edges: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    source: str = ""
    entity: str = ""
    risky: dict[str, str] = field(default_factory=dict)
    _level_codes: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)
    # codes_of's constants (numeric: edges, bucket → code; risk "none": the code of every row), built once:
    # two pandas Indexes a batch were a fixed ~0.3 ms of every micro-batch's tokenizing
    _batch_constants: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False,
                                                                   compare=False)  # fmt: skip

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "risk" and self.source not in RISK_SOURCES:
            raise ValueError(f"field {self.name!r}: unknown risk source {self.source!r}")
        if self.kind == "numeric" and len(self.labels) != len(self.edges) + 1:
            raise ValueError(
                f"field {self.name!r}: {len(self.edges)} edges need {len(self.edges) + 1} labels"
            )

    @property
    def unseen(self) -> int:
        return len(self.levels)

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """(N,) int64 level codes of the frame's rows; `unseen` where the level is not in `levels`."""
        index = pd.Index(self.levels, dtype=object)
        if self.kind == "numeric":
            buckets = bucket_of(as_amounts(frame, self.name), np.asarray(self.edges, dtype=np.float64))
            names = [*self.labels, MISSING]  # bucket −1 (missing) → last slot
            lookup = index.get_indexer(pd.Index(names, dtype=object))
            return _unseen(lookup, self.unseen)[buckets]
        if self.kind == "risk" and self.source == "none":
            return np.full(len(frame), _unseen(index.get_indexer([UNKNOWN]), self.unseen)[0], dtype=np.int64)
        if self.kind == "risk" and self.source == "derived":
            rows, entities = column_levels(frame, self.entity)
            names = [MISSING if e == MISSING else self.risky.get(e, LOW) for e in entities]
        else:
            rows, levels = column_levels(frame, self.name, lower=self.kind == "risk")
            names = list(levels)
        lookup = index.get_indexer(pd.Index(names, dtype=object))
        return _unseen(lookup, self.unseen)[rows]

    def codes_of(self, values: Sequence[Any], memo: dict[Any, int]) -> np.ndarray:
        """(N,) int64 level codes of one column's raw values, as `codes` gives for a frame of them.

        The stream's form (a micro-batch of validated transactions, no frame): a text value is
        normalised once and its code kept in `memo` (values → codes; the caller bounds it). Equal to
        `codes` for columns of str / None / float values (tested); `codes` factorises a frame column,
        which would merge 1, 1.0 and True — values a validated transaction never holds.
        """
        if self.kind == "numeric":
            if all(v is None or type(v) is float or type(v) is int for v in values):
                amounts = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
                amounts = np.where(np.isfinite(amounts) & (amounts >= 0), amounts, np.nan)
            else:  # text or other numbers: the frame path's coercion
                amounts = as_amounts(pd.DataFrame({self.name: pd.Series(values, dtype=object)}), self.name)
            edges, bucket_codes = self._constants()
            return bucket_codes[bucket_of(amounts, edges)]
        if self.kind == "risk" and self.source == "none":
            return np.full(len(values), self._constants()[1][0], dtype=np.int64)
        out = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values):
            code = memo.get(value) if type(value) is str else None
            if code is None:
                code = self._code_of(value)
                if type(value) is str:
                    memo[value] = code
            out[i] = code
        return out

    def _constants(self) -> tuple[np.ndarray, np.ndarray]:
        """(edges, codes): numeric — the bucket edges and each bucket's code (bucket −1, missing, last);
        risk "none" — no edges and the code of UNKNOWN. The same lookups as `codes`, made once."""
        if self._batch_constants is None:
            index = pd.Index(self.levels, dtype=object)
            if self.kind == "numeric":
                names = [*self.labels, MISSING]
                edges = np.asarray(self.edges, dtype=np.float64)
            else:
                names, edges = [UNKNOWN], np.empty(0, dtype=np.float64)
            codes = _unseen(index.get_indexer(pd.Index(names, dtype=object)), self.unseen)
            object.__setattr__(self, "_batch_constants", (edges, codes))
        return self._batch_constants  # type: ignore[return-value]

    def _code_of(self, value: Any) -> int:
        """One raw value → its level code (the per-value form of `codes`)."""
        name = level_string(value)
        if self.kind == "risk" and self.source == "derived":
            name = name if name == MISSING else self.risky.get(name, LOW)
        elif self.kind == "risk" and name != MISSING:
            name = name.lower()
        if self._level_codes is None:
            object.__setattr__(self, "_level_codes", {level: i for i, level in enumerate(self.levels)})
        return self._level_codes.get(name, self.unseen)  # type: ignore[union-attr]

    @property
    def column(self) -> str:
        """The raw column this field's level is read from (a derived risk: its entity's)."""
        return self.entity if self.kind == "risk" and self.source == "derived" else self.name

    def raw_levels(self, frame: pd.DataFrame) -> np.ndarray:
        """(N,) object level strings of the rows, including levels outside the vocabulary."""
        if self.kind == "numeric":
            buckets = bucket_of(as_amounts(frame, self.name), np.asarray(self.edges, dtype=np.float64))
            return np.asarray([*self.labels, MISSING], dtype=object)[buckets]
        if self.kind == "risk" and self.source == "none":
            return np.full(len(frame), UNKNOWN, dtype=object)
        if self.kind == "risk" and self.source == "derived":
            rows, entities = column_levels(frame, self.entity)
            names = [MISSING if e == MISSING else self.risky.get(e, LOW) for e in entities]
            return np.asarray(names, dtype=object)[rows]
        rows, levels = column_levels(frame, self.name, lower=self.kind == "risk")
        return levels[rows]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "levels": list(self.levels)}
        if self.kind == "numeric":
            out |= {"edges": list(self.edges), "labels": list(self.labels)}
        if self.kind == "risk":
            out |= {"source": self.source, "entity": self.entity, "risky": dict(sorted(self.risky.items()))}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldSpec:
        return cls(
            name=data["name"],
            kind=data["kind"],
            levels=tuple(data["levels"]),
            edges=tuple(float(e) for e in data.get("edges", ())),
            labels=tuple(data.get("labels", ())),
            source=data.get("source", ""),
            entity=data.get("entity", ""),
            risky=dict(data.get("risky", {})),
        )


def level_order(kind: str, names: set[str], labels: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Deterministic order of a field's levels: buckets ascending, risk low→high, else by string."""
    if kind == "numeric":
        rank = {name: i for i, name in enumerate([*labels, MISSING])}
    elif kind == "risk":
        rank = {name: i for i, name in enumerate(RISK_ORDER)}
    else:
        rank = {}
    return tuple(sorted(names, key=lambda s: (s == MISSING, rank.get(s, len(rank)), s)))


def _unseen(lookup: np.ndarray, unseen: int) -> np.ndarray:
    return np.where(lookup < 0, unseen, lookup).astype(np.int64)
