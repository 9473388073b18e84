"""On one CPU device the stacked block parameters are filled on the host and moved once each;
elsewhere layer by layer on the devices. Both give the same parameters to the bit, with the same
shardings: for dense and mixture-of-experts checkpoints, in float32 and bfloat16, with no mesh and
with a mesh of one device, and for the shipped Q4_1 GGUF."""

import importlib

import numpy as np
import pytest
from flax import nnx

import neuronjax
from neuronjax import sharding as sh
from tests import tiny_models

place = importlib.import_module("neuronjax.loader.place")  # the module (the package exports its function `place`)


def _leaves(lm) -> dict:
    return {".".join(map(str, k)): v.get_value() for k, v in nnx.to_flat_state(lm.state)}


def _same(got, want) -> None:
    a, b = _leaves(got), _leaves(want)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].sharding.is_equivalent_to(b[k].sharding, a[k].ndim), k
        assert np.array_equal(np.asarray(a[k]).view(np.uint8), np.asarray(b[k]).view(np.uint8)), k


def _on_devices(monkeypatch, *args, **kwargs):
    """The load as it runs on accelerators and meshes: every layer written on the device."""
    with monkeypatch.context() as m:
        m.setattr(place, "_one_cpu_device", lambda mesh: False)
        return neuronjax.load_model(*args, **kwargs)


@pytest.mark.torch
@pytest.mark.parametrize("variant", ["llama2", "gemma3", "gpt_neox", "mixtral"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_host_and_device_stacking_agree(tmp_path, monkeypatch, variant, dtype):
    tiny_models.save(variant, tmp_path)
    lm = neuronjax.load_model(str(tmp_path), dtype=dtype)
    assert place._one_cpu_device(None)
    _same(lm, _on_devices(monkeypatch, str(tmp_path), dtype=dtype))
    one = sh.make_mesh({"data": 1}, devices=lm.state["embed"].get_value().sharding.device_set)
    _same(neuronjax.load_model(str(tmp_path), dtype=dtype, mesh=one), _on_devices(monkeypatch, str(tmp_path), dtype=dtype,
                                                                                   mesh=one))  # fmt: skip


@pytest.mark.real_model
def test_the_shipped_gguf_on_host_and_on_device(monkeypatch):
    path = neuronjax.default_model_path()
    _same(neuronjax.load_model(path), _on_devices(monkeypatch, path))
