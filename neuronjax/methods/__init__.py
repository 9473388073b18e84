"""Neuron-finding methods behind one interface (see `base`): NeuronLLM (CNI/ACE) with its
ablations, and the baselines.

    neuronllm            ACE of the contrastive F over AQUA proxies (the method)
    neuronllm_prob       ablation: probability target instead of the contrastive F
    neuronllm_one_proxy  ablation: one proxy per item (no AQUA)
    neuronllm_no_mask    ablation: no ambiguity mask
    random               same per-layer counts as the first listed method, random neurons
    mean_activation      largest / smallest mean activation
    kn_ig                knowledge neurons (Dai et al. 2022): probability-target IG, threshold on the max
    qrnca                query-relevant neuron clusters (Chen et al. 2024)
    lape                 activation-probability entropy (Tang et al. 2024 style)
    learned              good / bad sets learned by gating candidate neurons (see `learned`)
"""

from __future__ import annotations

import dataclasses
import typing

from neuronjax.methods.base import NEEDS, ItemBlock, Method, method_record, run_method, top_k_masks
from neuronjax.methods.baselines import LAPE, QRNCA, KnowledgeNeurons, MeanActivation, Random, random_like
from neuronjax.methods.learned import Learned
from neuronjax.methods.neuronllm import NeuronLLM, NeuronLLMNoMask, NeuronLLMOneProxy, NeuronLLMProb

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (NeuronLLM, NeuronLLMProb, NeuronLLMOneProxy, NeuronLLMNoMask, Random, MeanActivation,
                KnowledgeNeurons, QRNCA, LAPE, Learned)
}  # fmt: skip


def make_method(name: str, k: int, z: int | None = None, params: dict | None = None, where: str = "identify") -> Method:
    """A method by name with the shared k (and z where it has one) and its own hyper-parameters;
    unknown names, unknown or wrongly typed hyper-parameters are errors naming `where`."""
    from neuronjax.tasks.config import _check_type

    if name not in METHODS:
        raise ValueError(f"{where}.methods: {name!r} unknown; expected some of {sorted(METHODS)}")
    cls = METHODS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {"k": k}
    if z is not None and "z" in fields:
        values["z"] = z
    for key, value in (params or {}).items():
        if key not in fields:
            raise ValueError(f"{where}.params.{name}: unknown key {key!r}; expected some of {sorted(fields)}")
        values[key] = _check_type(value, hints[key], f"{where}.params.{name}.{key}")
    for key in ("k", "z"):  # set sizes; the upper bound (the model's neuron count) is checked at init
        if key in values and values[key] < 1:
            field = f"params.{name}.{key}" if key in (params or {}) else key
            raise ValueError(f"{where}.{field} = {values[key]!r}: expected an integer >= 1 (neurons per set)")
    return cls(**values)


def make_methods(section, where: str = "identify") -> list[Method]:
    """The methods of an `IdentifySection` (see `neuronjax.config`)."""
    params = section.params or {}
    stray = sorted(set(params) - set(section.methods))
    if stray:
        raise ValueError(f"{where}: identify.params has entries {stray} for methods not in identify.methods")
    for name, p in params.items():
        if not isinstance(p, dict):
            raise ValueError(f"{where}: identify.params.{name}: expected a mapping of hyper-parameters, got {p!r}")
    if not section.methods:
        raise ValueError(f"{where}: identify.methods is empty")
    return [make_method(n, section.k, section.z, params.get(n), f"{where}: identify") for n in section.methods]


__all__ = [
    "ItemBlock", "KnowledgeNeurons", "LAPE", "Learned", "METHODS", "MeanActivation", "Method", "NEEDS", "NeuronLLM",
    "NeuronLLMNoMask", "NeuronLLMOneProxy", "NeuronLLMProb", "QRNCA", "Random", "make_method", "make_methods",
    "method_record", "random_like", "run_method", "top_k_masks",
]  # fmt: skip
