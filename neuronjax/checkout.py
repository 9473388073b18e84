"""Running from a source checkout: the top-level name ``kernels``.

The checkout's folder ``kernels/`` holds neuronjax's Pallas kernels and installs as
``neuronjax.kernels`` (pyproject.toml's package-dir). When the checkout's root is on ``sys.path``
(``python -m ...`` or pytest started there), that folder would also answer ``import kernels``, the
name of the Hugging Face package that transformers (5.25 on) imports at its own import: transformers
then fails with "cannot import name 'CUDAProperties' from 'kernels'". `route_kernels_past_checkout`
makes ``import kernels`` look past the checkout's root first, so an installed ``kernels`` package
wins; without one, the name resolves as before. neuronjax itself never imports ``kernels``."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), os.pardir))


class KernelsPastCheckout(importlib.abc.MetaPathFinder):
    """Finds the top-level ``kernels`` on ``sys.path`` without the checkout's root (and without
    an empty entry standing for a working directory that is the root); every other name, and
    ``kernels`` when nothing else provides it, is left to the usual finders."""

    def find_spec(self, name, path=None, target=None):
        if name != "kernels" or path is not None:
            return None
        entries = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != ROOT]
        return importlib.machinery.PathFinder.find_spec(name, entries)


def route_kernels_past_checkout() -> bool:
    """Install `KernelsPastCheckout` once, when neuronjax runs from a checkout (its root holds
    ``kernels/__init__.py``). Returns whether it is installed."""
    if not os.path.isfile(os.path.join(ROOT, "kernels", "__init__.py")):
        return False
    if not any(isinstance(f, KernelsPastCheckout) for f in sys.meta_path):
        sys.meta_path.insert(0, KernelsPastCheckout())
    return True
