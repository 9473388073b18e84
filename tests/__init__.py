"""Shared by the test modules."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CPU compiler's quickest optimisation level, for the suite and the processes it starts (the
# reason and the measurements: tests/conftest.py).
QUICK_COMPILE = "--xla_backend_optimization_level=0"


def _without_neuronjax_settings() -> dict:
    """os.environ less the caller's NEURONJAX_ variables, with this checkout importable and the
    compile cache off: a child process reads no programs compiled by another run and writes none
    to ~/.cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURONJAX_")}
    env.update(PYTHONPATH=ROOT, NEURONJAX_COMPILE_CACHE="off")
    return env


def child_env(devices: int | None = 1, **extra: str) -> dict:
    """The environment of a process a test starts: the CPU backend with `devices` host devices
    (None: no count; launch/local.sh --devices-per-process sets its own), the quickest compiler
    level, and only the NEURONJAX_ variables given in `extra`."""
    env = _without_neuronjax_settings()
    flags = ([f"--xla_force_host_platform_device_count={devices}"] if devices else []) + [QUICK_COMPILE]
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags))
    env.update(extra)
    return env


def as_a_user_runs_it() -> dict:
    """The environment for a `neuronjax` command the test starts as a user would: the compiler at
    its default level (the tests that need it measure the programs' speed or where their time
    goes, which the quickest level changes) and none of the caller's NEURONJAX_ settings."""
    env = _without_neuronjax_settings()
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if f != QUICK_COMPILE)
    return env
