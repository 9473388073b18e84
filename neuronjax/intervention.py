"""Neuron interventions as data.

An `Intervention` is a pytree handed to the compiled forward as an ordinary argument, so one
compiled function serves every mask, mode and position policy (nothing is re-traced when a mask
changes). It edits the FFN intermediate activation h (the input of the down projection):

    h[b, s, l, :] <- h[b, s, l, :] * scale[l, :] + shift[l, :]

at the last real position of each row (``all_positions`` False) or at every real position.
Suppression is scale 0, enhancement scale 2, "set to c" is scale 0 with shift c.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Intervention:
    scale: jax.Array  # float32 [layers, mlp]
    shift: jax.Array  # float32 [layers, mlp]
    all_positions: jax.Array  # bool []: False edits only the last position of each row

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.scale.shape)

    def check_shape(self, num_layers: int, mlp: int, what: str = "intervention") -> None:
        """Raise unless scale and shift are both [num_layers, mlp] (the model's neuron grid)."""
        for field in ("scale", "shift"):
            shape = tuple(getattr(self, field).shape)
            if shape != (num_layers, mlp):
                raise ValueError(
                    f"{what}: field '{field}' has shape {shape}; this model needs "
                    f"(layers={num_layers}, mlp={mlp})"
                )

    @classmethod
    def identity(cls, num_layers: int, mlp: int, all_positions: bool = False) -> "Intervention":
        return cls(
            scale=jnp.ones((num_layers, mlp), jnp.float32),
            shift=jnp.zeros((num_layers, mlp), jnp.float32),
            all_positions=jnp.asarray(all_positions),
        )

    @classmethod
    def on_neurons(
        cls,
        num_layers: int,
        mlp: int,
        neurons: Iterable[tuple[int, int]],
        scale: float = 0.0,
        shift: float = 0.0,
        all_positions: bool = False,
    ) -> "Intervention":
        """Scale (and shift) the listed (layer, index) neurons; every other neuron is untouched."""
        s = np.ones((num_layers, mlp), np.float32)
        b = np.zeros((num_layers, mlp), np.float32)
        for layer, index in neurons:
            if not (0 <= layer < num_layers and 0 <= index < mlp):
                raise IndexError(
                    f"neuron ({layer}, {index}) is outside the model's {num_layers} layers x {mlp} neurons"
                )
            s[layer, index] = scale
            b[layer, index] = shift
        return cls(jnp.asarray(s), jnp.asarray(b), jnp.asarray(all_positions))


def apply(h: jax.Array, layer: int, intervention: Intervention | None, edit: jax.Array) -> jax.Array:
    """Edit activations h [batch, seq, mlp] of one layer.

    ``edit`` is float32 [batch, seq, 2]: column 0 selects the last real position, column 1 every
    real position; the intervention's ``all_positions`` flag picks between them at run time.
    """
    if intervention is None:
        return h
    where = jnp.where(intervention.all_positions, edit[..., 1], edit[..., 0])[..., None]
    h32 = h.astype(jnp.float32)
    edited = h32 * intervention.scale[layer] + intervention.shift[layer]
    return (h32 + where * (edited - h32)).astype(h.dtype)


# Named modes over good / bad neuron masks (NeuronLLM, Sec. 4): suppress = x0, enhance = x2,
# set = a constant; "enhancer" strengthens the good and silences the bad neurons, "degrader" the
# reverse.
MODES = ("none", "suppress_good", "suppress_bad", "enhance_good", "enhance_bad", "set_good", "set_bad", "enhancer", "degrader")


def from_masks(
    mode: str, good: np.ndarray, bad: np.ndarray, all_positions: bool = False, value: float = 0.0
) -> Intervention:
    """An Intervention for a named mode; good and bad are bool [layers, mlp] masks."""
    good, bad = np.asarray(good, bool), np.asarray(bad, bool)
    if good.shape != bad.shape or good.ndim != 2:
        raise ValueError(f"good {good.shape} and bad {bad.shape} masks must both be [layers, mlp]")
    scale = np.ones(good.shape, np.float32)
    shift = np.zeros(good.shape, np.float32)
    rules = {
        "none": [],
        "suppress_good": [(good, 0.0, 0.0)],
        "suppress_bad": [(bad, 0.0, 0.0)],
        "enhance_good": [(good, 2.0, 0.0)],
        "enhance_bad": [(bad, 2.0, 0.0)],
        "set_good": [(good, 0.0, value)],
        "set_bad": [(bad, 0.0, value)],
        "enhancer": [(good, 2.0, 0.0), (bad, 0.0, 0.0)],
        "degrader": [(good, 0.0, 0.0), (bad, 2.0, 0.0)],
    }
    if mode not in rules:
        raise ValueError(f"intervention mode {mode!r} unknown; expected one of {MODES}")
    for mask, s, b in rules[mode]:
        scale[mask], shift[mask] = s, b
    return Intervention(jnp.asarray(scale), jnp.asarray(shift), jnp.asarray(all_positions))
