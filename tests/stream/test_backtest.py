"""`panther backtest` against a real broker: exact range boundaries, warm-up, dead letters, determinism,
parity with the engine, the report (every plot decodes as a PNG), A/B, labels optional, CLI errors.

One tiny model (tests/stream/model_fixtures.py) and one produced topic serve the module; the A/B test
pits it against a jittered copy (another model_version, other scores), so a swap of results shows. The history
is produced in event-time order with two extra transactions stamped 1 ms outside [T0, T1] and two
malformed records (one in range, one before the warm-up), so every boundary is exercised.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from models.fraud.metrics import fraud_metrics
from stream.backtest import BacktestConfig, ModelSpec, TimeRange, run_backtest
from stream.backtest.config import epoch_ms
from stream.cli import main
from stream.events import Transaction
from stream.files import read_events
from stream.live_model import LiveModel
from stream.produce import make_producer, produce_file
from stream.settings import Settings
from stream.topics import create_topics
from tests.stream.model_fixtures import engine_scores, perturbed_copy, read_profiles, tiny_model

__all__ = ["tiny_model"]  # the fixture, imported for pytest
pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPECTED_PLOTS = {
    "pr_curve",
    "recall_at_k",
    "score_histograms",
    "alerts_per_day",
    "per_scenario_recall",
    "drift",
    "speed",
}


class History:
    """The produced topic and what a backtest of [t0, t1] with `lookback_ms` must report."""

    def __init__(self, settings: Settings, path: Path, t0: int, t1: int, lookback_ms: int) -> None:
        self.settings, self.path, self.t0, self.t1, self.lookback_ms = settings, path, t0, t1, lookback_ms
        self.frame = pd.read_parquet(path)
        self.ms = self.frame["timestamp"].map(epoch_ms).to_numpy()

    def ids(self, lo: int, hi: int) -> set[str]:
        return set(self.frame["txn_id"][(self.ms >= lo) & (self.ms <= hi)])


@pytest.fixture(scope="module")
def history(kafka_bootstrap: str, tiny_model, tmp_path_factory: pytest.TempPathFactory) -> History:
    _, data = tiny_model
    run = uuid.uuid4().hex[:8]
    names = {f"topic_{r}": f"bt-{r}-{run}" for r in ("transactions", "profiles", "alerts", "scores", "dlq")}
    # retention.ms=-1: the broker deletes segments whose record timestamps (2026-01) are older than
    # retention, which replayed history is.
    settings = Settings(kafka_bootstrap=kafka_bootstrap, partitions=2, retention_ms=-1, **names)
    create_topics(settings)
    frame = pd.read_parquet(data / "transactions.parquet").sort_values("timestamp", kind="stable")
    ms = frame["timestamp"].map(epoch_ms).to_numpy()
    distinct = np.unique(ms)
    t0, t1 = int(distinct[len(distinct) // 2]), int(distinct[len(distinct) // 2 + 250])
    extras = frame[ms == t0].iloc[:1].copy(), frame[ms == t1].iloc[:1].copy()
    extras[0]["timestamp"] -= timedelta(milliseconds=1)
    extras[1]["timestamp"] += timedelta(milliseconds=1)
    extras[0]["txn_id"], extras[1]["txn_id"] = "edge-before-t0", "edge-after-t1"
    frame = pd.concat([frame, *extras]).sort_values("timestamp", kind="stable").reset_index(drop=True)
    root = tmp_path_factory.mktemp("backtest-history")
    before, after = (
        frame[frame["timestamp"].map(epoch_ms) < t0],
        frame[frame["timestamp"].map(epoch_ms) >= t0],
    )
    frame.to_parquet(root / "all.parquet")
    before.to_parquet(root / "before.parquet")
    after.to_parquet(root / "after.parquet")
    lookback_ms = 2 * 86_400_000
    produce_file(data / "profiles.parquet", settings.topic_profiles, settings, show_progress=False)
    produce_file(root / "before.parquet", settings.topic_transactions, settings, show_progress=False)
    producer = make_producer(settings)
    producer.produce(settings.topic_transactions, key=b"u000001", value=b"{not json", timestamp=t0)
    wrong_key = {"txn_id": "keyed-by-txn-id", "user_id": "u000001", "timestamp": t0, "amount": 5.0,
                 "merchant_id": "m1"}  # fmt: skip
    producer.produce(settings.topic_transactions, key=b"keyed-by-txn-id",
                     value=json.dumps(wrong_key).encode(), timestamp=t0)  # fmt: skip
    producer.produce(
        settings.topic_transactions, key=b"u000001", value=b'{"txn_id": "x"}', timestamp=t0 - lookback_ms - 1
    )
    assert producer.flush(10) == 0
    produce_file(root / "after.parquet", settings.topic_transactions, settings, show_progress=False)
    return History(settings, root / "all.parquet", t0, t1, lookback_ms)


@pytest.fixture(scope="module")
def challenger_model(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second artefact for the A/B test: the tiny model with jittered weights."""
    model, _ = tiny_model
    return perturbed_copy(model, tmp_path_factory.mktemp("challenger") / "model")


