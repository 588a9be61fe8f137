"""`ScoringEngine` on the cached path equals its full-window reference; the refresh queue's rules."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from stream.events import Transaction
from stream.files import read_events
from stream.worker.refresh import Pending, StateRefresher
from tests.stream.model_fixtures import engine_scores, read_profiles, tiny_model

__all__ = ["tiny_model"]


def transactions(data: Path, n: int) -> list[Transaction]:
    txns = [t for chunk in read_events(data / "transactions.parquet", Transaction) for t in chunk]
    return sorted(txns, key=lambda t: t.timestamp)[:n]


@pytest.mark.parametrize("batch", [1, 50])
def test_the_engine_scores_the_cached_path_as_the_reference(tiny_model: tuple[Path, Path],
                                                            batch: int) -> None:  # fmt: skip
    model, data = tiny_model
    txns = transactions(data, 600)
    profiles = read_profiles(data / "profiles.parquet")
    cached = engine_scores(model, txns, profiles, batch=batch)
    reference = engine_scores(model, txns, profiles, batch=batch, reference=True)
    assert cached.keys() == reference.keys() and len(cached) == 600
    diff = max(abs(cached[t] - reference[t]) for t in cached)
    assert diff <= 1e-5, diff


def test_scoring_in_place_equals_the_copy_on_write_path(tiny_model: tuple[Path, Path]) -> None:
    """The backtest's `in_place=True` (no state copies) gives exactly the worker's scores."""
    model, data = tiny_model
    txns = transactions(data, 600)
    profiles = read_profiles(data / "profiles.parquet")
    assert engine_scores(model, txns, profiles, batch=50, in_place=True) == engine_scores(
        model, txns, profiles, batch=50
    )


def test_the_batch_front_end_equals_the_dict_and_frame_reference(tiny_model: tuple[Path, Path]) -> None:
    """What `ScoringEngine.score` reads per transaction — its token (`transaction_tokens`, no frame) and
    its `TxnView` (`record_view`, plain attributes) — equals the reference `tokens(model_dump)` and
    `txn_view`, on real records and on edge ones (missing fields, odd case and spaces, zero amounts)."""
    from models.fraud.txn import record_view, txn_view
    from stream.live_model import LiveModel

    model, data = tiny_model
    live = LiveModel.from_artifact_dir(model)
    txns = transactions(data, 400)
    edge = [txns[0].model_copy(update=change) for change in (
        {"merchant_category": None, "channel": None, "merchant_risk": None, "device_id": None},
        {"channel": " ONLINE ", "merchant_risk": "High", "amount": 0.0, "city": "  "},
        {"merchant_category": "never-seen-category", "amount": 1e9, "country": None},
    )]  # fmt: skip
    txns = txns + edge
    records = [txn.model_dump(mode="python") for txn in txns]
    assert live.transaction_tokens(txns).tolist() == live.tokens(records).tolist()
    assert live.transaction_tokens(txns).tolist() == live.tokens(records).tolist()  # memoised values
    for txn, token in zip(txns, live.tokens(records).tolist(), strict=True):
        assert record_view(txn, token) == txn_view(txn, token) == txn_view(txn.model_dump(), token)


def test_the_stream_scores_without_torch() -> None:
    """The engine and the worker's agents are numpy-only: torch loads only with an in-process scorer."""
    root = Path(__file__).resolve().parents[2]
    code = ("import sys, stream.engine, stream.worker.scoring_agent, stream.backtest.runner; "
            "assert 'torch' not in sys.modules, 'torch was imported'")  # fmt: skip
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_a_worker_scoring_through_triton_loads_no_torch(tiny_model: tuple[Path, Path],
                                                        tmp_path: Path) -> None:  # fmt: skip
    """With PANTHER_SCORER=triton and PANTHER_DEGRADED_MODE=pause the whole worker is numpy-only: the
    scorer's contract (L, reasons' order, sequence width) comes from the artefact's files."""
    model, _ = tiny_model
    root = Path(__file__).resolve().parents[2]
    code = ("import sys\n"
            "from stream.settings import Settings\n"
            "from stream.worker.runtime import build_worker\n"
            f"worker = build_worker(Settings(model_dir={str(model)!r}, worker_data_dir={str(tmp_path)!r}, "
            "scorer='triton', degraded_mode='pause'))\n"
            "assert worker.engine.fallback is None\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "engine = worker.engine\n"
            "print(engine.max_len, ','.join(engine.signal_names), engine.scorer.sequence_dim)")
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env, capture_output=True,
                         text=True).stdout.split()  # fmt: skip
    from stream.scoring import InProcessScorer

    scorer = InProcessScorer.from_artifact(model)
    assert out == [str(scorer.max_len), ",".join(scorer.signal_names), str(scorer.sequence_dim)]


