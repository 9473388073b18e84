"""The `neuronjax` command. Thin: every subcommand calls library code.

    neuronjax run CONFIG [key=value ...]        identify -> save -> evaluate -> report (the main command)
    neuronjax identify CONFIG [key=value ...]   find and save the neurons of every configured method
    neuronjax evaluate RUN_DIR|CONFIG [k=v ...] held-out evaluation of a run's saved neurons
    neuronjax config show CONFIG [k=v ...]     the resolved config: every key, its default and help
    neuronjax report RUN_DIR [RUN_DIR ...]      markdown tables of evaluated runs + RUN_DIR/report/ (HTML, PNG)
    neuronjax stability CONFIG --replicates N   identify on N disjoint item blocks: Jaccard of the sets vs chance
    neuronjax sweep SWEEP [--dry-run] [k=v ...] every point of a sweep file not finished yet, one table
    neuronjax sweep SWEEP --point I | --gather  one point (a job array's task) | the table so far
    neuronjax generate [RUN_DIR] --prompt ...   free generation under an intervention
    neuronjax info [MODEL]                      what a checkpoint is and how it loads
    neuronjax export RUN_DIR --format safetensors|csv|json   a run's neuron sets for other tools
    neuronjax inspect RUN_DIR --neuron L:I [--method M]      one neuron's card: tokens it promotes, prompts it fires on
    neuronjax bench attribution|evaluation|profile|layer|quadrature|layout|agreement|scaling|load-memory   benchmarks
    neuronjax plan CONFIG --model-config F --topology v5e-64 [--find-batch]   will it fit on a slice

Overrides are dotted `key=value` pairs (YAML values): `identify.k=50`, `task.split.seed=1`.

Size: every subcommand's arguments and help text are defined here, next to one another, so that
the whole command line reads in one place; each handler only calls library code.
"""

from __future__ import annotations

import argparse
import sys

from neuronjax.errors import NeuronJaxError


def _info(args) -> int:
    import neuronjax

    lm = neuronjax.load_model(args.model, dtype=args.dtype)
    print(lm)
    print(lm.report.summary())
    for k, v in vars(lm.config).items():
        print(f"  {k:24s} {v}")
    return 0


def _config(target: str, overrides: list[str]):
    """A run config from a YAML file, a shipped config's name or a run directory's saved config."""
    import os

    from neuronjax.config import config_of_run, load_run_config
    from neuronjax.configlib import parse_overrides
    from neuronjax.shipped import config_path

    pairs = parse_overrides(overrides)
    if os.path.isdir(target):
        return config_of_run(target, pairs)
    return load_run_config(config_path(target), pairs)


def _summary(config, what: str, t0: float) -> None:
    import os
    import time

    print(f"{what} in {time.perf_counter() - t0:.0f} s; results in {os.path.abspath(config.run_dir)}")


def _print_report(config) -> None:
    """The run's report.md (written by evaluate_run on process 0), printed once; the pictures and
    HTML page are drawn into <run>/report/."""
    import os

    import jax

    from neuronjax.distributed import is_primary
    from neuronjax.run import REPORT

    if is_primary():
        from neuronjax.report import write_html_report

        with open(os.path.join(config.run_dir, REPORT)) as f:
            print(f.read())
        if not _can_draw():
            print(NO_PICTURES)
        elif jax.process_count() == 1:
            print(write_html_report([config.run_dir]).summary())  # the pictures and index.html
        else:
            # Reading the saved sets back is collective under several processes (Orbax); the
            # pictures are drawn afterwards by one process: `neuronjax report RUN_DIR`.
            print(f"pictures: run `neuronjax report {config.run_dir}` (one process) to draw them")


NO_PICTURES = "pictures: skipped (matplotlib is not installed; pip install 'neuronjax[report]')"


def _can_draw() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _throughput(sets) -> None:
    stats = next(iter(sets.values())).meta.get("stats", {}) if sets else {}
    if stats.get("seconds"):
        print(
            f"identification: {stats['proxies']} prompts in {stats['seconds']:.0f} s, "
            f"{stats['prompts_per_second']:.2f} prompts/s on {stats['devices']} device(s) "
            f"({stats['prompts_per_second_per_device']:.2f} per device, {stats['processes']} process(es))"
        )


