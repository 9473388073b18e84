"""`neuronjax plan` compiles a run's steps for a TPU slice that is not here: the compiler's argument
bytes per chip against a hand count of the sharded parameters and inputs, and a step too large
for a chip's HBM reported as not fitting, with the compiler's reason."""

import json
import os

import pytest

from neuronjax.cli import main
from neuronjax.config import load_run_config

pytestmark = pytest.mark.tpu_compile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LLAMA_8B = os.path.join(ROOT, "configs", "models", "llama-3.1-8b.json")


def _config(tmp_path, **changes):
    with open(LLAMA_8B) as f:
        d = json.load(f)
    d.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    return str(path)


def test_arguments_are_the_parameters_divided_by_their_sharding(tmp_path):
    """A Llama whose every parameter has an embed axis: on v5e-4 with fsdp=4 each is split four
    ways, so a chip holds a quarter of the parameter bytes, plus a quarter of the batch's inputs.
    The sizes are multiples of the TPU's (8, 128) float32 tiles, so the compiler pads nothing but
    the tiny per-prompt arrays (gold, candidates: at most a few tiles)."""
    from neuronjax.plan import plan

    e, f, layers, vocab, heads, kv, d = 512, 1024, 8, 2048, 8, 8, 128
    model = _config(tmp_path, hidden_size=e, intermediate_size=f, num_hidden_layers=layers, vocab_size=vocab,
                    num_attention_heads=heads, num_key_value_heads=kv, head_dim=d)  # fmt: skip
    config = load_run_config(os.path.join(ROOT, "configs", "default.yaml"), {"identify.attribution.steps": 2})
    batch, seq = 32, 128
    out = plan(config, model, "v5e-4", batch=batch, seq=seq, mesh={"fsdp": 4}, dtype="float32", log=lambda s: None)
    per_layer = 2 * e + e * heads * d + 2 * e * kv * d + heads * d * e + 3 * e * f  # two norms, q, k, v, o, gate/up/down
    params = vocab * e + layers * per_layer + e + e * vocab  # embedding, blocks, final norm, untied head
    ids_and_mask = 2 * batch * seq * 4  # int32
    ident = out["steps"]["identify"]
    assert out["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and out["chips"] == 4
    assert out["parameter_bytes_per_chip"] == params * 4 // 4
    assert ident["fits"] and ident["batch"] == batch
    extra = ident["per_chip_bytes"]["arguments"] - (params * 4 + ids_and_mask) // 4
    assert 0 <= extra <= 64 * 1024, extra  # gold [8] and candidates [8, 4, 4] per chip, tile-padded
    assert out["steps"]["evaluate"]["fits"] and out["fits"]


def test_a_step_too_large_does_not_fit_and_fails_only_when_asked(tmp_path, capsys):
    """Eight layers of Llama-3.1-70B's width and its vocabulary (about 9B parameters, 18 GB in
    bfloat16) on one 16 GiB v5e chip."""
    model = _config(tmp_path, hidden_size=8192, intermediate_size=28672, num_hidden_layers=8, num_attention_heads=64)
    args = ["plan", os.path.join(ROOT, "configs", "default.yaml"), "--model-config", model, "--topology", "v5e-1",
            "--batch", "1", "--dtype", "bfloat16", "--json", str(tmp_path / "plan.json")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "identify" in out and "does not fit: " in out and "DOES NOT FIT" in out
    saved = json.loads((tmp_path / "plan.json").read_text())
    step = saved["steps"]["identify"]
    assert not step["fits"] and not saved["fits"] and "RESOURCE_EXHAUSTED" in step["message"]
    assert main(args + ["--require-fit"]) == 1


def test_gpu_slices_say_what_they_need(capsys):
    assert main(["plan", os.path.join(ROOT, "configs", "default.yaml"), "--model-config", LLAMA_8B, "--topology",
                 "h100-8"]) == 2  # fmt: skip
    assert "CUDA plugin" in capsys.readouterr().err
