"""The Faust application object, built from settings (no module-level app: tests build their own)."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust

from stream.settings import Settings


def worker_data_dir(settings: Settings) -> Path:
    """The RocksDB home; its parents are created here (Faust only creates the last level)."""
    path = Path(settings.worker_data_dir or settings.home / f"worker-{settings.web_port}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | ssl.SSLContext | None:
    """SASL/TLS pass through from PANTHER_KAFKA_* settings, mirroring the confluent-kafka clients."""
    protocol = settings.kafka_security_protocol
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile) if protocol in {"SSL", "SASL_SSL"} else None
    if context is not None and settings.kafka_ssl_certfile:  # mutual TLS, as for confluent-kafka
        key_password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            key_password.get_secret_value() if key_password else None,
        )
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return context


def create_app(settings: Settings) -> faust.App:
    settings.check_kafka_security()  # one clear line for an unworkable SASL/TLS combination
    bootstrap = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))
    return faust.App(
        settings.app_id,
        broker=bootstrap,
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(worker_data_dir(settings)),
        processing_guarantee=settings.delivery,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # loopback unless configured
        web_port=settings.web_port,
        web_in_thread=False,
        producer_max_request_size=settings.max_message_bytes * 32,
        stream_buffer_maxsize=max(4 * settings.batch_max, 1024),  # bounded: backpressure, not memory growth
        consumer_group_instance_id=settings.worker_group_instance_id,  # static membership when set
        autodiscover=False,
        key_serializer="raw",  # tables and topics carry our own bytes (see tables.py)
        value_serializer="raw",
    )
