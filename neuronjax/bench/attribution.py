"""Identification throughput: our IG against the PyTorch + transformers peer, same prompts, same m.

    python -m neuronjax.bench.attribution [--prompts 32] [--peer-prompts 2] [--steps 16] [--json OUT]
    neuronjax bench attribution --model-config configs/models/llama-3.1-8b.json --random-weights \
        --dtype bfloat16 --seq 128 --prompts 64 --chunk 8

With --model-config and --random-weights, the model is built from a Hugging Face config.json
with random weights (no download; they measure speed and memory, never neurons) and the prompts
are random token ids of --seq tokens with random candidate tokens: the real IG path at the real
shapes, without a peer (there are no weights to share with one).

The model is the embedded SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32 on both
sides). The prompts are one-shot AQUA-style proxies written here (NeuronLLM, arXiv 2601.04548,
Sec. 3): a role line, one solved demonstration, the question, its four lettered options and an
"Answer:" cue; each question appears with its options cyclically shifted so that the gold answer
lands on every letter. The candidate tokens of letter X are the tokenizer's "X" and " X".

Ours is `neuronjax.attribution.attribute` (the last position replayed against the prompt's
cache); the peer is `neuronjax.bench.torch_ig` (a hook on the down projection, the full prompt
recomputed for every (layer, alpha), the m alphas of a layer as one batch). The peer runs on the
first --peer-prompts prompts only (about a minute per prompt on 2 CPU cores), each prompt without
padding, in its own process, after one untimed warm-up call; the scores of those prompts must
agree before the speed figures mean anything.

FLOPs of our run: XLA's `cost_analysis` of the compiled call is printed, but it counts the body
of a `lax.scan` once rather than once per layer, so the fraction of peak is computed from the
analytic matmul count of `neuronjax.attribution.flops` (every matrix product of the prompt pass,
base pass and IG variants, forward and backward; elementwise work not counted). The peak is the
best float32 FLOP rate of a jitted 2048 x 2048 `jnp.dot` measured in the same process.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import resource
import sys
import time

import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.evaluation.results import write_json

ROLE = "You are a careful assistant. Answer each multiple-choice question with the letter of the correct option only."

# (question, options, index of the gold option): the demonstration, then the proxied questions.
DEMO = ("Which gas do plants take in from the air to make their food?",
        ["Oxygen", "Carbon dioxide", "Helium", "Neon"], 1)  # fmt: skip
QUESTIONS = [
    ("What is the capital city of France?", ["Paris", "Rome", "Madrid", "Berlin"], 0),
    ("Which planet is the largest in the solar system?", ["Mars", "Venus", "Jupiter", "Mercury"], 2),
    ("How many legs does a spider have?", ["Six", "Eight", "Ten", "Four"], 1),
    ("At what temperature in degrees Celsius does pure water freeze at sea level?", ["100", "50", "-10", "0"], 3),
    ("Which ocean lies between Africa and Australia?", ["Arctic Ocean", "Indian Ocean", "Atlantic Ocean",
                                                         "Southern Ocean"], 1),  # fmt: skip
    ("Who wrote the play Romeo and Juliet?", ["Charles Dickens", "Jane Austen", "William Shakespeare",
                                              "Mark Twain"], 2),  # fmt: skip
    ("What is the chemical symbol of gold?", ["Au", "Ag", "Go", "Gd"], 0),
    ("Which animal is the largest mammal on Earth?", ["African elephant", "Giraffe", "Hippopotamus",
                                                      "Blue whale"], 3),  # fmt: skip
]
LETTERS = "ABCD"
RULE = "right_riemann"  # the peer's quadrature rule (alpha_k = k / m), so that scores can be compared


def _block(question: str, options: list[str]) -> str:
    lines = [f"Question: {question}"] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines) + "\nAnswer:"


def proxy_texts(n: int) -> tuple[list[str], list[int]]:
    """n proxy prompts and their gold option index: question j with its options shifted by s
    (gold moves from option g to (g + s) % 4), cycling over (j, s)."""
    demo_q, demo_opts, demo_gold = DEMO
    head = f"{ROLE}\n\n{_block(demo_q, demo_opts)} {LETTERS[demo_gold]}\n\n"
    texts, gold = [], []
    for k in range(n):
        (q, opts, g), shift = QUESTIONS[k % len(QUESTIONS)], (k // len(QUESTIONS)) % 4
        shifted = [opts[(i - shift) % 4] for i in range(4)]
        texts.append(head + _block(q, shifted))
        gold.append((g + shift) % 4)
    return texts, gold


def letter_ids(tokenizer) -> np.ndarray:
    """int32 [4, 2]: the token ids of "X" and " X" for X = A..D (each must be one token)."""
    out = np.zeros((4, 2), np.int32)
    for i, letter in enumerate(LETTERS):
        for j, text in enumerate((letter, " " + letter)):
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) != 1:
                raise ConfigError(f"tokenizer: {text!r} is {len(ids)} tokens {ids}; expected one")
            out[i, j] = ids[0]
    return out


def prompt_arrays(tokenizer, n: int, pad_id: int) -> dict:
    """Left-padded numpy arrays: input_ids, attention_mask [n, seq], option_ids [n, 4, 2], gold [n]."""
    texts, gold = proxy_texts(n)
    rows = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    width = max(len(r) for r in rows)
    ids = np.full((n, width), pad_id, np.int32)
    mask = np.zeros((n, width), np.int32)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    opts = np.broadcast_to(letter_ids(tokenizer), (n, 4, 2)).copy()
    return dict(input_ids=ids, attention_mask=mask, option_ids=opts, gold=np.asarray(gold, np.int32))


def synthetic_arrays(vocab: int, n: int, seq: int, seed: int = 0) -> dict:
    """Random full-length prompts [n, seq] and two random candidate tokens per option (distinct
    across the options of a row), gold cycling over the letters."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, vocab, (n, seq)).astype(np.int32)
    opts = np.stack([rng.choice(np.arange(10, vocab), 8, replace=False).reshape(4, 2) for _ in range(n)]).astype(np.int32)
    return dict(input_ids=ids, attention_mask=np.ones((n, seq), np.int32), option_ids=opts,
                gold=(np.arange(n) % 4).astype(np.int32))  # fmt: skip


