"""`neuronjax plan`: will a run fit on a slice, and how fast should it go, before renting it.

    neuronjax plan configs/default.yaml --model-config configs/models/llama-3.1-70b.json \\
        --topology v5e-64 --find-batch --json plan.json

The model is built abstractly from a Hugging Face config.json (no weights), a mesh is chosen for
the slice (or taken from ``--mesh`` / the run config's ``model.mesh``), and the steps a run
executes are compiled ahead of time for the slice's devices, which need not exist: TPU topologies
compile on a CPU host through `libtpu` (the ``[tpu]`` extra). Per chip: arguments, temporaries and
outputs against the chip's HBM, fits or not (with the compiler's own message when it refuses),
the matrix FLOPs of identifying one prompt (counted from the shapes: a compiled scan body is
counted once by XLA) and the prompts per second that makes at a stated MFU.

Where it does not hold: the projection assumes the stated MFU (measure yours: `neuronjax bench
attribution` prints the fraction of peak it reached); FLOPs count matrix products only; GPU
slices need the CUDA plugin and report memory only (the compiler does not check it against the
card there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Optional

from neuronjax.errors import ConfigError
from neuronjax.plan.slices import GIB, Slice, parse_slice

DEFAULT_MFU = 0.4


def load_model_config(path: str):
    """ModelConfig of a Hugging Face config.json (a file, or a checkpoint folder holding one)."""
    from neuronjax.loader import hf

    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"--model-config {path}: no such file")
    with open(path) as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
    return hf.config_from_hf(raw, path)


def slice_devices(sl: Slice) -> list:
    """The devices of a slice, without the slice: a TPU topology compiled for by libtpu."""
    if sl.chip.platform != "tpu":
        raise ConfigError(
            f"--topology {sl.name}: planning for GPUs needs the CUDA plugin (pip install 'jax[cuda12]') and "
            "JAX_PLATFORMS=cpu; it is not installed here. TPU slices (v4-*, v5e-*, v5p-*, v6e-*) compile with "
            "the [tpu] extra."
        )
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no cloud metadata server on a CPU host
    # compiling needs no device: let it run beside another process that holds libtpu (a job, a test)
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    kwargs = {}
    grid = [int(x) for x in sl.topology.split(":")[1].split("x")]
    if len(grid) == 2 and min(grid) < 2:  # slices smaller than one 2x2 host
        kwargs["chips_per_host_bounds"] = [min(2, grid[0]), min(2, grid[1]), 1]
    try:
        from jax.experimental import topologies

        return list(topologies.get_topology_desc(platform="tpu", topology_name=sl.topology, **kwargs).devices)
    except Exception as err:
        raise ConfigError(
            f"--topology {sl.name} ({sl.topology}): the TPU compiler is not available here ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); install the [tpu] extra: pip install -e '.[tpu]'"
        ) from None


def choose_mesh(cfg, chips: int, given: Optional[dict] = None) -> dict:
    """Mesh sizes for `chips` devices: the given ones (data takes what they leave), else tensor
    parallelism over up to 8 chips (the heads and neurons of one layer split; on a TPU slice, 8
    chips share fast links) and FSDP over the rest (parameters split, batch split)."""
    if given:
        fixed = math.prod(v for k, v in given.items() if k != "data")
        if chips % fixed:
            raise ConfigError(f"mesh {given} does not divide the slice's {chips} chips")
        return {"data": chips // fixed, "fsdp": 1, "tensor": 1, **given}
    tensor = 1
    while tensor * 2 <= min(chips, 8) and cfg.num_heads % (tensor * 2) == 0 and cfg.intermediate_size % (tensor * 2) == 0:
        tensor *= 2
    return {"data": 1, "fsdp": chips // tensor, "tensor": tensor}


def planned_prefix(cfg, seq: int, shared_prefix: int) -> tuple[int, str]:
    """(P, note): the prefix a run shares, once per batch, for prompts of `seq` tokens whose first
    `shared_prefix` tokens are common to the batch, as `cached.split_prefix` decides it: rounded
    down to a multiple of `cached.PREFIX_BUCKET`, and 0 (every row runs its whole prompt) when the
    model has a sliding window shorter than the prompt's `seq` slots. note says what changed ("" if
    nothing did)."""
    from neuronjax.cached import PREFIX_BUCKET, smallest_window

    if shared_prefix <= 0:
        return 0, ""
    window = smallest_window(cfg)
    if window is not None and window < seq:
        return 0, (f"--shared-prefix {shared_prefix} not used: the model's sliding window ({window} tokens) is shorter "
                   f"than the prompt's {seq} slots, where a run falls back to running every prompt whole")  # fmt: skip
    p = shared_prefix // PREFIX_BUCKET * PREFIX_BUCKET
    if p != shared_prefix:
        return p, (f"--shared-prefix {shared_prefix}: a run shares {p} tokens (prefixes are cut at multiples of "
                   f"{PREFIX_BUCKET}), planned with {p}")  # fmt: skip
    return p, ""


def plan(config, model_config: str, topology: str, batch: Optional[int] = None, find_batch: bool = False,
         seq: int = 128, mfu: float = DEFAULT_MFU, mesh: Optional[dict] = None, dtype: Optional[str] = None,
         log=print, shared_prefix: int = 0) -> dict:  # fmt: skip
    """Compile a run's steps for a slice; returns the plan as JSON-ready data (see the module
    docstring). `config` is a RunConfig (its attribution steps and groups, methods, block size,
    batch and dtype are used unless overridden). shared_prefix: how many of the `seq` tokens
    every prompt of a batch starts with (role block, demonstration); with the run config's
    `share_prefix` switches on (the default) they run once per batch, in identification and in
    evaluation, and the steps are compiled that way."""
    from neuronjax.attribution.flops import attribution_flops
    from neuronjax.methods import make_methods
    from neuronjax.plan import steps as st
    from neuronjax.sharding import ShardingRules, make_mesh
    from neuronjax.tasks.config import load_task_config

    if not 0 <= shared_prefix <= seq - 2:
        raise ConfigError(f"--shared-prefix {shared_prefix}: expected 0 .. {seq - 2} (at most --seq {seq} minus 2: a "
                          "prompt keeps at least two tokens of its own)")  # fmt: skip
    cfg = load_model_config(model_config)
    sl = parse_slice(topology)
    devices = slice_devices(sl)
    sizes = choose_mesh(cfg, len(devices), mesh or dict(config.model.mesh) or None)
    rules = ShardingRules.from_config(getattr(config.model, "sharding", None))
    dev_mesh = make_mesh(sizes, devices)
    dtype = dtype or config.model.dtype
    graphdef, state, param_bytes = st.abstract_params(cfg, dtype, dev_mesh, rules)
    n_params = sum(math.prod(v.shape) for v in __import__("jax").tree.leaves(state))
    a = config.identify.attribution
    from neuronjax.attribution.engine import resolve_groups, resolve_replay

    replay = resolve_replay(a.replay, sl.chip.platform)  # the slice's platform, not this host's
    groups = resolve_groups(a.groups, replay)
    task = load_task_config(config.task, config.task_overrides)
    proxies = task.aqua.num_proxies
    dp = sizes["data"] * sizes["fsdp"]
    log(f"plan: {os.path.basename(model_config)} ({n_params / 1e9:.2f}B parameters, {dtype}) on {sl.name} = "
        f"{sl.chips} {sl.chip.name} chips (topology {sl.topology}), {sl.chip.hbm_gib:g} GiB HBM per chip; "
        f"mesh {sizes}")  # fmt: skip

    hbm = sl.hbm_bytes * sl.chips // len(devices)  # v4 shows each chip's two TensorCores as two devices

    schedule = a.schedule(cfg.num_layers) if a.method == "ig" else ()
    prefix, note = planned_prefix(cfg, seq, shared_prefix)
    if note:
        log(f"plan: {note}")
    shared_id = prefix if a.share_prefix else 0
    shared_ev = prefix if config.evaluate.share_prefix else 0

    def identify(b):
        return st.identify_step(cfg, graphdef, state, dev_mesh, rules, b, seq, schedule, groups, a.method, hbm,
                                shared_id, replay)  # fmt: skip

    if find_batch:
        ident = _largest_batch(identify, dp, log)
    else:
        b = batch or max(dp, task.pipeline.batch_size)
        if b % dp:
            raise ConfigError(f"--batch {b}: the mesh splits the batch over {dp} devices (data x fsdp); "
                              f"expected a multiple of {dp}")  # fmt: skip
        ident = identify(b)
    b = ident.batch
    methods = st.method_step(cfg, dev_mesh, rules, make_methods(config.identify), _round_up(config.identify.block_items, dp),
                             proxies, hbm)  # fmt: skip
    evaluate = st.evaluate_step(cfg, graphdef, state, dev_mesh, rules, b, seq, hbm, shared_ev)
    # per prompt, the shared prefix's one pass spread over the step's batch
    flops = attribution_flops(cfg, b, seq - shared_id, a.method, a.steps, groups, a.layer_steps, shared_id)["total"] / b
    peak = sl.chips * sl.chip.peak_bf16_flops
    out = {
        "topology": sl.name, "topology_name": sl.topology, "chips": sl.chips, "chip": sl.chip.name,
        "hbm_per_chip_gib": sl.chip.hbm_gib, "mesh": sizes, "dtype": dtype, "model_config": model_config,
        "parameters": n_params, "parameter_gib_per_chip": round(param_bytes / GIB, 3),
        "parameter_bytes_per_chip": param_bytes, "seq": seq,
        "shared_prefix": {"identify": shared_id, "evaluate": shared_ev, "asked": shared_prefix, "note": note},
        "attribution": {"method": a.method, "steps": a.steps, "layer_steps": dict(a.layer_steps), "groups": groups,
                        "replay": replay},
        "steps": {"identify": ident.to_json(), "methods": methods.to_json(), "evaluate": evaluate.to_json()},
    }  # fmt: skip
    out["steps"]["identify"]["flops_per_prompt"] = flops
    out["steps"]["identify"]["mfu"] = mfu
    out["steps"]["identify"]["projected_prompts_per_s"] = round(peak * mfu / flops, 3)
    out["devices"] = len(devices)
    out["hbm_per_device_gib"] = round(hbm / GIB, 3)
    out["fits"] = all(s.fits for s in (ident, methods, evaluate))
    return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _largest_batch(identify, dp: int, log):
    """The largest batch (a multiple of the data-parallel size) whose identify step compiles:
    doubling, then bisection."""
    fit, fail = None, None
    b = dp
    while b <= 1 << 16:
        step = identify(b)
        log(f"  identify batch {b}: {'fits' if step.fits else 'does not fit'}"
            + (f" ({step.total / GIB:.2f} GiB per chip)" if step.fits else ""))  # fmt: skip
        if not step.fits:
            fail = step
            break
        fit = step
        b *= 2
    if fit is None:
        return fail
    if fail is None:
        return fit
    lo, hi = fit.batch // dp, fail.batch // dp
    while hi - lo > 1:
        mid = (lo + hi) // 2
        step = identify(mid * dp)
        log(f"  identify batch {mid * dp}: {'fits' if step.fits else 'does not fit'}")
        if step.fits:
            fit, lo = step, mid
        else:
            hi = mid
    return fit


def describe(out: dict) -> str:
    """The plan as a table."""
    lines = [f"{out['topology']}: {out['chips']} {out['chip']} chips ({out['topology_name']}, {out['devices']} devices), mesh "
             + " x ".join(f"{k}={v}" for k, v in out["mesh"].items())
             + f"; parameters {out['parameter_gib_per_chip']:.2f} GiB per chip ({out['dtype']})",
             f"{'step':10s} {'batch':>6s} {'args':>8s} {'temps':>8s} {'outputs':>8s} {'total':>8s}  "
             f"of {out['hbm_per_device_gib']:g} GiB  fits"]  # fmt: skip
    for name, s in out["steps"].items():
        g = s.get("per_chip_gib", {})
        if s["fits"]:
            lines.append(f"{name:10s} {s['batch']:6d} {g['arguments']:8.2f} {g['temporaries']:8.2f} {g['outputs']:8.2f} "
                         f"{g['total']:8.2f}  {'':>{len(format(out['hbm_per_device_gib'], 'g')) + 7}s}yes")  # fmt: skip
        else:
            lines.append(f"{name:10s} {s['batch']:6d}  does not fit: " + s.get("message", "").replace("\n", " ")[:300])
    i = out["steps"]["identify"]
    shared = out.get("shared_prefix", {}).get("identify", 0)
    tokens = f"{out['seq']} tokens" + (f", the first {shared} shared by the batch" if shared else "")
    lines.append(f"identification: {i['flops_per_prompt'] / 1e12:.2f} TFLOP per prompt (IG m={out['attribution']['steps']}, "
                 f"{tokens}); projected {i['projected_prompts_per_s']:.1f} prompts/s at {i['mfu']:.0%} MFU")  # fmt: skip
    lines.append("fits" if out["fits"] else "DOES NOT FIT")
    return "\n".join(lines)


def main(argv=None) -> int:
    from neuronjax.config import config_of_run, load_run_config
    from neuronjax.configlib import parse_overrides

    ap = argparse.ArgumentParser(prog="neuronjax plan", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("config", help="run config YAML (or run directory)")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. identify.attribution.steps=8")
    ap.add_argument("--model-config", required=True, help="Hugging Face config.json of the model (e.g. configs/models/llama-3.1-8b.json)")
    ap.add_argument("--topology", required=True, help="slice by accelerator type: v4-8, v5e-64 (v5litepod-64), v5p-128, v6e-8")
    ap.add_argument("--batch", type=int, default=None, help="prompts per step (default: the task's batch size, at least data x fsdp)")
    ap.add_argument("--find-batch", action="store_true", help="find the largest batch whose identification step fits")
    ap.add_argument("--seq", type=int, default=128, help="tokens per prompt (default 128)")
    ap.add_argument("--shared-prefix", type=int, default=0, metavar="P",
                    help="tokens at the start of every prompt common to the batch (role block, demonstration), run "
                         "once per batch as a run does (default 0: every prompt runs whole)")  # fmt: skip
    ap.add_argument("--mfu", type=float, default=DEFAULT_MFU, help=f"model FLOPs utilisation of the projection (default {DEFAULT_MFU})")
    ap.add_argument("--mesh", default=None, help="mesh sizes, e.g. fsdp=8,tensor=8 (default: run config, else chosen)")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="parameter dtype (default: the run config's)")
    ap.add_argument("--json", default=None, help="write the plan here as JSON")
    ap.add_argument("--require-fit", action="store_true", help="exit with status 1 when a step does not fit")
    args = ap.parse_intermixed_args(argv)  # overrides may also come after the options, as for `run`
    pairs = parse_overrides(args.overrides)
    config = config_of_run(args.config, pairs) if os.path.isdir(args.config) else load_run_config(args.config, pairs)
    mesh = None
    if args.mesh:
        try:
            mesh = {k.strip(): int(v) for k, v in (p.split("=") for p in args.mesh.split(","))}
        except ValueError:
            raise ConfigError(f"--mesh {args.mesh!r}: expected axis=size pairs, e.g. fsdp=8,tensor=8") from None
    out = plan(config, args.model_config, args.topology, args.batch, args.find_batch, args.seq, args.mfu, mesh,
               args.dtype, log=lambda s: print(s, file=sys.stderr), shared_prefix=args.shared_prefix)  # fmt: skip
    print(describe(out))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"plan written to {args.json}")
    return 1 if args.require_fit and not out["fits"] else 0
