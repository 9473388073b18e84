"""Identification throughput: our IG against the strongest PyTorch peers, same prompts, same m.

    neuronjax bench attribution [--prompts 32] [--peer-prompts 2] [--cached-prompts N] [--steps 16]
        [--captum-batch-sizes 2,4,8,16] [--reference-prompts 4] [--json OUT]
    neuronjax bench attribution --model-config configs/models/llama-3.1-8b.json --random-weights \
        --dtype bfloat16 --seq 128 --prompts 64 --chunk 8

The model is the embedded SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32 on both
sides). The prompts are one-shot AQUA-style proxies written here (NeuronLLM, arXiv 2601.04548,
Sec. 3): a role line, one solved demonstration, the question, its four lettered options and an
"Answer:" cue; each question appears with its options cyclically shifted so that the gold answer
lands on every letter. The candidate tokens of letter X are the tokenizer's "X" and " X".

Ours is `neuronjax.attribution.attribute` (the last position replayed against the prompt's
cache), timed with the peers' rule (right Riemann, m = --steps) and again with our default rule
and m. The peers, each on the same weights and the same prompts, IG and grad x act:

- research_code (`torch_ig.attribute`): a hook on the down projection, the full prompt
  recomputed for every (layer, alpha), the m alphas of a layer as one batch; --peer-prompts.
- captum (`torch_ig.attribute_captum`): Captum's LayerIntegratedGradients per layer over the
  down projection's input at the last position, right Riemann, its ``internal_batch_size`` tuned
  first (IG of one layer of the first prompt timed for each of --captum-batch-sizes; the fastest
  is used); --peer-prompts (skipped, with the reason in the output, when captum is missing).
- torch_cached (`torch_cached.attribute`): our algorithm in PyTorch (prompt cache, one-token
  replay of the batched variants, one backward per layer group), --chunk prompts per call;
  --cached-prompts (default: all).

The peers run in one separate process (torch's threads = the cores, no XLA thread pool beside
them), each prompt of the first two without padding, after an untimed warm-up call. Timing:
ours runs once untimed on every prompt (every program the timed calls need compiles there), then
--repeats times timed, and the fastest call counts; the cached port, after its warm-up, is timed
--repeats times too and its fastest counts; the research code and Captum (minutes per prompt)
are timed once. Every timed call is in the JSON ("all_seconds"). A peer's
scores are compared with ours on the prompts it ran before its speed counts (max_rel_diff:
max |ours - peer| / max |peer|); ratio = ours / peer in prompts per second.

Quadrature error: the timed runs' IG against Gauss-Legendre with 128 nodes (converged; see
`neuronjax bench quadrature`) on the first --reference-prompts prompts (at least the peers'),
relative L2 per prompt over every neuron. ``ratio_equal_accuracy``: our default rule and m
against the research-code peer at right Riemann m = --steps, each error printed beside it.

FLOPs of our run: the analytic matmul count of `neuronjax.attribution.flops` (every matrix
product of the prompt pass, base pass and IG variants, forward and backward; elementwise work
not counted); XLA's `cost_analysis` is printed too but counts a `lax.scan` body once. The
machine's matmul limit is the best float32 FLOP rate of a 2048 x 2048 product by `jnp.dot`,
numpy and torch (each the best of 10 calls, taken in --matmul-rounds rounds at the start of the
run and once more before each of our --repeats timed IG calls; torch's in --matmul-rounds rounds
at the start and the end of the peers' process); the fraction of it our IG reaches is
reported, with a warning when it is above 1 (the machine was slower during every reading than
during our calls, so the limit was not read). On a GPU or TPU the limit is `jnp.dot` alone, of
an 8192 x 8192 product in the run's dtype.

With --model-config and --random-weights, the model is built from a Hugging Face config.json
with random weights (no download; they measure speed and memory, never neurons) and the prompts
are random token ids of --seq tokens with random candidate tokens: the real IG path at the real
shapes, without peers or reference (there are no weights to share).

Size: one benchmark, its three peers and their report; the peers themselves live in
`torch_ig` and `torch_cached`.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import platform
import resource
import sys
import time

import numpy as np

from neuronjax import hugepages
from neuronjax.bench import cpu_model, timed_calls
from neuronjax.errors import ConfigError
from neuronjax.evaluation.results import write_json
from neuronjax.kernels import choice as kernel_choice

ROLE = "You are a careful assistant. Answer each multiple-choice question with the letter of the correct option only."

# (question, options, index of the gold option): the demonstration, then the proxied questions.
DEMO = ("Which gas do plants take in from the air to make their food?",
        ["Oxygen", "Carbon dioxide", "Helium", "Neon"], 1)  # fmt: skip
QUESTIONS = [
    ("What is the capital city of France?", ["Paris", "Rome", "Madrid", "Berlin"], 0),
    ("Which planet is the largest in the solar system?", ["Mars", "Venus", "Jupiter", "Mercury"], 2),
    ("How many legs does a spider have?", ["Six", "Eight", "Ten", "Four"], 1),
    ("At what temperature in degrees Celsius does pure water freeze at sea level?", ["100", "50", "-10", "0"], 3),
    (
        "Which ocean lies between Africa and Australia?",
        ["Arctic Ocean", "Indian Ocean", "Atlantic Ocean", "Southern Ocean"],
        1,
    ),
    (
        "Who wrote the play Romeo and Juliet?",
        ["Charles Dickens", "Jane Austen", "William Shakespeare", "Mark Twain"],
        2,
    ),
    ("What is the chemical symbol of gold?", ["Au", "Ag", "Go", "Gd"], 0),
    ("Which animal is the largest mammal on Earth?", ["African elephant", "Giraffe", "Hippopotamus", "Blue whale"], 3),
]
LETTERS = "ABCD"
RULE = "right_riemann"  # the peers' quadrature rule (alpha_k = k / m), so that scores can be compared
REFERENCE_NODES = 128  # Gauss-Legendre nodes of the converged reference (bench quadrature: within 7e-6 of 96)


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
    return {"input_ids": ids, "attention_mask": mask, "option_ids": opts, "gold": np.asarray(gold, np.int32)}


def synthetic_arrays(vocab: int, n: int, seq: int, seed: int = 0) -> dict:
    """Random full-length prompts [n, seq] and two random candidate tokens per option (distinct
    across the options of a row), gold cycling over the letters."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, vocab, (n, seq)).astype(np.int32)
    opts = np.stack([rng.choice(np.arange(10, vocab), 8, replace=False).reshape(4, 2) for _ in range(n)]).astype(
        np.int32
    )
    return {
        "input_ids": ids,
        "attention_mask": np.ones((n, seq), np.int32),
        "option_ids": opts,
        "gold": (np.arange(n) % 4).astype(np.int32),
    }


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
    return _best_rate(lambda: dot(a, b).block_until_ready(), n, repeats)


