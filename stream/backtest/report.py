"""Writes a backtest's DIR: scores.parquet, report.json and a self-contained report.html.

report.html has no external resources (plots are inline base64 PNGs, styles inline), so it opens from a
file share, an e-mail attachment or a CI artifact alike. Every table and plot has one column / series
per model: several `--model`s make it an A/B comparison.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from stream.backtest import plots
from stream.backtest.runner import RunResult
from stream.backtest.summary import build_summary, thresholds
from stream.settings import Settings

LISTED_DEAD_IN_HTML = 100
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}figure{margin:1.5em 0}
img{max-width:100%}code{background:#f3f3f3;padding:0 3px}.note{color:#666}"""


def write_report(result: RunResult, settings: Settings) -> dict[str, Any]:
    """Finishes scores.parquet, writes report.json and report.html; returns report.json's content."""
    cuts = thresholds(result, settings)
    result.sink.finish(cuts)
    summary = build_summary(result, settings, cuts)
    arrays = {run.label: result.sink.columns[run.label].arrays() for run in result.runs}
    figures = _figures(result, summary, arrays, cuts)
    summary["plots"] = list(figures)
    summary["files"] = {
        "scores": "scores.parquet",
        "report_json": "report.json",
        "report_html": "report.html",
    }
    out = result.config.report_dir
    (out / "report.json").write_text(json.dumps(_json_safe(summary), indent=2, sort_keys=True), "utf-8")
    (out / "report.html").write_text(render_html(summary, figures), "utf-8")
    return summary


def _figures(
    result: RunResult, summary: dict[str, Any], arrays: dict[str, Any], cuts: dict[str, float]
) -> dict[str, tuple[str, str]]:
    """plot id → (caption, base64 PNG)."""
    models = summary["models"]
    # PR curve and recall@k need both classes among the labelled events (fraud starts late in a history).
    labelled = any(0 < m.get("fraud", {}).get("fraud", 0) < m["labelled"] for m in models.values())
    out: dict[str, tuple[str, str]] = {}
    if labelled:
        out["pr_curve"] = ("Precision–recall curve (labelled events)", plots.pr_curve(arrays))
        out["recall_at_k"] = ("Recall at top-k% of scores", plots.recall_at_k(arrays, result.config.ks))
    out["score_histograms"] = ("Score distribution by class", plots.score_histograms(arrays))
    out["alerts_per_day"] = ("Alerts per day", plots.alerts_per_day(arrays, cuts))
    if labelled and any(m.get("fraud", {}).get("per_scenario") for m in models.values()):
        out["per_scenario_recall"] = (
            "Recall per fraud scenario at top 1%",
            plots.per_scenario_recall(models, "1%"),
        )
    if any(m["drift"].get("available") for m in models.values()):
        out["drift"] = ("Drift vs training: UNK rate and token PSI", plots.drift(models))
    batch_ms = {run.label: run.batch_ms for run in result.runs}
    rates = {label: m["speed"]["events_per_s"] for label, m in models.items()}
    out["speed"] = ("Latency and throughput of the run", plots.speed(batch_ms, rates))
    return out


