"""The baselines NeuronLLM is compared with, behind the same streaming method interface.

Each baseline is a frozen dataclass whose fields are its hyper-parameters. Its state is a pytree
of O(layers * mlp) arrays, `update` is a pure jit-compiled fold of one `ItemBlock` (padding rows,
valid False, leave the state unchanged), and `finalize` returns numpy (scores, good, bad).

- ``mean_activation``: the mean activation over every proxy prompt.
- ``kn_ig``: knowledge neurons (Dai et al., 2022), from probability-target attributions.
- ``qrnca``: query-relevant neuron cluster attribution (Chen, Dejl and Toni, 2024).
- ``lape``: activation-probability entropy (Tang et al., 2024), contrasting the prompts the
  model answers right with those it answers wrong.

"A prompt" below is one proxy of a valid item; a task with N items of P proxies has N * P
prompts. Ties in the final ranking go to the lower flat index (layer-major), as in `top_k_masks`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.masks import check_k, top_k_masks
from neuronjax.methods.base import ItemBlock, Method

# --------------------------------------------------------------------------------------------
# shared checks


def _check_unit(method: str, field: str, value, low_open: bool, high_open: bool = False) -> None:
    """value must be a real number in [0, 1] (with the ends opened as asked)."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        raise ConfigError(f"{method}.{field} = {value!r}: expected a number in {lo}0, 1{hi}")


def _array(block: ItemBlock, what: str, method: str, shape: tuple[int, int]) -> jax.Array:
    """The per-neuron array `what` of a block, checked against the state's [layers, mlp]."""
    x = getattr(block, what)
    if x is None:
        raise ConfigError(f"{method} needs block.{what} (float32 [item, proxy, layers, mlp]); the block has none")
    if x.ndim != 4 or tuple(x.shape[2:]) != tuple(shape):
        raise ConfigError(f"{method}: block.{what} has shape {tuple(x.shape)}; "
                         f"expected [item, proxy, {shape[0]}, {shape[1]}]")  # fmt: skip
    return x


def _valid4(valid: jax.Array) -> jax.Array:
    return valid[:, None, None, None]


def _prompt_max(a: jax.Array) -> jax.Array:
    """Largest attribution of each prompt over all its neurons (every layer): [item, proxy, 1, 1]."""
    return a.max(axis=(2, 3), keepdims=True)


# --------------------------------------------------------------------------------------------
# mean activation


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MeanActivationState:
    total: jax.Array  # float32 [layers, mlp]: sum of h over the prompts seen
    prompts: jax.Array  # int32 []: the prompts seen


@jax.jit
def _mean_activation_update(state: MeanActivationState, h: jax.Array, valid: jax.Array) -> MeanActivationState:
    h = jnp.where(_valid4(valid), h.astype(jnp.float32), 0.0)
    return MeanActivationState(total=state.total + h.sum(axis=(0, 1)),
                               prompts=state.prompts + jnp.sum(valid, dtype=jnp.int32) * h.shape[1])  # fmt: skip


@dataclasses.dataclass(frozen=True)
class MeanActivation(Method):
    """Activation-magnitude baseline: score(w) = the mean of the activation h(w) at the last prompt
    position over every prompt of the task. Good = the top-k by score (> 0), bad = the bottom-k
    (< 0). It ignores the answer entirely: it finds the neurons that fire on this kind of prompt,
    the reference any attribution method must beat."""

    name: ClassVar[str] = "mean_activation"
    needs: ClassVar[tuple[str, ...]] = ("activations",)
    k: int = 100

    def init(self, layers: int, mlp: int) -> MeanActivationState:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        return MeanActivationState(jnp.zeros((layers, mlp), jnp.float32), jnp.zeros((), jnp.int32))

    def update(self, state: MeanActivationState, block: ItemBlock) -> MeanActivationState:
        h = _array(block, "activations", self.name, state.total.shape)
        return _mean_activation_update(state, h, block.valid)

    def finalize(self, state: MeanActivationState):
        total = np.asarray(state.total, np.float64)
        scores = (total / max(int(state.prompts), 1)).astype(np.float32)
        good, bad = top_k_masks(scores, self.k)
        return scores, good, bad


# --------------------------------------------------------------------------------------------
# knowledge neurons


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KnowledgeNeuronState:
    selected: jax.Array  # int32 [layers, mlp]: prompts whose threshold the neuron passes
    attr_sum: jax.Array  # float32 [layers, mlp]: its attribution summed over those prompts
    prompts: jax.Array  # int32 []: the prompts seen


