"""Several processes, one computation: `jax.distributed` set-up and the host-side glue.

Every process runs the same command. `initialize()` (called by every `neuronjax` command before
it touches a device) finds the other processes, from the first of:

1. explicit settings: the arguments, or the environment variables ``NEURONJAX_COORDINATOR``
   (``host:port`` of process 0), ``NEURONJAX_NUM_PROCESSES`` and ``NEURONJAX_PROCESS_ID``
   (all three or none; `launch/local.sh` and `launch/slurm.sbatch` set them);
2. a cluster JAX recognises by itself: a SLURM job step with more than one task, a multi-host
   TPU slice (the TPU VM metadata), Open MPI;
3. nothing: one process, nothing to initialise.

On CPU with several processes the cross-process collectives use gloo.

After that, one mesh spans the devices of all processes. The task pipeline is sharded by process
(each process reads and pads only its rows of every global batch, see `neuronjax.tasks.pipeline`);
`global_batches` gathers the rows of a step (token ids and a few integers per row: small) so that
every process holds the same global batch and places it with `make_array_from_callback`, each
device receiving only its shard; results come back with `to_host` (an all-gather when an array
spans other processes). Masks are then identical on every process, and only process 0 writes
(`is_primary`).
"""

from __future__ import annotations

import os
from typing import Iterator, Optional

import jax
import numpy as np

from neuronjax.errors import ConfigError

ENV_COORDINATOR = "NEURONJAX_COORDINATOR"
ENV_NUM_PROCESSES = "NEURONJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "NEURONJAX_PROCESS_ID"
_ENV = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)

_initialized = False


def _int_env(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r}: expected an integer") from None


def explicit_settings(environ: Optional[dict] = None) -> Optional[tuple[str, int, int]]:
    """(coordinator, num_processes, process_id) from the NEURONJAX_* variables, or None."""
    environ = os.environ if environ is None else environ
    present = [k for k in _ENV if environ.get(k, "") != ""]
    if not present:
        return None
    if len(present) != len(_ENV):
        missing = [k for k in _ENV if k not in present]
        raise ConfigError(f"environment: {present} set but {missing} missing; set all of {list(_ENV)} or none")
    coordinator = environ[ENV_COORDINATOR]
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"environment variable {ENV_COORDINATOR}={coordinator!r}: expected host:port")
    count = _int_env(ENV_NUM_PROCESSES, environ[ENV_NUM_PROCESSES])
    index = _int_env(ENV_PROCESS_ID, environ[ENV_PROCESS_ID])
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"environment: {ENV_PROCESS_ID}={index} with {ENV_NUM_PROCESSES}={count}: expected 0 <= id < count"
        )
    return coordinator, count, index


def detected_cluster(environ: Optional[dict] = None) -> Optional[str]:
    """The kind of multi-process environment JAX would initialise from by itself, or None."""
    environ = os.environ if environ is None else environ
    if int(environ.get("SLURM_NTASKS", environ.get("SLURM_STEP_NUM_TASKS", "1")) or 1) > 1 and "SLURM_JOB_ID" in environ:
        return "slurm"
    if environ.get("TPU_WORKER_HOSTNAMES", "").count(",") >= 1 or environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    if int(environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "mpi"
    return None


def _use_gloo_on_cpu() -> None:
    platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
    if platforms.split(",")[0] in ("cpu", ""):
        # Harmless where the backend turns out not to be CPU: only CPU collectives read it.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def initialize(
    coordinator: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    environ: Optional[dict] = None,
) -> str:
    """Join the other processes of this run (once per process; later calls do nothing).

    Returns how: "explicit", "slurm", "tpu", "mpi" or "single" (one process, nothing done).
    """
    global _initialized
    if _initialized:
        return "already"
    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ConfigError("initialize: give coordinator, num_processes and process_id together, or none")
    settings = (coordinator, num_processes, process_id) if all(given) else explicit_settings(environ)
    if settings is not None:
        coordinator, num_processes, process_id = settings
        if num_processes == 1:
            return "single"
        _use_gloo_on_cpu()
        jax.distributed.initialize(coordinator, num_processes, process_id)
        _initialized = True
        return "explicit"
    kind = detected_cluster(environ)
    if kind is None:
        return "single"
    _use_gloo_on_cpu()
    jax.distributed.initialize()
    _initialized = True
    return kind


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 free right now (for a coordinator of local processes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """True on the process that writes results (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier of this name (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def to_host(x) -> np.ndarray:
    """A numpy copy of x on this process; an array spanning other processes is all-gathered."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def gather_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate every process's rows (axis 0, process order) into one identical batch."""
    if jax.process_count() == 1:
        return batch
    from jax.experimental import multihost_utils

    keys = sorted(batch)
    gathered = multihost_utils.process_allgather([np.asarray(batch[k]) for k in keys], tiled=True)
    return {k: np.asarray(v) for k, v in zip(keys, gathered)}


def global_batches(encoded, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """The global batches of an `EncodedTask` from batch `start` on: this process reads its rows,
    the rows of all processes are gathered (every process then holds the same batch)."""
    for index, batch in enumerate(encoded.batches(process_index=jax.process_index(), process_count=jax.process_count())):
        if index >= start:
            yield gather_rows(batch)
