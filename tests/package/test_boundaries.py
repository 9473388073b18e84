"""The package's own structure: no module reaches into another's private names, the import graph
has no cycles, every package folder is installed, and modules stay a readable size."""

import ast
import os
import re
import sys

import pytest

from tests import ROOT

SOURCES = {"neuronjax": os.path.join(ROOT, "neuronjax"), "neuronjax.kernels": os.path.join(ROOT, "kernels")}
MAX_LINES = 400
# Private attributes of third-party objects that have no public spelling, with the reason.
THIRD_PARTY = {
    "model.config._attn_implementation": "transformers exposes the attention implementation only under this name",
}


def _modules():
    """(dotted module name, path) of every source file of the installed package."""
    for package, folder in SOURCES.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            if package == "neuronjax" and os.path.abspath(dirpath).startswith(SOURCES["neuronjax.kernels"]):
                continue
            for name in sorted(filenames):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, name), folder)[: -len(".py")].split(os.sep)
                    if rel[-1] == "__init__":
                        rel = rel[:-1]
                    yield ".".join([package, *rel]), os.path.join(dirpath, name)


MODULES = dict(_modules())


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(tree: ast.AST) -> list[str]:
    """Private names of other modules or objects this module uses: `from m import _x`, and
    `obj._x` for any obj but self / cls."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls") or ast.unparse(node) in THIRD_PARTY:
                continue
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_walker_finds_private_uses():
    tree = ast.parse("from a.b import _hidden, shown\nimport m\nm._x()\nself._ok()\nlm._place(1)\n")
    assert private_uses(tree) == ["line 1: from a.b import _hidden", "line 3: m._x", "line 5: lm._place"]


def test_no_module_uses_another_modules_private_names():
    problems = []
    for module, path in MODULES.items():
        with open(path) as f:
            uses = private_uses(ast.parse(f.read(), path))
        problems += [f"{os.path.relpath(path, ROOT)}: {u}" for u in uses]
    assert not problems, "private names used across modules:\n" + "\n".join(problems)


def _imports(module: str, path: str) -> set[str]:
    """The package modules `module` imports at import time (module level, not inside functions)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            names = submodules or [node.module]  # `from pkg import submodule` needs the submodule
        out |= {n for n in names if n in MODULES and n != module}
    return out


def test_the_import_graph_has_no_cycles():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package importing its own submodules in __init__ is not a cycle of ideas
    real = [c for c in cycles if not all(part.startswith(c.split(" -> ")[0]) for part in c.split(" -> "))]
    assert not real, "import cycles:\n" + "\n".join(real)


def test_every_package_folder_is_installed():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    # configs/ and its folders install as data (neuronjax.configs, no Python in them)
    configs = os.path.join(ROOT, "configs")
    data = {"neuronjax.configs"} | {f"neuronjax.configs.{d}" for d in os.listdir(configs)
                                    if os.path.isdir(os.path.join(configs, d))}  # fmt: skip
    assert {p for p in listed if p.startswith("neuronjax.configs")} == data
    listed -= data
    packages = {m for m, p in MODULES.items() if p.endswith("__init__.py")}
    assert packages == listed, f"not installed: {sorted(packages - listed)}; listed but absent: {sorted(listed - packages)}"


def test_modules_stay_readable():
    """A module over ~400 lines usually holds two ideas; the few that do not say why in their
    docstring (a line starting 'Size:')."""
    long = []
    for module, path in MODULES.items():
        with open(path) as f:
            text = f.read()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and not re.search(r"^Size:", doc, re.M):
            long.append(f"{os.path.relpath(path, ROOT)} ({text.count(chr(10))} lines)")
    assert not long, f"modules over {MAX_LINES} lines without a reason in their docstring: {long}"


def test_no_tpu_probing_on_a_host_without_one():
    """With libtpu installed and no TPU device, importing neuronjax keeps JAX on the CPU (no libtpu
    start-up warnings); an explicit JAX_PLATFORMS is left as it is."""
    import glob
    import importlib.util
    import subprocess

    if importlib.util.find_spec("libtpu") is None or glob.glob("/dev/accel*") or os.path.isdir("/dev/vfio"):
        pytest.skip("needs libtpu installed on a host without a TPU")
    code = "import os, neuronjax, jax; print(os.environ['JAX_PLATFORMS'], jax.default_backend())"
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cpu", "cpu"] and "libtpu" not in out.stderr
    kept = subprocess.run([sys.executable, "-c", code], env={**env, "JAX_PLATFORMS": "cpu,tpu"},
                          capture_output=True, text=True)  # fmt: skip
    assert kept.stdout.startswith("cpu,tpu") or "tpu" in kept.stderr.lower()
