"""Prometheus counters and histograms of the worker (one registry per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.events = Counter("panther_events_total", "records consumed", ["outcome"], registry=registry)
        self.alerts = Counter("panther_alerts_total", "alerts emitted", registry=registry)
        self.degraded = Counter("panther_degraded_total", "events scored in degraded mode", registry=registry)
        self.batch_size = Histogram(
            "panther_batch_size", "events per micro-batch", registry=registry,
            buckets=(1, 4, 16, 64, 256, 1024, 4096),
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "panther_batch_seconds", "time to process one micro-batch", registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        # Where a batch's time goes (the benchmark reads these): scoring vs writing + committing it.
        self.score_seconds = Histogram(
            "panther_score_seconds", "engine time per micro-batch (tokens, features, state, scorer)",
            registry=registry, buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "panther_commit_seconds", "the committer's time per micro-batch (deliver, write, commit)",
            registry=registry, buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.phase_seconds = Histogram(
            "panther_batch_phase_seconds",
            "per micro-batch: decode, settle (waiting for a running refresh of its users), load (states, "
            "profiles), score, outputs, deliver (at_least_once: outputs acknowledged), write (tables, "
            "sends, acks), commit (exactly_once: flush + transaction)", ["phase"],
            registry=registry, buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.lag_seconds = Histogram(
            "panther_event_lag_seconds", "record timestamp → score written", registry=registry,
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.rereads = Gauge(
            "panther_partition_rereads", "partitions sought back: records dropped on the way in",
            registry=registry,
        )
        self.scorer_up = Gauge("panther_scorer_up", "1 when the primary scorer answers", registry=registry)
        # The cached path: the encoder on the critical path (rows), behind it (refresh), and what lags.
        self.encoder_rows = Counter(
            "panther_critical_encoder_rows_total", "encoder rows run while a batch was being scored",
            registry=registry,
        )  # fmt: skip
        self.refresh_rows = Counter(
            "panther_refresh_rows_total", "encoder rows run by the refresh behind the batches",
            registry=registry,
        )
        self.refresh_seconds = Histogram(
            "panther_refresh_seconds", "one refresh call", registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.refresh_backlog = Gauge(
            "panther_refresh_backlog", "users waiting for a refresh", registry=registry
        )
        self.state_memo = Counter(
            "panther_state_memo_total", "user states read: decoded state kept (hit) or decoded (miss)",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.lagged = Counter(
            "panther_lagged_scores_total", "scores made from a lagging state (state_lag > 0)",
            registry=registry,
        )
        self.evicted = Counter(
            "panther_state_evictions_total", "users deleted from the state for inactivity (retention.py)",
            registry=registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
