"""The Faust worker: live scoring of `transactions` (see docs/STREAMING.md)."""

from stream.worker.runtime import build_worker, run_worker

__all__ = ["build_worker", "run_worker"]
