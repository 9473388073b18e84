"""The run configs shipped with the package, found by name: `neuronjax run quickstart`.

The top-level configs/ folder of the source tree installs as the data folder neuronjax/configs
(pyproject.toml); an editable install reads configs/ itself. Names are the run configs' paths
relative to that folder without ".yaml": quickstart, default, runs/world_facts, ...
"""

from __future__ import annotations

import os

from neuronjax.errors import ConfigError


def shipped_configs() -> str:
    """The folder of the run configs shipped with the package: neuronjax/configs once installed,
    the top-level configs/ of a source checkout (editable install)."""
    package = os.path.dirname(os.path.abspath(__file__))  # neuronjax/
    installed, source = os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs")
    return installed if os.path.isdir(installed) else source


def shipped_names() -> list[str]:
    """Names of the shipped run configs: `quickstart`, `default`, `runs/world_facts`, ..."""
    root, names = shipped_configs(), []
    for folder in ("", "runs"):
        path = os.path.join(root, folder)
        if os.path.isdir(path):
            names += sorted(os.path.join(folder, f)[: -len(".yaml")] for f in os.listdir(path) if f.endswith(".yaml"))
    return names


def config_path(target: str) -> str:
    """A run config file: `target` itself when it exists, else the shipped config of that name."""
    if os.path.exists(target):
        return target
    name = target.removesuffix(".yaml")
    if name in shipped_names():
        return os.path.join(shipped_configs(), name + ".yaml")
    raise ConfigError(f"{target}: no such file or run directory, and not the name of a shipped config; expected a "
                      f"run config YAML, a run directory, or one of {shipped_names()}")  # fmt: skip
