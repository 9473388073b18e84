"""Benchmarks. Each prints its figures and the command that reproduces them."""

from __future__ import annotations

import platform
import time
from typing import Any, Callable, Optional


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (e.g. "Intel(R) Xeon(R) Processor"), for the benchmarks' records:
    every ratio against a peer moves with the CPU (which library's products are faster there), so
    the figures say which one they came from. Read from Linux's /proc/cpuinfo, else
    `platform.processor()`; "" when neither says."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor()


def timed_calls(call: Callable[[], Any], repeats: int,
                before: Optional[Callable[[], Any]] = None) -> tuple[Any, float, list[float]]:  # fmt: skip
    """(the first call's result, its seconds (compile included), the seconds of `repeats` more
    calls). `call` must wait for its own result (block_until_ready or a host copy). before:
    called, untimed, before each of the `repeats` calls."""
    t = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return first, first_s, times
