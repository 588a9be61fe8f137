"""The compose stack for real (`-m containers`): up with one command, 1,000 events and 10 malformed ones
replayed from the host through the published Kafka port, every valid one scored exactly once
(read_committed), the malformed ones dead-lettered with a reason, then down with nothing left.

Needs a Docker engine, a compose command (`docker compose` or Debian's `docker-compose`) and the images
of `make images`; skipped without an engine or compose, failed when the engine answers but an image is
missing. ~4 min on 2 cores, most of it the model job and Triton's start.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer

from panther_common.ports import free_port
from stream.produce import produce_file
from stream.settings import Settings
from stream.simulator import SimulatorConfig, simulate, write_dataset

pytestmark = [pytest.mark.containers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy/compose/docker-compose.yml"
IMAGES = ("panther-kafka:4.1.1", "panther-worker:0.1.0", "panther-triton-cpu:0.1.0")
VALID, MALFORMED = 1_000, 10


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no compose command (docker compose or docker-compose)")


def engine_or_skip() -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        pytest.skip("no Docker engine answers: the container suite is not run")
    missing = [
        i for i in IMAGES if subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode
    ]
    if missing:
        pytest.fail(
            f"a Docker engine answers but images are missing: {', '.join(missing)} (run `make images`)"
        )


class Stack:
    def __init__(self, project: str, kafka_port: int) -> None:
        self.project, self.kafka_port = project, kafka_port
        self.base = [*compose_command(), "-p", project, "-f", str(COMPOSE_FILE)]
        self.env = {"KAFKA_HOST_PORT": str(kafka_port), "PATH": "/usr/local/bin:/usr/bin:/bin"}

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        out = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and out.returncode:
            raise AssertionError(f"compose {' '.join(args)} failed: {out.stderr[-3000:]}")
        return out.stdout + out.stderr

    def container(self, service: str) -> str:
        return self("ps", "-q", service).strip().splitlines()[0]

    def health(self, service: str) -> str:
        inspect = ["docker", "inspect", "-f", "{{.State.Health.Status}}", self.container(service)]
        return subprocess.run(inspect, capture_output=True, text=True).stdout.strip()

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        kinds = (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"])
        return [
            x
            for kind in kinds
            for x in subprocess.run(
                ["docker", *kind, "--filter", label], capture_output=True, text=True
            ).stdout.split()
        ]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    engine_or_skip()
    up = Stack(f"panther-test-{uuid.uuid4().hex[:6]}", free_port())
    try:
        up("up", "-d", "--no-build")
        deadline = time.monotonic() + 480
        while up.health("worker") != "healthy":
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the worker never became healthy:\n{up('logs', '--tail', '40', check=False)}"
                )
            time.sleep(3)
        yield up
    finally:
        up("down", "-v", "--remove-orphans", "-t", "30", check=False)
        assert up.leftovers() == [], "compose down left containers, volumes or networks behind"


def test_the_stack_scores_every_valid_event_once_and_dead_letters_the_rest(
    stack: Stack, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    txns, profiles = simulate(SimulatorConfig(users=60, days=12, seed=int(run, 16) % 10_000, fraud_rate=0.02))
    paths = write_dataset(txns, profiles, tmp_path)
    frame = pd.read_parquet(paths["transactions"]).tail(VALID).copy()
    frame["txn_id"] = [f"compose-{run}-{i}" for i in range(len(frame))]
    frame.to_parquet(tmp_path / "replay.parquet", index=False)
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{stack.kafka_port}")
    produce_file(tmp_path / "replay.parquet", settings.topic_transactions, settings, show_progress=False)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    bad_keys = [f"bad-{run}-{i}" for i in range(MALFORMED)]
    bodies = {
        key: b"{not json" if i % 2 else json.dumps({"txn_id": key, "user_id": key, "amount": -1}).encode()
        for i, key in enumerate(bad_keys)
    }
    for key, body in bodies.items():
        producer.produce(settings.topic_transactions, key=key.encode(), value=body)
    assert producer.flush(30) == 0
    del producer

    scored, dead = Counter(), {}
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"check-{run}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topic_scores, settings.topic_dlq])
    deadline, done_at = time.monotonic() + 240, None
    while time.monotonic() < deadline and (done_at is None or time.monotonic() < done_at + 5):
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        if message.topic() == settings.topic_scores:
            txn_id = json.loads(message.value())["txn_id"]
            if txn_id.startswith(f"compose-{run}-"):
                scored[txn_id] += 1
        elif (key := (message.key() or b"").decode()) in bad_keys:
            dead[key] = json.loads(message.value())
        if done_at is None and len(scored) == len(frame) and len(dead) == MALFORMED:
            done_at = time.monotonic()  # then 5 s more: a duplicate would arrive here
    consumer.close()
    assert len(scored) == len(frame), f"{len(scored)} of {len(frame)} scored"
    assert set(scored.values()) == {1}, "a valid event was scored more than once"
    assert sorted(dead) == sorted(bad_keys)
    for key, letter in dead.items():
        assert letter["reason"] and base64.b64decode(letter["raw_b64"]) == bodies[key], letter
