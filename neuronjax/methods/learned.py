"""Learned neuron sets: K good and K bad neurons chosen by optimising their joint effect.

Attribution scores neurons one at a time, and suppressing a set does not do the sum of what its
members do alone. This method optimises the set directly: continuous gates over candidate
neurons, trained so that closing the good gates makes the gold option as unlikely as possible and
closing the bad gates makes it as likely as possible, under a budget of K closed gates per side,
then rounded to exactly K neurons per side.

Two phases
----------
1. Stream (the ordinary method interface): the contrastive attributions of the identification
   proxies are folded into an ACE state exactly as `neuronllm` does. ACE only chooses the
   candidates: the `candidates` neurons with the largest |ACE| computed without the ambiguity
   mask (a neuron that helps some items and hurts others can still have a large net effect), or
   every neuron when `candidates` is 0. Ties go to the lower flat index.
2. Fit (`Learned.fit(lm, encoded, state)`, called by `neuronjax.identify.identify` after the
   stream for every method that has a `fit`): the optimisation below, on the identification
   proxies again. Identification's Orbax checkpoints cover the stream only; a run stopped during
   the fit resumes from the last checkpoint of the stream and fits again (the fit is
   deterministic, so the sets are the same).

Cached prompt states
--------------------
Gates act on the FFN neurons of the last prompt position, and attention is causal, so every
earlier position is the same under every gate setting. Each global batch of the identification
proxies (`neuronjax.distributed.global_batches`, placed on the model's mesh: rows on the data
axis) runs once without its last token to build its key/value cache (`cached.compute_prefix_cache`);
the optimisation then only runs the last token against those caches (`cached.last_token_scores`,
the path held-out evaluation scores interventions with). Every batch is left-padded to the
task's widest batch first (masked slots change nothing), so all caches have one shape and the
step function compiles once. The token prefix common to every proxy of the task (role block and
demonstration, `cached.split_prefix` over all batches at once) runs once per batch instead of once
per row; each batch's rows then keep only their tokens after it, left-padded to one width. The
caches stay on the device for the whole fit: rebuilding them would cost a full prompt pass per
use, against a single token per use when kept; they take layers x 2 x proxies x positions x
kv_heads x head_dim values (about 2 GB in float32 for 360 proxies of SmolLM2-135M at 128
positions; every row holds its own copy of the shared prefix's keys and values).

Objective
---------
Parameters: logits theta_good, theta_bad [candidates], all 0 at the start. Gates
g = sigmoid(theta - tau) in (0, 1), where the shift tau >= 0 is the smallest that keeps
sum(g) <= K (found by bisection; its derivative is taken implicitly, d tau / d theta_i =
g_i (1 - g_i) / sum_j g_j (1 - g_j) while the budget binds). A neuron's FFN activation at the last
position is multiplied by 1 - g, so g = 1 is a suppressed neuron. With F the contrastive target
of attribution (log-softmax over the four option scores, at the gold), averaged over the proxies
of a step:

    loss = F(suppress g_good) - F(suppress g_bad) + l1 * (sum g_good + sum g_bad)

The budget caps each side at K closed gates (a hard constraint, whatever the scale of F, so no
penalty weight has to be tuned to reach K). The L1 term, in units of mean F per closed gate,
acts when the budget does not bind: it reopens the gates of neurons whose suppression moves the
mean F by less than `l1`, so the relaxed set can stay below K when fewer neurons matter (the
binarised set is still K: the next gates in order). While the budget binds, the gates compete
for it: through tau, closing one gate opens the others, and a gate keeps closing only while its
neuron's marginal effect beats the gates on the boundary. Both sides run in one vmapped pass
over two interventions (the gradient of each side only reaches its own logits). Optimiser: Adam
(optax) with `learning_rate` on the logits, `steps` steps; each step reads `batches_per_step`
cached global batches in a seeded permutation (epoch after epoch), so the fit is deterministic
for a given seed and device layout. The logits of neurons that keep mattering drift up without
bound and the others down, so the gates end close to binary.

Binarisation
------------
Good = the K largest final gate pre-activations theta_good - tau_good (the same order as the
gates, without float32 saturation at 1), ties to the lower flat index; bad likewise. A neuron in
both top-K lists stays on the side where its pre-activation is larger (good on a tie) and leaves
the other side's ranking, which then takes its next neuron; this repeats until the sets are
disjoint, so there are exactly K of each (candidates >= 2K is checked). Scores saved: the final
good gate minus the final bad gate (0 outside the candidates). They are the relaxation's
values, not a ranking re-optimised for another K: re-selecting another K from them (the
evaluation's K curve) picks the most closed gates of a fit made for this K.

Size: a little over 400 lines because the gates, the cached prompt states and the fit are one
method whose parts only make sense together; most of the length is this description.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax import cached
from neuronjax.errors import ConfigError
from neuronjax.masks import check_k
from neuronjax.methods.base import ItemBlock, Method
from neuronjax.scoring import ace


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LearnedState:
    ace: ace.AceState  # the streamed ACE statistics (candidate preselection)
    good: jax.Array  # float32 [layers, mlp]: final good-gate pre-activation (-inf: not a candidate)
    bad: jax.Array  # float32 [layers, mlp]: same for the bad gates
    fitted: jax.Array  # bool []: the fit phase ran


@functools.partial(jax.jit, static_argnames=("z",))
def _update(state: LearnedState, attr: jax.Array, valid: jax.Array, z: int) -> LearnedState:
    return dataclasses.replace(state, ace=ace.update(state.ace, attr, z, valid))


# ----------------------------------------------------------------------------- gates


def budget_shift(theta: jax.Array, k: float, iterations: int = 60) -> jax.Array:
    """tau >= 0, the smallest shift with sum(sigmoid(theta - tau)) <= k (0 when the budget does not
    bind), by bisection. Not differentiated (see `budget_gates`)."""
    theta = jax.lax.stop_gradient(theta).astype(jnp.float32)
    n = theta.shape[0]
    # sum sigmoid(theta - tau) <= n * sigmoid(max theta - tau) = k at tau = max theta - logit(k / n)
    hi = jnp.maximum(jnp.max(theta) - jnp.log(k / (n - k)), 0.0) + 1.0

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        over = jnp.sum(jax.nn.sigmoid(theta - mid)) > k
        return jnp.where(over, mid, lo), jnp.where(over, hi, mid)

    _, hi = jax.lax.fori_loop(0, iterations, body, (jnp.float32(0.0), hi))
    binds = jnp.sum(jax.nn.sigmoid(theta)) > k
    return jnp.where(binds, hi, 0.0)


def budget_gates(theta: jax.Array, k: float) -> jax.Array:
    """Gates sigmoid(theta - tau) [n] with sum <= k; the gradient includes tau's implicit
    derivative, so moving one logit up moves the others' gates down while the budget binds."""
    tau = budget_shift(theta, k)
    g = jax.nn.sigmoid(jax.lax.stop_gradient(theta) - tau)
    slope = g * (1.0 - g)
    binds = tau > 0
    # value: tau; gradient: d tau / d theta_i = slope_i / sum(slope) while the budget binds
    moved = jnp.sum(slope * (theta - jax.lax.stop_gradient(theta))) / jnp.maximum(jnp.sum(slope), 1e-30)
    return jax.nn.sigmoid(theta - (tau + jnp.where(binds, moved, 0.0)))


