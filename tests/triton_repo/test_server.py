"""`LocalTriton` against the real tritonserver binary of nvidia-pytriton (skipped only if it cannot run)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from panther_common.ports import free_ports
from tests.triton_repo.fixtures import Served, new_server, require_tritonserver, shared_served, tiny_artifact
from triton_repo import server as server_module
from triton_repo.schema import MODELS, SPRM, USER_ENCODER
from triton_repo.server import LocalTriton, TritonAlreadyRunning, TritonPortInUse, TritonStartError


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Served:
    return shared_served(request)


def test_server_and_models_are_ready(served: Served) -> None:
    status = served.server.status()
    assert status.running and status.ready and status.models == dict.fromkeys(MODELS, True)
    assert json.loads(json.dumps(status.as_dict()))["repo"] == str(served.repo.resolve())
    with urllib.request.urlopen(f"{served.server.http_url}/v2/models/{SPRM}/config", timeout=5) as reply:
        config = json.loads(reply.read())
    assert (
        config["max_batch_size"] == 256 and config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    )
    with urllib.request.urlopen(served.server.metrics_url, timeout=5) as reply:
        assert b"nv_inference_request_success" in reply.read()
    assert "models from " + str(Path(__file__).parents[2] / "models") in served.server.log_file.read_text()


def test_second_start_on_same_data_dir_or_ports_is_refused(served: Served, tmp_path: Path) -> None:
    same = LocalTriton(
        served.repo,
        tmp_path,
        data_dir=served.server.data_dir,
        http_port=served.server.http_port,
        grpc_port=served.server.grpc_port,
    )
    with pytest.raises(TritonAlreadyRunning, match="already running"):
        same.start()
    other = LocalTriton(
        served.repo,
        tmp_path,
        http_port=served.server.http_port,
        grpc_port=served.server.grpc_port,
        metrics_port=served.server.metrics_port,
    )
    with pytest.raises(TritonPortInUse, match=r"\(http port\) is already in use by a tritonserver"):
        other.start()


def test_mismatched_artifact_is_refused_at_load_with_the_reason(served: Served, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(served.repo / SPRM, repo / SPRM)
    target = repo / SPRM / "1" / "artifact"
    shutil.rmtree(target)
    shutil.copytree(tiny_artifact(tmp_path / "other", seed=1), target)  # other weights → other version
    server = new_server(repo, tmp_path / "home", models=(SPRM,))
    with pytest.raises(TritonStartError) as caught:
        server.start(wait_s=60)
    message = str(caught.value)
    assert (
        "failed to load 'panther_sprm'" in message
        and "config.pbtxt was exported for model_version" in message
    )
    assert "re-run `panther export`" in message
    assert not server.status().running and not server.pid_file.exists()


def test_missing_export_and_numpy_2_are_refused_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tritonserver()
    server = new_server(tmp_path / "empty", tmp_path / "home")
    with pytest.raises(
        TritonStartError,
        match=r"no exported panther_score, panther_refresh, panther_user_encoder: run `panther export",
    ):
        server.start()
    for model in MODELS:
        (tmp_path / "empty" / model).mkdir(parents=True)
        (tmp_path / "empty" / model / "config.pbtxt").write_text("")
    monkeypatch.setattr(server_module, "numpy_version", lambda python: "2.1.3")
    with pytest.raises(TritonStartError, match="EMPTY outputs under numpy 2"):
        server.start()
    assert server.stop() is False


def test_backend_dir_holds_the_stub_for_this_python(served: Served) -> None:
    backend = served.server.backend_dir / "python"
    assert sorted(p.name for p in backend.iterdir() if p.is_file()) == [
        "libtriton_python.so",
        "triton_python_backend_stub",
        "triton_python_backend_utils.py",
    ]
    assert "site-packages" not in str(backend)


def test_run_foreground_serves_until_sigterm_then_stops(served: Served, tmp_path: Path) -> None:
    """What Procfile/honcho runs: a foreground process that owns the server and stops it on SIGTERM."""
    http, grpc, metrics = free_ports(3)
    code = (
        "import sys; from pathlib import Path; from triton_repo.server import LocalTriton; "
        f"LocalTriton(Path({str(served.repo)!r}), Path({str(tmp_path)!r}), models=({USER_ENCODER!r},), "
        f"http_port={http}, grpc_port={grpc}, metrics_port={metrics}).run_foreground(poll_s=0.2)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    server = LocalTriton(served.repo, tmp_path, models=(USER_ENCODER,), http_port=http, grpc_port=grpc)
    try:
        deadline = time.monotonic() + 60
        while not server.status().ready and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert server.status().models == {USER_ENCODER: True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not server.status().running and not server.pid_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
