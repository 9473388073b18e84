"""The `neuronjax` command. Thin: every subcommand calls library code.

    neuronjax info [MODEL]            what a checkpoint is and how it loads
    neuronjax bench load-memory ...   peak memory of loading a model
    neuronjax bench attribution ...   IG throughput against the PyTorch peer
"""

from __future__ import annotations

import argparse
import sys


def _info(args) -> int:
    import neuronjax

    lm = neuronjax.load_model(args.model, dtype=args.dtype)
    print(lm)
    print(lm.report.summary())
    for k, v in vars(lm.config).items():
        print(f"  {k:24s} {v}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax", description="Good and bad FFN neurons of causal LLMs (NeuronLLM) in JAX.")
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="load a checkpoint and print its configuration and load report")
    info.add_argument("model", nargs="?", default=None, help="checkpoint directory or .gguf (default: embedded SmolLM2)")
    info.add_argument("--dtype", default="float32")
    info.set_defaults(run=_info)
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    benches = {
        "load-memory": ("neuronjax.bench.load_memory", "peak resident memory of loading a model"),
        "attribution": ("neuronjax.bench.attribution", "IG throughput against the PyTorch peer"),
    }
    for name, (module, text) in benches.items():
        b = bench_sub.add_parser(name, help=text, add_help=False)
        b.set_defaults(run=lambda a, rest, module=module: __import__(module, fromlist=["main"]).main(rest))
    args, rest = ap.parse_known_args(argv)
    if args.command == "bench":
        return args.run(args, rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
