"""The python backend's logic with a stand-in for `triton_python_backend_utils` (no server needed)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from models.fraud.next_token import NextTokenTable
from tests.triton_repo.fixtures import MAX_LEN, tiny_artifact
from triton_repo.backend import (
    ArtefactMismatch,
    RefreshBackend,
    ScoreBackend,
    SprmBackend,
    UserEncoderBackend,
    device_for,
)
from triton_repo.export import export_model_repository
from triton_repo.schema import REFRESH, SCORE, SPRM, USER_ENCODER


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str | None = None) -> None:
        self.message, self.code = message, code


class FakeResponse:
    def __init__(self, output_tensors: list[FakeTensor], error: FakeError | None = None) -> None:
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


PARAM = r'key: "(\w+)" value: \{ string_value: ("(?:[^"\\]|\\.)*") \}'
SPEC = r'\{ name: "(\w+)", data_type: TYPE_\w+, dims: \[[^\]]*\](, optional: true)? \}'
FAKE_PB = SimpleNamespace(
    Tensor=FakeTensor,
    TritonError=FakeError,
    InferenceResponse=FakeResponse,
    get_input_tensor_by_name=lambda request, name: request.get(name),
)


def args_for(repo: Path, model: str) -> dict[str, str]:
    """What the stub hands `initialize` (Triton parses config.pbtxt to JSON; here, a regex does)."""
    text = (repo / model / "config.pbtxt").read_text()
    params = {k: {"string_value": json.loads(v)} for k, v in re.findall(PARAM, text)}
    inputs_text, outputs_text = text.split("output [")
    config = {
        "name": model,
        "input": [{"name": n, "optional": bool(o)} for n, o in re.findall(SPEC, inputs_text)],
        "output": [{"name": n} for n, _ in re.findall(SPEC, outputs_text)],
        "parameters": params,
    }
    return {
        "model_config": json.dumps(config),
        "model_repository": str(repo / model),
        "model_version": "1",
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
        "model_name": model,
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backend")
    export_model_repository(tiny_artifact(root / "model"), root / "repo", reference=True)
    return root / "repo"


def request_rows(
    rng: np.random.Generator, b: int, cards: tuple[int, ...], **override: Any
) -> dict[str, FakeTensor]:
    lengths = rng.integers(0, MAX_LEN + 1, (b, 1))
    arrays = {
        "tokens": np.where(np.arange(MAX_LEN) < lengths, rng.integers(4, 400, (b, MAX_LEN)), 0),
        "lengths": lengths,
        "profile": np.stack([rng.integers(0, c, b) for c in cards], axis=1),
        "new_token": rng.integers(4, 400, (b, 1)),
        "txn_features": rng.normal(size=(b, 40)).astype(np.float32),
        "prob_stats": np.tile([10.0, 0.2, 0.05, -2.0, 0.5], (b, 1)),
    } | override
    return {k: FakeTensor(k, v) for k, v in arrays.items()}


def test_execute_batches_requests_into_one_forward_and_splits_answers(repo: Path) -> None:
    backend = SprmBackend(args_for(repo, SPRM), FAKE_PB)
    cards = backend.runner.info.profile_cardinalities
    calls: list[int] = []
    original = backend.runner.score
    backend.runner.score = lambda arrays, **kw: calls.append(len(arrays["tokens"])) or original(arrays, **kw)  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    requests = [request_rows(rng, b, cards) for b in (1, 3, 5)]
    responses = backend.execute(requests)
    assert [r.error.message for r in responses if r.error] == []
    assert calls == [9]  # one forward for all three requests
    for request, response in zip(requests, responses, strict=True):
        assert response.error is None
        b = len(request["tokens"].array)
        assert response.outputs["p_fraud"].shape == (b, 1) and response.outputs["reasons"].shape == (b, 21)
        single = backend.execute([request])[0]  # batching does not change a request's answer
        for name, value in single.outputs.items():
            np.testing.assert_allclose(response.outputs[name], value, atol=1e-5)


def test_a_bad_request_gets_its_own_error_and_the_others_are_answered(repo: Path) -> None:
    backend = SprmBackend(args_for(repo, SPRM), FAKE_PB)
    cards = backend.runner.info.profile_cardinalities
    rng = np.random.default_rng(1)
    bad = request_rows(rng, 2, cards, new_token=np.array([[5], [10**6]]))
    missing = request_rows(rng, 2, cards)
    del missing["prob_stats"]
    good = request_rows(rng, 4, cards)
    responses = backend.execute([bad, missing, good])
    assert (
        responses[0].error.code == "INVALID_ARG"
        and "new_token out of [0, vocab)" in responses[0].error.message
    )
    assert "input 'prob_stats' is missing" in responses[1].error.message
    assert responses[2].error is None and responses[2].outputs["logp_new"].shape == (4, 1)


def test_a_failing_forward_answers_every_request_with_the_error(repo: Path) -> None:
    backend = SprmBackend(args_for(repo, SPRM), FAKE_PB)
    backend.runner.score = lambda arrays, **kw: 1 / 0  # type: ignore[method-assign]
    rng = np.random.default_rng(2)
    cards = backend.runner.info.profile_cardinalities
    responses = backend.execute([request_rows(rng, 1, cards), request_rows(rng, 2, cards)])
    assert all("ZeroDivisionError" in r.error.message and r.error.code == "INTERNAL" for r in responses)


def test_mixed_optional_user_embedding_is_filled_in(repo: Path) -> None:
    backend = SprmBackend(args_for(repo, SPRM), FAKE_PB)
    cards = backend.runner.info.profile_cardinalities
    rng = np.random.default_rng(3)
    plain = request_rows(rng, 2, cards)
    cached = dict(plain)
    cached["user_embedding"] = FakeTensor(
        "user_embedding", backend.runner.embed_users(plain["profile"].array)
    )
    a, b = backend.execute([plain, cached])
    for name in a.outputs:
        np.testing.assert_allclose(a.outputs[name], b.outputs[name], atol=1e-5)


def test_user_encoder(repo: Path) -> None:
    backend = UserEncoderBackend(args_for(repo, USER_ENCODER), FAKE_PB)
    profile = np.zeros((3, 5), dtype=np.int64)
    (response, bad) = backend.execute(
        [{"profile": FakeTensor("profile", profile)}, {"profile": FakeTensor("profile", profile + 1000)}]
    )
    assert (
        response.outputs["user_embedding"].shape == (3, 16)
        and np.abs(response.outputs["user_embedding"]).sum() > 0
    )
    assert "profile ids out of range" in bad.error.message


def test_initialize_refuses_an_artifact_the_config_was_not_exported_for(repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    other = tiny_artifact(tmp_path / "other", seed=1)  # another model: other weights, same tokenizer
    target = copy / SPRM / "1" / "artifact"
    shutil.rmtree(target)
    shutil.copytree(other, target)
    with pytest.raises(ArtefactMismatch, match=r"is model_version panther-\w+ .* exported for model_version"):
        SprmBackend(args_for(copy, SPRM), FAKE_PB)


def test_refresh_then_score_equals_the_full_window_model(repo: Path) -> None:
    """panther_refresh + panther_score on a window's cached state = panther_sprm on the window."""
    sprm = SprmBackend(args_for(repo, SPRM), FAKE_PB)
    refresh = RefreshBackend(args_for(repo, REFRESH), FAKE_PB)
    score = ScoreBackend(args_for(repo, SCORE), FAKE_PB)
    cards = sprm.runner.info.profile_cardinalities
    rng = np.random.default_rng(4)
    rows = request_rows(rng, 6, cards, lengths=np.array([[MAX_LEN], [1], [3], [7], [MAX_LEN], [2]]))
    full = sprm.execute([rows])[0].outputs
    lengths = rows["lengths"].array
    request = {name: rows[name] for name in ("tokens", "lengths", "profile")}
    states = refresh.execute([request | {"positions": FakeTensor("positions", lengths - 1)}])[0].outputs
    assert states["hidden"].shape == (6, 1, 16) and states["lse"].shape == (6, 1)
    table = NextTokenTable.from_artifact_dir(sprm.runner.artifact.path, sprm.runner.temperature)
    logp = table.logp(states["hidden"][:, 0], states["lse"][:, 0], rows["new_token"].array[:, 0])
    np.testing.assert_allclose(logp, full["logp_new"][:, 0], atol=1e-5)
    inputs = {name: rows[name] for name in ("txn_features", "prob_stats", "profile")} | {
        "logp_new": FakeTensor("logp_new", logp[:, None]),
        "hidden": FakeTensor("hidden", states["hidden"][:, 0]),
        "reason_threshold": FakeTensor("reason_threshold", np.zeros((6, 1), np.float32)),
    }
    out = score.execute([inputs])[0].outputs
    for name in ("p_fraud", "logit", "deviation", "deviation_log", "surprise", "reasons"):
        np.testing.assert_allclose(out[name], full[name], atol=1e-5, err_msg=name)
    inputs["reason_threshold"] = FakeTensor("reason_threshold", np.full((6, 1), 2.0, np.float32))
    assert not score.execute([inputs])[0].outputs["reasons"].any()  # none alerts: no reasons computed
    bare = {k: v for k, v in inputs.items() if k != "reason_threshold"}  # batched with others that ask
    e_u = score.runner.embed_users(rows["profile"].array)
    cached = inputs | {"user_embedding": FakeTensor("user_embedding", e_u),
                       "reason_threshold": FakeTensor("reason_threshold", np.zeros((6, 1), np.float32))}
    first, second = score.execute([bare, cached])
    np.testing.assert_allclose(first.outputs["p_fraud"], full["p_fraud"], atol=1e-5)
    assert not first.outputs["reasons"].any()
    np.testing.assert_allclose(second.outputs["reasons"], full["reasons"], atol=1e-5)


