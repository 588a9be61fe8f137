"""`panther export`: a model artefact → versioned Triton model directories + config.pbtxt.

    <repo>/panther_score/config.pbtxt                rendered from panther_score/config.pbtxt.in
    <repo>/panther_score/<N>/model.py                copied from triton_repo/model.py (all models)
    <repo>/panther_score/<N>/artifact/…              the artefact (config.json, tokenizer.json, weights…)
    <repo>/panther_refresh/…, panther_user_encoder/… the same, for the encoder refresh and e_u
    <repo>/panther_sprm/…                            the full-window reference model, with `reference`

The worker calls the first three: the head from cached state (panther_score, only with a fraud head),
the encoder in batches off the critical path (panther_refresh) and the user encoder.

Why this shape: the artefact is loaded by the python backend from its own version dir, so a running
server never reads a file that a later export rewrites; config.pbtxt names the artefact version and
tokenizer hash, and `initialize()` refuses a version dir holding anything else. Version dirs are built
under a temporary name and renamed into place, so a server never sees half a copy. Both models get the
same version number N (default: one above the highest in either), so "version N" means one artefact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from string import Template
from typing import Any, Literal

from models.artifact import ArtifactError
from panther_common.errors import PantherError
from triton_repo.backend import ARTIFACT_DIR
from triton_repo.runner import ArtefactRunner
from triton_repo.schema import (
    MODELS,
    REFRESH,
    SCORE,
    SPRM,
    USER_ENCODER,
    TensorSpec,
    encoder_inputs,
    encoder_outputs,
    refresh_inputs,
    refresh_outputs,
    score_inputs,
    score_outputs,
    sprm_inputs,
    sprm_outputs,
)

SOURCE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = SOURCE_DIR.parent
DEFAULT_MAX_BATCH = 4096
DEFAULT_QUEUE_DELAY_US = 500
Device = Literal["cpu", "gpu"]


class ExportError(PantherError):
    """The artefact cannot be exported (missing, invalid, version taken); the message says why."""


def default_project_root() -> str:
    """This checkout's root when running from source, "" when PANTHER is pip-installed (site-packages)."""
    installed = any(part in ("site-packages", "dist-packages") for part in PROJECT_ROOT.parts)
    return "" if installed or not (PROJECT_ROOT / "models" / "__init__.py").is_file() else str(PROJECT_ROOT)


def next_version(repo: Path, models: tuple[str, ...] = MODELS) -> int:
    """One above the highest numeric version dir of any of `models` (1 for an empty repository)."""
    versions = [
        int(child.name)
        for name in models
        if (repo / name).is_dir()
        for child in (repo / name).iterdir()
        if child.is_dir() and child.name.isdigit()
    ]
    return max(versions, default=0) + 1


def render_config(
    model: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    *,
    kind: str,
    max_batch_size: int,
    instances: int,
    queue_delay_us: int,
    preferred_batch_sizes: tuple[int, ...],
    parameters: dict[str, str],
) -> str:
    template = Template((SOURCE_DIR / model / "config.pbtxt.in").read_text("utf-8"))
    params = "\n".join(
        f"parameters {{ key: {json.dumps(k)} value: {{ string_value: {json.dumps(v)} }} }}"
        for k, v in sorted(parameters.items())
    )
    return template.substitute(
        max_batch_size=max_batch_size,
        inputs=",\n".join(spec.render() for spec in inputs),
        outputs=",\n".join(spec.render() for spec in outputs),
        kind=kind,
        instances=instances,
        preferred_batch_sizes=", ".join(str(s) for s in preferred_batch_sizes),
        queue_delay_us=queue_delay_us,
        parameters=params,
    )


def _copy_artifact(src: Path, dest: Path) -> None:
    """Copy the artefact's files (hard links where the filesystem allows: weights can be large)."""
    dest.mkdir(parents=True)
    for file in sorted(src.iterdir()):
        if not file.is_file() or file.name.endswith(".tmp"):
            continue
        try:
            os.link(file, dest / file.name)
        except OSError:
            shutil.copy2(file, dest / file.name)


