"""Shared serving fixtures: a tiny artefact, its exported repository, ONE real tritonserver per run.

The server is shared by tests/triton_repo and tests/stream (test_triton_client, test_scoring). pytest
only shares a session fixture through a common conftest, which these directories lack, so the server
lives in a module-level holder that every module's fixture asks for; it is stopped once, at session
end (`config.add_cleanup`). Start-up is ~5-10 s (four python-backend stubs importing torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from panther_common.ports import free_ports
from triton_repo.export import export_model_repository
from triton_repo.server import LocalTriton, TritonBinaryMissing, TritonServerError, find_distribution
from triton_repo.synthetic import make_artifact

MAX_LEN = 20


@dataclass
class Served:
    server: LocalTriton
    artifact: Path
    repo: Path


_SERVED: dict[str, Served] = {}


def tiny_artifact(tmp: Path, with_head: bool = True, seed: int = 0, residual: bool = False,
                  heads: int = 1) -> Path:  # fmt: skip
    return make_artifact(
        tmp, vocab=500, d_model=16, n_layers=1, max_len=MAX_LEN, with_head=with_head, seed=seed,
        residual=residual, heads=heads,
    )


def new_server(repo: Path, home: Path, **kw: object) -> LocalTriton:
    http, grpc, metrics = free_ports(3)
    return LocalTriton(repo, home, http_port=http, grpc_port=grpc, metrics_port=metrics, **kw)  # type: ignore[arg-type]


def require_tritonserver() -> None:
    try:
        find_distribution()
    except TritonBinaryMissing as exc:
        pytest.skip(f"tritonserver cannot run here: {exc}")


def _announce(config: pytest.Config, message: str) -> None:
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\n{message}", file=sys.stderr, flush=True)


def shared_served(request: pytest.FixtureRequest) -> Served:
    """The run's tritonserver with every model of the tiny artefact (the reference too), ready. Its head
    is a residual one (trees served beside it), so every Triton-against-in-process test covers them."""
    require_tritonserver()
    served = _SERVED.get("main")
    if served is None:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        root = factory.mktemp("served")
        artifact = tiny_artifact(root / "model", residual=True, heads=2)  # what fit-fraud ships
        export_model_repository(artifact, root / "repo", max_batch_size=256, queue_delay_us=2000,
                                reference=True)  # fmt: skip
        server = new_server(root / "repo", root / "home")
        try:
            server.start(wait_s=120)
        except TritonServerError as exc:
            pytest.fail(f"tritonserver did not start: {exc}", pytrace=False)
        served = _SERVED["main"] = Served(server, artifact, root / "repo")
        request.config.add_cleanup(server.stop)
        _announce(request.config, f"tritonserver started at {server.grpc_url} ({server.log_file})")
    elif not served.server.status().ready:  # a test stopped it (breaker test): bring it back
        served.server.start(wait_s=120)
    return served
