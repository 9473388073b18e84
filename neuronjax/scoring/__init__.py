"""From attributions to neuron sets: CNI/ACE (NeuronLLM) and the baselines."""

from neuronjax.scoring.ace import AceState, ace_scores, finalize, init_state, select, update

__all__ = ["AceState", "ace_scores", "finalize", "init_state", "select", "update"]
