"""Which implementation of a kernel runs: the pure-jnp reference or the Pallas kernel.

Every kernel in this package takes ``impl``:

* ``"reference"``: the pure-jnp version (XLA compiles it; runs everywhere, differentiable).
* ``"pallas"``: the Pallas kernel, compiled for the current backend (Triton on GPU, Mosaic on
  TPU). Not meant for CPU.
* ``"interpret"``: the same Pallas kernel run by the Pallas interpreter, on any backend. Slow;
  it exists so the kernel's logic can be tested on CPU.
* ``"auto"`` (the default): the value of the environment variable ``NEURONJAX_KERNELS`` when it
  is set, otherwise ``"pallas"`` on a GPU or TPU and ``"reference"`` elsewhere. A Pallas call is
  opaque to XLA's sharding propagation, so on a mesh the kernels run once per shard under
  `jax.shard_map` (they are given the mesh); arrays spread over several devices without a mesh
  given get the reference.

An explicit ``impl`` other than ``"auto"`` is always honoured; the environment variable only
replaces ``"auto"``. The choice is made when a function is traced, so changing the variable
does not affect functions that ``jax.jit`` has already compiled.
"""

from __future__ import annotations

import os
from typing import Optional

import jax

from neuronjax.errors import ConfigError

ENV_VAR = "NEURONJAX_KERNELS"
IMPLS = ("auto", "reference", "pallas", "interpret")
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


def env_choice() -> Optional[str]:
    """The implementation forced by ``NEURONJAX_KERNELS``, or None when it is unset or empty.
    A value outside ``IMPLS`` raises ValueError."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in IMPLS:
        raise ConfigError(f"{ENV_VAR}={value!r} is not understood; accepted values: {', '.join(IMPLS)}")
    return value


def forced() -> bool:
    """Whether ``NEURONJAX_KERNELS`` names a concrete implementation (not unset, not auto)."""
    return env_choice() not in (None, "auto")


def choose(impl: str = "auto", backend: Optional[str] = None, devices: Optional[int] = None) -> str:
    """Resolve ``impl`` to "reference", "pallas" or "interpret" (see the module docstring).
    backend: the JAX backend name to decide for; the default backend when None. devices: the
    device count to decide for; ``jax.device_count()`` when None."""
    if impl not in IMPLS:
        raise ConfigError(f"impl={impl!r} is not understood; accepted values: {', '.join(IMPLS)}")
    env = env_choice()  # validated even when an explicit impl makes it irrelevant
    if impl == "auto" and env is not None:
        impl = env
    if impl != "auto":
        return impl
    backend = (backend or jax.default_backend()).lower()
    devices = jax.device_count() if devices is None else devices
    return "pallas" if backend in ACCELERATORS and devices == 1 else "reference"
