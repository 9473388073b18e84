"""The one interface every neuron-finding method implements.

Identification streams a task through the attribution engine and hands each method blocks of
complete items (all proxies of an item together); a method folds blocks into a fixed-size state
and, at the end, turns the state into scores and good / bad masks. State is O(neurons), never
O(items), so a task of any size streams through, and a state is a pytree (what a resumable run
checkpoints).

    state = method.init(layers, mlp)
    for block in blocks: state = method.update(state, block)     # jit-compiled, pure
    scores, good, bad = method.finalize(state)                   # numpy

`run_method(method, blocks)` does exactly that and returns a `NeuronSet` (the type saved on
disk). Every method is a frozen dataclass whose fields are its hyper-parameters (recorded with
each result by `method_record`).

Axis names: item (original questions), proxy (AQUA permutations of an item), layers, mlp.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.io.neurons import NeuronSet

# What a method can ask the identification run for (`Method.needs`):
#   "attr"        attribution of F = log softmax over the four options at the gold (contrastive)
#   "attr_prob"   attribution of P = the model's probability of the gold answer token(s) over
#                 the whole vocabulary (the target of knowledge-neuron style methods)
#   "activations" h, the neuron activations at the last prompt position
NEEDS = ("attr", "attr_prob", "activations")

log = logging.getLogger("neuronjax.methods")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ItemBlock:
    """A block of complete items. Arrays a method did not ask for may be None.

    Rows with valid False (padding up to the fixed block size) must not change a state.
    """

    valid: jax.Array  # bool [item]
    correct: jax.Array  # bool [item, proxy]: the unedited model answers the proxy right
    attr: Optional[jax.Array] = None  # float32 [item, proxy, layers, mlp]
    attr_prob: Optional[jax.Array] = None  # float32 [item, proxy, layers, mlp]
    activations: Optional[jax.Array] = None  # float32 [item, proxy, layers, mlp]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        for x in (self.attr, self.attr_prob, self.activations):
            if x is not None:
                return tuple(x.shape)
        raise ConfigError("ItemBlock holds no per-neuron array")


@dataclasses.dataclass(frozen=True)
class Method:
    """Base of all methods. Subclasses set `name` and `needs` (a class attribute, or a property
    when it depends on a hyper-parameter) and implement the phases they run in. Identification
    (`neuronjax.identify.identify`) calls them in this order:

    1. stream: ``init`` once, ``update`` for every block of complete items (jit-compiled, pure;
       this is what a resumable run checkpoints);
    2. fit: ``fit(lm, encoded, state)`` once after the stream, for methods that optimise on the
       identification prompts (the default returns the state unchanged);
    3. finalize: ``finalize(state)`` -> (scores, good, bad).

    A ``derived`` method reads no block: it is built from the other methods' final sets by
    ``derive`` (the random control copies a set's per-layer counts), then initialised and
    finalized.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # subset of NEEDS
    derived: ClassVar[bool] = False  # True: built from the other methods' sets by `derive`, no stream
    k: int = 100  # size of the good set and of the bad set

    def init(self, layers: int, mlp: int):
        raise NotImplementedError

    def update(self, state, block: ItemBlock):
        raise NotImplementedError

    def fit(self, lm, encoded, state):
        """Second phase on the identification prompts; by default nothing to do."""
        return state

    def derive(self, sets: Mapping[str, NeuronSet]) -> "Method":
        """A derived method completed from the streamed methods' final sets (in listing order)."""
        return self

    def finalize(self, state) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores float32 [layers, mlp], good bool [layers, mlp], bad bool [layers, mlp])."""
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        return dataclasses.asdict(self)


def nonfinite_scores(name: str, scores) -> int:
    """How many scores are NaN or inf (`top_k_masks` keeps them out of both masks); a warning names
    the method and the count when there are any, so they are never left out unseen."""
    scores = np.asarray(scores)
    count = int(scores.size - np.isfinite(scores).sum())
    if count:
        log.warning("method %r: %d of %d neuron scores are NaN or inf; those neurons are left out of the good "
                    "and bad sets", name, count, scores.size)  # fmt: skip
    return count


def run_method(method: Method, blocks: Iterable[ItemBlock], layers: int, mlp: int, meta: Optional[dict] = None) -> NeuronSet:
    """Fold every block into a fresh state and finalize: the whole method as one function call.
    meta["nonfinite_scores"] counts the scores that were NaN or inf."""
    state = method.init(layers, mlp)
    for block in blocks:
        state = method.update(state, block)
    scores, good, bad = method.finalize(state)
    meta = dict(meta or {}, method=method_record(method), nonfinite_scores=nonfinite_scores(method.name, scores))
    return NeuronSet(scores=np.asarray(scores, np.float32), good=np.asarray(good, bool), bad=np.asarray(bad, bool),
                     meta=meta)  # fmt: skip


def method_record(method: Method) -> dict:
    """What the sidecar says about a method: its name and every hyper-parameter."""
    return {"name": method.name, **method.hyperparameters()}


def per_item(x: jax.Array, valid: jax.Array) -> jax.Array:
    """Zero the rows [item, ...] of padding items."""
    return jnp.where(valid.reshape(valid.shape + (1,) * (x.ndim - 1)), x, 0)
