"""Would the same neurons come back from other identification items? (`neuronjax stability`)

The run config's identification items (its split, in split order) are cut into N disjoint blocks
of equal size (the first N x size items; the rest are left out and counted), and every configured
method identifies its K sets on each block in turn, with the config's attribution and K. With
several split seeds (`split_seeds`), the same is done on each seed's split: blocks of one seed are
disjoint, blocks of different seeds may share items (their number is recorded per pair).

For every method and side (good / bad) and every pair of replicates, the Jaccard index of the two
sets, |A ∩ B| / |A ∪ B|, is compared with its value for random sets with the same per-layer counts:

- chance is computed exactly, not simulated: in layer l with n neurons, two sets of a_l and b_l
  neurons drawn uniformly at random share a hypergeometric number of neurons,
  P(I_l = i) = C(a_l, i) C(n - a_l, b_l - i) / C(n, b_l); layers are independent, so the total
  intersection I = sum_l I_l has the convolution of the per-layer distributions, and the chance
  Jaccard of the pair is E[I / (|A| + |B| - I)] over it (|A|, |B| fixed by the counts). The same
  distribution gives the pair's exact p-value P(I >= observed intersection) (the Jaccard index
  grows with I at fixed sizes, so this is P(chance Jaccard >= observed));
- per (method, side, scope) the pairs' Jaccard indices are averaged, with a 95% percentile
  interval over `bootstrap` resamples of the pairs (seeded). Pairs share replicates, so they are not
  independent: the interval shows the spread over pairs, not a sampling interval of independent
  replications. The largest pair p-value says whether every pair is above chance.

A pair whose two sets are both empty (a method that found no bad neurons) has no Jaccard index and
is left out of the mean. The random control (`random`) is drawn with seed + replicate number, so
it is an empirical chance reference beside the exact one (with one seed, equal per-layer counts
would give the very same draw in every replicate).

    result = stability(config, lm, replicates=3)      # writes <run_dir>/stability.json
    print(result.table())
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Sequence

import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.evaluation.results import Interval

STABILITY = "stability.json"
SIDES = ("good", "bad")
WITHIN, ACROSS = "within seed", "across seeds"


# ----------------------------------------------------------------------------- the numbers


def jaccard(a, b) -> float:
    """|A ∩ B| / |A ∪ B| of two bool masks of one shape; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int(np.sum(a | b))
    return float(np.sum(a & b)) / union if union else math.nan


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeometric(n: int, a: int, b: int) -> np.ndarray:
    """P(I = i), i = 0..min(a, b): the number of neurons shared by a fixed set of a and a uniformly
    random set of b among n (float64)."""
    if not (0 <= a <= n and 0 <= b <= n):
        raise ValueError(f"hypergeometric: set sizes {a}, {b} must lie in 0..{n}")
    i = np.arange(min(a, b) + 1)
    logp = np.array([_log_comb(a, k) + _log_comb(n - a, b - k) - _log_comb(n, b) if b - k <= n - a else -np.inf
                     for k in i])  # fmt: skip
    p = np.exp(logp)
    return p / p.sum()


def intersection_distribution(a_counts: Sequence[int], b_counts: Sequence[int], n: int) -> np.ndarray:
    """P(|A ∩ B| = i), i = 0..sum_l min(a_l, b_l), for A and B random with per-layer counts a_l, b_l
    among n neurons per layer (independent layers: the convolution of per-layer hypergeometrics)."""
    if len(a_counts) != len(b_counts):
        raise ValueError(f"per-layer counts of {len(a_counts)} and {len(b_counts)} layers")
    dist = np.ones(1)
    for a, b in zip(a_counts, b_counts):
        dist = np.convolve(dist, hypergeometric(n, int(a), int(b)))
    return dist


def chance_jaccard(a_counts: Sequence[int], b_counts: Sequence[int], n: int) -> float:
    """Exact E[Jaccard] of two random sets with these per-layer counts (n neurons per layer); NaN
    when both sets are empty."""
    size = int(np.sum(a_counts)) + int(np.sum(b_counts))
    if size == 0:
        return math.nan
    dist = intersection_distribution(a_counts, b_counts, n)
    i = np.arange(len(dist))
    return float(np.sum(dist * i / (size - i)))


def chance_p(a_counts: Sequence[int], b_counts: Sequence[int], n: int, shared: int) -> float:
    """Exact P(|A ∩ B| >= shared) for random sets with these per-layer counts."""
    dist = intersection_distribution(a_counts, b_counts, n)
    return float(min(1.0, np.sum(dist[shared:]))) if shared > 0 else 1.0


def mean_interval(values: Sequence[float], bootstrap: int, seed: int) -> Interval:
    """The mean of `values` (NaN left out) with a 95% percentile interval over `bootstrap`
    resamples of them (numpy default_rng(seed)); NaN when none is finite."""
    x = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(bootstrap, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(low), float(high))


