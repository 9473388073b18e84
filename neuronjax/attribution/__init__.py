"""Per-neuron attribution of the NeuronLLM target F at the last prompt position."""

from neuronjax.attribution.engine import METHODS, Attribution, PromptBatch, alphas, attribute

__all__ = ["METHODS", "Attribution", "PromptBatch", "alphas", "attribute"]
