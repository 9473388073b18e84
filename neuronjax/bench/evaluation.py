"""Evaluation throughput: held-out option scores under many interventions, ours against a PyTorch peer.

    neuronjax bench evaluation [--items N] [--interventions 64] [--neurons 100] [--peer-interventions 4]
        [--json OUT]

Model: the embedded SmolLM2-135M-Instruct (float32 on both sides). Prompts: every held-out
(evaluate) proxy of the first --items items of configs/tasks/world_facts.yaml, tokenized and
batched by the task pipeline as a run does; an option's score is the log-probability of its first
token at the last position (world_facts' option_score). Interventions: the identity, then random
sets of --neurons (layer, neuron) pairs, alternately suppressed (x0) and enhanced (x2) at the last
position, the edits of NeuronLLM's evaluation (arXiv 2601.04548, Sec. 4).

Ours: `neuronjax.evaluation.score_interventions` (per batch the prompt once with its KV cache,
then the last token once per intervention against it, 32 interventions per compiled call), timed
after a first call on the same inputs (compile). The peer (`peer_scores`) is written the way
research code does it: for each intervention, each batch of prompts is rerun in full with a
forward pre-hook on every layer's down projection that edits the last position
(h * scale + shift), then the log-softmax of the last position's logits and the logsumexp over
each option's candidate tokens; `torch.inference_mode`, torch's threads = the cores, its own
process, one untimed warm-up call, the first --peer-interventions interventions.

The figure is intervention-prompt scorings per second (interventions x prompts / seconds); ratio
= ours / peer. The scores of the interventions both ran are compared before the ratio counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

import numpy as np

from neuronjax.bench import cpu_model
from neuronjax.bench.attribution import own_peak_rss_mib
from neuronjax.evaluation.results import write_json


def random_interventions(num_layers: int, mlp: int, count: int, neurons: int, seed: int = 0) -> tuple:
    """(scale, shift) float32 [count, layers, mlp]: the identity, then `neurons` random neurons
    per intervention scaled by 0 and 2 in turn (shift 0)."""
    rng = np.random.default_rng(seed)
    scale = np.ones((count, num_layers * mlp), np.float32)
    for v in range(1, count):
        scale[v, rng.choice(num_layers * mlp, neurons, replace=False)] = 0.0 if v % 2 else 2.0
    return scale.reshape(count, num_layers, mlp), np.zeros((count, num_layers, mlp), np.float32)


def peer_scores(model, input_ids, attention_mask, option_tokens, scales, shifts) -> np.ndarray:
    """float32 [intervention, batch, option]: each intervention's option scores from a full rerun
    of the prompts with every down projection's input edited at the last position.

    input_ids, attention_mask: int [batch, seq], left-padded; option_tokens: int [batch, option,
    candidate] (-1 = none); scales, shifts: float32 [intervention, layers, mlp]."""
    import torch

    from neuronjax.bench.torch_ig import down_projections, position_ids

    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    mask = torch.as_tensor(np.asarray(attention_mask), dtype=torch.long)
    pos = torch.as_tensor(position_ids(np.asarray(attention_mask)), dtype=torch.long)
    opts = torch.as_tensor(np.asarray(option_tokens), dtype=torch.long)
    current = {}

    def hook(layer):
        def edit(module, args):
            (x,) = args
            last = x[:, -1].float() * current["scale"][layer] + current["shift"][layer]
            return (torch.cat([x[:, :-1], last.to(x.dtype)[:, None]], dim=1),)

        return edit

    handles = [down.register_forward_pre_hook(hook(layer)) for layer, down in enumerate(down_projections(model))]
    out = []
    try:
        with torch.inference_mode():
            for scale, shift in zip(scales, shifts):
                current["scale"], current["shift"] = torch.as_tensor(scale), torch.as_tensor(shift)
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1]
                log_probs = torch.log_softmax(logits.float(), dim=-1)
                picked = log_probs.gather(1, opts.clamp(min=0).flatten(1)).view(opts.shape)
                out.append(torch.logsumexp(picked.masked_fill(opts < 0, float("-inf")), dim=-1).numpy())
    finally:
        for handle in handles:
            handle.remove()
    return np.stack(out).astype(np.float32)


def _peer_worker(path: str, batches: list, scales, shifts) -> dict:
    """Runs in a fresh process (no XLA thread pool beside torch's threads)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    if path.endswith(".gguf"):
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                     dtype=torch.float32)  # fmt: skip
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    t = time.perf_counter()
    peer_scores(model, *batches[0], scales[:1], shifts[:1])  # warm-up, not timed
    warmup = time.perf_counter() - t
    t = time.perf_counter()
    scores = np.concatenate([peer_scores(model, *b, scales, shifts) for b in batches], axis=1)
    seconds = time.perf_counter() - t
    return {"scores": scores, "seconds": seconds, "warmup_seconds": warmup, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "peak_rss_mib": own_peak_rss_mib()}  # fmt: skip


def run_peer(path: str, batches: list, scales, shifts) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peer_worker, path, batches, scales, shifts).result()


