"""Canonical files (`transactions.*`, `profiles.*`, CSV or Parquet) read in chunks as validated events.

A malformed row stops the read with its 1-based row number, the field and the reason; unknown
columns are ignored with one warning, so files from other sources that map to the contract work.
"""

from __future__ import annotations

import csv
import gzip
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stream.errors import PantherError
from stream.events import ContractError, E, Transaction, UserProfile, validate_record

CHUNK_ROWS = 50_000


class FileRowError(PantherError):
    def __init__(self, path: Path, row: int, error: ContractError) -> None:
        first = error.errors[0]
        more = f" (and {len(error.errors) - 1} more problems)" if len(error.errors) > 1 else ""
        super().__init__(f"{path}: row {row}: field '{first.field}' = {first.value}: {first.reason}{more}")
        self.row = row
        self.errors = error.errors


def model_for(path: Path) -> type[Transaction] | type[UserProfile]:
    """Profiles files are named profiles.*; everything else holds transactions."""
    return UserProfile if path.name.startswith("profile") else Transaction


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    if not path.exists():
        raise PantherError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS)
        elif suffix in {".csv", ".gz"}:
            # Everything as text: pydantic does the typing, so a bad cell gets a row-numbered message.
            names = _csv_header(path)
            text_types = {name: pa.string() for name in names}
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                convert_options=pacsv.ConvertOptions(column_types=text_types, strings_can_be_null=True),
            )
            yield from reader
        else:
            raise PantherError(f"{path}: unsupported file type {suffix!r} (use .parquet or .csv)")
    except (pa.ArrowInvalid, OSError) as exc:
        raise PantherError(f"{path}: cannot read: {exc}") from None


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:  # type: ignore[operator]
        return next(csv.reader(handle), [])


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return value


def read_events(path: Path | str, model: type[E] | None = None) -> Iterator[list[E]]:
    """Yields validated events chunk by chunk (bounded memory on large files)."""
    path = Path(path)
    model = model or model_for(path)  # type: ignore[assignment]
    known = set(model.model_fields)
    row = 0
    warned = False
    for batch in _batches(path):
        unknown = sorted(set(batch.schema.names) - known)
        extras = unknown if model is UserProfile else []  # profile extras become `attributes`
        if unknown and not extras and not warned:
            warnings.warn(f"{path}: ignoring unknown columns {', '.join(unknown)}", stacklevel=2)
            warned = True
        columns = [name for name in batch.schema.names if name in known or name in extras]
        events: list[E] = []
        for record in batch.select(columns).to_pylist():
            row += 1
            cleaned = {key: _clean(value) for key, value in record.items()}
            cleaned = {key: value for key, value in cleaned.items() if value is not None}
            if extras:
                attributes = {key: cleaned.pop(key) for key in extras if key in cleaned}
                cleaned["attributes"] = {**cleaned.get("attributes", {}), **attributes}
            try:
                events.append(validate_record(model, cleaned))  # type: ignore[arg-type]
            except ContractError as exc:
                raise FileRowError(path, row, exc) from None
        yield events


def count_rows(path: Path | str) -> int | None:
    """Row count when cheap (Parquet metadata), else None."""
    path = Path(path)
    if path.suffix.lower() == ".parquet" and path.exists():
        return pq.ParquetFile(path).metadata.num_rows
    return None