def _run(args) -> int:
    import time

    from neuronjax.run import evaluate_run, identify_run, load_model_for

    t0 = time.perf_counter()
    config = _config(args.config, args.overrides)
    lm = load_model_for(config)
    sets = identify_run(config, lm, progress=not args.quiet, force=args.force)
    _throughput(sets)
    evaluate_run(config, lm, sets, progress=not args.quiet)
    _print_report(config)
    _summary(config, "identify + evaluate", t0)
    return 0


def _identify(args) -> int:
    import time

    from neuronjax.run import identify_run

    t0 = time.perf_counter()
    config = _config(args.config, args.overrides)
    sets = identify_run(config, progress=not args.quiet, force=args.force)
    for name, ns in sets.items():
        print(f"{name:22s} good {int(ns.good.sum()):5d}  bad {int(ns.bad.sum()):5d}")
    _throughput(sets)
    _summary(config, "identify", t0)
    return 0


def _evaluate(args) -> int:
    import time

    from neuronjax.run import evaluate_run

    t0 = time.perf_counter()
    config = _config(args.config, args.overrides)
    evaluate_run(config, progress=not args.quiet)
    _print_report(config)
    _summary(config, "evaluate", t0)
    return 0


def _config_show(args) -> int:
    from neuronjax.config import show

    print(show(_config(args.config, args.overrides)), end="")
    return 0


def _report(args) -> int:
    from neuronjax.report import cross_matrix, markdown_report, summary_table

    if args.summary:
        text = "Accuracy [95% CI]:\n\n" + summary_table(args.runs, args.methods, "accuracy")
        text += "\n\nPermutation-consistent accuracy [95% CI]:\n\n" + summary_table(args.runs, args.methods, "consistent")
        text += ("\n\nv / ^: lower / higher than the same mode on random sets of equal per-layer counts: the "
                 "Holm-corrected verdict (family-wise 5% over the run's tested rows), or, for an evaluation written "
                 "before verdicts were corrected, the paired 95% interval excluding zero.\n")
        for mode in ("suppress_good", "suppress_bad"):
            text += f"\n\nCross-task accuracy change against no intervention [95% CI], {mode}:\n\n"
            text += cross_matrix(args.runs, (args.methods or ["neuronllm"])[0], mode) + "\n"
    else:
        text = markdown_report(args.runs)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"report written to {args.output}")
    else:
        print(text)
    if not args.no_html and not _can_draw():
        print(NO_PICTURES)
    elif not args.no_html:
        from neuronjax.report import write_html_report

        print(write_html_report(args.runs, args.html_dir, args.compare, args.overlap_method).summary())
    return 0


def _stability(args) -> int:
    from neuronjax.stability import STABILITY, parse_seeds, stability

    config = _config(args.config, args.overrides)
    seeds = parse_seeds(args.split_seeds)
    result = stability(config, replicates=args.replicates, split_seeds=seeds, items=args.items,
                       bootstrap=args.bootstrap, progress=not args.quiet)  # fmt: skip
    print(result.table())
    print(result.summary())
    import os

    print(f"results in {os.path.abspath(os.path.join(config.run_dir, STABILITY))}")
    return 0


def _sweep(args) -> int:
    from neuronjax.configlib import parse_overrides
    from neuronjax.errors import ConfigError
    from neuronjax.sweep import expand, gather_sweep, load_sweep, plan, run_sweep

    overrides = parse_overrides(args.overrides)
    if args.dry_run and (args.count or args.gather):
        raise ConfigError("--dry-run goes with a whole sweep or with --point, not with --count or --gather")
    if args.count:
        print(len(expand(load_sweep(args.sweep), overrides)))
        return 0
    if args.gather:
        table = gather_sweep(args.sweep, overrides)
        with open(table.md_path) as f:
            print(f.read())
        print(f"CSV: {table.csv_path}")
        print(table.summary())
        return 0
    if args.dry_run:
        print(plan(args.sweep, overrides, args.force, args.point).describe())
        print("dry run: nothing was run")
        return 0
    result = run_sweep(args.sweep, overrides, force=args.force, progress=not args.quiet, point=args.point)
    if result.md_path:
        with open(result.md_path) as f:
            print(f.read())
        print(f"CSV: {result.csv_path}")
    print(result.summary())
    return 1 if result.failed else 0


