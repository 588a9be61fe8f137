"""Static user attributes → categorical ids per field, plus raw demographic values for contrastive positives.

Why ids for everything: the model embeds each profile field (`(B, P)` ids → `(B, d)`) and adds it to
every position (profile as positional encoding), so numeric attributes are bucketed on quantile edges
and categoricals get ids by name; id 0 is always "missing or unseen". The contrastive loss needs the
raw values instead ("age within ±2, same region"), so `encode` also returns those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.tokenizer.levels import column_levels
from models.tokenizer.reserved import MISSING

VERSION = "1"
DEFAULT_FIELDS = ("age", "gender", "region", "occupation", "account_age_days")
DEFAULT_DEMOGRAPHIC = ("age", "region")


@dataclass(frozen=True)
class ProfileField:
    """One profile field. Categorical: id = 1 + index in `levels`. Numeric: id = 1 + bucket on `edges`.

    A numeric field with at most `max_exact` distinct values gets one bucket per value (edges at the
    midpoints), so coded attributes such as MovieLens ages (1, 18, 25, …) stay exact.
    """

    name: str
    kind: str  # "categorical" | "numeric"
    levels: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()

    @property
    def cardinality(self) -> int:
        """Number of ids including the 0 slot."""
        return 1 + (len(self.levels) if self.kind == "categorical" else len(self.edges) + 1)

    def ids(self, frame: pd.DataFrame) -> np.ndarray:
        """(N,) int64 ids; 0 for missing, unseen or absent."""
        if self.kind == "numeric":
            values = _numbers(frame, self.name)
            bucket = np.searchsorted(
                np.asarray(self.edges, dtype=np.float64), np.nan_to_num(values), side="right"
            )
            return np.where(np.isnan(values), 0, bucket + 1).astype(np.int64)
        rows, names = column_levels(frame, self.name)
        found = pd.Index(self.levels, dtype=object).get_indexer(pd.Index(names, dtype=object))
        return (found + 1).astype(np.int64)[rows]  # −1 (unseen or ∅) → 0

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """(N,) float32: numeric value, or categorical id (NaN when missing or unseen)."""
        if self.kind == "numeric":
            return _numbers(frame, self.name).astype(np.float32)
        ids = self.ids(frame).astype(np.float32)
        return np.where(ids == 0, np.nan, ids).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "levels": list(self.levels), "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileField:
        return cls(data["name"], data["kind"], tuple(data.get("levels", ())), tuple(data.get("edges", ())))


@dataclass(frozen=True)
class ProfileSchema:
    """Fitted profile fields and the demographic columns used for contrastive positives.

    >>> profiles = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "age": [30, None, 41],
    ...                          "region": ["EU", "US", None]})
    >>> schema = ProfileSchema.fit(profiles, fields=("age", "region"), demographic=("age", "region"))
    >>> ids, demo = schema.encode(profiles)
    >>> ids.tolist(), schema.cardinalities
    ([[1, 1], [0, 2], [2, 0]], [3, 3])
    >>> demo.tolist()
    [[30.0, 1.0], [nan, 2.0], [41.0, nan]]
    >>> schema.index_of(["u3", "zz"]).tolist()
    [2, -1]
    """

    fields: tuple[ProfileField, ...]
    demographic: tuple[str, ...]
    user_col: str = "user_id"
    users: tuple[pd.Index, np.ndarray] | None = field(default=None, compare=False, repr=False)  # fit frame

    @classmethod
    def fit(
        cls,
        profiles: pd.DataFrame,
        fields: Sequence[str] = DEFAULT_FIELDS,
        demographic: Sequence[str] = DEFAULT_DEMOGRAPHIC,
        numeric_buckets: int = 10,
        max_exact: int = 16,
        max_levels: int = 10_000,
        user_col: str = "user_id",
    ) -> ProfileSchema:
        """Fit levels (top `max_levels` by frequency, named in sorted order) and numeric edges."""
        missing = [d for d in demographic if d not in fields]
        if missing:
            raise ValueError(f"demographic fields {missing} must also be profile fields {list(fields)}")
        fitted = []
        for name in fields:
            column = profiles[name] if name in profiles.columns else None
            numeric = (
                column is not None
                and pd.api.types.is_numeric_dtype(column)
                and not pd.api.types.is_bool_dtype(column)
            )
            if numeric:
                fitted.append(
                    ProfileField(name, "numeric", edges=_edges(profiles, name, numeric_buckets, max_exact))
                )
            else:
                fitted.append(ProfileField(name, "categorical", levels=_levels(profiles, name, max_levels)))
        return cls(tuple(fitted), tuple(demographic), user_col, _user_index(profiles, user_col))

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def cardinalities(self) -> list[int]:
        """Per field, ids 0..cardinality-1 (0 = missing/unknown)."""
        return [f.cardinality for f in self.fields]

    @property
    def demographic_kinds(self) -> list[str]:
        """Per demographic column: 'numeric' (compare with a tolerance) or 'categorical' (equality)."""
        kinds = {f.name: f.kind for f in self.fields}
        return [kinds[d] for d in self.demographic]

    def encode(self, profiles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """→ ids (N, P) int64, demographics (N, D) float32, rows in `profiles` order."""
        n = len(profiles)
        ids = (
            np.stack([f.ids(profiles) for f in self.fields], axis=1)
            if self.fields
            else np.zeros((n, 0), np.int64)
        )
        by_name = {f.name: f for f in self.fields}
        demo = [by_name[d].raw(profiles) for d in self.demographic]
        return ids.astype(np.int64), (np.stack(demo, axis=1) if demo else np.zeros((n, 0))).astype(np.float32)

    def index_of(
        self, user_ids: Sequence[str] | np.ndarray, profiles: pd.DataFrame | None = None
    ) -> np.ndarray:
        """(M,) int64 row of each user in `profiles` (default: the fit frame); −1 if absent."""
        lookup = _user_index(profiles, self.user_col) if profiles is not None else self.users
        if lookup is None:
            raise ValueError(f"index_of needs a profiles frame with a {self.user_col!r} column")
        index, rows = lookup
        found = index.get_indexer(pd.Index(np.asarray(user_ids).astype(str), dtype=object))
        return np.where(found >= 0, rows[np.maximum(found, 0)], -1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        body = {
            "version": VERSION,
            "fields": [f.to_dict() for f in self.fields],
            "demographic": list(self.demographic),
            "user_col": self.user_col,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return body | {"content_hash": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileSchema:
        if str(data.get("version")) != VERSION:
            raise ValueError(f"profile schema version {data.get('version')!r} is not supported ({VERSION!r})")
        return cls(
            tuple(ProfileField.from_dict(f) for f in data["fields"]),
            tuple(data["demographic"]),
            data.get("user_col", "user_id"),
        )


def _numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def _edges(frame: pd.DataFrame, name: str, buckets: int, max_exact: int) -> tuple[float, ...]:
    values = _numbers(frame, name)
    values = values[~np.isnan(values)]
    distinct = np.unique(values)
    if len(distinct) <= max_exact:
        return tuple(float(v) for v in (distinct[1:] + distinct[:-1]) / 2)
    quantiles = np.quantile(values, np.arange(1, buckets) / buckets)
    return tuple(float(v) for v in np.unique(quantiles) if distinct[0] < v <= distinct[-1])


def _levels(frame: pd.DataFrame, name: str, max_levels: int) -> tuple[str, ...]:
    rows, names = column_levels(frame, name)
    counts = np.bincount(rows, minlength=len(names))
    ranked = sorted(((-c, s) for c, s in zip(counts, names, strict=True) if s != MISSING and c > 0))
    return tuple(sorted(s for _, s in ranked[:max_levels]))


def _user_index(profiles: pd.DataFrame, user_col: str) -> tuple[pd.Index, np.ndarray] | None:
    """(unique user ids, their first row) — duplicated user ids resolve to their first row."""
    if user_col not in profiles.columns:
        return None
    users = pd.Index(profiles[user_col].astype(str).to_numpy(dtype=object), dtype=object)
    first = ~users.duplicated(keep="first")
    return users[first], np.flatnonzero(first).astype(np.int64)