def random_model(model_config: str, dtype: str, seed: int = 0):
    """A LanguageModel with random weights of a Hugging Face config.json's architecture."""
    import jax.numpy as jnp
    from flax import nnx

    from neuronjax.lm import LanguageModel
    from neuronjax.models.decoder import Decoder
    from neuronjax.plan import load_model_config

    cfg = load_model_config(model_config)
    graphdef, state = nnx.split(Decoder(cfg, jnp.dtype(dtype), rngs=nnx.Rngs(seed)))
    return LanguageModel(graphdef, state, cfg, None, None, dtype, f"random weights of {model_config}")


def matmul_peak(n: int = 2048, repeats: int = 10, dtype: str = "float32") -> float:
    """Best FLOP/s of a jitted n x n `jnp.dot` in `dtype` on the default device."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _rss_mib() -> float:
    """Peak resident memory of this process (ru_maxrss; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _own_peak_rss_mib() -> float:
    """Peak resident memory of this process image. In a spawned child ru_maxrss still holds the
    parent's figure (Linux keeps it across fork and exec), so read VmHWM, which exec resets."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mib()


def run_ours(lm, arrays: dict, steps: int, chunk: int) -> dict:
    """Our IG and grad x act: a warm-up call on the first chunk (compile), then the timed run."""
    import jax

    from neuronjax.attribution import PromptBatch, attribute
    from neuronjax.attribution.engine import attribute_compiled, pad_rows
    from neuronjax.attribution.flops import attribution_flops

    batch = PromptBatch(**arrays)
    n, seq = arrays["input_ids"].shape
    chunk = min(chunk, n)
    first = PromptBatch(**{k: v[:chunk] for k, v in arrays.items()})
    out: dict = {"chunk": chunk}
    for method, m in (("ig", steps), ("grad_x_act", 1)):
        t = time.perf_counter()
        jax.block_until_ready(attribute(lm, first, method, m, chunk=chunk, rule=RULE))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        res = attribute(lm, batch, method, m, chunk=chunk, rule=RULE)
        jax.block_until_ready(res)
        seconds = time.perf_counter() - t
        out[method] = dict(result=res, seconds=seconds, first_call_seconds=compile_s, prompts_per_s=n / seconds)

    # FLOPs of the IG run: the analytic matmul count, and XLA's count of one compiled call.
    defaults = {k: v.default for k, v in inspect.signature(attribute).parameters.items()}
    groups, bucket = defaults["groups"], defaults["seq_bucket"]
    seq_padded = -(-seq // bucket) * bucket
    calls = -(-n // chunk)
    out["seq_padded"] = seq_padded
    out["flops_analytic"] = calls * attribution_flops(lm.config, chunk, seq_padded, "ig", steps, groups)["total"]
    try:
        part = jax.tree.map(lm.place, pad_rows(first, chunk, seq_padded))
        compiled = attribute_compiled.lower(lm.state, part, graphdef=lm.graphdef, method="ig", steps=steps,
                                            groups=groups, rule=RULE).compile()  # fmt: skip
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out["flops_xla"] = calls * float(cost.get("flops", float("nan")))
    except Exception as e:  # the engine's internals may move; the analytic count is the one used
        out["flops_xla"] = float("nan")
        out["flops_xla_error"] = f"{type(e).__name__}: {e}"
    return out


def _peer_worker(path: str, rows: list, steps: int) -> dict:
    """Runs in a fresh process (no JAX thread pool competing with torch's threads)."""
    import torch
    from transformers import AutoModelForCausalLM

    from neuronjax.bench import torch_ig

    torch.set_num_threads(os.cpu_count() or 1)
    if path.endswith(".gguf"):
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                     dtype=torch.float32)  # fmt: skip
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    out: dict = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "attn_implementation": model.config._attn_implementation}  # fmt: skip
    t = time.perf_counter()
    torch_ig.attribute(model, *rows[0], method="grad_x_act")  # warm-up, not timed (like our compile)
    out["warmup_seconds"] = time.perf_counter() - t
    for method, m in (("ig", steps), ("grad_x_act", 1)):
        t = time.perf_counter()
        parts = [torch_ig.attribute(model, *row, method=method, steps=m) for row in rows]
        seconds = time.perf_counter() - t
        res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out[method] = dict(result=res, seconds=seconds, prompts_per_s=len(rows) / seconds)
    out["peak_rss_mib"] = _own_peak_rss_mib()
    return out


