"""Shared test helpers: a tiny trained model artefact (and a distinct copy of it), and the in-process
engine run live must equal.

Import the fixture where it is needed (`from tests.stream.model_fixtures import tiny_model`). It is
session-scoped: one ~30 s training (simulate → pretrain → fit-fraud with tiny overrides) serves every
test module that imports it in the same pytest session.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from stream.engine import CachedProfile, ScoringEngine
from stream.events import Transaction, UserProfile
from stream.files import read_events
from stream.live_model import LiveModel
from stream.scoring import InProcessScorer

TINY_SIMULATION = {"users": 150, "days": 14, "seed": 11, "fraud_rate": 0.03}


def train_tiny_model(root: Path) -> tuple[Path, Path]:
    """(model dir, data dir): a small simulated dataset under root/data and a model trained on it."""
    from models.fraud.api import fit_fraud
    from models.training.pretrain import pretrain_transactions
    from stream.simulator import SimulatorConfig, simulate, write_dataset

    txns, profiles = simulate(SimulatorConfig(**TINY_SIMULATION))
    paths = write_dataset(txns, profiles, root / "data")
    model = root / "model"
    pretrain_transactions(
        paths["transactions"], paths["profiles"], model, epochs=1, device="cpu", max_len=16,
        ablations=False, include_first_token=False, progress=False,
        model_overrides={"d_model": 16, "n_layers": 1, "n_heads": 1},
    )  # fmt: skip
    fit_fraud(model, paths["transactions"], paths["profiles"], epochs=1, device="cpu")
    return model, root / "data"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model dir, data dir) — trained once per session."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def perturbed_copy(model: Path, out: Path, seed: int = 1, scale: float = 0.3) -> Path:
    """A second artefact without a second training: `model` with its encoder and fraud-head weights
    jittered, so it has its own model_version and head sha256 and scores otherwise. A/B tests need two
    artefacts that differ, or a swap of their results cannot be seen."""
    import torch

    from models.artifact import load_artifact, save_artifact
    from models.fraud.head_io import load_head, save_head

    shutil.copytree(model, out)
    art = load_artifact(out)
    bundle = load_head(art)
    generator = torch.Generator().manual_seed(seed)

    def jitter(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point() or t.dim() < 2:  # matrices and embeddings; norms and buffers kept
            return t
        return t + scale * (t.std() + 1e-3) * torch.randn(t.shape, generator=generator, dtype=t.dtype)

    state = {name: jitter(t) for name, t in art.state_dict.items()}
    save_artifact(out, art.config["model"], art.tokenizer, art.profile_schema, state, art.metrics,
                  art.extra_weights, training_data_hash=art.config.get("training_data_hash"))  # fmt: skip
    with torch.no_grad():
        for param in bundle.head.parameters():
            param.copy_(jitter(param))
    # without the residual trees: the shared trees would make the two score nearly alike
    save_head(out, bundle.head, bundle.schema, bundle.deviation, bundle.temperature,
              bundle.info.get("summary"), bundle.encoder_state)  # fmt: skip
    return out


def read_profiles(path: Path) -> list[UserProfile]:
    return [p for chunk in read_events(path, UserProfile) for p in chunk]


def engine_scores(
    model: Path,
    txns: Iterable[Transaction],
    profiles: list[UserProfile] | None = None,
    batch: int = 64,
    reference: bool = False,
    in_place: bool = False,
) -> Mapping[str, float]:
    """txn_id → score of the same events through the same engine, in-process, no Kafka.

    Events are scored in the given order, `batch` at a time, with the touched users' cached encoder
    state refreshed after each batch (as the worker does); every user with a profile gets its cached
    embedding first, as the worker's profile agent (and the backtest) would have it. `reference`:
    the full-window path instead; `in_place`: states updated without the copy-on-write (the backtest).
    """
    live = LiveModel.from_artifact_dir(model)
    scorer = InProcessScorer.from_artifact(model, threads=1)
    engine = ScoringEngine(live, scorer, 0.5, reference=reference)
    events = list(txns)

    async def run() -> dict[str, float]:
        cached: dict[str, CachedProfile | None] = {}
        if profiles:
            ids = live.profile_ids(profiles)
            embeddings = await scorer.embed_users(ids)
            for profile, row, embedding in zip(profiles, ids, embeddings, strict=True):
                cached[profile.user_id] = CachedProfile(row, embedding, live.model_version, 0)
        states: dict = {}
        scores: dict[str, float] = {}
        for i in range(0, len(events), batch):
            chunk = events[i : i + batch]
            for outcome in await engine.score(chunk, states, cached, in_place=in_place):
                if outcome.score is not None:
                    scores[outcome.txn.txn_id] = outcome.score.score
            await engine.refresh({t.user_id: states[t.user_id] for t in chunk}, cached)
        await scorer.close()
        return scores

    return asyncio.run(run())
