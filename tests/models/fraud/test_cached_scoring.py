"""The cached path equals the full-window reference: every case in which h_u must not be reused.

Reference: `models.fraud.live.score_events` (every event's window through the encoder, per-user rounds).
Cached: `models.fraud.cached_scoring.score_cached` + `refresh_states` after each batch (the refresh
keeping up). Same events, same states in, the same p_fraud, log P, Δ, Δ_log and surprise out (≤ 1e-5),
for the three head variants (frozen PANTHER, fine-tuned encoder, TextCNN): windows that fill and slide,
several events of one user in a batch, a late event, a redelivered txn id, a changed profile, another
model version.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from typing import Any

import numpy as np
import pytest
import torch

from models.fraud.api import fit_fraud
from models.fraud.cached_scoring import ModelTags, refresh_states, score_cached
from models.fraud.live import LiveEvent, LiveResult, score_events
from models.fraud.next_token import NextTokenTable
from models.fraud.scorer import FraudScorer
from models.fraud.state import UserState, tag64
from models.fraud.txn import txn_view
from tests.models.fraud.test_live import live_events
from triton_repo.synthetic import state_score_inputs

TAGS = ModelTags(tag64("model-a"), tag64("model-a", "head"))
FIELDS = ("p_fraud", "logp_new", "deviation", "deviation_log", "surprise")


@pytest.fixture(scope="module", params=["hybrid_panther", "fine_tuned", "hybrid_textcnn", "head_alone"])
def variant(request: pytest.FixtureRequest, tiny, tmp_path_factory: pytest.TempPathFactory) -> FraudScorer:
    model_dir = tmp_path_factory.mktemp(request.param) / "model"
    shutil.copytree(tiny.model_dir, model_dir)
    fine_tune, alone = request.param == "fine_tuned", request.param == "head_alone"
    fit_fraud(model_dir, tiny.transactions_path, tiny.profiles_path, epochs=1, device="cpu",
              variant="hybrid_panther" if fine_tune or alone else request.param, fine_tune=fine_tune,
              residual=not alone, fit_overrides={"batch_size": 512})  # fmt: skip
    return FraudScorer.from_artifact(model_dir)


def table_of(scorer: FraudScorer) -> NextTokenTable:
    cosine = scorer.encoder.config.similarity == "cosine"
    return NextTokenTable(scorer.encoder.item_table().detach().numpy(), cosine, scorer.temperature)


def run_reference(scorer: FraudScorer, batches: list[list[LiveEvent]], states: dict[str, UserState],
                  model_tag: int = TAGS.encoder) -> list[LiveResult]:  # fmt: skip
    out: list[LiveResult] = []
    for batch in batches:
        out += score_events(scorer.score, scorer.schema, scorer.max_len, states, batch, reasons=False,
                            model_tag=model_tag)  # fmt: skip
    return out


def run_cached(scorer: FraudScorer, batches: list[list[LiveEvent]], states: dict[str, UserState],
               tags: ModelTags = TAGS, stale_ok: frozenset[str] = frozenset(),
               refresh: bool = True, **kwargs: Any) -> tuple[list[LiveResult], int]:  # fmt: skip
    """Results and the critical-path encoder rows; the refresh runs after every batch. `kwargs`: to
    `score_cached` (`max_lag`, `late`)."""
    out: list[LiveResult] = []
    rows = 0
    table = table_of(scorer)
    for batch in batches:
        done = score_cached(scorer.refresh, scorer.score_state, table, scorer.schema, scorer.max_len, states,
                            batch, tags, sequence_dim=scorer.sequence_dim, stale_ok=stale_ok,
                            **kwargs)  # fmt: skip
        out += done.results
        rows += done.encoder_rows
        if refresh:
            touched = {e.user_id for e in batch}
            refresh_states(scorer.refresh, scorer.max_len, {u: states[u] for u in touched},
                           {e.user_id: e.profile for e in batch}, tags)  # fmt: skip
    return out, rows


def assert_same(cached: list[LiveResult], reference: list[LiveResult]) -> None:
    assert [r.duplicate for r in cached] == [r.duplicate for r in reference]
    kept = [i for i, r in enumerate(reference) if not r.duplicate]
    for name in FIELDS:
        got = np.asarray([getattr(cached[i], name) for i in kept])
        want = np.asarray([getattr(reference[i], name) for i in kept])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=name)
    assert all(cached[i].state_lag == 0 for i in kept)


def batches_of(events: list[LiveEvent], size: int) -> list[list[LiveEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def test_cached_scores_equal_full_window_scores(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    events = events[:600]
    longest = max(sum(e.user_id == u for e in events) for u in {e.user_id for e in events})
    assert longest > variant.max_len + 5, "some window must fill and slide"
    for size in (1, 64):
        reference = run_reference(variant, batches_of(events, size), {})
        cached, rows = run_cached(variant, batches_of(events, size), {})
        assert_same(cached, reference)
        if size == 1:
            # only a user's first event misses the cache: its [UNK] window and its first cache, 2 rows
            assert rows == 2 * len({e.user_id for e in events})


def test_next_event_caches_left_to_the_refresh_change_no_score(tiny, variant: FraudScorer) -> None:
    """`cache_next=False` (the worker): the batch encodes only the windows it scores from, and the
    refresh after it makes the next-event caches: the same scores, fewer critical-path rows."""
    events, _ = live_events(tiny, variant)
    events = events[:600]
    reference = run_reference(variant, batches_of(events, 64), {})
    _, rows = run_cached(variant, batches_of(events, 64), {})
    deferred, fewer = run_cached(variant, batches_of(events, 64), {}, cache_next=False)
    assert_same(deferred, reference)
    assert fewer < rows
    user = events[0].user_id
    own = [e for e in events if e.user_id == user][:3]
    states: dict[str, UserState] = {}
    run_cached(variant, [own[:1]], states, refresh=False, cache_next=False)
    assert states[user].prediction is None  # its first event encoded, its next cache left stale


def test_one_encoder_row_per_user_in_a_batch_while_the_window_grows(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    user = events[0].user_id
    own = [e for e in events if e.user_id == user][: variant.max_len - 1]  # all fit in one window
    states: dict[str, UserState] = {}
    first, _ = run_cached(variant, [own[:1]], states)  # the user's first event, then its refresh
    cached, rows = run_cached(variant, [own[1:]], states, refresh=False)
    assert rows == 1  # k events and the next event's cache: one causal pass
    assert states[user].valid_prediction(TAGS.prediction, states[user].prediction.profile) is not None
    assert_same(first + cached, run_reference(variant, [own[:1], own[1:]], {}))


def test_late_and_redelivered_events(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    events = events[:300]
    user = events[-1].user_id
    mine = [i for i, e in enumerate(events) if e.user_id == user]
    late = events[mine[-3]]
    earlier = late.txn._replace(txn=late.txn.txn + 1, time_ms=late.txn.time_ms - 1)
    late = LiveEvent(user, earlier, late.profile)
    tail = [late, events[mine[-1]], events[mine[-2]]]  # a late event, then two redeliveries
    batches = [*batches_of(events, 50), tail, [events[mine[-1]]]]
    reference = run_reference(variant, batches, {})
    cached, _ = run_cached(variant, batches, {})
    assert [r.duplicate for r in reference[-4:]] == [False, True, True, True]
    assert_same(cached, reference)


def test_a_changed_profile_is_never_scored_from_the_old_cache(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    events = events[:300]
    user = events[-1].user_id
    other = next(e.profile for e in events if not np.array_equal(e.profile, events[-1].profile))
    changed = [LiveEvent(e.user_id, e.txn, other) if e.user_id == user and i >= 200 else e
               for i, e in enumerate(events)]  # fmt: skip
    reference = run_reference(variant, batches_of(changed, 20), {})
    cached, _ = run_cached(variant, batches_of(changed, 20), {})
    assert_same(cached, reference)


def test_another_model_version_resets_p_statistics_and_caches(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    first, second = batches_of(events[:200], 40), batches_of(events[200:400], 40)
    states_ref: dict[str, UserState] = {}
    states: dict[str, UserState] = {}
    run_reference(variant, first, states_ref)
    run_cached(variant, first, states)
    model_b = copy.deepcopy(variant)
    with torch.no_grad():
        for param in model_b.encoder.parameters():
            param.mul_(1.1)
    tags_b = ModelTags(tag64("model-b"), tag64("model-b", "head"))
    reference = run_reference(model_b, second, states_ref, model_tag=tags_b.encoder)
    cached, rows = run_cached(model_b, second, states, tags_b)
    assert rows > 0, "model A's caches must not be read by model B"
    assert_same(cached, reference)
    second = [e.user_id for e in events[200:400]]
    for user, count in {u: second.count(u) for u in set(second)}.items():  # P stats: model B's only
        assert states[user].model_tag == states_ref[user].model_tag == tags_b.encoder
        assert states[user].prob.n == states_ref[user].prob.n == count


def test_p_statistics_restart_under_a_new_encoder() -> None:
    state = UserState(model_tag=tag64("a"))
    state.prob = state.prob.add(0.5)
    state.adopt_model(tag64("a"))
    assert state.prob.n == 1
    state.adopt_model(tag64("b"))
    assert state.prob.n == 0 and state.model_tag == tag64("b")
    legacy = UserState()  # written before states named their model: kept
    legacy.prob = legacy.prob.add(0.5)
    legacy.adopt_model(tag64("a"))
    assert legacy.prob.n == 1


def test_overloaded_users_are_scored_from_the_last_refresh_with_their_lag(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    events = events[:200]
    states: dict[str, UserState] = {}
    run_cached(variant, batches_of(events[:100], 50), states)
    users = frozenset(e.user_id for e in events[100:])
    cached, rows = run_cached(variant, batches_of(events[100:], 50), states, stale_ok=users, refresh=False)
    lags = [r.state_lag for r in cached if not r.duplicate]
    assert max(lags) > 0 and all(np.isfinite(r.p_fraud) for r in cached if not r.duplicate)
    assert rows <= len(users)  # only users with no usable cache at all (new, late) reach the encoder


def test_a_lag_bound_scores_from_the_last_refresh_and_encodes_past_it(tiny, variant: FraudScorer) -> None:
    """`max_lag` (PANTHER_MAX_STATE_LAG): no refresh at all behind these batches, yet the encoder runs
    only for users whose cache lags more than the bound — and the bound holds for every score."""
    events, _ = live_events(tiny, variant)
    events = events[:400]
    states: dict[str, UserState] = {}
    run_cached(variant, batches_of(events[:100], 50), states)
    later = batches_of(events[100:], 50)
    _, exact_rows = run_cached(variant, later, copy.deepcopy(states), refresh=False)
    cached, rows = run_cached(variant, later, states, refresh=False, max_lag=3)
    lags = [r.state_lag for r in cached if not r.duplicate]
    assert max(lags) == 3 and all(np.isfinite(r.p_fraud) for r in cached if not r.duplicate)
    assert 0 < rows < exact_rows  # past the bound, and new users, still encoded: far fewer rows


def test_a_late_prediction_is_adopted_only_when_newer(tiny, variant: FraudScorer) -> None:
    """A refresh superseded by a later write left its prediction (`StateRefresher.take_late`): the
    state takes it when it was made after more events than its own, never an older one."""
    events, _ = live_events(tiny, variant)
    states: dict[str, UserState] = {}
    user = events[0].user_id
    own = [e for e in events if e.user_id == user][:8]
    run_cached(variant, [own[:3]], states)  # cache valid after 3 events
    run_cached(variant, [own[3:6]], states, refresh=False, max_lag=5)  # 3 more, scored from it
    state = states[user]
    assert (state.n, state.prediction.folded) == (6, 3)
    newer = dataclasses.replace(state.prediction, folded=5)
    older = dataclasses.replace(state.prediction, folded=2)
    for late, lag in ((older, 3), (newer, 1)):
        trial = copy.deepcopy(states)
        scored, rows = run_cached(variant, [own[6:7]], trial, refresh=False, max_lag=5, late={user: late})
        assert (scored[0].state_lag, rows) == (lag, 0)


def test_the_item_table_read_without_torch_equals_the_models(tiny, variant: FraudScorer) -> None:
    path = variant.artifact.path
    table = NextTokenTable.from_artifact_dir(path, variant.temperature)
    np.testing.assert_array_equal(table.items, table_of(variant).items)


def test_refresh_states_skips_valid_caches(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    states: dict[str, UserState] = {}
    run_cached(variant, batches_of(events[:50], 25), states)
    profiles = {e.user_id: e.profile for e in events[:50]}
    assert refresh_states(variant.refresh, variant.max_len, states, profiles, TAGS) == 0


def test_a_first_event_has_the_unknown_window(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    event = LiveEvent("newcomer", txn_view({"txn_id": "x", "timestamp": 0, "amount": 3.0, "merchant_id": "m"},
                                           events[0].txn.token), events[0].profile)  # fmt: skip
    assert_same(run_cached(variant, [[event]], {})[0], run_reference(variant, [[event]], {}))


def test_states_with_their_cache_round_trip(tiny, variant: FraudScorer) -> None:
    events, _ = live_events(tiny, variant)
    states: dict[str, UserState] = {}
    run_cached(variant, batches_of(events[:80], 40), states)
    for state in states.values():
        assert state.prediction is not None
        again = UserState.from_bytes(state.to_bytes())
        assert again == state and UserState.from_dict(state.to_dict()) == state


def test_doctests() -> None:
    import doctest

    import models.fraud.api
    import models.fraud.next_token
    import models.fraud.state
    import models.fraud.window_plan

    for module in (models.fraud.window_plan, models.fraud.next_token, models.fraud.api, models.fraud.state):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_the_served_scorer_scores_as_the_reference(tiny, variant: FraudScorer) -> None:
    """`trace_for_serving` (the worker's and Triton's CPU scorer: the traced encoder, the head in numpy)
    changes no score, no Δ and no reason: cached and served against the full-window reference, and its
    `score_state` against the torch head's on the same inputs (e_u from the profile, every row alerting)."""
    served = copy.copy(variant)
    served.trace_for_serving()
    assert served.numpy_head is not None
    events = live_events(tiny, variant)[0][:300]
    cached, _ = run_cached(served, batches_of(events, 64), {})
    assert_same(cached, run_reference(variant, batches_of(events, 64), {}))
    config = variant.encoder.config
    inputs = state_score_inputs(variant.n_features, config.d_model, len(config.profile_cardinalities),
                                variant.sequence_dim, 32, np.random.default_rng(0))  # fmt: skip
    inputs["reason_threshold"] = np.zeros(32, dtype=np.float32)
    want, got = variant.score_state(**inputs), served.score_state(**inputs)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
        assert got[name].dtype == value.dtype, name
    assert np.abs(got["reasons"]).sum(axis=1).min() > 0  # every row alerted and was explained
