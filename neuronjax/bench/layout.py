"""What the stacked-layer layout buys: compile time against depth, and the attribution step's memory.

    neuronjax bench layout [--depths 16,64] [--json OUT]

1. Compile time of the attribution step (IG, m = 4, 4 layer groups, 4 prompts of 32 tokens) and
   of the plain forward pass (logits of the same batch) of tiny random models that differ only in
   depth (best of 3). With every forward one `lax.scan` over stacked layers, the compiled program
   does not grow with the number of layers.
2. The attribution step of the embedded SmolLM2-135M-Instruct (IG m = 16, 8 prompts of 96 tokens,
   float32), compiled for this machine: XLA's `memory_analysis()` of arguments (the parameters and
   the batch), temporaries and outputs, next to the parameter bytes. Temporaries that held a
   re-stacked copy of the layer weights would be at least the block parameters' size.

Only APIs that have been stable across versions are used (`neuronjax.load_model`,
`neuronjax.models.decoder.Decoder`, `neuronjax.attribution.engine.attribute_compiled` and
`PromptBatch`), so the same script measures an older checkout for a before / after comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _batch(vocab: int, n: int, seq: int):
    import jax.numpy as jnp

    from neuronjax.attribution.engine import PromptBatch

    rng = np.random.default_rng(0)
    opts = np.stack([rng.choice(np.arange(10, vocab), 8, replace=False).reshape(4, 2) for _ in range(n)])
    return PromptBatch(jnp.asarray(rng.integers(10, vocab, (n, seq)), jnp.int32), jnp.ones((n, seq), jnp.int32),
                       jnp.asarray(opts, jnp.int32), jnp.asarray(np.arange(n) % 4, jnp.int32))  # fmt: skip


def compile_seconds(layers: int, steps: int = 4, groups: int = 4, repeats: int = 3) -> dict:
    """Best wall times of lowering + compiling, for a tiny model of `layers` layers: the
    attribution step (IG) and the plain forward pass (logits of a batch: evaluation's and
    generation's kind of call)."""
    import jax
    from flax import nnx

    from neuronjax.attribution.engine import attribute_compiled
    from neuronjax.lm import forward
    from neuronjax.models.config import ModelConfig
    from neuronjax.models.decoder import Decoder

    cfg = ModelConfig(model_type="llama", vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=layers,
                      num_heads=4, num_kv_heads=2, head_dim=16)  # fmt: skip
    graphdef, state = nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)))
    batch = _batch(cfg.vocab_size, 4, 32)
    calls = {
        "attribution": lambda: attribute_compiled.lower(state, batch, graphdef=graphdef, method="ig", steps=steps,
                                                        groups=groups).compile(),  # fmt: skip
        "forward": lambda: forward.lower(state, batch.input_ids, batch.attention_mask, graphdef=graphdef).compile(),
    }
    out = {}
    for name, call in calls.items():
        best = float("inf")
        for _ in range(repeats):
            jax.clear_caches()
            t = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


def attribution_memory(steps: int = 16, prompts: int = 8, seq: int = 96) -> dict:
    """memory_analysis() of the SmolLM2 attribution step, with the parameter bytes beside it."""
    import jax

    import neuronjax
    from neuronjax.attribution.engine import attribute_compiled

    lm = neuronjax.load_model(dtype="float32")
    batch = _batch(lm.config.vocab_size, prompts, seq)
    compiled = attribute_compiled.lower(lm.state, batch, graphdef=lm.graphdef, method="ig", steps=steps,
                                        groups=4).compile()  # fmt: skip
    mem = compiled.memory_analysis()
    leaves = jax.tree_util.tree_flatten_with_path(lm.state)[0]
    block_bytes = sum(x.size * x.dtype.itemsize for path, x in leaves if "embed" not in jax.tree_util.keystr(path)
                      and "lm_head" not in jax.tree_util.keystr(path) and "final_norm" not in jax.tree_util.keystr(path))  # fmt: skip
    mib = 1 << 20
    return {"parameters_mib": lm.param_bytes / mib, "block_parameters_mib": block_bytes / mib,
            "arguments_mib": mem.argument_size_in_bytes / mib, "temporaries_mib": mem.temp_size_in_bytes / mib,
            "outputs_mib": mem.output_size_in_bytes / mib, "steps": steps, "prompts": prompts, "seq": seq}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench layout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--depths", default="16,64", help="layer counts of the compile-time comparison")
    ap.add_argument("--no-memory", action="store_true", help="skip the SmolLM2 memory analysis")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    out = {"compile_seconds": {}}
    for d in depths:
        c = out["compile_seconds"][d] = compile_seconds(d)
        print(f"tiny model of {d:3d} layers: attribution step compiled in {c['attribution']:.2f} s, forward pass in "
              f"{c['forward']:.2f} s", flush=True)  # fmt: skip
    base = out["compile_seconds"][depths[0]]
    for d in depths[1:]:
        c = out["compile_seconds"][d]
        print(f"compile time {d} / {depths[0]} layers: attribution step {c['attribution'] / base['attribution']:.2f}x, "
              f"forward pass {c['forward'] / base['forward']:.2f}x")  # fmt: skip
    if not args.no_memory:
        m = out["memory"] = attribution_memory()
        print(f"SmolLM2-135M attribution step (IG m={m['steps']}, {m['prompts']} prompts x {m['seq']} tokens, float32): "
              f"arguments {m['arguments_mib']:.0f} MiB, temporaries {m['temporaries_mib']:.0f} MiB, outputs "
              f"{m['outputs_mib']:.0f} MiB; parameters {m['parameters_mib']:.0f} MiB of which layer blocks "
              f"{m['block_parameters_mib']:.0f} MiB")  # fmt: skip
    if args.json:  # plain json: this script also measures older checkouts (see the docstring)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
