"""Counting tokens over chunks: one pass, memory bounded by distinct combinations, not by rows.

Why one pass: callers hand us `pd.read_csv(..., chunksize=…)` or a Parquet batch reader, which can be
read once. Each chunk is reduced to per-field integer codes — amounts to fine log-grid bins, merchants
(when risk is derived) to merchant codes — and grouped into (combination → count); the groups of all
chunks are merged. Bucket edges and risk levels are only known at the end, so the final tokens are made
by mapping the fine codes to their levels and regrouping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.tokenizer.amount import (
    N_FINE,
    as_amounts,
    bucket_labels,
    fine_bins,
    fine_to_bucket,
    quantile_edges,
)
from models.tokenizer.config import TokenizerConfig
from models.tokenizer.levels import GrowingIndex
from models.tokenizer.reserved import MISSING
from models.tokenizer.risk import UNKNOWN, RiskCounter, as_labels
from models.tokenizer.spec import FieldSpec, level_order

MERGE_ROWS = 2_000_000  # merge pending chunk groups once they hold this many rows


@dataclass(frozen=True)
class FitResult:
    fields: list[FieldSpec]
    token_levels: np.ndarray  # (K, F) int64 — level code per field of each kept token, in id order
    token_counts: np.ndarray  # (K,) int64 — training count of each kept token
    stats: dict[str, Any]


def iter_chunks(frames: pd.DataFrame | Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
    if isinstance(frames, pd.DataFrame):
        yield frames
        return
    for i, chunk in enumerate(frames):
        if not isinstance(chunk, pd.DataFrame):
            raise TypeError(f"chunk {i} is a {type(chunk).__name__}, expected a pandas DataFrame")
        yield chunk


class TokenCounter:
    """Accumulates (combination of fine field codes → count) chunk by chunk."""

    def __init__(self, config: TokenizerConfig) -> None:
        self.config = config
        self.names = config.fields
        self.indexes = {name: GrowingIndex() for name in self.names}  # categorical, risk column/entity
        self.histogram = {name: np.zeros(N_FINE + 1, dtype=np.int64) for name in config.numeric}
        self.risk = RiskCounter()
        self.risk_source: str | None = None
        self.rows = 0
        self._merged: pd.DataFrame | None = None
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0

    def add(self, chunk: pd.DataFrame) -> None:
        cfg = self.config
        if self.risk_source is None and cfg.risk_field is not None:
            if cfg.risk_field in chunk.columns:
                self.risk_source = "column"
            else:
                self.risk_source = "derived" if cfg.risk_entity in chunk.columns else "none"
        if len(chunk) == 0:
            return
        codes: dict[str, np.ndarray] = {}
        for name in self.names:
            kind = cfg.kind(name)
            if kind == "numeric":
                fine = fine_bins(as_amounts(chunk, name))
                self.histogram[name] += np.bincount(fine, minlength=N_FINE + 1)
                codes[name] = fine
            elif kind == "risk" and self.risk_source == "derived":
                entity = self.indexes[name].rows(chunk, cfg.risk_entity)
                labels = as_labels(chunk[cfg.label_field]) if cfg.label_field in chunk.columns else None
                if labels is not None:
                    self.risk.add(entity, labels)
                codes[name] = entity
            elif kind == "risk" and self.risk_source == "none":
                codes[name] = np.zeros(len(chunk), dtype=np.int64)
            else:
                codes[name] = self.indexes[name].rows(chunk, name, lower=kind == "risk")
        groups = pd.DataFrame(codes).groupby(list(self.names), sort=False).size().reset_index(name="n")
        self.rows += len(chunk)
        self._pending.append(groups)
        self._pending_rows += len(groups)
        if self._pending_rows >= MERGE_ROWS:
            self._merge()

    def _merge(self) -> None:
        parts = ([self._merged] if self._merged is not None else []) + self._pending
        if parts:
            both = pd.concat(parts, ignore_index=True)
            self._merged = both.groupby(list(self.names), sort=False, as_index=False)["n"].sum()
        self._pending, self._pending_rows = [], 0

    def finish(self) -> FitResult:
        self._merge()
        cfg = self.config
        merged = (
            self._merged
            if self._merged is not None
            else pd.DataFrame({**{n: [] for n in self.names}, "n": []})
        )
        edges: dict[str, np.ndarray] = {}
        labels: dict[str, tuple[str, ...]] = {}
        level_names: dict[str, np.ndarray] = {}  # fine code → final level string, per field
        risky: dict[str, str] = {}
        risk_source = self.risk_source or "none"
        for name in self.names:
            kind = cfg.kind(name)
            if kind == "numeric":
                edges[name] = quantile_edges(self.histogram[name], cfg.amount_buckets)
                labels[name] = tuple(bucket_labels(edges[name], cfg.currency_symbol))
                per_bucket = np.asarray([*labels[name], MISSING], dtype=object)
                level_names[name] = per_bucket[fine_to_bucket(edges[name])]
            elif kind == "risk" and risk_source == "derived":
                entities = self.indexes[name].names
                if self.risk.n.sum() == 0:
                    risk_source = "none"
                    level_names[name] = np.full(max(len(entities), 1), UNKNOWN, dtype=object)
                else:
                    derived = self.risk.levels(cfg.risk_prior_strength, cfg.risk_thresholds, len(entities))
                    names = [MISSING if e == MISSING else lv for e, lv in zip(entities, derived, strict=True)]
                    risky = {
                        e: lv for e, lv in zip(entities, names, strict=True) if lv not in ("low", MISSING)
                    }
                    level_names[name] = np.asarray(names, dtype=object)
            elif kind == "risk" and risk_source == "none":
                level_names[name] = np.asarray([UNKNOWN], dtype=object)
            else:
                level_names[name] = np.asarray(self.indexes[name].names or [MISSING], dtype=object)
        final = pd.DataFrame(
            {name: level_names[name][merged[name].to_numpy(dtype=np.int64)] for name in self.names}
        )
        final["n"] = merged["n"].to_numpy(dtype=np.int64)
        combos = final.groupby(list(self.names), sort=False, as_index=False)["n"].sum()
        kept = _top_k(combos, list(self.names), cfg.top_k, cfg.separator)
        fields: list[FieldSpec] = []
        token_levels = np.zeros((len(kept), len(self.names)), dtype=np.int64)
        for f, name in enumerate(self.names):
            kind = cfg.kind(name)
            used = set(kept[name].tolist())
            order = level_order(kind, used, labels.get(name, ()))
            token_levels[:, f] = pd.Index(order, dtype=object).get_indexer(kept[name].to_numpy(dtype=object))
            fields.append(
                FieldSpec(
                    name=name,
                    kind=kind,
                    levels=order,
                    edges=tuple(float(e) for e in edges.get(name, ())),
                    labels=labels.get(name, ()),
                    source=risk_source if kind == "risk" else "",
                    entity=cfg.risk_entity if kind == "risk" else "",
                    risky=risky if kind == "risk" else {},
                )
            )
        counts = kept["n"].to_numpy(dtype=np.int64)
        covered = int(counts.sum())
        stats = {
            "transactions": int(self.rows),
            "distinct_raw": len(combos),
            "kept": len(kept),
            "covered": covered / self.rows if self.rows else 0.0,
            "unk_rate": 1.0 - covered / self.rows if self.rows else 0.0,
            "risk_source": risk_source if cfg.risk_field is not None else None,
        }
        return FitResult(fields=fields, token_levels=token_levels, token_counts=counts, stats=stats)


def _top_k(combos: pd.DataFrame, names: list[str], k: int, separator: str) -> pd.DataFrame:
    """The k most frequent combinations; ties broken by token name, then by field levels."""
    counts = combos["n"].to_numpy(dtype=np.int64)
    if len(combos) > k:
        threshold = np.partition(counts, len(counts) - k)[len(counts) - k]
        combos = combos[counts >= threshold]
    name = combos[names[0]].astype(object)
    for other in names[1:]:
        name = name + separator + combos[other].astype(object)
    ordered = combos.assign(_name=name, _neg=-combos["n"]).sort_values(
        ["_neg", "_name", *names], kind="stable"
    )
    return ordered.head(k).drop(columns=["_name", "_neg"]).reset_index(drop=True)


def count_tokens(frames: pd.DataFrame | Iterable[pd.DataFrame], config: TokenizerConfig) -> FitResult:
    counter = TokenCounter(config)
    for chunk in iter_chunks(frames):
        counter.add(chunk)
    return counter.finish()