def _config(
    history: History, model: Path, out: Path, lookback_ms: int | None = None, **kw: Any
) -> BacktestConfig:
    tr = TimeRange(history.t0, history.t1, history.lookback_ms if lookback_ms is None else lookback_ms)
    return BacktestConfig(
        topic=history.settings.topic_transactions,
        time_range=tr,
        models=(ModelSpec("tiny", model),),
        report_dir=out,
        profiles_topic=history.settings.topic_profiles,
        batch_size=64,
        **kw,
    )


def _scores(out: Path) -> pd.DataFrame:
    return (
        pq.read_table(out / "scores.parquet").to_pandas().sort_values(["model", "txn_id"], ignore_index=True)
    )


def test_range_is_exact_warm_up_is_not_reported_and_runs_are_deterministic(
    history: History, tiny_model, tmp_path: Path
) -> None:
    model, _ = tiny_model
    config = _config(history, model, tmp_path / "a")
    summary = run_backtest(config, history.settings, progress=False)
    scores = _scores(tmp_path / "a")

    expected = history.ids(history.t0, history.t1)
    assert set(scores["txn_id"]) == expected and len(scores) == len(expected)
    first, last = scores["event_time"].min(), scores["event_time"].max()
    assert epoch_ms(first.to_pydatetime()) == history.t0 and epoch_ms(last.to_pydatetime()) == history.t1
    assert "edge-before-t0" not in expected and "edge-after-t1" not in expected
    warm = history.ids(history.t0 - history.lookback_ms, history.t0 - 1)
    assert "edge-before-t0" in warm
    assert summary["read"]["warm_up"] == len(warm) == summary["models"]["tiny"]["warm_up"]
    assert summary["read"]["in_range"] == len(expected)
    # The malformed and the wrongly keyed records stamped T0 are dead letters, as in the live worker; the
    # one before the warm-up is not even read.
    dead = sorted(summary["dead_letters"], key=lambda d: d["errors"][0]["field"])
    assert [d["phase"] for d in dead] == ["score", "score"] and "not valid JSON" in dead[1]["reason"]
    assert "must be its user_id 'u000001'" in dead[0]["reason"] and dead[0]["key"] == "keyed-by-txn-id"
    assert summary["read"]["dead_letters"] == 2 and "keyed-by-txn-id" not in set(scores["txn_id"])

    again = run_backtest(replace(config, report_dir=tmp_path / "b"), history.settings, progress=False)
    repeat = _scores(tmp_path / "b")
    assert repeat["txn_id"].tolist() == scores["txn_id"].tolist()
    assert np.array_equal(repeat["score"].to_numpy(), scores["score"].to_numpy())  # bit for bit
    assert again["models"]["tiny"]["fraud"] == summary["models"]["tiny"]["fraud"]


def test_scores_equal_the_engine_over_the_same_events(history: History, tiny_model, tmp_path: Path) -> None:
    model, data = tiny_model
    config = _config(history, model, tmp_path, lookback_ms=30 * 86_400_000)  # the whole history warms
    summary = run_backtest(config, history.settings, progress=False)
    scores = _scores(tmp_path)
    txns = [txn for chunk in read_events(history.path, Transaction) for txn in chunk]  # produced order
    offline = engine_scores(model, txns, read_profiles(data / "profiles.parquet"), batch=100)
    worst = max(abs(row.score - offline[row.txn_id]) for row in scores.itertuples())
    assert worst <= 1e-5, worst
    assert summary["models"]["tiny"]["warm_up"] == len(history.ids(0, history.t0 - 1))


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, bytes] = {}
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure":
            self._figure = values.get("id")
        if tag == "img" and self._figure:
            src = values.get("src") or ""
            assert src.startswith("data:image/png;base64,"), src[:40]
            self.figures[self._figure] = base64.b64decode(src.split(",", 1)[1], validate=True)


