"""Benchmarks: MovieLens-1M full ranking and the SPRM memory table (each returns a JSON-able dict)."""

from models.bench.movielens import ML1M_SETUP, MovieLensSetup, run_movielens_bench
from models.bench.sprm_memory import run_sprm_memory_bench

__all__ = ["ML1M_SETUP", "MovieLensSetup", "run_movielens_bench", "run_sprm_memory_bench"]
