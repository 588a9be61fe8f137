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
    ROOT,
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
    broken["services"]["triton"]["shm_sise"] = "1gb"  # misspelled key
    broken["services"]["worker"]["depends_on"]["topics"]["condition"] = "service_done"
    messages = " | ".join(str(e.message) for e in validator.iter_errors(broken))
    assert "'shm_sise'" in messages and "service_done" in messages


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


def image_defaults() -> dict[str, str]:
    """deploy/kafka/server.properties: the container broker's defaults, which KAFKA_* overrides."""
    lines = (ROOT / "deploy/kafka/server.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_kafka_image_runs_the_local_brokers_version_and_settings(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"panther-kafka:{Settings().kafka_version}"
    dockerfile = (ROOT / "deploy/kafka/Dockerfile").read_text()
    assert f"ARG KAFKA_VERSION={Settings().kafka_version}" in dockerfile
    local = server_properties("127.0.0.1", 9092, 9093, log_dirs=Path("/var/lib/kafka/data"))
    container = image_defaults()
    host_bound = {"listeners", "advertised.listeners", "controller.quorum.bootstrap.servers"}
    assert {k: v for k, v in container.items() if k not in host_bound} == {
        k: v for k, v in local.items() if k not in host_bound
    }
    env = {key.removeprefix("KAFKA_").lower().replace("_", "."): str(v)
           for key, v in kafka["environment"].items() if key.startswith("KAFKA_")}  # fmt: skip
    port = Settings().broker_port
    assert f"PLAINTEXT://:{port}" in env["listeners"]
    assert f"PLAINTEXT://kafka:{port}" in env["advertised.listeners"]
    assert compose["services"]["worker"]["environment"]["PANTHER_KAFKA_BOOTSTRAP"] == f"kafka:{port}"


def test_triton_serves_the_model_job_s_model(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    assert triton["depends_on"]["model"]["condition"] == "service_completed_successfully"
    assert "demo:/demo:ro" in triton["volumes"]
    assert triton["environment"]["PANTHER_MODEL_DIR"] == "/demo/model"
    assert str(Settings().triton_http_port) in " ".join(triton["healthcheck"]["test"])


def test_no_host_path_is_mounted(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            assert volume.split(":", 1)[0] in compose["volumes"], f"{name}: {volume} is a host path"


def test_the_gpu_override_gets_a_gpu() -> None:
    import yaml

    gpu = yaml.safe_load((ROOT / "deploy/compose/docker-compose.gpu.yml").read_text())
    triton = gpu["services"]["triton"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert triton["build"]["dockerfile"] == "deploy/triton/Dockerfile"


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
