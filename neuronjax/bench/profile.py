"""Where an attribution call's time goes: one IG call traced, its compiled operations summed by kind.

    neuronjax bench profile [--prompts 8] [--steps 3] [--layer-steps 0=32] [--rule gauss_legendre]
        [--groups G] [--replay auto] [--calls 5] [--matmul-rounds 2] [--top 12] [--trace-dir DIR] [--json OUT]
        [--hlo FILE]

Model: the embedded SmolLM2-135M-Instruct (float32); prompts: the first proxy of the first
--prompts world_facts identification items, as `neuronjax bench quadrature` takes them, run as one
chunk after their shared prefix, whose cache is computed by the first call and kept for the
others, as identification keeps it across a task's batches (`attribute(..., heads=)`). The
defaults are the default config's nodes (Gauss-Legendre, 3 per layer, 32 on layer 0; the figures
in docs/performance.md were taken at 4 per layer, --steps 4, the default config's until
2026-11-30).

The call is compiled, timed --calls times (the best counts), then run once more under `jax.profiler` with a Perfetto
trace. Every operation the runtime executed (an XLA thunk on the CPU) is read back from the trace,
named by its compiled instruction, and summed by kind: the instruction name without its numeric
suffix (``ynn_fusion.93`` -> ``ynn_fusion``: the fused matrix products on the CPU;
``dynamic-slice_bitcast_fusion``: copies made by dynamic slicing, most of them a layer's weights
read inside a layer scan; ``wrapped_broadcast``: buffers filled before a loop, ...). The top
operations are listed with their shape and the JAX operation they came from (the compiled HLO's
metadata). The traced call is slower than an untraced one (the tracer's own cost); the shares are
what the table is for. The call's wall clock is split three ways (`wall_clock`): time with a
matrix product running on some thread, time with only other operations running (by kind), time
with none: a product's thread time can hide behind another's, the wall clock cannot, so this is
the split that says what making the rest faster could buy. Matrix-product FLOPs are counted with `neuronjax.attribution.flops`
(less the shared prefix's own, which the timed calls read from the kept cache) and divided by the
best call's time; the float32 matmul limit beside them is the best of `jnp.dot` and numpy on a
2048^3 product (`neuronjax.bench.attribution.matmul_peak`, --matmul-rounds readings
each, before the call and after it). --hlo writes the compiled programs' text, where a listed
operation's fused computation, operands and layouts can be read (``%ynn_fusion.126 = ...``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

from neuronjax.bench import timed_calls
from neuronjax.evaluation.results import write_json

# an XLA instruction's name (`fusion.12`, `dynamic-slice_bitcast_fusion.3`, `while`): lower case,
# no spaces or scopes; the runtime's own events (`ThunkExecutor::Execute`,
# `PjitFunction(compute_prefix_head)`, `DevicePut`) and Python frames (`$api.py:2479 ...`) are not
# operations, and the host-side ones wrap operations already counted
OPERATION = re.compile(r"[a-z][a-z0-9_\-]*(\.\d+)*")


def kind_of(name: str) -> str:
    """An operation's kind: its instruction name without the numeric suffix XLA adds (and without
    the program's name before it, `operation_times`' ``module/instruction``)."""
    return re.sub(r"(\.\d+)+$", "", name.rsplit("/", 1)[-1])


def operations_by_thread(events) -> list[list]:
    """The complete ("X") trace events that are operations (`OPERATION`), one list per thread."""
    threads: dict[tuple, list] = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and OPERATION.fullmatch(str(e.get("name", ""))):
            threads[(e.get("pid"), e.get("tid"))].append(e)
    return list(threads.values())


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


def parse_layer_steps(text: str) -> dict[int, int]:
    """'0=32;-1=8' -> {0: 32, -1: 8}; '' -> {}."""
    try:
        return {int(k): int(v) for k, v in (p.split("=") for p in text.split(";") if p.strip())}
    except ValueError:
        raise SystemExit(f"--layer-steps: {text!r} is not LAYER=M[;LAYER=M...], e.g. 0=32") from None


def read_trace(directory: str) -> list:
    paths = sorted(glob.glob(os.path.join(directory, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"{directory}: the profiler wrote no *.trace.json.gz")
    with gzip.open(paths[-1]) as f:
        return json.load(f)["traceEvents"]


def run(args) -> dict:
    import dataclasses

    import jax
    import numpy as np

    import neuronjax
    from neuronjax.attribution import engine
    from neuronjax.attribution.flops import attribution_flops
    from neuronjax.attribution.quadrature import layer_schedule
    from neuronjax.bench.attribution import matmul_peak, numpy_matmul_peak
    from neuronjax.bench.quadrature import world_facts_prompts
    from neuronjax.cached import CACHE_BUCKET, SUFFIX_BUCKET, kept_prefix_head, rows_cache_compiled, split_prefix

    def limit() -> dict:
        return {"jnp.dot": [matmul_peak() / 1e9 for _ in range(args.matmul_rounds)],
                "numpy": [numpy_matmul_peak() / 1e9 for _ in range(args.matmul_rounds)]}  # fmt: skip

    before = limit()
    lm = neuronjax.load_model(neuronjax.default_model_path())
    schedule = layer_schedule(lm.config.num_layers, args.steps, parse_layer_steps(args.layer_steps))
    replay = engine.resolve_replay(args.replay)
    groups = engine.resolve_groups(args.groups, replay)
    batch = world_facts_prompts(lm, args.prompts)

    heads: dict = {}  # the shared prefix's cache, run by the first call only (identification's way)

    def call():
        out = engine.attribute(lm, batch, "ig", schedule, rule=args.rule, groups=groups, replay=replay, heads=heads)
        return jax.block_until_ready(out.scores)

    _, first, times = timed_calls(call, args.calls)
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="neuronjax_profile_")
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    t = time.perf_counter()
    call()
    traced = time.perf_counter() - t
    jax.profiler.stop_trace()
    events = read_trace(trace_dir)
    ops = operation_times(events)

    # the programs `attribute` compiled: the prompt pass (the rows after the shared prefix on the
    # prefix's cache, `kept_prefix_head`, or the whole prompts left-padded to its bucket,
    # `SUFFIX_BUCKET`, attribute's default), its cache padded to `CACHE_BUCKET` slots, then the
    # rest on that cache and the prompts' last column; they are in jit's cache, so lowering does
    # not compile again, and the traced operations' names are these programs'
    split = split_prefix(np.asarray(batch.input_ids), np.asarray(batch.attention_mask))
    part = batch if split is None else dataclasses.replace(batch, input_ids=split.input_ids, attention_mask=split.attention_mask)
    width = np.shape(part.input_ids)[1] if split is not None else -(-np.shape(part.input_ids)[1] // SUFFIX_BUCKET) * SUFFIX_BUCKET
    part = engine.pad_rows(part, args.prompts, width)
    ids, mask = lm.place(part.input_ids), lm.place(part.attention_mask)
    head = None if split is None else kept_prefix_head(lm, split.shared, heads)
    prompt, cache = rows_cache_compiled(lm, ids, mask, head, CACHE_BUCKET)
    last = jax.tree.map(lm.place, dataclasses.replace(part, input_ids=part.input_ids[:, -1:],
                                                      attention_mask=part.attention_mask[:, -1:]))  # fmt: skip
    compiled = engine.attribute_compiled.lower(lm.state, last, None, graphdef=lm.graphdef, method="ig", steps=schedule,
                                               groups=groups, target="ce", rule=args.rule, replay=replay,
                                               cache=cache).compile()  # fmt: skip
    texts = [prompt.as_text(), compiled.as_text()]
    names = {**hlo_instructions(texts[0]), **hlo_instructions(texts[1])}
    # the timed and traced calls read the kept prefix cache: the prefix's own products are not theirs
    counted = attribution_flops(lm.config, args.prompts, width, "ig", schedule, groups,
                                shared=0 if split is None else split.length)  # fmt: skip
    flops = counted["total"] - counted["shared"]
    wall = wall_clock(events, product_instructions(texts[0]) | product_instructions(texts[1]))
    # the products' own rate, over the traced call's time with one running (reads low: the tracer's cost)
    wall["product_gflop_per_s"] = flops / wall["product_ms"] / 1e6 if wall["product_ms"] else 0.0
    if args.hlo:  # the compiled programs' text: the operands and layouts of a listed operation
        with open(args.hlo, "w") as f:
            f.write("\n\n".join(texts))
    best = min(times)
    readings = {k: before[k] + v for k, v in limit().items()}
    peak = max(max(v) for v in readings.values())
    top = sorted(ops.items(), key=lambda kv: -kv[1][0])[: args.top]
    return {
        "model": lm.source,
        "prompts": args.prompts,
        "schedule": list(schedule),
        "rule": args.rule,
        "groups": groups,
        "replay": replay,
        "shared_prefix": 0 if split is None else split.length,
        "first_call_s": first,
        "call_s": times,
        "traced_call_s": traced,
        "gflop": flops / 1e9,
        "gflop_per_s": flops / best / 1e9,
        "matmul_gflop_per_s": readings,
        "matmul_limit_gflop_per_s": peak,
        "fraction_of_limit": flops / best / 1e9 / peak,
        "operations_ms": sum(t for t, _ in ops.values()) / 1e3,
        "kinds": by_kind(ops),
        "wall_clock": wall,
        "top": [{"operation": k, "ms": t / 1e3, "calls": n, "shape": names.get(k, ("?", ""))[0],
                 "source": names.get(k, ("?", ""))[1]} for k, (t, n) in top],  # fmt: skip
        "trace_dir": args.trace_dir,  # None: the trace was written to a temporary folder
    }


def wall_line(w: dict) -> str:
    def pct(ms: float) -> str:
        return f"{100 * ms / w['wall_ms']:.1f}%" if w["wall_ms"] else "-"
    kinds = ", ".join(f"{k['kind']} {k['ms']:.0f} ms" for k in w["other_kinds"][:6])
    return (f"its wall clock, {w['wall_ms'] / 1e3:.2f} s from the first operation to the last: a matrix product "
            f"running {w['product_ms'] / 1e3:.2f} s ({pct(w['product_ms'])}; two or more side by side "
            f"{w['products_side_by_side_ms'] / 1e3:.2f} s; {w.get('product_gflop_per_s', 0.0):.1f} GFLOP/s "
            f"while one runs), only other operations {w['other_ms'] / 1e3:.2f} s "
            f"({pct(w['other_ms'])}: {kinds}), none {w['idle_ms'] / 1e3:.2f} s ({pct(w['idle_ms'])})")  # fmt: skip


def describe(r: dict) -> str:
    lines = [
        f"IG, {r['prompts']} prompts in one call ({r['rule']}, nodes per layer {r['schedule'][:3]}..., "
        f"{r['groups']} layer groups {r.get('replay', 'grouped')}, shared prefix {r['shared_prefix']} tokens), {r['model']}",
        f"first call {r['first_call_s']:.1f} s (compile); calls {', '.join(f'{t:.2f}' for t in r['call_s'])} s; "
        f"{r['gflop']:.0f} GFLOP of matrix products -> {r['gflop_per_s']:.1f} GFLOP/s at the best call, "
        f"{100 * r['fraction_of_limit']:.1f}% of the float32 matmul limit read in the same run "
        f"({r['matmul_limit_gflop_per_s']:.1f} GFLOP/s: best of "
        + ", ".join(f"{k} {max(v):.1f}" for k, v in r["matmul_gflop_per_s"].items()) + ")",
        f"traced call {r['traced_call_s']:.2f} s; its operations sum to {r['operations_ms'] / 1e3:.2f} s "
        "(each operation's own time, without the operations nested in it; the cores overlap some, the "
        "tracer adds its own)",
        wall_line(r["wall_clock"]) if "wall_clock" in r else "",
        "",
        "| kind | ms | share | calls | operations |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for k in r["kinds"]:
        if k["share"] < 0.003:
            continue
        lines.append(f"| {k['kind']} | {k['ms']:.1f} | {100 * k['share']:.1f}% | {k['calls']} | {k['operations']} |")
    lines += ["", "| operation | ms | calls | shape | from |", "| --- | ---: | ---: | --- | --- |"]
    for t in r["top"]:
        lines.append(f"| {t['operation']} | {t['ms']:.1f} | {t['calls']} | `{t['shape']}` | {t['source'][-70:]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8, help="prompts in the call (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=3, help="IG nodes per layer (default: %(default)s)")
    ap.add_argument("--layer-steps", default="0=32", metavar="L=M[;L=M]",
                    help="nodes of single layers (default: %(default)s; '' for none)")  # fmt: skip
    ap.add_argument("--rule", default="gauss_legendre", help="quadrature rule (default: %(default)s)")
    ap.add_argument("--groups", type=int, default=None,
                    help="layer groups (default: the replay's, 8 joined and 4 grouped)")
    ap.add_argument("--replay", choices=("auto", "grouped", "joined"), default="auto",
                    help="one pass per layer group, or all groups joined in one (default: %(default)s, joined on CPU)")
    ap.add_argument("--calls", type=int, default=5, help="timed calls after the first (default: %(default)s)")
    ap.add_argument("--matmul-rounds", type=int, default=2,
                    help="readings of each 2048^3 product rate, before and after (default: %(default)s)")  # fmt: skip
    ap.add_argument("--top", type=int, default=12, help="single operations listed (default: %(default)s)")
    ap.add_argument("--trace-dir", help="keep the trace here (default: a temporary folder)")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--hlo", help="write the compiled programs' text here (the prompt pass's, then the IG call's)")
    args = ap.parse_args(argv)
    if min(args.prompts, args.steps, args.groups or 1, args.calls, args.matmul_rounds) < 1 or args.top < 0:
        ap.error("--prompts, --steps, --groups, --calls and --matmul-rounds must be >= 1, --top >= 0")
    r = run(args)
    print(describe(r))
    cmd = "neuronjax bench profile " + " ".join(sys.argv[3:] if argv is None else argv)
    print(f"\n{cmd.strip()}")
    if args.json:
        write_json(args.json, r)
    return 0
