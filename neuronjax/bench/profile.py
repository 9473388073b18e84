"""Where an attribution call's time goes: one IG call traced, its compiled operations summed by kind.

    neuronjax bench profile [--prompts 8] [--steps 3] [--layer-steps 0=32] [--rule gauss_legendre]
        [--groups G] [--replay auto] [--calls 5] [--matmul-rounds 2] [--top 12] [--trace-dir DIR] [--json OUT]
        [--hlo FILE] [--halves-from ROWS]

Model: the embedded SmolLM2-135M-Instruct (float32); prompts: the first proxy of the first
--prompts world_facts identification items, as `neuronjax bench quadrature` takes them, run as one
call (`attribute(..., chunk=--prompts)`, whatever the row budget would choose: the traced call is the
program whose text names its operations) after their shared prefix, whose cache is computed by the
first call and kept for the others, as identification keeps it across a task's batches
(`attribute(..., heads=)`). The defaults are the default config's nodes (Gauss-Legendre, 3 per
layer, 32 on layer 0).

The call is compiled, timed --calls times (the best counts), then run once more under `jax.profiler` with a Perfetto
trace. Every operation the runtime executed (an XLA thunk on the CPU) is read back from the trace,
named by its compiled instruction, and summed by kind: the instruction name without its numeric
suffix (``ynn_fusion.93`` -> ``ynn_fusion``: the fused matrix products on the CPU;
``dynamic-slice_bitcast_fusion``: copies made by dynamic slicing, most of them a layer's weights
read inside a layer scan; ``wrapped_broadcast``: buffers filled before a loop, ...). The top
operations are listed with their shape, the JAX operation they came from (the compiled HLO's
metadata; '' for what the compiler added itself, such as a buffer filled before a loop) and whether
they hold a matrix product. The traced call is slower than an untraced one (the tracer's own cost); the shares are
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
import sys
import tempfile
import time

from neuronjax.bench import timed_calls
from neuronjax.bench.trace import (by_kind, calls_of, hlo_instructions, operation_times, product_instructions,
                                   read_trace, wall_clock)
from neuronjax.evaluation.results import write_json


def parse_layer_steps(text: str) -> dict[int, int]:
    """'0=32;-1=8' -> {0: 32, -1: 8}; '' -> {}."""
    try:
        return {int(k): int(v) for k, v in (p.split("=") for p in text.split(";") if p.strip())}
    except ValueError:
        raise SystemExit(f"--layer-steps: {text!r} is not LAYER=M[;LAYER=M...], e.g. 0=32") from None


def run(args) -> dict:
    import dataclasses

    import jax
    import numpy as np

    import neuronjax
    from neuronjax.attribution import engine
    from neuronjax.attribution import last_token as lt
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
    halves = lt.halves_for(args.halves_from)
    batch = world_facts_prompts(lm, args.prompts)

    heads: dict = {}  # the shared prefix's cache, run by the first call only (identification's way)

    def call():
        out = engine.attribute(lm, batch, "ig", schedule, rule=args.rule, groups=groups, replay=replay, heads=heads,
                               chunk=args.prompts, halves_from=halves)  # one call: the program lowered below
        return jax.block_until_ready(out.scores)

    _, first, times = timed_calls(call, args.calls)
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="neuronjax_profile_")
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    t = time.perf_counter()
    call()
    traced = time.perf_counter() - t
    jax.profiler.stop_trace()
    events = read_trace(trace_dir)
    ig_calls = calls_of(events, engine.attribute_compiled.__name__)
    ops = operation_times(events)

    # the programs `attribute` compiled (in jit's cache: lowering does not compile again): the prompt pass (the
    # rows after the shared prefix on its cache, or whole prompts left-padded to `SUFFIX_BUCKET`), its cache
    # padded to `CACHE_BUCKET` slots, then the rest on that cache and the prompts' last column
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
                                               cache=cache, halves_from=halves).compile()  # fmt: skip
    texts = [prompt.as_text(), compiled.as_text()]
    names = {**hlo_instructions(texts[0]), **hlo_instructions(texts[1])}
    # the timed and traced calls read the kept prefix cache: the prefix's own products are not theirs
    counted = attribution_flops(lm.config, args.prompts, width, "ig", schedule, groups,
                                shared=0 if split is None else split.length)  # fmt: skip
    flops = counted["total"] - counted["shared"]
    products = product_instructions(texts[0]) | product_instructions(texts[1])
    wall = wall_clock(events, products)
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
        "halves_from": halves,
        "shared_prefix": 0 if split is None else split.length,
        "ig_calls_traced": ig_calls,  # 1: the traced call ran the one program whose text is read
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
                 "source": names.get(k, ("?", ""))[1], "product": k in products} for k, (t, n) in top],  # fmt: skip
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
        f"{r['groups']} layer groups {r.get('replay', 'grouped')}, shared prefix {r['shared_prefix']} tokens"
        + (f", passes of {r['halves_from']}+ rows in two halves" if r.get("halves_from") else "") + f"), {r['model']}",
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
    lines += ["", "| operation | ms | calls | shape | product | from |", "| --- | ---: | ---: | --- | --- | --- |"]
    for t in r["top"]:
        product = {True: "yes", False: "no"}.get(t.get("product"), "?")
        source = t["source"][-70:] or "(made by the compiler)"
        lines.append(f"| {t['operation']} | {t['ms']:.1f} | {t['calls']} | `{t['shape']}` | {product} | {source} |")
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
    ap.add_argument("--halves-from", type=int, default=None, metavar="ROWS",
                    help="passes of this many rows or more run in two halves (default: the backend's, "
                         "`last_token.HALVES_FROM`; 0: never)")  # fmt: skip
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
