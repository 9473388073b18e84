"""The random control: sets drawn at random with the per-layer counts of a reference set.

An intervention on a random set touches as many neurons in each layer as the intervention it
controls for, so "better than random" compares like with like (NeuronLLM step 7). It is a
derived method (`neuronjax.methods.base.Method.derive`): it reads no item block and is built from
the first listed method's final sets.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.masks import check_k, draw_per_layer
from neuronjax.methods.base import ItemBlock, Method


@dataclasses.dataclass(frozen=True)
class Random(Method):
    """Random control: in each layer l, good_per_layer[l] neurons drawn uniformly at random and
    bad_per_layer[l] further neurons of that layer, disjoint from the good ones, with numpy's
    default_rng(seed). Scores are +1 on good, -1 on bad, 0 elsewhere. Built from a reference set
    with `Random.like(good, bad, seed)`, it has that set's per-layer counts, so an intervention on
    it touches as many neurons in each layer as the intervention it controls for. It reads no
    block; `k` is only validated."""

    name: ClassVar[str] = "random"
    needs: ClassVar[tuple[str, ...]] = ()
    derived: ClassVar[bool] = True
    k: int = 100
    seed: int = 0
    good_per_layer: tuple[int, ...] = ()
    bad_per_layer: tuple[int, ...] = ()

    @classmethod
    def like(cls, reference_good, reference_bad, seed: int = 0, k: Optional[int] = None) -> "Random":
        """A Random with the per-layer counts of reference masks (bool [layers, mlp])."""
        good, bad = np.asarray(reference_good), np.asarray(reference_bad)
        if good.ndim != 2 or good.shape != bad.shape:
            raise ConfigError(f"random.like: reference good {good.shape} and bad {bad.shape} masks must both be "
                             "[layers, mlp]")  # fmt: skip
        if good.dtype != bool or bad.dtype != bool:
            raise ConfigError(f"random.like: reference masks must be bool, got {good.dtype} and {bad.dtype}")
        counts_good = tuple(int(c) for c in good.sum(axis=1))
        counts_bad = tuple(int(c) for c in bad.sum(axis=1))
        if k is None:
            k = max(1, sum(counts_good), sum(counts_bad))
        return cls(k=k, seed=seed, good_per_layer=counts_good, bad_per_layer=counts_bad)

    def derive(self, sets) -> "Random":
        """Without per-layer counts, the counts of the first listed method's sets."""
        if self.good_per_layer or self.bad_per_layer:
            return self
        reference = next(iter(sets.values()))
        return Random.like(reference.good, reference.bad, seed=self.seed, k=self.k)

    def _check(self, layers: int, mlp: int) -> None:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"{self.name}.seed = {self.seed!r}: expected a non-negative integer")
        for field in ("good_per_layer", "bad_per_layer"):
            counts = getattr(self, field)
            if len(counts) != layers:
                hint = " (missing: build it with Random.like(good, bad, seed))" if not counts else ""
                raise ConfigError(f"{self.name}.{field} = {counts!r}: expected {layers} counts, one per layer{hint}")
            for layer, c in enumerate(counts):
                if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= c <= mlp:
                    raise ConfigError(f"{self.name}.{field}[{layer}] = {c!r}: expected an integer in 0..{mlp}")
        for layer, (g, b) in enumerate(zip(self.good_per_layer, self.bad_per_layer)):
            if g + b > mlp:
                raise ConfigError(f"{self.name}.good_per_layer[{layer}] + bad_per_layer[{layer}] = {g} + {b}: "
                                 f"expected at most {mlp} (the layer's neurons; good and bad are disjoint)")

    def init(self, layers: int, mlp: int) -> jax.Array:
        self._check(layers, mlp)
        return jnp.asarray([layers, mlp], jnp.int32)  # all the draw needs: the grid's shape

    def update(self, state: jax.Array, block: ItemBlock) -> jax.Array:
        return state

    def finalize(self, state: jax.Array):
        layers, mlp = (int(x) for x in np.asarray(state))
        self._check(layers, mlp)
        good, bad = draw_per_layer(layers, mlp, self.good_per_layer, self.bad_per_layer, self.seed)
        scores = good.astype(np.float32) - bad.astype(np.float32)
        return scores, good, bad
