"""config.json -> ModelConfig for the families' own (transformers 4.x) configs, as their hub
checkpoints ship them: Pythia's rotary_pct / rotary_emb_base, Phi-3's "su" longrope with the
original context length at the top level, and the rope settings we refuse, by field."""

import math

import pytest

from neuronjax.errors import UnsupportedModelError
from neuronjax.loader.hf import config_from_hf

PYTHIA_70M = {  # EleutherAI/pythia-70m config.json (the fields that matter)
    "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_act": "gelu", "hidden_size": 512,
    "intermediate_size": 2048, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "num_attention_heads": 8,
    "num_hidden_layers": 6, "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False,
    "use_parallel_residual": True, "vocab_size": 50304, "bos_token_id": 0, "eos_token_id": 0,
}  # fmt: skip

PHI3_128K = {  # microsoft/Phi-3-mini-128k-instruct config.json (factors shortened to their pattern)
    "model_type": "phi3", "hidden_act": "silu", "hidden_size": 3072, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "rope_scaling": {"type": "su", "short_factor": [1.0 + i / 100 for i in range(48)],
                     "long_factor": [1.0 + i for i in range(48)]},
    "sliding_window": 262144, "tie_word_embeddings": False, "vocab_size": 32064,
}  # fmt: skip


def test_pythia_config():
    c = config_from_hf(PYTHIA_70M, "pythia/config.json")
    assert (c.head_dim, c.rotary_dim, c.rope_dim, c.rope.theta) == (64, 16, 16, 10000.0)
    assert c.parallel_residual and c.norm_kind == "layer" and c.activation == "gelu"
    assert not c.gated_mlp and c.mlp_bias and c.qkv_bias and c.out_bias and not c.tie_embeddings


def test_pythia_without_rotary_pct_rotates_a_quarter():
    """transformers' GPTNeoXConfig default: a quarter of each head."""
    d = {k: v for k, v in PYTHIA_70M.items() if k != "rotary_pct"}
    assert config_from_hf(d, "config.json").rotary_dim == 16


def test_phi3_su_is_longrope():
    c = config_from_hf(PHI3_128K, "phi3/config.json")
    r = c.rope
    assert r.kind == "longrope" and r.original_max_position == 4096 and len(r.short_factor) == 48
    assert r.attention_factor == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert c.rotary_dim is None and c.sliding_window == 262144 and set(c.kinds) == {"sliding"}


def test_phi4_mini_partial_rotary():
    d = dict(PHI3_128K, partial_rotary_factor=0.75)
    d["rope_scaling"] = dict(d["rope_scaling"], short_factor=[1.0] * 36, long_factor=[2.0] * 36)
    c = config_from_hf(d, "config.json")
    assert c.rotary_dim == 72 and c.rope.inverse_frequencies(c.rope_dim).shape == (36,)


@pytest.mark.parametrize("scaling", [{"type": "dynamic", "factor": 2.0}, {"rope_type": "yarn", "factor": 4.0}])
def test_unsupported_rope_scaling_names_the_field(scaling):
    with pytest.raises(UnsupportedModelError, match=r"config.json: field 'rope_scaling' has rope type"):
        config_from_hf(dict(PYTHIA_70M, rope_scaling=scaling), "config.json")
    with pytest.raises(UnsupportedModelError, match=r"config.json: field 'rope_scaling' has rope type"):
        config_from_hf(dict(PHI3_128K, rope_scaling=scaling), "config.json")