def gate_scales(gates: jax.Array, candidates: jax.Array, layers: int, mlp: int) -> jax.Array:
    """Intervention scales [..., layers, mlp]: 1 - gate on the candidates (flat indices), 1
    elsewhere."""
    lead = gates.shape[:-1]
    scale = jnp.ones(lead + (layers * mlp,), jnp.float32).at[..., candidates].set(1.0 - gates)
    return scale.reshape(lead + (layers, mlp))


# ----------------------------------------------------------------------------- cached prompts


@dataclasses.dataclass
class PromptStates:
    """The identification proxies, ready for last-position steps: one entry per global batch,
    every batch padded to the same width (so one compiled step serves all)."""

    ids: list  # int32 [rows, width] (only the last column is read)
    caches: list  # KVCache of every position but the last
    options: list  # int32 [rows, option, variant] candidate token ids (-1 = none)
    gold: list  # int32 [rows]
    valid: list  # bool [rows]

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, i: int) -> tuple:
        return self.ids[i], self.caches[i], self.options[i], self.gold[i], self.valid[i]


def _left_pad(x: np.ndarray, width: int, value) -> np.ndarray:
    pad = [(0, 0)] * x.ndim
    pad[1] = (width - x.shape[1], 0)
    return np.pad(x, pad, constant_values=value)


