"""Where one replay layer's time goes, timed part by part without a tracer.

    neuronjax bench layer [--prompts 8] [--variants 119] [--layer 5] [--rounds 5] [--json OUT]

`neuronjax bench profile` reads a traced call, and the tracer slows what it records (a lone
product took 7.1 ms timed and 11.2 ms traced, docs/performance.md); operations that run at the
same time on the two cores also overlap in a trace. This benchmark times instead: each part of
the IG replay's layer step is compiled as its own function and run in interleaved rounds in one
process, and its matrix-product FLOPs (counted from the shapes) give its rate next to that of a
lone product of the replay's largest shape, measured in the same rounds.

The rows are those of the replay: --variants IG variants (default 119, the default config's
nodes: 3 per layer, 32 on layer 0) times --prompts prompts, one token each, against the prompts'
cached keys. Model: the embedded SmolLM2-135M-Instruct (float32); prompts: the first proxy of the
first --prompts world_facts identification items (`neuronjax.bench.quadrature.world_facts_prompts`).

Parts, each forward alone and forward with its backward pass (value and gradient with respect to
its input activations, as the replay takes them: no weight gradients):

- ``product``: [rows x embed] x [embed x mlp] alone, forward only: the rate the parts are held to;
- ``attention core``: scores against the cached keys and the row's own key, softmax, the weighted
  values (`kernels.shared_prefix_attention`, as the replay calls it: on CPU `kernels.one_token`,
  or the einsum reference with NEURONJAX_KERNELS=reference), gradient with respect to q, k, v;
- ``attention``: the attention half of layer --layer (norm, projections, core, output);
- ``ffn``: its FFN half (norm, gate and up, the activation, down);
- ``layer``: the whole step of layer --layer as the replay runs it (`last_token.edit_layer`:
  each row's neurons scaled at its edit layer);
- ``all layers``: `last_token.edit_scan` over every layer, reported per layer: the replay's own
  scan, with the stacked weights read per layer and the values kept for the backward pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import numpy as np

from neuronjax.bench import cpu_model
from neuronjax.errors import InputError
from neuronjax.evaluation.results import write_json

PARTS = ("product", "attention core", "attention", "ffn", "layer", "all layers")


def part_macs(cfg, rows: int, keys: int) -> dict[str, int]:
    """Multiply-accumulates of each part for `rows` one-token rows against `keys` keys (the cached
    ones and the row's own): ``projections`` (q, k, v, output), ``core`` (scores and weighted
    values), ``ffn`` (gate and up, or up alone, and down), ``product`` (one [embed x mlp] product).
    projections + core + ffn is `attribution.flops.layer_macs` of the same rows."""
    e, h, kv, d, f = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
    return {
        "projections": rows * (e * h * d + 2 * e * kv * d + h * d * e),
        "core": rows * 2 * h * d * keys,
        "ffn": rows * (3 if cfg.gated_mlp else 2) * e * f,
        "product": rows * e * f,
    }


def part_gflop(cfg, rows: int, keys: int) -> dict[str, float]:
    """Forward GFLOP of each part of `PARTS` (the backward pass with respect to the activations
    runs the same products again: twice these); ``all layers`` per layer."""
    m = part_macs(cfg, rows, keys)
    macs = {"product": m["product"], "attention core": m["core"], "attention": m["projections"] + m["core"],
            "ffn": m["ffn"], "layer": m["projections"] + m["core"] + m["ffn"]}  # fmt: skip
    macs["all layers"] = macs["layer"]  # reported per layer
    return {k: 2 * v / 1e9 for k, v in macs.items()}


def build(lm, batch, variants: int, layer: int) -> dict:
    """The replay's inputs for `batch` (an `attribution.PromptBatch`) and one compiled function per
    (part, pass): {"<part> <fwd|fwd+bwd>": (function, arguments)}, plus the shapes."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from neuronjax.kernels.shared_prefix_attention import shared_prefix_attention
    from neuronjax.attribution import last_token as lt
    from neuronjax.cached import prefix_cache

    model = nnx.merge(lm.graphdef, lm.state)
    cfg = model.cfg
    if not 0 <= layer < cfg.num_layers:
        raise InputError(f"layer {layer}: expected 0..{cfg.num_layers - 1} ({cfg.num_layers} layers)")
    ids, mask = jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask)
    cache = prefix_cache(model, ids[:, :-1], mask[:, :-1])
    graphdef, replay = lt.replay_inputs(model, ids[:, -1], cache)
    b = ids.shape[0]
    x_in = lt.base_pass(model, graphdef, replay, jnp.asarray(batch.option_ids), jnp.asarray(batch.gold))[1][1].x_in
    # every variant starts from the unedited residual entering the layer, a little apart per row
    spread = 1.0 + 0.01 * jnp.arange(variants, dtype=x_in.dtype)[:, None, None, None]
    x = lt.entering(x_in[layer], variants) * spread  # [variant, batch, 1, embed]
    x0 = lt.entering(x_in[0], variants) * spread
    start = jnp.asarray(np.arange(variants) % cfg.num_layers, jnp.int32)
    alpha = jnp.asarray((np.arange(variants) % 16 + 1) / 16, jnp.float32)
    shift = jnp.zeros((variants, b, cfg.intermediate_size), x.dtype)
    block, rope, bias, past = lt.layer_at(graphdef, replay, layer)
    xn = block.attn_norm(x) if cfg.pre_norm else x
    q, k, v = (jnp.einsum("...se,ehd->...shd", xn, w[...]) for w in (block.attn.q, block.attn.k, block.attn.v))

    def read(y):  # a scalar that needs every value of y (so no product of the forward pass is dropped)
        return (y.astype(jnp.float32) * jnp.cos(jnp.arange(y.shape[-1], dtype=jnp.float32))).sum()

    def core(q, k, v):
        return read(shared_prefix_attention(q, k, v, past[0], past[1], bias, cfg.scale, cfg.attn_softcap))

    def attention(x):
        blk, rp, bs, ps = lt.layer_at(graphdef, replay, layer)
        return read(blk.attend(x, rp, bs, ps)[0])

    def ffn(x):
        blk, _, _, _ = lt.layer_at(graphdef, replay, layer)
        return read(x + blk.ffn_out(blk.neurons(x, x)))

    def one_layer(x, shift):
        return read(lt.edit_layer(graphdef, replay, x, layer, start, alpha, shift))

    def all_layers(x, shift):
        return read(lt.edit_scan(model, graphdef, replay, x, 0, cfg.num_layers, start, alpha, shift))

    rows = variants * b
    a = jnp.ones((rows, cfg.hidden_size), x.dtype)
    w = jnp.ones((cfg.hidden_size, cfg.intermediate_size), x.dtype) / cfg.hidden_size

    def both(fn, argnums=0):  # forward alone, and forward with the backward pass
        return jax.jit(fn), jax.jit(jax.value_and_grad(fn, argnums=argnums))

    fns = {"product fwd": (jax.jit(jnp.dot), (a, w))}
    for name, fn, args, argnums in [("attention core", core, (q, k, v), (0, 1, 2)), ("attention", attention, (x,), 0),
                                    ("ffn", ffn, (x,), 0), ("layer", one_layer, (x, shift), (0, 1)),
                                    ("all layers", all_layers, (x0, shift), (0, 1))]:  # fmt: skip
        fwd, fwd_bwd = both(fn, argnums)
        fns[f"{name} fwd"] = (fwd, args)
        fns[f"{name} fwd+bwd"] = (fwd_bwd, args)
    return {"functions": fns, "rows": rows, "keys": int(cache.keys.shape[2]) + 1, "layers": cfg.num_layers,
            "config": cfg}  # fmt: skip


