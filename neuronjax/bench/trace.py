"""Reading a `jax.profiler` trace of compiled programs on the CPU: the operations the runtime
executed (XLA thunks), each operation's own time, the wall clock split by what runs, and the
compiled programs' text that names the operations (their shapes, sources, which are matrix
products). `neuronjax bench profile` is built on these."""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

# an XLA instruction's name (`fusion.12`, `dynamic-slice_bitcast_fusion.3`, `while`): lower case,
# no spaces or scopes; the runtime's own events (`ThunkExecutor::Execute`,
# `PjitFunction(compute_prefix_head)`, `DevicePut`) and Python frames (`$api.py:2479 ...`) are not
# operations, and the host-side ones wrap operations already counted
OPERATION = re.compile(r"[a-z][a-z0-9_\-]*(\.\d+)*")


def kind_of(name: str) -> str:
    """An operation's kind: its instruction name without the numeric suffix XLA adds (and without
    the program's name before it, `operation_times`' ``module/instruction``)."""
    return re.sub(r"(\.\d+)+$", "", name.rsplit("/", 1)[-1])


def events_by_thread(events, keep) -> list[list]:
    """The complete ("X") trace events whose name ``keep`` accepts, one list per thread."""
    threads: dict[tuple, list] = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and keep(str(e.get("name", ""))):
            threads[(e.get("pid"), e.get("tid"))].append(e)
    return list(threads.values())


def operations_by_thread(events) -> list[list]:
    """The complete ("X") trace events that are operations (`OPERATION`), one list per thread."""
    return events_by_thread(events, OPERATION.fullmatch)


def operation_times(events) -> dict[str, tuple[float, int]]:
    """{operation name: (microseconds of its own, calls)} of the complete ("X") trace events that
    are operations (`OPERATION`; not runtime wrappers, dispatch events or Python frames).

    An operation's own time excludes the operations nested in it on the same thread: a ``while``
    that runs its body on the thread it was called from encloses the body's operations (on one
    core, every loop does), and counting both would count the body twice. Operations running at
    the same time on other threads are not nested; their times add up (at most the cores times
    the call's wall clock)."""
    out: dict[str, list] = {}
    for evs in operations_by_thread(events):
        evs.sort(key=lambda e: (float(e.get("ts", 0.0)), -float(e.get("dur", 0.0))))
        stack: list[tuple[float, str]] = []  # (end, name) of the operations enclosing the next one
        for e in evs:
            start, dur = float(e.get("ts", 0.0)), float(e.get("dur", 0.0))
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack:  # nested: its time is not its parent's own
                out[stack[-1][1]][0] -= min(start + dur, stack[-1][0]) - start
            t = out.setdefault(_key(e), [0.0, 0])
            t[0] += dur
            t[1] += 1
            stack.append((start + dur, _key(e)))
    return {k: (v[0], v[1]) for k, v in out.items()}


def _key(event) -> str:
    """An operation's name, ``module/instruction`` when the trace names its compiled program (an
    IG call runs several: the prompt pass, the replay; their instruction names repeat)."""
    module = (event.get("args") or {}).get("hlo_module")
    return f"{module}/{event['name']}" if module else str(event["name"])


def _own_segments(evs: list) -> list[tuple[float, float, str]]:
    """(start, end, name) of one thread's operations where each is the innermost one running: a
    ``while`` that runs its body on this thread counts only between its body's operations."""
    out, stack, cursor = [], [], 0.0  # stack: (end, name) of the operations enclosing the cursor

    def close_until(t: float):
        nonlocal cursor
        while stack and stack[-1][0] <= t:
            end, name = stack.pop()
            if end > cursor:
                out.append((cursor, end, name))
            cursor = max(cursor, end)

    for e in sorted(evs, key=lambda e: (float(e.get("ts", 0.0)), -float(e.get("dur", 0.0)))):
        start, dur = float(e.get("ts", 0.0)), float(e.get("dur", 0.0))
        close_until(start)
        if stack and start > cursor:
            out.append((cursor, start, stack[-1][1]))
        cursor = start
        stack.append((start + dur, _key(e)))  # one running past its parent's end counts to its own end
    close_until(float("inf"))
    return out


