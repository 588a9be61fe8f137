"""The report's figures, one function each, every model on the same axes (A/B): PNG bytes, base64-encoded.

matplotlib's object API (`Figure` + the Agg canvas), not pyplot: no global figure state and no GUI
backend, so it runs headless and in threads.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from models.fraud.metrics import alert_count, caught_at_top

Arrays = Mapping[str, Mapping[str, np.ndarray]]  # model label → {"scores", "labels", "times", …}
SIZE = (7.0, 3.6)
DAY_MS = 86_400_000


def png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def _labelled(a: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    mask = a["labels"] >= 0
    return a["scores"][mask], a["labels"][mask].astype(bool)


def pr_curve(arrays: Arrays) -> str:
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure("Precision–recall")
    for label, a in arrays.items():
        scores, truth = _labelled(a)
        if truth.any() and not truth.all():
            precision, recall, _ = precision_recall_curve(truth, scores)
            ax.plot(recall, precision, label=label, drawstyle="steps-post")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper right")
    return png(fig)


def recall_at_k(arrays: Arrays, ks: Sequence[float]) -> str:
    fig, ax = _figure("Recall at top-k% of scores")
    width = 0.8 / max(len(arrays), 1)
    x = np.arange(len(ks))
    for j, (label, a) in enumerate(arrays.items()):
        scores, truth = _labelled(a)
        n_fraud = max(int(truth.sum()), 1)
        values = [caught_at_top(scores, truth, alert_count(len(scores), k)) / n_fraud for k in ks]
        ax.bar(x + j * width, values, width, label=label)
    ax.set_xticks(x + width * (len(arrays) - 1) / 2, [f"{k:g}%" for k in ks])
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.legend()
    return png(fig)


def score_histograms(arrays: Arrays) -> str:
    """One panel per model: legit vs fraud (or all scores, when unlabelled), log counts."""
    fig = Figure(figsize=(SIZE[0], 2.4 * len(arrays) + 0.6))
    bins = np.linspace(0, 1, 41)
    for i, (label, a) in enumerate(arrays.items()):
        ax = fig.add_subplot(len(arrays), 1, i + 1)
        scores, labels = a["scores"], a["labels"]
        if (labels >= 0).any():
            ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="legit", log=True)
            ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="fraud", log=True)
            if (labels < 0).any():
                ax.hist(scores[labels < 0], bins=bins, alpha=0.6, label="unlabelled", log=True)
        else:
            ax.hist(scores, bins=bins, alpha=0.8, label="all (unlabelled)", log=True)
        ax.set_title(f"Score distribution — {label}")
        ax.set_ylabel("transactions")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.axes[-1].set_xlabel("score")
    fig.tight_layout()
    return png(fig)


def alerts_per_day(arrays: Arrays, thresholds: Mapping[str, float]) -> str:
    fig, ax = _figure("Alerts per day (UTC)")
    all_days = np.unique(np.concatenate([a["times"] // DAY_MS for a in arrays.values()] or [np.zeros(0)]))
    width = 0.8 / max(len(arrays), 1)
    x = np.arange(len(all_days))
    for j, (label, a) in enumerate(arrays.items()):
        days = a["times"][a["scores"] >= thresholds[label]] // DAY_MS
        counts = [int((days == d).sum()) for d in all_days]
        ax.bar(x + j * width, counts, width, label=f"{label} (≥ {thresholds[label]:.3g})")
    labels = [np.datetime_as_string(np.datetime64(int(d), "D")) for d in all_days]
    step = max(1, len(labels) // 12)
    ax.set_xticks(x[::step] + width * (len(arrays) - 1) / 2, labels[::step], rotation=45, ha="right")
    ax.set_ylabel("alerts")
    ax.legend()
    return png(fig)


def per_scenario_recall(summaries: Mapping[str, Mapping[str, Any]], k: str) -> str:
    fig, ax = _figure(f"Recall per fraud scenario at top {k}")
    scenarios = sorted(
        {name for s in summaries.values() for name in s.get("fraud", {}).get("per_scenario", {})}
    )
    width = 0.8 / max(len(summaries), 1)
    x = np.arange(len(scenarios))
    for j, (label, s) in enumerate(summaries.items()):
        per = s.get("fraud", {}).get("per_scenario", {})
        ax.bar(x + j * width, [per.get(n, {}).get(f"recall@{k}", 0.0) for n in scenarios], width, label=label)
    ax.set_xticks(x + width * (len(summaries) - 1) / 2, scenarios, rotation=20, ha="right")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1.02)
    ax.legend()
    return png(fig)


def speed(batch_ms: Mapping[str, Sequence[float]], events_per_s: Mapping[str, float]) -> str:
    """Left: latency of each engine call (micro-batch); right: events scored per second of scoring."""
    fig = Figure(figsize=(SIZE[0] * 1.3, SIZE[1]))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label, values in batch_ms.items():
        if len(values):
            left.hist(values, bins=30, alpha=0.6, label=label)
    left.set_title("Micro-batch latency")
    left.set_xlabel("ms per engine call")
    left.set_ylabel("batches")
    left.legend()
    labels = list(events_per_s)
    right.bar(labels, [events_per_s[label] for label in labels], color=[f"C{i}" for i in range(len(labels))])
    right.set_title("Throughput")
    right.set_ylabel("events / s of scoring")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


def drift(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """UNK rate of the range vs training, and PSI of the token distribution, per model."""
    fig = Figure(figsize=(SIZE[0] * 1.3, SIZE[1]))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    labels = [label for label, s in summaries.items() if s["drift"].get("available")]
    x = np.arange(len(labels))
    left.bar(
        x - 0.2, [summaries[label]["drift"]["train_unk_rate"] for label in labels], 0.4, label="training"
    )
    left.bar(x + 0.2, [summaries[label]["drift"]["unk_rate"] for label in labels], 0.4, label="backtest")
    left.set_xticks(x, labels)
    left.set_title("UNK rate (tokens outside the vocabulary)")
    left.legend()
    right.bar(labels, [summaries[label]["drift"]["psi"] for label in labels], color="C2")
    right.axhline(0.1, ls="--", c="orange", lw=1, label="0.1 moderate")
    right.axhline(0.25, ls="--", c="red", lw=1, label="0.25 large")
    right.set_title("Token distribution shift (PSI)")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)
