"""Train several model configs and the count baselines on the same data, evaluate all the same way.

This is what keeps comparisons honest: one `PreparedData` (same training sequences, same evaluation
rows, same full-ranking metrics), one `TrainConfig` (same epochs, batch, optimizer, seed) for every
neural model; popularity and first-order Markov are fit on the same training sequences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models.baselines import MarkovBaseline, PopularityBaseline, evaluate_baseline
from models.loaders import UserFeatures
from models.panther import PantherConfig, PantherModel
from models.training.evaluation import EvalData, evaluate_next_token
from models.training.runtime import resolve_device, seed_everything
from models.training.trainer import TrainConfig, train_next_token

if TYPE_CHECKING:
    from models.sequences import Sequences


@dataclass(frozen=True)
class PreparedData:
    """Everything a comparison needs; `train`, `features` and the eval sets share one user-row space."""

    vocab_size: int
    train: Sequences
    features: UserFeatures
    test: EvalData
    validation: EvalData | None = None
    # the same test rows under other candidate sets (e.g. "all_items" beside a seen-filtered `test`)
    other_tests: dict[str, EvalData] = field(default_factory=dict)


def n_parameters(model: PantherModel) -> int:
    return sum(p.numel() for p in model.parameters())


def train_and_evaluate(
    config: PantherConfig, data: PreparedData, train_config: TrainConfig
) -> tuple[PantherModel, dict[str, Any]]:
    """Seeded init → training → full-ranking test metrics; → (trained model, JSON-able report)."""
    seed_everything(train_config.seed)
    model = PantherModel(config)
    result = train_next_token(model, data.train, data.features, train_config, data.validation)
    start = time.perf_counter()

    def evaluate(test: EvalData) -> dict[str, Any]:
        return evaluate_next_token(
            model,
            test,
            train_config.device,
            train_config.eval_batch_size,
            progress=train_config.progress,
            bf16=train_config.bf16,
        )

    metrics = evaluate(data.test)
    last = result.history[-1] if result.history else {}
    report = {
        "metrics": metrics,
        "metrics_other": {name: evaluate(test) for name, test in data.other_tests.items()},
        "parameters": n_parameters(model),
        "train_wall_s": round(result.wall_s, 1),
        "eval_wall_s": round(time.perf_counter() - start, 1),
        "epochs_run": len(result.history),
        "steps": result.steps,
        "final_train_loss": last.get("loss"),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "config": config.to_dict(),
    }
    return model, report


def evaluate_baselines(data: PreparedData) -> dict[str, dict[str, Any]]:
    """Popularity and first-order Markov, fit on the training sequences, on the same test rows."""
    out = {}
    for name, baseline in (
        ("popularity", PopularityBaseline.fit(data.train, data.vocab_size)),
        ("markov", MarkovBaseline.fit(data.train, data.vocab_size)),
    ):
        start = time.perf_counter()

        def evaluate(test: EvalData, scorer: Any = baseline) -> dict[str, Any]:
            return evaluate_baseline(scorer, test.eval_set, data.vocab_size, seen_window=test.seen_window)

        out[name] = {
            "metrics": evaluate(data.test),
            "metrics_other": {other: evaluate(test) for other, test in data.other_tests.items()},
            "eval_wall_s": round(time.perf_counter() - start, 1),
        }
    return out


def compare_models(
    configs: dict[str, PantherConfig], data: PreparedData, train_config: TrainConfig, baselines: bool = True
) -> tuple[dict[str, Any], dict[str, PantherModel]]:
    """name → report for every config (+ "popularity", "markov"); also the trained models by name."""
    reports: dict[str, Any] = {}
    trained: dict[str, PantherModel] = {}
    for name, config in configs.items():
        model, reports[name] = train_and_evaluate(config, data, train_config)
        trained[name] = model.cpu()
    if baselines:
        reports |= evaluate_baselines(data)
    return reports, trained


def summary_table(
    reports: dict[str, Any],
    keys: tuple[str, ...] = ("HR@1", "HR@5", "HR@10", "NDCG@10"),
    protocol: str | None = None,
) -> dict[str, Any]:
    """name → just the headline metrics (rounded), for logs and JSON summaries.

    `protocol` names one of `PreparedData.other_tests` instead of the main test set.
    """

    def metrics(report: dict[str, Any]) -> dict[str, Any]:
        return report["metrics"] if protocol is None else report["metrics_other"][protocol]

    return {
        name: {k: (round(v, 4) if isinstance(v := metrics(report).get(k), float) else v) for k in keys}
        for name, report in reports.items()
    }


def device_name(device: str) -> str:
    return str(resolve_device(device))