class FakeEngine:
    """Counts refresh calls; each takes `delay` seconds; `fail` makes the next one raise; `max_lag`: the
    lag bound the refresher reads from its engine."""

    def __init__(self, delay: float = 0.05, max_lag: int = 0) -> None:
        self.delay, self.calls, self.fail, self.max_lag = delay, [], False, max_lag

    async def refresh(self, states: dict[str, Any], profiles: dict[str, Any]) -> int:
        self.calls.append(sorted(states))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("scorer gone")
        return len(states)


class FakeState:
    def __init__(self, name: str) -> None:
        self.name = name

    def to_bytes(self) -> bytes:
        return self.name.encode()


async def settle(refresher: StateRefresher, users: set[str]) -> frozenset[str]:
    """What the scoring agent does around a batch of `users` (without scoring between the two)."""
    plan = refresher.prepare(users)
    await refresher.wait_for(plan.waiting)
    return plan.stale_ok


def entries(*users: str, tp: str = "p0") -> dict[str, Pending]:
    return {u: Pending(SimpleNamespace(tp=tp), FakeState(f"{u}-state"), None) for u in users}


async def test_refreshes_run_behind_one_call_at_a_time_and_become_ready() -> None:
    engine = FakeEngine()
    refresher = StateRefresher(engine, backlog_max=100, batch_max=2, owned=lambda s: s.tp == "p0")  # type: ignore[arg-type]
    refresher.submit(entries("a", "b", "c"))  # a, b: refreshing now; c: queued behind them
    assert refresher.backlog == 3
    assert await settle(refresher, {"c"}) == frozenset()  # queued: the batch takes c and encodes it itself
    await settle(refresher, {"a"})  # a is being refreshed: the batch waits for that call
    assert engine.calls == [["a", "b"]] and set(refresher.ready) == {"a", "b"} and refresher.backlog == 0
    assert refresher.take_ready({"a"}) == {"a": b"a-state"} and "a" not in refresher.ready
    assert [user for user, *_ in refresher.drain_ready()] == ["b"] and not refresher.ready
    await refresher.close()


async def test_the_queue_drains_without_another_batch() -> None:
    """Each call starts the next from its own end (a first version waited for the next batch's submit:
    in a stream gone quiet, the users queued behind a call stayed stale)."""
    engine = FakeEngine(delay=0.01)
    refresher = StateRefresher(engine, backlog_max=100, batch_max=1, owned=lambda s: True)  # type: ignore[arg-type]
    refresher.submit(entries("a", "b", "c"))
    await asyncio.sleep(0.2)
    assert engine.calls == [["a"], ["b"], ["c"]] and set(refresher.ready) == {"a", "b", "c"}
    await refresher.close()


async def test_a_batch_scores_its_other_users_before_waiting_for_the_refresh_of_some() -> None:
    engine = FakeEngine(delay=0.05)
    refresher = StateRefresher(engine, backlog_max=100, batch_max=2, owned=lambda s: True)  # type: ignore[arg-type]
    refresher.submit(entries("a", "b", "c"))  # a, b: refreshing now; c: queued
    plan = refresher.prepare({"a", "c", "x"})
    assert plan.waiting == {"a"} and plan.stale_ok == frozenset()
    assert "c" not in refresher.queue  # taken out: the batch encodes c itself
    assert "a" in refresher.running and not refresher.ready  # nothing waited yet
    await refresher.wait_for(plan.waiting)
    assert "a" in refresher.ready and refresher.take_ready({"a"}) == {"a": b"a-state"}
    await refresher.close()


def test_a_batch_scored_in_two_parts_keeps_its_order() -> None:
    from stream.worker.scoring_agent import _in_order

    txns = [SimpleNamespace(user_id=u, n=i) for i, u in enumerate("abacb")]
    first = [SimpleNamespace(txn=t) for t in txns if t.user_id != "b"]
    second = [SimpleNamespace(txn=t) for t in txns if t.user_id == "b"]
    assert [o.txn.n for o in _in_order(txns, first, second, frozenset("b"))] == [0, 1, 2, 3, 4]  # type: ignore[arg-type]


