"""Evaluation of neuron sets on held-out items (NeuronLLM step 7): which conditions are measured,
and the `Evaluation` they add up to.

A condition is a set under one intervention mode at one K, or its random control: sets with the
same per-layer counts as the set, drawn with several seeds and pooled. Every condition is scored
in one pass over the held-out proxies (`neuronjax.evaluation.scoring`); each is reported with its
accuracy, permutation-consistent accuracy, the differences to no intervention and to its random
control (paired bootstrap over the same item resamples) and its letter histogram. Sets are
re-selected at other K from their scores for the accuracy-against-K curve.

The verdicts against the random control are corrected for multiplicity: Holm over one family per
metric, the table's rows that have a control (the sets at their own K under every mode; a mode
that edits no neuron tests nothing and is left out), and likewise over the K curve's rows and over
the head-to-head pairs (`neuronjax.evaluation.stats`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional

import numpy as np

from neuronjax.config import EvaluateConfig
from neuronjax.errors import ConfigError
from neuronjax.evaluation.results import METRICS, Comparison, ConditionResult, Evaluation
from neuronjax.evaluation.scoring import Scored, score_interventions
from neuronjax.evaluation.stats import ALPHA, accuracy_stats, adjust, bootstrap_indices, difference_stats, per_item
from neuronjax.intervention import Intervention, from_masks
from neuronjax.masks import random_like, top_k_masks


@dataclasses.dataclass(frozen=True)
class Condition:
    """One measured condition: a set (or its random control) under one mode at one K."""

    method: str  # the set's method; "none" for the unedited model
    mode: str
    k: int
    control: bool = False  # the random control of (method, mode, k), pooled over seeds


def set_k(ns) -> int:
    """The K a set was selected with (from its sidecar), else its larger side."""
    return int(ns.meta.get("method", {}).get("k", max(int(ns.good.sum()), int(ns.bad.sum()))))


def _check_sets(lm, sets: dict, config: EvaluateConfig) -> list[str]:
    names = list(config.methods) or list(sets)
    missing = [n for n in names if n not in sets]
    if missing:
        raise ConfigError(f"evaluate.methods: {missing} not among the identified sets {sorted(sets)}")
    for j, pair in enumerate(config.compare):
        absent = [n for n in pair if n not in names]
        if absent:
            raise ConfigError(f"evaluate.compare[{j}]: {absent} not among the evaluated sets {names}")
    c = lm.config
    for name in names:
        for field in ("good", "bad"):
            shape = np.shape(getattr(sets[name], field))
            if shape != (c.num_layers, c.intermediate_size):
                raise ConfigError(
                    f"neuron set {name!r}: field '{field}' has shape {shape}; the model {lm.source} has "
                    f"{c.num_layers} layers x {c.intermediate_size} neurons (a set identified on another model?)"
                )
    return names


class _Plan:
    """The interventions to score and which of them make each condition."""

    def __init__(self, config: EvaluateConfig, seeds: tuple[int, ...]):
        self.config, self.seeds = config, seeds
        self.interventions: list[Intervention] = []
        self.index: dict[Condition, list[int]] = {}
        self.sizes: dict[Condition, tuple[int, int]] = {}

    def add(self, cond: Condition, good: np.ndarray, bad: np.ndarray, into: list[Condition]) -> None:
        """The condition and its random control (unless it is the unedited model)."""
        self._add(cond, [(good, bad)], into)
        if cond.method != "none":
            controls = [random_like(good, bad, seed) for seed in self.seeds]
            self._add(dataclasses.replace(cond, control=True), controls, into)

    def _add(self, cond: Condition, masks: list, into: list[Condition]) -> None:
        into.append(cond)
        if cond in self.index:
            return
        self.index[cond] = []
        self.sizes[cond] = (int(masks[0][0].sum()), int(masks[0][1].sum()))
        for good, bad in masks:
            self.index[cond].append(len(self.interventions))
            self.interventions.append(from_masks(cond.mode, good, bad, self.config.all_positions, self.config.set_value))


@dataclasses.dataclass(frozen=True)
class Measured:
    """An evaluation with what it was computed from: the option scores of every held-out proxy
    under every scored intervention, and which interventions make each condition."""

    evaluation: Evaluation
    scored: Scored  # scores float32 [intervention, proxy, option]
    # every distinct condition -> its rows of scored.scores (a control: one per seed, in `seeds` order)
    conditions: dict[Condition, tuple[int, ...]]
    seeds: tuple[int, ...]  # the random controls' seeds

    def predictions(self) -> dict[str, np.ndarray]:
        """One row per (condition, seed, proxy), as columns: condition (its number), method, mode,
        k, control, seed (-1 but for controls), item, proxy, gold and chosen (option numbers under
        the proxy's order; chosen is the top score, ties to the earlier option), correct (gold
        strictly above every other option: what accuracy counts), score_A, score_B, ..."""
        s = self.scored
        n = s.gold.shape[0]
        parts = []
        for number, (cond, rows) in enumerate(self.conditions.items()):
            for j, row in enumerate(rows):
                seed = self.seeds[j] if cond.control else -1
                parts.append((number, cond, seed, row))
        rows = np.asarray([row for *_, row in parts], np.int64)
        scores = s.scores[rows]  # [condition x seed, proxy, option]

        def each(values, dtype) -> np.ndarray:
            return np.repeat(np.asarray(values, dtype), n)

        out = {
            "condition": each([p[0] for p in parts], np.int32),
            "method": each([p[1].method for p in parts], object),
            "mode": each([p[1].mode for p in parts], object),
            "k": each([p[1].k for p in parts], np.int32),
            "control": each([p[1].control for p in parts], bool),
            "seed": each([p[2] for p in parts], np.int64),
            "item": np.tile(s.item_index, len(parts)),
            "proxy": np.tile(s.proxy_index, len(parts)),
            "gold": np.tile(s.gold, len(parts)),
            "chosen": s.choices[rows].reshape(-1).astype(np.int32),
            "correct": s.correct[rows].reshape(-1),
        }
        for o in range(scores.shape[2]):
            out[f"score_{chr(ord('A') + o)}"] = scores[:, :, o].reshape(-1)
        return out


log = logging.getLogger("neuronjax.evaluation")

CORRECTION = {
    "method": "holm",
    "alpha": ALPHA,
    "p": "two-sided paired bootstrap over the interval's item resamples, at least 1 / (resamples + 1)",
    "families": "per metric: the rows against their random controls (modes editing no neuron left out); "
                "the K curve's rows; the head-to-head pairs",
}  # fmt: skip


def corrected_rows(rows: list[ConditionResult]) -> tuple[ConditionResult, ...]:
    """`rows` with the Holm-adjusted p-value and corrected verdict of their difference to the random
    control, one family per metric over the rows that test something (a control and an edit)."""
    tested = [j for j, r in enumerate(rows) if r.vs_random is not None and not r.empty]
    out = list(rows)
    for metric in METRICS:
        for j, iv in zip(tested, adjust([rows[j].vs_random[metric] for j in tested])):
            vs_random = dataclasses.replace(out[j].vs_random, **{metric: iv})
            out[j] = dataclasses.replace(out[j], vs_random=vs_random)
    return tuple(out)


def resolution_problem(families: dict[str, int], bootstrap: int, alpha: float = ALPHA) -> Optional[str]:
    """Why no verdict of a family can be significant, or None: a bootstrap p-value is at least
    1 / (bootstrap + 1), so Holm's smallest adjusted p over m tests is m / (bootstrap + 1), and at
    or above alpha every corrected verdict is n.s. whatever the data. families: {name: tests}."""
    m = max(families.values(), default=0)
    if m == 0 or m / (bootstrap + 1) < alpha:
        return None
    name = max(families, key=families.get)
    need = max(int(m / alpha) - 1, 0)  # the smallest bootstrap with m / (bootstrap + 1) < alpha
    while m / (need + 1) >= alpha:
        need += 1
    return (f"evaluate.bootstrap: {bootstrap} resamples give p-values of at least 1 / {bootstrap + 1}, so Holm over "
            f"the {m} tests of the {name} can never reach {alpha} and every corrected verdict is n.s.; "
            f"expected evaluate.bootstrap >= {need}")  # fmt: skip


def corrected_pairs(pairs: list[Comparison]) -> tuple[Comparison, ...]:
    """Head-to-head pairs with Holm-adjusted p-values and verdicts, one family per metric."""
    out = list(pairs)
    for metric in METRICS:
        for j, iv in enumerate(adjust([p.difference[metric] for p in pairs])):
            out[j] = dataclasses.replace(out[j], difference=dataclasses.replace(out[j].difference, **{metric: iv}))
    return tuple(out)


def evaluate_sets(lm, encoded, sets: dict, config: EvaluateConfig = EvaluateConfig(),
                  progress: Optional[Callable[[int], None]] = None) -> Evaluation:  # fmt: skip
    """Evaluate neuron sets ({method: NeuronSet}) on `encoded` (the held-out part of a task):
    every set x mode at its own K with its random control, the K curve, head-to-head comparisons."""
    return measure_sets(lm, encoded, sets, config, progress).evaluation


def measure_sets(lm, encoded, sets: dict, config: EvaluateConfig = EvaluateConfig(),
                 progress: Optional[Callable[[int], None]] = None, capture=None) -> Measured:  # fmt: skip
    """`evaluate_sets`, keeping the option scores behind the Evaluation (for per-proxy predictions);
    capture: neurons [(layer, index)] whose unedited activations to keep as well (`score_interventions`)."""
    names = _check_sets(lm, sets, config)
    c = lm.config
    seeds = tuple(config.seed * 1000 + s for s in range(config.random_seeds))
    plan = _Plan(config, seeds)
    row_conds: list[Condition] = []
    curve_conds: list[Condition] = []
    empty = np.zeros((c.num_layers, c.intermediate_size), bool)
    plan.add(Condition("none", "none", 0), empty, empty, row_conds)
    for name in names:
        ns = sets[name]
        for mode in config.modes:
            plan.add(Condition(name, mode, set_k(ns)), ns.good, ns.bad, row_conds)
        if ns.meta.get("method", {}).get("name") == "random":
            continue  # a random set has no score order to re-select from
        for kk in config.k_values:
            good, bad = top_k_masks(ns.scores, kk)
            for mode in config.curve_modes:
                plan.add(Condition(name, mode, kk), good, bad, curve_conds)
    scored = score_interventions(lm, encoded, plan.interventions, progress, share_prefix=config.share_prefix,
                                 capture=capture)  # fmt: skip
    right, total = per_item(scored.correct, scored.item_index, scored.num_items)
    resamples = bootstrap_indices(scored.num_items, config.bootstrap, config.seed)
    base = right[plan.index[Condition("none", "none", 0)]]
    choices = scored.choices

    def result(cond: Condition) -> ConditionResult:
        r = right[plan.index[cond]]
        vs_random = None
        if not cond.control and cond.method != "none":
            vs_random = difference_stats(r, right[plan.index[dataclasses.replace(cond, control=True)]], total, resamples)
        letters = np.bincount(choices[plan.index[cond]].reshape(-1), minlength=scored.scores.shape[2])
        good_n, bad_n = plan.sizes[cond]
        return ConditionResult(
            method=cond.method, mode=cond.mode, k=cond.k, control=cond.control, good=good_n, bad=bad_n,
            metrics=accuracy_stats(r, total, resamples), vs_none=difference_stats(r, base, total, resamples),
            vs_random=vs_random, letters=tuple((letters / max(letters.sum(), 1)).round(4).tolist()),
        )  # fmt: skip

    def comparison(a: str, b: str, mode: str) -> Comparison:
        ca, cb = Condition(a, mode, set_k(sets[a])), Condition(b, mode, set_k(sets[b]))
        diff = difference_stats(right[plan.index[ca]], right[plan.index[cb]], total, resamples)
        return Comparison(a, b, mode, ca.k, cb.k, diff)

    evaluation = Evaluation(
        task=encoded.config.name,
        items=int(scored.num_items),
        proxies=int(scored.scores.shape[1]),
        all_positions=config.all_positions,
        random_seeds=seeds,
        bootstrap=config.bootstrap,
        rows=corrected_rows([result(cond) for cond in row_conds]),
        curve=corrected_rows([result(cond) for cond in curve_conds]),
        compare=corrected_pairs([comparison(a, b, mode) for a, b in config.compare for mode in config.modes]),
        correction=CORRECTION,
    )
    tested = lambda rows: sum(1 for r in rows if r.vs_random is not None and not r.empty)  # noqa: E731
    problem = resolution_problem({"table's rows": tested(evaluation.rows), "K curve": tested(evaluation.curve),
                                  "head-to-head pairs": len(evaluation.compare)}, config.bootstrap)  # fmt: skip
    if problem:
        log.warning(problem)
    return Measured(evaluation, scored, {c: tuple(i) for c, i in plan.index.items()}, seeds)