def time_rounds(fns: dict[str, tuple[Callable, tuple]], rounds: int, budget_s: float = 0.3) -> dict[str, list[float]]:
    """Seconds per call of each function, `rounds` interleaved rounds after a first call each (the
    compile); within a round a function runs as many times as fit in about `budget_s` (at least
    once), and the round's figure is the mean of those calls."""
    import jax

    reps = {}
    for name, (fn, args) in fns.items():
        jax.block_until_ready(fn(*args))
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        reps[name] = max(1, int(budget_s / max(time.perf_counter() - t, 1e-6)))
    out: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in order:
            fn, args = fns[name]
            t = time.perf_counter()
            for _ in range(reps[name]):
                res = fn(*args)
            jax.block_until_ready(res)
            out[name].append((time.perf_counter() - t) / reps[name])
    return out


def measure(lm, batch, variants: int = 119, layer: int = 5, rounds: int = 5) -> dict:
    """Every part's median seconds per call (``all layers``: per layer), its GFLOP, GFLOP/s and
    the share of the lone product's rate."""
    built = build(lm, batch, variants, layer)
    times = time_rounds(built["functions"], rounds)
    gflop = part_gflop(built["config"], built["rows"], built["keys"])
    out = []
    for name, ts in times.items():
        part, pas = name.rsplit(" ", 1)
        per = built["layers"] if part == "all layers" else 1
        s = float(np.median(ts)) / per
        g = gflop[part] * (2 if pas == "fwd+bwd" else 1)
        out.append({"part": part, "pass": pas, "ms": 1e3 * s, "ms_rounds": [1e3 * t / per for t in ts],
                    "gflop": g, "gflop_per_s": g / s})  # fmt: skip
    ref = next(r["gflop_per_s"] for r in out if r["part"] == "product")
    for r in out:
        r["of_product_rate"] = r["gflop_per_s"] / ref
    return {"rows": built["rows"], "keys": built["keys"], "variants": variants, "prompts": built["rows"] // variants,
            "layer": layer, "layers": built["layers"], "rounds": rounds, "parts": out}  # fmt: skip