async def test_the_users_scored_after_the_refresh_come_back_with_their_new_states() -> None:
    """The two-part batch (`ScoringAgent._score_batch`): each part's new states reach what is written,
    the waiting users' too (a first version kept their old ones: their events were then lost from state)."""
    from stream.worker.scoring_agent import ScoringAgent

    refresher = StateRefresher(FakeEngine(delay=0.02), backlog_max=100, batch_max=10, owned=lambda s: True)  # type: ignore[arg-type]
    refresher.submit(entries("b"))  # b is being refreshed when the batch arrives
    agent = ScoringAgent.__new__(ScoringAgent)
    agent.refresher = refresher
    agent.metrics = SimpleNamespace(score_seconds=SimpleNamespace(observe=lambda seconds: None))
    agent._load_states = lambda source: {**refresher.take_ready(source), **{u: b"old" for u in source}}  # type: ignore[method-assign]

    async def score(txns, states, profiles, stale_ok, events):  # as the engine: new states into `states`
        states.update({t.user_id: f"new-{t.user_id}" for t in txns})
        return [SimpleNamespace(txn=t) for t in txns]

    agent._score_with_backoff = score  # type: ignore[method-assign]
    txns = [SimpleNamespace(user_id=u) for u in "abab"]
    plan = refresher.prepare({"a", "b"})
    assert plan.waiting == {"b"}
    outcomes, states = await agent._score_batch(txns, {"a": 0, "b": 0}, plan, {"a": b"old"}, {}, [],  # type: ignore[arg-type]
                                                lambda name: None)  # fmt: skip
    assert [o.txn.user_id for o in outcomes] == list("abab")
    assert states == {"a": "new-a", "b": "new-b"}
    await refresher.close()


async def test_an_overloaded_refresh_is_not_waited_for() -> None:
    engine = FakeEngine(delay=0.5)
    refresher = StateRefresher(engine, backlog_max=1, batch_max=1, owned=lambda s: True)  # type: ignore[arg-type]
    refresher.submit(entries("a", "b", "c"))
    started = asyncio.get_running_loop().time()
    stale = await settle(refresher, {"a", "b", "x"})
    assert stale == {"a", "b"} and asyncio.get_running_loop().time() - started < 0.1
    await refresher.close()


async def test_a_newer_write_supersedes_a_running_refresh_and_failures_are_dropped() -> None:
    engine = FakeEngine()
    refresher = StateRefresher(engine, backlog_max=100, batch_max=10, owned=lambda s: s.tp == "p0")  # type: ignore[arg-type]
    refresher.submit(entries("a", "b"))
    await asyncio.sleep(0)
    refresher.written({"a"})  # a later batch wrote a: its running refresh must not land
    assert refresher.prepare({"a"}).waiting == frozenset()  # nor be waited for: the batch encodes a itself
    await asyncio.sleep(0.1)
    assert set(refresher.ready) == {"b"}
    engine.fail = True
    refresher.submit(entries("c") | entries("d", tp="p1"))
    await asyncio.sleep(0.1)
    assert set(refresher.ready) == {"b"} and refresher.backlog == 0  # c failed (dropped), d not ours
    assert [user for user, *_ in refresher.drain_ready()] == ["b"]
    await refresher.close()


async def test_a_refresh_from_an_earlier_consumer_generation_is_never_used() -> None:
    """A partition revoked and given back may have been written by another worker meanwhile: a state
    this worker refreshed before the rebalance is then not the user's newest, and is dropped (the next
    batch reads the table's and encodes it: exact). Running, ready and queued entries alike."""
    generation = [1]
    refresher = StateRefresher(FakeEngine(delay=0.02), backlog_max=100, batch_max=1, owned=lambda s: True,  # type: ignore[arg-type]
                               generation=lambda: generation[0])  # fmt: skip
    refresher.submit(entries("a", "b"), generation=1)  # a: refreshing now; b: queued
    await settle(refresher, {"a"})
    assert "a" in refresher.ready
    generation[0] = 2  # a rebalance: the partition went away and came back
    assert refresher.take_ready({"a"}) == {}
    refresher.submit(entries("c"), generation=1)  # written by a batch of the old generation
    await asyncio.sleep(0.1)
    assert refresher.drain_ready() == [] and refresher.backlog == 0
    refresher.submit(entries("d"), generation=2)
    await settle(refresher, {"d"})
    assert refresher.take_ready({"d"}) == {"d": b"d-state"}
    await refresher.close()


