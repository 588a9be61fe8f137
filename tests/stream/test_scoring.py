"""`Scorer`: in-process and Triton give the same numbers; batching, padding, errors, empty outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.fraud.live import LiveEvent, build_request
from models.fraud.scorer import FraudScorer
from models.fraud.state import UserState
from models.fraud.txn import TxnView
from stream.scoring import (
    InProcessScorer,
    RefreshRequest,
    RequestRejected,
    Scorer,
    ScoreRequest,
    ScoreResult,
    ScorerUnavailable,
    ScoringError,
    ServedModel,
    StateScoreRequest,
    TritonScorer,
    blocking_score_fn,
)
from stream.triton_client import TritonClient
from tests.triton_repo.fixtures import MAX_LEN, Served, shared_served, tiny_artifact
from triton_repo.schema import SPRM

CARDS = (11, 3, 9, 7, 11)  # the tiny artefact's profile cardinalities


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Served:
    return shared_served(request)


@pytest.fixture
async def scorers(served: Served) -> Any:
    triton = await TritonScorer.connect(served.server.grpc_url, timeout_s=10.0, reference=True)
    local = InProcessScorer.from_artifact(served.artifact)
    yield triton, local
    await triton.close()
    await local.close()


def make_request(rng: np.random.Generator, b: int, width: int = MAX_LEN, user: bool = False) -> ScoreRequest:
    lengths = rng.integers(0, width + 1, b)
    lengths[0] = width
    tokens = np.where(np.arange(width) < lengths[:, None], rng.integers(4, 400, (b, width)), 0)
    stats = np.column_stack(
        [
            rng.integers(0, 30, b),
            rng.uniform(0, 0.2, b),
            rng.uniform(0, 0.1, b),
            rng.uniform(-6, -1, b),
            rng.uniform(0, 1, b),
        ]
    )
    return ScoreRequest.from_arrays(
        tokens=tokens,
        lengths=lengths,
        profile=np.stack([rng.integers(0, c, b) for c in CARDS], axis=1),
        new_token=rng.integers(4, 400, b),
        txn_features=rng.normal(size=(b, 40)),
        prob_stats=stats,
        user_embedding=rng.normal(size=(b, 16)) if user else None,
    )


def assert_parity(a: ScoreResult, b: ScoreResult) -> None:
    da, db = a.to_dict(), b.to_dict()
    assert da.keys() == db.keys() and "p_fraud" in da
    for name in da:
        assert da[name].shape == db[name].shape, name
        assert float(np.abs(da[name] - db[name]).max()) <= 1e-5, name
    assert a.model_version == b.model_version and a.signal_names == b.signal_names


async def test_triton_equals_in_process(scorers: tuple[TritonScorer, InProcessScorer]) -> None:
    triton, local = scorers
    rng = np.random.default_rng(0)
    for request in (make_request(rng, 33), make_request(rng, 5, width=7), make_request(rng, 8, user=True)):
        remote, here = await triton.score(request), await local.score(request)
        assert_parity(remote, here)
        for value in remote.to_dict().values():  # the numpy-2 trap: EMPTY outputs, no error
            assert value.shape[0] == request.size and value.size > 0 and np.isfinite(value).all()
        assert remote.reasons is not None and remote.reasons.shape == (request.size, len(triton.signal_names))
    profile = make_request(rng, 9).profile
    np.testing.assert_allclose(await triton.embed_users(profile), await local.embed_users(profile), atol=1e-5)
    assert (
        isinstance(triton, Scorer)
        and isinstance(local, Scorer)
        and triton.max_len == local.max_len == MAX_LEN
    )


async def test_requests_larger_than_max_batch_size_are_split(
    scorers: tuple[TritonScorer, InProcessScorer],
) -> None:
    triton, local = scorers
    request = make_request(np.random.default_rng(1), 300)  # served max_batch_size is 256
    assert_parity(await triton.score(request), await local.score(request))


async def test_concurrent_requests_are_batched_by_triton(
    served: Served, scorers: tuple[TritonScorer, Any]
) -> None:
    triton, _ = scorers
    rng = np.random.default_rng(2)
    requests = [make_request(rng, 4) for _ in range(24)]
    before = await triton.client.statistics(SPRM)
    results = await asyncio.gather(*[triton.score(r) for r in requests])
    # Triton counts an execution once its stub reports back, which can be after the responses arrived
    # (seen: 56 of 96 inferences counted right after the gather): read until all are in, or 5 s pass.
    for _ in range(50):
        after = await triton.client.statistics(SPRM)
        inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
        if inferences >= 24 * 4:
            break
        await asyncio.sleep(0.1)
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == 24 * 4 and executions < len(requests), (inferences, executions)
    assert all(r.p_fraud is not None and r.p_fraud.shape == (4,) for r in results)


async def test_bad_requests_are_rejected_the_same_way_by_both(
    scorers: tuple[TritonScorer, InProcessScorer],
) -> None:
    rng = np.random.default_rng(3)
    too_long = make_request(rng, 2, width=MAX_LEN + 1)
    bad_token = ScoreRequest.from_arrays(
        **(make_request(rng, 2).arrays() | {"new_token": np.array([5, 10**6])})
    )
    for scorer in scorers:
        with pytest.raises(RequestRejected, match=r"longer than|tokens must be"):
            await scorer.score(too_long)
        with pytest.raises(RequestRejected, match=r"new_token out of \[0, vocab\)"):
            await scorer.score(bad_token)


async def test_empty_outputs_are_an_error_not_silent_zeros() -> None:
    class EmptyClient(TritonClient):
        async def infer(self, model: str, inputs: Any, outputs: Any = None, timeout_s: Any = None) -> Any:
            return {name: np.zeros((0,), np.float32) for name in outputs}

    config = {
        "name": SPRM,
        "max_batch_size": 8,
        "output": [{"name": "logp_new"}],
        "input": [
            {"name": n, "dims": d}
            for n, d in (("tokens", [MAX_LEN]), ("lengths", [1]), ("profile", [5]), ("new_token", [1]))
        ],
    }
    scorer = TritonScorer(EmptyClient(), {SPRM: ServedModel.from_config(config)})
    with pytest.raises(ScoringError, match="numpy ≥ 2"):
        await scorer.score(make_request(np.random.default_rng(4), 3))


def test_score_request_from_build_request_and_result_matches_fraud_scorer(served: Served) -> None:
    scorer = FraudScorer.from_artifact(served.artifact)
    txn = TxnView(1_700_000_000_000, 12.5, 42, 7, 0, 0, 0, 0, 0, -1, 99)
    events = [LiveEvent("u1", txn, np.zeros(5, np.int64)), LiveEvent("u2", txn, np.ones(5, np.int64))]
    state = UserState()
    arrays = build_request(scorer.schema, scorer.max_len, [state, state], events)
    request = ScoreRequest.from_arrays(**arrays)
    result = InProcessScorer.from_artifact(served.artifact).score_sync(request)
    expected = scorer.score(**arrays)
    assert result.to_dict().keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(result.to_dict()[name], value, atol=1e-6)


async def test_score_events_drives_any_scorer_through_the_blocking_adapter(
    served: Served, scorers: tuple[TritonScorer, InProcessScorer]
) -> None:
    """The worker's path: FRAUD's per-event loop in a thread, scoring on the event loop via Triton."""
    from models.fraud.live import score_events

    scorer = FraudScorer.from_artifact(served.artifact)
    events = [
        LiveEvent(
            f"u{i % 3}",
            TxnView(1_700_000_000_000 + i * 60_000, 10.0 + i, 4 + i, 7, 0, 0, 0, 0, 0, -1, 100 + i),
            np.zeros(5, np.int64),
        )
        for i in range(7)
    ]
    loop = asyncio.get_running_loop()
    via_triton = await asyncio.to_thread(
        score_events, blocking_score_fn(scorers[0], loop), scorer.schema, scorer.max_len, {}, events
    )
    direct = score_events(scorer.score, scorer.schema, scorer.max_len, {}, events)
    assert [r.user_id for r in via_triton] == [r.user_id for r in direct]
    np.testing.assert_allclose([r.p_fraud for r in via_triton], [r.p_fraud for r in direct], atol=1e-5)
    np.testing.assert_allclose([r.logp_new for r in via_triton], [r.logp_new for r in direct], atol=1e-5)


async def test_in_process_scorer_without_fraud_head(tmp_path: Path) -> None:
    local = InProcessScorer.from_artifact(tiny_artifact(tmp_path / "m", with_head=False))
    result = await local.score(make_request(np.random.default_rng(5), 3))
    assert result.p_fraud is None and result.reasons is None and local.signal_names == ()
    assert result.logp_new.shape == (3,) and result.seq_embedding.shape == (3, 16)
    await local.close()


def refresh_request(rng: np.random.Generator, r: int, k: int = 3) -> RefreshRequest:
    lengths = rng.integers(1, MAX_LEN + 1, r)
    tokens = np.where(np.arange(MAX_LEN) < lengths[:, None], rng.integers(4, 400, (r, MAX_LEN)), 0)
    back = lengths[:, None] - 1 - np.arange(k)  # the last k positions of each row (or fewer)
    positions = np.where(back >= 0, back, -1)
    return RefreshRequest(tokens[:, : int(lengths.max())], lengths,
                          np.stack([rng.integers(0, c, r) for c in CARDS], axis=1), positions)  # fmt: skip


async def test_the_cached_path_through_triton_equals_in_process(
    scorers: tuple[TritonScorer, InProcessScorer],
) -> None:
    triton, local = scorers
    assert triton.sequence_dim == local.sequence_dim == 0 and triton.head_sha256
    rng = np.random.default_rng(6)
    for request in (refresh_request(rng, 7), refresh_request(rng, 300, k=1)):  # 300 > max_batch_size
        remote, here = await triton.refresh(request), await local.refresh(request)
        assert remote.hidden.shape == here.hidden.shape == (*request.positions.shape, 16)
        np.testing.assert_allclose(remote.hidden, here.hidden, atol=1e-5)
        np.testing.assert_allclose(remote.lse, here.lse, atol=1e-5)
    full = make_request(rng, 12)
    state = StateScoreRequest(
        txn_features=full.txn_features, prob_stats=full.prob_stats,
        logp_new=rng.normal(-3, 1, 12).astype(np.float32),
        hidden=rng.normal(size=(12, 16)).astype(np.float32), profile=full.profile,
        reason_threshold=np.where(np.arange(12) % 2 == 0, 0.0, 2.0).astype(np.float32),
    )  # fmt: skip
    remote, here = await triton.score_state(state), await local.score_state(state)
    for name, value in here.to_dict().items():
        np.testing.assert_allclose(remote.to_dict()[name], value, atol=1e-5, err_msg=name)
    assert remote.reasons[0::2].any() and not remote.reasons[1::2].any()  # reasons only where asked


async def test_a_scorer_without_the_reference_model_says_so(served: Served) -> None:
    triton = await TritonScorer.connect(served.server.grpc_url, timeout_s=10.0)
    try:
        with pytest.raises(ScorerUnavailable, match="without panther_sprm"):
            await triton.score(make_request(np.random.default_rng(7), 2))
    finally:
        await triton.close()
