"""StructuredTokenizer: transactions (or items) → token ids, PANTHER §3.2.

A token is the Cartesian product of field levels (`online|$50-100|grocery|low`). Fit keeps the top-K
combinations by training frequency; everything else encodes to [UNK]. Encoding is vectorised: each
field's rows become level codes (factorise + one lookup per distinct value), the codes are packed into
one int64 key per row (mixed radix), and keys are looked up in the sorted vocabulary with
`np.searchsorted` — no per-row Python.

The JSON file is deterministic (same data → same bytes) and carries a format version and a SHA-256
content hash, which model artefacts record so that a model is never served with another vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.tokenizer.config import TokenizerConfig
from models.tokenizer.fit import count_tokens, iter_chunks
from models.tokenizer.reserved import FIRST_TOKEN_ID, RESERVED_TOKENS, UNK_ID
from models.tokenizer.spec import FieldSpec

FORMAT = "panther-tokenizer"
VERSION = "1"
_KEY_LIMIT = 2**62
MEMO_MAX = 1 << 16  # distinct raw values a field's encode_columns memo keeps (then starts afresh)


class TokenizerFormatError(ValueError):
    """tokenizer.json is unreadable, of an unsupported version, or its content hash does not match."""


def content_hash(body: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a tokenizer dict, ignoring its `content_hash` key."""
    payload = {k: v for k, v in body.items() if k != "content_hash"}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class StructuredTokenizer:
    """A fitted vocabulary: ids 0..3 reserved ([PAD], [UNK], [MASK], [PROFILE]), then tokens by frequency.

    >>> frame = pd.DataFrame({"channel": ["online", "online", "pos"], "amount": [10.0, 10.0, 300.0],
    ...                       "merchant_category": ["grocery", "grocery", None],
    ...                       "merchant_risk": ["low"] * 3})
    >>> tok = StructuredTokenizer.fit(frame, TokenizerConfig(amount_buckets=2))
    >>> tok.token_names[4:]
    ['online|$<11|grocery|low', 'pos|$≥11|∅|low']
    >>> tok.encode(frame).tolist()
    [4, 4, 5]
    """

    def __init__(
        self,
        config: TokenizerConfig,
        fields: list[FieldSpec],
        token_levels: np.ndarray,
        token_counts: np.ndarray,
        fit_stats: dict[str, Any],
    ) -> None:
        self.config = config
        self.fields = list(fields)
        self.token_levels = np.asarray(token_levels, dtype=np.int64).reshape(-1, len(self.fields))  # (K, F)
        self.token_counts = np.asarray(token_counts, dtype=np.int64)  # (K,)
        self.fit_stats = dict(fit_stats)
        if len(self.token_counts) != len(self.token_levels):
            raise TokenizerFormatError("token levels and counts differ in length")
        for f, spec in enumerate(self.fields):
            column = self.token_levels[:, f]
            if len(column) and (column.min() < 0 or column.max() >= len(spec.levels)):
                raise TokenizerFormatError(f"field {spec.name!r}: token level code out of range")
        self._radix = np.asarray([len(spec.levels) + 1 for spec in self.fields], dtype=np.int64)
        self._packable = float(np.prod(self._radix.astype(np.float64))) < _KEY_LIMIT
        ids = np.arange(FIRST_TOKEN_ID, FIRST_TOKEN_ID + len(self.token_levels), dtype=np.int64)
        if self._packable:
            keys = self._pack([self.token_levels[:, f] for f in range(len(self.fields))])
            order = np.argsort(keys, kind="stable")
            self._keys, self._ids = keys[order], ids[order]
            if len(self._keys) > 1 and (np.diff(self._keys) == 0).any():
                raise TokenizerFormatError("duplicate tokens in the vocabulary")
        else:  # too many levels to pack into int64: a MultiIndex lookup (slower, same result)
            self._index = pd.MultiIndex.from_arrays(
                [self.token_levels[:, f] for f in range(len(self.fields))]
            )
            self._ids = ids
        self._memos: list[dict[Any, int]] = [{} for _ in self.fields]  # encode_columns' value → code
        self._dict: dict[str, Any] | None = None
        self._names: list[str] | None = None

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls, frames: pd.DataFrame | Iterable[pd.DataFrame], config: TokenizerConfig | None = None
    ) -> StructuredTokenizer:
        """Fit on a DataFrame or an iterable of DataFrame chunks (read once, e.g. read_csv(chunksize=…))."""
        config = config or TokenizerConfig()
        result = count_tokens(frames, config)
        return cls(config, result.fields, result.token_levels, result.token_counts, result.stats)

    # --------------------------------------------------------------- encode
    @property
    def vocab_size(self) -> int:
        """Reserved ids + kept tokens: the size of the embedding table and of the ranking."""
        return FIRST_TOKEN_ID + len(self.token_levels)

    @property
    def token_names(self) -> list[str]:
        """(vocab_size,) names, index = id."""
        if self._names is None:
            sep = self.config.separator
            columns = [
                np.asarray(spec.levels, dtype=object)[self.token_levels[:, f]]
                for f, spec in enumerate(self.fields)
            ]
            names = [sep.join(parts) for parts in zip(*columns, strict=True)] if columns else []
            self._names = [*RESERVED_TOKENS, *names]
        return list(self._names)

    @property
    def counts(self) -> np.ndarray:
        """(vocab_size,) int64 training count per id (0 for reserved ids; UNK holds the uncovered rows)."""
        out = np.zeros(self.vocab_size, dtype=np.int64)
        out[FIRST_TOKEN_ID:] = self.token_counts
        out[UNK_ID] = int(self.fit_stats.get("transactions", 0)) - int(self.token_counts.sum())
        return out

    def _pack(self, codes: list[np.ndarray]) -> np.ndarray:
        key = np.zeros(len(codes[0]) if codes else 0, dtype=np.int64)
        for column, radix in zip(codes, self._radix, strict=True):
            key = key * radix + column
        return key

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """(N rows) → (N,) int64 token ids; combinations outside the vocabulary → UNK_ID (1).

        Missing values and absent columns read as the "∅" level; never produces PAD_ID.
        """
        return self._lookup([spec.codes(frame) for spec in self.fields], len(frame))

    def encode_columns(self, columns: Mapping[str, Sequence[Any]], rows: int) -> np.ndarray:
        """(rows,) int64 token ids of raw columns (name → values; an absent name reads as missing):
        what `encode` gives for a frame of them, without building one.

        The stream's per-batch form: at a micro-batch of a few hundred records the frame path's fixed
        pandas cost (~35 µs a record) was more than the rest of the record's tokenizing; here each
        distinct text value is normalised once per process (`FieldSpec.codes_of`, memo bounded at
        `MEMO_MAX` values a field). Equal to `encode` (tested).
        """
        missing = [None] * rows
        codes = []
        for spec, memo in zip(self.fields, self._memos, strict=True):
            if len(memo) > MEMO_MAX:
                memo.clear()
            codes.append(spec.codes_of(columns.get(spec.column, missing), memo))
        return self._lookup(codes, rows)

    def _lookup(self, codes: list[np.ndarray], rows: int) -> np.ndarray:
        if self._packable:
            if len(self._keys) == 0:
                return np.full(rows, UNK_ID, dtype=np.int64)
            key = self._pack(codes)
            pos = np.minimum(np.searchsorted(self._keys, key), len(self._keys) - 1)
            return np.where(self._keys[pos] == key, self._ids[pos], UNK_ID).astype(np.int64)
        found = self._index.get_indexer(pd.MultiIndex.from_arrays(codes))
        return np.where(found >= 0, self._ids[np.maximum(found, 0)], UNK_ID).astype(np.int64)

    def decode(self, ids: np.ndarray | list[int]) -> list[str]:
        """Token ids → names."""
        names = np.asarray(self.token_names, dtype=object)
        return names[np.asarray(ids, dtype=np.int64)].tolist()

    def coverage(self, frames: pd.DataFrame | Iterable[pd.DataFrame]) -> dict[str, Any]:
        """Share of rows covered by the vocabulary (train: coverage; test: UNK rate).

        Returns {"transactions": n, "covered": share not UNK, "unk_rate": share UNK,
        "distinct_raw": distinct field-level combinations in the data (in or out of the vocabulary),
        "unseen_level_rate": {field: share of rows whose level of that field is not in the vocabulary}}.
        """
        n = unk = 0
        unseen = np.zeros(len(self.fields), dtype=np.int64)
        raw_parts: list[pd.DataFrame] = []
        for chunk in iter_chunks(frames):
            ids = self.encode(chunk)
            n += len(ids)
            unk += int((ids == UNK_ID).sum())
            for f, spec in enumerate(self.fields):
                unseen[f] += int((spec.codes(chunk) == spec.unseen).sum())
            raw = pd.DataFrame({spec.name: spec.raw_levels(chunk) for spec in self.fields})
            raw_parts.append(raw.drop_duplicates())
        distinct = len(pd.concat(raw_parts).drop_duplicates()) if raw_parts else 0
        return {
            "transactions": n,
            "covered": (n - unk) / n if n else 0.0,
            "unk_rate": unk / n if n else 0.0,
            "distinct_raw": distinct,
            "unseen_level_rate": {
                spec.name: (int(unseen[f]) / n if n else 0.0) for f, spec in enumerate(self.fields)
            },
        }

    # ---------------------------------------------------------- serialise
    def _body(self) -> dict[str, Any]:
        if self._dict is None:
            body: dict[str, Any] = {
                "format": FORMAT,
                "version": VERSION,
                "config": self.config.to_dict(),
                "reserved": list(RESERVED_TOKENS),
                "fields": [spec.to_dict() for spec in self.fields],
                "tokens": {
                    "names": self.token_names[FIRST_TOKEN_ID:],
                    "levels": self.token_levels.tolist(),
                    "counts": self.token_counts.tolist(),
                },
                "fit_stats": self.fit_stats,
            }
            body["content_hash"] = content_hash(body)
            self._dict = body
        return self._dict

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy of the whole tokenizer, including its `content_hash`."""
        return json.loads(json.dumps(self._body()))

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON content; identical vocabularies ⇔ identical hashes."""
        return str(self._body()["content_hash"])

    @property
    def version(self) -> str:
        """The tokenizer file format version."""
        return VERSION

    def to_json_bytes(self) -> bytes:
        return (json.dumps(self._body(), sort_keys=True, ensure_ascii=False, indent=1) + "\n").encode("utf-8")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_json_bytes())
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], verify: bool = True) -> StructuredTokenizer:
        """Rebuild from `to_dict()`; with verify, a content hash that does not match raises."""
        if data.get("format") != FORMAT:
            raise TokenizerFormatError(f"not a PANTHER tokenizer (format={data.get('format')!r})")
        if str(data.get("version")) != VERSION:
            raise TokenizerFormatError(
                f"tokenizer format version {data.get('version')!r} is not supported"
                f" (this code reads {VERSION!r})"
            )
        if verify:
            stored, actual = data.get("content_hash"), content_hash(data)
            if stored != actual:
                raise TokenizerFormatError(
                    f"tokenizer content hash mismatch: file says {stored}, content hashes to {actual}"
                    " (edited or corrupted)"
                )
        if list(data.get("reserved", [])) != list(RESERVED_TOKENS):
            raise TokenizerFormatError(
                f"reserved tokens {data.get('reserved')} differ from {list(RESERVED_TOKENS)}"
            )
        try:
            config = TokenizerConfig.from_dict(data["config"])
            fields = [FieldSpec.from_dict(f) for f in data["fields"]]
            tokens = data["tokens"]
            levels = np.asarray(tokens["levels"], dtype=np.int64).reshape(-1, len(fields))
            counts = np.asarray(tokens["counts"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenizerFormatError(f"malformed tokenizer dict: {exc}") from exc
        tok = cls(config, fields, levels, counts, dict(data.get("fit_stats", {})))
        if verify and tok.token_names[FIRST_TOKEN_ID:] != list(tokens.get("names", [])):
            raise TokenizerFormatError("token names do not match their field levels")
        return tok

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> StructuredTokenizer:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TokenizerFormatError(f"cannot read tokenizer {path}: {exc}") from exc
        return cls.from_dict(data, verify=verify)

    def __repr__(self) -> str:
        return (
            f"StructuredTokenizer(fields={[s.name for s in self.fields]}, vocab_size={self.vocab_size}, "
            f"hash={self.content_hash[:12]})"
        )
