"""What the two python-backend `model.py` files do, kept here so it is importable and unit-testable.

`model.py` (copied into every version dir by `panther export`) only puts the project on `sys.path` and
delegates here; `pb` is the `triton_python_backend_utils` module the stub provides (the tests pass a
stand-in). Rules this module keeps:

- the artefact is loaded ONCE in `initialize`, from `<model dir>/<version>/artifact`, after checking it
  is the one config.pbtxt names (`model_version`, `tokenizer_hash` parameters): a mismatch raises, so
  Triton marks the model UNAVAILABLE with our message instead of serving another model's scores;
- `execute` turns all requests into ONE forward (rows concatenated), answers one response per request,
  returns per-request errors (`pb.TritonError`) and never raises: one bad request must not fail the
  others that the dynamic batcher put in the same batch.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from triton_repo.runner import (
    MALLOC_RETAIN_MB,
    ArtefactRunner,
    InvalidRequest,
    retain_freed_memory,
    set_compute_threads,
)
from triton_repo.schema import REFRESH, SCORE, SPRM, USER_ENCODER

ARTIFACT_DIR = "artifact"
LOG = logging.getLogger("panther.triton.backend")


class ArtefactMismatch(RuntimeError):
    """The artefact in a version dir is not the one its config.pbtxt was exported for."""


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """config.pbtxt `parameters` as a plain dict of strings."""
    raw = model_config.get("parameters") or {}
    return {key: str(value.get("string_value", "")) for key, value in raw.items()}


def check_artifact(artifact_dir: Path, params: dict[str, str]) -> dict[str, Any]:
    """Refuse an artefact whose model_version / tokenizer hash / fraud head differ from the config's.

    The head matters on its own: `fit-fraud` rewrites the head (and a fine-tuned encoder or TextCNN,
    whose outputs the cached state keeps) without changing model_version.
    """
    config_file = artifact_dir / "config.json"
    if not config_file.is_file():
        raise ArtefactMismatch(f"{artifact_dir} holds no model artefact (config.json missing): re-run export")
    config = json.loads(config_file.read_text("utf-8"))
    actual = (str(config.get("model_version")), str((config.get("tokenizer") or {}).get("content_hash")))
    expected = (params.get("model_version", ""), params.get("tokenizer_hash", ""))
    if actual != expected:
        raise ArtefactMismatch(
            f"artefact {artifact_dir} is model_version {actual[0]} with tokenizer {actual[1]}, but "
            f"config.pbtxt was exported for model_version {expected[0]} with tokenizer {expected[1]}: "
            "re-run `panther export` (the version dir and config.pbtxt must come from one export)"
        )
    expected_head = params.get("head_sha256", "")
    if expected_head:
        head_file = artifact_dir / "fraud_head.json"
        head = json.loads(head_file.read_text("utf-8")) if head_file.is_file() else {}
        actual_head = str(head.get("weights_sha256", ""))
        if actual_head != expected_head:
            raise ArtefactMismatch(
                f"artefact {artifact_dir} holds fraud head {actual_head[:12] or 'none'} but config.pbtxt was "
                f"exported for fraud head {expected_head[:12]}: re-run `panther export`"
            )
    return config


def device_for(kind: str, device_id: str | int) -> str:
    """Triton's instance kind → torch device ("GPU" + id → "cuda:id"; anything else → "cpu")."""
    return f"cuda:{int(device_id)}" if kind == "GPU" else "cpu"


