"""The I/O schema: one set of names between config.pbtxt, the backend and stream.scoring."""

from __future__ import annotations

from dataclasses import fields

from stream import readiness, scoring
from stream.scoring import (
    RefreshRequest,
    RefreshResult,
    ScoreRequest,
    ScoreResult,
    StateScoreRequest,
    StateScoreResult,
)
from triton_repo.schema import (
    MODELS,
    REFRESH,
    SCORE,
    SPRM,
    USER_ENCODER,
    WORKER_MODELS,
    ArtefactInfo,
    TensorSpec,
    encoder_inputs,
    refresh_inputs,
    refresh_outputs,
    score_inputs,
    score_outputs,
    sprm_inputs,
    sprm_outputs,
)

INFO = ArtefactInfo("panther-00000000", "h", "1", 100, 20, 16, (3, 4), n_features=40, signal_names=("a", "b"))


def test_score_request_fields_are_the_declared_inputs() -> None:
    assert [f.name for f in fields(ScoreRequest)] == [s.name for s in sprm_inputs(INFO)]
    assert (scoring.SPRM, scoring.USER_ENCODER, scoring.SCORE, scoring.REFRESH) == (SPRM, USER_ENCODER, SCORE,
                                                                                     REFRESH)  # fmt: skip
    assert set(MODELS) == {SPRM, USER_ENCODER, SCORE, REFRESH} and readiness.TRITON_MODELS == WORKER_MODELS


def test_cached_path_requests_and_results_are_the_declared_tensors() -> None:
    own = ArtefactInfo("panther-0", "h", "1", 100, 20, 16, (3, 4), n_features=40, signal_names=("a",),
                       sequence_dim=96)  # fmt: skip
    for info in (INFO, own):
        optional = {"sequence"} if not info.sequence_dim else set()
        assert [f.name for f in fields(RefreshRequest)] == [s.name for s in refresh_inputs(info)]
        assert {f.name for f in fields(RefreshResult)} - optional == {s.name for s in refresh_outputs(info)}
        assert {f.name for f in fields(StateScoreRequest)} - optional == {s.name for s in score_inputs(info)}
        assert {f.name for f in fields(StateScoreResult)} == {s.name for s in score_outputs(info)}


def test_score_result_covers_every_output() -> None:
    result_fields = {f.name for f in fields(ScoreResult)}
    assert {s.name for s in sprm_outputs(INFO)} <= result_fields
    assert set(scoring.ROW_OUTPUTS) == {s.name for s in sprm_outputs(INFO) if s.dims == (1,)}


def test_encoder_only_schema_has_no_fraud_inputs_or_outputs() -> None:
    info = ArtefactInfo("panther-0", "h", "1", 100, 20, 16, (3,))
    assert [s.name for s in sprm_inputs(info)] == [
        "tokens",
        "lengths",
        "profile",
        "new_token",
        "user_embedding",
    ]
    assert [s.name for s in sprm_outputs(info)] == ["surprise", "logp_new", "seq_embedding", "user_embedding"]


def test_profile_less_model_gets_a_variable_profile_dim() -> None:
    info = ArtefactInfo("panther-0", "h", "1", 100, 20, 16, ())
    assert encoder_inputs(info)[0].dims == (-1,)


def test_render() -> None:
    spec = TensorSpec("user_embedding", "FP32", (16,), optional=True)
    assert spec.render() == '  { name: "user_embedding", data_type: TYPE_FP32, dims: [ 16 ], optional: true }'
