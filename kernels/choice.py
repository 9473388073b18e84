"""Which implementation of a kernel runs: the pure-jnp reference or the Pallas kernel.

Every kernel in this package takes ``impl``:

* ``"reference"``: the pure-jnp version (XLA compiles it; runs everywhere, differentiable).
* ``"pallas"``: the Pallas kernel, compiled for the current backend (Triton on GPU, Mosaic on
  TPU). Not meant for CPU.
* ``"interpret"``: the same Pallas kernel run by the Pallas interpreter, on any backend. Slow;
  it exists so the kernel's logic can be tested on CPU.
* ``"auto"`` (the default): the value of the environment variable ``NEURONJAX_KERNELS`` when it
  is set, otherwise ``"pallas"`` on a TPU and ``"reference"`` elsewhere, on GPUs too: on an
  H200 (2026-11-30, docs/scale.md "Kernels") the kernel was 1.05-1.56x faster than XLA's
  attention in the forward pass but 0.27-0.94x with the gradient, and integrated gradients on
  Llama-3.1-8B-shaped weights ran 3-6% slower with it than with the reference, after twice the
  compile time. ``NEURONJAX_KERNELS=pallas`` still runs it there. The backend is the platform
  of the default device (``jax.default_device``) when one is set. A Pallas call is
  opaque to XLA's sharding propagation, so on a mesh the kernels run once per shard under
  `jax.shard_map` (they are given the mesh); arrays spread over several devices without a mesh
  given get the reference. Where "auto" gives the reference on a CPU with one device,
  ``shared_prefix_attention`` runs its one-token steps in ``one_token`` (the same math, laid out
  for the CPU); naming "reference" explicitly keeps the einsum form.

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
# Where "auto" runs the Pallas kernels: the backends on which they were not found slower than the
# reference (see the module docstring for the GPU measurement).
KERNEL_BACKENDS = ("tpu",)


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
    backend = backend_or_current(backend)
    devices = jax.device_count() if devices is None else devices
    return "pallas" if backend in KERNEL_BACKENDS and devices == 1 else "reference"


def backend_or_current(backend: Optional[str] = None) -> str:
    """``backend`` in lower case, or when None the platform work goes to now (`current_backend`):
    what every per-backend choice (kernels, IG replay, intervention calls) decides on."""
    return (backend or current_backend()).lower()


def current_backend() -> str:
    """The platform computations go to by default: that of ``jax.default_device`` when it is set
    (a Device or a platform name), else ``jax.default_backend()``."""
    device = jax.config.jax_default_device
    if device is None:
        return jax.default_backend()
    return device if isinstance(device, str) else device.platform
