"""One model under test: its artefact, its scorer, the engine the live worker uses, and its run state.

The backtest builds exactly what `stream.worker.runtime.build_worker` builds — `LiveModel` +
`InProcessScorer.from_artifact` (or a `TritonScorer`) + `ScoringEngine` — so there is one scoring path
for live and replay. Only the `LiveModel` is wrapped (`TokenTap`) to read the tokens the engine made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stream.backtest.config import ModelSpec
from stream.backtest.drift import TokenCounts, TokenTap
from stream.engine import CachedProfile, ScoringEngine
from stream.errors import PantherError
from stream.live_model import LiveModel
from stream.scoring import InProcessScorer, Scorer
from stream.settings import Settings

if TYPE_CHECKING:
    from models.fraud.state import UserState


@dataclass
class ModelRun:
    spec: ModelSpec
    live: LiveModel
    tap: TokenTap
    scorer: Scorer
    engine: ScoringEngine
    tokens: TokenCounts
    states: dict[str, UserState] = field(default_factory=dict)  # of the partition being replayed
    profiles: dict[str, CachedProfile | None] = field(default_factory=dict)
    batch_ms: list[float] = field(default_factory=list)  # wall time of each engine call
    batch_sizes: list[int] = field(default_factory=list)
    embed_s: float = 0.0
    scored: int = 0
    warm: int = 0
    duplicates: int = 0
    first_ms: int | None = None  # event times of the first and last reported event
    last_ms: int | None = None

    @property
    def label(self) -> str:
        return self.spec.label

    def reset_partition(self) -> None:
        """A partition's users are done once it is replayed: drop their state (bounded memory)."""
        self.states = {}
        self.profiles = {}

    def note_reported(self, event_ms: int) -> None:
        self.first_ms = event_ms if self.first_ms is None else min(self.first_ms, event_ms)
        self.last_ms = event_ms if self.last_ms is None else max(self.last_ms, event_ms)


async def open_model(spec: ModelSpec, settings: Settings, scorer_kind: str, threshold: float) -> ModelRun:
    live = LiveModel.from_artifact_dir(spec.path)
    scorer: Any
    if scorer_kind == "triton":
        scorer = await _triton(settings, live)
    else:
        try:
            scorer = InProcessScorer.from_settings(spec.path, settings)
        except (OSError, ValueError, KeyError) as exc:
            raise PantherError(f"--model {spec.path}: cannot load the artefact: {exc}") from None
    tap = TokenTap(live)
    engine = ScoringEngine(tap, scorer, threshold,  # type: ignore[arg-type]  # TokenTap quacks like LiveModel
                           retention_ms=settings.state_retention_ms)
    return ModelRun(spec, live, tap, scorer, engine, TokenCounts(live.tokenizer.vocab_size))


async def _triton(settings: Settings, live: LiveModel) -> Any:
    from stream.scoring import ScorerUnavailable, TritonScorer
    from stream.triton_client import TritonClient

    client = TritonClient.from_settings(settings)
    try:
        scorer = await TritonScorer.connect(client=client)
    except ScorerUnavailable as exc:
        await client.close()
        raise PantherError(f"--scorer triton: {exc} (start it with `panther triton start`)") from None
    if (scorer.model_version, scorer.head_sha256) != (live.model_version, live.head_sha256):
        await scorer.close()
        raise PantherError(
            f"Triton serves model {scorer.model_version} (fraud head {scorer.head_sha256[:12] or 'none'})"
            f" but --model is {live.model_version} (fraud head {live.head_sha256[:12]}): export that"
            " artefact (panther export) or pass the served one"
        )
    return scorer
