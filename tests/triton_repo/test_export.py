"""`export_model_repository`: versioned dirs, rendered config, refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.triton_repo.fixtures import tiny_artifact
from triton_repo.export import ExportError, default_project_root, export_model_repository, next_version
from triton_repo.schema import MODELS, REFRESH, SCORE, SPRM, USER_ENCODER, WORKER_MODELS


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_artifact(tmp_path_factory.mktemp("export") / "model")


def _param(config: str, key: str) -> str:
    match = re.search(rf'key: "{key}" value: {{ string_value: ("(?:[^"\\]|\\.)*") }}', config)
    assert match, key
    return str(json.loads(match.group(1)))


def test_export_writes_versioned_dirs_and_configs(artifact: Path, tmp_path: Path) -> None:
    summary = export_model_repository(artifact, tmp_path / "repo", reference=True)
    assert summary["version"] == 1 and summary["has_fraud_head"] is True
    assert sorted(summary["models"]) == sorted(MODELS)
    art_config = json.loads((artifact / "config.json").read_text())
    head = json.loads((artifact / "fraud_head.json").read_text())
    for model in MODELS:
        version_dir = tmp_path / "repo" / model / "1"
        assert (version_dir / "model.py").is_file()
        copied = sorted(p.name for p in (version_dir / "artifact").iterdir())
        assert copied == sorted(p.name for p in artifact.iterdir())
        config = (tmp_path / "repo" / model / "config.pbtxt").read_text()
        assert f'name: "{model}"' in config and "kind: KIND_CPU" in config
        assert (
            "max_queue_delay_microseconds: 500" in config
            and "preferred_batch_size: [ 64, 256, 1024, 4096 ]" in config
        )
        assert _param(config, "model_version") == art_config["model_version"] == summary["model_version"]
        assert _param(config, "tokenizer_hash") == art_config["tokenizer"]["content_hash"]
        assert _param(config, "project_root") == default_project_root() == str(Path(__file__).parents[2])
        assert _param(config, "head_sha256") == head["weights_sha256"]  # initialize() checks it
    assert summary["models"][SPRM]["outputs"][-1] == "reasons"
    assert summary["models"][SCORE]["outputs"][-1] == "reasons"
    assert summary["models"][REFRESH]["outputs"] == ["hidden", "lse"]  # no own sequence input: S = 0
    assert summary["models"][USER_ENCODER]["outputs"] == ["user_embedding"]


def test_the_worker_models_by_default(artifact: Path, tmp_path: Path) -> None:
    summary = export_model_repository(artifact, tmp_path)
    assert sorted(summary["models"]) == sorted(WORKER_MODELS) and not (tmp_path / SPRM).exists()


def test_next_export_gets_the_next_version_and_gpu_kind(artifact: Path, tmp_path: Path) -> None:
    export_model_repository(artifact, tmp_path)
    summary = export_model_repository(artifact, tmp_path, device="gpu", max_batch_size=512)
    assert summary["version"] == next_version(tmp_path) - 1 == 2
    config = (tmp_path / REFRESH / "config.pbtxt").read_text()
    assert "kind: KIND_GPU" in config and "max_batch_size: 512" in config
    assert "preferred_batch_size: [ 64, 256 ]" in config and "num_versions: 1" in config


def test_explicit_version_that_exists_is_refused_before_writing(artifact: Path, tmp_path: Path) -> None:
    export_model_repository(artifact, tmp_path, version=7)
    (tmp_path / USER_ENCODER / "7").rename(tmp_path / USER_ENCODER / "8")
    before = (tmp_path / USER_ENCODER / "config.pbtxt").read_text()
    with pytest.raises(ExportError, match="already exists"):
        export_model_repository(artifact, tmp_path, version=7)
    assert not (tmp_path / USER_ENCODER / "7").exists()
    assert (tmp_path / USER_ENCODER / "config.pbtxt").read_text() == before


def test_no_artifact_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"cannot export .*config.json is missing"):
        export_model_repository(tmp_path, tmp_path / "repo")
    with pytest.raises(ExportError, match="cpu or gpu"):
        export_model_repository(tmp_path, tmp_path / "repo", device="tpu")  # type: ignore[arg-type]


def test_encoder_only_artifact_exports_encoder_outputs(tmp_path: Path) -> None:
    art = tiny_artifact(tmp_path / "m", with_head=False)
    summary = export_model_repository(art, tmp_path / "repo", reference=True)
    assert summary["has_fraud_head"] is False and SCORE not in summary["models"]  # nothing to score
    assert summary["models"][SPRM]["outputs"] == ["surprise", "logp_new", "seq_embedding", "user_embedding"]
    assert "txn_features" not in (tmp_path / "repo" / SPRM / "config.pbtxt").read_text()
