"""Which JAX platforms to start, decided before JAX is imported.

With the [tpu] extra installed (libtpu, for `neuronjax plan` on a CPU host), JAX tries to start
the TPU runtime at its first use even where there is no TPU, and libtpu fills the terminal with
warnings before JAX falls back to the CPU. On a host with no TPU device (no /dev/accel* or
/dev/vfio) and no CUDA plugin, `JAX_PLATFORMS` defaults to "cpu" here, so that nothing probes
for hardware that is not there. An explicit `JAX_PLATFORMS` always wins; TPU VMs and GPU hosts
are left alone.
"""

from __future__ import annotations

import glob
import importlib.util
import os


def prefer_cpu_without_accelerators() -> None:
    if "JAX_PLATFORMS" in os.environ or "jax" in __import__("sys").modules:
        return
    has_libtpu = importlib.util.find_spec("libtpu") is not None
    tpu_device = bool(glob.glob("/dev/accel*")) or os.path.isdir("/dev/vfio")
    cuda = any(importlib.util.find_spec(m) is not None for m in ("jax_cuda12_plugin", "jax_cuda13_plugin"))
    if has_libtpu and not tpu_device and not cuda:
        os.environ["JAX_PLATFORMS"] = "cpu"
