"""Evaluation of neuron sets on held-out items (NeuronLLM step 7).

Scoring many interventions on one batch shares everything that can be shared. An intervention
at the last prompt position leaves every earlier position unchanged (attention is causal), so
the prompt minus its last token runs once per batch, and the last token runs once per
intervention against that cache, all interventions of a group in one compiled call (vmapped over
the stacked interventions, the cache read by broadcasting). Interventions on all positions run
the whole prompt per intervention. Whole-text option scoring continues each option's text after
the (edited) prompt without editing the text tokens: the intervention acts on the prompt pass.

Metrics per condition (an intervention of a neuron set, or no intervention): accuracy over
proxies, permutation-consistent accuracy over items, the letter histogram, and 95% bootstrap
intervals from resampling items (the proxies of an item stay together). Random controls: sets
with the same per-layer counts as the set they control for, several seeds, pooled; the table
reports each condition's accuracy minus the random control's, with a paired bootstrap interval
over the same item resamples.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.config import EvaluateConfig
from neuronjax.distributed import global_batches, to_host
from neuronjax.intervention import Intervention, from_masks
from neuronjax.lm import forward
from neuronjax.tasks.metrics import proxy_correct
from neuronjax.tasks.scoring import candidate_log_probs, score_continuations

GROUP = 32  # interventions per compiled call (the last group is padded with identities)


def _stack(ivs: Sequence[Intervention]) -> Intervention:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *ivs)


def _last_scores(state, graphdef, ids, cache, iv, option_tokens, continuation, kind, pad_id):
    """Option scores [batch, option] of one intervention, from the prompt's last token run on
    `cache` (the rest of the prompt); iv edits that token (a one-token step edits its only
    position whatever the position policy)."""
    b = ids.shape[0]
    ones = jnp.ones((b, 1), jnp.int32)
    whole = kind != "first_token"
    out = forward(state, ids[:, -1:], ones, iv, cache, graphdef=graphdef, logits_at="last", return_cache=whole)
    last = out.logits[:, -1]
    if not whole:
        return candidate_log_probs(last, option_tokens)
    return _continue(state, graphdef, out.cache, last, continuation, kind, pad_id)


def _continue(state, graphdef, cache, last, continuation, kind, pad_id):
    def extend(rows, ids, mask):
        return forward(state, ids, mask, None, rows, graphdef=graphdef, logits_at="all").logits

    return score_continuations(extend, cache, last, continuation, mean=kind == "whole_mean", pad_id=pad_id)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _prefix_cache(state, ids, mask, *, graphdef):
    """Keys and values of every prompt position but the last (shared by all last-position
    interventions of a batch)."""
    return forward(state, ids[:, :-1], mask[:, :-1], None, None, graphdef=graphdef, logits_at="none",
                   return_cache=True).cache  # fmt: skip


@functools.partial(jax.jit, static_argnames=("graphdef", "kind", "pad_id"))
def _score_last_position(state, cache, ids, option_tokens, continuation, ivs, *, graphdef, kind, pad_id):
    """[interventions, batch, option] for last-position interventions on a shared prefix cache."""
    one = functools.partial(_last_scores, state, graphdef, ids, cache, option_tokens=option_tokens,
                            continuation=continuation, kind=kind, pad_id=pad_id)  # fmt: skip
    return jax.vmap(lambda iv: one(iv=iv))(ivs)


@functools.partial(jax.jit, static_argnames=("graphdef", "kind", "pad_id"))
def _score_all_positions(state, ids, mask, option_tokens, continuation, ivs, *, graphdef, kind, pad_id):
    """[interventions, batch, option] for interventions that edit every prompt position."""

    def one(iv):
        whole = kind != "first_token"
        out = forward(state, ids, mask, iv, None, graphdef=graphdef, logits_at="last", return_cache=whole)
        last = out.logits[:, -1]
        if not whole:
            return candidate_log_probs(last, option_tokens)
        return _continue(state, graphdef, out.cache, last, continuation, kind, pad_id)

    return jax.vmap(one)(ivs)


@dataclasses.dataclass
class Scored:
    """Option scores of every held-out proxy under every intervention."""

    scores: np.ndarray  # float32 [intervention, proxy, option]
    gold: np.ndarray  # int32 [proxy]
    item_index: np.ndarray  # int32 [proxy]
    proxy_index: np.ndarray  # int32 [proxy]
    num_items: int

    @property
    def correct(self) -> np.ndarray:
        """bool [intervention, proxy]: gold strictly above every other option."""
        v, p, o = self.scores.shape
        flat = proxy_correct(self.scores.reshape(v * p, o), np.tile(self.gold, v))
        return np.asarray(flat).reshape(v, p)

    @property
    def choices(self) -> np.ndarray:
        """int [intervention, proxy]: the chosen letter (ties to the earlier letter)."""
        return self.scores.argmax(axis=2)


def score_interventions(
    lm, encoded, interventions: Sequence[Intervention], progress: Optional[Callable[[int], None]] = None
) -> Scored:
    """Score every proxy of `encoded` (an `EncodedTask`) under each intervention."""
    if not interventions:
        raise ValueError("score_interventions: no interventions given (pass Intervention.identity for none)")
    c = lm.config
    for k, iv in enumerate(interventions):
        iv.check_shape(c.num_layers, c.intermediate_size, f"intervention {k}")
    p = encoded.config.prompt
    kind = p.option_score if p.answer_format == "option_text" else "first_token"
    group = GROUP if kind == "first_token" else 2  # whole-text copies the prompt cache per option
    policies = np.array([bool(iv.all_positions) for iv in interventions])
    identity = Intervention.identity(c.num_layers, c.intermediate_size)
    groups = []
    for flag in (False, True):
        members = np.flatnonzero(policies == flag)
        for lo in range(0, len(members), group):
            idx = members[lo : lo + group]
            ivs = [interventions[i] for i in idx]
            ivs += [dataclasses.replace(identity, all_positions=jnp.asarray(flag))] * (group - len(ivs))
            groups.append((flag, idx, _stack(ivs)))
    scores, gold, items, proxies = [], [], [], []
    static = dict(graphdef=lm.graphdef, kind=kind, pad_id=encoded.pad_id)
    for batch in global_batches(encoded):
        valid = np.asarray(batch["valid"], bool)
        ids, mask, options, cont = (lm._place(batch[k]) for k in ("input_ids", "attention_mask", "option_tokens", "continuation"))
        cache = _prefix_cache(lm.state, ids, mask, graphdef=lm.graphdef) if not policies.all() else None
        out = np.zeros((len(interventions), int(valid.sum()), 4), np.float32)
        for flag, idx, ivs in groups:
            if flag:
                got = _score_all_positions(lm.state, ids, mask, options, cont, ivs, **static)
            else:
                got = _score_last_position(lm.state, cache, ids, options, cont, ivs, **static)
            out[idx] = to_host(got)[: len(idx)][:, valid]
        scores.append(out)
        gold.append(batch["gold"][valid])
        items.append(batch["item_index"][valid])
        proxies.append(batch["proxy_index"][valid])
        if progress is not None:
            progress(int(valid.sum()))
    return Scored(
        scores=np.concatenate(scores, axis=1),
        gold=np.concatenate(gold).astype(np.int32),
        item_index=np.concatenate(items).astype(np.int32),
        proxy_index=np.concatenate(proxies).astype(np.int32),
        num_items=len(encoded.items),
    )


# ----------------------------------------------------------------------------- metrics


@dataclasses.dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def per_item(correct: np.ndarray, item_index: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(right proxies [item], proxies [item]) from correct bool [..., proxy]; the leading axes
    (interventions, seeds) are kept."""
    lead = correct.shape[:-1]
    right = np.zeros(lead + (num_items,), np.float64)
    np.add.at(right, (..., item_index), correct.astype(np.float64))
    total = np.bincount(item_index, minlength=num_items).astype(np.float64)
    return right, total


