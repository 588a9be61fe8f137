"""`--wait`: probes for the broker, topics and Triton, and the deadline that turns into one clear error."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from panther_common.ports import free_ports
from stream.readiness import (
    NotReady,
    kafka_probe,
    topics_probe,
    triton_probe,
    wait_for_topics,
    wait_until,
)
from stream.settings import Settings
from stream.topics import create_topics


def test_wait_until_returns_once_ready_and_raises_at_the_deadline() -> None:
    answers = iter(["not yet", "not yet", None])
    assert wait_until(lambda: next(answers), "thing", timeout_s=5.0, interval_s=0.01) > 0
    with pytest.raises(NotReady, match=r"thing not ready after 0 s: still down"):
        wait_until(lambda: "still down", "thing", timeout_s=0.05, interval_s=0.01)


def test_no_broker_is_a_reason_not_an_exception() -> None:
    (port,) = free_ports(1)
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}")
    assert kafka_probe(settings)() == f"no broker answers at 127.0.0.1:{port}"


@pytest.fixture
def fake_triton() -> Iterator[tuple[Settings, dict[str, int]]]:
    """An HTTP server answering Triton's health paths with the status codes in the dict."""
    codes: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(codes.get(self.path, 404))
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Settings(triton_host="127.0.0.1", triton_http_port=server.server_address[1]), codes
    server.shutdown()


def test_triton_is_ready_only_with_the_server_and_the_worker_models(fake_triton) -> None:
    settings, codes = fake_triton
    probe = triton_probe(settings)
    codes["/v2/health/ready"] = 200
    codes["/v2/models/panther_score/ready"] = 200
    codes["/v2/models/panther_refresh/ready"] = 200
    assert probe() is not None and "panther_user_encoder/ready answered 404" in str(probe())
    codes["/v2/models/panther_user_encoder/ready"] = 200
    assert probe() is None
    codes["/v2/health/ready"] = 400  # strict readiness: a model is not READY
    assert "answered 400" in str(probe())


def test_no_triton_is_a_reason() -> None:
    (port,) = free_ports(1)
    probe = triton_probe(Settings(triton_host="127.0.0.1", triton_http_port=port))
    assert probe() == f"no Triton answers at http://127.0.0.1:{port}"


@pytest.mark.integration
def test_topics_probe_waits_for_creation(kafka_bootstrap: str, unique_topic) -> None:
    names = {
        f"topic_{role}": unique_topic(role)
        for role in ("transactions", "profiles", "alerts", "scores", "dlq")
    }
    settings = Settings(kafka_bootstrap=kafka_bootstrap, partitions=1, **names)
    probe = topics_probe(settings, [settings.topic_alerts])
    assert probe() == f"missing topics {settings.topic_alerts}"
    with pytest.raises(NotReady):
        wait_for_topics(settings, timeout_s=0.5)
    create_topics(settings)
    assert probe() is None
    assert wait_for_topics(settings, timeout_s=5.0) == 0.0