def _generate(args) -> int:
    import neuronjax
    from neuronjax.generate import generate
    from neuronjax.intervention import from_masks

    iv = None
    if args.run:
        from neuronjax.config import config_of_run
        from neuronjax.io.neurons import load_neurons
        from neuronjax.run import NEURONS, load_model_for

        config = config_of_run(args.run)
        lm = load_model_for(config)
        import os

        ns = load_neurons(os.path.join(args.run, NEURONS, args.method), lm)
        iv = from_masks(args.mode, ns.good, ns.bad, all_positions=args.all_positions, value=args.value)
    else:
        if args.mode != "none":
            raise SystemExit("neuronjax generate: --mode needs a RUN_DIR holding the neurons")
        lm = neuronjax.load_model(args.model)
    texts = generate(lm, args.prompt, iv, args.max_new_tokens, chat=args.chat, temperature=args.temperature,
                     top_p=args.top_p, seed=args.seed)  # fmt: skip
    for prompt, text in zip(args.prompt, texts):
        print(f"--- {prompt!r} [{args.mode}]\n{text}")
    return 0


def _export(args) -> int:
    from neuronjax.io.export import export_neurons

    for path in export_neurons(args.run, args.format, args.method, args.output):
        print(path)
    return 0


def _inspect(args) -> int:
    from neuronjax.cards import inspect_neuron

    card = inspect_neuron(args.run, args.neuron, args.method, tokens=args.tokens, prompts=args.prompts,
                          progress=not args.quiet)  # fmt: skip
    print(card.text())
    return 0


