"""Models named by Hugging Face repo id resolve from the local Hugging Face cache (offline): the
same logits as loading the snapshot folder, revisions by branch and by commit, the run config's
model.revision, the repo id and commit in the neuron sets' sidecar, and an error naming the cache
folder and the download command when the model is not cached."""

import os
import re

import numpy as np
import pytest

import neuronjax
from neuronjax.config import load_run_config
from neuronjax.errors import CheckpointError, ConfigError
from neuronjax.io import model_fingerprint
from neuronjax.loader import hub_cache_dir
from tests import tiny_models

pytestmark = pytest.mark.torch

MAIN, DEV = "1" * 40, "2" * 40  # commit hashes of the two cached revisions


def _cache_model(hub, repo_id, commit, seed, refs=()):
    """Lay out one revision as huggingface_hub does: the weights as a blob, the snapshot file a
    relative symlink to it, refs/<branch> holding the commit."""
    storage = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    tiny_models.save("llama2", snapshot, seed=seed)
    blob = storage / "blobs" / f"weights-{commit}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.replace(snapshot / "model.safetensors", blob)
    os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / "model.safetensors")
    for ref in refs:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return str(snapshot)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = tmp_path_factory.mktemp("hf") / "hub"
    snapshots = {MAIN: _cache_model(hub, "org/tiny", MAIN, seed=0, refs=["main"]),
                 DEV: _cache_model(hub, "org/tiny", DEV, seed=1, refs=["dev"])}  # fmt: skip
    return hub, snapshots


@pytest.fixture(autouse=True)
def offline_cache(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub[0]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _logits(lm):
    ids, mask, _ = tiny_models.batch()
    return np.asarray(lm.logits(ids, mask))


def test_repo_id_loads_the_cached_snapshot(hub):
    by_id = neuronjax.load_model("org/tiny")
    assert os.path.samefile(by_id.source, hub[1][MAIN])
    np.testing.assert_array_equal(_logits(by_id), _logits(neuronjax.load_model(hub[1][MAIN])))


@pytest.mark.parametrize("revision", ["dev", DEV])
def test_revision_by_branch_and_by_commit(hub, revision):
    lm = neuronjax.load_model("org/tiny", revision=revision)
    assert os.path.samefile(lm.source, hub[1][DEV])
    want = _logits(neuronjax.load_model(hub[1][DEV]))
    np.testing.assert_array_equal(_logits(lm), want)
    assert np.abs(want - _logits(neuronjax.load_model(hub[1][MAIN]))).max() > 0.1  # two different models


def test_sidecar_records_repo_id_and_commit():
    fingerprint = model_fingerprint(neuronjax.load_model("org/tiny", revision="dev"))
    assert fingerprint["model_id"] == "org/tiny" and fingerprint["revision"] == DEV
    assert fingerprint["layers"] == 3 and len(fingerprint["weight_sha256"]) == 64


def test_run_config_model_revision(hub, tmp_path):
    from neuronjax.run import load_model_for

    task = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tasks", "world_facts.yaml")
    run = tmp_path / "run.yaml"
    run.write_text(f"name: t\ntask: {os.path.abspath(task)}\nmodel: {{path: org/tiny, revision: dev}}\n")
    config = load_run_config(str(run))
    assert (config.model.path, config.model.revision) == ("org/tiny", "dev")
    assert os.path.samefile(load_model_for(config).source, hub[1][DEV])
    null_path = "revision = 'dev' applies to a Hugging Face repo id; path is null"
    with pytest.raises(ConfigError, match=re.escape(null_path)):
        load_run_config(str(run), {"model.path": None})


def test_an_existing_path_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_models.save("llama2", tmp_path / "org" / "tiny", seed=2)  # a local folder spelled like the repo id
    lm = neuronjax.load_model("org/tiny")
    assert lm.source == "org/tiny" and "revision" not in model_fingerprint(lm)
    with pytest.raises(ConfigError, match="org/tiny: revision = 'dev' applies to a Hugging Face repo id, not a local"):
        neuronjax.load_model("org/tiny", revision="dev")


def test_hf_home_is_honoured(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(hub[0].parent))  # the cache is HF_HOME/hub
    assert hub_cache_dir() == str(hub[0])
    assert neuronjax.load_config("org/tiny").num_layers == 3


def test_not_cached_names_the_cache_and_the_command(hub):
    with pytest.raises(CheckpointError) as err:
        neuronjax.load_model("org/absent")
    message = str(err.value)
    assert message.startswith(f"org/absent: not a local path, and not in the local Hugging Face cache {hub[0]} ")
    assert "no folder models--org--absent" in message
    assert "`hf download org/absent`" in message and "`huggingface-cli download org/absent`" in message


def test_revision_not_cached_lists_what_is(hub):
    with pytest.raises(CheckpointError) as err:
        neuronjax.load_config("org/tiny", revision="v2")
    message = str(err.value)
    assert message.startswith("org/tiny: revision 'v2' is not in the local Hugging Face cache")
    assert f"refs ['dev', 'main'], snapshots ['{MAIN}', '{DEV}']" in message
    assert "`hf download org/tiny --revision v2`" in message


@pytest.mark.real_model
def test_a_sweep_over_revisions(tmp_path, monkeypatch):
    """A grid over model.revision (as over a training run's checkpoints): one point per cached
    revision, each identified on its own commit (recorded in its sets), the model loaded once per
    revision; the gathered table has the revision as a column."""
    import csv
    import io

    from neuronjax.io import load_neurons
    from neuronjax.sweep import run_sweep
    from tests.sweep.files import base_config, write_yaml

    hub = tmp_path / "hub"
    for commit, seed, ref in ((MAIN, 0, "step1000"), (DEV, 1, "step2000")):  # two checkpoints
        storage = hub / "models--org--tiny-smol"
        tiny_models.save_tiny_smol(storage / "snapshots" / commit, seed=seed)
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    base_config(tmp_path, "org/tiny-smol")
    sweep = write_yaml(tmp_path / "revisions.yaml", {
        "name": "revisions", "base": "base.yaml", "output": str(tmp_path / "out"),
        "overrides": {"task.split.max_identify": 3, "task.split.max_eval": 3},
        "grid": {"model.revision": ["step1000", "step2000"]},
    })  # fmt: skip
    result = run_sweep(sweep, progress=False, log=lambda line: None)
    assert [p.name for p in result.points] == ["step1000", "step2000"] and len(result.ran) == 2, result.failed
    sets = [load_neurons(os.path.join(p.config.run_dir, "neurons", "neuronllm")) for p in result.points]
    assert [ns.meta["model"]["revision"] for ns in sets] == [MAIN, DEV]
    assert not np.array_equal(sets[0].scores, sets[1].scores)  # two checkpoints, two sets of scores
    with open(result.csv_path) as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert {r["model.revision"] for r in rows} == {"step1000", "step2000"}
