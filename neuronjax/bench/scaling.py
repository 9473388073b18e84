"""Identification throughput against the device count: total and per device, in one table.

    python -m neuronjax.bench.scaling [--devices 1,2,4,8] [--processes 1] [--per-device 4]
                                      [--steps 8] [--repeats 3] [--model PATH] [--json OUT]
    neuronjax bench scaling ...

Weak scaling: every device gets `--per-device` prompts, so a run on D devices attributes
D x per-device prompts per call (the proxies of `neuronjax.bench.attribution`, IG with m =
`--steps`), data-parallel over a mesh with every device on the data axis. Each device count runs
in fresh processes (the device count of a JAX process is fixed when it starts): on CPU the
devices are forced host devices (`--xla_force_host_platform_device_count`); `--processes N`
splits them over N processes joined by `jax.distributed` on 127.0.0.1 (the multi-host path:
rows gathered, results all-gathered). On GPU/TPU the first D real devices are used and
`--processes` must be 1 (launch one process per host with launch/ instead).

Per row: prompts per second in total and per device (best of --repeats timed calls after one
warm-up call), the speed-up against the first row and the efficiency (per-device rate / the
first row's). Forced CPU devices share the machine's cores, so on CPU the total cannot grow
beyond the core count; the table shows what the sharded code path costs, not what a pod gains.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from neuronjax.bench import timed_calls
from neuronjax.errors import ConfigError
from neuronjax.evaluation.results import write_json


def _child(args) -> None:
    import jax

    from neuronjax import distributed

    distributed.initialize()
    import numpy as np

    import neuronjax
    from neuronjax.attribution import PromptBatch, attribute
    from neuronjax.bench.attribution import prompt_arrays
    from neuronjax.sharding import make_mesh

    devices = jax.devices()[: args.devices] if jax.process_count() == 1 else jax.devices()
    mesh = make_mesh({"data": len(devices)}, devices) if len(devices) > 1 else None
    lm = neuronjax.load_model(args.model, mesh=mesh)
    n = args.per_device * len(devices)
    batch = PromptBatch(**prompt_arrays(lm.tokenizer, n, lm.pad_id))

    def call():
        out = attribute(lm, batch, "ig", args.steps)
        return distributed.to_host(out.scores)  # the gathered result every caller waits for

    first, warm, times = timed_calls(call, args.repeats)
    if distributed.is_primary():
        best = min(times)
        print("RESULT " + json.dumps({
            "devices": len(devices), "processes": jax.process_count(), "prompts": n, "backend": jax.default_backend(),
            "first_call_s": warm, "best_s": best, "prompts_per_s": n / best, "per_device": n / best / len(devices),
            "checksum": float(np.abs(first).sum()),
        }))  # fmt: skip
    distributed.barrier("scaling-done")


def _measure(args, devices: int) -> dict:
    """Run one device count in fresh processes; returns the primary's RESULT."""
    procs = args.processes
    if devices % procs:
        raise ConfigError(f"--devices {devices} is not divisible by --processes {procs}")
    cmd = [sys.executable, "-m", "neuronjax.bench.scaling", "--child", "--devices", str(devices),
           "--per-device", str(args.per_device), "--steps", str(args.steps), "--repeats", str(args.repeats)]  # fmt: skip
    if args.model:
        cmd += ["--model", args.model]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURONJAX_")}
    import jax

    if jax.default_backend() == "cpu":
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices // procs}"])
        env["JAX_PLATFORMS"] = "cpu"
    elif procs > 1:
        raise ConfigError("--processes > 1 is for CPU; on accelerators start one process per host with launch/")
    from neuronjax.distributed import free_local_port

    port = free_local_port()
    children = []
    for i in range(procs):
        e = dict(env)
        if procs > 1:
            e.update(NEURONJAX_COORDINATOR=f"127.0.0.1:{port}", NEURONJAX_NUM_PROCESSES=str(procs),
                     NEURONJAX_PROCESS_ID=str(i))  # fmt: skip
        children.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [c.communicate()[0] for c in children]
    for c, out in zip(children, outs):
        if c.returncode != 0:
            raise RuntimeError(f"scaling run on {devices} devices failed (exit code {c.returncode}):\n{out[-3000:]}")
    line = next(ln for ln in outs[0].splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def report(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        f"IG m = {base.get('steps', '?')}, {base['prompts'] // base['devices']} prompts per device, backend {base['backend']}",
        "",
        "| devices | processes | prompts/call | prompts/s total | prompts/s per device | speed-up | efficiency |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        speed = r["prompts_per_s"] / base["prompts_per_s"]
        eff = r["per_device"] / base["per_device"]
        lines.append(f"| {r['devices']} | {r['processes']} | {r['prompts']} | {r['prompts_per_s']:.2f} | "
                     f"{r['per_device']:.2f} | {speed:.2f}x | {eff:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    ap.add_argument("--processes", type=int, default=1, help="processes per run (CPU: joined on 127.0.0.1)")
    ap.add_argument("--per-device", type=int, default=4, help="prompts per device per call")
    ap.add_argument("--steps", type=int, default=8, help="IG steps m")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls (the best counts)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.devices = int(args.devices)
        _child(args)
        return 0
    try:
        counts = [int(x) for x in args.devices.split(",") if x]
    except ValueError:
        ap.error(f"--devices {args.devices!r}: expected comma-separated integers")
    if not counts or min(counts) < 1 or args.processes < 1 or args.per_device < 1:
        ap.error("--devices, --processes and --per-device must be >= 1")
    rows = []
    for d in counts:
        r = _measure(args, d)
        r["steps"] = args.steps
        rows.append(r)
        print(f"  {d} device(s): {r['prompts_per_s']:.2f} prompts/s ({r['per_device']:.2f} per device)", flush=True)
    print(report(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