def describe(r: dict, model: str) -> str:
    lines = [
        f"{model}: {r['variants']} variants x {r['prompts']} prompts = {r['rows']} one-token rows against "
        f"{r['keys']} keys (the cached ones and the row's own); single-layer parts at layer {r['layer']}; "
        f"medians of {r['rounds']} interleaved rounds; 'all layers' per layer of {r['layers']}"
        + (f"; CPU: {r['cpu']}" if r.get("cpu") else ""),
        "",
        "| part | pass | ms | GFLOP | GFLOP/s | of the lone product's rate |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for p in r["parts"]:
        lines.append(f"| {p['part']} | {p['pass']} | {p['ms']:.2f} | {p['gflop']:.3f} | {p['gflop_per_s']:.0f} | "
                     f"{100 * p['of_product_rate']:.0f}% |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench layer", description=__doc__.split("\n\n")[1].strip())
    ap.add_argument("--prompts", type=int, default=8, help="prompts (default: %(default)s)")
    ap.add_argument("--variants", type=int, default=119,
                    help="IG variants per prompt (default: %(default)s, the default config's nodes)")  # fmt: skip
    ap.add_argument("--layer", type=int, default=5, help="the layer of the single-layer parts (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: %(default)s)")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)
    if min(args.prompts, args.variants, args.rounds) < 1:
        ap.error("--prompts, --variants and --rounds must be >= 1")
    import neuronjax
    from neuronjax.bench.quadrature import world_facts_prompts

    lm = neuronjax.load_model(neuronjax.default_model_path())
    try:
        r = measure(lm, world_facts_prompts(lm, args.prompts), args.variants, args.layer, args.rounds)
    except InputError as err:  # the layer out of range
        ap.error(f"--{err}")
    r["model"] = lm.source
    r["cpu"] = cpu_model()
    print(describe(r, lm.source))
    cmd = "neuronjax bench layer " + " ".join(sys.argv[3:] if argv is None else argv)
    print(f"\n{cmd.strip()}")
    if args.json:
        write_json(args.json, r)
    return 0
