"""Shared by the test modules."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CPU compiler's quickest optimisation level, for the suite and the processes it starts (the
# reason and the measurements: tests/conftest.py).
QUICK_COMPILE = "--xla_backend_optimization_level=0"


def as_a_user_runs_it() -> dict:
    """The environment for a `neuronjax` command the test starts as a user would: the compiler at
    its default level (the tests that need it measure the programs' speed or where their time
    goes, which the quickest level changes) and none of the caller's NEURONJAX_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURONJAX_")}
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if f != QUICK_COMPILE)
    env.update(PYTHONPATH=ROOT, NEURONJAX_COMPILE_CACHE="off")
    return env
