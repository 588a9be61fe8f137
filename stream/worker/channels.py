"""Faust handles on PANTHER's topics. Values stay raw bytes: we decode ourselves, so a bad record can
go to the DLQ with its exact bytes and a reason instead of crashing a Faust codec."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.settings import Settings


@dataclass(frozen=True)
class Channels:
    transactions: faust.TopicT
    profiles: faust.TopicT
    scores: faust.TopicT
    alerts: faust.TopicT
    dlq: faust.TopicT


def declare_channels(app: faust.App, settings: Settings) -> Channels:
    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=settings.partitions)

    return Channels(
        transactions=topic(settings.topic_transactions),
        profiles=topic(settings.topic_profiles),
        scores=topic(settings.topic_scores),
        alerts=topic(settings.topic_alerts),
        dlq=topic(settings.topic_dlq),
    )
