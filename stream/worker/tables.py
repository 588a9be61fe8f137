"""Stream state, only in Faust tables (RocksDB + changelog): per-user windows and cached embeddings.

Values are our own compact bytes (the models' `UserState.to_bytes`, `CachedEmbedding.to_bytes`), so the
changelog carries exactly what the backtest and the in-process evaluation reconstruct.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event


@dataclass(frozen=True)
class Tables:
    user_windows: faust.Table
    user_embeddings: faust.Table


def declare_tables(app: faust.App, partitions: int) -> Tables:
    def table(name: str, help_: str) -> faust.Table:
        return app.Table(
            name, default=None, partitions=partitions, key_type=bytes, value_type=bytes, help=help_,
        )  # fmt: skip

    return Tables(
        user_windows=table("user_windows", "user_id → rolling token window + running statistics"),
        user_embeddings=table("user_embeddings", "user_id → profile ids, embedding, model version, time"),
    )


@contextmanager
def writing_for(event: Any) -> Iterator[None]:
    """Table writes inside go to `event`'s partition (RocksDB store and changelog).

    Faust takes that partition from the current event, a context variable. We set only the variable,
    never `stream._set_current_event`: that also overwrites `stream.current_event`, which the
    `take_events` buffer reads to pair each value with its event — the next message would then be
    buffered as a copy of an old event, skipped as a duplicate, never acked: a lost score.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