def _right_pad(x: np.ndarray, width: int, value) -> np.ndarray:
    pad = [(0, 0)] * x.ndim
    pad[-1] = (0, width - x.shape[-1])
    return np.pad(x, pad, constant_values=value)


def prompt_states(lm, encoded, share_prefix: bool = True) -> PromptStates:
    """Prefix caches of every identification proxy (see the module docstring). share_prefix:
    the token prefix common to every proxy runs once per batch (False: each row runs its whole
    prompt; the caches differ in layout, not in what the last token reads from them)."""
    from neuronjax.distributed import global_batches

    batches = list(global_batches(encoded))
    if not batches:
        raise ConfigError(f"task {encoded.config.name!r}: no identification batches to fit on")
    width = max(b["input_ids"].shape[1] for b in batches)
    variants = max(b["option_tokens"].shape[-1] for b in batches)
    ids = [_left_pad(np.asarray(b["input_ids"], np.int32), width, encoded.pad_id) for b in batches]
    masks = [_left_pad(np.asarray(b["attention_mask"], np.int32), width, 0) for b in batches]
    split = None
    if share_prefix:  # one prefix and one suffix width for every batch: one cache shape
        split = cached.split_prefix(np.concatenate(ids), np.concatenate(masks), seq_bucket=1,
                                    window=cached.smallest_window(lm.config))  # fmt: skip
    if split is not None:
        shared = lm.place(split.shared)
        cuts = np.cumsum([len(i) for i in ids])[:-1]
        ids, masks = np.split(split.input_ids, cuts), np.split(split.attention_mask, cuts)
    out = PromptStates([], [], [], [], [])
    for b, rows, mask in zip(batches, ids, masks):
        rows, mask = lm.place(rows), lm.place(mask)
        out.ids.append(rows)
        if split is None:
            out.caches.append(cached.compute_prefix_cache(lm.state, rows, mask, graphdef=lm.graphdef))
        else:
            out.caches.append(cached.compute_shared_prefix_cache(lm.state, shared, rows, mask, graphdef=lm.graphdef))
        out.options.append(lm.place(_right_pad(np.asarray(b["option_tokens"], np.int32), variants, -1)))
        out.gold.append(lm.place(np.asarray(b["gold"], np.int32)))
        out.valid.append(lm.place(np.asarray(b["valid"], bool)))
    return out


def batch_f(model_state, graphdef, ids, cache, options, gold, scales) -> jax.Array:
    """F [variant, rows] of one cached batch under last-position suppression scales [variant,
    layers, mlp] (1 = untouched, 0 = suppressed)."""
    from neuronjax.intervention import Intervention
    from neuronjax.tasks.metrics import target_f

    def one(scale):
        iv = Intervention(scale, jnp.zeros_like(scale), "last")
        scores = cached.last_token_scores(model_state, graphdef, ids, cache, iv, options, None, "first_token", 0)
        return target_f(scores, gold)

    return jax.vmap(one)(scales)


def mean_f(model_state, graphdef, batches: tuple, scales: jax.Array) -> jax.Array:
    """Mean F [variant] over the valid rows of stacked batches (ids, cache, options, gold, valid,
    each with a leading batch axis) under scales [variant, layers, mlp]."""
    ids, cache, options, gold, valid = batches
    f = jax.vmap(lambda i, c, o, g: batch_f(model_state, graphdef, i, c, o, g, scales), out_axes=1)(ids, cache, options, gold)
    w = valid.astype(jnp.float32)  # [batch, rows]; f: [variant, batch, rows]
    return jnp.sum(f * w, axis=(1, 2)) / jnp.maximum(jnp.sum(w), 1.0)


def _stack(batches: list[tuple]) -> tuple:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)


# ----------------------------------------------------------------------------- selection


