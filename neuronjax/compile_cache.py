"""A persistent cache of compiled programs, shared by every run on this machine.

A run compiles its attribution step once per shape bucket and its scoring calls once per
intervention group shape; on a 2-core CPU that is tens of seconds per run, on a TPU slice with a
70B model minutes. The programs depend only on the model's shapes, the mesh and the run's
static settings, so a sweep over tasks of one model, or a run repeated with other seeds, compiles
nothing its predecessors compiled. The `neuronjax` command turns on JAX's persistent compilation
cache before it compiles anything:

- ``NEURONJAX_COMPILE_CACHE`` names the folder; ``off`` (or ``0``, ``none``, ``false``) turns it
  off. Default: ``$XDG_CACHE_HOME/neuronjax/xla`` (``~/.cache/neuronjax/xla``).
- A ``JAX_COMPILATION_CACHE_DIR`` set in the environment wins: JAX reads it itself and
  nothing here changes it.
- Programs that compiled in under a second are not written (JAX's
  ``jax_persistent_cache_min_compile_time_secs``, 1 s by default; its environment variable
  changes it).

Benchmarks (`neuronjax bench`) and `neuronjax plan` leave the cache off: a benchmark's compile
time must be a compile, and a plan compiles for hardware this host does not have.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

ENV = "NEURONJAX_COMPILE_CACHE"
OFF = ("off", "0", "none", "false", "no")


def default_dir(environ=os.environ) -> str:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "neuronjax", "xla")


def chosen_dir(environ=os.environ) -> Optional[str]:
    """The folder this process should cache in, or None (off, or JAX's own variable is set)."""
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    value = environ.get(ENV)
    if value is not None and value.strip().lower() in OFF:
        return None
    return os.path.expanduser(value) if value else default_dir(environ)


def enable(environ=os.environ, stream=sys.stderr) -> Optional[str]:
    """Turn the persistent cache on (see the module docstring); returns the folder, or None when
    it stays off. A folder that cannot be made or written is reported on `stream` and left off:
    the run goes on and compiles as it would without the cache."""
    path = chosen_dir(environ)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as err:
        print(f"neuronjax: compile cache off: cannot write {path} ({err.strerror}); "
              f"set {ENV} to a writable folder, or to 'off'", file=stream)  # fmt: skip
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    return path
