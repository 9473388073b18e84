"""Loader errors name the file and the tensor or field at fault."""

import json
import os

import numpy as np
import pytest

import neuronjax
from neuronjax.errors import CheckpointError, ConfigError, UnsupportedModelError
from neuronjax.loader import safetensors_io
from tests import tiny_models

pytestmark = pytest.mark.torch


@pytest.fixture
def ckpt(tmp_path):
    tiny_models.save("llama2", tmp_path)
    return tmp_path


def _rewrite(path, change):
    from safetensors.numpy import save_file

    f = os.path.join(path, "model.safetensors")
    tensors = {n: r() for n, r in safetensors_io.tensors(f)}
    change(tensors)
    save_file(tensors, f)
    return f


def _edit_config(path, **fields):
    f = os.path.join(path, "config.json")
    d = json.load(open(f))
    for k, v in fields.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    json.dump(d, open(f, "w"))
    return f


def test_path_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope: no such checkpoint"):
        neuronjax.load_model(missing)


def test_unknown_model_type(ckpt):
    f = _edit_config(ckpt, model_type="mamba")
    with pytest.raises(UnsupportedModelError) as e:
        neuronjax.load_model(str(ckpt))
    assert f in str(e.value) and "'model_type' = 'mamba'" in str(e.value) and "llama" in str(e.value)


def test_missing_config_field(ckpt):
    f = _edit_config(ckpt, hidden_size=None)
    with pytest.raises(ConfigError, match="'hidden_size' is missing") as e:
        neuronjax.load_model(str(ckpt))
    assert f in str(e.value)


def test_unsupported_rope_type(ckpt):
    _edit_config(ckpt, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4})
    with pytest.raises(UnsupportedModelError, match="rope type 'yarn'"):
        neuronjax.load_model(str(ckpt))


def test_missing_tensor(ckpt):
    f = _rewrite(ckpt, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError) as e:
        neuronjax.load_model(str(ckpt))
    msg = str(e.value)
    assert f in msg and "'model.layers.1.mlp.up_proj.weight'" in msg and "missing" in msg


def test_tensor_of_wrong_shape(ckpt):
    def shrink(t):
        t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)

    f = _rewrite(ckpt, shrink)
    with pytest.raises(CheckpointError) as e:
        neuronjax.load_model(str(ckpt))
    msg = str(e.value)
    assert f in msg and "'model.layers.0.self_attn.k_proj.weight'" in msg and "(8, 32)" in msg


def test_unexpected_tensor_is_reported_not_dropped(ckpt, caplog):
    def add(t):
        t["model.layers.0.mlp.extra.weight"] = np.zeros((3,), np.float32)

    _rewrite(ckpt, add)
    lm = neuronjax.load_model(str(ckpt))
    assert lm.report.unexpected == ["model.layers.0.mlp.extra.weight"]
    assert "1 UNEXPECTED" in caplog.text


def test_truncated_safetensors(ckpt):
    f = os.path.join(ckpt, "model.safetensors")
    size = os.path.getsize(f)
    with open(f, "r+b") as fh:
        fh.truncate(size - 100)
    with pytest.raises(CheckpointError, match="truncated") as e:
        neuronjax.load_model(str(ckpt))
    assert f in str(e.value)


def test_corrupt_safetensors_header(ckpt):
    f = os.path.join(ckpt, "model.safetensors")
    with open(f, "r+b") as fh:
        fh.write((2**40).to_bytes(8, "little"))
    with pytest.raises(CheckpointError, match="header length"):
        neuronjax.load_model(str(ckpt))


def test_sharded_checkpoint_with_index(tmp_path):
    model = tiny_models.build("qwen3")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    lm = neuronjax.load_model(str(tmp_path))
    assert "shards" in lm.report.source and not lm.report.unexpected
    ids, mask, pos = tiny_models.batch()
    want = tiny_models.torch_logits(model, ids, mask, pos)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask))[real], want[real], atol=1e-4, rtol=1e-4)
