"""What each IG quadrature rule costs in accuracy, against a converged reference.

    neuronjax bench quadrature [--prompts 8] [--nodes 1,2,4,8,16,32] [--rules R,..] [--reference 128]
        [--check 96] [--schedules 4:0=32,...] [--json OUT] [--markdown OUT] [--plot OUT]

Model: the embedded SmolLM2-135M-Instruct (float32). Prompts: the first --prompts identification
items of configs/tasks/world_facts.yaml, each as its first AQUA proxy, tokenized and padded by
the task pipeline as a run does (`neuronjax.tasks`); the target is the contrastive F.

For each rule (`neuronjax.attribution.quadrature`: right Riemann, trapezoid, Gauss-Legendre) and
each m in --nodes, IG of every neuron is compared per prompt with the reference, Gauss-Legendre
with --reference nodes (its convergence is shown by Gauss-Legendre with --check nodes):

- relative L2 error: ||IG - IG_ref|| / ||IG_ref|| over all layers x neurons of a prompt, over
  the first layer alone and over the layers above it (on SmolLM2 the first layer's path is by
  far the hardest to integrate);
- completeness gap: sum over layers of |sum_i IG_l,i - (F - F(layer l zeroed))| divided by
  sum over layers of |F - F(layer l zeroed)|, per prompt; F(layer l zeroed) comes from a full
  forward with the layer's neurons zeroed at the last position;
- top-100 overlap: the share of the 100 largest (good) and 100 most negative (bad) IG scores of
  a prompt that are also the reference's.

--schedules adds Gauss-Legendre rows with a node count per layer: ``4:0=32`` is 4 nodes on every
layer but layer 0, which gets 32 (``4:0=32;-1=8`` names more layers), as the run config's
``steps`` and ``layer_steps`` give them.

Every figure is given as the median and the worst over prompts. IG's cost grows with m (each
node is one (layer, alpha) variant per layer; `neuronjax.attribution.flops`), and the reference
alone costs more than all the rules together, so the default is 8 prompts: about 10 minutes on
2 CPU cores, most of it compiling one program per (rule, m). The prompts go through
`attribute` --chunk-rows // m at a time (at least one), which bounds the memory of the
reference's variants.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from neuronjax.evaluation.results import write_json

NODES = (1, 2, 4, 8, 16, 32)
LABELS = {"right_riemann": "right Riemann", "trapezoid": "trapezoid", "gauss_legendre": "Gauss-Legendre"}


def world_facts_prompts(lm, n: int):
    """PromptBatch of the first proxy of the first n identification items of world_facts."""
    from neuronjax.attribution import PromptBatch
    from neuronjax.tasks.build import encode_task
    from neuronjax.tasks.measure import task_config
    from neuronjax.tasks.pipeline import collate

    config = task_config("world_facts")
    encoded = encode_task(config, lm.tokenizer, "identify", max_items=n)
    first = np.array([i for i, r in enumerate(encoded.records) if r.proxy_index == 0])
    b = collate(encoded.records, first, encoded.pad_id, config.pipeline.bucket_multiple, filler=0)
    return PromptBatch(b["input_ids"], b["attention_mask"], b["option_tokens"], b["gold"])


def zeroed_deltas(lm, batch) -> np.ndarray:
    """float64 [prompt, layers]: F - F(layer l's neurons zeroed at the last position), from the
    model's full last-position logits."""
    import jax.numpy as jnp

    from neuronjax.intervention import Intervention
    from neuronjax.tasks.metrics import target_f

    c = lm.config
    opts, gold = np.asarray(batch.option_ids), np.asarray(batch.gold)

    def f(scale):
        iv = Intervention(jnp.asarray(scale), jnp.zeros_like(jnp.asarray(scale)), "last")
        logits = np.asarray(lm.forward(batch.input_ids, batch.attention_mask, iv, logits_at="last").logits[:, 0])
        picked = np.take_along_axis(logits, np.maximum(opts, 0).reshape(len(gold), -1), axis=-1).reshape(opts.shape)
        scores = np.logaddexp.reduce(np.where(opts >= 0, picked.astype(np.float64), -np.inf), axis=-1)
        return np.asarray(target_f(jnp.asarray(scores), jnp.asarray(gold)), np.float64)

    ones = np.ones((c.num_layers, c.intermediate_size), np.float32)
    base = f(ones)
    out = []
    for layer in range(c.num_layers):
        scale = ones.copy()
        scale[layer] = 0
        out.append(base - f(scale))
    return np.stack(out, axis=1)


def ig(lm, batch, rule: str, m: int, chunk_rows: int, layer_steps=None) -> np.ndarray:
    """float64 [prompt, layers, mlp] under one rule with m nodes (layer_steps: {layer: m} for
    single layers)."""
    from neuronjax.attribution import attribute

    widest = max([m, *(layer_steps or {}).values()])
    chunk = max(1, min(len(batch.gold), chunk_rows // widest))
    out = attribute(lm, batch, "ig", m, chunk=chunk, rule=rule, layer_steps=layer_steps)
    return np.asarray(out.scores, np.float64)


def parse_schedule(text: str) -> tuple[int, dict]:
    """'4:0=32;-1=8' -> (4, {0: 32, -1: 8}); '4' -> (4, {})."""
    steps, _, rest = text.partition(":")
    try:
        layers = dict((int(k), int(v)) for k, v in (p.split("=") for p in rest.split(";") if p))
        return int(steps), layers
    except ValueError:
        raise SystemExit(f"--schedules: {text!r} is not STEPS[:LAYER=M;LAYER=M...], e.g. 4:0=32") from None


def schedule_label(steps: int, layers: dict) -> str:
    return ", ".join([str(steps)] + [f"layer {k}: {v}" for k, v in layers.items()])


def _top(x: np.ndarray, k: int) -> set:
    return set(np.argpartition(x, -k)[-k:].tolist())


def compare(scores: np.ndarray, ref: np.ndarray, delta: np.ndarray, top: int) -> dict:
    """Per-prompt figures of scores [prompt, layers, mlp] against ref (see the module docstring)."""
    n = scores.shape[0]
    diff = scores - ref
    rel = np.sqrt((diff**2).sum(axis=(1, 2)) / (ref**2).sum(axis=(1, 2)))
    rel_above = np.sqrt((diff[:, 1:] ** 2).sum(axis=(1, 2)) / (ref[:, 1:] ** 2).sum(axis=(1, 2)))
    layer_rel = np.sqrt((diff**2).sum(axis=2) / (ref**2).sum(axis=2))  # [prompt, layers]
    gap = np.abs(scores.sum(axis=2) - delta).sum(axis=1) / np.abs(delta).sum(axis=1)
    flat, rflat = scores.reshape(n, -1), ref.reshape(n, -1)
    good = [len(_top(flat[i], top) & _top(rflat[i], top)) / top for i in range(n)]
    bad = [len(_top(-flat[i], top) & _top(-rflat[i], top)) / top for i in range(n)]
    return dict(rel_l2=rel.tolist(), rel_l2_above_first_layer=rel_above.tolist(), layer_rel_l2=layer_rel.tolist(),
                completeness_gap=gap.tolist(), good_overlap=good, bad_overlap=bad)  # fmt: skip


def run(args) -> dict:
    import jax

    import neuronjax
    from neuronjax.attribution import attribute
    from neuronjax.attribution.flops import attribution_flops
    from neuronjax.attribution.quadrature import RULES, min_nodes

    t0 = time.perf_counter()
    lm = neuronjax.load_model(args.model or neuronjax.default_model_path())
    batch = world_facts_prompts(lm, args.prompts)
    lengths = np.asarray(batch.attention_mask).sum(axis=1)
    seq = np.shape(batch.input_ids)[1]
    delta = zeroed_deltas(lm, batch)
    ref = ig(lm, batch, "gauss_legendre", args.reference, args.chunk_rows)
    check = ig(lm, batch, "gauss_legendre", args.check, args.chunk_rows)
    c = lm.config
    r: dict = dict(model=os.path.basename(args.model or neuronjax.default_model_path()), layers=c.num_layers,
                   mlp=c.intermediate_size, task="world_facts", prompts=int(len(lengths)),
                   prompt_tokens_mean=float(lengths.mean()), prompt_tokens_max=int(lengths.max()),
                   reference=f"gauss_legendre, {args.reference} nodes", top=args.top,
                   machine=dict(cpu_count=os.cpu_count(), jax=jax.__version__, device=str(jax.devices()[0])),
                   f=[float(x) for x in np.asarray(attribute(lm, batch, "activation").f)],
                   zeroed_delta_abs_sum=np.abs(delta).sum(axis=1).tolist())  # fmt: skip
    r["reference_check"] = dict(nodes=args.check, **compare(check, ref, delta, args.top))
    r["reference_completeness_gap"] = compare(ref, ref, delta, args.top)["completeness_gap"]
    r["rows"] = []
    for rule in args.rules or RULES:
        for m in args.nodes:
            if m < min_nodes(rule):
                continue
            t = time.perf_counter()
            scores = ig(lm, batch, rule, m, args.chunk_rows)
            gflop = attribution_flops(c, 1, -(-seq // 32) * 32, "ig", m, 4)["total"] / 1e9
            r["rows"].append(dict(rule=rule, m=m, seconds_with_compile=time.perf_counter() - t,
                                  gflop_per_prompt=gflop, **compare(scores, ref, delta, args.top)))  # fmt: skip
            print(f"{rule} m={m}: median rel L2 {np.median(r['rows'][-1]['rel_l2']):.2e}", file=sys.stderr)
    for text in args.schedules:
        steps, layers = parse_schedule(text)
        t = time.perf_counter()
        scores = ig(lm, batch, "gauss_legendre", steps, args.chunk_rows, layers)
        gflop = attribution_flops(c, 1, -(-seq // 32) * 32, "ig", steps, 4, layers)["total"] / 1e9
        r["rows"].append(dict(rule="gauss_legendre", m=schedule_label(steps, layers), steps=steps,
                              layer_steps={str(k): v for k, v in layers.items()},
                              seconds_with_compile=time.perf_counter() - t, gflop_per_prompt=gflop,
                              **compare(scores, ref, delta, args.top)))  # fmt: skip
        print(f"schedule {text}: median rel L2 {np.median(r['rows'][-1]['rel_l2']):.2e}", file=sys.stderr)
    r["seconds"] = time.perf_counter() - t0
    return r


def _pct(x: float) -> str:
    v = 100 * x
    return f"{v:,.0f}%" if v >= 10 else f"{v:.2g}%" if v >= 0.01 else f"{v:.1e}%"


def table(r: dict) -> str:
    """Markdown: one row per (rule, m), figures as median / worst over prompts."""
    lines = ["| rule | m | GFLOP / prompt | rel. L2 error (median / max) | first layer | layers 1.. "
             f"| completeness gap (median / max) | top-{r['top']} good overlap (median / min) "
             f"| top-{r['top']} bad overlap (median / min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows = list(r["rows"]) + [dict(rule=f"gauss_legendre ({r['reference_check']['nodes']}, check)",
                                   m=r["reference_check"]["nodes"], gflop_per_prompt=None, **r["reference_check"])]
    for row in rows:
        rel, above, gap = (np.asarray(row[k]) for k in ("rel_l2", "rel_l2_above_first_layer", "completeness_gap"))
        first = np.asarray(row["layer_rel_l2"])[:, 0]
        good, bad = np.asarray(row["good_overlap"]), np.asarray(row["bad_overlap"])
        name = LABELS.get(row["rule"], row["rule"].replace("gauss_legendre", "Gauss-Legendre"))
        cost = "" if row["gflop_per_prompt"] is None else f"{row['gflop_per_prompt']:.0f}"
        lines.append(f"| {name} | {row['m']} | {cost} | {_pct(np.median(rel))} / {_pct(rel.max())} "
                     f"| {_pct(np.median(first))} / {_pct(first.max())} "
                     f"| {_pct(np.median(above))} / {_pct(above.max())} "
                     f"| {_pct(np.median(gap))} / {_pct(gap.max())} | {np.median(good):.2f} / {good.min():.2f} "
                     f"| {np.median(bad):.2f} / {bad.min():.2f} |")  # fmt: skip
    return "\n".join(lines)


def describe(r: dict) -> str:
    gap = np.asarray(r["reference_completeness_gap"])
    return "\n".join([
        f"# IG quadrature rules against {r['reference']}",
        "",
        "```bash",
        r["command"],
        "```",
        "",
        f"{r['model']} ({r['layers']} layers x {r['mlp']} neurons, float32), {r['prompts']} {r['task']} "
        f"identification prompts (first proxy of the first {r['prompts']} items, {r['prompt_tokens_mean']:.0f} tokens "
        f"on average, max {r['prompt_tokens_max']}), target F (ce); {r['machine']['cpu_count']} CPU cores, "
        f"{r['seconds'] / 60:.0f} min in all. Errors are against the reference, per prompt over every layer's "
        "neurons, of the first layer's neurons alone, and of all but the first layer's ('layers 1..'). The "
        "reference itself has a completeness gap of "
        f"{_pct(np.median(gap))} (median) / {_pct(gap.max())} (max), the floor of that column.",
        "",
        table(r),
        "",
    ])  # fmt: skip


def plot(r: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, what in zip(axes, ("rel_l2", "rel_l2_above_first_layer"), ("all layers", "all but the first layer")):
        for rule, marker in zip(LABELS, "osD"):
            rows = [x for x in r["rows"] if x["rule"] == rule and isinstance(x["m"], int)]
            m = [x["m"] for x in rows]
            (line,) = ax.plot(m, [np.median(x[key]) for x in rows], marker=marker, label=f"{LABELS[rule]} (median)")
            ax.plot(m, [np.max(x[key]) for x in rows], marker=marker, linestyle=":", color=line.get_color(), alpha=0.6,
                    label=f"{LABELS[rule]} (max)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("nodes m (gradients of F per layer; cost grows with m)")
        ax.set_title(f"{what}: {r['prompts']} {r['task']} prompts", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"relative L2 error of IG against {r['reference']}", fontsize=8)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{r['model'].split('.')[0]}: IG quadrature error against nodes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench quadrature", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model", default=None, help="checkpoint (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--prompts", type=int, default=8, help="world_facts items, one proxy prompt each")
    ap.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=list(NODES), help="m values")
    ap.add_argument("--rules", type=lambda s: s.split(","), default=None, help="rules of the --nodes rows (default: all)")
    ap.add_argument("--schedules", type=lambda s: s.split(","), default=[],
                    help="Gauss-Legendre rows with per-layer nodes, STEPS:LAYER=M;..., comma-separated")
    ap.add_argument("--reference", type=int, default=128, help="Gauss-Legendre nodes of the reference")
    ap.add_argument("--check", type=int, default=96, help="Gauss-Legendre nodes compared with the reference")
    ap.add_argument("--top", type=int, default=100, help="size of the good / bad sets compared per prompt")
    ap.add_argument("--chunk-rows", type=int, default=128, help="prompts x nodes per compiled call")
    ap.add_argument("--json", default=None, help="also write every per-prompt figure here")
    ap.add_argument("--markdown", default=None, help="also write the table here")
    ap.add_argument("--plot", default=None, help="also draw error against m here (PNG)")
    args = ap.parse_args(argv)
    r = run(args)
    r["command"] = " ".join(["neuronjax bench quadrature"] + list(argv if argv is not None else sys.argv[1:]))
    text = describe(r)
    print(text)
    if args.json:
        write_json(args.json, r)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        plot(r, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
