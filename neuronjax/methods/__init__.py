"""Neuron-finding methods behind one interface (see `base`): NeuronLLM (CNI/ACE) with its
ablations, and the baselines.

    neuronllm            ACE of the contrastive F over AQUA proxies (the method)
    neuronllm_prob       ablation: probability target instead of the contrastive F
    neuronllm_one_proxy  ablation: one proxy per item (no AQUA)
    neuronllm_no_mask    ablation: no ambiguity mask
    random               random control: the per-layer counts of the first listed method (see `control`)
    mean_activation      largest / smallest mean activation
    kn_ig                knowledge neurons (Dai et al. 2022): probability-target IG, threshold on the max
    qrnca                query-relevant neuron clusters (Chen et al. 2024)
    lape                 activation-probability entropy (Tang et al. 2024 style)
    learned              good / bad sets learned by gating candidate neurons (see `learned`)
"""

from __future__ import annotations

import dataclasses

from neuronjax import configlib
from neuronjax.masks import random_like, top_k_masks
from neuronjax.methods.base import NEEDS, ItemBlock, Method, method_record, run_method
from neuronjax.methods.baselines import LAPE, QRNCA, KnowledgeNeurons, MeanActivation
from neuronjax.methods.control import Random
from neuronjax.methods.learned import Learned
from neuronjax.methods.neuronllm import NeuronLLM, NeuronLLMNoMask, NeuronLLMOneProxy, NeuronLLMProb

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (NeuronLLM, NeuronLLMProb, NeuronLLMOneProxy, NeuronLLMNoMask, Random, MeanActivation,
                KnowledgeNeurons, QRNCA, LAPE, Learned)
}  # fmt: skip


def make_method(name: str, k: int, z: int | None = None, params: dict | None = None,
                source: configlib.Source | str = "identify") -> Method:  # fmt: skip
    """A method by name with the shared k (and z where it has one) and its own hyper-parameters.
    Unknown names, unknown or wrongly typed hyper-parameters are ConfigErrors naming where they
    came from (`source`: the run config's Source, or a name)."""
    source = source if isinstance(source, configlib.Source) else configlib.Source(name=source)
    if name not in METHODS:
        raise source.error(("identify", "methods"), configlib.unknown(name, sorted(METHODS), "method names"))
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    fixed = {"k": k} | ({"z": z} if z is not None and "z" in fields else {})
    for key, value in fixed.items():  # set sizes; the upper bound (the model's neuron count) is checked at init
        if value < 1:
            raise source.error(("identify", key), f"expected an integer >= 1 (neurons per set), got {value!r}")
    method = configlib.parse(cls, params or {}, source, ("identify", "params", name), fixed=fixed)
    for key in ("k", "z"):
        if key in (params or {}) and getattr(method, key) < 1:
            raise source.error(("identify", "params", name, key),
                               f"expected an integer >= 1 (neurons per set), got {getattr(method, key)!r}")  # fmt: skip
    return method


def make_methods(section, source: configlib.Source | str = "identify") -> list[Method]:
    """The methods of an `IdentifySection` (see `neuronjax.config`)."""
    source = source if isinstance(source, configlib.Source) else configlib.Source(name=source)
    params = section.params or {}
    for name in params:
        if name not in section.methods:
            raise source.error(("identify", "params", name), "an entry for a method not in identify.methods "
                               f"{list(section.methods)}{configlib.suggest(name, section.methods)}")  # fmt: skip
    return [make_method(n, section.k, section.z, params.get(n), source) for n in section.methods]


__all__ = [
    "ItemBlock", "KnowledgeNeurons", "LAPE", "Learned", "METHODS", "MeanActivation", "Method", "NEEDS", "NeuronLLM",
    "NeuronLLMNoMask", "NeuronLLMOneProxy", "NeuronLLMProb", "QRNCA", "Random", "make_method", "make_methods",
    "method_record", "random_like", "run_method", "top_k_masks",
]  # fmt: skip
