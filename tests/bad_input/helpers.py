"""Builders for the bad-input tests: task files, small models without torch, a GGUF writer."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

GOOD_ROW = {"id": "r1", "question": "Capital of France?", "options": ["Paris", "Rome", "Oslo", "Bern"], "answer": "A"}


def row(**changes) -> dict:
    """GOOD_ROW with fields changed; a value of None removes the field."""
    out = dict(GOOD_ROW, **changes)
    return {k: v for k, v in out.items() if v is not None}


def good_rows(n: int, prefix: str = "g") -> list[dict]:
    return [row(id=f"{prefix}{k}", question=f"Question {k}?", answer="ABCD"[k % 4]) for k in range(n)]


def write_jsonl(path, rows) -> str:
    """One JSON object per line; a str entry is written as the line itself (for malformed lines)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def write_csv(path, header: list[str], rows: list[list]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def tiny_lm(layers: int = 2, mlp: int = 48, seed: int = 0, source: str = "tiny-llama", vocab: int = 64):
    """A random in-memory Llama-type LanguageModel (no tokenizer, no torch); vocab=258 fits the
    character tokenizer of tests.tasks.helpers."""
    import jax.numpy as jnp
    from flax import nnx

    from neuronjax.lm import LanguageModel
    from neuronjax.models.config import ModelConfig
    from neuronjax.models.decoder import Decoder

    cfg = ModelConfig(model_type="llama", vocab_size=vocab, hidden_size=32, intermediate_size=mlp, num_layers=layers,
                      num_heads=4, num_kv_heads=2, head_dim=8, tie_embeddings=False)  # fmt: skip
    graphdef, state = nnx.split(Decoder(cfg, rngs=nnx.Rngs(seed)))
    return LanguageModel(graphdef, state, cfg, None, None, jnp.float32, source)


def write_gguf(path, qtype_name: str, vocab: int = 64, embed: int = 32) -> str:
    """A llama GGUF whose token embedding is stored in the quantization `qtype_name` (zero bytes);
    enough metadata for the loader to get as far as reading that tensor."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    qtype = GGMLQuantizationType[qtype_name]
    block, nbytes = GGML_QUANT_SIZES[qtype]
    writer = GGUFWriter(os.fspath(path), "llama")
    writer.add_embedding_length(embed)
    writer.add_block_count(1)
    writer.add_feed_forward_length(48)
    writer.add_head_count(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.zeros((vocab, embed // block * nbytes), np.uint8), raw_dtype=qtype)
    writer.add_tensor("output_norm.weight", np.ones(embed, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)