@functools.partial(jax.jit, static_argnames=("threshold",))
def _kn_update(state: KnowledgeNeuronState, attr: jax.Array, valid: jax.Array,
               threshold: float) -> KnowledgeNeuronState:
    a = attr.astype(jnp.float32)
    top = _prompt_max(a)
    sel = (a >= threshold * top) & (top > 0) & _valid4(valid)  # top > 0 and threshold > 0: a > 0
    return KnowledgeNeuronState(
        selected=state.selected + sel.sum(axis=(0, 1), dtype=jnp.int32),
        attr_sum=state.attr_sum + jnp.where(sel, a, 0.0).sum(axis=(0, 1)),
        prompts=state.prompts + jnp.sum(valid, dtype=jnp.int32) * a.shape[1],
    )


@dataclasses.dataclass(frozen=True)
class KnowledgeNeurons(Method):
    """Knowledge neurons (Dai, Dong, Hao, Sui, Chang and Wei, "Knowledge Neurons in Pretrained
    Transformers", ACL 2022), with every prompt of the task playing the role of one of the
    paraphrased prompts of a fact.

    The attribution is integrated gradients of the probability of the gold answer (`attr_prob`).
    A prompt selects neuron w when attr(w) >= threshold * max_w' attr(w'), the maximum taken over
    all neurons of all layers for that prompt, and only when that maximum is positive (so only
    positive attributions are ever selected). Dai et al. then keep the neurons shared by enough
    prompts; here

        fraction(w) = (prompts selecting w) / (all prompts)
        score(w)    = (count(w) + 0.5 * S(w) / max_w' S(w')) / prompts   if fraction(w) >= min_fraction
                    = 0                                                   otherwise

    with S(w) the attribution of w summed over the prompts that select it. The second term (< half a
    prompt) breaks ties in the fraction by the summed attribution without ever reordering two
    different fractions: the ranking is (fraction, summed attribution, lower index). Good = the
    top-k by score (> 0). The method finds only helpful neurons: the bad set is empty.

    `threshold` is compared with >= so that threshold = 1 selects exactly each prompt's maximum.
    """

    name: ClassVar[str] = "kn_ig"
    needs: ClassVar[tuple[str, ...]] = ("attr_prob",)
    k: int = 100
    threshold: float = 0.2  # t: the fraction of a prompt's largest attribution a neuron must reach
    min_fraction: float = 0.0  # p: neurons selected by fewer than this share of prompts score 0

    def init(self, layers: int, mlp: int) -> KnowledgeNeuronState:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        _check_unit(self.name, "threshold", self.threshold, low_open=True)
        _check_unit(self.name, "min_fraction", self.min_fraction, low_open=False)
        z = jnp.zeros((layers, mlp), jnp.float32)
        return KnowledgeNeuronState(jnp.zeros((layers, mlp), jnp.int32), z, jnp.zeros((), jnp.int32))

    def update(self, state: KnowledgeNeuronState, block: ItemBlock) -> KnowledgeNeuronState:
        attr = _array(block, "attr_prob", self.name, state.selected.shape)
        return _kn_update(state, attr, block.valid, threshold=float(self.threshold))

    def finalize(self, state: KnowledgeNeuronState):
        count = np.asarray(state.selected, np.float64)
        attr_sum = np.asarray(state.attr_sum, np.float64)
        prompts = max(int(state.prompts), 1)
        top = attr_sum.max(initial=0.0)
        tie = 0.5 * attr_sum / top if top > 0 else np.zeros_like(attr_sum)
        keep = (count > 0) & (count / prompts >= self.min_fraction - 1e-12)
        scores = np.where(keep, (count + tie) / prompts, 0.0).astype(np.float32)
        good, bad = top_k_masks(scores, self.k, bad=False)
        return scores, good, bad


# --------------------------------------------------------------------------------------------
# QRNCA


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QrncaState:
    clusters: jax.Array  # int32 [layers, mlp]: n(w), the items whose cluster holds w
    cluster_sum: jax.Array  # float32 [layers, mlp]: sum over those items of s_j(w)
    items: jax.Array  # int32 []: N, the items seen


