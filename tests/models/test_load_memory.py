"""Loading SmolLM2 in float32 holds less than 2x its parameter bytes above the import baseline."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.real_model


def test_peak_rss_under_twice_parameter_bytes(tmp_path):
    out = tmp_path / "mem.json"
    proc = subprocess.run(
        [sys.executable, "-m", "neuronjax.bench.load_memory", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(proc.stdout)
    r = json.loads(out.read_text())
    assert r["param_bytes"] == 4 * r["params"] and r["params"] > 130e6
    assert r["ratio_to_param_bytes"] < 2.0, r
