"""Model artefact: save/load round trip, version and tokenizer checks with clear messages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from models.artifact import ArtifactError, frame_fingerprint, load_artifact, save_artifact
from models.profile_schema import ProfileSchema
from models.tokenizer import StructuredTokenizer, TokenizerConfig


def parts():
    frame = pd.DataFrame({"item_id": ["a", "b", "a", "c"], "user_id": ["u1", "u1", "u2", "u2"]})
    tok = StructuredTokenizer.fit(frame, TokenizerConfig.for_items("item_id"))
    schema = ProfileSchema.fit(pd.DataFrame({"user_id": ["u1", "u2"], "age": [20, 30], "region": ["x", "y"]}))
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(tok.vocab_size, 8)
    head = torch.nn.Linear(8, tok.vocab_size, bias=False)
    head.weight = embedding.weight  # tied, as in the model: shared storage must still save
    state = {"embedding.weight": embedding.weight, "head.weight": head.weight, "step": torch.tensor(7)}
    return frame, tok, schema, state


def test_round_trip_gives_identical_tensors_and_parts(tmp_path) -> None:
    frame, tok, schema, state = parts()
    fraud_head = {"w": torch.randn(3, 2, dtype=torch.float64)}
    out = save_artifact(
        tmp_path / "model",
        {"name": "panther", "d_model": 8, "layers": 1},
        tok,
        schema,
        state,
        {"HR@10": 0.5},
        {"fraud_head": fraud_head},
        training_data_hash=frame_fingerprint(frame),
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "fraud_head.safetensors",
        "metrics.json",
        "tokenizer.json",
        "weights.safetensors",
    ]
    art = load_artifact(out)
    assert art.state_dict.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(art.state_dict[key], value.detach()) and art.state_dict[key].dtype == value.dtype
    assert torch.equal(art.extra_weights["fraud_head"]["w"], fraud_head["w"])
    assert art.tokenizer.to_json_bytes() == tok.to_json_bytes()
    assert art.profile_schema == schema and art.metrics == {"HR@10": 0.5}
    assert art.config["model"] == {"name": "panther", "d_model": 8, "layers": 1}
    assert art.config["tokenizer"] == {"version": "1", "content_hash": tok.content_hash, "vocab_size": 7}
    assert art.config["training_data_hash"] == frame_fingerprint(frame) != frame_fingerprint(frame.head(3))
    assert {"torch", "numpy", "python", "safetensors"} <= art.config["versions"].keys()
    assert art.model_version.startswith("panther-") and len(art.model_version) == len("panther-") + 8


def test_tampered_tokenizer_is_refused_naming_both_hashes(tmp_path) -> None:
    _, tok, schema, state = parts()
    out = save_artifact(tmp_path / "m", {"name": "panther"}, tok, schema, state)
    data = json.loads((out / "tokenizer.json").read_text("utf-8"))
    data["tokens"]["names"][0] = "tampered"
    data["tokens"]["counts"][0] += 1
    (out / "tokenizer.json").write_text(json.dumps(data), "utf-8")
    with pytest.raises(ArtifactError) as caught:
        load_artifact(out)
    message = str(caught.value)
    from models.tokenizer import content_hash

    assert tok.content_hash in message and content_hash(data) in message
    assert "does not match" in message and "re-export or retrain" in message


def test_another_valid_tokenizer_is_refused(tmp_path) -> None:
    _, tok, schema, state = parts()
    out = save_artifact(tmp_path / "m", {"name": "panther"}, tok, schema, state)
    other = StructuredTokenizer.fit(pd.DataFrame({"item_id": ["z"]}), TokenizerConfig.for_items("item_id"))
    other.save(out / "tokenizer.json")
    with pytest.raises(ArtifactError, match=f"content hash {other.content_hash}.*records {tok.content_hash}"):
        load_artifact(out)


def test_corrupted_weights_missing_files_and_versions_are_refused(tmp_path) -> None:
    _, tok, schema, state = parts()
    out = save_artifact(tmp_path / "m", {"name": "panther"}, tok, None, state)
    assert load_artifact(out).profile_schema is None
    blob = bytearray((out / "weights.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (out / "weights.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="does not match the SHA-256"):
        load_artifact(out)
    out = save_artifact(tmp_path / "v", {"name": "panther"}, tok, schema, state)
    config = json.loads((out / "config.json").read_text("utf-8"))
    (out / "config.json").write_text(json.dumps({**config, "artifact_version": 99}), "utf-8")
    with pytest.raises(ArtifactError, match="artifact_version 99 is not supported"):
        load_artifact(out)
    (out / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"config\.json is missing"):
        load_artifact(out)
    with pytest.raises(ArtifactError, match="not a directory"):
        load_artifact(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match="bad extra weights name"):
        save_artifact(tmp_path / "x", {}, tok, schema, state, extra_weights={"../evil": {}})


def test_loaded_tensors_feed_a_model_identically(tmp_path) -> None:
    _, tok, schema, state = parts()
    out = save_artifact(tmp_path / "m", {"name": "panther"}, tok, schema, state)
    model = torch.nn.Embedding(tok.vocab_size, 8)
    model.load_state_dict({"weight": load_artifact(out).state_dict["embedding.weight"]})
    ids = torch.from_numpy(tok.encode(pd.DataFrame({"item_id": ["a", "c", "zzz"]})))
    assert torch.equal(model(ids), state["embedding.weight"][ids])
    assert np.array_equal(ids.numpy(), [4, 6, 1])
