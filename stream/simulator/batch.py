"""A column batch of simulated events as integer codes: every generator returns one, the assembler joins them.

Codes instead of strings keep generation vectorized and cheap; strings are attached once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

LEGIT = -1  # `scenario` code of a legitimate transaction; fraud uses the index into config.SCENARIOS


@dataclass(slots=True)
class Events:
    user: np.ndarray  # int32 user index
    t: np.ndarray  # int64 seconds since the window start
    cat: np.ndarray  # int16 category index (catalog.CATEGORIES)
    merchant: np.ndarray  # int32 merchant index
    channel: np.ndarray  # int8 channel index (catalog.CHANNELS)
    amount: np.ndarray  # float64 USD, already rounded to cents
    loc: np.ndarray  # int16 place index (where the cardholder, or the card, is)
    device: np.ndarray  # int32 device index
    scenario: np.ndarray  # int8: LEGIT or a fraud scenario index

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: np.ndarray) -> Events:
        return Events(*(getattr(self, f.name)[index] for f in fields(self)))

    @classmethod
    def build(
        cls,
        *,
        user: np.ndarray,
        t: np.ndarray,
        cat: np.ndarray,
        merchant: np.ndarray,
        channel: np.ndarray,
        amount: np.ndarray,
        loc: np.ndarray,
        device: np.ndarray,
        scenario: int | np.ndarray = LEGIT,
    ) -> Events:
        """Normalises dtypes and broadcasts scalars so every batch concatenates cleanly."""
        n = np.asarray(user).shape[0]

        def col(value: np.ndarray | int, dtype: type) -> np.ndarray:
            arr = np.asarray(value, dtype=dtype)
            return np.full(n, arr, dtype=dtype) if arr.ndim == 0 else arr

        return cls(
            user=col(user, np.int32),
            t=col(t, np.int64),
            cat=col(cat, np.int16),
            merchant=col(merchant, np.int32),
            channel=col(channel, np.int8),
            amount=np.round(np.maximum(col(amount, np.float64), 0.0), 2),
            loc=col(loc, np.int16),
            device=col(device, np.int32),
            scenario=col(scenario, np.int8),
        )

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        parts = [p for p in parts if len(p)] or parts[:1]
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @classmethod
    def empty(cls) -> Events:
        z = np.zeros(0, dtype=np.int64)
        return cls.build(user=z, t=z, cat=z, merchant=z, channel=z, amount=z, loc=z, device=z)