def _top(x: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    order = np.lexsort((np.arange(x.size), -np.where(allowed, x, -np.inf)))
    order = order[allowed[order]][:k]
    out = np.zeros(x.size, bool)
    out[order] = True
    return out


def binarise(good: np.ndarray, bad: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly k good and k bad neurons, disjoint, from gate pre-activations [layers, mlp]
    (-inf: not a candidate); see the module docstring for the rule."""
    shape = np.shape(good)
    g, b = np.asarray(good, np.float64).reshape(-1), np.asarray(bad, np.float64).reshape(-1)
    allowed_g, allowed_b = np.isfinite(g), np.isfinite(b)
    if min(allowed_g.sum(), allowed_b.sum()) < k or (allowed_g | allowed_b).sum() < 2 * k:
        raise ConfigError(f"learned: fewer than 2 x {k} candidate neurons to binarise")
    while True:
        top_g, top_b = _top(g, allowed_g, k), _top(b, allowed_b, k)
        both = np.flatnonzero(top_g & top_b)
        if not both.size:
            return top_g.reshape(shape), top_b.reshape(shape)
        for i in both:
            if g[i] >= b[i]:
                allowed_b[i] = False
            else:
                allowed_g[i] = False


def candidate_indices(ace_state: ace.AceState, candidates: int) -> np.ndarray:
    """Flat indices of the gated neurons: the largest |ACE| (no ambiguity mask), ties to the lower
    index, returned in increasing order; every neuron when candidates is 0."""
    scores = np.abs(np.asarray(ace.finalize(ace_state, mask_ambiguous=False), np.float32)).reshape(-1)
    if candidates == 0 or candidates >= scores.size:
        return np.arange(scores.size)
    order = np.lexsort((np.arange(scores.size), -scores))[:candidates]
    return np.sort(order)


# ----------------------------------------------------------------------------- the method


@dataclasses.dataclass(frozen=True)
class Learned(Method):
    """Good / bad sets learned by gating candidate neurons (see the module docstring)."""

    name: ClassVar[str] = "learned"
    needs: ClassVar[tuple[str, ...]] = ("attr",)
    k: int = 100  # neurons in the good set and in the bad set (the gate budget per side)
    z: int = 500  # per-item set size of the ACE statistics that choose the candidates
    candidates: int = 2000  # gated neurons: the largest |ACE| (0 = every neuron)
    steps: int = 200  # optimiser steps
    learning_rate: float = 0.1  # Adam, on the gate logits
    l1: float = 0.001  # sparsity: penalty per closed gate, in units of the mean F
    batches_per_step: int = 4  # cached global batches per step (0 = all of them)
    seed: int = 0  # order of the batches over the steps

    def _check(self, layers: int, mlp: int) -> None:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        check_k(self.z, layers, mlp, f"{self.name}.z")
        n = layers * mlp
        if not isinstance(self.candidates, int) or self.candidates < 0:
            raise ConfigError(f"{self.name}.candidates = {self.candidates!r}: expected 0 (every neuron) or a count")
        pool = n if self.candidates == 0 else min(self.candidates, n)
        if pool < 2 * self.k + 1:
            raise ConfigError(f"{self.name}.candidates = {self.candidates}: expected more than 2 x k = {2 * self.k} "
                             f"(the sets are disjoint and the budget must leave gates open), or 0")  # fmt: skip
        if self.steps < 1:
            raise ConfigError(f"{self.name}.steps = {self.steps!r}: expected a positive integer")
        if self.seed < 0:
            raise ConfigError(f"{self.name}.seed = {self.seed!r}: expected a non-negative integer")
        if self.batches_per_step < 0:
            raise ConfigError(f"{self.name}.batches_per_step = {self.batches_per_step}: expected >= 0 (0 = all)")
        if not self.learning_rate > 0:
            raise ConfigError(f"{self.name}.learning_rate = {self.learning_rate}: expected > 0")
        if not self.l1 >= 0:
            raise ConfigError(f"{self.name}.l1 = {self.l1}: expected >= 0")

    def init(self, layers: int, mlp: int) -> LearnedState:
        self._check(layers, mlp)
        closed = jnp.full((layers, mlp), -jnp.inf, jnp.float32)
        return LearnedState(ace.init_state(layers, mlp), closed, closed, jnp.asarray(False))

    def update(self, state: LearnedState, block: ItemBlock) -> LearnedState:
        return _update(state, block.attr, block.valid, z=self.z)

    def fit(self, lm, encoded, state: LearnedState, verbose: bool = True) -> LearnedState:
        """The optimisation phase: gates over the candidates, trained on the cached prompts of
        `encoded` (the identification proxies the state was streamed from)."""
        from neuronjax.distributed import is_primary, to_host

        layers, mlp = state.good.shape
        self._check(layers, mlp)
        start = time.perf_counter()
        cand = candidate_indices(jax.tree.map(to_host, state.ace), self.candidates)
        data = prompt_states(lm, encoded)
        per_step = len(data) if self.batches_per_step == 0 else min(self.batches_per_step, len(data))
        order = _batch_order(len(data), per_step, self.steps, self.seed)
        step, optimizer = _make_step(float(self.learning_rate), lm.graphdef, float(self.k), float(self.l1), layers, mlp)
        params = {"good": jnp.zeros(cand.size, jnp.float32), "bad": jnp.zeros(cand.size, jnp.float32)}
        opt_state = optimizer.init(params)
        cand_dev = jnp.asarray(cand, jnp.int32)
        first = None
        bar = None
        if verbose and is_primary():
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, desc="learned: fit gates", unit="step", dynamic_ncols=True)
        for s in range(self.steps):
            batches = _stack([data.batch(int(i)) for i in order[s]])
            params, opt_state, f = step(params, opt_state, lm.state, batches, cand_dev)
            if s == 0:
                first = f
            if bar is not None:
                bar.update(1)
                if (s + 1) % max(1, self.steps // 20) == 0:
                    f_now = np.asarray(to_host(f))
                    bar.set_postfix(F_good_closed=f"{f_now[0]:.3f}", F_bad_closed=f"{f_now[1]:.3f}")
        if bar is not None:
            bar.close()
        last = f
        margins = {}
        for side in ("good", "bad"):
            theta = params[side]
            pre = np.asarray(to_host(theta - budget_shift(theta, float(self.k))), np.float32)
            full = np.full(layers * mlp, -np.inf, np.float32)
            full[cand] = pre
            margins[side] = jnp.asarray(full.reshape(layers, mlp))
        if verbose and is_primary():
            f0, f1 = np.asarray(to_host(first)), np.asarray(to_host(last))
            print(f"learned: {self.steps} steps over {cand.size} candidate neurons, {len(data)} cached batches, "
                  f"{time.perf_counter() - start:.1f} s; mean F with good gates closed {f0[0]:.3f} -> {f1[0]:.3f}, "
                  f"bad gates closed {f0[1]:.3f} -> {f1[1]:.3f} (first and last step's batches)",
                  file=sys.stderr)  # fmt: skip
        return LearnedState(state.ace, margins["good"], margins["bad"], jnp.asarray(True))

    def finalize(self, state: LearnedState):
        if not bool(np.asarray(state.fitted)):
            raise ConfigError(
                "learned: the gates were never fitted; the method needs the prompts after the stream "
                "(neuronjax.identify.identify calls Learned.fit)"
            )
        good_pre, bad_pre = np.asarray(state.good, np.float32), np.asarray(state.bad, np.float32)
        good, bad = binarise(good_pre, bad_pre, self.k)
        scores = (_gate(good_pre) - _gate(bad_pre)).astype(np.float32)
        return scores, good, bad


def _gate(pre: np.ndarray) -> np.ndarray:
    """sigmoid of gate pre-activations in float64; 0 for the non-candidates (-inf)."""
    x = np.asarray(pre, np.float64)
    with np.errstate(over="ignore"):
        return np.where(np.isfinite(x), 1.0 / (1.0 + np.exp(-np.where(np.isfinite(x), x, 0.0))), 0.0)


def _batch_order(num_batches: int, per_step: int, steps: int, seed: int) -> np.ndarray:
    """int [steps, per_step]: batch indices, a fresh seeded permutation per epoch."""
    rng = np.random.default_rng(seed)
    need = steps * per_step
    flat = np.concatenate([rng.permutation(num_batches) for _ in range(-(-need // num_batches))])
    return flat[:need].reshape(steps, per_step)


def gate_objective(model_state, graphdef, batches, params, candidates, k: float, l1: float, layers: int, mlp: int):
    """(loss, mean F [2]: good gates closed, bad gates closed) of gate logits on stacked batches."""
    gates = jnp.stack([budget_gates(params["good"], k), budget_gates(params["bad"], k)])
    f = mean_f(model_state, graphdef, batches, gate_scales(gates, candidates, layers, mlp))
    return f[0] - f[1] + l1 * jnp.sum(gates), f


@functools.lru_cache(maxsize=8)
def _make_step(learning_rate: float, graphdef, k: float, l1: float, layers: int, mlp: int):
    """(step, optimizer): one jit-compiled Adam step (compiled once per shape: every step of a fit
    has the same shapes; kept for later fits with the same hyper-parameters)."""
    import optax

    optimizer = optax.adam(learning_rate)

    @jax.jit
    def step(params, opt_state, model_state, batches, candidates):
        def loss(p):
            return gate_objective(model_state, graphdef, batches, p, candidates, k, l1, layers, mlp)

        (_, f), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), opt_state, f

    return step, optimizer
