"""The fraud head inside the model artefact: `fraud_head.safetensors` + `fraud_head.json`.

`models.artifact.save_artifact` takes extra weight files (recorded with their SHA-256 in config.json)
but has no slot for an extra JSON config, so the head's config — head architecture, feature schema
(names, vocabularies, state bounds), deviation settings, the softmax temperature, fit summary — lives in
`fraud_head.json` beside it, which records the SHA-256 of the weights it belongs to; loading refuses a
pair that does not match. An ensemble of heads (`models.fraud.ensemble`) is one weights file, its
member count in the JSON ("ensemble"; 1, or absent in older artefacts, for one head). A fine-tuned
encoder (optional) is `fraud_encoder.safetensors`; a residual head's trees (optional,
`models.fraud.trees`) are `fraud_trees.safetensors`: their logit is added to the head's wherever it is
served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.artifact import Artifact, ArtifactError, file_sha256, load_artifact, save_artifact
from models.fraud.deviation import DeviationConfig
from models.fraud.ensemble import HeadEnsemble
from models.fraud.features import FeatureSchema
from models.fraud.head import FraudHead, HeadConfig
from models.fraud.head_files import ENCODER_NAME, HEAD_JSON, HEAD_NAME, TREES_NAME
from models.fraud.trees import TreeLogit

__all__ = ["ENCODER_NAME", "HEAD_JSON", "HEAD_NAME", "TREES_NAME", "HeadBundle", "load_head",
           "model_temperature", "save_head"]  # fmt: skip

FORMAT_VERSION = 1


@dataclass(frozen=True)
class HeadBundle:
    head: FraudHead | HeadEnsemble  # `fraud_head.json` "ensemble": M > 1 members, their logits averaged
    schema: FeatureSchema
    deviation: DeviationConfig
    temperature: float
    encoder_state: dict[str, torch.Tensor] | None  # fine-tuned encoder weights, if any
    info: dict[str, Any]  # the whole fraud_head.json
    trees: TreeLogit | None = None  # a residual head's trees: their logit is added to the head's


def model_temperature(artifact: Artifact) -> float:
    """The softmax temperature the encoder was trained with (metrics.json train_config), default 1."""
    loss = ((artifact.metrics or {}).get("train_config") or {}).get("loss") or {}
    return float(loss.get("temperature", 1.0))


def save_head(
    model_dir: str | Path,
    head: FraudHead | HeadEnsemble,
    schema: FeatureSchema,
    deviation: DeviationConfig,
    temperature: float,
    summary: dict[str, Any] | None = None,
    encoder_state: dict[str, torch.Tensor] | None = None,
    metrics: dict[str, Any] | None = None,
    trees: TreeLogit | None = None,
) -> Path:
    """Re-save the artefact with the head's weights (+ fine-tuned encoder, + a residual head's trees)
    and write fraud_head.json."""
    art = load_artifact(model_dir)
    extra = dict(art.extra_weights)
    extra[HEAD_NAME] = head.state_dict()
    for name, part in ((ENCODER_NAME, encoder_state), (TREES_NAME, _tensors(trees))):
        if part is not None:
            extra[name] = part
        else:
            extra.pop(name, None)
    all_metrics = dict(art.metrics) | ({"fraud": metrics} if metrics is not None else {})
    out = save_artifact(model_dir, art.config["model"], art.tokenizer, art.profile_schema, art.state_dict,
                        all_metrics, extra, training_data_hash=art.config.get("training_data_hash"))
    info = {
        "format_version": FORMAT_VERSION,
        "head": head.config.to_dict(),
        "feature_schema": schema.to_dict(),
        "deviation": deviation.to_dict(),
        "temperature": temperature,
        "weights_sha256": file_sha256(out / f"{HEAD_NAME}.safetensors"),
        "model_version": art.model_version,
        "fine_tuned_encoder": encoder_state is not None,
        "residual_trees": trees is not None,
        "ensemble": len(head) if isinstance(head, HeadEnsemble) else 1,
        "summary": summary or {},
        "serving": serving_contract(head, schema, art.config["model"], encoder_state is not None),
    }
    tmp = out / (HEAD_JSON + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
    tmp.replace(out / HEAD_JSON)
    return out


def _tensors(trees: TreeLogit | None) -> dict[str, torch.Tensor] | None:
    return None if trees is None else {k: torch.from_numpy(v) for k, v in trees.state_dict().items()}


def serving_contract(head: FraudHead | HeadEnsemble, schema: FeatureSchema, encoder: dict[str, Any],
                     fine_tuned: bool) -> dict[str, Any]:  # fmt: skip
    """What a scorer of this head answers with, recorded so a worker reads it without torch
    (`stream.live_model.LiveModel.contract`): the reasons' signal order and the cached sequence width
    (the same values as `FraudScorer.signal_names` / `.sequence_dim`; tested on the default head)."""
    from models.fraud.reasons import SignalMap

    kind = head.config.sequence
    if kind == "textcnn":
        sequence_dim = head.config.sequence_dim()
    else:
        sequence_dim = int(encoder["d_model"]) if kind == "panther" and fine_tuned else 0
    return {"signal_names": list(SignalMap.build(head, schema.signals).names), "sequence_dim": sequence_dim}


def load_head(artifact: Artifact, device: str | torch.device = "cpu") -> HeadBundle:
    """The fitted head of a loaded artefact; ArtifactError when there is none or it does not match."""
    path = artifact.path / HEAD_JSON
    if HEAD_NAME not in artifact.extra_weights or not path.is_file():
        raise ArtifactError(
            f"{artifact.path} has no fraud head: run `panther fit-fraud --model {artifact.path}` first"
        )
    info = json.loads(path.read_text("utf-8"))
    if info.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {info.get('format_version')!r} is not supported")
    actual = file_sha256(artifact.path / f"{HEAD_NAME}.safetensors")
    if info.get("weights_sha256") != actual:
        raise ArtifactError(f"{path} belongs to other fraud_head weights (sha256 {info.get('weights_sha256')}"
                            f" vs {actual}): re-run fit-fraud")
    config = HeadConfig.from_dict(info["head"])
    members = int(info.get("ensemble", 1))  # absent before ensembles: one head
    head: FraudHead | HeadEnsemble = (FraudHead(config) if members == 1
                                      else HeadEnsemble([FraudHead(config) for _ in range(members)]))
    head.load_state_dict(artifact.extra_weights[HEAD_NAME])
    return HeadBundle(
        head=head.to(device).eval(),
        schema=FeatureSchema.from_dict(info["feature_schema"]),
        deviation=DeviationConfig.from_dict(info["deviation"]),
        temperature=float(info.get("temperature", model_temperature(artifact))),
        encoder_state=artifact.extra_weights.get(ENCODER_NAME),
        info=info,
        trees=_trees(artifact, info),
    )


def _trees(artifact: Artifact, info: dict[str, Any]) -> TreeLogit | None:
    state = artifact.extra_weights.get(TREES_NAME)
    if not info.get("residual_trees"):
        return None
    if state is None:
        raise ArtifactError(f"{artifact.path}: the residual head's trees ({TREES_NAME}) are missing: "
                            "re-run fit-fraud")
    return TreeLogit.from_state_dict({k: v.numpy() for k, v in state.items()})
