"""The replicates of a stability measurement: disjoint blocks of the identification items, each
identified with every method, for each split seed; the whole measurement (`stability`)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import numpy as np

from neuronjax.errors import ConfigError, InputError
from neuronjax.stability.results import SIDES, STABILITY, Replicate, Stability, compare


def replicate_blocks(ids: Sequence[str], replicates: int, per: int | None = None,
                     where: str = "identification items") -> list[tuple[str, ...]]:  # fmt: skip
    """`replicates` disjoint blocks of `per` consecutive ids (default: as many as an equal share
    allows, len(ids) // replicates); the remaining ids are in no block."""
    if not isinstance(replicates, int) or replicates < 2:
        raise ConfigError(
            f"--replicates = {replicates!r}: expected an integer >= 2 (Jaccard compares pairs of replicates)"
        )
    most = len(ids) // replicates
    if per is None:
        per = most
    elif not isinstance(per, int) or per < 1:
        raise ConfigError(f"--items = {per!r}: expected an integer >= 1 (identification items per replicate)")
    if per < 1 or per > most:
        raise ConfigError(
            f"--replicates {replicates}" + (f" x --items {per}" if per >= 1 else "") + f": the {where} are "
            f"{len(ids)}, too few for {replicates} disjoint replicates of {max(per, 1)} item(s); expected "
            f"{replicates * max(per, 1)} or more (raise task.split.max_identify, or lower --replicates / --items)"
        )
    return [tuple(ids[r * per : (r + 1) * per]) for r in range(replicates)]


def _item_id(item) -> str:
    return str(getattr(item, "id", item))


def subset(encoded, ids: Sequence[str]):
    """The EncodedTask of only these identification items (their proxies, item indices renumbered,
    the split's identify list replaced by `ids`)."""
    index = {_item_id(item): j for j, item in enumerate(encoded.items)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise InputError(f"subset: item ids {missing[:3]} are not among the task's {encoded.part} items")
    old = [index[i] for i in ids]
    new = {j: k for k, j in enumerate(old)}
    records = tuple(
        dataclasses.replace(r, item_index=new[r.item_index]) for r in encoded.records if r.item_index in new
    )
    split = dataclasses.replace(encoded.split, identify=tuple(ids))
    return dataclasses.replace(encoded, items=tuple(encoded.items[j] for j in old), records=records, split=split)


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """'0,1' -> (0, 1); None -> None (the config's own split seed)."""
    if text is None:
        return None
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"--split-seeds = {text!r}: expected distinct non-negative integers separated by commas, e.g. 0,1"
        )
    return seeds


def _methods_for(methods, replicate: int):
    from neuronjax.methods import Random

    return [dataclasses.replace(m, seed=m.seed + replicate) if isinstance(m, Random) else m for m in methods]


def identify_replicates(lm, encoded, methods, attribution=None, replicates: int = 3, items: int | None = None,
                        block_items: int = 16, split_seed: int = 0, first: int = 0, progress: bool = False,
                        where: str = "identification items") -> tuple[list[Replicate], int]:  # fmt: skip
    """Identify with every method on `replicates` disjoint blocks of `encoded`'s items (an
    EncodedTask of the identification part); returns (the replicates, items left in no block).
    `first` numbers the replicates (the random control's seed offset) after earlier ones."""
    from neuronjax.identify import AttributionConfig, identify
    from neuronjax.run import Progress

    ids = [_item_id(i) for i in encoded.items]
    blocks = replicate_blocks(ids, replicates, items, where)
    out = []
    for b, block in enumerate(blocks):
        part = subset(encoded, block)
        bar = Progress(len(part.records), f"stability seed {split_seed} block {b + 1}/{replicates}", progress)
        start = time.perf_counter()
        try:
            sets = identify(lm, part, _methods_for(methods, first + b), attribution or AttributionConfig(),
                            block_items, bar)  # fmt: skip
        finally:
            bar.close()
        flat = {m: {s: tuple(int(x) for x in np.flatnonzero(getattr(ns, s))) for s in SIDES} for m, ns in sets.items()}
        out.append(Replicate(split_seed, b, tuple(block), flat, round(time.perf_counter() - start, 1)))
    return out, len(ids) - len(blocks[0]) * replicates


def stability(config, lm=None, replicates: int = 3, split_seeds: Sequence[int] | None = None,
              items: int | None = None, bootstrap: int = 1000, seed: int = 0, progress: bool = True,
              write: bool = True) -> Stability:  # fmt: skip
    """Identify on `replicates` disjoint blocks of the run config's identification items (for each
    split seed), compare the sets pair by pair, and write <run_dir>/stability.json (write=True;
    the run's report.md is rendered again when the run was evaluated)."""
    from neuronjax.io.neurons import model_fingerprint
    from neuronjax.methods import make_methods
    from neuronjax.run import EVALUATION, check_set_sizes, encode, load_model_for, write_report

    if not isinstance(replicates, int) or replicates < 2:
        raise ConfigError(
            f"--replicates = {replicates!r}: expected an integer >= 2 (Jaccard compares pairs of replicates)"
        )
    if not isinstance(bootstrap, int) or bootstrap < 1:
        raise ConfigError(f"--bootstrap = {bootstrap!r}: expected an integer >= 1")
    methods = make_methods(config.identify, config.source or "config")
    seeds = tuple(split_seeds) if split_seeds else (_task_seed(config),)
    t0 = time.perf_counter()
    lm = lm or load_model_for(config)
    check_set_sizes(config, methods, lm)
    grid = (lm.config.num_layers, lm.config.intermediate_size)
    done: list[Replicate] = []
    unused: dict[int, int] = {}
    task_name = ""
    for split_seed in seeds:
        cfg = dataclasses.replace(config, task_overrides={**config.task_overrides, "split.seed": split_seed})
        encoded = encode(cfg, lm, "identify")
        task_name = encoded.config.name
        where = f"identification items of task {task_name!r} (split seed {split_seed}, task.split.max_identify)"
        reps, unused[split_seed] = identify_replicates(
            lm, encoded, methods, config.identify.attribution, replicates, items, config.identify.block_items,
            split_seed, len(done), progress, where)  # fmt: skip
        done += reps
    names = tuple(m.name for m in methods)
    result = Stability(
        run=config.name, task=task_name, model=model_fingerprint(lm), grid=grid, methods=names, k=config.identify.k,
        attribution=dataclasses.asdict(config.identify.attribution), split_seeds=seeds,
        items_per_replicate=len(done[0].items), unused_items=unused, bootstrap=bootstrap, seed=seed,
        replicates=tuple(done), rows=compare(done, names, grid, bootstrap, seed),
        seconds=round(time.perf_counter() - t0, 1),
    )  # fmt: skip
    from neuronjax.distributed import is_primary

    if write and is_primary():
        os.makedirs(config.run_dir, exist_ok=True)
        result.save(os.path.join(config.run_dir, STABILITY))
        if os.path.exists(os.path.join(config.run_dir, EVALUATION)):
            write_report(config.run_dir)
    return result


def _task_seed(config) -> int:
    from neuronjax.tasks.config import load_task_config

    return load_task_config(config.task, config.task_overrides).split.seed
