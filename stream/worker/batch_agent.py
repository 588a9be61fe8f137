"""What both worker agents share: micro-batches off one topic, each committed whole or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from stream.engine import ScoringEngine
from stream.settings import Settings
from stream.worker.batches import channel_batches, natural_batches
from stream.worker.channels import Channels
from stream.worker.fetch import bound_long_poll, direct_hand_off, raw_decode
from stream.worker.metrics import WorkerMetrics
from stream.worker.recovery import ask_the_broker
from stream.worker.sequence import PartitionSequencer, keep_every_record
from stream.worker.stall_watch import StallWatch
from stream.worker.tables import Tables
from stream.worker.transactions import BatchCommitter, BatchDropped

STALL_CHECK_EVERY_S = 5.0
STALL_IDLE_S = 10.0  # an agent without a batch this long, behind its fetch position, reads again


class BatchAgent:
    """Runs `process` on every natural batch (`batches.py`, ≤ batch_max) of the events this worker owns.

    A batch that raises poisons the committer (nothing more is committed), and the agent stops: the
    batch is read again after the restart, so a failure never half-writes its outputs. Each
    partition's events are scored in offset order with none skipped (`sequence.py`).
    """

    topic_role = ""  # "transactions" | "profiles": the channel this agent consumes
    agent_name = ""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        channels: Channels,
        tables: Tables,
        engine: ScoringEngine,
        metrics: WorkerMetrics,
        committer: BatchCommitter,
    ) -> None:
        self.app, self.settings, self.channels, self.tables = app, settings, channels, tables
        self.engine, self.metrics, self.committer = engine, metrics, committer
        self.generation: Any = None  # the consumer generation the batch in process() was admitted in
        app.agent(getattr(channels, self.topic_role), name=self.agent_name)(self.run)
        self.sequencer = PartitionSequencer(  # Faust's consumer internals: faust/transport/consumer.py
            committed=lambda tp: app.consumer._committed_offset.get(tp),
            seek=lambda tp, offset: app.consumer.seek(tp, offset),
        )
        earliest = app.conf.consumer_auto_offset_reset == "earliest"
        self.stall_watch = StallWatch(self.sequencer, STALL_IDLE_S, start_offset=0 if earliest else None)
        app.timer(STALL_CHECK_EVERY_S, name=f"{self.agent_name}.stall_watch")(self.watch_stalls)

    async def watch_stalls(self) -> None:
        """`stall_watch.py`: only between rebalances, with Faust's flow running."""
        app = self.app
        if app.rebalancing or not app.flow_control.is_active() or not app.consumer.flow_active:
            return
        topic = getattr(self.channels, self.topic_role).get_topic_name()
        consumer = app.consumer
        active = consumer._active_partitions or set()  # Faust's consumer internals, as in web.py
        owned = [tp for tp in consumer.assignment() if tp.topic == topic and tp in active]
        try:
            await self.stall_watch.check(owned, consumer.position)
        except Exception as exc:  # a partition revoked meanwhile: the next check sees the new assignment
            app.log.info("stall watch skipped a check: %r", exc)
        self.metrics.rereads.set(self.sequencer.seeks + self.stall_watch.reads_again)

    async def run(self, stream: faust.StreamT) -> None:
        # Agents start before the fetcher (it starts once recovery ends), and the consumer must not be
        # built earlier than Faust builds it (it reads the app's transaction mode when it is created).
        keep_every_record(self.app.consumer, [getattr(self.channels, self.topic_role).get_topic_name()])
        ask_the_broker(self.app.consumer)  # before the first rebalance's table recovery (recovery.py)
        bound_long_poll(self.app.consumer, self.settings.fetch_max_wait_ms, self.settings.fetch_min_bytes)
        batches = natural_batches
        if self.settings.ingest == "direct":
            direct_hand_off(self.app.consumer)
            raw_decode(stream.channel)
            batches = channel_batches
        self.committer.install()
        async for events in batches(stream, self.settings.batch_max, self.settings.batch_within_s):
            self.stall_watch.batch_seen()
            try:
                ours = self.committer.assigned(events)
                self.generation = self.app.consumer_generation_id  # process() commits under it, or not at all
                admitted = await self.sequencer.admit(ours, self.generation)
                self.metrics.rereads.set(self.sequencer.seeks + self.stall_watch.reads_again)
                if admitted:
                    await self.process(admitted)
            except BatchDropped:
                self.sequencer.rewind(admitted)  # read again: after the rebalance, or by seeking back
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.app.log.exception("%s batch failed; stopping without committing it", self.agent_name)
                await self.committer.fail(exc)
                raise

    async def process(self, events: list[Any]) -> None:
        raise NotImplementedError