@functools.partial(jax.jit, static_argnames=("threshold", "need"))
def _qrnca_update(state: QrncaState, attr: jax.Array, valid: jax.Array, threshold: float, need: int) -> QrncaState:
    a = attr.astype(jnp.float32)
    top = _prompt_max(a)
    norm = jnp.where(top > 0, jnp.maximum(a, 0.0) / jnp.where(top > 0, top, 1.0), 0.0)  # [item, proxy, L, M]
    passes = (norm >= threshold).sum(axis=1, dtype=jnp.int32)  # [item, L, M]
    cluster = (passes >= need) & valid[:, None, None]
    s = norm.mean(axis=1)
    return QrncaState(
        clusters=state.clusters + cluster.sum(axis=0, dtype=jnp.int32),
        cluster_sum=state.cluster_sum + jnp.where(cluster, s, 0.0).sum(axis=0),
        items=state.items + jnp.sum(valid, dtype=jnp.int32),
    )


@dataclasses.dataclass(frozen=True)
class QRNCA(Method):
    """Query-relevant neuron cluster attribution (Chen, Dejl and Toni, "Identifying Query-Relevant
    Neurons in Large Language Models for Long-Form Texts", 2024, arXiv 2406.10868), with each item
    as one query and its proxies as the query's prompts.

    The attribution is integrated gradients of the probability of the gold answer (`attr_prob`).
    Per prompt, the attribution is normalised by the prompt's largest attribution over all neurons
    (positive part only; a prompt with no positive attribution contributes zeros):
    a'(w) = max(attr(w), 0) / max_w' attr(w'). For item j with P proxies:

        C_j    = neurons with a'(w) >= threshold in at least max(1, ceil(prompt_fraction * P))
                 of the item's proxies (the query's neuron cluster)
        s_j(w) = the mean of a'(w) over the item's proxies

    Across the N items, n(w) = the number of clusters that hold w, and the inverse cluster
    frequency is icf(w) = 1 + log(N / (1 + n(w))). The paper's log(N / (1 + n)) turns negative
    once n >= N; the added 1 keeps icf > 1 - log 2 > 0 for every n <= N while keeping its order
    (rarer clusters weigh more). Neurons in the clusters of more than `common_fraction` of the
    items are common neurons (they answer any query) and are removed. Then

        score(w) = (1 / N) * sum_j 1[w in C_j] * s_j(w) * icf(w)      (0 for common neurons)

    Good = the top-k by score (> 0); the bad set is empty. The state holds n(w), the sum of s_j
    over clusters and N, so icf and the common-neuron removal are applied at finalize.
    """

    name: ClassVar[str] = "qrnca"
    needs: ClassVar[tuple[str, ...]] = ("attr_prob",)
    k: int = 100
    threshold: float = 0.3  # a normalised attribution at least this high counts for the cluster
    prompt_fraction: float = 0.5  # share of an item's proxies that must pass the threshold
    common_fraction: float = 0.5  # neurons in the clusters of more than this share of items are removed

    def init(self, layers: int, mlp: int) -> QrncaState:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        _check_unit(self.name, "threshold", self.threshold, low_open=True)
        _check_unit(self.name, "prompt_fraction", self.prompt_fraction, low_open=False)
        _check_unit(self.name, "common_fraction", self.common_fraction, low_open=False)
        z = jnp.zeros((layers, mlp), jnp.float32)
        return QrncaState(jnp.zeros((layers, mlp), jnp.int32), z, jnp.zeros((), jnp.int32))

    def update(self, state: QrncaState, block: ItemBlock) -> QrncaState:
        attr = _array(block, "attr_prob", self.name, state.clusters.shape)
        proxies = attr.shape[1]
        need = max(1, math.ceil(self.prompt_fraction * proxies - 1e-9))
        return _qrnca_update(state, attr, block.valid, threshold=float(self.threshold), need=need)

    def finalize(self, state: QrncaState):
        n = np.asarray(state.clusters, np.float64)
        items = int(state.items)
        if items == 0:
            scores = np.zeros(n.shape, np.float32)
        else:
            icf = 1.0 + np.log(items / (1.0 + n))
            common = n > self.common_fraction * items + 1e-9
            score = np.asarray(state.cluster_sum, np.float64) * icf / items
            scores = np.where(common | (n == 0), 0.0, score).astype(np.float32)
        good, bad = top_k_masks(scores, self.k, bad=False)
        return scores, good, bad


