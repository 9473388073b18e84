"""NeuronLLM's CNI / ACE (arXiv 2601.04548, Sec. 3.3) and its three ablations as methods.

ACE itself (example scores over proxies, per-item top-z / bottom-z sets, ambiguity mask, the
average over items) is the streaming reduction of `neuronjax.scoring.ace`; this module wraps it
in the method interface. The ablations change one ingredient each:

- ``neuronllm_prob``: attribution of the gold answer's probability over the whole vocabulary
  instead of the contrastive F (a neuron can then score by raising every option, or lose by
  raising an unrelated token);
- ``neuronllm_one_proxy``: only the first proxy of each item (no AQUA);
- ``neuronllm_no_mask``: ambiguous neurons keep their score.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Literal

import jax
import numpy as np

from neuronjax.errors import ConfigError
from neuronjax.masks import check_k, top_k_masks
from neuronjax.methods.base import ItemBlock, Method
from neuronjax.scoring import ace


@functools.partial(jax.jit, static_argnames=("z", "proxies"))
def _update(state: ace.AceState, attr: jax.Array, valid: jax.Array, z: int, proxies: int) -> ace.AceState:
    if proxies:
        attr = attr[:, :proxies]
    return ace.update(state, attr, z, valid)


@dataclasses.dataclass(frozen=True)
class NeuronLLM(Method):
    """Good = the top-K neurons by ACE (> 0), bad = the bottom-K (< 0)."""

    name: ClassVar[str] = "neuronllm"
    k: int = 100  # neurons in the good set and in the bad set
    z: int = 500  # neurons per item in G_j and in B_j
    target: Literal["ce", "prob"] = "ce"  # attribution target: contrastive F, or P(gold answer)
    proxies: int = 0  # proxies per item used (0 = all; 1 = the no-AQUA ablation)
    mask_ambiguous: bool = True  # zero the neurons found in some G_j and some B_k

    @property
    def needs(self) -> tuple[str, ...]:
        return ("attr",) if self.target == "ce" else ("attr_prob",)

    def init(self, layers: int, mlp: int) -> ace.AceState:
        check_k(self.k, layers, mlp, f"{self.name}.k")
        check_k(self.z, layers, mlp, f"{self.name}.z")
        if self.target not in ("ce", "prob"):
            raise ConfigError(f"{self.name}.target = {self.target!r}: expected 'ce' or 'prob'")
        if self.proxies < 0:
            raise ConfigError(f"{self.name}.proxies = {self.proxies}: expected 0 (all) or a positive count")
        return ace.init_state(layers, mlp)

    def update(self, state: ace.AceState, block: ItemBlock) -> ace.AceState:
        attr = block.attr if self.target == "ce" else block.attr_prob
        return _update(state, attr, block.valid, z=self.z, proxies=self.proxies)

    def finalize(self, state: ace.AceState):
        scores = np.asarray(ace.finalize(state, self.mask_ambiguous))
        good, bad = top_k_masks(scores, self.k)
        return scores, good, bad


@dataclasses.dataclass(frozen=True)
class NeuronLLMProb(NeuronLLM):
    name: ClassVar[str] = "neuronllm_prob"
    target: Literal["ce", "prob"] = "prob"


@dataclasses.dataclass(frozen=True)
class NeuronLLMOneProxy(NeuronLLM):
    name: ClassVar[str] = "neuronllm_one_proxy"
    proxies: int = 1


@dataclasses.dataclass(frozen=True)
class NeuronLLMNoMask(NeuronLLM):
    name: ClassVar[str] = "neuronllm_no_mask"
    mask_ambiguous: bool = False
