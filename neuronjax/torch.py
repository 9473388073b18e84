"""Apply a saved neuron set to a transformers PyTorch model: the bridge for PyTorch users.

    from transformers import AutoModelForCausalLM
    from neuronjax.torch import apply_neuron_set

    model = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
    with apply_neuron_set(model, "runs/world_facts/neurons/neuronllm", "enhancer"):
        logits = model(input_ids, attention_mask=attention_mask).logits

The edit is the one of `neuronjax.intervention.from_masks(mode, good, bad, all_positions, value)`
(the modes of `MODE_EDITS`): on the input of each layer's down projection (the FFN intermediate
activation h [batch, seq, mlp], the neurons of NeuronLLM), h <- h * scale + shift in float32,
cast back to h's dtype. A forward pre-hook per edited layer applies it; a hook on the model reads
the `attention_mask` of each call. positions="last" edits the last real token of each row (the
last 1 of the attention mask; with no mask, the last column, so rows must be left-padded as
`LanguageModel.encode` pads them); "all" edits every real token. During cached generation each
step's new token is the last position, as in `neuronjax.generate`. torch is imported only here,
and the modes stay defined once, in `neuronjax.intervention`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from neuronjax.errors import InputError
from neuronjax.intervention import MODE_EDITS, MODES, POSITIONS
from neuronjax.io.neurons import SAFETENSORS, SIDECAR, NeuronSet, load_neurons

# transformers model_type -> (where the decoder layers are, where a layer's down projection is),
# as attribute paths from the CausalLM model (the bare decoder model drops the first name).
DOWN_PROJECTIONS = {
    **{family: ("model.layers", "mlp.down_proj")
       for family in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2", "phi3")},
    "gpt2": ("transformer.h", "mlp.c_proj"),
    "gpt_neox": ("gpt_neox.layers", "mlp.dense_4h_to_h"),
}  # fmt: skip


class NeuronHooks:
    """The hooks `apply_neuron_set` put on a model. `.remove()` takes them off; as a context
    manager they come off at the end of the block."""

    def __init__(self, handles: list):
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def grids(mode: str, good: np.ndarray, bad: np.ndarray, value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) float32 [layers, mlp] of a named mode, in NumPy (no JAX device is touched):
    the arrays of `neuronjax.intervention.from_masks`."""
    good, bad = np.asarray(good, bool), np.asarray(bad, bool)
    if good.shape != bad.shape or good.ndim != 2:
        raise InputError(f"good {good.shape} and bad {bad.shape} masks must both be [layers, mlp]")
    if mode not in MODE_EDITS:
        raise InputError(f"intervention mode {mode!r} unknown; expected one of {MODES}")
    scale, shift = np.ones(good.shape, np.float32), np.zeros(good.shape, np.float32)
    masks = {"good": good, "bad": bad}
    for side, s, b in MODE_EDITS[mode]:
        scale[masks[side]], shift[masks[side]] = s, value if b is None else b
    return scale, shift


def read_neuron_set(source: Any) -> NeuronSet:
    """A NeuronSet from a NeuronSet, a neurons.safetensors file, or a saved set's directory (its
    neurons.safetensors when it has one: read without JAX, so no accelerator memory is taken)."""
    if isinstance(source, NeuronSet):
        return source
    path = os.fspath(source)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, SAFETENSORS)):
        path = os.path.join(path, SAFETENSORS)
    if os.path.isfile(path) and path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            names = set(f.keys())  # a safe_open handle has no `in`
            missing = [k for k in ("scores", "good", "bad") if k not in names]
            if missing:
                raise InputError(f"{path}: tensors {missing} missing; expected scores, good and bad [layers, mlp]")
            return NeuronSet(f.get_tensor("scores"), f.get_tensor("good").astype(bool),
                             f.get_tensor("bad").astype(bool), dict(f.metadata() or {}))  # fmt: skip
    if os.path.isdir(path) or not os.path.exists(path):
        return load_neurons(path)  # its errors name what is missing
    raise InputError(f"{path}: expected a saved neuron set's directory (holding {SIDECAR}) or a .safetensors file")


