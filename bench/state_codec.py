"""The per-event state codec's speed on real states: `python bench/state_codec.py [--json]`.

Scores the demo bench data (`panther bench stream`'s model, trained once under $PANTHER_HOME) through
the engine, so the states have the windows, merchant maps and cached predictions the worker writes;
then times `UserState.to_bytes` / `from_bytes` over all of them (best of `--rounds`), and the refresh's
re-tail (`to_bytes_after_refresh`: the bytes the batch wrote, with the new prediction spliced in)
against packing the whole state again. Prints one JSON object with `--json`.
"""

from __future__ import annotations

import asyncio
import time

import click

from models.fraud.state import UserState
from stream.bench_stream import default_model
from stream.cli import emit
from stream.engine import CachedProfile, ScoringEngine
from stream.events import Transaction, UserProfile
from stream.files import read_events
from stream.live_model import LiveModel
from stream.scoring import InProcessScorer
from stream.settings import Settings


def real_states(events: int) -> list[UserState]:
    """The users' states after `events` of the demo data, scored and refreshed as the worker does."""
    model, data = default_model(Settings().home, "demo")
    live = LiveModel.from_artifact_dir(model)
    txns = [t for chunk in read_events(data / "transactions.parquet", Transaction) for t in chunk][:events]
    users = [p for chunk in read_events(data / "profiles.parquet", UserProfile) for p in chunk]

    async def run() -> list[UserState]:
        scorer = InProcessScorer.from_artifact(model, threads=1)
        ids = live.profile_ids(users)
        embeddings = await scorer.embed_users(ids)
        cached = {u.user_id: CachedProfile(r, e, live.model_version, 0)
                  for u, r, e in zip(users, ids, embeddings, strict=True)}  # fmt: skip
        engine = ScoringEngine(live, scorer, 0.5)
        states: dict[str, UserState | bytes] = {}
        for i in range(0, len(txns), 512):
            chunk = txns[i : i + 512]
            await engine.score(chunk, states, cached)
            await engine.refresh({t.user_id: states[t.user_id] for t in chunk}, cached)  # type: ignore[misc]
        await scorer.close()
        return [s if isinstance(s, UserState) else UserState.from_bytes(s) for s in states.values()]

    return asyncio.run(run())


def retail(pair: tuple[UserState, bytes]) -> bytes:
    state, written = pair
    return state.to_bytes_after_refresh(written)


def best_us(fn: object, items: list, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            fn(item)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return round(1e6 * best / len(items), 2)


@click.command()
@click.option("--events", default=30_000, show_default=True, help="Demo events scored into the states.")
@click.option("--rounds", default=15, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(events: int, rounds: int, as_json: bool) -> None:
    states = real_states(events)
    raws = [s.to_bytes() for s in states]
    result = {
        "states": len(states),
        "mean_bytes": round(sum(map(len, raws)) / len(raws), 1),
        "pack_us": best_us(UserState.to_bytes, states, rounds),
        "unpack_us": best_us(UserState.from_bytes, raws, rounds),
        "retail_us": best_us(retail, list(zip(states, raws, strict=True)), rounds),
    }
    emit(result, as_json)


if __name__ == "__main__":
    main()