def bootstrap_indices(num_items: int, resamples: int, seed: int) -> np.ndarray:
    """int [resamples, num_items]: items drawn with replacement (seeded: every condition of a run
    uses the same resamples, which makes the paired differences paired)."""
    return np.random.default_rng(seed).integers(0, num_items, (resamples, num_items))


def _interval(point: float, samples: np.ndarray) -> Interval:
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(float(point), float(low), float(high))


METRICS = ("accuracy", "consistent")


def _samples(right, total, resamples, key):
    """`key` over each row of item indices resamples [resample, item]: accuracy (right proxies
    over proxies, seeds pooled) or consistent accuracy (share of present items right under every
    proxy, averaged over seeds). Items with no proxy count for neither."""
    right = np.atleast_2d(right)
    seeds = right.shape[0]
    present = total > 0
    if key == "accuracy":
        return right.sum(axis=0)[resamples].sum(axis=1) / np.maximum(total[resamples].sum(axis=1) * seeds, 1)
    a = (right == total[None]).mean(axis=0)[resamples] * present[resamples]
    return a.sum(axis=1) / np.maximum(present[resamples].sum(axis=1), 1)


def accuracy_stats(right: np.ndarray, total: np.ndarray, resamples: np.ndarray) -> dict[str, Interval]:
    """Accuracy and permutation-consistent accuracy with 95% bootstrap intervals.

    right [seed, item] (or [item]): right proxies per item, averaged over the leading axis (the
    seeds of a pooled random control); total [item]: proxies per item. Items with no proxy are
    not counted."""
    every = np.arange(total.shape[0])[None]  # the sample itself
    return {k: _interval(_samples(right, total, every, k)[0], _samples(right, total, resamples, k)) for k in METRICS}