def down_projections(model) -> list:
    """The down-projection module of every decoder layer of a transformers model, in order."""
    config = getattr(model, "config", None)
    family = getattr(config, "model_type", None)
    if family not in DOWN_PROJECTIONS:
        raise InputError(
            f"{type(model).__name__} (model_type {family!r}): no known down projection to hook; "
            f"expected a model of the families {sorted(DOWN_PROJECTIONS)}"
        )
    layers_path, proj_path = DOWN_PROJECTIONS[family]
    for path in (layers_path, layers_path.split(".", 1)[1]):  # the CausalLM model, or its bare decoder
        layers = _attribute(model, path)
        if layers is not None:
            return [_attribute(layer, proj_path) for layer in layers]
    raise InputError(f"{type(model).__name__}: no decoder layers at {layers_path!r}; expected a {family} model")


def _attribute(obj, dotted: str):
    for name in dotted.split("."):
        obj = getattr(obj, name, None)
    return obj


def _in_features(module) -> int:
    """Width of the input of a down projection: nn.Linear [out, in] weights, GPT-2's Conv1D [in, out]."""
    return int(module.in_features) if hasattr(module, "in_features") else int(module.weight.shape[0])


def apply_neuron_set(model, neuron_set, mode: str, positions: str = "last", value: float = 0.0) -> NeuronHooks:
    """Hook `model` (a transformers CausalLM of a family in DOWN_PROJECTIONS) so that its forward
    applies `mode` over the good / bad neurons of `neuron_set` (a NeuronSet, a saved set's
    directory or its neurons.safetensors). positions: "last" or "all"; value: the constant of the
    set_good / set_bad modes. Returns the hooks: call `.remove()`, or use them in a `with` block."""
    import torch

    if positions not in POSITIONS:
        raise InputError(f"positions = {positions!r}; expected one of {POSITIONS}")
    ns = read_neuron_set(neuron_set)
    scale, shift = grids(mode, ns.good, ns.bad, value)
    projections = down_projections(model)
    grid = (len(projections), _in_features(projections[0]))
    if scale.shape != grid:
        raise InputError(f"the neuron set is a {scale.shape[0]} x {scale.shape[1]} grid (layers x mlp); "
                         f"{type(model).__name__} has {grid[0]} layers x {grid[1]} neurons")  # fmt: skip
    call: dict[str, Any] = {}  # the attention mask of the forward in progress

    def read_mask(module, args, kwargs):
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        call["mask"] = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None

    def forget_mask(module, args, kwargs, output):
        call.pop("mask", None)

    def where(h):
        """float32 [batch, seq]: 1 at the positions to edit, or None for every position."""
        s = h.shape[1]
        mask = call.get("mask")
        mask = mask[:, -s:].to(h.device) if mask is not None else None  # a cached step sees its own columns
        if positions == "all":
            return None if mask is None else mask.float()
        if mask is None:
            last = torch.full((h.shape[0],), s - 1, device=h.device)
        else:  # the last real token of each row, as neuronjax.models.decoder finds it
            last = s - 1 - torch.argmax(torch.flip(mask.long(), (1,)), dim=1)
        return torch.nn.functional.one_hot(last, s).float()

    def edit_layer(scale_l, shift_l):
        def hook(module, args):
            h = args[0]
            h32 = h.float()
            edited = h32 * scale_l.to(h.device) + shift_l.to(h.device)
            w = where(h)
            out = edited if w is None else h32 + w[..., None] * (edited - h32)
            return (out.to(h.dtype), *args[1:])

        return hook

    handles = [model.register_forward_pre_hook(read_mask, with_kwargs=True),
               model.register_forward_hook(forget_mask, with_kwargs=True)]  # fmt: skip
    for layer, module in enumerate(projections):
        if np.any(scale[layer] != 1) or np.any(shift[layer] != 0):
            s, b = torch.from_numpy(scale[layer].copy()), torch.from_numpy(shift[layer].copy())
            handles.append(module.register_forward_pre_hook(edit_layer(s, b)))
    return NeuronHooks(handles)
