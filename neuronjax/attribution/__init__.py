"""Per-neuron attribution at the last prompt position of the NeuronLLM target F (contrastive,
over the four options) or of the gold option's probability over the whole vocabulary."""

from neuronjax.attribution.engine import METHODS, RULES, TARGETS, Attribution, PromptBatch, alphas, attribute

__all__ = ["METHODS", "RULES", "TARGETS", "Attribution", "PromptBatch", "alphas", "attribute"]
