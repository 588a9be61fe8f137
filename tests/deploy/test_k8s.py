"""deploy/k8s: every resource against the Kubernetes schemas (kubernetes-validate, strict), and the
facts the system relies on: RocksDB volumes, the GPU request, readiness, settings names, the CLI."""

from __future__ import annotations

import copy
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream.settings import Settings
from tests.deploy.manifests import (
    K8S,
    SETTINGS_ENV,
    by_kind,
    load_compose,
    load_k8s,
    panther_env_names,
    panther_invocations,
    resolve,
    settings_from,
)

# The oldest Kubernetes we claim (ttlSecondsAfterFinished, startupProbe: GA long before) and the newest
# schemas the package ships.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return load_k8s()


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(doc)["containers"]
    return container


@pytest.mark.parametrize("version", VERSIONS)
def test_resources_match_the_kubernetes_schemas(docs: list[dict[str, Any]], version: str) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_can_fail(docs: list[dict[str, Any]]) -> None:
    worker = copy.deepcopy(by_kind(docs, "StatefulSet", "panther-worker"))
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, VERSIONS[-1], strict=True)
    worker = copy.deepcopy(by_kind(docs, "StatefulSet", "panther-worker"))
    _container(worker)["volumeMount"] = []  # misspelled: only strict mode catches unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert {image["name"] for image in kustomization["images"]} == {"panther-worker", "panther-triton"}


def test_config_is_settings(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    assert set().union(*(panther_env_names(p.read_text()) for p in K8S.glob("*.yaml"))) <= SETTINGS_ENV
    config = by_kind(docs, "ConfigMap", "panther-config")["data"]
    settings = settings_from(config, monkeypatch)
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.partitions >= 2
    worker = by_kind(docs, "StatefulSet", "panther-worker")
    assert worker["spec"]["replicas"] <= settings.partitions  # more workers than partitions idle
    assert settings.triton_host == by_kind(docs, "Service", "panther-triton")["metadata"]["name"]


def test_config_matches_what_the_compose_stack_proved(docs: list[dict[str, Any]]) -> None:
    """The images the compose test ran: the lean worker (no torch: degraded mode pause, Triton scoring),
    its web port and RocksDB directory, Triton's HTTP readiness path."""
    compose = load_compose()["services"]
    config = by_kind(docs, "ConfigMap", "panther-config")["data"]
    proved = compose["worker"]["environment"]
    for key in ("PANTHER_DEGRADED_MODE", "PANTHER_SCORER", "PANTHER_DELIVERY"):
        assert config[key] == proved[key], key
    (container,) = by_kind(docs, "StatefulSet", "panther-worker")["spec"]["template"]["spec"]["containers"]
    assert container["image"].split(":")[0] == compose["worker"]["image"].split(":")[0]
    assert container["image"].split(":")[1] == compose["worker"]["image"].split(":")[1]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert "/ready" in " ".join(compose["worker"]["healthcheck"]["test"])


def test_sasl_credentials_come_from_a_secret(docs: list[dict[str, Any]]) -> None:
    for kind, name in (("StatefulSet", "panther-worker"), ("Job", "panther-topics")):
        container = _container(by_kind(docs, kind, name))
        assert container["envFrom"] == [{"configMapRef": {"name": "panther-config"}}]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container["env"]
            if "secretKeyRef" in e["valueFrom"]
        }
        assert {ref["name"] for ref in refs.values()} == {"panther-kafka-sasl"}
        assert set(refs) == {"PANTHER_KAFKA_SASL_USERNAME", "PANTHER_KAFKA_SASL_PASSWORD"}


def test_each_worker_pod_has_its_own_static_membership_id(docs: list[dict[str, Any]]) -> None:
    env = {e["name"]: e for e in _container(by_kind(docs, "StatefulSet", "panther-worker"))["env"]}
    assert env["PANTHER_WORKER_GROUP_INSTANCE_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }


def test_workers_keep_rocksdb_on_their_own_volume(docs: list[dict[str, Any]]) -> None:
    worker = by_kind(docs, "StatefulSet", "panther-worker")
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in _container(worker)["volumeMounts"]}
    data_dir = by_kind(docs, "ConfigMap", "panther-config")["data"]["PANTHER_WORKER_DATA_DIR"]
    assert PurePosixPath(mounts[claim["metadata"]["name"]]) in PurePosixPath(data_dir).parents
    assert mounts["model"] == by_kind(docs, "ConfigMap", "panther-config")["data"]["PANTHER_MODEL_DIR"]


def test_workers_have_a_headless_service_and_probes(docs: list[dict[str, Any]]) -> None:
    worker = by_kind(docs, "StatefulSet", "panther-worker")
    service = by_kind(docs, "Service", worker["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert worker["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    container = _container(worker)
    (port,) = container["ports"]
    assert port["containerPort"] == Settings().web_port
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_triton_requests_a_gpu_and_is_ready_only_when_serving(docs: list[dict[str, Any]]) -> None:
    triton = by_kind(docs, "Deployment", "panther-triton")
    container = _container(triton)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    probe = container["readinessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == "/v2/health/ready" and ports[probe["port"]] == Settings().triton_http_port
    defaults = Settings()
    assert ports == {"http": defaults.triton_http_port, "grpc": defaults.triton_grpc_port,
                     "metrics": defaults.triton_metrics_port}  # fmt: skip
    service = by_kind(docs, "Service", "panther-triton")
    assert {p["port"] for p in service["spec"]["ports"]} == set(ports.values())


def test_images_are_pinned(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            repo, _, tag = _container(doc)["image"].rpartition(":")
            assert repo and tag and tag != "latest", doc["metadata"]["name"]


def test_container_args_are_real_panther_commands(docs: list[dict[str, Any]]) -> None:
    commands = {}
    for kind, name in (("StatefulSet", "panther-worker"), ("Job", "panther-topics")):
        container = _container(by_kind(docs, kind, name))
        (args,) = panther_invocations("panther " + " ".join(container["args"]), {})
        ctx = resolve(args)
        assert ctx.params["wait_s"] > 0, name  # the pod waits for Kafka/Triton instead of crash-looping
        commands[name] = ctx.command.name
    assert commands == {"panther-worker": "worker", "panther-topics": "create"}
    assert _pod(by_kind(docs, "Job", "panther-topics"))["restartPolicy"] == "OnFailure"
