"""User profiles for a backtest: the latest profile of each user in a partition, embedded like live does.

Live, the profile agent caches profile ids and e_u (one `embed_users` call per micro-batch) and the
scoring agent reads them. The backtest reads the compacted `user-profiles` topic up to its end offsets
at start (the last record per user wins, as in the table) and embeds in fixed, sorted batches so runs
are repeatable. Profiles are not time-travelled: a profile changed after T1 is seen as it is now
(profiles carry no event time; `panther produce` stamps them with the produce time).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stream.backtest.reader import RangeReader
from stream.engine import CachedProfile
from stream.events import ContractError, UserProfile, decode_keyed
from stream.live_model import LiveModel
from stream.scoring import Scorer

EMBED_BATCH = 256


class ProfileSource:
    """Reads profiles one partition at a time (co-partitioned with transactions) or all at once."""

    def __init__(self, reader: RangeReader, copartitioned: bool, max_bytes: int) -> None:
        self.reader = reader
        self.copartitioned = copartitioned
        self.max_bytes = max_bytes
        self.plan = {part.partition: part for part in reader.plan(None, None)}
        self.malformed = 0
        self._all: dict[str, UserProfile] | None = None

    def for_partition(self, partition: int) -> dict[str, UserProfile]:
        if not self.copartitioned:
            if self._all is None:
                self._all = {}
                for part in self.plan.values():
                    self._all.update(self._read(part.partition))
            return self._all
        return self._read(partition) if partition in self.plan else {}

    def _read(self, partition: int) -> dict[str, UserProfile]:
        latest: dict[str, UserProfile] = {}
        for chunk in self.reader.read(self.plan[partition]):
            for record in chunk:
                try:
                    profile = decode_keyed(UserProfile, record.value, record.key, self.max_bytes)
                except ContractError:
                    self.malformed += 1
                    continue
                latest[profile.user_id] = profile
        return latest

    def close(self) -> None:
        self.reader.close()


async def embed_profiles(
    live: LiveModel, scorer: Scorer, profiles: Mapping[str, UserProfile]
) -> dict[str, CachedProfile | None]:
    """user_id → what live's `user_embeddings` table would hold (sorted users, fixed batches)."""
    users = sorted(profiles)
    out: dict[str, CachedProfile | None] = {}
    for i in range(0, len(users), EMBED_BATCH):
        batch = users[i : i + EMBED_BATCH]
        ids = live.profile_ids([profiles[user] for user in batch])
        embeddings = np.asarray(await scorer.embed_users(ids))
        for user, row, embedding in zip(batch, ids, embeddings, strict=True):
            out[user] = CachedProfile(row, embedding, live.model_version, 0)
    return out
