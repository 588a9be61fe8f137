"""Security defaults (docs/SECURITY.md): loopback binds, SASL/TLS pass-through to both Kafka clients,
secrets masked wherever settings are printed, and no card number in a dead letter.

No network is touched: clients are built (which makes librdkafka and Python's ssl load the
certificates and keys) but never connect.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer

from stream.broker import LocalKafka, server_properties
from stream.events import ContractError, Transaction, dead_letter, decode
from stream.pan import looks_like_pan
from stream.settings import KafkaSecurityConfigError, Settings
from triton_repo.server import LocalTriton, TritonDistribution

PASSWORD = "s3cret-Pa55word-for-tests"
KEY_PASSWORD = "k3y-Pa55word-for-tests"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Settings as a process with no PANTHER_* variable reads them: the shipped defaults."""
    for name in [n for n in os.environ if n.startswith("PANTHER_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback


# ---------------------------------------------------------------- binds


def test_broker_listens_on_loopback_unless_configured(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def listener_hosts(kafka: LocalKafka) -> set[str]:
        props = server_properties(kafka.host, kafka.port, kafka.controller_port, tmp_path)
        endpoints = [e for key in ("listeners", "advertised.listeners") for e in props[key].split(",")]
        return {endpoint.split("://")[1].rsplit(":", 1)[0] for endpoint in endpoints}

    assert all(_is_loopback(host) for host in listener_hosts(LocalKafka.from_settings(Settings())))
    clean_env.setenv("PANTHER_BROKER_HOST", "10.1.2.3")
    assert listener_hosts(LocalKafka.from_settings(Settings())) == {"10.1.2.3"}


def test_triton_serves_http_grpc_and_metrics_on_loopback_unless_configured(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def addresses(server: LocalTriton) -> dict[str, str]:
        command = server.command(TritonDistribution(tmp_path))
        flags = dict(arg[2:].split("=", 1) for arg in command[1:] if arg.startswith("--") and "=" in arg)
        return {name: value for name, value in flags.items() if name.endswith("-address")}

    defaults = addresses(LocalTriton.from_settings(Settings(), repo=tmp_path))
    assert set(defaults) == {"http-address", "grpc-address", "metrics-address"}
    assert all(_is_loopback(host) for host in defaults.values()), defaults
    clean_env.setenv("PANTHER_TRITON_HOST", "10.1.2.3")
    assert set(addresses(LocalTriton.from_settings(Settings(), repo=tmp_path)).values()) == {"10.1.2.3"}


def test_worker_web_port_binds_loopback_unless_configured(clean_env: pytest.MonkeyPatch) -> None:
    """Faust's own default web_bind is 0.0.0.0: the app must pass ours explicitly."""
    from stream.worker.app import create_app

    app = create_app(Settings())
    assert _is_loopback(app.conf.web_bind) and _is_loopback(app.conf.web_host)
    clean_env.setenv("PANTHER_WEB_HOST", "0.0.0.0")
    assert create_app(Settings()).conf.web_bind == "0.0.0.0"


# ---------------------------------------------------------------- SASL / TLS pass-through


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed client certificate and its key, encrypted with KEY_PASSWORD (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=panther-test",
         "-passout", f"pass:{KEY_PASSWORD}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _secure(client_cert: tuple[Path, Path], **overrides: Any) -> Settings:
    cert, key = client_cert
    values: dict[str, Any] = {
        "kafka_bootstrap": "127.0.0.1:1",  # nothing listens: clients are built, never connected
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "panther",
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_cafile": cert,  # self-signed: it is its own CA
        "kafka_ssl_certfile": cert,
        "kafka_ssl_keyfile": key,
        "kafka_ssl_key_password": KEY_PASSWORD,
    }
    return Settings(**{**values, **overrides})


def test_confluent_clients_get_every_security_setting(
    clean_env: pytest.MonkeyPatch, client_cert: tuple[Path, Path]
) -> None:
    settings = _secure(client_cert)
    config = settings.kafka_client_config()
    assert {key: config[key] for key in config if key.startswith(("security", "sasl", "ssl"))} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "panther",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(client_cert[0]),
        "ssl.certificate.location": str(client_cert[0]),
        "ssl.key.location": str(client_cert[1]),
        "ssl.key.password": KEY_PASSWORD,
    }
    Producer(config)  # librdkafka knows every key, and loads the CA, the cert and the encrypted key
    wrong = _secure(client_cert, kafka_ssl_key_password="not-the-password").kafka_client_config()
    with pytest.raises(KafkaException):  # ... so the key password really reached OpenSSL
        Producer(wrong)


def test_faust_gets_sasl_and_the_ca(clean_env: pytest.MonkeyPatch, client_cert: tuple[Path, Path]) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from stream.worker.app import create_app

    settings = _secure(
        client_cert, kafka_ssl_certfile=None, kafka_ssl_keyfile=None, kafka_ssl_key_password=None
    )
    app = create_app(settings)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("panther", PASSWORD)
    context: ssl.SSLContext = auth["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "panther-test"),),)]
    assert PASSWORD not in repr(app.conf.broker_credentials)

    plain_tls = create_app(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=client_cert[0]))
    auth = credentials_to_aiokafka_auth(plain_tls.conf.broker_credentials, plain_tls.conf.ssl_context)
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"].get_ca_certs()


def test_faust_gets_the_client_certificate(
    clean_env: pytest.MonkeyPatch, client_cert: tuple[Path, Path]
) -> None:
    from stream.worker.app import create_app

    loaded: list[tuple[Any, ...]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        loaded.append((str(certfile), str(keyfile), password))
        original(self, certfile, keyfile, password)

    clean_env.setattr(ssl.SSLContext, "load_cert_chain", spy)
    create_app(_secure(client_cert))
    assert loaded == [(str(client_cert[0]), str(client_cert[1]), KEY_PASSWORD)]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs PANTHER_KAFKA_SASL_MECHANISM"),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
            },
            "needs PANTHER_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_username": "u"}, "PANTHER_KAFKA_SASL_* is set but"),
        ({"kafka_ssl_cafile": Path(__file__)}, "PANTHER_KAFKA_SSL_CAFILE set but"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": Path("/nonexistent/ca.pem")},
            "is not a file",
        ),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": Path(__file__)}, "go together"),
    ],
)
def test_half_a_security_configuration_is_refused_by_name(
    clean_env: pytest.MonkeyPatch, values: dict[str, Any], message: str
) -> None:
    settings = Settings(**values)  # reading settings never fails for it: only building a client does
    with pytest.raises(KafkaSecurityConfigError, match=message.replace("*", r"\*")):
        settings.kafka_client_config()


