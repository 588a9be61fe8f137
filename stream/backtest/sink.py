"""Where scored events go: `scores.parquet` (streamed, one row per model × transaction) and the few
columns the report's metrics need, kept per model in compact arrays.

Memory: the parquet rows are flushed every `FLUSH_ROWS`; what stays is ~14 bytes per scored event per
model (score float32, label int8, scenario code int16, event time int64) — exact recall@k and PR-AUC
need every score. The alert threshold may only be known at the end (`--alert-rate`), so rows are
written to a temporary file first and `finish` adds `threshold` and `alerted` in one streamed pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stream.backtest.config import epoch_ms
from stream.engine import Outcome

FLUSH_ROWS = 50_000
SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("txn_id", pa.string()),
        ("user_id", pa.string()),
        ("event_time", pa.timestamp("ms", tz="UTC")),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("score", pa.float64()),
        ("deviation", pa.float64()),
        ("surprise", pa.float64()),
        ("degraded", pa.bool_()),
        ("reasons", pa.string()),  # JSON: the top signals, as an alert would carry them
        ("is_fraud", pa.bool_()),
        ("fraud_scenario", pa.string()),
    ]
)


@dataclass
class ModelColumns:
    """The per-event numbers the report needs for one model (appended chunk by chunk)."""

    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)  # int8: 1 fraud, 0 legit, −1 unlabelled
    scenarios: list[np.ndarray] = field(default_factory=list)  # int16 codes into `scenario_names`
    times: list[np.ndarray] = field(default_factory=list)  # int64 event time, epoch ms

    def arrays(self) -> dict[str, np.ndarray]:
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        return {
            "scores": cat(self.scores, np.float32).astype(np.float64),
            "labels": cat(self.labels, np.int8),
            "scenarios": cat(self.scenarios, np.int16),
            "times": cat(self.times, np.int64),
        }


class ScoreSink:
    def __init__(self, report_dir: Path, labels: list[str]) -> None:
        self.path = report_dir / "scores.parquet"
        self.tmp = report_dir / "scores.parquet.partial"
        self.writer = pq.ParquetWriter(self.tmp, SCHEMA)
        self.rows: list[dict[str, Any]] = []
        self.columns = {label: ModelColumns() for label in labels}
        self.scenario_names: list[str] = []
        self._scenario_codes: dict[str | None, int] = {None: -1}

    def _scenario(self, name: str | None) -> int:
        code = self._scenario_codes.get(name)
        if code is None:
            code = self._scenario_codes[name] = len(self.scenario_names)
            self.scenario_names.append(str(name))
        return code

    def add(self, label: str, outcomes: list[tuple[Outcome, int, int]]) -> None:
        """Scored outcomes of one model with their (partition, offset); duplicates must be left out."""
        if not outcomes:
            return
        n = len(outcomes)
        scores = np.empty(n, np.float32)
        labels = np.empty(n, np.int8)
        scenarios = np.empty(n, np.int16)
        times = np.empty(n, np.int64)
        for i, (outcome, partition, offset) in enumerate(outcomes):
            txn, score = outcome.txn, outcome.numbers  # the numbers: no TransactionScore per event
            assert score is not None
            event_ms = epoch_ms(txn.timestamp)
            scores[i], times[i] = score.score, event_ms
            labels[i] = -1 if txn.is_fraud is None else int(txn.is_fraud)
            scenarios[i] = self._scenario(txn.fraud_scenario) if txn.is_fraud else -1
            reasons = outcome.alert.reasons if outcome.alert is not None else []
            self.rows.append(
                {
                    "model": label,
                    "model_version": outcome.model_version,
                    "txn_id": txn.txn_id,
                    "user_id": txn.user_id,
                    "event_time": event_ms,
                    "partition": partition,
                    "offset": offset,
                    "score": score.score,
                    "deviation": score.deviation,
                    "surprise": score.surprise,
                    "degraded": outcome.degraded,
                    "is_fraud": txn.is_fraud,
                    "fraud_scenario": txn.fraud_scenario,
                    "reasons": json.dumps([r.model_dump() for r in reasons]) if reasons else None,
                }
            )
        columns = self.columns[label]
        columns.scores.append(scores)
        columns.labels.append(labels)
        columns.scenarios.append(scenarios)
        columns.times.append(times)
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=SCHEMA))
            self.rows = []

    def finish(self, thresholds: dict[str, float]) -> Path:
        """Adds `threshold` and `alerted` (score ≥ the model's threshold) and writes scores.parquet."""
        self.flush()
        self.writer.close()
        schema = SCHEMA.append(pa.field("threshold", pa.float64())).append(pa.field("alerted", pa.bool_()))
        with pq.ParquetWriter(self.path, schema) as out:
            for batch in pq.ParquetFile(self.tmp).iter_batches(batch_size=FLUSH_ROWS):
                models = batch.column("model").to_pylist()
                threshold = np.asarray([thresholds[m] for m in models], dtype=np.float64)
                alerted = batch.column("score").to_numpy(zero_copy_only=False) >= threshold
                table = pa.Table.from_batches([batch]).append_column("threshold", pa.array(threshold))
                out.write_table(table.append_column("alerted", pa.array(alerted)))
        self.tmp.unlink()
        return self.path
