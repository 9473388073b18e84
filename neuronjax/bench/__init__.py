"""Benchmarks. Each prints its figures and the command that reproduces them."""

from __future__ import annotations

import time
from typing import Any, Callable


def timed_calls(call: Callable[[], Any], repeats: int) -> tuple[Any, float, list[float]]:
    """(the first call's result, its seconds (compile included), the seconds of `repeats` more
    calls). `call` must wait for its own result (block_until_ready or a host copy)."""
    t = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return first, first_s, times
