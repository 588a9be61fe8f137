"""Runtime configuration: one pydantic settings object fed by `PANTHER_*` environment variables.

Defaults run everything on one machine over loopback; production overrides them through the
environment (see docs/CONFIGURATION.md).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.errors import PantherError
from stream.events import DEFAULT_MAX_MESSAGE_BYTES

# librdkafka's own log lines (connection refused, retries) go here instead of raw stderr, so a user
# sees our one-line error; an application that configures logging still receives them.
KAFKA_CLIENT_LOG = logging.getLogger("panther.librdkafka")
KAFKA_CLIENT_LOG.addHandler(logging.NullHandler())


class KafkaSecurityConfigError(PantherError):
    """PANTHER_KAFKA_* security settings that cannot work together; retrying will not help."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PANTHER_", extra="ignore", populate_by_name=True)

    # Where local services keep jars, data and logs (outside any git clone).
    home: Path = Field(default=Path.home() / ".cache" / "panther")

    # Kafka client side.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Security (docs/SECURITY.md): the same values reach confluent-kafka (`kafka_client_config`) and
    # Faust/aiokafka (`stream/worker/app.py`). Secrets are SecretStr: masked in repr and model_dump.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None  # CA bundle; unset: the system's trust store
    kafka_ssl_certfile: Path | None = None  # client certificate (PEM) for mutual TLS
    kafka_ssl_keyfile: Path | None = None  # its private key (PEM)
    kafka_ssl_key_password: SecretStr | None = None  # when the key is encrypted
    kafka_timeout_s: float = 10.0

    # Local single-node KRaft broker (`panther kafka start`).
    kafka_version: str = "4.1.1"
    broker_host: str = "127.0.0.1"
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap: str = "512m"

    # Topics (co-partitioned by user_id: transactions and user-profiles share `partitions`).
    topic_transactions: str = "transactions"
    topic_profiles: str = "user-profiles"
    topic_alerts: str = "fraud-alerts"
    topic_scores: str = "transaction-scores"
    topic_dlq: str = "transactions-dlq"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    retention_ms: int = 7 * 24 * 3600 * 1000

    # Faust worker (`panther worker`).
    app_id: str = "panther"
    # What a score's delivery promises (docs/STREAMING.md, "Delivery modes"): exactly_once = one Kafka
    # transaction per micro-batch (read_committed readers see each score once); at_least_once = scores
    # sent as soon as computed, offsets committed after (a crash may repeat one, never lose one).
    # PANTHER_PROCESSING_GUARANTEE, its earlier name, is still read.
    delivery: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        validation_alias=AliasChoices("delivery", "PANTHER_DELIVERY", "PANTHER_PROCESSING_GUARANTEE"),
    )
    worker_data_dir: Path | None = None  # RocksDB tables; default: home / "worker-<web_port>"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    standby_replicas: int = Field(default=1, ge=0)
    batch_max: int = Field(default=256, ge=1)
    # Natural batching (stream/worker/batches.py): a batch is whatever arrived while the previous one
    # was processed (≤ batch_max); only an idle worker waits, at most batch_within_s after a first event.
    batch_within_s: float = Field(default=0.005, ge=0)
    # Batches of at most this many events are scored and refreshed on the event loop's own thread
    # (in-process scorer only): the hop to a worker thread and back cost 0.2-1 ms a call at 10 events
    # (stream/engine.py `_call`); larger ones go to a thread, so the loop serves the commit meanwhile.
    inline_batch_max: int = Field(default=32, ge=0)
    # Python's GIL switch interval in the worker (sys.setswitchinterval): Faust's consumer thread needs
    # many short turns; Python's 5 ms default starved it (stream/worker/runtime.py).
    gil_switch_interval_s: float = Field(default=0.0005, gt=0, le=0.1)
    # Faust's per-record path into a batch: "direct" hands each fetched record to the conductor
    # without mode's wait_first (stream/worker/fetch.py) and takes batches off the agent's channel
    # queue (stream/worker/batches.py `channel_batches`); "faust": Faust's own, the reference.
    ingest: Literal["direct", "faust"] = "direct"
    # How long the broker may hold the worker's fetch when none of its partitions has new records
    # (Kafka's fetch.max.wait.ms; Faust hardcodes 1,500). aiokafka keeps one fetch in flight per
    # broker, and while a busy topic's records wait to be consumed it long-polls the idle ones (the
    # profiles): the busy topic could not be fetched again until that poll returned, and a loaded
    # worker sat idle up to 1.5 s with its backlog on the broker (stream/worker/fetch.py).
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=1500)
    # ...and until this many bytes have arrived (Kafka's fetch.min.bytes): fewer fetch round trips
    # at moderate rates, each record delayed at most fetch_max_wait_ms (stream/worker/fetch.py).
    fetch_min_bytes: int = Field(default=65_536, ge=1)
    # Python's gen-0 garbage-collection threshold in the worker (gc.set_threshold; 0: Python's 700).
    # The per-batch garbage is acyclic (freed by reference counting), yet at 700 the cyclic collector
    # ran ~70 times a second and scanned every live state and Faust object: 10 % of the worker's CPU at
    # full speed, 2 % at 20,000 (docs/BENCHMARKS.md, issue 14). The objects alive after start-up (the
    # model, Faust, the libraries) are also frozen out of the collector's scans (gc.freeze).
    gc_threshold: int = Field(default=20_000, ge=0)
    window_length: int = Field(default=100, ge=1)
    alert_threshold: float = Field(default=0.5, ge=0, le=1)
    embedding_ttl_s: float = Field(default=24 * 3600, gt=0)
    # A user with no event for this many days (by event time) is forgotten: their next event starts a
    # fresh state, and a sweep deletes the stored state with a changelog tombstone so compaction frees
    # it (stream/worker/retention.py). 0: keep every user forever. The sweep reads this many stored
    # states of a partition at most once per interval (with a batch of that partition), so a partition
    # of 1 M users is swept in ~4,000 intervals (~70 min), whatever the batch rate.
    state_retention_days: float = Field(default=400.0, ge=0)
    state_sweep_keys: int = Field(default=256, ge=1)
    state_sweep_interval_s: float = Field(default=1.0, ge=0)
    # RocksDB memory per state database (one per table and partition: 2 x partitions of them). Faust's
    # defaults (3 memtables of 64 MB, a 2 GiB block cache each) let a fast worker's RSS grow by
    # hundreds of MB before the first flush; these bound it (stream/worker/tables.py).
    state_write_buffer_mb: int = Field(default=8, ge=1)
    state_block_cache_mb: int = Field(default=64, ge=1)
    model_dir: Path | None = None  # the exported model artefact; default: home / "model"
    scorer: Literal["triton", "inprocess"] = "triton"
    # The in-process scorer's encoder refresh through a frozen TorchScript graph (CPU fp32; exact, and
    # it does not take turns on the GIL with the event loop: models/fraud/traced.py); False: eager.
    scorer_torchscript: bool = True
    degraded_mode: Literal["fallback", "pause"] = "fallback"
    # The encoder refresh behind the batches (stream/worker/refresh.py): users waiting for one beyond
    # `refresh_backlog` are scored from their last refresh (with state_lag) instead of waiting.
    refresh_backlog: int = Field(default=20_000, ge=0)
    refresh_batch_max: int = Field(default=1024, ge=1)  # users per refresh call
    # Events a score may lag its user's last encoder refresh (0: exact, the encoder runs in the batch
    # for every user the refresh has not reached). N > 0: scored from the last refresh while it lags
    # ≤ N events, with `state_lag` on the score; nothing waits on the refresh (docs/STREAMING.md).
    max_state_lag: int = Field(default=0, ge=0)
    # Decoded user states the worker keeps between batches (stream/worker/state_memo.py), used only
    # when the bytes read for the user equal those it wrote; 0: decode every state from its bytes.
    # ~4.5 KB each plus the bytes at the demo size (docs/CONFIGURATION.md). Off under a fallback
    # scorer (its degraded retry starts from copies).
    state_memo_max: int = Field(default=10_000, ge=0)

    # Triton (`panther triton start`, the worker's client).
    triton_host: str = "127.0.0.1"
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_timeout_s: float = Field(default=2.0, gt=0)
    triton_repo: Path = Path("triton_repo")
    triton_retries: int = Field(default=3, ge=0)
    triton_breaker_failures: int = Field(default=5, ge=1)
    triton_breaker_reset_s: float = Field(default=5.0, gt=0)
    triton_max_batch_size: int = Field(default=4096, ge=1)
    triton_queue_delay_us: int = Field(default=500, ge=0)
    triton_torch_threads: int = Field(default=1, ge=0)  # per Triton instance (torch and BLAS); 0 = defaults
    torch_threads: int = Field(default=1, ge=0)  # the in-process scorer (torch and BLAS); 0 = defaults
    # Freed memory glibc's malloc keeps for the in-process scorer's next tensors instead of returning it
    # to the OS (triton_repo.runner.retain_freed_memory; Triton's backend uses the same default); 0 = glibc's
    malloc_retain_mb: int = Field(default=512, ge=0, le=2047)

    # Input limits (bad input goes to the DLQ, never crashes a consumer; docs/RELIABILITY.md). Larger
    # records are dead-lettered unparsed; the cap keeps a dead letter (raw bytes base64, ~4/3 of this)
    # under the broker's default 1 MB message.max.bytes.
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024, le=512 * 1024)

    # Static group membership (Kafka `group.instance.id`, one unique value per worker replica, e.g. the
    # pod name): a worker restarted after a crash takes its partitions back at once instead of waiting
    # for the broker's session timeout. Unset: dynamic membership (a clean stop leaves the group).
    worker_group_instance_id: str | None = None

    # A worker stops within this many seconds of SIGTERM, or of a crash of one of its agents, whatever
    # the broker does; past it, it exits at once without committing (exit code 70: the open
    # transaction aborts, the next owner reads the batch again). Keep it under the orchestrator's grace
    # period (compose 30 s, Kubernetes 60 s) so the exit is the worker's own, logged.
    shutdown_timeout_s: float = Field(default=20.0, gt=0)

    @property
    def state_retention_ms(self) -> int | None:
        return round(self.state_retention_days * 86_400_000) if self.state_retention_days else None

    @property
    def exactly_once(self) -> bool:
        return self.delivery == "exactly_once"

    def check_kafka_security(self) -> None:
        """Half a security configuration fails here, by setting name, not later as a handshake error.

        Called when a Kafka client is built rather than when settings are read, so a command that
        never talks to Kafka (and a manifest test without its Secret) is not refused for it.
        """
        protocol = self.kafka_security_protocol
        sasl = {
            "PANTHER_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "PANTHER_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "PANTHER_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        if protocol.startswith("SASL"):
            missing = [name for name, value in sasl.items() if not value]
            if missing:
                raise KafkaSecurityConfigError(
                    f"PANTHER_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
                )
        elif any(sasl.values()):
            raise KafkaSecurityConfigError(
                f"PANTHER_KAFKA_SASL_* is set but PANTHER_KAFKA_SECURITY_PROTOCOL={protocol}; "
                "use SASL_SSL (or SASL_PLAINTEXT on a trusted network)"
            )
        files = {
            "PANTHER_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "PANTHER_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "PANTHER_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        given = {name: path for name, path in files.items() if path is not None}
        if given and not protocol.endswith("SSL"):
            raise KafkaSecurityConfigError(
                f"{', '.join(given)} set but PANTHER_KAFKA_SECURITY_PROTOCOL={protocol}"
            )
        for name, path in given.items():
            if not path.is_file():
                raise KafkaSecurityConfigError(f"{name}={path} is not a file")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise KafkaSecurityConfigError(
                "PANTHER_KAFKA_SSL_CERTFILE and PANTHER_KAFKA_SSL_KEYFILE go together"
            )

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every confluent-kafka client (producer, consumer, admin).

        It holds secrets in clear (librdkafka needs them): pass it to a client, never to a log.
        """
        self.check_kafka_security()
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
            "logger": KAFKA_CLIENT_LOG,
            "log.connection.close": False,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            config["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            config["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            config["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        if self.kafka_ssl_key_password:
            config["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return config


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