def numpy_matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 FLOP/s of an n x n product in numpy (its own BLAS)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    return _best_rate(lambda: a @ b, n, repeats)


def torch_matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 FLOP/s of an n x n `torch.matmul` (torch's threads as set by the caller)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen) for _ in range(2))
    with torch.inference_mode():
        return _best_rate(lambda: torch.matmul(a, b), n, repeats)


def read_limits(readings: dict, n: int, dtype: str, rounds: int, cpu: bool) -> None:
    """Appends `rounds` readings of `jnp.dot`'s n^3 rate (and numpy's, float32 on a CPU) to
    readings {library: [FLOP/s, ...]}. The benchmark reads them at its start and again before each
    of our timed IG calls, and the best of all sets the limit: a machine slowed for a while (one
    run of 2026-12-03 read `jnp.dot` and numpy at half their rate at its start, torch at its full
    rate minutes later) then does not set a limit below what it reaches."""
    readings.setdefault("jnp.dot", []).extend(matmul_peak(n, dtype=dtype) for _ in range(rounds))
    if dtype == "float32" and cpu:
        readings.setdefault("numpy", []).extend(numpy_matmul_peak(n) for _ in range(rounds))


def _best_rate(call, n: int, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _rss_mib() -> float:
    """Peak resident memory of this process (ru_maxrss; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mib() -> float:
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


def default_attribution():
    """The attribution settings of the main command's config (`neuronjax run default`): its rule,
    steps and layer_steps are "our default" of the benchmark."""
    from neuronjax.config import load_run_config
    from neuronjax.shipped import config_path

    return load_run_config(config_path("default")).identify.attribution


def nodes_label(run: dict) -> str:
    """'m=4' or 'm=4 (layer 0: 32)' for a run's record."""
    extra = ", ".join(f"layer {k}: {v}" for k, v in (run.get("layer_steps") or {}).items())
    return f"m={run['steps']}" + (f" ({extra})" if extra else "")


def _usage_line(usage: list) -> str:
    """The timed calls' user and kernel CPU seconds, page faults and stolen seconds
    (`bench.usage_between`), in their order: a slow call with the user time of a fast one waited
    (on the kernel, or on other guests: stolen), one with more user time did its work slower."""
    parts = []
    for u in usage:
        steal = "" if u.get("steal_s") is None else f", stolen {u['steal_s']:.2f} s"
        parts.append(f"user {u['user_s']:.1f} s, kernel {u['kernel_s']:.2f} s ({u['page_faults']} page faults{steal})")
    return "; ".join(parts)


def run_ours(lm, arrays: dict, runs: dict, chunk: int, repeats: int = 1, beside=None) -> dict:
    """Our timed runs, runs = {name: (method, m, rule[, layer_steps])}: each an untimed warm-up call
    on every prompt (it compiles every program the timed calls run: chunks of another width after
    the shared prefix need a prompt pass of their own), then ``repeats`` timed calls on every
    prompt, the fastest of which counts (all in "all_seconds"); the FLOPs of the run named "ig".
    beside: called before each timed call of the run named "ig" (the benchmark reads the matmul
    limit there, so that its readings and our calls share the same minutes)."""
    import jax

    from neuronjax.attribution import PromptBatch, attribute
    from neuronjax.attribution.engine import (
        attribute_compiled, chunks_in_flight, pad_rows, replay_rows, resolve_groups, resolve_replay,
    )
    from neuronjax.attribution.quadrature import layer_schedule
    from neuronjax.attribution.flops import attribution_flops
    from neuronjax.attribution.last_token import halves_for
    from neuronjax.cached import smallest_window, split_prefix

    batch = PromptBatch(**arrays)
    n, seq = arrays["input_ids"].shape
    chunk = min(chunk, n)
    out: dict = {"chunk": chunk, "repeats": repeats}
    # the replay, groups and halves `attribute` runs with its defaults (the calls below give none of them)
    defaults = {k: v.default for k, v in inspect.signature(attribute).parameters.items()}
    replay = resolve_replay(defaults["replay"])
    groups, bucket = resolve_groups(defaults["groups"], replay), defaults["seq_bucket"]
    halves = halves_for(defaults["halves_from"])
    for name, (method, m, rule, *extra) in runs.items():
        layer_steps = extra[0] if extra else None
        # how many of its calls run at once (`engine.chunks_in_flight`: two on one CPU device while
        # both calls' replay rows fit the row budget)
        rows = 1
        if method == "ig":
            rows = replay_rows(layer_schedule(lm.config.num_layers, m, layer_steps), groups, replay)
        depth = chunks_in_flight(lm, -(-n // chunk), chunk * rows)
        # A warm-up of the first chunk alone left compiles in the timed call: on 16 world_facts
        # prompts in calls of 8, the second chunk's rows after the shared prefix are wider and
        # its prompt pass compiled in the timed call (0.7 s of a 7.6 s IG call at m = 16; the
        # next calls took 6.2-6.6 s, 2026-12-03, docs/performance.md)
        def call():
            return jax.block_until_ready(attribute(lm, batch, method, m, chunk=chunk, rule=rule, layer_steps=layer_steps))

        usage: list = []  # per timed call: kernel time, page faults, stolen time (what slowed a slow call)
        res, first_s, timed = timed_calls(call, repeats, before=beside if name == "ig" else None, usage=usage)
        seconds = min(timed)
        out[name] = {
            "result": res,
            "seconds": seconds,
            "all_seconds": timed,
            "all_usage": usage,
            "first_call_seconds": first_s,
            "prompts_per_s": n / seconds,
            "steps": m,
            "rule": rule,
            "calls_in_flight": depth,
        }
        if layer_steps:
            out[name]["layer_steps"] = {str(k): v for k, v in layer_steps.items()}

    # FLOPs of the IG run: the analytic matmul count, and XLA's count of one compiled call.
    _, steps, rule, *_ = runs["ig"]
    out["replay"], out["groups"], out["halves_from"] = replay, groups, halves
    seq_padded = -(-seq // bucket) * bucket
    calls = -(-n // chunk)
    out["seq_padded"] = seq_padded
    # attribute() runs the prefix common to every prompt once per call of its, whatever the
    # chunks, and each chunk's rows after it: count what it runs
    split = split_prefix(arrays["input_ids"], arrays["attention_mask"], seq_bucket=bucket,
                         window=smallest_window(lm.config))  # fmt: skip
    width, shared = (split.input_ids.shape[1], split.length) if split is not None else (seq_padded, 0)
    out["shared_prefix"] = shared
    counted = attribution_flops(lm.config, chunk, width, "ig", steps, groups, shared=shared)
    out["flops_analytic"] = calls * (counted["total"] - counted["shared"]) + counted["shared"]
    # the variants' products alone, ours and as the PyTorch port enters them (each at its own
    # layer's down projection), at the same shapes: the work the two replays differ in
    out["flops_variants"] = calls * counted["variants"]
    port = attribution_flops(lm.config, chunk, width, "ig", steps, groups, shared=shared, entry="own")
    out["flops_variants_own_entry"] = calls * port["variants"]
    try:
        first = PromptBatch(**{k: v[:chunk] for k, v in arrays.items()})
        part = jax.tree.map(lm.place, pad_rows(first, chunk, seq_padded))
        compiled = attribute_compiled.lower(lm.state, part, graphdef=lm.graphdef, method="ig", steps=steps,
                                            groups=groups, rule=rule, replay=replay,
                                            halves_from=halves).compile()  # fmt: skip
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out["flops_xla"] = calls * float(cost.get("flops", float("nan")))
    except Exception as e:  # noqa: BLE001 -- the engine's internals may move; the analytic count is the one used
        out["flops_xla"] = float("nan")
        out["flops_xla_error"] = f"{type(e).__name__}: {e}"
    return out


def _timed(call, parts: list, prompts: int, steps: int, repeats: int = 1) -> dict:
    """IG and grad x act of call(part, method, m) over every part, each timed ``repeats`` times
    (the fastest counts); prompts = rows in all parts."""
    out = {}
    for method, m in (("ig", steps), ("grad_x_act", 1)):
        # every call is timed here (the peers' warm-up ran before): the first too
        got, first_s, rest = timed_calls(lambda: [call(part, method, m) for part in parts], repeats - 1)
        timed = [first_s, *rest]
        res = {k: np.concatenate([g[k] for g in got]) for k in got[0]}
        seconds = min(timed)
        out[method] = {"result": res, "seconds": seconds, "all_seconds": timed, "prompts_per_s": prompts / seconds}
    return out


def _captum(model, rows: list, steps: int, sizes: list) -> dict:
    """The Captum peer: internal_batch_size tuned on IG of one layer of the first prompt, then
    timed with the fastest."""
    from neuronjax.bench import torch_ig

    try:
        import captum
    except ImportError as e:
        return {"skipped": f"captum is not installed ({e}); pip install captum, or the [test] extra"}
    if steps < 2:
        return {"skipped": "Captum's right Riemann rule needs m >= 2"}
    mid = len(torch_ig.down_projections(model)) // 2
    trials = {}
    for size in sizes:
        t = time.perf_counter()
        torch_ig.attribute_captum(model, *rows[0], "ig", steps, size, layers=[mid])
        trials[size] = time.perf_counter() - t
    best = min(trials, key=trials.get)
    out = _timed(lambda row, method, m: torch_ig.attribute_captum(model, *row, method, m, best), rows, len(rows), steps)
    out.update(captum=captum.__version__, internal_batch_size=best, prompts=len(rows),
               internal_batch_size_trials={str(k): v for k, v in trials.items()},
               trial=f"seconds for IG of layer {mid} of the first prompt")  # fmt: skip
    return out


def _peer_worker(path: str, jobs: dict) -> dict:
    """Runs in a fresh process (no JAX thread pool competing with torch's threads)."""
    import torch
    from transformers import AutoModelForCausalLM

    from neuronjax.bench import torch_cached, torch_ig

    torch.set_num_threads(os.cpu_count() or 1)
    out: dict = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "matmul_torch": [torch_matmul_peak() for _ in range(jobs["matmul_rounds"])]}  # fmt: skip
    if path.endswith(".gguf"):
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                     dtype=torch.float32)  # fmt: skip
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    out["attn_implementation"] = model.config._attn_implementation
    rows, steps = jobs["rows"], jobs["steps"]
    if jobs["research_prompts"]:
        t = time.perf_counter()
        torch_ig.attribute(model, *rows[0], method="grad_x_act")  # warm-up, not timed (like our compile)
        warmup = time.perf_counter() - t
        research = rows[: jobs["research_prompts"]]
        out["research_code"] = _timed(lambda row, method, m: torch_ig.attribute(model, *row, method=method, steps=m),
                                      research, len(research), steps)  # fmt: skip
        out["research_code"].update(warmup_seconds=warmup, prompts=len(research))
    if jobs["captum_prompts"]:
        out["captum"] = _captum(model, rows[: jobs["captum_prompts"]], steps, jobs["captum_batch_sizes"])
    chunks = jobs["chunks"]
    if chunks:
        t = time.perf_counter()
        torch_cached.attribute(model, *chunks[0], method="grad_x_act")  # warm-up, not timed
        warmup = time.perf_counter() - t
        groups = jobs["groups"]

        def call(part, method, m):
            return torch_cached.attribute(model, *part, method, m, RULE, groups)

        out["torch_cached"] = _timed(call, chunks, sum(len(c[3]) for c in chunks), steps, jobs["repeats"])
        out["torch_cached"].update(warmup_seconds=warmup, prompts=sum(len(c[3]) for c in chunks), groups=groups,
                                   chunk=len(chunks[0][3]))  # fmt: skip
    out["matmul_torch"] += [torch_matmul_peak() for _ in range(jobs["matmul_rounds"])]  # and at the end
    out["peak_rss_mib"] = own_peak_rss_mib()
    return out


def run_peers(path: str, arrays: dict, args) -> dict:
    """Every PyTorch peer in one separate process: on a 2-core machine, torch's threads sharing
    a process with XLA's thread pool ran 10x (IG) to 60x (grad x act) slower in our measurements.
    The research-code and Captum peers get each prompt without its padding; the cached port gets
    --chunk prompts per call, left-padded to the longest of the chunk."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = args.prompts
    research, captum = min(args.peer_prompts, n), min(args.captum_prompts, n)
    cached = min(n if args.cached_prompts is None else args.cached_prompts, n)
    rows = []
    for b in range(max(research, captum)):
        keep = arrays["attention_mask"][b] == 1
        rows.append((arrays["input_ids"][b][keep][None], arrays["attention_mask"][b][keep][None],
                     arrays["option_ids"][b : b + 1], arrays["gold"][b : b + 1]))  # fmt: skip
    chunks = []
    for lo in range(0, cached, args.chunk):
        hi = min(lo + args.chunk, cached)
        part = [arrays[k][lo:hi] for k in ("input_ids", "attention_mask", "option_ids", "gold")]
        first = int(np.argmax(part[1].any(axis=0)))  # columns that are padding in every row go
        chunks.append((part[0][:, first:], part[1][:, first:], part[2], part[3]))
    jobs = {
        "rows": rows,
        "chunks": chunks,
        "steps": args.steps,
        "research_prompts": research,
        "captum_prompts": captum,
        "captum_batch_sizes": args.captum_batch_sizes,
        "groups": args.groups,
        "matmul_rounds": args.matmul_rounds,
        "repeats": args.repeats,
    }
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peer_worker, path, jobs).result()


def agreement(ours, peer: dict, p: int) -> dict:
    """Differences on the shared prompts. rel = |ours - peer| / max |peer| (over the whole array)."""
    a, b = np.asarray(ours.scores)[:p].astype(np.float64), peer["scores"].astype(np.float64)
    d = np.abs(a - b)
    big = np.abs(b) > 1e-2 * np.abs(b).max()
    return {
        "max_abs": float(d.max()),
        "max_score": float(np.abs(b).max()),
        "max_rel": float(d.max() / np.abs(b).max()),
        "max_rel_elementwise_above_1pct": float((d[big] / np.abs(b[big])).max()),
        "max_f_diff": float(np.abs(np.asarray(ours.f)[:p] - peer["f"]).max()),
        "max_option_score_diff": float(np.abs(np.asarray(ours.option_scores)[:p] - peer["option_scores"]).max()),
    }


def summarize_peer(ours: dict, peer: dict) -> dict:
    """{prompts_per_s, ratio, max_rel_diff, ...} of IG and, under grad_x_act, of grad x act."""
    out = {k: v for k, v in peer.items() if k not in ("ig", "grad_x_act")}
    if "skipped" in peer:
        return out
    for method in ("ig", "grad_x_act"):
        a = agreement(ours[method]["result"], peer[method]["result"], peer["prompts"])
        d = {
            "prompts_per_s": peer[method]["prompts_per_s"],
            "seconds": peer[method]["seconds"],
            "all_seconds": peer[method]["all_seconds"],
            "ratio": ours[method]["prompts_per_s"] / peer[method]["prompts_per_s"],
            "max_rel_diff": a["max_rel"],
            "agreement": a,
        }
        if method == "ig":
            out.update(d)
        else:
            out["grad_x_act"] = d
    return out


def rel_l2(scores, ref: np.ndarray) -> np.ndarray:
    """Per prompt ||scores - ref|| / ||ref|| over every layer and neuron; scores [>= prompts, ...]."""
    s = np.asarray(scores, np.float64)[: len(ref)]
    return np.sqrt(((s - ref) ** 2).sum(axis=(1, 2)) / (ref**2).sum(axis=(1, 2)))


def _error(scores, ref) -> dict:
    e = rel_l2(scores, ref)
    return {"median": float(np.median(e)), "max": float(e.max()), "per_prompt": e.tolist(), "prompts": len(e)}


def run(args) -> dict:
    import jax

    import neuronjax
    from neuronjax.attribution import PromptBatch

    load = os.getloadavg()
    cpu = jax.default_backend() == "cpu"
    # On an H200 a 4096^3 bfloat16 product read 309 and 452 TFLOP/s in two runs minutes apart and
    # an 8192^3 one (constant-filled) 674 (2026-11-30): smaller products do not fill the GPU.
    n_mat = 2048 if cpu else 8192
    readings: dict = {}
    read_limits(readings, n_mat, args.dtype, args.matmul_rounds, cpu)
    if args.random_weights:
        if not args.model_config:
            raise ConfigError("--random-weights needs --model-config FILE (a Hugging Face config.json)")
        path = args.model_config
        lm = random_model(path, args.dtype)
        arrays = synthetic_arrays(lm.config.vocab_size, args.prompts, args.seq)
        args.peer_prompts = args.captum_prompts = args.cached_prompts = args.reference_prompts = 0  # no shared weights
    else:
        path = args.model or neuronjax.default_model_path()
        lm = neuronjax.load_model(path, dtype=args.dtype)
        arrays = prompt_arrays(lm.tokenizer, args.prompts, lm.pad_id)
    c = lm.config
    lengths = arrays["attention_mask"].sum(axis=1)
    r: dict = {
        "model": os.path.basename(path),
        "layers": c.num_layers,
        "mlp": c.intermediate_size,
        "steps": args.steps,
        "prompts": args.prompts,
        "prompt_tokens_mean": float(lengths.mean()),
        "prompt_tokens_max": int(lengths.max()),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "loadavg_at_start": load,
            # the allocator's huge pages (`neuronjax.hugepages`), ours and the peers' alike: the
            # peers' process inherits the environment
            "huge_pages": hugepages.enabled(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            # the kernels' implementation when NEURONJAX_KERNELS forces one ("auto" otherwise)
            "kernels": os.environ.get(kernel_choice.ENV_VAR, "").strip().lower() or "auto",
        },
        "dtype": args.dtype,
        "random_weights": bool(args.random_weights),
    }
    neurons = c.num_layers * c.intermediate_size

    # --- ours: the peers' rule at m = --steps, and the default run's rule and nodes ---
    d = default_attribution()
    runs = {"ig": ("ig", args.steps, RULE), "grad_x_act": ("grad_x_act", 1, RULE),
            "ig_default": ("ig", d.steps, d.rule, dict(d.layer_steps))}  # fmt: skip
    # the limit is read again before each of our timed IG calls: the machine's speed moves within a
    # run (one run of 2026-12-03 read `jnp.dot` at 450 GFLOP/s at its start and at 339-343 right
    # after our calls), so the readings and our calls sample the same minutes
    ours = run_ours(lm, arrays, runs, args.chunk, args.repeats,
                    beside=lambda: read_limits(readings, n_mat, args.dtype, 1, cpu))  # fmt: skip
    r["ours"] = {m: {k: v for k, v in ours[m].items() if k != "result"} for m in runs}
    r["ours"]["ig"]["neuron_attributions_per_s"] = ours["ig"]["prompts_per_s"] * neurons
    r["ours"].update({k: ours[k] for k in ("chunk", "repeats", "seq_padded", "shared_prefix", "flops_analytic",
                                           "flops_xla", "replay", "groups", "halves_from")})  # fmt: skip
    if "flops_xla_error" in ours:
        r["ours"]["flops_xla_error"] = ours["flops_xla_error"]
    r["ours"]["ig"]["flops_per_s"] = ours["flops_analytic"] / ours["ig"]["seconds"]
    r["ours"]["peak_rss_mib"] = _rss_mib()

    # --- the PyTorch peers ---
    wanted = cpu or args.peer_prompts or args.captum_prompts or args.cached_prompts != 0
    if not args.random_weights and wanted and importlib.util.find_spec("torch") is None:
        why = "torch is not installed (pip install 'neuronjax[test]' installs torch and captum)"
        r["peers"] = {name: {"skipped": why} for name, _ in PEERS}
    elif not args.random_weights and wanted:
        got = run_peers(path, arrays, args)
        readings["torch"] = got.pop("matmul_torch")
        r["peers_process"] = {k: got.pop(k) for k in ("torch", "torch_threads", "attn_implementation", "peak_rss_mib")}
        r["peers"] = {name: summarize_peer(ours, peer) for name, peer in got.items()}

    # --- the machine's matmul limit and our fraction of it ---
    best = {lib: max(v) for lib, v in readings.items()}
    limit_by = max(best, key=best.get)
    r["matmul"] = {
        "n": n_mat,
        "dtype": args.dtype,
        "readings": readings,
        "best": best,
        "limit": best[limit_by],
        "limit_by": limit_by,
    }
    r["matmul_peak_flops"] = best[limit_by]
    r["ours"]["ig"]["fraction_of_peak"] = r["ours"]["ig"]["flops_per_s"] / best[limit_by]
    port = r.get("peers", {}).get("torch_cached", {})
    if "ratio" in port and "torch" in best:
        port["work"] = port_work(ours, best)

    # --- quadrature error against a converged reference ---
    research = r.get("peers", {}).get("research_code")
    p_ref = min(args.prompts, max(args.reference_prompts, research["prompts"] if research else 0))
    if args.reference_prompts > 0 and p_ref > 0:
        from neuronjax.bench import quadrature

        t = time.perf_counter()
        first = PromptBatch(**{k: v[:p_ref] for k, v in arrays.items()})
        ref = quadrature.ig(lm, first, "gauss_legendre", REFERENCE_NODES, args.chunk_rows)
        r["quadrature"] = {
            "rule": RULE,
            "steps": args.steps,
            "rel_error": _error(ours["ig"]["result"].scores, ref),
            "reference": f"gauss_legendre, {REFERENCE_NODES} nodes",
            "prompts": p_ref,
            "reference_seconds": time.perf_counter() - t,
            "default": {
                "rule": runs["ig_default"][2],
                "steps": runs["ig_default"][1],
                "layer_steps": runs["ig_default"][3],
                "rel_error": _error(ours["ig_default"]["result"].scores, ref),
            },
        }
        if research and "ig" in got.get("research_code", {}):
            p = research["prompts"]
            mine, theirs = ours["ig_default"], got["research_code"]["ig"]
            r["ratio_equal_accuracy"] = {
                "ratio": mine["prompts_per_s"] / theirs["prompts_per_s"],
                "prompts": p,
                "ours": {
                    "rule": mine["rule"],
                    "steps": mine["steps"],
                    "layer_steps": mine.get("layer_steps", {}),
                    "prompts_per_s": mine["prompts_per_s"],
                    "rel_error": _error(mine["result"].scores[:p], ref[:p]),
                },
                "research_code": {
                    "rule": RULE,
                    "steps": args.steps,
                    "prompts_per_s": theirs["prompts_per_s"],
                    "rel_error": _error(theirs["result"]["scores"], ref[:p]),
                },
            }
            # the ratio beside the peer's other figures too; both errors are in the record above
            research["ratio_equal_accuracy"] = r["ratio_equal_accuracy"]["ratio"]
    r["machine"]["loadavg_at_end"] = os.getloadavg()
    r["peak_rss_mib"] = _rss_mib()
    return r


def port_work(ours: dict, best: dict) -> dict:
    """What separates ours from the PyTorch port of the same algorithm, besides the run time: the
    IG variants' matrix products of each (analytic, at the same shapes and m; the port's variants
    enter at their own layer's down projection, ours after their layer group's first layer) and
    the two libraries' float32 product rates read in this run (2048^3 on a CPU)."""
    mine, theirs = ours["flops_variants"], ours["flops_variants_own_entry"]
    return {
        "variants_flops_ours": mine,
        "variants_flops_port": theirs,
        "extra_work": mine / theirs - 1.0,
        "jnp_dot_over_torch": best["jnp.dot"] / best["torch"],
    }


def _port_line(p: dict) -> str:
    w = p["work"]
    head = (f"torch cached port: ours {p['ratio']:.2f}x its speed"
            + (" (ours is slower)" if p["ratio"] < 1 else ""))  # fmt: skip
    return (f"{head}; the variants' products for the same prompts: ours {w['variants_flops_ours'] / 1e12:.2f} "
            f"TFLOP, the port's {w['variants_flops_port'] / 1e12:.2f} ({100 * w['extra_work']:+.1f}% for ours: its "
            f"variants enter at their own layer's down projection, ours after their layer group's first layer); "
            f"jnp.dot ran at {w['jnp_dot_over_torch']:.2f}x torch's rate on the 2048^3 product")


PEERS = (("research_code", "research code"), ("captum", "Captum"), ("torch_cached", "torch cached port"))


def _cpu_label(machine: dict) -> str:
    return f" ({machine['cpu']})" if machine.get("cpu") else ""


def _fmt(x) -> str:
    return "-" if x is None else (f"{x:,.0f}" if x >= 1000 else f"{x:.4g}")


def report(r: dict) -> str:
    o, peers = r["ours"], r.get("peers", {})
    lines = [
        (
            f"{r['model']}{' (random weights)' if r.get('random_weights') else ''}: {r['layers']} layers x {r['mlp']} "
            f"neurons, {r.get('dtype', 'float32')}, IG m={r['steps']} ({RULE}), {r['prompts']} "
            f"{'random-token' if r.get('random_weights') else 'one-shot proxy'} prompts of "
            f"{r['prompt_tokens_mean']:.0f} tokens (max {r['prompt_tokens_max']}), "
            f"{r['machine']['cpu_count']} CPU cores{_cpu_label(r['machine'])}, load average {r['machine']['loadavg_at_start'][0]:.1f} at start, "
            f"{r['machine']['loadavg_at_end'][0]:.1f} at end, allocator huge pages "
            f"{'on' if r['machine'].get('huge_pages') else 'off'} (ours and the peers')"
            + (f", NEURONJAX_KERNELS={r['machine']['kernels']}" if r["machine"].get("kernels", "auto") != "auto" else "")
        ),
        "",
        (
            f"{'':22} {'prompts':>7} {'IG prompts/s':>13} {'ours/it':>8} {'max rel diff':>13} "
            f"{'gxa prompts/s':>14} {'ours/it':>8} {'max rel diff':>13}"
        ),
        (
            f"{'ours (JAX)':22} {r['prompts']:>7} {_fmt(o['ig']['prompts_per_s']):>13} {'':>8} {'':>13} "
            f"{_fmt(o['grad_x_act']['prompts_per_s']):>14}"
        ),
    ]
    for key, name in PEERS:
        p = peers.get(key)
        if p is None:
            continue
        if "skipped" in p:
            lines.append(f"{name:22} skipped: {p['skipped']}")
            continue
        g = p["grad_x_act"]
        lines.append(f"{name:22} {p['prompts']:>7} {_fmt(p['prompts_per_s']):>13} {p['ratio']:>7.1f}x "
                     f"{p['max_rel_diff']:>13.1e} {_fmt(g['prompts_per_s']):>14} {g['ratio']:>7.1f}x "
                     f"{g['max_rel_diff']:>13.1e}")  # fmt: skip
    d, mm = o["ig_default"], r["matmul"]
    lines += [
        "",
        (
            f"ours: IG {o['ig']['seconds']:.1f} s (the fastest of {len(o['ig'].get('all_seconds', [0]))} timed calls: "
            f"{', '.join(f'{x:.2f}' for x in o['ig'].get('all_seconds', []))} s; the untimed first call, compile "
            f"included, {o['ig']['first_call_seconds']:.1f} s), "
            f"grad x act {o['grad_x_act']['seconds']:.2f} s, IG with our default {d['rule']} {nodes_label(d)} "
            f"{d['seconds']:.1f} s ({_fmt(d['prompts_per_s'])} prompts/s); chunk {o['chunk']}, seq padded to "
            f"{o['seq_padded']}" + (f"; {o['replay']} replay, {o['groups']} layer groups" if "replay" in o else "")
            + (f", passes of {o['halves_from']}+ rows in two halves" if o.get("halves_from") else "")
            + (f"; calls in flight: IG {o['ig']['calls_in_flight']}, default nodes {d['calls_in_flight']}, grad x act "
               f"{o['grad_x_act']['calls_in_flight']}" if "calls_in_flight" in d else "")
        ),
        (
            f"ours: {o['flops_analytic'] / 1e12:.2f} TFLOP counted analytically ({o['flops_xla'] / 1e12:.2f} by XLA "
            f"cost_analysis, which counts a scan body once) -> {o['ig']['flops_per_s'] / 1e9:.1f} GFLOP/s = "
            f"{100 * o['ig']['fraction_of_peak']:.1f}% of the machine's {r['dtype']} matmul limit"
        ),
        f"matmul limit {mm['limit'] / 1e9:.1f} GFLOP/s ({mm['limit_by']}, {mm['n']}^3); best of each: "
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in mm["best"].items())
        + " GFLOP/s",
    ]
    if o["ig"].get("all_usage"):
        lines.append("ours: IG timed calls' CPU time: " + _usage_line(o["ig"]["all_usage"]))
    if o["ig"]["fraction_of_peak"] > 1:
        lines.append("WARNING: our IG ran faster than the matmul limit read: the machine was slower during every "
                     "reading than during our calls, so this fraction says nothing; run again on a quiet machine")
    if "captum" in peers and "internal_batch_size" in peers["captum"]:
        cp = peers["captum"]
        trials = ", ".join(f"{k}: {v:.2f} s" for k, v in cp["internal_batch_size_trials"].items())
        lines.append(f"Captum {cp['captum']}: internal_batch_size {cp['internal_batch_size']} (trials, {cp['trial']}: "
                     f"{trials})")  # fmt: skip
    if "torch_cached" in peers and "groups" in peers["torch_cached"]:
        lines.append(f"torch cached port: {peers['torch_cached']['chunk']} prompts per call, "
                     f"{peers['torch_cached']['groups']} layer groups; IG the fastest of its timed calls: "
                     f"{', '.join(f'{x:.2f}' for x in peers['torch_cached'].get('all_seconds', []))} s")  # fmt: skip
    if "work" in peers.get("torch_cached", {}):
        lines.append(_port_line(peers["torch_cached"]))
    if "peers_process" in r:
        pp = r["peers_process"]
        lines.append(f"peers: torch {pp['torch']}, {pp['torch_threads']} threads, {pp['attn_implementation']} "
                     "attention, own process, untimed warm-up call each; peak resident memory "
                     f"{pp['peak_rss_mib']:.0f} MiB")  # fmt: skip
    q = r.get("quadrature")
    if q:
        e, de = q["rel_error"], q["default"]["rel_error"]
        lines.append(f"quadrature error against {q['reference']} on {q['prompts']} prompts (relative L2, median / "
                     f"max): {q['rule']} m={q['steps']} {e['median']:.2e} / {e['max']:.2e}; {q['default']['rule']} "
                     f"{nodes_label(q['default'])} {de['median']:.2e} / {de['max']:.2e}")  # fmt: skip
    eq = r.get("ratio_equal_accuracy")
    if eq:
        a, b = eq["ours"], eq["research_code"]
        lines.append(f"ratio_equal_accuracy on {eq['prompts']} prompts: ours {a['rule']} {nodes_label(a)} (median error "
                     f"{a['rel_error']['median']:.2e}) against research code {b['rule']} m={b['steps']} (median error "
                     f"{b['rel_error']['median']:.2e}): {eq['ratio']:.1f}x")  # fmt: skip
    lines.append(f"peak resident memory (ru_maxrss): ours {r['peak_rss_mib']:.0f} MiB (benchmark process)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench attribution", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "--model", default=None, help="checkpoint: GGUF file or directory (default: the embedded SmolLM2-135M-Instruct)"
    )
    ap.add_argument("--prompts", type=int, default=32, help="proxy prompts for our runs")
    ap.add_argument("--peer-prompts", type=int, default=2, help="prompts for the research-code peer (0: skip it)")
    ap.add_argument("--captum-prompts", type=int, default=None, help="prompts for Captum (default: --peer-prompts)")
    ap.add_argument("--cached-prompts", type=int, default=None, help="prompts for the torch cached port (default: all)")
    ap.add_argument("--captum-batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4, 8, 16],
                    help="Captum internal_batch_size values tried")  # fmt: skip
    ap.add_argument("--groups", type=int, default=4, help="layer groups of the torch cached port")
    ap.add_argument("--steps", type=int, default=16, help="IG steps m (right Riemann, as the peers)")
    ap.add_argument("--chunk", type=int, default=8, help="prompts per call of ours and of the torch cached port")
    ap.add_argument(
        "--reference-prompts",
        type=int,
        default=4,
        help=f"prompts scored against Gauss-Legendre {REFERENCE_NODES} (0: skip; at least the peer's)",
    )
    ap.add_argument("--chunk-rows", type=int, default=128, help="prompts x nodes per call of the reference")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed calls of ours and of the torch cached port after the warm-up (the fastest counts)")
    ap.add_argument("--matmul-rounds", type=int, default=3, help="readings of each library's matmul rate")
    ap.add_argument("--json", default=None, help="also write every figure here")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="parameter and matmul dtype")
    ap.add_argument("--model-config", default=None, help="a Hugging Face config.json (with --random-weights)")
    ap.add_argument(
        "--random-weights", action="store_true", help="random weights of --model-config, random token prompts"
    )
    ap.add_argument("--seq", type=int, default=128, help="prompt tokens with --random-weights")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats {args.repeats}: expected at least 1 timed call")
    if args.captum_prompts is None:
        args.captum_prompts = args.peer_prompts
    r = run(args)
    print(report(r))
    if args.json:
        write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
