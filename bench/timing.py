"""Milliseconds per call of a function, after one warm-up call: what the per-call benches share."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call_ms(fn: Callable[[], object], calls: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.perf_counter() - started) / calls
