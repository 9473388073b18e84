"""Tiny random transformers models of every supported family, saved with `save_pretrained`, as
the independent PyTorch reference for our JAX models."""

from __future__ import annotations

import numpy as np

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              initializer_range=0.3)  # fmt: skip
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16, "rope_theta": 500000.0}  # fmt: skip

NEOX = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            rotary_pct=0.5, max_position_embeddings=64, initializer_range=0.3)  # fmt: skip
IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)  # for configs whose default ids lie outside the vocabulary

# name -> (config class, model class, config kwargs)
VARIANTS = {
    "llama2": ("LlamaConfig", "LlamaForCausalLM", dict(COMMON, num_key_value_heads=4)),
    "llama3_rope": ("LlamaConfig", "LlamaForCausalLM", dict(COMMON, rope_parameters=LLAMA3_ROPE)),
    "llama_linear_rope": ("LlamaConfig", "LlamaForCausalLM",
                          dict(COMMON, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0})),
    "llama_tied_bias": ("LlamaConfig", "LlamaForCausalLM",
                        dict(COMMON, tie_word_embeddings=True, attention_bias=True, mlp_bias=True)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(COMMON, sliding_window=4)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(COMMON, tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(COMMON)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(COMMON, hidden_activation="gelu_pytorch_tanh")),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(COMMON, sliding_window=4, query_pre_attn_scalar=16, attn_logit_softcapping=5.0,
                    final_logit_softcapping=3.0)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               dict(COMMON, sliding_window=4, query_pre_attn_scalar=16, tie_word_embeddings=False,
                    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                    rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                     "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0}})),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=96, n_embd=32, n_layer=3, n_head=4, n_positions=64, initializer_range=0.3)),
    # parallel residual, half of each head rotated, fused per-head qkv, biases everywhere
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", NEOX),
    "gpt_neox_sequential": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                            dict(NEOX, use_parallel_residual=False, attention_bias=False, tie_word_embeddings=True)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(COMMON, **IDS)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(COMMON, **IDS, partial_rotary_factor=0.5, sliding_window=4)),
    # longrope with both prompts (11 and 6 tokens) past original_max_position_embeddings: the long factors
    "phi3_longrope": ("Phi3Config", "Phi3ForCausalLM",
                      dict(COMMON, **IDS, max_position_embeddings=64, original_max_position_embeddings=4,
                           rope_scaling=dict(type="longrope", short_factor=[1.0, 1.5, 2.0, 3.0],
                                             long_factor=[2.0, 3.0, 5.0, 9.0]))),
    # 4 experts of 12 neurons (48 neurons per layer, like the dense models), 2 per token
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(COMMON, intermediate_size=12, num_local_experts=4, num_experts_per_tok=2, router_jitter_noise=0.0)),
    # both prompts within original_max_position_embeddings: the short factors
    "phi3_longrope_short": ("Phi3Config", "Phi3ForCausalLM",
                            dict(COMMON, **IDS, max_position_embeddings=64, original_max_position_embeddings=16,
                                 rope_scaling=dict(type="longrope", short_factor=[1.0, 1.5, 2.0, 3.0],
                                                   long_factor=[2.0, 3.0, 5.0, 9.0]))),
}  # fmt: skip

# Two prompts of different lengths, left-padded: the batch every equivalence test uses.
PROMPT_LENGTHS = (11, 6)


def build(name, seed: int = 0):
    """A tiny transformers model in float32 eval mode, with random but non-trivial weights.
    name: a key of VARIANTS, or a (config class, model class, config kwargs) triple of its own."""
    import torch
    import transformers

    cfg_cls, model_cls, kwargs = VARIANTS[name] if isinstance(name, str) else name
    cfg = getattr(transformers, cfg_cls)(**kwargs)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():  # make norms and biases non-trivial so that their loading is tested
        for pname, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    return model


def save(name, directory, seed: int = 0):
    model = build(name, seed)
    model.save_pretrained(directory)
    return model


def batch(vocab: int = 96, lengths=PROMPT_LENGTHS, seed: int = 0):
    """(input_ids, attention_mask, position_ids), left-padded numpy int arrays [batch, seq]."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = rng.integers(1, vocab, n)
        mask[i, width - n :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions


def prefixed_batch(vocab: int, prefix: int, suffixes, seed: int = 0, pad: int = 0):
    """Left-padded int32 (ids, mask): one random prefix of `prefix` tokens, then each row's own
    random suffix of the given length (the suffixes start with different tokens)."""
    rng = np.random.default_rng(seed)
    head = rng.integers(3, vocab, prefix)
    rows = []
    for r, n in enumerate(suffixes):
        tail = rng.integers(3, vocab, n)
        if n:
            tail[0] = 3 + (r % (vocab - 3))  # the prefix ends where the rows part
        rows.append(np.concatenate([head, tail]))
    return left_pad(rows, pad, width=max(len(r) for r in rows) + 2)


def left_pad(rows, pad: int = 0, width=None):
    """int32 (ids, mask) of token lists `rows`, each left-padded with `pad` to `width` columns
    (default: the longest row's length)."""
    width = max(len(r) for r in rows) if width is None else width
    ids = np.full((len(rows), width), pad, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = row
        mask[r, width - len(row) :] = 1
    return ids, mask


def torch_logits(model, ids, mask, positions):
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                    position_ids=torch.as_tensor(positions))  # fmt: skip
    return out.logits.float().numpy()


def save_tiny_smol(directory, seed: int = 0) -> None:
    """A 2-layer Llama with SmolLM2's vocabulary (random weights) and the embedded SmolLM2
    tokenizer, written by transformers: the model of the end-to-end CLI and sweep tests."""
    import os

    import torch
    import transformers

    import neuronjax

    cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                   initializer_range=0.3, tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(cfg).save_pretrained(directory)
    gguf = neuronjax.default_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    tok.save_pretrained(directory)


def world_facts_run_config(directory, model_dir, identify: dict, evaluate: dict, **extra) -> str:
    """Write a run config of world_facts on the model in `model_dir` (the tiny SmolLM2 of
    `save_tiny_smol`) to directory/tiny.yaml, its runs under `directory`; returns the path.
    identify / evaluate: those sections; extra: further top-level keys (task_overrides, ...)."""
    import os

    import yaml

    from tests import ROOT

    cfg = {"name": "tiny", "task": os.path.join(ROOT, "configs", "tasks", "world_facts.yaml"),
           "model": {"path": str(model_dir)}, "identify": identify, "evaluate": evaluate, "output": str(directory),
           **extra}  # fmt: skip
    path = os.path.join(str(directory), "tiny.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path