def run(args) -> dict:
    import jax
    import jax.numpy as jnp

    import neuronjax
    from neuronjax.distributed import global_batches
    from neuronjax.evaluation import score_interventions
    from neuronjax.intervention import Intervention
    from neuronjax.tasks.build import encode_task
    from neuronjax.tasks.measure import task_config

    load = os.getloadavg()
    path = args.model or neuronjax.default_model_path()
    lm = neuronjax.load_model(path)
    c = lm.config
    encoded = encode_task(task_config(args.task), lm.tokenizer, "evaluate", max_items=args.items)
    scales, shifts = random_interventions(c.num_layers, c.intermediate_size, args.interventions, args.neurons)
    ivs = [Intervention(jnp.asarray(a), jnp.asarray(b), "last") for a, b in zip(scales, shifts)]

    t = time.perf_counter()
    score_interventions(lm, encoded, ivs)
    first = time.perf_counter() - t
    t = time.perf_counter()
    ours = score_interventions(lm, encoded, ivs)
    seconds = time.perf_counter() - t
    prompts = ours.scores.shape[1]
    machine = {"cpu_count": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(), "jax": jax.__version__,
               "device": str(jax.devices()[0]), "loadavg_at_start": load}  # fmt: skip
    r: dict = {"model": os.path.basename(path), "layers": c.num_layers, "mlp": c.intermediate_size, "task": args.task,
               "items": len(encoded.items), "prompts": prompts, "interventions": args.interventions,
               "neurons": args.neurons, "machine": machine,
               "ours": {"seconds": seconds, "first_call_seconds": first,
                        "scorings_per_s": args.interventions * prompts / seconds}}  # fmt: skip

    v = min(args.peer_interventions, args.interventions)
    if v > 0 and importlib.util.find_spec("torch") is None:
        r["peer_skipped"] = "torch is not installed (pip install 'neuronjax[test]')"
    elif v > 0:
        batches = []
        for b in global_batches(encoded):
            keep = np.asarray(b["valid"], bool)
            ids, mask = b["input_ids"][keep], b["attention_mask"][keep]
            first_col = int(np.argmax(mask.any(axis=0)))  # columns that are padding in every row go
            batches.append((ids[:, first_col:], mask[:, first_col:], b["option_tokens"][keep]))
        peer = run_peer(path, batches, scales[:v], shifts[:v])
        d = np.abs(ours.scores[:v].astype(np.float64) - peer["scores"])
        r["peer"] = {k: peer[k] for k in ("seconds", "warmup_seconds", "torch", "torch_threads", "peak_rss_mib")}
        r["peer"].update(interventions=v, scorings_per_s=v * prompts / peer["seconds"])
        r["ratio"] = r["ours"]["scorings_per_s"] / r["peer"]["scorings_per_s"]
        scale = float(np.abs(peer["scores"]).max())
        r["agreement"] = {"max_abs": float(d.max()), "max_score": scale, "max_rel": float(d.max()) / scale}
    r["machine"]["loadavg_at_end"] = os.getloadavg()
    return r


def report(r: dict) -> str:
    o, m = r["ours"], r["machine"]
    lines = [
        (
            f"{r['model']}: {r['layers']} layers x {r['mlp']} neurons, float32; {r['prompts']} held-out {r['task']} "
            f"proxies ({r['items']} items), {r['interventions']} interventions (identity, then {r['neurons']} random "
            f"neurons x0 / x2 at the last position); {m['cpu_count']} CPU cores, load average "
            f"{m['loadavg_at_start'][0]:.1f} at start, {m['loadavg_at_end'][0]:.1f} at end"
        ),
        "",
        (
            f"ours (score_interventions): {o['scorings_per_s']:,.1f} intervention-prompt scorings/s "
            f"({o['seconds']:.2f} s; first call incl. compile {o['first_call_seconds']:.1f} s)"
        ),
    ]
    if "peer" in r:
        p, a = r["peer"], r["agreement"]
        lines.append(
            f"peer (torch, prompt rerun per intervention): {p['scorings_per_s']:,.1f} scorings/s "
            f"({p['interventions']} interventions, {p['seconds']:.1f} s; warm-up {p['warmup_seconds']:.1f} s not "
            f"counted; torch {p['torch']}, {p['torch_threads']} threads, own process, peak resident memory "
            f"{p['peak_rss_mib']:.0f} MiB)"
        )
        lines.append(
            f"agreement on the shared interventions: max |ours - peer| = {a['max_abs']:.2e} "
            f"({a['max_rel']:.2e} of the largest |score|, {a['max_score']:.3g})"
        )
        lines.append(f"ratio ours / peer: {r['ratio']:.1f}x")
    elif "peer_skipped" in r:
        lines.append(f"peer skipped: {r['peer_skipped']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench evaluation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model", default=None, help="checkpoint (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--task", default="world_facts", help="task config name (configs/tasks/)")
    ap.add_argument("--items", type=int, default=None, help="held-out items (default: all)")
    ap.add_argument("--interventions", type=int, default=64, help="interventions scored by ours")
    ap.add_argument("--neurons", type=int, default=100, help="neurons edited per intervention")
    ap.add_argument("--peer-interventions", type=int, default=4, help="interventions scored by the peer (0: skip)")
    ap.add_argument("--json", default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
