"""Shared by the test modules."""

# The CPU compiler's quickest optimisation level, for the suite and the processes it starts (the
# reason and the measurements: tests/conftest.py).
QUICK_COMPILE = "--xla_backend_optimization_level=0"
