"""Synthetic payments with labelled fraud, for pretraining and testing PANTHER (see docs/SIMULATOR.md)."""

from .config import SCENARIOS, SimulatorConfig
from .frames import TXN_COLUMNS
from .pipeline import simulate, write_dataset

__all__ = ["SCENARIOS", "TXN_COLUMNS", "SimulatorConfig", "simulate", "write_dataset"]
