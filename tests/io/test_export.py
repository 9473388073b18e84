"""Neuron sets for other tools: neurons.safetensors beside every saved set (read with the
safetensors package alone, equal to the Orbax arrays), and `neuronjax export` to safetensors,
CSV and JSON, checked against the masks read directly."""

import csv
import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from neuronjax.cli import main
from neuronjax.errors import InputError
from neuronjax.io import NeuronSet, save_neurons
from neuronjax.io.export import export_neurons

LAYERS, MLP = 3, 40
MODEL = {"model_id": "org/tiny", "revision": "1" * 40, "weight_sha256": "ab" * 32, "layers": LAYERS, "mlp": MLP}


def _set(seed: int, method: str) -> NeuronSet:
    scores = np.random.default_rng(seed).normal(size=(LAYERS, MLP)).astype(np.float32)
    return NeuronSet(scores, scores > 1.2, scores < -1.2, {"model": MODEL, "method": {"name": method, "k": 5}})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with two methods' sets, as `neuronjax identify` lays it out."""
    run = tmp_path_factory.mktemp("run")
    sets = {"neuronllm": _set(0, "neuronllm"), "random": _set(1, "random")}
    for method, ns in sets.items():
        save_neurons(str(run / "neurons" / method), ns)
    return run, sets


def _orbax(directory):
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore(os.path.join(directory, "arrays"))


def test_safetensors_file_equals_the_orbax_arrays(run):
    directory = run[0] / "neurons" / "neuronllm"
    tensors, arrays = load_file(str(directory / "neurons.safetensors")), _orbax(directory)
    assert sorted(tensors) == ["bad", "good", "grid", "scores"]
    for key in ("scores", "good", "bad"):
        np.testing.assert_array_equal(tensors[key], np.asarray(arrays[key]))
    assert (tensors["scores"].dtype, tensors["good"].dtype, tensors["bad"].dtype) == (np.float32, bool, bool)
    assert tensors["grid"].tolist() == [LAYERS, MLP]
    with safe_open(str(directory / "neurons.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    assert meta["method"] == "neuronllm" and meta["model_id"] == "org/tiny" and meta["revision"] == "1" * 40
    assert (meta["layers"], meta["mlp"], meta["format"]) == (str(LAYERS), str(MLP), "neuronjax.neurons")


def _expected_rows(sets):
    """(method, side, layer, index) -> score, straight from the masks."""
    out = {}
    for method, ns in sets.items():
        for side, mask in (("good", ns.good), ("bad", ns.bad)):
            for layer, index in np.argwhere(mask):
                out[(method, side, int(layer), int(index))] = ns.scores[layer, index]
    return out


def test_csv_and_json_rows(run, tmp_path):
    run_dir, sets = run
    (csv_path,) = export_neurons(str(run_dir), "csv", output=str(tmp_path))
    (json_path,) = export_neurons(str(run_dir), "json", output=str(tmp_path))
    with open(csv_path, newline="") as f:
        csv_rows = list(csv.DictReader(f))
    with open(json_path) as f:
        json_rows = json.load(f)
    assert list(csv_rows[0]) == ["method", "side", "layer", "index", "score"]
    want = _expected_rows(sets)
    assert len(csv_rows) == len(json_rows) == len(want) > 0
    for c, j in zip(csv_rows, json_rows):
        key = (j["method"], j["side"], j["layer"], j["index"])
        assert (c["method"], c["side"], int(c["layer"]), int(c["index"])) == key
        assert np.float32(c["score"]) == np.float32(j["score"]) == want[key]  # the float32 score, exactly
    assert {(r["method"], r["side"], r["layer"], r["index"]) for r in json_rows} == set(want)
    good = [r["score"] for r in json_rows if r["method"] == "neuronllm" and r["side"] == "good"]
    bad = [r["score"] for r in json_rows if r["method"] == "neuronllm" and r["side"] == "bad"]
    assert good == sorted(good, reverse=True) and bad == sorted(bad) and min(good) > 0 > max(bad)


def test_safetensors_export_of_one_method_and_of_one_set(run, tmp_path):
    run_dir, sets = run
    (path,) = export_neurons(str(run_dir), "safetensors", ["random"], str(tmp_path / "a"))
    assert os.path.basename(path) == "random.safetensors"
    np.testing.assert_array_equal(load_file(path)["good"], sets["random"].good)
    (path,) = export_neurons(str(run_dir / "neurons" / "neuronllm"), "safetensors", output=str(tmp_path / "b"))
    np.testing.assert_array_equal(load_file(path)["scores"], sets["neuronllm"].scores)


def test_errors_name_the_directory(run, tmp_path):
    run_dir, _ = run
    held = r"no neuron set for method\(s\) \['ace'\]; it holds \['neuronllm', 'random'\]"
    with pytest.raises(InputError, match=held):
        export_neurons(str(run_dir), "csv", ["ace"], str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: neither a run directory"):
        export_neurons(str(tmp_path), "csv")
    with pytest.raises(InputError, match="export format 'xlsx' unknown"):
        export_neurons(str(run_dir), "xlsx")


def test_cli_export(run, tmp_path, capsys):
    run_dir, _ = run
    assert main(["export", str(run_dir), "--format", "json", "--method", "neuronllm", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "neuron_rows.json")]
    with open(printed[0]) as f:
        assert {r["method"] for r in json.load(f)} == {"neuronllm"}
    assert main(["export", str(run_dir), "--format", "csv", "--method", "ace"]) == 2
    assert "neuronjax export: error:" in capsys.readouterr().err
