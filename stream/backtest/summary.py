"""The numbers of a backtest, per model: volume, alerts, score distribution, drift, speed — and fraud
metrics when the replayed events carry labels (`is_fraud`).

Fraud metrics are `models.fraud.metrics` (the offline evaluation's own functions: recall@top-k% with
ties split evenly, PR-AUC, ROC-AUC, per-scenario recall), computed on the labelled events only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.fraud.metrics import fraud_metrics, recall_at_threshold, threshold_for_rate
from stream.backtest.models import ModelRun
from stream.backtest.runner import RunResult
from stream.settings import Settings

DAY_MS = 86_400_000
QUANTILES = (0.5, 0.9, 0.99, 0.999)


def thresholds(result: RunResult, settings: Settings) -> dict[str, float]:
    """The alert threshold per model: --threshold, or the cut that alerts on --alert-rate of its scores."""
    config = result.config
    out: dict[str, float] = {}
    for run in result.runs:
        if config.alert_rate is not None:
            scores = result.sink.columns[run.label].arrays()["scores"]
            out[run.label] = threshold_for_rate(scores, config.alert_rate * 100) if len(scores) else 1.0
        else:
            out[run.label] = config.threshold if config.threshold is not None else settings.alert_threshold
    return out


def scenario_names(result: RunResult, codes: np.ndarray) -> np.ndarray:
    names = np.asarray([*result.sink.scenario_names, None], dtype=object)  # code −1 → None
    return names[codes]


def model_summary(result: RunResult, run: ModelRun, threshold: float) -> dict[str, Any]:
    arrays = result.sink.columns[run.label].arrays()
    scores, labels, times = arrays["scores"], arrays["labels"], arrays["times"]
    alerted = scores >= threshold
    days = (times // DAY_MS).astype(np.int64)
    alert_days, alert_counts = np.unique(days[alerted], return_counts=True)
    event_days, event_counts = np.unique(days, return_counts=True)
    out: dict[str, Any] = {
        "model_dir": str(run.spec.path),
        "model_version": run.live.model_version,
        "scored": run.scored,
        "warm_up": run.warm,
        "duplicates": run.duplicates,
        "first_event": _iso(run.first_ms),
        "last_event": _iso(run.last_ms),
        "threshold": threshold,
        "alerts": int(alerted.sum()),
        "alert_rate": float(alerted.mean()) if len(scores) else 0.0,
        "alerts_per_day": {_day(d): int(c) for d, c in zip(alert_days, alert_counts, strict=True)},
        "events_per_day": {_day(d): int(c) for d, c in zip(event_days, event_counts, strict=True)},
        "score_distribution": _distribution(scores),
        "drift": run.tokens.report(run.live),
        "speed": _speed(run),
    }
    labelled = labels >= 0
    out["labelled"] = int(labelled.sum())
    if labelled.any():
        truth = labels[labelled].astype(bool)
        metrics = fraud_metrics(
            scores[labelled],
            truth,
            scenario_names(result, arrays["scenarios"][labelled]),
            ks=result.config.ks,
        )
        metrics["at_threshold"] = recall_at_threshold(scores[labelled], truth, threshold)
        out["fraud"] = metrics
    return out


def build_summary(result: RunResult, settings: Settings, cuts: dict[str, float]) -> dict[str, Any]:
    config, stats = result.config, result.stats
    tr = config.time_range
    events = stats.warm + stats.in_range
    return {
        "topic": config.topic,
        "range": {
            "start": _iso(tr.start_ms),
            "end": _iso(tr.end_ms),
            "warm_up_from": _iso(tr.warm_start_ms),
            "lookback_ms": tr.lookback_ms,
            "lateness_ms": tr.lateness_ms,
            "ends_inclusive": True,
            "time": "kafka record timestamp",
        },
        "scorer": config.scorer,
        "alert_rule": {
            "threshold": config.threshold,
            "alert_rate": config.alert_rate,
            "default_threshold": settings.alert_threshold,
        },
        "batch_size": config.batch_size,
        "read": {
            "records": stats.records,
            "outside_range": stats.outside,
            "warm_up": stats.warm,
            "in_range": stats.in_range,
            "dead_letters": stats.dead_count,
            "payload_time_differs": stats.payload_time_differs,
            "partitions": stats.partitions,
            "profiles": result.profiles_loaded,
            "profiles_malformed": result.profiles_malformed,
        },
        "run": {
            "wall_s": round(result.wall_s, 3),
            "events_per_s": round(events / result.wall_s, 1) if result.wall_s else 0.0,
            "read_s": round(stats.read_s, 3),
        },
        "models": {run.label: model_summary(result, run, cuts[run.label]) for run in result.runs},
        "dead_letters": stats.dead,
    }


def _distribution(scores: np.ndarray) -> dict[str, Any]:
    if not len(scores):
        return {"n": 0}
    counts, _ = np.histogram(scores, bins=20, range=(0.0, 1.0))
    return {
        "n": len(scores),
        "mean": float(scores.mean()),
        **{f"p{q * 100:g}": float(np.quantile(scores, q)) for q in QUANTILES},
        "max": float(scores.max()),
        "histogram_20_bins": counts.astype(int).tolist(),
    }


def _speed(run: ModelRun) -> dict[str, Any]:
    ms = np.asarray(run.batch_ms, dtype=np.float64)
    events = int(np.sum(run.batch_sizes))
    busy_s = float(ms.sum()) / 1000
    return {
        "batches": len(ms),
        "events": events,
        "scoring_s": round(busy_s, 3),
        "events_per_s": round(events / busy_s, 1) if busy_s else 0.0,
        "batch_ms_p50": _q(ms, 0.5),
        "batch_ms_p95": _q(ms, 0.95),
        "batch_ms_p99": _q(ms, 0.99),
        "embed_profiles_s": round(run.embed_s, 3),
    }


def _q(values: np.ndarray, q: float) -> float:
    return round(float(np.quantile(values, q)), 3) if len(values) else math.nan


def _iso(ms: int | None) -> str | None:
    return (
        None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    )


def _day(day: int) -> str:
    return datetime.fromtimestamp(int(day) * 86_400, tz=UTC).date().isoformat()