def test_refresh_rejects_positions_outside_the_window(repo: Path) -> None:
    refresh = RefreshBackend(args_for(repo, REFRESH), FAKE_PB)
    tokens = np.full((1, MAX_LEN), 5, dtype=np.int64)
    request = {"tokens": FakeTensor("tokens", tokens), "lengths": FakeTensor("lengths", np.array([[3]])),
               "profile": FakeTensor("profile", np.zeros((1, 5), np.int64)),
               "positions": FakeTensor("positions", np.array([[3]]))}  # fmt: skip
    (response,) = refresh.execute([request])
    assert response.error.code == "INVALID_ARG" and "positions out of" in response.error.message


def test_initialize_refuses_another_fraud_head(repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    head = copy / SCORE / "1" / "artifact" / "fraud_head.json"
    head.write_text(head.read_text().replace('"weights_sha256": "', '"weights_sha256": "0'))
    with pytest.raises(ArtefactMismatch, match="fraud head"):
        ScoreBackend(args_for(copy, SCORE), FAKE_PB)


def test_device_for() -> None:
    assert device_for("GPU", "1") == "cuda:1" and device_for("CPU", 0) == "cpu"


def test_the_stub_keeps_freed_memory_unless_told_to(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`retain_freed_memory` in the stub: 512 MB by default (as PANTHER_MALLOC_RETAIN_MB), a
    `malloc_retain_mb` parameter in config.pbtxt overrides it (0: glibc's defaults)."""
    import triton_repo.backend

    calls: list[int] = []
    monkeypatch.setattr(triton_repo.backend, "retain_freed_memory", calls.append)
    UserEncoderBackend(args_for(repo, USER_ENCODER), FAKE_PB)
    args = args_for(repo, USER_ENCODER)
    config = json.loads(args["model_config"])
    config["parameters"]["malloc_retain_mb"] = {"string_value": "0"}
    UserEncoderBackend(args | {"model_config": json.dumps(config)}, FAKE_PB)
    assert calls == [512, 0]
