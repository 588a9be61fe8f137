"""The one entry point the CLI (and tests) call: replay, then write the report."""

from __future__ import annotations

import asyncio
from typing import Any

from stream.backtest.config import BacktestConfig
from stream.backtest.report import write_report
from stream.backtest.runner import replay
from stream.settings import Settings


def run_backtest(config: BacktestConfig, settings: Settings, progress: bool = True) -> dict[str, Any]:
    """Replays config's range with every model and writes scores.parquet, report.json, report.html.

    Returns report.json's content (per model: counts, alerts, fraud metrics when labelled, drift, speed).
    """
    result = asyncio.run(replay(config, settings, progress=progress))
    return write_report(result, settings)