def test_report_has_every_plot_and_compares_models_side_by_side(
    history: History, tiny_model, challenger_model: Path, tmp_path: Path
) -> None:
    from matplotlib.image import imread

    model, _ = tiny_model
    paths = {"champion": model, "challenger": challenger_model}
    versions = {label: LiveModel.from_artifact_dir(path).model_version for label, path in paths.items()}
    assert versions["champion"] != versions["challenger"]
    config = replace(
        _config(history, model, tmp_path),
        alert_rate=0.02,
        models=(ModelSpec("champion", model), ModelSpec("challenger", challenger_model)),
    )
    summary = run_backtest(config, history.settings, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"scores.parquet", "report.json", "report.html"}
    assert json.loads((tmp_path / "report.json").read_text()) is not None  # strict JSON
    assert set(summary["plots"]) == EXPECTED_PLOTS

    parser = _Images()
    page = (tmp_path / "report.html").read_text()
    parser.feed(page)
    assert set(parser.figures) == EXPECTED_PLOTS
    for name, data in parser.figures.items():  # no headless browser offline here: decode every image
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        image = imread(io.BytesIO(data), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100, name

    models = summary["models"]
    assert list(models) == ["champion", "challenger"]
    assert "<th>champion</th><th>challenger</th>" in page
    for m in models.values():  # --alert-rate 2%: each model alerts on its own top 2%
        assert abs(m["alerts"] - 0.02 * m["scored"]) <= 2
        assert m["fraud"]["per_scenario"] and 0 <= m["fraud"]["pr_auc"] <= 1
        assert m["drift"]["available"] and m["drift"]["psi"] >= 0
    table = _scores(tmp_path)
    assert set(table["model"]) == {"champion", "challenger"}
    cut = table.groupby("model")["threshold"].first()
    assert (table["alerted"] == (table["score"] >= table["model"].map(cut))).all()
    _assert_each_result_is_its_own_artefacts(summary, table, paths, versions)

    # The challenger's column is what that artefact scores alone: nothing leaked from the champion.
    alone_config = replace(config, models=(ModelSpec("solo", challenger_model),), report_dir=tmp_path / "b")
    solo = run_backtest(alone_config, history.settings, progress=False)
    alone = _scores(tmp_path / "b")
    challenger = table[table["model"] == "challenger"].reset_index(drop=True)
    assert alone["txn_id"].tolist() == challenger["txn_id"].tolist()
    assert np.array_equal(alone["score"].to_numpy(), challenger["score"].to_numpy())  # bit for bit
    assert solo["models"]["solo"]["model_version"] == versions["challenger"]
    assert solo["models"]["solo"]["fraud"]["pr_auc"] == models["challenger"]["fraud"]["pr_auc"]


def _assert_each_result_is_its_own_artefacts(
    summary: dict[str, Any], table: pd.DataFrame, paths: dict[str, Path], versions: dict[str, str]
) -> None:
    """Rows carry their scorer's model_version, the two score the same events differently, and each
    summary's numbers are those of its own rows (a swap between rows and summary would show)."""
    by_model = {label: rows.reset_index(drop=True) for label, rows in table.groupby("model")}
    for label, rows in by_model.items():
        m = summary["models"][label]
        assert m["model_dir"] == str(paths[label]) and m["model_version"] == versions[label]
        assert set(rows["model_version"]) == {versions[label]}, label
        # The summary reads the sink's float32 copy of the scores: recompute from the same precision.
        scores = rows["score"].to_numpy(np.float32).astype(np.float64)
        assert m["scored"] == len(rows) == m["score_distribution"]["n"]
        assert m["score_distribution"]["mean"] == pytest.approx(scores.mean(), rel=1e-9), label
        assert m["alerts"] == int((scores >= m["threshold"]).sum()), label
        assert rows["is_fraud"].notna().all() and m["labelled"] == len(rows)
        recomputed = fraud_metrics(scores, rows["is_fraud"].to_numpy(dtype=bool))
        for key in ("pr_auc", "roc_auc", "recall@1%", "recall@10%"):
            assert m["fraud"][key] == pytest.approx(recomputed[key], abs=1e-9), (label, key)
    champion, challenger = by_model["champion"], by_model["challenger"]
    assert champion["txn_id"].tolist() == challenger["txn_id"].tolist()  # the same events
    gap = np.abs(champion["score"].to_numpy() - challenger["score"].to_numpy())
    assert np.median(gap) > 1e-3, np.median(gap)  # scored otherwise, nearly everywhere
    means = {label: summary["models"][label]["score_distribution"]["mean"] for label in by_model}
    assert means["champion"] != means["challenger"]  # (their PR-AUC may both be 1: the trees are shared)


def test_without_labels_the_report_shows_volume_distribution_and_drift(
    kafka_bootstrap: str, tiny_model, tmp_path: Path
) -> None:
    model, data = tiny_model
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        partitions=2,
        retention_ms=-1,
        topic_transactions=f"bt-nolabels-{uuid.uuid4().hex[:8]}",
        topic_profiles=f"bt-nolabels-p-{uuid.uuid4().hex[:8]}",
    )
    create_topics(settings)
    frame = (
        pd.read_parquet(data / "transactions.parquet").iloc[:300].drop(columns=["is_fraud", "fraud_scenario"])
    )
    frame.to_parquet(tmp_path / "transactions.parquet")
    produce_file(
        tmp_path / "transactions.parquet", settings.topic_transactions, settings, show_progress=False
    )
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            "--topic",
            settings.topic_transactions,
            "--start",
            frame["timestamp"].min().isoformat(),
            "--end",
            frame["timestamp"].max().isoformat(),
            "--model",
            str(model),
            "--threshold",
            "0.3",
            "--report",
            str(tmp_path / "report"),
            "--profiles-topic",
            "",
            "--json",
        ],
        env={"PANTHER_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    assert result.exit_code == 0, result.output
    brief = json.loads(result.stdout)
    assert brief["models"][model.name]["scored"] == 300 and "pr_auc" not in brief["models"][model.name]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["plots"]) == {"score_histograms", "alerts_per_day", "drift", "speed"}
    m = report["models"][model.name]
    assert "fraud" not in m and m["labelled"] == 0 and m["threshold"] == 0.3
    assert m["alerts"] == sum(m["alerts_per_day"].values())
    assert m["drift"]["unk_rate"] is not None and m["score_distribution"]["n"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-01-10", "--end", "2026-01-09"], "--end is before --start"),
        (["--start", "soon", "--end", "2026-01-09"], "--start 'soon' is not a time"),
        (["--start", "2026-01-09", "--end", "2026-01-10", "--lookback", "a week"], "is not a duration"),
        (
            ["--start", "2026-01-09", "--end", "2026-01-10", "--model", "/nonexistent/model"],
            "not a directory",
        ),
        (
            ["--start", "2026-01-09", "--end", "2026-01-10", "--threshold", "0.5", "--alert-rate", "1%"],
            "not both",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    if "--model" not in args:  # checked before any model is loaded or broker asked
        args = [*args, "--model", str(tmp_path)]
    result = CliRunner().invoke(main, ["backtest", *args, "--report", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_topic_is_named(kafka_bootstrap: str, tiny_model, tmp_path: Path) -> None:
    model, _ = tiny_model
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            "--topic",
            "no-such-topic",
            "--start",
            "2026-01-09",
            "--end",
            "2026-01-10",
            "--model",
            str(model),
            "--report",
            str(tmp_path),
        ],
        env={"PANTHER_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    assert result.exit_code == 2
    assert "topic 'no-such-topic' does not exist" in result.stderr


def test_slow_scoring_between_fetches_is_not_taken_for_a_stalled_broker(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from stream.backtest import reader as reader_module

    monkeypatch.setattr(reader_module, "STALL_S", 0.5)
    reader = reader_module.RangeReader(
        history.settings, history.settings.topic_transactions, fetch_records=400
    )
    try:
        part = max(reader.plan(None, None), key=lambda p: p.size)
        seen = 0
        for chunk in reader.read(part):
            seen += len(chunk)
            time.sleep(0.7)  # the caller scores longer than STALL_S
    finally:
        reader.close()
    assert seen == part.size > 400
