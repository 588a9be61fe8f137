"""The model artefact directory (DESIGN.md): config.json, tokenizer.json, weights.safetensors,
optional `<name>.safetensors` (fraud_head after fit-fraud), metrics.json.

Why the checks: a model's embedding rows mean nothing under another vocabulary, and a silently
swapped tokenizer.json would score every transaction against the wrong tokens. config.json records the
tokenizer's version and content hash and each weights file's SHA-256; `load_artifact` recomputes them
and refuses a mismatch with a message that names both hashes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from models.profile_schema import ProfileSchema
from models.tokenizer import StructuredTokenizer
from models.tokenizer.structured import VERSION as TOKENIZER_VERSION
from models.tokenizer.structured import TokenizerFormatError, content_hash

ARTIFACT_VERSION = 1
CONFIG, TOKENIZER, WEIGHTS, METRICS = "config.json", "tokenizer.json", "weights.safetensors", "metrics.json"


class ArtifactError(RuntimeError):
    """The artefact directory is incomplete, of another version, or its parts do not belong together."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    config: dict[str, Any]  # the whole config.json; config["model"] is what the caller saved
    tokenizer: StructuredTokenizer
    profile_schema: ProfileSchema | None
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any]
    extra_weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        """e.g. "panther-1a2b3c4d": model name + the first 8 hex digits of the weights' SHA-256."""
        return str(self.config["model_version"])


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's columns and row contents (pandas' stable row hashes): the training data hash."""
    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("panther", "safetensors", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable) + "\n", "utf-8"
    )
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_weights(path: Path, state_dict: dict[str, torch.Tensor], tokenizer_hash: str) -> str:
    # Cloning breaks shared storage (tied embeddings), which safetensors refuses to write.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "tokenizer_hash": tokenizer_hash})
    tmp.replace(path)
    return file_sha256(path)


def save_artifact(
    out_dir: str | Path,
    config: dict[str, Any],
    tokenizer: StructuredTokenizer,
    profile_schema: ProfileSchema | None,
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None = None,
    extra_weights: dict[str, dict[str, torch.Tensor]] | None = None,
    *,
    training_data_hash: str | None = None,
) -> Path:
    """Write the artefact directory; returns it. `config` is the model's own (architecture) config.

    config.json = {"artifact_version", "model": config, "model_version", "tokenizer": {version,
    content_hash, vocab_size}, "profile_schema": schema dict | None, "weights": {file: sha256},
    "training_data_hash", "created_at", "versions": library versions}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = dict(extra_weights or {})
    for name in extra:
        if not name.replace("_", "").isalnum() or f"{name}.safetensors" == WEIGHTS:
            raise ArtifactError(f"bad extra weights name {name!r} (letters, digits and _; not 'weights')")
    tokenizer.save(out / TOKENIZER)
    digests = {WEIGHTS: _write_weights(out / WEIGHTS, state_dict, tokenizer.content_hash)}
    for name, tensors in sorted(extra.items()):
        digests[f"{name}.safetensors"] = _write_weights(
            out / f"{name}.safetensors", tensors, tokenizer.content_hash
        )
    name = str(config.get("name", "panther"))
    full = {
        "artifact_version": ARTIFACT_VERSION,
        "model": config,
        "model_version": f"{name}-{digests[WEIGHTS][:8]}",
        "tokenizer": {
            "version": tokenizer.version,
            "content_hash": tokenizer.content_hash,
            "vocab_size": tokenizer.vocab_size,
        },
        "profile_schema": profile_schema.to_dict() if profile_schema is not None else None,
        "weights": digests,
        "training_data_hash": training_data_hash,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    _write_json(out / METRICS, dict(metrics or {}))
    _write_json(out / CONFIG, full)  # last: a directory with config.json is complete
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: not a complete PANTHER model artefact")
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return data


def load_artifact(path: str | Path, device: str | torch.device = "cpu") -> Artifact:
    """Read and verify an artefact directory. Raises ArtifactError with what is wrong and what to do."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"model artefact {root} is not a directory")
    config = _read_json(root / CONFIG)
    if config.get("artifact_version") != ARTIFACT_VERSION:
        raise ArtifactError(
            f"{root / CONFIG}: artifact_version {config.get('artifact_version')!r} is not supported"
            f" (this code reads {ARTIFACT_VERSION}); re-export the model with this version of PANTHER"
        )
    recorded = config.get("tokenizer") or {}
    raw = _read_json(root / TOKENIZER)
    actual = content_hash(raw)
    expected = recorded.get("content_hash")
    if actual != expected or raw.get("content_hash") != expected:
        raise ArtifactError(
            f"tokenizer {root / TOKENIZER} (content hash {actual}) does not match the tokenizer the model"
            f" was trained with (config.json records {expected}): re-export or retrain the model"
        )
    if (
        str(raw.get("version")) != str(recorded.get("version"))
        or str(raw.get("version")) != TOKENIZER_VERSION
    ):
        raise ArtifactError(
            f"tokenizer version {raw.get('version')!r} (config.json records {recorded.get('version')!r},"
            f" this code reads {TOKENIZER_VERSION!r}): re-export or retrain"
        )
    try:
        tokenizer = StructuredTokenizer.from_dict(raw)
    except TokenizerFormatError as exc:
        raise ArtifactError(f"{root / TOKENIZER}: {exc}") from exc
    schema_dict = config.get("profile_schema")
    try:
        schema = ProfileSchema.from_dict(schema_dict) if schema_dict else None
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{root / CONFIG}: bad profile_schema: {exc}") from exc
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for filename, digest in sorted((config.get("weights") or {}).items()):
        file = root / filename
        if not file.is_file():
            raise ArtifactError(f"{file} is missing (config.json lists it)")
        if file_sha256(file) != digest:
            raise ArtifactError(
                f"{file} does not match the SHA-256 recorded in config.json: corrupted or replaced"
            )
        tensors[filename.removesuffix(".safetensors")] = load_file(str(file), device=str(device))
    if "weights" not in tensors:
        raise ArtifactError(f"{root / CONFIG} lists no {WEIGHTS}")
    metrics = _read_json(root / METRICS) if (root / METRICS).is_file() else {}
    state_dict = tensors.pop("weights")
    return Artifact(root, config, tokenizer, schema, state_dict, metrics, tensors)
