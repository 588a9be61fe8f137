"""Stream state, only in Faust tables (RocksDB + changelog): per-user windows and cached embeddings.

Values are our own compact bytes (the models' `UserState.to_bytes`, `CachedEmbedding.to_bytes`), so the
changelog carries exactly what the backtest and the in-process evaluation reconstruct.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust


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