@pytest.mark.parametrize("view", [False, True])
async def test_a_refreshed_state_is_its_written_bytes_with_the_new_tail(view: bool) -> None:
    """The refresh behind re-tails the bytes its batch wrote (`Pending.written`) instead of packing the
    state again: what becomes ready is byte for byte the refreshed state's `to_bytes` — also when it
    refreshed a view of the state (`UserState.refresh_view`, what the worker hands it), which leaves
    the state itself as it was (the memo may be keeping it)."""
    from models.fraud.state import Prediction, UserState, update
    from models.fraud.txn import TxnView

    class Predicting(FakeEngine):
        async def refresh(self, states: dict[str, Any], profiles: dict[str, Any]) -> int:
            for state in states.values():
                state.prediction = Prediction(state.n, 5, 6, -1.5, np.arange(4, dtype=np.float32),
                                              np.ones(2, dtype=np.float32))  # fmt: skip
            return len(states)

    states = {}
    for user, count in (("a", 3), ("b", 0)):
        state = states[user] = UserState()
        for i in range(count):
            update(state, TxnView(1_000 * i, 10.0 + i, 5, 11, 12, 13, 14, 15, 16, 0, 100 + i), p=0.5)
    written = {user: state.to_bytes() for user, state in states.items()}
    refresher = StateRefresher(Predicting(), backlog_max=100, batch_max=10, owned=lambda s: True)  # type: ignore[arg-type]
    given = {u: s.refresh_view(2) if view else s for u, s in states.items()}
    refresher.submit({u: Pending(SimpleNamespace(tp="p0"), given[u], None, written[u]) for u in states})
    await settle(refresher, {"a", "b"})
    ready = refresher.take_ready({"a", "b"})
    assert all(s.prediction is not None for s in given.values())
    assert all((s.prediction is None) == view for s in states.values())
    for user, state in states.items():
        state.prediction = given[user].prediction
    assert ready == {u: s.to_bytes() for u, s in states.items()}
    await refresher.close()


def predicting_state(n: int) -> Any:
    """A UserState that has seen `n` events, and a refresh that caches a prediction for it."""
    from models.fraud.state import UserState

    state = UserState()
    state.n = n
    return state


class Predicting(FakeEngine):
    """Each refresh caches a prediction made after the state's `n` events."""

    async def refresh(self, states: dict[str, Any], profiles: dict[str, Any]) -> int:
        from models.fraud.state import Prediction

        for state in states.values():
            empty = np.zeros(0, np.float32)
            state.prediction = Prediction(state.n, 5, 6, -1.5, np.zeros(4, np.float32), empty)
        return await super().refresh(states, profiles)


async def test_under_a_lag_bound_nothing_waits_and_nothing_leaves_the_queue() -> None:
    refresher = StateRefresher(FakeEngine(delay=0.2, max_lag=4), backlog_max=100, batch_max=1,  # type: ignore[arg-type]
                               owned=lambda s: True)  # fmt: skip
    refresher.submit(entries("a", "b"))  # a: refreshing now; b: queued
    started = asyncio.get_running_loop().time()
    plan = refresher.prepare({"a", "b", "x"})
    await refresher.wait_for(plan.waiting)
    assert plan.waiting == frozenset() and plan.stale_ok == frozenset()
    assert asyncio.get_running_loop().time() - started < 0.1
    assert list(refresher.queue) == ["b"] and list(refresher.running) == ["a"]
    refresher.backlog_max = 0  # overloaded: still no unbounded lag, the engine's bound holds
    assert refresher.prepare({"a", "b"}).stale_ok == frozenset()
    await refresher.close()


async def test_a_user_written_again_keeps_its_place_in_the_queue() -> None:
    """A busy user, stale after every batch, would otherwise go to the back each time and wait longest."""
    refresher = StateRefresher(FakeEngine(delay=0.2, max_lag=4), backlog_max=100, batch_max=1,  # type: ignore[arg-type]
                               owned=lambda s: True)  # fmt: skip
    refresher.submit(entries("a", "b", "c", "d"))  # a: refreshing now; b, c, d: queued
    newer = entries("b")
    refresher.written({"b", "c"}, newer)  # b written again and still stale; c written with a valid cache
    assert list(refresher.queue) == ["b", "d"] and refresher.queue["b"] is newer["b"]
    await refresher.close()