# --------------------------------------------------------------------------------------------
# LAPE


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LapeState:
    active_right: jax.Array  # int32 [layers, mlp]: right-answered prompts with h(w) > 0
    active_wrong: jax.Array  # int32 [layers, mlp]: wrong-answered prompts with h(w) > 0
    right: jax.Array  # int32 []: right-answered prompts seen
    wrong: jax.Array  # int32 []: wrong-answered prompts seen


@jax.jit
def _lape_update(state: LapeState, h: jax.Array, correct: jax.Array, valid: jax.Array) -> LapeState:
    active = h > 0  # [item, proxy, L, M]
    right = correct & valid[:, None]  # [item, proxy]
    wrong = ~correct & valid[:, None]
    return LapeState(
        active_right=state.active_right + (active & right[:, :, None, None]).sum(axis=(0, 1), dtype=jnp.int32),
        active_wrong=state.active_wrong + (active & wrong[:, :, None, None]).sum(axis=(0, 1), dtype=jnp.int32),
        right=state.right + jnp.sum(right, dtype=jnp.int32),
        wrong=state.wrong + jnp.sum(wrong, dtype=jnp.int32),
    )


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


@dataclasses.dataclass(frozen=True)
class LAPE(Method):
    """Language activation probability entropy (Tang, Luo, Huang, Zhang, Wang, Zhao, Wei and Wen,
    "Language-Specific Neurons: The Key to Multilingual Capabilities in Large Language Models",
    ACL 2024), adapted to a single task.

    Tang et al. measure, per language, the probability that a neuron is active (activation > 0),
    normalise those probabilities into a distribution over languages, and call a neuron specific
    to a language when that distribution has low entropy. One task has no languages, so the two
    groups contrasted here are the task's prompts the unedited model answers right
    (`block.correct`) and those it answers wrong:

        p_right(w) = P(h(w) > 0 | right prompt),   p_wrong(w) = P(h(w) > 0 | wrong prompt)
        q = (p_right, p_wrong) / (p_right + p_wrong),   H(w) = -sum q log q   (0 log 0 = 0)
        score(w) = (1 - H(w) / log 2) * sign(p_right(w) - p_wrong(w))

    so the score is +1 for a neuron active only on right prompts, -1 for one active only on wrong
    prompts, and near 0 for a neuron equally likely active on both. As in Tang et al., neurons that
    are rarely active at all are dropped: the score is 0 where max(p_right, p_wrong) <
    `min_probability`, and every score is 0 when one of the groups is empty. h is the recorded
    activation (the down projection's input) at the last prompt position. Good = the top-k by score
    (> 0), bad = the bottom-k (< 0).
    """

    name: ClassVar[str] = "lape"
    needs: ClassVar[tuple[str, ...]] = ("activations",)
    k: int = 100
    min_probability: float = 0.2  # neurons active on fewer than this share of both groups score 0

    def init(self, layers: int, mlp: int) -> LapeState:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        _check_unit(self.name, "min_probability", self.min_probability, low_open=False)
        z = jnp.zeros((layers, mlp), jnp.int32)
        return LapeState(z, z, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def update(self, state: LapeState, block: ItemBlock) -> LapeState:
        h = _array(block, "activations", self.name, state.active_right.shape)
        correct = jnp.asarray(block.correct, bool)
        if tuple(correct.shape) != tuple(h.shape[:2]):
            raise ConfigError(f"{self.name}: block.correct has shape {tuple(correct.shape)}; "
                             f"expected [item, proxy] = {tuple(h.shape[:2])}")  # fmt: skip
        return _lape_update(state, h, correct, block.valid)

    def finalize(self, state: LapeState):
        right, wrong = int(state.right), int(state.wrong)
        shape = state.active_right.shape
        if right == 0 or wrong == 0:
            scores = np.zeros(shape, np.float32)
        else:
            p_right = np.asarray(state.active_right, np.float64) / right
            p_wrong = np.asarray(state.active_wrong, np.float64) / wrong
            total = p_right + p_wrong
            safe = np.where(total > 0, total, 1.0)
            entropy = -(_xlogx(p_right / safe) + _xlogx(p_wrong / safe))
            score = (1.0 - entropy / np.log(2.0)) * np.sign(p_right - p_wrong)
            keep = (total > 0) & (np.maximum(p_right, p_wrong) >= self.min_probability)
            scores = np.where(keep, score, 0.0).astype(np.float32)
        good, bad = top_k_masks(scores, self.k)
        return scores, good, bad
