"""The images: pinned bases, settings names that exist, the ports the settings default to."""

from __future__ import annotations

import re

from stream.settings import Settings
from tests.deploy.manifests import ROOT, SETTINGS_ENV, panther_env_names

WORKER = ROOT / "deploy" / "worker" / "Dockerfile"
TRITON = ROOT / "deploy" / "triton" / "Dockerfile"


def test_worker_image() -> None:
    text = WORKER.read_text()
    assert panther_env_names(text) <= SETTINGS_ENV
    assert re.search(r"^ARG BASE_IMAGE=python:3\.1[1-9]\.\d+-slim", text, re.M), "pin the Python base image"
    assert "FROM ${BASE_IMAGE}" in text  # `make images` builds it on the debootstrapped base
    assert re.search(rf"^EXPOSE {Settings().web_port}$", text, re.M)
    assert 'ENTRYPOINT ["panther"]' in text and "PANTHER_WEB_HOST=0.0.0.0" in text


def test_triton_image() -> None:
    text = TRITON.read_text()
    assert panther_env_names(text) <= SETTINGS_ENV
    tag = re.search(r"^ARG TRITON_TAG=(\d\d\.\d\d)$", text, re.M)
    assert tag and tag.group(1) >= "24.12", "older images have Python < 3.11, which PANTHER needs"
    defaults = Settings()
    ports = {defaults.triton_http_port, defaults.triton_grpc_port, defaults.triton_metrics_port}
    assert f"EXPOSE {' '.join(map(str, sorted(ports)))}" in text
