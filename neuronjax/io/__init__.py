"""Results on disk: Orbax checkpoints of neuron scores and masks, with a JSON sidecar."""

from neuronjax.io.neurons import NeuronSet, load_neurons, model_fingerprint, save_neurons

__all__ = ["NeuronSet", "load_neurons", "model_fingerprint", "save_neurons"]