def render_html(summary: dict[str, Any], figures: dict[str, tuple[str, str]]) -> str:
    models = summary["models"]
    labels = list(models)
    rng = summary["range"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>PANTHER backtest — {_e(summary['topic'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Backtest of <code>{_e(summary['topic'])}</code></h1>",
        f"<p>Scored events stamped <b>{_e(rng['start'])}</b> to <b>{_e(rng['end'])}</b> "
        f"(both included, Kafka record time); user state warmed from {_e(rng['warm_up_from'])}. "
        f"Scorer: {_e(summary['scorer'])}, "
        f"micro-batches of {summary['batch_size']}. Models: {', '.join(_e(x) for x in labels)}.</p>",
        "<h2>Overview</h2>",
        _table(
            labels,
            [
                ("model version", [m["model_version"] for m in models.values()]),
                ("events scored", [m["scored"] for m in models.values()]),
                ("warm-up events (not reported)", [m["warm_up"] for m in models.values()]),
                ("duplicates skipped", [m["duplicates"] for m in models.values()]),
                ("first / last event", [f"{m['first_event']} / {m['last_event']}" for m in models.values()]),
                ("alert threshold", [m["threshold"] for m in models.values()]),
                ("alerts", [m["alerts"] for m in models.values()]),
                ("alert rate", [m["alert_rate"] for m in models.values()]),
                ("score p50 / p99", [_pair(m["score_distribution"], "p50", "p99") for m in models.values()]),
                ("labelled events", [m["labelled"] for m in models.values()]),
            ],
        ),
    ]
    fraud = {label: m["fraud"] for label, m in models.items() if "fraud" in m}
    if fraud:
        keys = [k for k in next(iter(fraud.values())) if k.startswith(("recall@", "precision@"))]
        rows = [
            (k, [fraud[x].get(k) if x in fraud else None for x in labels])
            for k in ["fraud", *keys, "pr_auc", "roc_auc"]
        ]
        rows += [
            (f"{k} at threshold", [fraud[x]["at_threshold"][k] if x in fraud else None for x in labels])
            for k in ("recall", "precision", "alert_rate")
        ]
        parts += ["<h2>Fraud metrics (labelled events)</h2>", _table(labels, rows)]
        scenarios = sorted({n for f in fraud.values() for n in f.get("per_scenario", {})})
        if scenarios:
            rows = [
                (
                    f"{n}: {k}",
                    [
                        fraud[x].get("per_scenario", {}).get(n, {}).get(k) if x in fraud else None
                        for x in labels
                    ],
                )
                for n in scenarios
                for k in ("fraud", "recall@1%", "recall@10%")
            ]
            parts += ["<h3>Per scenario</h3>", _table(labels, rows)]
    else:
        parts.append(
            "<p class='note'>No labels in this range (<code>is_fraud</code> absent): the report "
            "shows alert volume, score distribution and drift only.</p>"
        )
    drift_rows = [
        (k, [models[x]["drift"].get(k) for x in labels])
        for k in ("unk_rate", "train_unk_rate", "psi", "js_divergence", "tokens_seen", "vocab_size")
    ]
    parts += ["<h2>Drift vs training</h2>", _table(labels, drift_rows)]
    for label in labels:
        d = models[label]["drift"]
        if not d.get("available"):
            parts.append(f"<p class='note'>{_e(label)}: drift not available — {_e(d.get('reason', ''))}</p>")
    speed_keys = (
        "events",
        "scoring_s",
        "events_per_s",
        "batch_ms_p50",
        "batch_ms_p95",
        "batch_ms_p99",
        "embed_profiles_s",
    )
    run = summary["run"]
    parts += [
        "<h2>Run</h2>",
        f"<p>{run['wall_s']} s wall, {run['events_per_s']} events/s end to end "
        f"(warm-up included), {run['read_s']} s waiting on Kafka.</p>",
        _table(labels, [(k, [models[x]["speed"][k] for x in labels]) for k in speed_keys]),
        _read_table(summary["read"]),
        "<h2>Plots</h2>",
    ]
    for plot_id, (caption, data) in figures.items():
        parts.append(
            f"<figure id='{plot_id}'><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts += _dead_letters(summary["dead_letters"], summary["read"]["dead_letters"])
    parts.append("</body></html>")
    return "\n".join(parts)


def _read_table(read: dict[str, Any]) -> str:
    keys = (
        "records",
        "warm_up",
        "in_range",
        "outside_range",
        "dead_letters",
        "payload_time_differs",
        "profiles",
        "profiles_malformed",
    )
    return _table(["count"], [(k, [read[k]]) for k in keys])


def _dead_letters(letters: list[dict[str, Any]], total: int) -> list[str]:
    if not total:
        return ["<h2>Dead letters</h2><p>None: every record in the range decoded.</p>"]
    rows = "".join(
        f"<tr><td>{d['partition']}</td><td>{d['offset']}</td><td>{_e(d['phase'])}</td>"
        f"<td style='text-align:left'>{_e(d['reason'])}</td></tr>"
        for d in letters[:LISTED_DEAD_IN_HTML]
    )
    return [
        f"<h2>Dead letters ({total})</h2><p class='note'>Malformed records, not scored (all are in "
        "report.json up to 1,000, raw bytes included).</p>"
        f"<table><tr><th>partition</th><th>offset</th><th>phase</th><th>reason</th></tr>{rows}</table>"
    ]


def _table(labels: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    head = "".join(f"<th>{_e(x)}</th>" for x in labels)
    body = "".join(
        f"<tr><td>{_e(name)}</td>{''.join(f'<td>{_fmt(v)}</td>' for v in values)}</tr>"
        for name, values in rows
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return _e(str(value))


def _pair(d: dict[str, Any], a: str, b: str) -> str:
    return f"{d[a]:.3f} / {d[b]:.3f}" if a in d else "—"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json_safe(value: Any) -> Any:
    """NaN/inf → None, so report.json is strict JSON (browsers and jq reject NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def read_report(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "report.json").read_text("utf-8"))
