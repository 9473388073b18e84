"""Model files that cannot be loaded: every error names the file and the field or tensor at fault
and says what was expected."""

import json
import os
import re
import shutil

import numpy as np
import pytest

import neuronjax
from neuronjax.errors import CheckpointError, ConfigError, UnsupportedModelError
from neuronjax.loader import safetensors_io
from tests.bad_input.helpers import write_gguf

# ---------------------------------------------------------------- Hugging Face directories


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    pytest.importorskip("torch")
    from tests import tiny_models

    folder = tmp_path_factory.mktemp("llama")
    tiny_models.save("llama2", folder)  # 3 layers, hidden 32, mlp 48
    return folder


@pytest.fixture
def ckpt(saved, tmp_path):
    """A fresh copy of the saved checkpoint for one test to damage."""
    return shutil.copytree(saved, tmp_path / "ckpt")


def _edit_config(folder, **fields) -> str:
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(fields)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


@pytest.mark.torch
def test_unknown_architecture(ckpt):
    path = _edit_config(ckpt, model_type="mamba")
    message = (f"{path}: field 'model_type' = 'mamba' is not supported; expected one of llama, mistral, mixtral, qwen2, "
               "qwen3, gemma, gemma2, gemma3_text, gpt2, gpt_neox, olmo2, phi3")  # fmt: skip
    with pytest.raises(UnsupportedModelError, match=re.escape(message)):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_config_that_is_not_json(ckpt):
    path = os.path.join(ckpt, "config.json")
    with open(path, "w") as f:
        f.write('{"model_type": "llama",')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid JSON (")):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_directory_without_config(ckpt):
    os.remove(os.path.join(ckpt, "config.json"))
    with pytest.raises(CheckpointError, match=re.escape(f"{ckpt}: no config.json in this checkpoint directory")):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_truncated_safetensors(ckpt):
    path = os.path.join(ckpt, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: file is truncated: tensor '") + r".*' ends at byte "
                       + re.escape(f"{size} of a {size - 100}-byte file")):  # fmt: skip
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_safetensors_with_a_corrupt_header_length(ckpt):
    path = os.path.join(ckpt, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write((2**40).to_bytes(8, "little"))
    message = f"{path}: corrupt safetensors file: header length {2**40} exceeds the file size {size}"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_safetensors_with_a_header_that_is_not_json(ckpt):
    path = os.path.join(ckpt, "model.safetensors")
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"#garbage")
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: corrupt safetensors header (")):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_safetensors_shorter_than_its_header_length(ckpt):
    path = os.path.join(ckpt, "model.safetensors")
    with open(path, "wb") as f:
        f.write(b"\x01\x02")
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a safetensors file (shorter than the 8-byte header length)")):
        neuronjax.load_model(str(ckpt))


def _rewrite_tensors(folder, change) -> str:
    from safetensors.numpy import save_file

    path = os.path.join(folder, "model.safetensors")
    tensors = {name: read() for name, read in safetensors_io.tensors(path)}
    change(tensors)
    save_file(tensors, path)
    return path


@pytest.mark.torch
def test_config_and_tensors_disagree_on_a_shape(ckpt):
    """config.json says intermediate_size 64; the tensors were saved with 48."""
    _edit_config(ckpt, intermediate_size=64)
    path = os.path.join(ckpt, "model.safetensors")
    pattern = (re.escape(f"{path}: tensor 'model.layers.0.mlp.") + r"\w+" + re.escape("_proj.weight' has shape (")
               + r".*; expected a tensor that gives 'layers\.0\.mlp\.\w+' of shape .*64.*"
               + re.escape("(the shape the model's config sets)"))  # fmt: skip
    with pytest.raises(CheckpointError, match=pattern):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_tensor_of_another_shape(ckpt):
    def shrink(t):
        t["model.layers.1.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)

    path = _rewrite_tensors(ckpt, shrink)
    message = (f"{path}: tensor 'model.layers.1.self_attn.k_proj.weight' has shape (8, 32), which does not fit "
               "'layers.1.attn.k' of shape (32, 4, 8) (the shape the model's config sets) (cannot reshape")  # fmt: skip
    with pytest.raises(CheckpointError, match=re.escape(message)):
        neuronjax.load_model(str(ckpt))


@pytest.mark.torch
def test_missing_tensor(ckpt):
    path = _rewrite_tensors(ckpt, lambda t: t.pop("model.layers.2.mlp.down_proj.weight"))
    message = f"{path}: 1 tensor(s) missing from the checkpoint, e.g. 'model.layers.2.mlp.down_proj.weight' (for layers.2.mlp.down)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        neuronjax.load_model(str(ckpt))


# ------------------------------------------------------------------------------------ GGUF


@pytest.mark.parametrize("qtype", ["Q8_1", "Q8_K"])
def test_gguf_of_an_unsupported_quantization(tmp_path, qtype):
    path = write_gguf(tmp_path / "m.gguf", qtype)
    message = (f"{path}: tensor 'token_embd.weight' uses quantization {qtype}, which the gguf package cannot "
               "dequantize; expected one of F32, F16, ")  # fmt: skip
    with pytest.raises(UnsupportedModelError, match=re.escape(message) + r".*\bQ4_0\b.*\bQ8_0\b"):
        neuronjax.load_model(path)


def test_gguf_that_is_not_gguf(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"this is not a model" * 10)
    message = f"{path}: not a readable GGUF file (ValueError: GGUF magic invalid); expected a complete GGUF file"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        neuronjax.load_model(str(path))


def test_truncated_gguf(tmp_path):
    whole = write_gguf(tmp_path / "whole.gguf", "Q8_0")
    path = tmp_path / "m.gguf"
    path.write_bytes(open(whole, "rb").read()[:300])
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a readable GGUF file (")):
        neuronjax.load_model(str(path))


def test_gguf_of_another_architecture(tmp_path):
    from gguf import GGUFWriter

    path = str(tmp_path / "m.gguf")
    writer = GGUFWriter(path, "bloom")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    message = f"{path}: GGUF field 'general.architecture' = 'bloom' is not supported; expected one of llama, qwen2,"
    with pytest.raises(UnsupportedModelError, match=re.escape(message)):
        neuronjax.load_model(path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nope'}: no such checkpoint directory or GGUF file")):
        neuronjax.load_model(str(tmp_path / "nope"))
