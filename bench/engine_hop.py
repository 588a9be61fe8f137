"""What the hop to a worker thread costs a small batch: `python bench/engine_hop.py [--batch 10] [--json]`.

The engine on the demo bench data (`panther bench stream`'s model, trained once under $PANTHER_HOME),
scoring and refreshing `--batch` events at a time, with `inline_max` 0 (every call through
`asyncio.to_thread`) and large (every call on the loop's thread), alternating `--rounds` times; medians
of `--batches` batches each. The two modes score different (consecutive) slices of the data, whose
work differs (new users, late events): only the defaults' many batches and rounds even that out.
Prints one JSON object with `--json`.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import click

from stream.bench_stream import default_model
from stream.cli import emit
from stream.engine import CachedProfile, ScoringEngine
from stream.events import Transaction, UserProfile
from stream.files import read_events
from stream.live_model import LiveModel
from stream.scoring import InProcessScorer
from stream.settings import Settings

WARM_EVENTS = 10_000


async def measure(batch: int, batches: int, rounds: int) -> dict[str, list[float]]:
    model, data = default_model(Settings().home, "demo")
    live = LiveModel.from_artifact_dir(model)
    txns = [t for chunk in read_events(data / "transactions.parquet", Transaction) for t in chunk]
    users = [p for chunk in read_events(data / "profiles.parquet", UserProfile) for p in chunk]
    scorer = InProcessScorer.from_artifact(model, threads=1)
    ids = live.profile_ids(users)
    embeddings = await scorer.embed_users(ids)
    cached = {u.user_id: CachedProfile(r, e, live.model_version, 0)
              for u, r, e in zip(users, ids, embeddings, strict=True)}  # fmt: skip
    engines = {"thread": ScoringEngine(live, scorer, 0.5),
               "inline": ScoringEngine(live, scorer, 0.5, inline_max=batch)}
    states: dict = {}
    for i in range(0, WARM_EVENTS, 512):
        chunk = txns[i : i + 512]
        await engines["thread"].score(chunk, states, cached)
        await engines["thread"].refresh({t.user_id: states[t.user_id] for t in chunk}, cached)
    states = {user: state.to_bytes() for user, state in states.items()}  # as the worker's table holds them
    parts = ("score", "refresh")
    out: dict[str, list[float]] = {f"{mode}_{part}_ms": [] for mode in engines for part in parts}
    at = WARM_EVENTS
    for _ in range(rounds):
        for mode, engine in engines.items():
            score, refresh = [], []
            for _ in range(batches):
                chunk = txns[at : at + batch]
                at += batch
                started = time.perf_counter()
                await engine.score(chunk, states, cached)
                score.append(time.perf_counter() - started)
                touched = {t.user_id: states[t.user_id] for t in chunk}
                started = time.perf_counter()
                await engine.refresh(touched, cached)
                refresh.append(time.perf_counter() - started)
                states.update({user: state.to_bytes() for user, state in touched.items()})
            out[f"{mode}_score_ms"].append(round(1e3 * statistics.median(score), 3))
            out[f"{mode}_refresh_ms"].append(round(1e3 * statistics.median(refresh), 3))
    await scorer.close()
    return out


@click.command()
@click.option("--batch", default=10, show_default=True, help="Events a batch.")
@click.option("--batches", default=150, show_default=True, help="Batches a round and mode.")
@click.option("--rounds", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(batch: int, batches: int, rounds: int, as_json: bool) -> None:
    result = {"batch": batch, **asyncio.run(measure(batch, batches, rounds))}
    emit(result, as_json)


if __name__ == "__main__":
    main()