def difference_stats(right_a, right_b, total, resamples) -> dict[str, Interval]:
    """a minus b (each [seed, item] or [item]) for both metrics, paired over the same resamples."""
    every = np.arange(total.shape[0])[None]
    out = {}
    for k in METRICS:
        point = _samples(right_a, total, every, k)[0] - _samples(right_b, total, every, k)[0]
        out[k] = _interval(point, _samples(right_a, total, resamples, k) - _samples(right_b, total, resamples, k))
    return out


# ----------------------------------------------------------------------------- conditions

@dataclasses.dataclass(frozen=True)
class Condition:
    """One measured condition: a set (or its random control) under one mode at one K."""

    method: str  # the set's method; "none" for the unedited model
    mode: str
    k: int
    control: bool = False  # the random control of (method, mode, k), pooled over seeds


def _control_masks(good, bad, seeds):
    from neuronjax.methods.baselines import random_like

    return [random_like(good, bad, seed) for seed in seeds]


def evaluate_sets(lm, encoded, sets: dict, config: EvaluateConfig = EvaluateConfig(),
                  progress: Optional[Callable[[int], None]] = None) -> dict:  # fmt: skip
    """Evaluate neuron sets ({method: NeuronSet}) on `encoded` (the held-out part of a task).

    Returns a JSON-ready dict: "rows" (every set x mode at its own K, with its random control
    and the differences to no intervention and to the control), "curve" (accuracy against K),
    "letters" (letter histograms) and the counts.
    """
    from neuronjax.methods.base import top_k_masks

    names = list(config.methods) or list(sets)
    missing = [n for n in names if n not in sets]
    if missing:
        raise ValueError(f"evaluate.methods: {missing} not among the identified sets {sorted(sets)}")
    for j, pair in enumerate(config.compare):
        absent = [n for n in pair if n not in names]
        if absent:
            raise ValueError(f"evaluate.compare[{j}]: {absent} not among the evaluated sets {names}")
    c = lm.config
    for name in names:
        for field in ("good", "bad"):
            shape = np.shape(getattr(sets[name], field))
            if shape != (c.num_layers, c.intermediate_size):
                raise ValueError(
                    f"neuron set {name!r}: field '{field}' has shape {shape}; the model {lm.source} has "
                    f"{c.num_layers} layers x {c.intermediate_size} neurons (a set identified on another model?)"
                )
    seeds = tuple(config.seed * 1000 + s for s in range(config.random_seeds))
    ivs: list[Intervention] = []
    index: dict[Condition, list[int]] = {}
    sizes: dict[Condition, tuple[int, int]] = {}
    row_conds: list[Condition] = []
    curve_conds: list[Condition] = []

    def add(cond: Condition, masks: list[tuple[np.ndarray, np.ndarray]], into: list[Condition]):
        into.append(cond)
        if cond in index:
            return
        index[cond] = []
        sizes[cond] = (int(masks[0][0].sum()), int(masks[0][1].sum()))
        for good, bad in masks:
            index[cond].append(len(ivs))
            ivs.append(from_masks(cond.mode, good, bad, config.all_positions, config.set_value))

    empty = np.zeros((c.num_layers, c.intermediate_size), bool)
    add(Condition("none", "none", 0), [(empty, empty)], row_conds)
    for name in names:
        ns = sets[name]
        k = _own_k(ns)
        for mode in config.modes:
            add(Condition(name, mode, k), [(ns.good, ns.bad)], row_conds)
            add(Condition(name, mode, k, control=True), _control_masks(ns.good, ns.bad, seeds), row_conds)
        if ns.meta.get("method", {}).get("name") == "random":
            continue  # a random set has no score order to re-select from
        for kk in config.k_values:
            good, bad = top_k_masks(ns.scores, kk)
            for mode in config.curve_modes:
                add(Condition(name, mode, kk), [(good, bad)], curve_conds)
                add(Condition(name, mode, kk, control=True), _control_masks(good, bad, seeds), curve_conds)
    scored = score_interventions(lm, encoded, ivs, progress)
    right, total = per_item(scored.correct, scored.item_index, scored.num_items)
    resamples = bootstrap_indices(scored.num_items, config.bootstrap, config.seed)
    base = right[index[Condition("none", "none", 0)]]
    choices = scored.choices

    def row(cond: Condition) -> dict:
        r = right[index[cond]]
        good_n, bad_n = sizes[cond]
        out = {"method": cond.method, "mode": cond.mode, "k": cond.k, "control": cond.control,
               "good": good_n, "bad": bad_n}  # fmt: skip
        out.update({key: dataclasses.asdict(v) for key, v in accuracy_stats(r, total, resamples).items()})
        out["vs_none"] = {key: dataclasses.asdict(v) for key, v in difference_stats(r, base, total, resamples).items()}
        if not cond.control and cond.method != "none":
            ctrl = right[index[dataclasses.replace(cond, control=True)]]
            diff = difference_stats(r, ctrl, total, resamples)
            out["vs_random"] = {key: dataclasses.asdict(v) for key, v in diff.items()}
        letters = np.bincount(choices[index[cond]].reshape(-1), minlength=4)
        out["letters"] = (letters / max(letters.sum(), 1)).round(4).tolist()
        return out

    def pair(a: str, b: str, mode: str) -> dict:
        ca, cb = Condition(a, mode, _own_k(sets[a])), Condition(b, mode, _own_k(sets[b]))
        diff = difference_stats(right[index[ca]], right[index[cb]], total, resamples)
        return {"a": a, "b": b, "mode": mode, "k_a": ca.k, "k_b": cb.k,
                "difference": {key: dataclasses.asdict(v) for key, v in diff.items()}}  # fmt: skip

    return {
        "task": encoded.config.name,
        "items": int(scored.num_items),
        "proxies": int(scored.scores.shape[1]),
        "all_positions": config.all_positions,
        "random_seeds": list(seeds),
        "bootstrap": config.bootstrap,
        "rows": [row(cond) for cond in row_conds],
        "curve": [row(cond) for cond in curve_conds],
        "compare": [pair(a, b, mode) for a, b in config.compare for mode in config.modes],
    }


def _own_k(ns) -> int:
    """The K a set was selected with (from its sidecar), else its larger side."""
    return int(ns.meta.get("method", {}).get("k", max(int(ns.good.sum()), int(ns.bad.sum()))))
