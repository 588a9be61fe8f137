"""Shared fixtures: a real Kafka broker for integration tests, and unique topic names.

`kafka_bootstrap` is an external cluster when PANTHER_KAFKA_BOOTSTRAP is set, otherwise a local
KRaft broker started from jars (stream/broker.py) on free loopback ports for the whole session. Its
jars come from the machine-wide cache (`Settings().home / "jars"`), so Maven runs once per machine;
its data lives in a pytest temp dir and disappears with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from panther_common.ports import free_ports
from stream.broker import BrokerError, LocalKafka, ToolMissing
from stream.settings import Settings

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist processes on a 2-core machine: torch's (and its OpenMP's) default of one thread per core
    # in each, plus the worker subprocesses that inherit this environment, oversubscribe the cores and
    # OpenMP's spinning threads starve the other process. One intra-op thread each; set before any
    # test module imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

EXTERNAL_ENV = "PANTHER_KAFKA_BOOTSTRAP"
CONTAINER_IMAGE_ENV = "PANTHER_KAFKA_IMAGE"
DEFAULT_CONTAINER_IMAGE = "panther-kafka:4.1.1"  # deploy/kafka/Dockerfile, built by `make images`


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in pyproject.toml: the virtualenv is keyed on that file's hash (Makefile).
    config.addinivalue_line("markers", "xdist_group(name): run on one xdist process (pytest-xdist's own)")
    config.addinivalue_line(
        "markers", "containers: the images of `make images` in a Docker engine (compose, testcontainers)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n 2 --dist loadgroup` (make test) the `worker` tests run one after another on one xdist
    process while the rest is shared out between both: they are mostly waiting (Faust starts,
    rebalances, session timeouts), so beside the CPU-bound rest they cost little wall time, and two real
    workers' timings never race each other."""
    for item in items:
        if item.get_closest_marker("worker"):
            item.add_marker(pytest.mark.xdist_group("worker"))


def _announce(config: pytest.Config, message: str) -> None:
    """Write past pytest's output capture, so the CI log shows that a real broker ran."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{message}", file=sys.stderr, flush=True)  # leading newline: progress dots precede


@pytest.fixture(scope="session")
def local_kafka(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalKafka]:
    """The session's own broker (skipped when the tests run against an external cluster)."""
    if os.environ.get(EXTERNAL_ENV):
        pytest.skip(f"{EXTERNAL_ENV} is set: tests use that cluster, no local broker is managed")
    settings = Settings()
    port, controller_port = free_ports(2)
    kafka = LocalKafka(
        settings.home,
        version=settings.kafka_version,
        port=port,
        controller_port=controller_port,
        heap=settings.broker_heap,
        data_dir=tmp_path_factory.mktemp("kafka"),
    )
    try:
        kafka.start(wait_s=120)
    except ToolMissing as exc:
        pytest.skip(f"cannot run a local Kafka broker: {exc}")
    except BrokerError as exc:
        pytest.fail(f"local Kafka broker did not start: {exc}", pytrace=False)
    _announce(
        request.config, f"kafka broker started at {kafka.bootstrap} (Kafka {kafka.version}, {kafka.data_dir})"
    )
    yield kafka
    kafka.stop()
    _announce(request.config, f"kafka broker stopped ({kafka.bootstrap})")


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """`host:port` of a live Kafka: PANTHER_KAFKA_BOOTSTRAP if set, else the session's local broker."""
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        _announce(request.config, f"kafka broker: external cluster at {external}")
        return external
    kafka: LocalKafka = request.getfixturevalue("local_kafka")
    return kafka.bootstrap


@pytest.fixture(scope="session")
def kafka_container_bootstrap() -> Iterator[str]:
    """Our Kafka image (deploy/kafka/Dockerfile, `make images`) run by testcontainers, wherever a Docker
    engine answers; skipped where none does. No registry is needed: the image is built here, and Ryuk
    (testcontainers' reaper, an image from Docker Hub) is off: the `with` block removes the container."""
    try:
        import docker

        engine = docker.from_env()
        engine.ping()
    except Exception as exc:  # no socket, no daemon, no permission: all mean "no Docker here"
        pytest.skip(f"no Docker engine answers ({type(exc).__name__}); testcontainers path not run")
    image = os.environ.get(CONTAINER_IMAGE_ENV, DEFAULT_CONTAINER_IMAGE)
    if not engine.images.list(name=image):
        pytest.fail(f"a Docker engine answers but has no image {image}: build it with `make images`")
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    (port,) = free_ports(1)
    advertised = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://localhost:9093"
    container = DockerContainer(image).with_bind_ports(9092, port)
    with container.with_env("KAFKA_ADVERTISED_LISTENERS", advertised) as running:
        wait_for_logs(running, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes topic names no other test (or earlier run against a shared cluster) has used."""
    test_name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:40]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test_name}-{uuid.uuid4().hex[:8]}"

    return make
