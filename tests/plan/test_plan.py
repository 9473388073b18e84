"""`neuronjax plan` compiles a run's steps for a TPU slice that is not here: the compiler's argument
bytes per chip against a hand count of the sharded parameters and inputs, and a step too large
for a chip's HBM reported as not fitting, with the compiler's reason."""

import json
import os

import jax
import numpy as np
import pytest

from neuronjax.cli import main
from neuronjax.config import load_run_config
from tests import ROOT

pytestmark = pytest.mark.tpu_compile

LLAMA_8B = os.path.join(ROOT, "configs", "models", "llama-3.1-8b.json")


def _config(tmp_path, **changes):
    with open(LLAMA_8B) as f:
        d = json.load(f)
    d.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def _run_precision():
    """The steps compiled at JAX's default matmul precision, as `neuronjax plan` compiles them: the
    suite's "highest" (tests/conftest.py, for the comparisons on the CPU) has the TPU compiler
    build each float32 product from several bfloat16 passes, and tripled this module's compile
    time (measured: 242 s against 71 s for the plan of the `small` fixture)."""
    with jax.default_matmul_precision("default"):
        yield


E, F, LAYERS, VOCAB, HEADS, KV, D = 512, 1024, 8, 2048, 8, 8, 128
SIMPLE_REPLAY = {"identify.attribution.steps": 2, "identify.attribution.groups": 1, "identify.attribution.layer_steps": {}}
BATCH, SEQ = 32, 256  # multiples of the TPU tile: (8, 128) per chip, so row widths are not padded


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(model config path, run config, the plan of BATCH prompts of SEQ tokens on v5e-4, fsdp=4)."""
    from neuronjax.plan import plan

    model = _config(tmp_path_factory.mktemp("model"), hidden_size=E, intermediate_size=F, num_hidden_layers=LAYERS,
                    vocab_size=VOCAB, num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=D)  # fmt: skip
    # one layer group and the same nodes on every layer: what these tests check (bytes per chip,
    # the shared prefix) does not depend on the groups, and the TPU compile takes 41 s instead
    # of 66 s for 4 groups with 32 nodes on the first layer (one plan, measured)
    config = load_run_config(os.path.join(ROOT, "configs", "default.yaml"), SIMPLE_REPLAY)
    out = plan(config, model, "v5e-4", batch=BATCH, seq=SEQ, mesh={"fsdp": 4}, dtype="float32", log=lambda s: None)
    return model, config, out


def test_arguments_are_the_parameters_divided_by_their_sharding(small):
    """A Llama whose every parameter has an embed axis: on v5e-4 with fsdp=4 each is split four
    ways, so a chip holds a quarter of the parameter bytes, plus a quarter of the batch's inputs.
    The sizes are multiples of the TPU's (8, 128) float32 tiles, so the compiler pads nothing but
    the tiny per-prompt arrays (gold, candidates: at most a few tiles)."""
    e, f, layers, vocab, heads, kv, d = E, F, LAYERS, VOCAB, HEADS, KV, D
    batch, seq = BATCH, SEQ
    out = small[2]
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
    bfloat16) on one 16 GiB v5e chip. The overrides come after the options, as `run` takes them."""
    model = _config(tmp_path, hidden_size=8192, intermediate_size=28672, num_hidden_layers=8, num_attention_heads=64)
    args = ["plan", os.path.join(ROOT, "configs", "default.yaml"), "--model-config", model, "--topology", "v5e-1",
            "--batch", "1", "--dtype", "bfloat16", "--json", str(tmp_path / "plan.json"),
            *(f"{k}={v}" for k, v in SIMPLE_REPLAY.items())]  # fmt: skip
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


def test_shared_prefix_steps_take_the_rows_after_it(small):
    """With --shared-prefix P, the identify and evaluate steps are compiled as a run executes them
    with its prompts' common prefix run once: each chip holds a quarter of the batch's rows of
    seq - P tokens plus the whole [1, P] prefix; the projection counts the prefix once per batch.
    P = 128 and seq - P = 128 are whole TPU lanes, so the compiler pads none of these arrays and the
    difference is exact (measured: 7680 bytes per chip, for both steps)."""
    from neuronjax.attribution.flops import layer_macs
    from neuronjax.plan import load_model_config, plan

    model, config, whole = small
    p = 128
    shared = plan(config, model, "v5e-4", batch=BATCH, seq=SEQ, mesh={"fsdp": 4}, dtype="float32", log=lambda s: None,
                  shared_prefix=p)  # fmt: skip
    assert shared["shared_prefix"] == {"identify": p, "evaluate": p, "asked": p, "note": ""}
    assert whole["shared_prefix"]["identify"] == 0
    for name in ("identify", "evaluate"):
        assert shared["steps"][name]["fits"], shared["steps"][name]
        fewer = whole["steps"][name]["per_chip_bytes"]["arguments"] - shared["steps"][name]["per_chip_bytes"]["arguments"]
        expected = 2 * BATCH * p * 4 // 4 - p * 4  # ids and mask of P columns fewer per row; the prefix on every chip
        assert fewer == expected, (name, fewer, expected)
    # the prompt pass: P tokens once per batch instead of once per prompt (hand count of the difference)
    cfg = load_model_config(model)
    saved_macs = LAYERS * (layer_macs(cfg, SEQ - 1, SEQ - 1) - layer_macs(cfg, SEQ - p - 1, SEQ - 1)
                           - layer_macs(cfg, p, p) / BATCH)  # fmt: skip
    got = whole["steps"]["identify"]["flops_per_prompt"] - shared["steps"]["identify"]["flops_per_prompt"]
    assert abs(got - 2 * saved_macs) <= 1e-9 * got, (got, 2 * saved_macs)


def test_the_planned_prefix_is_the_one_a_run_shares():
    """A run cuts the common prefix at multiples of 16 tokens and runs every prompt whole on a
    model whose sliding window is shorter than the prompt's slots (`cached.split_prefix`)."""
    from neuronjax.cached import split_prefix
    from neuronjax.plan import load_model_config, planned_prefix

    llama, gemma = load_model_config(LLAMA_8B), load_model_config(os.path.join(ROOT, "configs", "models", "gemma-2-9b.json"))
    assert planned_prefix(llama, 128, 96) == (96, "") and planned_prefix(llama, 128, 0) == (0, "")
    p, note = planned_prefix(llama, 128, 100)
    assert p == 96 and "--shared-prefix 100" in note and "multiples of 16" in note
    assert planned_prefix(gemma, 4096, 1024) == (1024, "")  # the 4096-token window covers the prompt
    p, note = planned_prefix(gemma, 8192, 1024)
    assert p == 0 and "sliding window (4096 tokens)" in note and "8192" in note
    # what split_prefix does with such prompts: 100 common tokens -> 96 shared; a window below the slots -> None
    rows = np.tile(np.arange(1, 129, dtype=np.int32), (2, 1))
    rows[1, 100:] += 1000
    mask = np.ones_like(rows)
    assert split_prefix(rows, mask).length == 96
    assert split_prefix(rows, mask, window=100) is None


@pytest.mark.parametrize("value", ["-1", "127"])
def test_shared_prefix_out_of_range_names_the_flag(value, capsys):
    args = ["plan", os.path.join(ROOT, "configs", "default.yaml"), "--model-config", LLAMA_8B, "--topology", "v5e-4",
            "--seq", "128", "--shared-prefix", value]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--shared-prefix {value}" in err and "0 .. 126" in err