class _Backend:
    """Shared initialize/execute plumbing; subclasses say which inputs they read and what they run."""

    def __init__(self, args: dict[str, str], pb: Any) -> None:
        started = time.perf_counter()
        self.pb = pb
        self.model_config = json.loads(args["model_config"])
        self.params = parameters(self.model_config)
        self.name = args.get("model_name", self.model_config.get("name", "?"))
        artifact_dir = Path(args["model_repository"]) / str(args["model_version"]) / ARTIFACT_DIR
        check_artifact(artifact_dir, self.params)
        self.device = device_for(
            args.get("model_instance_kind", "CPU"), args.get("model_instance_device_id", 0)
        )
        set_compute_threads(int(self.params.get("torch_threads", "0") or 0))
        retain_freed_memory(int(self.params.get("malloc_retain_mb", MALLOC_RETAIN_MB) or 0))
        self.runner = ArtefactRunner.from_artifact(
            artifact_dir, self.device, self.params.get("precision", "fp32") or "fp32"
        )
        self.inputs = [
            (spec["name"], bool(spec.get("optional", False))) for spec in self.model_config["input"]
        ]
        self.outputs = [spec["name"] for spec in self.model_config["output"]]
        import models

        print(
            f"panther backend {self.name}: {self.runner.info.model_version} on {self.device} "
            f"in {time.perf_counter() - started:.1f}s (numpy {np.__version__}, models from "
            f"{Path(models.__file__).parent})",
            file=sys.stderr,
            flush=True,
        )

    def _read(self, request: Any) -> dict[str, np.ndarray]:
        arrays = {}
        for name, optional in self.inputs:
            tensor = self.pb.get_input_tensor_by_name(request, name)
            if tensor is None:
                if optional:
                    continue
                raise InvalidRequest(f"input {name!r} is missing")
            arrays[name] = tensor.as_numpy()
        return arrays

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        good: list[tuple[int, dict[str, np.ndarray]]] = []
        for i, request in enumerate(requests):
            try:
                arrays = self._read(request)
                self.validate(arrays)
                good.append((i, arrays))
            except Exception as exc:  # never raise from execute: answer this request with the error
                responses[i] = self._error(exc)
        if good:
            try:
                sizes = [len(arrays[self.inputs[0][0]]) for _, arrays in good]
                outputs = self.run(self._concatenate([arrays for _, arrays in good]))
                offsets = np.cumsum([0, *sizes])
                for (i, _), start, stop in zip(good, offsets[:-1], offsets[1:], strict=True):
                    responses[i] = self.pb.InferenceResponse(
                        output_tensors=[
                            self.pb.Tensor(name, np.ascontiguousarray(outputs[name][start:stop]))
                            for name in self.outputs
                        ]
                    )
            except Exception as exc:
                for i, _ in good:
                    responses[i] = self._error(exc)
        return responses

    def _concatenate(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if len(parts) == 1:
            return parts[0]
        names = set(parts[0])
        if any(set(p) != names for p in parts):  # optional input given by some requests only
            return self._concatenate_mixed(parts)
        return {name: np.concatenate([p[name] for p in parts]) for name in names}

    def _concatenate_mixed(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Some requests carry an optional input, others do not: fill in what the model would use
        without it (`defaults`), so the batch stays one forward."""
        for part in parts:
            for name, default in self.defaults(part).items():
                part.setdefault(name, default)
        if any(set(p) != set(parts[0]) for p in parts):
            raise InvalidRequest("requests in one batch differ in their optional inputs")
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def defaults(self, part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the model computes itself for an optional input the request left out (lazily)."""
        return {}

    def _user_embedding(self, part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "user_embedding" in part:
            return {}
        return {"user_embedding": self.runner.embed_users(part["profile"])}

    def _error(self, exc: Exception) -> Any:
        """A per-request error; INVALID_ARG for the request's own fault, so clients do not retry it."""
        invalid = isinstance(exc, InvalidRequest)
        message = f"{self.name}: {'invalid request' if invalid else type(exc).__name__}: {exc}"
        error_type = self.pb.TritonError
        code = getattr(error_type, "INVALID_ARG" if invalid else "INTERNAL", None)
        error = error_type(message, code) if code is not None else error_type(message)
        return self.pb.InferenceResponse(output_tensors=[], error=error)

    def validate(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class SprmBackend(_Backend):
    """panther_sprm: windows + new transaction → p_fraud, Δ, surprise, log P, embeddings, reasons."""

    def validate(self, arrays: dict[str, np.ndarray]) -> None:
        self.runner.validate(arrays)

    def defaults(self, part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._user_embedding(part)

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runner.score(arrays)
        return {name: _column(out[name]) for name in self.outputs}


class RefreshBackend(_Backend):
    """panther_refresh: planned window rows → encoder states and next-token normalizers at positions."""

    def validate(self, arrays: dict[str, np.ndarray]) -> None:
        self.runner.validate_refresh(arrays)

    def _concatenate(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        # Triton batches only requests of one shape; a mixed K would be a client bug, refused per batch
        if len({p["positions"].shape[1] for p in parts}) > 1:
            raise InvalidRequest("requests in one batch differ in their number of positions")
        return super()._concatenate(parts)

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runner.refresh(arrays)
        return {name: np.asarray(out[name], dtype=np.float32) for name in self.outputs}


class ScoreBackend(_Backend):
    """panther_score: the fusion head from cached state (reasons only for rows at their threshold)."""

    def validate(self, arrays: dict[str, np.ndarray]) -> None:
        self.runner.validate_state_score(arrays)

    def defaults(self, part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._user_embedding(part)
        if "reason_threshold" not in part:  # no reasons asked for
            out["reason_threshold"] = np.full((len(part["profile"]), 1), np.inf, dtype=np.float32)
        return out

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runner.score_state(arrays)
        return {name: _column(out[name]) for name in self.outputs}


class UserEncoderBackend(_Backend):
    """panther_user_encoder: profile ids → e_u."""

    def validate(self, arrays: dict[str, np.ndarray]) -> None:
        self.runner.validate_profile(np.asarray(arrays["profile"]))

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"user_embedding": self.runner.embed_users(arrays["profile"])}


def _column(values: np.ndarray) -> np.ndarray:
    """(B,) → (B, 1) for per-row scalars (declared dims [1]); others unchanged; always float32."""
    values = np.asarray(values, dtype=np.float32)
    return values.reshape(-1, 1) if values.ndim == 1 else values


# Triton model name → its backend: the one `model.py` picks by `args["model_name"]`.
BACKENDS: dict[str, type[_Backend]] = {
    SCORE: ScoreBackend,
    REFRESH: RefreshBackend,
    SPRM: SprmBackend,
    USER_ENCODER: UserEncoderBackend,
}
