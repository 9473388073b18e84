"""Neuron interventions as data.

An `Intervention` is a pytree handed to the compiled forward as an ordinary argument, so one
compiled function serves every mask and mode (nothing is re-traced when a mask changes). It edits
the FFN intermediate activation h (the input of the down projection):

    h[b, s, l, :] <- h[b, s, l, :] * scale[l, :] + shift[l, :]

at the positions its policy names: ``"last"``, the last real position of each row (where the
answer is read; NeuronLLM's default), or ``"all"``, every real position. The policy is static
data of the pytree (a compiled function is specialised to it, at most twice), so the model code
branches on it in Python and never computes the edit it does not apply. A call that runs one
token against a cache edits that token under either policy: it is the last position.
Suppression is scale 0, enhancement scale 2, "set to c" is scale 0 with shift c.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.errors import InputError

Positions = Literal["last", "all"]
POSITIONS = ("last", "all")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Intervention:
    scale: jax.Array  # float32 [layers, mlp]
    shift: jax.Array  # float32 [layers, mlp]
    positions: Positions = dataclasses.field(default="last", metadata=dict(static=True))  # "last" or "all"

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.scale.shape)

    @property
    def all_positions(self) -> bool:
        return self.positions == "all"

    def check_shape(self, num_layers: int, mlp: int, what: str = "intervention") -> None:
        """Raise unless scale and shift are both [num_layers, mlp] (the model's neuron grid) and the
        position policy is known."""
        if self.positions not in POSITIONS:
            raise InputError(f"{what}: positions = {self.positions!r}; expected one of {POSITIONS}")
        for field in ("scale", "shift"):
            shape = tuple(getattr(self, field).shape)
            if shape != (num_layers, mlp):
                raise InputError(
                    f"{what}: field '{field}' has shape {shape}; this model needs "
                    f"(layers={num_layers}, mlp={mlp})"
                )

    @classmethod
    def identity(cls, num_layers: int, mlp: int, all_positions: bool = False) -> "Intervention":
        return cls(
            scale=jnp.ones((num_layers, mlp), jnp.float32),
            shift=jnp.zeros((num_layers, mlp), jnp.float32),
            positions=_policy(all_positions),
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
        return cls(jnp.asarray(s), jnp.asarray(b), _policy(all_positions))


def _policy(all_positions: bool) -> Positions:
    return "all" if all_positions else "last"


def apply(h: jax.Array, scale: jax.Array, shift: jax.Array, where: jax.Array | None) -> jax.Array:
    """Edit activations h [..., seq, mlp] with one layer's scale and shift [mlp]. ``where`` is
    float [..., seq] (1 at the edited positions), or None to edit every position given."""
    h32 = h.astype(jnp.float32)
    edited = h32 * scale + shift
    if where is None:
        return edited.astype(h.dtype)
    return (h32 + where[..., None] * (edited - h32)).astype(h.dtype)


# Named modes over good / bad neuron masks (NeuronLLM, Sec. 4): suppress = x0, enhance = x2,
# set = a constant; "enhancer" strengthens the good and silences the bad neurons, "degrader" the
# reverse. Each edit is (side, scale, shift); a shift of None is the mode's constant `value`.
MODE_EDITS: dict[str, tuple[tuple[str, float, float | None], ...]] = {
    "none": (),
    "suppress_good": (("good", 0.0, 0.0),),
    "suppress_bad": (("bad", 0.0, 0.0),),
    "enhance_good": (("good", 2.0, 0.0),),
    "enhance_bad": (("bad", 2.0, 0.0),),
    "set_good": (("good", 0.0, None),),
    "set_bad": (("bad", 0.0, None),),
    "enhancer": (("good", 2.0, 0.0), ("bad", 0.0, 0.0)),
    "degrader": (("good", 0.0, 0.0), ("bad", 2.0, 0.0)),
}
MODES = tuple(MODE_EDITS)


def mode_sides(mode: str) -> tuple[str, ...]:
    """The sets ("good", "bad") a mode edits."""
    return tuple(side for side, _, _ in MODE_EDITS[mode])


def from_masks(
    mode: str, good: np.ndarray, bad: np.ndarray, all_positions: bool = False, value: float = 0.0
) -> Intervention:
    """An Intervention for a named mode; good and bad are bool [layers, mlp] masks."""
    good, bad = np.asarray(good, bool), np.asarray(bad, bool)
    if good.shape != bad.shape or good.ndim != 2:
        raise InputError(f"good {good.shape} and bad {bad.shape} masks must both be [layers, mlp]")
    if mode not in MODE_EDITS:
        raise InputError(f"intervention mode {mode!r} unknown; expected one of {MODES}")
    scale = np.ones(good.shape, np.float32)
    shift = np.zeros(good.shape, np.float32)
    masks = {"good": good, "bad": bad}
    for side, s, b in MODE_EDITS[mode]:
        scale[masks[side]], shift[masks[side]] = s, value if b is None else b
    return Intervention(jnp.asarray(scale), jnp.asarray(shift), _policy(all_positions))
