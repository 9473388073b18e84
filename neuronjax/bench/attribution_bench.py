"""Identification throughput: our exact IG against a PyTorch + transformers peer, side by side.

    python -m neuronjax.bench.attribution_bench [--prompts 32] [--peer-prompts 2] [--steps 16] [--json OUT]
    (also: neuronjax bench attribution ...)

Both sides get the same one-shot AQUA proxy prompts of the embedded default task (SmolLM2-135M,
world_facts, option_text) and the same m. The peer (`torch_peer`) recomputes the whole prompt for
every (layer, alpha) step; ours replays only the last position against the prompt's cache. The
scores of the prompts both sides ran must agree before the speed figures mean anything, so the
max difference is printed beside them. The machine's float32 matmul peak is measured in the same
run, and our FLOP rate is counted with `attribution.flops` (XLA's cost analysis counts a scan's
body once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

DEFAULT_TASK = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tasks", "world_facts.yaml")


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 FLOP/s of a jitted n x n matmul on the default device."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def proxy_batch(lm, task_path: str, n: int):
    """The first n identification proxies of a task as one left-padded PromptBatch."""
    from neuronjax.attribution import PromptBatch
    from neuronjax.tasks.build import encode_task
    from neuronjax.tasks.config import load_task_config

    cfg = load_task_config(os.path.abspath(task_path))
    enc = encode_task(cfg, lm.tokenizer, "identify", max_items=-(-n // cfg.aqua.num_proxies))
    recs = enc.records[:n]
    width = max(len(r.prompt_ids) for r in recs)
    ids = np.full((len(recs), width), enc.pad_id, np.int32)
    mask = np.zeros((len(recs), width), np.int32)
    for i, r in enumerate(recs):
        ids[i, width - len(r.prompt_ids) :] = r.prompt_ids
        mask[i, width - len(r.prompt_ids) :] = 1
    cands = max(r.option_tokens.shape[1] for r in recs)
    opts = np.full((len(recs), 4, cands), -1, np.int32)
    for i, r in enumerate(recs):
        opts[i, :, : r.option_tokens.shape[1]] = r.option_tokens
    gold = np.array([r.gold for r in recs], np.int32)
    return PromptBatch(ids, mask, opts, gold), cfg.name


def run(args) -> dict:
    import jax

    import neuronjax
    from neuronjax.attribution import attribute
    from neuronjax.attribution.engine import PromptBatch
    from neuronjax.attribution.flops import attribution_flops

    peak = matmul_peak()
    lm = neuronjax.load_model(args.model)
    batch, task = proxy_batch(lm, args.task, args.prompts)
    n, seq = batch.input_ids.shape
    c = lm.config
    bucket = 32
    seq_padded = -(-seq // bucket) * bucket
    chunk = min(args.chunk, n)
    res: dict = {"model": lm.source, "task": task, "prompts": n, "seq": seq, "seq_padded": seq_padded,
                 "steps": args.steps, "groups": args.groups, "chunk": chunk, "layers": c.num_layers,
                 "mlp": c.intermediate_size, "matmul_peak_flops": peak, "jax": jax.__version__,
                 "devices": [str(d) for d in jax.devices()][:1], "cpu_count": os.cpu_count()}  # fmt: skip

    def ours(method, steps):
        first = jax.tree.map(lambda x: x[:chunk], batch)
        t = time.perf_counter()
        jax.block_until_ready(attribute(lm, first, method, steps, chunk=chunk, groups=args.groups))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        out = attribute(lm, batch, method, steps, chunk=chunk, groups=args.groups)
        jax.block_until_ready(out)
        return out, time.perf_counter() - t, compile_s

    ig, ig_s, ig_compile = ours("ig", args.steps)
    gxa, gxa_s, gxa_compile = ours("grad_x_act", 1)
    calls = -(-n // chunk)
    flops = calls * attribution_flops(c, chunk, seq_padded, "ig", args.steps, args.groups)["total"]
    res.update(ours_ig_seconds=ig_s, ours_ig_compile_seconds=ig_compile, ours_ig_prompts_per_s=n / ig_s,
               ours_ig_flops=flops, ours_ig_flops_per_s=flops / ig_s, ours_fraction_of_peak=flops / ig_s / peak,
               ours_gxa_prompts_per_s=n / gxa_s, ours_gxa_compile_seconds=gxa_compile)  # fmt: skip

    if args.peer_prompts > 0:
        import torch
        from transformers import AutoModelForCausalLM

        from neuronjax.bench import torch_peer

        torch.set_num_threads(os.cpu_count() or 1)
        path = lm.source
        ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                   dtype=torch.float32).eval()  # fmt: skip
        p = min(args.peer_prompts, n)
        sub = jax.tree.map(lambda x: np.asarray(x)[:p], batch)
        t = time.perf_counter()
        peer = torch_peer.attribute(ref, sub.input_ids, sub.attention_mask, sub.option_ids, sub.gold, "ig", args.steps)
        peer_s = time.perf_counter() - t
        t = time.perf_counter()
        torch_peer.attribute(ref, sub.input_ids, sub.attention_mask, sub.option_ids, sub.gold, "grad_x_act", 1)
        peer_gxa_s = time.perf_counter() - t
        mine = np.asarray(ig.scores)[:p]
        diff = np.abs(mine - peer["scores"])
        res.update(peer_prompts=p, peer_ig_seconds=peer_s, peer_ig_prompts_per_s=p / peer_s,
                   peer_gxa_prompts_per_s=p / peer_gxa_s, ratio_ig=res["ours_ig_prompts_per_s"] / (p / peer_s),
                   ratio_gxa=res["ours_gxa_prompts_per_s"] / (p / peer_gxa_s), max_abs_diff=float(diff.max()),
                   max_rel_diff=float(diff.max() / np.abs(peer["scores"]).max()),
                   max_f_diff=float(np.abs(np.asarray(ig.f)[:p] - peer["f"]).max()))  # fmt: skip
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def report(r: dict) -> str:
    neurons = r["layers"] * r["mlp"]
    lines = [
        f"model {os.path.basename(r['model'])}, task {r['task']}, {r['prompts']} proxy prompts of {r['seq']} tokens "
        f"(padded {r['seq_padded']}), IG m={r['steps']}, {r['layers']} x {r['mlp']} = {neurons} neurons, "
        f"{r['cpu_count']} CPU cores",
        "",
        "| | ours (JAX, cached replay) | peer (PyTorch, hooks) | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    peer = "peer_ig_prompts_per_s" in r
    lines.append(f"| IG prompts/s | {r['ours_ig_prompts_per_s']:.3f} | "
                 + (f"{r['peer_ig_prompts_per_s']:.4f} | {r['ratio_ig']:.0f}x |" if peer else "- | - |"))  # fmt: skip
    lines.append(f"| IG neuron attributions/s | {r['ours_ig_prompts_per_s'] * neurons:,.0f} | "
                 + (f"{r['peer_ig_prompts_per_s'] * neurons:,.0f} | |" if peer else "- | |"))  # fmt: skip
    lines.append(f"| grad x act prompts/s | {r['ours_gxa_prompts_per_s']:.2f} | "
                 + (f"{r['peer_gxa_prompts_per_s']:.3f} | {r['ratio_gxa']:.0f}x |" if peer else "- | - |"))  # fmt: skip
    lines += [
        "",
        f"our IG: {r['ours_ig_flops_per_s'] / 1e9:.0f} GFLOP/s counted = {100 * r['ours_fraction_of_peak']:.0f}% of the "
        f"measured float32 matmul peak ({r['matmul_peak_flops'] / 1e9:.0f} GFLOP/s); compile {r['ours_ig_compile_seconds']:.0f} s "
        f"(IG), {r['ours_gxa_compile_seconds']:.0f} s (grad x act), not in the rates",
    ]
    if peer:
        lines.append(f"agreement on the {r['peer_prompts']} shared prompts: max |ours - peer| = {r['max_abs_diff']:.2e} "
                     f"({r['max_rel_diff']:.1e} of the largest score), max |F diff| = {r['max_f_diff']:.1e}")  # fmt: skip
    lines.append(f"peak resident memory of the run: {r['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint (default: embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--task", default=DEFAULT_TASK, help="task config whose identification proxies are used")
    ap.add_argument("--prompts", type=int, default=32, help="proxy prompts for our runs")
    ap.add_argument("--peer-prompts", type=int, default=2, help="prompts for the PyTorch peer (0: skip it)")
    ap.add_argument("--steps", type=int, default=16, help="IG steps m")
    ap.add_argument("--chunk", type=int, default=8, help="prompts per compiled call")
    ap.add_argument("--groups", type=int, default=4, help="layer groups of the IG replay")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
