"""What `neuronjax stability` measured, typed: every replicate's sets, every pair's overlap against
chance, one row per method, side and scope; written to <run_dir>/stability.json by `to_json` and
read back by `from_json`; the markdown table."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Sequence

import numpy as np

from neuronjax.evaluation.results import Interval
from neuronjax.stability.overlap import chance_jaccard, chance_p, jaccard, mean_interval

STABILITY = "stability.json"
SIDES = ("good", "bad")
WITHIN, ACROSS = "within seed", "across seeds"


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
                     "-" if not finite else str(r.jaccard), spread, "-" if math.isnan(r.chance) else f"{r.chance:.4f}",
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


def load_stability(run_dir: str) -> Stability | None:
    """The run's stability.json, or None when it has none."""
    path = os.path.join(run_dir, STABILITY)
    return Stability.load(path) if os.path.exists(path) else None
