"""Fixtures of the benchmark-peer tests."""

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: the tiny matrices gain nothing from a second one, it only
    adds synchronisation."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
