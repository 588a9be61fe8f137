"""deploy/compose/docker-compose.yml: the compose-spec schema, and agreement with the code."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stream.broker import server_properties
from stream.settings import Settings
from tests.deploy.manifests import (
    COMPOSE,
    SETTINGS_ENV,
    compose_schema,
    load_compose,
    panther_env_names,
    panther_invocations,
    resolve,
    settings_from,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def test_matches_the_compose_spec(compose: dict[str, Any], validator: jsonschema.protocols.Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_can_fail(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["triton"]["deploy"]["resources"]["reservation"] = {}  # misspelled key
    broken["services"]["worker"]["depends_on"]["topics"]["condition"] = "service_done"
    messages = " | ".join(str(e.message) for e in validator.iter_errors(broken))
    assert "'reservation'" in messages and "service_done" in messages


def test_every_panther_variable_is_a_setting(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert panther_env_names(COMPOSE.read_text()) <= SETTINGS_ENV
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        if any(key.startswith("PANTHER_") for key in env):
            settings_from(env, monkeypatch)  # values parse as the settings' types
        assert isinstance(env, dict), f"{name}: environment as a mapping"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"


def test_kafka_is_the_version_and_config_the_local_broker_runs(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{Settings().kafka_version}"
    local = server_properties("127.0.0.1", 9092, 9093, log_dirs=Path("/x"))
    env = {
        key.removeprefix("KAFKA_").lower().replace("_", "."): str(v)
        for key, v in kafka["environment"].items()
    }
    shared = (
        "process.roles",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "group.initial.rebalance.delay.ms",
        "auto.create.topics.enable",
        "controller.listener.names",
        "inter.broker.listener.name",
    )
    for key in shared:
        assert env[key] == local[key], key
    port = Settings().broker_port
    assert f"PLAINTEXT://:{port}" in env["listeners"]
    assert compose["services"]["worker"]["environment"]["PANTHER_KAFKA_BOOTSTRAP"] == f"kafka:{port}"


def test_triton_gets_a_gpu_and_the_model(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert any(volume.endswith(":/model:ro") for volume in triton["volumes"])
    defaults = Settings()
    published = {int(p.rsplit(":", 2)[-1]) for p in triton["ports"]}
    assert published == {defaults.triton_http_port, defaults.triton_grpc_port, defaults.triton_metrics_port}
    assert str(defaults.triton_http_port) in " ".join(triton["healthcheck"]["test"])


def test_worker_waits_scales_and_keeps_rocksdb_apart(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` must work
    assert worker["environment"]["PANTHER_WORKER_DATA_DIR"].startswith("/var/lib/panther/")
    assert worker["environment"]["PANTHER_WEB_PORT"] == str(Settings().web_port)
    assert worker["depends_on"]["triton"]["condition"] == "service_healthy"
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_service_commands_are_real_panther_commands(compose: dict[str, Any]) -> None:
    seen = set()
    for service in compose["services"].values():
        if service["image"].startswith("panther-worker"):
            command = service["command"]
            line = command[0] if service.get("entrypoint") == ["sh", "-c"] else "panther " + " ".join(command)
            for args in panther_invocations(line, {}):
                seen.add(resolve(args).command.name)
    assert seen == {"create", "worker", "produce", "tail"}
