"""The profile agent: `user-profiles` (compacted) → profile ids + e_u cached in `user_embeddings`."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.engine import CachedProfile, now_ms
from stream.events import UserProfile
from stream.scoring import ScorerUnavailable
from stream.worker.batch_agent import BatchAgent
from stream.worker.decode import dead_letter_outputs, decode_events
from stream.worker.tables import write_values
from stream.worker.transactions import Output


class ProfileAgent(BatchAgent):
    topic_role, agent_name = "profiles", "embed-profiles"

    async def process(self, events: list[Any]) -> None:
        decoded = decode_events(events, UserProfile, self.channels.profiles.get_topic_name(),
                                self.settings.max_message_bytes)  # fmt: skip
        latest = {profile.user_id: (event, profile) for event, profile in decoded.valid}  # last one wins
        embeddings: list[np.ndarray | None] = []
        ids = np.zeros((0, 0), dtype=np.int64)
        if latest:
            ids = self.engine.live.profile_ids([profile for _, profile in latest.values()])
            try:
                embeddings = list(await self.engine.scorer.embed_users(ids))
            except ScorerUnavailable:
                embeddings = [None] * len(latest)  # scoring embeds on the fly; refreshed on a later batch
        stamp = now_ms()

        async def write() -> list[Output]:
            table = self.tables.user_embeddings
            version = self.engine.live.model_version
            return write_values(table, [(event, user_id.encode(), CachedProfile(row, embedding, version,
                                                                                stamp).to_bytes())
                                        for (user_id, (event, _)), row, embedding in zip(
                                            latest.items(), ids, embeddings, strict=True)],
                                wal=self.tables.wal)  # fmt: skip

        dead = dead_letter_outputs(self.channels.dlq.get_topic_name(), decoded.dead)
        await self.committer.commit_batch(events, write, dead, self.generation)
        self.metrics.events.labels("dead_letter").inc(len(decoded.dead))
        self.metrics.events.labels("profile").inc(len(latest))