def run_peer(path: str, arrays: dict, steps: int, prompts: int) -> dict:
    """The PyTorch peer on the first `prompts` prompts, each run without its padding, in a
    separate process: on a 2-core machine, torch's threads sharing a process with XLA's thread
    pool ran 10x (IG) to 60x (grad x act) slower in our measurements."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for b in range(prompts):
        keep = arrays["attention_mask"][b] == 1
        rows.append((arrays["input_ids"][b][keep][None], arrays["attention_mask"][b][keep][None],
                     arrays["option_ids"][b : b + 1], arrays["gold"][b : b + 1]))  # fmt: skip
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peer_worker, path, rows, steps).result()


def agreement(ours, peer: dict, p: int) -> dict:
    """Differences on the shared prompts. rel = |ours - peer| / max |peer| (over the whole array)."""
    a, b = np.asarray(ours.scores)[:p].astype(np.float64), peer["scores"].astype(np.float64)
    d = np.abs(a - b)
    big = np.abs(b) > 1e-2 * np.abs(b).max()
    return dict(max_abs=float(d.max()), max_score=float(np.abs(b).max()), max_rel=float(d.max() / np.abs(b).max()),
                max_rel_elementwise_above_1pct=float((d[big] / np.abs(b[big])).max()),
                max_f_diff=float(np.abs(np.asarray(ours.f)[:p] - peer["f"]).max()),
                max_option_score_diff=float(np.abs(np.asarray(ours.option_scores)[:p] - peer["option_scores"]).max()),
                )  # fmt: skip


def run(args) -> dict:
    import jax

    import neuronjax

    load = os.getloadavg()
    if args.random_weights:
        if not args.model_config:
            raise ConfigError("--random-weights needs --model-config FILE (a Hugging Face config.json)")
        path = args.model_config
        peak = matmul_peak(4096 if jax.default_backend() != "cpu" else 2048, dtype=args.dtype)
        lm = random_model(path, args.dtype)
        arrays = synthetic_arrays(lm.config.vocab_size, args.prompts, args.seq)
        args.peer_prompts = 0  # no weights to share with a peer
    else:
        path = args.model or neuronjax.default_model_path()
        peak = matmul_peak(dtype=args.dtype)
        lm = neuronjax.load_model(path, dtype=args.dtype)
        arrays = prompt_arrays(lm.tokenizer, args.prompts, lm.pad_id)
    c = lm.config
    lengths = arrays["attention_mask"].sum(axis=1)
    r: dict = dict(model=os.path.basename(path), layers=c.num_layers, mlp=c.intermediate_size, steps=args.steps,
                   prompts=args.prompts, prompt_tokens_mean=float(lengths.mean()), prompt_tokens_max=int(lengths.max()),
                   machine=dict(cpu_count=os.cpu_count(), platform=platform.platform(), jax=jax.__version__,
                                device=str(jax.devices()[0]), loadavg_at_start=load),
                   matmul_peak_flops=peak, dtype=args.dtype, random_weights=bool(args.random_weights))  # fmt: skip
    neurons = c.num_layers * c.intermediate_size

    # --- ours: neuronjax.attribution.attribute ---
    ours = run_ours(lm, arrays, args.steps, args.chunk)
    r["ours"] = {m: {k: v for k, v in ours[m].items() if k != "result"} for m in ("ig", "grad_x_act")}
    r["ours"]["ig"]["neuron_attributions_per_s"] = ours["ig"]["prompts_per_s"] * neurons
    r["ours"].update({k: ours[k] for k in ("chunk", "seq_padded", "flops_analytic", "flops_xla")})
    if "flops_xla_error" in ours:
        r["ours"]["flops_xla_error"] = ours["flops_xla_error"]
    r["ours"]["ig"]["flops_per_s"] = ours["flops_analytic"] / ours["ig"]["seconds"]
    r["ours"]["ig"]["fraction_of_peak"] = r["ours"]["ig"]["flops_per_s"] / peak

    # --- the PyTorch peer ---
    p = min(args.peer_prompts, args.prompts)
    if p > 0:
        peer = run_peer(path, arrays, args.steps, p)
        r["peer"] = {m: {k: v for k, v in peer[m].items() if k != "result"} for m in ("ig", "grad_x_act")}
        r["peer"].update({k: peer[k] for k in ("torch", "torch_threads", "attn_implementation", "warmup_seconds",
                                               "peak_rss_mib")}, prompts=p)  # fmt: skip
        r["peer"]["ig"]["neuron_attributions_per_s"] = peer["ig"]["prompts_per_s"] * neurons
        for m in ("ig", "grad_x_act"):
            r[f"speedup_{m}"] = ours[m]["prompts_per_s"] / peer[m]["prompts_per_s"]
        r["agreement_ig"] = agreement(ours["ig"]["result"], peer["ig"]["result"], p)
        r["agreement_grad_x_act"] = agreement(ours["grad_x_act"]["result"], peer["grad_x_act"]["result"], p)
    r["machine"]["loadavg_at_end"] = os.getloadavg()
    r["peak_rss_mib"] = _rss_mib()
    return r


def report(r: dict) -> str:
    o, peer = r["ours"], r.get("peer")
    rows = [("IG prompts/s", o["ig"]["prompts_per_s"], peer and peer["ig"]["prompts_per_s"], r.get("speedup_ig")),
            ("IG neuron attributions/s", o["ig"]["neuron_attributions_per_s"],
             peer and peer["ig"]["neuron_attributions_per_s"], None),
            ("grad x act prompts/s", o["grad_x_act"]["prompts_per_s"], peer and peer["grad_x_act"]["prompts_per_s"],
             r.get("speedup_grad_x_act"))]  # fmt: skip
    fmt = lambda x: "-" if x is None else (f"{x:,.0f}" if x >= 1000 else f"{x:.4g}")  # noqa: E731
    lines = [
        f"{r['model']}{' (random weights)' if r.get('random_weights') else ''}: {r['layers']} layers x {r['mlp']} "
        f"neurons, {r.get('dtype', 'float32')}, IG m={r['steps']}, {r['prompts']} "
        f"{'random-token' if r.get('random_weights') else 'one-shot proxy'} prompts of "
        f"{r['prompt_tokens_mean']:.0f} tokens (max {r['prompt_tokens_max']}), "
        f"{r['machine']['cpu_count']} CPU cores, load average {r['machine']['loadavg_at_start'][0]:.1f} at start",
        "",
        f"{'':26} {'ours (JAX)':>12} {'peer (torch)':>13} {'ours/peer':>10}",
    ]
    for name, a, b, s in rows:
        lines.append(f"{name:26} {fmt(a):>12} {fmt(b):>13} {('-' if s is None else f'{s:.1f}x'):>10}")
    lines += [
        "",
        f"ours: IG {o['ig']['seconds']:.1f} s for {r['prompts']} prompts (first call incl. compile "
        f"{o['ig']['first_call_seconds']:.1f} s), grad x act {o['grad_x_act']['seconds']:.2f} s "
        f"(first call {o['grad_x_act']['first_call_seconds']:.1f} s); chunk {o['chunk']}, "
        f"seq padded to {o['seq_padded']}",
        f"ours: {o['flops_analytic'] / 1e12:.2f} TFLOP counted analytically ({o['flops_xla'] / 1e12:.2f} by XLA "
        f"cost_analysis, which counts a scan body once) -> {o['ig']['flops_per_s'] / 1e9:.1f} GFLOP/s = "
        f"{100 * o['ig']['fraction_of_peak']:.1f}% of the measured {r['dtype']} matmul peak "
        f"({r['matmul_peak_flops'] / 1e9:.1f} GFLOP/s, jnp.dot)",
    ]
    if peer:
        a, g = r["agreement_ig"], r["agreement_grad_x_act"]
        lines += [
            f"peer: {peer['prompts']} prompts, IG {peer['ig']['seconds']:.1f} s, grad x act "
            f"{peer['grad_x_act']['seconds']:.1f} s (warm-up call {peer['warmup_seconds']:.1f} s not counted; "
            f"torch {peer['torch']}, {peer['torch_threads']} threads, {peer['attn_implementation']} attention, "
            "own process)",
            f"agreement, IG scores on the shared prompts: max |ours - peer| = {a['max_abs']:.2e}, "
            f"max relative = {a['max_rel']:.2e} of the largest |score| ({a['max_score']:.3g}); "
            f"elementwise on |score| > 1% of max: {a['max_rel_elementwise_above_1pct']:.2e}; "
            f"max |F diff| = {a['max_f_diff']:.1e}",
            f"agreement, grad x act: max |ours - peer| = {g['max_abs']:.2e} ({g['max_rel']:.2e} of the largest)",
        ]
    lines.append(f"peak resident memory (ru_maxrss): ours {r['peak_rss_mib']:.0f} MiB (benchmark process: model, "
                 "prompts, both methods)" + (f", peer {peer['peak_rss_mib']:.0f} MiB (own process)" if peer else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench attribution", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model", default=None,
                    help="checkpoint: GGUF file or directory (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--prompts", type=int, default=32, help="proxy prompts for our runs")
    ap.add_argument("--peer-prompts", type=int, default=2, help="prompts for the PyTorch peer (0: skip it)")
    ap.add_argument("--steps", type=int, default=16, help="IG steps m")
    ap.add_argument("--chunk", type=int, default=8, help="prompts per compiled call of ours")
    ap.add_argument("--json", default=None, help="also write every figure here")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="parameter and matmul dtype")
    ap.add_argument("--model-config", default=None, help="a Hugging Face config.json (with --random-weights)")
    ap.add_argument("--random-weights", action="store_true", help="random weights of --model-config, random token prompts")
    ap.add_argument("--seq", type=int, default=128, help="prompt tokens with --random-weights")
    args = ap.parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
