"""`panther backtest`: replay a time range of a topic through the live worker's engine and report on it.

See docs/BACKTEST.md. `run_backtest(config, settings)` reads, scores and writes DIR; the modules are
`config` (range and options), `reader` (Kafka, no group side effects), `profiles`, `models` (engine per
model), `runner` (the replay loop), `sink` (scores.parquet), `summary`, `drift`, `plots`, `report`.
"""

from stream.backtest.api import run_backtest
from stream.backtest.config import BacktestConfig, ModelSpec, TimeRange

__all__ = ["BacktestConfig", "ModelSpec", "TimeRange", "run_backtest"]
