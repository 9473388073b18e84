"""The persistent compile cache of the `neuronjax` command (neuronjax.compile_cache): where it
goes, how it is turned off, that an unwritable folder is reported and not fatal, and that a second
command reads back what the first one wrote."""

import io
import os
import subprocess
import sys

import pytest

from neuronjax import compile_cache


def test_folder_choice():
    assert compile_cache.chosen_dir({"XDG_CACHE_HOME": "/x"}) == os.path.join("/x", "neuronjax", "xla")
    assert compile_cache.chosen_dir({"NEURONJAX_COMPILE_CACHE": "/y/z"}) == "/y/z"
    for off in ("off", "OFF", "0", "none", "false"):
        assert compile_cache.chosen_dir({"NEURONJAX_COMPILE_CACHE": off}) is None
    # JAX's own variable wins: nothing here overrides it
    assert compile_cache.chosen_dir({"JAX_COMPILATION_CACHE_DIR": "/j", "NEURONJAX_COMPILE_CACHE": "/y"}) is None


def test_unwritable_folder_is_reported_and_left_off(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = io.StringIO()
    assert compile_cache.enable({"NEURONJAX_COMPILE_CACHE": str(blocker / "sub")}, stream=err) is None
    msg = err.getvalue()
    assert "compile cache off" in msg and str(blocker / "sub") in msg and "NEURONJAX_COMPILE_CACHE" in msg


def _generate(model_dir, cache, extra_env=None):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update({"NEURONJAX_COMPILE_CACHE": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"})
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "neuronjax.cli", "generate", "--model", str(model_dir), "--prompt", "The capital of",
           "--max-new-tokens", "3"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _programs(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith("-cache")) if os.path.isdir(folder) else []


@pytest.mark.torch
@pytest.mark.real_model
def test_command_writes_and_reads_back(tiny_dir, tmp_path):
    cache = tmp_path / "xla"
    first = _generate(tiny_dir, cache)
    written = _programs(cache)
    assert any(p.startswith("jit_sample_tokens") for p in written), written
    stamps = {p: os.path.getmtime(cache / p) for p in written}
    second = _generate(tiny_dir, cache)
    assert second == first
    # the second command found every program it needed: nothing new, nothing rewritten
    assert _programs(cache) == written
    assert {p: os.path.getmtime(cache / p) for p in written} == stamps


@pytest.mark.torch
@pytest.mark.real_model
def test_off_writes_nothing(tiny_dir, tmp_path):
    _generate(tiny_dir, "off", {"XDG_CACHE_HOME": str(tmp_path / "home-cache")})
    assert not (tmp_path / "home-cache").exists()