@pytest.mark.parametrize("max_lag", [0, 3])
async def test_a_superseded_refresh_leaves_its_prediction_under_a_lag_bound(max_lag: int) -> None:
    """Exact (0): a refresh of a state a later batch rewrote is dropped. Under a lag bound its
    prediction — made after more events than the rewritten state's own — goes to the user's next batch."""
    refresher = StateRefresher(Predicting(delay=0.05, max_lag=max_lag), backlog_max=100, batch_max=10,  # type: ignore[arg-type]
                               owned=lambda s: True)  # fmt: skip
    refresher.submit({"a": Pending(SimpleNamespace(tp="p0"), predicting_state(7), None)})
    await asyncio.sleep(0)
    refresher.written({"a"}, {"a": Pending(SimpleNamespace(tp="p0"), predicting_state(8), None)})
    await asyncio.sleep(0.08)  # the first refresh finished, superseded; the second one runs
    assert "a" not in refresher.ready
    plan = refresher.prepare({"a"})
    if max_lag:
        assert plan.late["a"].folded == 7 and refresher.take_late({"a"}) == {}
    else:
        assert plan.late == {} and refresher.take_late({"a"}) == {}
    await refresher.close()


def test_scores_carry_the_readable_deviation(tiny_model: tuple[Path, Path]) -> None:
    from stream.engine import ScoringEngine
    from stream.live_model import LiveModel
    from stream.scoring import InProcessScorer

    model, data = tiny_model
    txns = transactions(data, 300)
    live = LiveModel.from_artifact_dir(model)
    engine = ScoringEngine(live, InProcessScorer.from_artifact(model, threads=1), 0.0)

    async def run() -> list[Any]:
        states: dict[str, Any] = {}
        out = await engine.score(txns[:150], states, {})
        await engine.refresh(states, {})
        return out + await engine.score(txns[150:], states, {})

    outcomes = asyncio.run(run())
    logs = np.asarray([o.score.deviation_log for o in outcomes])
    assert np.abs(logs).max() > 0.5  # Δ on log P moves; Δ on P (σ floor 0.01) mostly does not
    assert all(o.alert is not None and o.alert.deviation_log == o.score.deviation_log for o in outcomes)
    assert all(o.score.state_lag == 0 for o in outcomes)


def test_refresh_leaves_states_still_in_bytes_alone(tiny_model: tuple[Path, Path]) -> None:
    from stream.engine import ScoringEngine
    from stream.live_model import LiveModel
    from stream.scoring import InProcessScorer

    model, data = tiny_model
    scorer = InProcessScorer.from_artifact(model, threads=1)
    engine = ScoringEngine(LiveModel.from_artifact_dir(model), scorer, 0.5)
    txns = transactions(data, 20)

    async def run() -> tuple[int, int]:
        states: dict[str, Any] = {}
        await engine.score(txns, states, {})
        as_bytes = {user: state.to_bytes() for user, state in states.items()}  # as a table holds them
        return await engine.refresh(as_bytes, {}), await engine.refresh(states, {})

    untouched, refreshed = asyncio.run(run())
    assert untouched == 0 and refreshed == 0  # the batch's own catch-up already made every cache valid