def wall_clock(events, products: set[str]) -> dict:
    """Where the traced call's wall clock goes, from its first operation to its last: the time a
    matrix product (an operation in ``products``, `product_instructions`) runs on some thread; the
    time only other operations run (each instant shared evenly among the innermost operations
    running then, summed by kind); the time no operation runs (the host between programs). The
    share of the wall clock with a product running bounds what any change to the rest can buy."""
    points = []
    for evs in operations_by_thread(events):
        for start, end, name in _own_segments(evs):
            points += [(start, 1, name), (end, -1, name)]
    points.sort(key=lambda p: (p[0], p[1]))
    product_kinds = {kind_of(n) for n in products}
    running, others = collections.Counter(), collections.defaultdict(float)
    product = concurrent = idle = 0.0
    for (t, step, name), nxt in zip(points, points[1:] + [None]):
        running[name] += step
        if running[name] == 0:
            del running[name]
        if nxt is None or nxt[0] <= t:
            continue
        span = nxt[0] - t
        if not running:
            idle += span
        elif any(n in products for n in running):
            product += span
            concurrent += span if sum(c for n, c in running.items() if n in products) > 1 else 0.0
        else:
            share = span / sum(running.values())
            for n, c in running.items():
                kind = kind_of(n)  # a kind that also holds products (YNNPACK's fusions) is named apart
                others[f"{kind} (no product)" if kind in product_kinds else kind] += share * c
    other = sum(others.values())
    wall = product + other + idle
    return {
        "wall_ms": wall / 1e3,
        "product_ms": product / 1e3,
        "products_side_by_side_ms": concurrent / 1e3,
        "other_ms": other / 1e3,
        "idle_ms": idle / 1e3,
        "other_kinds": [{"kind": k, "ms": v / 1e3, "share": v / wall if wall else 0.0}
                        for k, v in sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))],  # fmt: skip
    }


def product_instructions(hlo_text: str) -> set[str]:
    """Names (``module/instruction``, as `operation_times` names them) of a compiled module's
    matrix products: its ``dot`` and ``convolution`` instructions, and the fusions (YNNPACK's
    ``ynn_fusion``, oneDNN's, XLA's own) whose fused computation holds one."""
    prefix = module_prefix(hlo_text)
    with_product = {m.group(1) for m in re.finditer(r"^%?([\w.\-]+) \([^\n]*\{\n(.*?)\n\}", hlo_text, re.M | re.S)
                    if re.search(r"= \S+ (dot|convolution)\(", m.group(2))}  # fmt: skip
    out = set()
    for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) (\w[\w\-]*)\(([^\n]*)", hlo_text, re.M):
        name, op, rest = m.groups()
        called = re.search(r"calls=%?([\w.\-]+)", rest)
        if op in ("dot", "convolution") or (op == "fusion" and called and called.group(1) in with_product):
            out.add(prefix + name)
    return out


def by_kind(ops: dict[str, tuple[float, int]]) -> list[dict]:
    """Operation kinds, largest total first: {kind, ms, share, calls, operations}."""
    total = sum(t for t, _ in ops.values()) or 1.0
    kinds: dict[str, list] = collections.defaultdict(lambda: [0.0, 0, 0])
    for name, (t, n) in ops.items():
        k = kinds[kind_of(name)]
        k[0] += t
        k[1] += n
        k[2] += 1
    rows = [{"kind": k, "ms": v[0] / 1e3, "share": v[0] / total, "calls": v[1], "operations": v[2]} for k, v in kinds.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def module_prefix(hlo_text: str) -> str:
    """``module/`` of a compiled module's text (``HloModule jit_f, ...``), or '' when unnamed."""
    module = re.search(r"^HloModule ([\w.\-]+)", hlo_text, re.M)
    return f"{module.group(1)}/" if module else ""


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (shape, JAX op_name)} of a compiled module's text; the names are
    ``module/instruction`` when the text names its module (``HloModule jit_f, ...``), as
    `operation_times` names the traced operations."""
    prefix = module_prefix(hlo_text)
    out = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([^\n]*)", hlo_text, re.M):
        op = re.search(r'op_name="([^"]*)"', m.group(3))
        out[prefix + m.group(1)] = (m.group(2), op.group(1) if op else "")
    return out


def read_trace(directory: str) -> list:
    """The events of the newest trace `jax.profiler` wrote under ``directory``."""
    paths = sorted(glob.glob(os.path.join(directory, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"{directory}: the profiler wrote no *.trace.json.gz")
    with gzip.open(paths[-1]) as f:
        return json.load(f)["traceEvents"]


def calls_of(events, function: str) -> int:
    """How many times the jitted ``function`` ran in the trace: its host-side ``PjitFunction(...)``
    events, counting only the outermost where they nest on one thread (each call records two)."""
    n = 0
    for thread in events_by_thread(events, f"PjitFunction({function})".__eq__):
        end = float("-inf")
        for start, stop in sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))) for e in thread):
            if start >= end:  # not inside the previous outermost call
                n, end = n + 1, stop
            else:
                end = max(end, stop)
    return n
