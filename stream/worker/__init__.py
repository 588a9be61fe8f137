"""The Faust worker: live scoring of `transactions` (see docs/STREAMING.md).

Import `stream.worker.runtime` for `build_worker` / `run_worker`; this package itself imports nothing,
so that `stream.worker.app` or `.decode` load without torch.
"""
