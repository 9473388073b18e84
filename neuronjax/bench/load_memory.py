"""Peak resident memory of loading a model, against its parameter bytes.

    python -m neuronjax.bench.load_memory [PATH] [--dtype float32] [--json OUT]

Run as its own process: the baseline is the resident set after every library the loader uses is
imported, the peak is the process's high-water resident set (VmHWM) after the load. VmHWM, not
getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a benchmark started from a large
parent (a test runner) would report the parent's peak. The ratio
(peak - baseline) / parameter bytes shows how much more than the model itself loading holds.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from neuronjax.evaluation.results import write_json


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _rss_peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # no /proc: KiB on Linux


def measure(path: str | None, dtype: str) -> dict:
    import gguf  # noqa: F401  (imported before the baseline: they are not part of the load)
    import jax
    import transformers  # noqa: F401
    from transformers import AutoTokenizer  # noqa: F401

    import neuronjax

    jax.numpy.zeros(1).block_until_ready()  # start the runtime before the baseline
    path = path or neuronjax.default_model_path()
    baseline = _rss_now()
    t0 = time.perf_counter()
    lm = neuronjax.load_model(path, dtype=dtype)
    jax.block_until_ready(lm.state)
    seconds = time.perf_counter() - t0
    peak = _rss_peak()
    return {
        "model": path,
        "dtype": dtype,
        "params": lm.num_params,
        "param_bytes": lm.param_bytes,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_over_baseline_bytes": peak - baseline,
        "ratio_to_param_bytes": (peak - baseline) / lm.param_bytes,
        "load_seconds": round(seconds, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench load-memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", default=None, help="checkpoint dir or .gguf (default: embedded SmolLM2)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    r = measure(args.path, args.dtype)
    mib = 2**20
    print(f"model            {r['model']}")
    print(f"parameters       {r['params'] / 1e6:.1f}M, {r['param_bytes'] / mib:.0f} MiB in {r['dtype']}")
    print(f"rss baseline     {r['baseline_rss_bytes'] / mib:.0f} MiB (libraries imported)")
    print(f"rss peak         {r['peak_rss_bytes'] / mib:.0f} MiB")
    print(f"load added       {r['peak_over_baseline_bytes'] / mib:.0f} MiB = {r['ratio_to_param_bytes']:.2f} x parameter bytes")
    print(f"load time        {r['load_seconds']} s")
    if args.json:
        write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
