"""Run from the checkout's root, the name ``kernels`` belongs to an installed package of that name
(transformers 5.25 on imports Hugging Face's at its own import), not to the checkout's kernels/
folder, which installs as neuronjax.kernels."""

import os
import subprocess
import sys

from tests import ROOT, child_env


def _which_kernels(tmp_path, code: str, fake: bool = True) -> str:
    site = tmp_path / "site"
    if fake:  # an installed package named kernels, after the checkout's root on sys.path
        (site / "kernels").mkdir(parents=True, exist_ok=True)
        (site / "kernels" / "__init__.py").write_text("NAME = 'the installed one'\n")
    env = child_env(devices=1)
    env["PYTHONPATH"] = f"{ROOT}:{site}"  # the root first, as `python -m pytest` started there has it
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_an_installed_kernels_package_wins_once_neuronjax_is_imported(tmp_path):
    code = "import kernels; print(kernels.__file__)"
    # the collision itself: without neuronjax, the root's folder answers the name
    assert _which_kernels(tmp_path, code) == os.path.join(ROOT, "kernels", "__init__.py")
    got = _which_kernels(tmp_path, "import neuronjax; " + code)
    assert got == str(tmp_path / "site" / "kernels" / "__init__.py")


def test_without_an_installed_one_the_usual_finders_answer(tmp_path, monkeypatch):
    from neuronjax.checkout import KernelsPastCheckout

    finder = KernelsPastCheckout()
    monkeypatch.setattr(sys, "path", [ROOT, ""])
    monkeypatch.chdir(ROOT)
    assert finder.find_spec("kernels") is None  # nothing past the root: the usual finders take the name
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "path", [ROOT, "", str(tmp_path)])
    assert finder.find_spec("kernels").origin == str(tmp_path / "kernels" / "__init__.py")
    assert finder.find_spec("kernels.sub", path=[str(tmp_path)]) is None and finder.find_spec("numpy") is None
    # and neuronjax.kernels is the checkout's folder either way
    got = _which_kernels(tmp_path, "import neuronjax.kernels as k; print(k.__file__)")
    assert got == os.path.join(ROOT, "kernels", "__init__.py")