# ----------------------------------------------------------------------------- the replicates


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
        raise ConfigError(f"subset: item ids {missing[:3]} are not among the task's {encoded.part} items")
    old = [index[i] for i in ids]
    new = {j: k for k, j in enumerate(old)}
    records = tuple(
        dataclasses.replace(r, item_index=new[r.item_index]) for r in encoded.records if r.item_index in new
    )
    split = dataclasses.replace(encoded.split, identify=tuple(ids))
    return dataclasses.replace(encoded, items=tuple(encoded.items[j] for j in old), records=records, split=split)


# ----------------------------------------------------------------------------- the result


@dataclasses.dataclass(frozen=True)
class Replicate:
    """One identification: its split seed, its block, its items and every method's sets (flat
    indices layer * mlp + neuron, ascending)."""

    split_seed: int
    block: int
    items: tuple[str, ...]
    sets: dict  # {method: {"good": (flat, ...), "bad": (flat, ...)}}
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"seed {self.split_seed} block {self.block}"

    def mask(self, method: str, side: str, grid: tuple[int, int]) -> np.ndarray:
        m = np.zeros(grid[0] * grid[1], bool)
        m[list(self.sets[method][side])] = True
        return m.reshape(grid)

    def to_json(self) -> dict:
        return {"split_seed": self.split_seed, "block": self.block, "items": list(self.items), "seconds": self.seconds,
                "sets": {m: {s: list(v[s]) for s in SIDES} for m, v in self.sets.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> Replicate:
        sets = {m: {s: tuple(int(x) for x in v[s]) for s in SIDES} for m, v in d["sets"].items()}
        return cls(int(d["split_seed"]), int(d["block"]), tuple(d["items"]), sets, float(d.get("seconds", 0.0)))


@dataclasses.dataclass(frozen=True)
class Pair:
    """One pair of replicates for one method and side."""

    a: int  # replicate numbers (indices into Stability.replicates)
    b: int
    shared_items: int  # identification items both replicates used (0 within a seed)
    intersection: int
    sizes: tuple[int, int]
    jaccard: float  # NaN when both sets are empty
    chance: float  # exact E[Jaccard] of random sets with the same per-layer counts
    p: float  # exact P(chance intersection >= observed)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"sizes": list(self.sizes)}

    @classmethod
    def from_json(cls, d: dict) -> Pair:
        return cls(int(d["a"]), int(d["b"]), int(d["shared_items"]), int(d["intersection"]), tuple(d["sizes"]),
                   float(d["jaccard"]), float(d["chance"]), float(d["p"]))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SideStability:
    """The pairs of one method, side and scope (within a split seed / across split seeds)."""

    method: str
    side: str  # good / bad
    scope: str  # WITHIN or ACROSS
    pairs: tuple[Pair, ...]
    jaccard: Interval  # mean over pairs [95% percentile interval over pair resamples]
    chance: float  # mean over pairs of the exact chance Jaccard

    @property
    def p_max(self) -> float:
        """The largest pair p-value (every pair is above chance at this level)."""
        return max((p.p for p in self.pairs if not math.isnan(p.jaccard)), default=math.nan)

    @property
    def mean_size(self) -> float:
        return float(np.mean([s for p in self.pairs for s in p.sizes])) if self.pairs else math.nan

    def to_json(self) -> dict:
        return {"method": self.method, "side": self.side, "scope": self.scope, "jaccard": self.jaccard.to_json(),
                "chance": self.chance, "pairs": [p.to_json() for p in self.pairs]}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> SideStability:
        return cls(d["method"], d["side"], d["scope"], tuple(Pair.from_json(p) for p in d["pairs"]),
                   Interval.from_json(d["jaccard"]), float(d["chance"]))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Stability:
    """What `neuronjax stability` measured (stability.json)."""

    run: str
    task: str
    model: dict  # the model fingerprint (neuronjax.io.neurons.model_fingerprint)
    grid: tuple[int, int]  # (layers, mlp)
    methods: tuple[str, ...]
    k: int
    attribution: dict
    split_seeds: tuple[int, ...]
    items_per_replicate: int
    unused_items: dict  # {split seed: identification items in no block}
    bootstrap: int
    seed: int
    replicates: tuple[Replicate, ...]
    rows: tuple[SideStability, ...]
    seconds: float = 0.0

    def row(self, method: str, side: str, scope: str = WITHIN) -> SideStability:
        for r in self.rows:
            if (r.method, r.side, r.scope) == (method, side, scope):
                return r
        raise KeyError(f"no stability row for method {method!r}, side {side!r}, scope {scope!r}")

    def table(self) -> str:
        """The markdown table: one row per method, side and scope."""
        return stability_table(self).markdown()

    def summary(self) -> str:
        per_seed = len(self.replicates) // max(1, len(self.split_seeds))
        return (f"{per_seed} replicates x {self.items_per_replicate} identification items per split seed "
                f"{', '.join(map(str, self.split_seeds))} ({self._left_out()}); K = {self.k}; "
                f"{len(self.replicates)} identifications in {self.seconds:.0f} s")  # fmt: skip

    def _left_out(self) -> str:
        left = [f"{n} (seed {s})" for s, n in self.unused_items.items() if n]
        return "identification items left out: " + ", ".join(left) if left else "every identification item used"

    def to_json(self) -> dict:
        return {
            "run": self.run, "task": self.task, "model": self.model, "grid": list(self.grid),
            "methods": list(self.methods), "k": self.k, "attribution": self.attribution,
            "split_seeds": list(self.split_seeds), "items_per_replicate": self.items_per_replicate,
            "unused_items": {str(k): v for k, v in self.unused_items.items()}, "bootstrap": self.bootstrap,
            "seed": self.seed, "seconds": self.seconds, "replicates": [r.to_json() for r in self.replicates],
            "rows": [r.to_json() for r in self.rows],
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> Stability:
        return cls(d["run"], d["task"], dict(d["model"]), tuple(d["grid"]), tuple(d["methods"]), int(d["k"]),
                   dict(d["attribution"]), tuple(int(s) for s in d["split_seeds"]), int(d["items_per_replicate"]),
                   {int(k): int(v) for k, v in d["unused_items"].items()}, int(d["bootstrap"]), int(d["seed"]),
                   tuple(Replicate.from_json(r) for r in d["replicates"]),
                   tuple(SideStability.from_json(r) for r in d["rows"]), float(d.get("seconds", 0.0)))  # fmt: skip

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> Stability:
        with open(path) as f:
            return cls.from_json(json.load(f))


def stability_table(result: Stability):
    """The stability rows as a report `Table`."""
    from neuronjax.report.document import RIGHT, Table

    def num(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.3f}"

    def pval(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.1e}" if x < 1e-3 else f"{x:.3f}"

    rows = []
    for r in result.rows:
        finite = [p.jaccard for p in r.pairs if not math.isnan(p.jaccard)]
        spread = f"{min(finite):.3f}-{max(finite):.3f}" if finite else "-"
        ratio = r.jaccard.value / r.chance if finite and r.chance > 0 else math.nan
        rows.append((r.method, r.side, r.scope, str(len(r.pairs)), f"{r.mean_size:.0f}",
                     "-" if not finite else str(r.jaccard), spread, num(r.chance),
                     "-" if math.isnan(ratio) else f"{ratio:.1f}x", pval(r.p_max)))  # fmt: skip
    header = ("method", "side", "replicate pairs", "pairs", "mean size", "Jaccard [95% over pairs]", "pair range",
              "chance (exact)", "vs chance", "max pair p")  # fmt: skip
    return Table(header, rows, ("left", "left", "left") + (RIGHT,) * 7)


def compare(replicates: Sequence[Replicate], methods: Sequence[str], grid: tuple[int, int], bootstrap: int = 1000,
            seed: int = 0) -> tuple[SideStability, ...]:  # fmt: skip
    """Every pair of replicates, per method and side, within and (with several seeds) across split
    seeds."""
    out = []
    pairs = list(itertools.combinations(range(len(replicates)), 2))
    for method in methods:
        for side in SIDES:
            masks = [r.mask(method, side, grid) for r in replicates]
            counts = [m.sum(axis=1) for m in masks]
            by_scope: dict[str, list[Pair]] = {}
            for a, b in pairs:
                ra, rb = replicates[a], replicates[b]
                scope = WITHIN if ra.split_seed == rb.split_seed else ACROSS
                shared = int(np.sum(masks[a] & masks[b]))
                by_scope.setdefault(scope, []).append(Pair(
                    a, b, len(set(ra.items) & set(rb.items)), shared, (int(masks[a].sum()), int(masks[b].sum())),
                    jaccard(masks[a], masks[b]), chance_jaccard(counts[a], counts[b], grid[1]),
                    chance_p(counts[a], counts[b], grid[1], shared)))  # fmt: skip
            for scope in (WITHIN, ACROSS):
                if scope in by_scope:
                    ps = by_scope[scope]
                    chance = [p.chance for p in ps if not math.isnan(p.chance)]
                    out.append(SideStability(method, side, scope, tuple(ps),
                                             mean_interval([p.jaccard for p in ps], bootstrap, seed),
                                             float(np.mean(chance)) if chance else math.nan))  # fmt: skip
    return tuple(out)


# ----------------------------------------------------------------------------- the run


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
    if write:
        os.makedirs(config.run_dir, exist_ok=True)
        result.save(os.path.join(config.run_dir, STABILITY))
        if os.path.exists(os.path.join(config.run_dir, EVALUATION)):
            write_report(config.run_dir)
    return result


def _task_seed(config) -> int:
    from neuronjax.tasks.config import load_task_config

    return load_task_config(config.task, config.task_overrides).split.seed


def load_stability(run_dir: str) -> Stability | None:
    """The run's stability.json, or None when it has none."""
    path = os.path.join(run_dir, STABILITY)
    return Stability.load(path) if os.path.exists(path) else None