def test_small_batches_on_the_loop_thread_score_as_on_a_worker_thread(tiny_model: tuple[Path, Path]) -> None:
    """`inline_max` (`PANTHER_INLINE_BATCH_MAX`) moves small batches and refreshes off the thread hop;
    the scores, reasons and states are the same as through `asyncio.to_thread`, and a scorer without
    sync calls (Triton's block on the loop) never runs inline."""
    import threading

    import models.fraud.cached_scoring as cached_scoring
    from stream.engine import ScoringEngine, in_process
    from stream.live_model import LiveModel
    from stream.scoring import InProcessScorer

    model, data = tiny_model
    txns = transactions(data, 120)
    scorer = InProcessScorer.from_artifact(model, threads=1)
    live = LiveModel.from_artifact_dir(model)
    threads: dict[int, set[str]] = {0: set(), 64: set()}
    original = cached_scoring.refresh_states

    def run(inline_max: int) -> tuple[list[Any], dict[str, bytes]]:
        engine = ScoringEngine(live, scorer, 0.0, inline_max=inline_max)

        async def go() -> tuple[list[Any], dict[str, bytes]]:
            states: dict[str, Any] = {}
            out = []
            for i in range(0, len(txns), 10):
                chunk = txns[i : i + 10]
                out += await engine.score(chunk, states, {})
                await engine.refresh({t.user_id: states[t.user_id] for t in chunk}, {})
            return out, {user: state.to_bytes() for user, state in states.items()}

        return asyncio.run(go())

    def spy(*args: Any, **kwargs: Any) -> int:
        threads[spying].add(threading.current_thread().name)
        return original(*args, **kwargs)

    import stream.engine as engine_module

    engine_module.refresh_states = spy  # type: ignore[assignment]
    try:
        spying = 0
        threaded, threaded_states = run(0)
        spying = 64
        inline, inline_states = run(64)
    finally:
        engine_module.refresh_states = original  # type: ignore[assignment]
    assert [o.score.model_dump(exclude={"processed_at"}) for o in inline] == [
        o.score.model_dump(exclude={"processed_at"}) for o in threaded
    ]
    assert [o.alert.reasons for o in inline] == [o.alert.reasons for o in threaded]
    assert inline_states == threaded_states
    assert threads[64] == {"MainThread"} and "MainThread" not in threads[0]
    assert in_process(scorer) and not in_process(SimpleNamespace(refresh=None, score_state=None))


def test_a_user_idle_past_the_retention_starts_afresh(tiny_model: tuple[Path, Path]) -> None:
    """Issue 15 (state retention): the rule reads only the user's event times, so live and backtest agree."""
    from collections import Counter
    from datetime import timedelta

    from stream.engine import ScoringEngine
    from stream.live_model import LiveModel
    from stream.scoring import InProcessScorer

    model, data = tiny_model
    txns = transactions(data, 400)
    user = Counter(t.user_id for t in txns).most_common(1)[0][0]
    mine = [t for t in txns if t.user_id == user]
    live = LiveModel.from_artifact_dir(model)
    engine = ScoringEngine(live, InProcessScorer.from_artifact(model, threads=1), 0.5,
                           retention_ms=100 * 86_400_000)  # fmt: skip

    def after(days: float) -> Transaction:
        when = mine[-2].timestamp + timedelta(days=days)
        return mine[-1].model_copy(update={"txn_id": f"later-{days}", "timestamp": when})

    async def next_score(days: float, as_bytes: bool) -> tuple[float, int]:
        states: dict[str, Any] = {}
        await engine.score(mine[:-1], states, {})
        if as_bytes:  # as the worker's table holds it
            states = {u: s.to_bytes() for u, s in states.items()}
        [outcome] = await engine.score([after(days)], states, {})
        return outcome.score.score, states[user].n

    async def fresh_score(days: float) -> float:
        [outcome] = await engine.score([after(days)], {}, {})
        return outcome.score.score

    for as_bytes in (False, True):
        kept_score, kept_n = asyncio.run(next_score(99, as_bytes))
        gone_score, gone_n = asyncio.run(next_score(101, as_bytes))
        assert kept_n == len(mine) and gone_n == 1
        assert gone_score == pytest.approx(asyncio.run(fresh_score(101)), abs=1e-6)
        assert kept_score != pytest.approx(asyncio.run(fresh_score(99)), abs=1e-6)


def test_the_profile_decoder_equals_from_bytes_and_decodes_a_changed_profile_afresh() -> None:
    from stream.engine import CachedProfile, ProfileDecoder

    old = CachedProfile(np.arange(4, dtype=np.int64), np.ones(3, np.float32), "v1", 10).to_bytes()
    new = CachedProfile(np.arange(4, dtype=np.int64), np.zeros(3, np.float32), "v1", 20).to_bytes()
    decode = ProfileDecoder(max_entries=2)
    first = decode(old)
    reference = CachedProfile.from_bytes(old)
    assert first.model_version == reference.model_version and first.updated_ms == reference.updated_ms
    assert np.array_equal(first.profile_ids, reference.profile_ids)
    assert np.array_equal(first.embedding, reference.embedding)
    assert decode(bytes(old)) is first  # the same stored bytes: the memo
    changed = decode(new)
    assert changed.updated_ms == 20 and not changed.embedding.any()
    with pytest.raises(ValueError):
        first.embedding[0] = 5.0  # shared between batches: read-only
    decode(CachedProfile(np.arange(2, dtype=np.int64), None, "v2", 30).to_bytes())
    assert len(decode._memo) <= 2  # bounded