# subcommands that run a model: they start again under the huge-page allocator setting
# (`neuronjax.hugepages`); the others start faster without it
COMPUTE = ("run", "identify", "evaluate", "stability", "sweep", "generate", "inspect", "bench")


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in COMPUTE:
        from neuronjax import hugepages

        hugepages.reexec(["-m", "neuronjax", *sys.argv[1:]])  # returns when the setting is on or does not apply
    from neuronjax import __version__

    ap = argparse.ArgumentParser(prog="neuronjax", description="Good and bad FFN neurons of causal LLMs (NeuronLLM) in JAX.")
    ap.add_argument("--version", action="version", version=f"neuronjax {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    from neuronjax import confighelp
    from neuronjax.config import RunConfig

    sections = ("config sections (dotted keys: section.key=value; `neuronjax config show CONFIG` prints every key):\n"
                + confighelp.sections_help(RunConfig)
                + "\n  task.<key>      a key of the task YAML (e.g. task.split.seed=1)")  # fmt: skip

    def with_config(p, what):
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        p.epilog = sections
        p.add_argument("config", help=what)
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. identify.k=50")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    run = sub.add_parser("run", help="identify, save, evaluate and print the table (the whole pipeline)")
    with_config(run, "run config YAML (e.g. configs/default.yaml)")
    run.add_argument("--force", action="store_true", help="replace the run's earlier neurons")
    run.set_defaults(handler=_run)
    ident = sub.add_parser("identify", help="find and save good / bad neurons with every configured method")
    with_config(ident, "run config YAML")
    ident.add_argument("--force", action="store_true", help="replace the run's earlier neurons")
    ident.set_defaults(handler=_identify)
    ev = sub.add_parser("evaluate", help="evaluate a run's saved neurons on its held-out split")
    with_config(ev, "run directory (or the run config YAML)")
    ev.set_defaults(handler=_evaluate)
    cfg = sub.add_parser("config", help="show a resolved run config")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print a run config with every key, its default and its help, then its task config")
    with_config(show, "run config YAML or run directory")
    show.set_defaults(handler=_config_show)
    rep = sub.add_parser("report", help="markdown tables of evaluated runs, and an HTML page with pictures")
    rep.add_argument("runs", nargs="+", help="run directories")
    rep.add_argument("--html-dir", default=None,
                     help="where index.html and the PNG files go (default: RUN_DIR/report; several runs: their common parent's report/)")
    rep.add_argument("--compare", nargs="+", default=(), metavar="RUN_DIR",
                     help="more runs (identified is enough) whose neuron sets join the across-runs overlap heatmap")
    rep.add_argument("--overlap-method", default=None, help="whose sets the across-runs overlap compares (default neuronllm)")
    rep.add_argument("--no-html", action="store_true", help="only the markdown: no pictures, no HTML page")
    rep.add_argument("--output", default=None, help="write the markdown here instead of printing it")
    rep.add_argument("--summary", action="store_true", help="one line per (task, method) across runs")
    rep.add_argument("--methods", nargs="*", default=(), help="with --summary: only these methods")
    rep.set_defaults(handler=_report)
    stab = sub.add_parser("stability", help="identify on N disjoint blocks of the identification items and compare "
                          "the K sets pair by pair (Jaccard) against random sets with the same per-layer counts")  # fmt: skip
    with_config(stab, "run config YAML (or a shipped config's name, or a run directory)")
    stab.add_argument(
        "--replicates",
        type=int,
        required=True,
        metavar="N",
        help="disjoint blocks of the identification items, one identification each (>= 2)",
    )
    stab.add_argument(
        "--split-seeds",
        default=None,
        metavar="S,S,...",
        help="repeat for these split seeds (e.g. 0,1); pairs across seeds are reported apart "
        "(default: the task's split.seed only)",
    )
    stab.add_argument(
        "--items",
        type=int,
        default=None,
        metavar="M",
        help="identification items per replicate (default: an equal share of them all)",
    )
    stab.add_argument(
        "--bootstrap", type=int, default=1000, help="resamples of the pairs for the intervals (default: %(default)s)"
    )
    stab.set_defaults(handler=_stability)
    sweep = sub.add_parser("sweep", help="run every unfinished point of a sweep file and gather one table")
    sweep.add_argument("sweep", help="sweep YAML (e.g. configs/sweeps/example.yaml)")
    sweep.add_argument("overrides", nargs="*", help="dotted key=value overrides for every point, e.g. evaluate.bootstrap=200")
    sweep.add_argument("--dry-run", action="store_true", help="list the points, their run directories and states; run nothing")
    one = sweep.add_mutually_exclusive_group()
    one.add_argument("--point", type=int, default=None, metavar="I",
                     help="run only point I (1-based, as --dry-run lists them; e.g. $SLURM_ARRAY_TASK_ID); no table")
    one.add_argument("--gather", action="store_true", help="only write the table from the points finished so far")
    one.add_argument("--count", action="store_true", help="print the number of points (a job array's size)")
    sweep.add_argument("--force", action="store_true", help="delete and run again the run directories made with another config")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(handler=_sweep)
    from neuronjax.intervention import MODES

    gen = sub.add_parser("generate", help="greedy generation, optionally under a run's intervention")
    gen.add_argument("run", nargs="?", default=None, help="run directory holding the neurons (omit for none)")
    gen.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for several)")
    gen.add_argument("--method", default="neuronllm", help="whose neurons, a method of the run (default: %(default)s)")
    gen.add_argument("--mode", default="none", choices=MODES, metavar="MODE",
                     help="intervention mode, one of %(choices)s; all but none need a RUN_DIR (default: %(default)s)")
    gen.add_argument("--all-positions", action="store_true", help="edit every position, not only the last")
    gen.add_argument("--value", type=float, default=0.0,
                     help="constant of the set_good / set_bad modes (default: %(default)s)")
    gen.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per prompt (default: %(default)s)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy; above 0: sampling at this temperature (default 0)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus of the sampling: smallest set of tokens reaching this probability (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    gen.add_argument("--chat", action="store_true", help="wrap each prompt in the chat template")
    gen.add_argument("--model", default=None, help="checkpoint when no RUN_DIR is given (default: the embedded model)")
    gen.set_defaults(handler=_generate)
    info = sub.add_parser("info", help="load a checkpoint and print its configuration and load report")
    info.add_argument("model", nargs="?", default=None, help="checkpoint directory or .gguf (default: embedded SmolLM2)")
    info.add_argument("--dtype", default="float32")
    info.set_defaults(handler=_info)
    export = sub.add_parser("export", help="write a run's neuron sets as safetensors, CSV or JSON")
    export.add_argument("run", help="run directory (or one saved set: a directory holding neurons.json)")
    export.add_argument("--format", required=True, choices=("safetensors", "csv", "json"),
                        help="safetensors: <method>.safetensors; csv / json: one row per good and bad neuron")
    export.add_argument("--method", action="append", default=[], help="only this method's set (repeat for several)")
    export.add_argument("--output", default=None, help="folder for the files (default RUN_DIR/export)")
    export.set_defaults(handler=_export)
    insp = sub.add_parser("inspect", help="one neuron's card: the tokens it promotes and suppresses, the held-out "
                                          "prompts it fires on")  # fmt: skip
    insp.add_argument("run", help="run directory")
    insp.add_argument("--neuron", required=True, metavar="L:I", help="layer:index, both 0-based (e.g. 17:1446)")
    insp.add_argument("--method", default=None,
                      help="whose saved set gives the neuron's score and rank (default: neuronllm, else the first)")
    insp.add_argument("--tokens", type=int, default=10, metavar="N",
                      help="promoted and suppressed tokens shown (default: %(default)s)")  # fmt: skip
    insp.add_argument("--prompts", type=int, default=5, metavar="N",
                      help="most active held-out items shown (default: %(default)s)")  # fmt: skip
    insp.add_argument("--quiet", action="store_true", help="no progress bar")
    insp.set_defaults(handler=_inspect)
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    benches = {
        "load-memory": ("neuronjax.bench.load_memory", "peak resident memory of loading a model"),
        "attribution": ("neuronjax.bench.attribution", "IG throughput against the PyTorch peer"),
        "scaling": ("neuronjax.bench.scaling", "identification throughput against the device count"),
        "layout": ("neuronjax.bench.layout", "compile time against depth, attribution step memory"),
        "agreement": ("neuronjax.bench.agreement", "how far two runs' sets and accuracies are apart"),
        "quadrature": ("neuronjax.bench.quadrature", "IG error of each quadrature rule against the nodes m"),
        "evaluation": ("neuronjax.bench.evaluation", "intervention scoring throughput against a PyTorch peer"),
        "profile": ("neuronjax.bench.profile", "where an IG call's time goes, by compiled operation kind"),
        "layer": ("neuronjax.bench.layer", "one replay layer's parts timed alone, against a lone product"),
    }
    for name, (module, text) in benches.items():
        b = bench_sub.add_parser(name, help=text, add_help=False)
        b.set_defaults(handler=lambda a, rest, module=module: __import__(module, fromlist=["main"]).main(rest))
    plan = sub.add_parser("plan", help="compile a run's steps for a TPU slice without it: fits? how fast?", add_help=False)
    plan.set_defaults(handler=lambda a, rest: __import__("neuronjax.plan", fromlist=["main"]).main(rest))
    args, rest = ap.parse_known_args(argv)
    if args.command == "plan":  # deviceless: no distributed set-up
        try:
            return args.handler(args, rest)
        except NeuronJaxError as err:
            print(f"neuronjax plan: error: {err}", file=sys.stderr)
            return 2
    if args.command == "bench":
        from neuronjax.distributed import initialize

        initialize()
        return args.handler(args, rest)
    if hasattr(args, "overrides"):  # key=value pairs may also come after the options
        args.overrides += [r for r in rest if "=" in r and not r.startswith("-")]
        rest = [r for r in rest if r not in args.overrides]
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        from neuronjax import compile_cache
        from neuronjax.distributed import initialize

        compile_cache.enable()  # programs compiled by earlier runs are read back (NEURONJAX_COMPILE_CACHE)
        initialize()  # joins the other processes of a multi-host run (NEURONJAX_*, SLURM, TPU pod)
        return args.handler(args)
    except (NeuronJaxError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"neuronjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
