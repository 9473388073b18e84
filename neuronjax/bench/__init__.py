"""Benchmarks. Each prints its figures and the command that reproduces them."""

from __future__ import annotations

import os
import platform
import resource
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


def steal_seconds(path: str = "/proc/stat") -> Optional[float]:
    """Seconds the hypervisor has run other guests on this machine's CPUs while they had work of
    this machine's (the ``steal`` column of Linux's /proc/stat, summed over the CPUs, in clock
    ticks of ``SC_CLK_TCK``), or None where that cannot be read (not Linux, no such column)."""
    try:
        with open(path) as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK") if fields and fields[0] == "cpu" and len(fields) > 8 else None
    except (OSError, ValueError, IndexError):
        return None


def usage_now() -> dict:
    """This process's CPU seconds in user code and in the kernel, its page faults served without
    I/O (minor), and the machine's stolen seconds (`steal_seconds`, None where unreadable)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_s": r.ru_utime, "kernel_s": r.ru_stime, "page_faults": r.ru_minflt, "steal_s": steal_seconds()}


def usage_between(start: dict, end: dict) -> dict:
    """What `usage_now` counted from start to end (steal None when either reading lacks it)."""
    out = {k: end[k] - start[k] for k in ("user_s", "kernel_s", "page_faults")}
    out["steal_s"] = None if start["steal_s"] is None or end["steal_s"] is None else end["steal_s"] - start["steal_s"]
    return out


def timed_calls(call: Callable[[], Any], repeats: int, before: Optional[Callable[[], Any]] = None,
                usage: Optional[list] = None) -> tuple[Any, float, list[float]]:  # fmt: skip
    """(the first call's result, its seconds (compile included), the seconds of `repeats` more
    calls). `call` must wait for its own result (block_until_ready or a host copy). before:
    called, untimed, before each of the `repeats` calls. usage: a list that gets, for each of
    those calls, what `usage_between` counted over it (kernel time and page faults say when a
    call waited on the kernel's memory work, steal when other guests had the CPUs)."""
    t = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = usage_now() if usage is not None else None
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
        if usage is not None:
            usage.append(usage_between(start, usage_now()))
    return first, first_s, times