def _publish_version(src_artifact: Path, model_root: Path, model: str, version: int) -> Path:
    target = model_root / str(version)
    if target.exists():
        raise ExportError(f"{target} already exists: choose another --version or delete it")
    model_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".export-{version}-", dir=model_root))
    try:
        shutil.copy2(SOURCE_DIR / "model.py", staging / "model.py")  # one entry point; backend by name
        _copy_artifact(src_artifact, staging / ARTIFACT_DIR)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


def export_model_repository(
    model_dir: str | Path,
    repo_dir: str | Path,
    device: Device = "cpu",
    version: int | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH,
    *,
    instances: int = 1,
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    preferred_batch_sizes: tuple[int, ...] | None = None,
    precision: str = "fp32",
    torch_threads: int = 0,
    project_root: str | None = None,
    reference: bool = False,
) -> dict[str, Any]:
    """Export `model_dir` as version `version` (default: next) of its models into `repo_dir`:
    panther_score (with a fraud head), panther_refresh, panther_user_encoder, and with `reference` the
    full-window panther_sprm (benchmarks and parity checks; the worker does not call it).

    device "gpu" → instance_group KIND_GPU (the backend runs on cuda:<device id>), "cpu" → KIND_CPU.
    `precision="bf16"` autocasts on GPU (faster, not bit-comparable with fp32 in-process scores).
    `project_root` goes on the stub's sys.path (default: this checkout, "" when pip-installed).
    Returns a JSON-able summary (what `panther export --json` prints).
    """
    if device not in ("cpu", "gpu"):
        raise ExportError(f"--device must be cpu or gpu, got {device!r}")
    if max_batch_size < 1 or instances < 1 or queue_delay_us < 0:
        raise ExportError("max_batch_size and instances must be ≥ 1, queue_delay_us ≥ 0")
    if version is not None and version < 1:
        raise ExportError(f"--version must be ≥ 1, got {version}")
    src = Path(model_dir)
    try:
        info = ArtefactRunner.from_artifact(src, "cpu").info  # loads and verifies everything once
    except (ArtifactError, OSError, ValueError, KeyError, RuntimeError) as exc:
        # RuntimeError: weights that do not fit this code's modules (an artefact of an older version)
        raise ExportError(f"cannot export {src}: {str(exc).strip()}") from exc
    repo = Path(repo_dir)
    version = next_version(repo) if version is None else version
    preferred = preferred_batch_sizes or tuple(s for s in (64, 256, 1024, 4096) if s <= max_batch_size)
    params = {
        "model_version": info.model_version,
        "tokenizer_hash": info.tokenizer_hash,
        "tokenizer_version": info.tokenizer_version,
        "signal_names": json.dumps(list(info.signal_names)),
        "precision": precision,
        "torch_threads": str(torch_threads),
        "project_root": default_project_root() if project_root is None else project_root,
        "head_sha256": info.head_sha256,
        "sequence_dim": str(info.sequence_dim),
    }
    specs: dict[str, tuple[list[TensorSpec], list[TensorSpec]]] = {}
    if info.has_head:
        specs[SCORE] = (score_inputs(info), score_outputs(info))
    specs[REFRESH] = (refresh_inputs(info), refresh_outputs(info))
    specs[USER_ENCODER] = (encoder_inputs(info), encoder_outputs(info))
    if reference:
        specs[SPRM] = (sprm_inputs(info), sprm_outputs(info))
    for model in MODELS:  # refuse before writing anything
        if (repo / model / str(version)).exists():
            raise ExportError(f"{repo / model / str(version)} already exists: choose another --version")
    summary: dict[str, Any] = {}
    for model, (inputs, outputs) in specs.items():
        target = _publish_version(src, repo / model, model, version)
        config = render_config(
            model,
            inputs,
            outputs,
            kind="KIND_GPU" if device == "gpu" else "KIND_CPU",
            max_batch_size=max_batch_size,
            instances=instances,
            queue_delay_us=queue_delay_us,
            preferred_batch_sizes=preferred,
            parameters=params,
        )
        _write_text(repo / model / "config.pbtxt", config)
        summary[model] = {"path": str(target), "outputs": [s.name for s in outputs]}
    return {
        "repo": str(repo),
        "version": version,
        "model_version": info.model_version,
        "tokenizer_hash": info.tokenizer_hash,
        "device": device,
        "has_fraud_head": info.has_head,
        "max_batch_size": max_batch_size,
        "models": summary,
    }