# ---------------------------------------------------------------- secrets and card numbers


def test_secrets_are_masked_wherever_settings_are_printed(
    clean_env: pytest.MonkeyPatch, client_cert: tuple[Path, Path]
) -> None:
    settings = _secure(client_cert)
    printed = [
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        json.dumps(settings.model_dump(mode="json")),
        settings.model_dump_json(),
    ]
    for text in printed:
        assert PASSWORD not in text and KEY_PASSWORD not in text
        assert "**********" in text
    assert (
        settings.kafka_sasl_password is not None
        and settings.kafka_sasl_password.get_secret_value() == PASSWORD
    )


def test_building_clients_logs_no_secret(
    clean_env: pytest.MonkeyPatch, client_cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from stream.worker.app import create_app

    settings = _secure(client_cert)
    with caplog.at_level(logging.DEBUG):
        Producer(settings.kafka_client_config())
        create_app(_secure(client_cert, kafka_ssl_certfile=None, kafka_ssl_keyfile=None))
        Settings(kafka_sasl_password="not-logged-either")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert PASSWORD not in logged and KEY_PASSWORD not in logged and "not-logged-either" not in logged


def test_a_dead_letter_never_carries_a_card_number() -> None:
    """Refused in free text, masked everywhere a letter is read (reason, values, key, raw bytes)."""
    pan = "5555555555554444"
    raw = json.dumps(
        {"txn_id": pan, "user_id": "u1", "timestamp": 1767323045000, "amount": -1, "merchant_id": "m1",
         "city": f"card {pan}"}
    ).encode()  # fmt: skip
    with pytest.raises(ContractError) as caught:
        decode(Transaction, raw)
    assert {error.field for error in caught.value.errors} == {"amount", "city"}
    letter = dead_letter(raw, caught.value, topic="transactions", partition=0, offset=0, key=pan.encode())
    assert pan not in letter.to_json_bytes().decode() and pan.encode() not in letter.raw
    assert not looks_like_pan(letter.raw.decode()) and letter.raw_masked == 2
    assert letter.raw.count(b"************4444") == 2
