"""Two batches in flight on a CPU: per-batch work run in threads, results taken in order.

XLA's CPU runtime runs one program's operations on the machine's cores, but not every operation
uses them all: the small ones between the matrix products (slices of the stacked weights, the
elementwise fusions, the loop control) leave cores idle, as does the host's own work between two
calls (padding a batch, copying results back). Two calls started from two threads run at once
and fill those gaps: identification's IG over 96 world_facts prompts took 32.4-35.2 s with two
batches in flight against 38.8-41.3 s one after the other, the evaluation of the 294 held-out
proxies 85.7-89.1 s against 98.2-100.9 s (2 CPU cores, 2026-12-01, docs/performance.md), the
same scores to the bit.

Only where it is safe and pays: one process (every process of a multi-host run must launch the
same programs in the same order) and a model on one CPU device (programs over a mesh of several
devices keep one call at a time). Each batch's work must not depend on another batch's result.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import jax

from neuronjax.kernels.choice import backend_or_current

T = TypeVar("T")
R = TypeVar("R")

# calls in flight per backend; absent: one at a time
IN_FLIGHT_ON = {"cpu": 2}
# the names of `in_order`'s threads; a call from one of them runs its own work one at a time
THREAD_PREFIX = "neuronjax-batch"


def in_flight(lm, backend: Optional[str] = None) -> int:
    """How many batches of `lm` to work on at once: `IN_FLIGHT_ON`'s entry for the backend when
    the run is one process, the model sits on one device and the caller is not itself one of
    `in_order`'s threads (work already in flight beside another runs its own parts one at a
    time), else 1."""
    if jax.process_count() > 1:
        return 1
    if threading.current_thread().name.startswith(THREAD_PREFIX):  # already one of two in flight: no nesting
        return 1
    if lm.mesh is not None and lm.mesh.size > 1:
        return 1
    return IN_FLIGHT_ON.get(backend_or_current(backend), 1)


def in_order(fn: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) for every item, in the items' order, with up to ``depth`` calls of fn
    running at once in threads (depth 1: one after the other, in this thread). An exception of
    fn is raised when its item's turn comes; the calls already started finish first."""
    if depth <= 1:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(depth, thread_name_prefix=THREAD_PREFIX) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= depth:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
