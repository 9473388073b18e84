"""The tokenizer built from our reader's metadata (`gguf_io.tokenizer`) is the one transformers'
own GGUF path builds (`PreTrainedTokenizerFast.from_pretrained(folder, gguf_file=name)`, which reads
the file again with its own reader): the same backend (its whole JSON), special tokens and their
ids, added tokens, chat template, flags and init_kwargs, and the same ids for a varied set of texts,
on the shipped SmolLM2 file and on files of each tokenizer kind llama.cpp writes."""

import os

import numpy as np
import pytest

from neuronjax.loader import gguf_io
from tests.models import gguf_files

pytestmark = pytest.mark.torch  # transformers' GGUF reader (the reference) imports torch

TEXTS = ["", "Hello world!", "The cat is on the mat. Is it 42?", "  two leading spaces\tand a tab\n\nand newlines ",
         "<|im_start|>user\nhi<|im_end|>\n", "<s> </s> <unk> <|endoftext|> <think>x</think>", "émojis 🙂, ünïcödé, 漢字",
         "1234567890 3.14159 -7e-3", "don't won't it's", "a" * 50, "```python\nprint('x')\n```"]  # fmt: skip
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]  # fmt: skip


def _reference(path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


def _described(tok) -> dict:
    return dict(
        cls=type(tok).__name__, backend=tok.backend_tokenizer.to_str(), vocab=tok.get_vocab(), size=len(tok),
        init_kwargs={k: str(v) for k, v in tok.init_kwargs.items()}, special=tok.special_tokens_map,
        special_ids=tok.all_special_ids, added={i: repr(t) for i, t in tok.added_tokens_decoder.items()},
        named={a: (getattr(tok, a), getattr(tok, a + "_id")) for a in ("bos_token", "eos_token", "unk_token", "pad_token")},
        chat_template=tok.chat_template, flags=(tok.add_bos_token, tok.add_eos_token, tok.padding_side,
                                                tok.truncation_side, tok.model_max_length, tok.name_or_path),
        ids=[tok(t).input_ids for t in TEXTS], bare=[tok(t, add_special_tokens=False).input_ids for t in TEXTS],
        decoded=[tok.decode(tok(t).input_ids) for t in TEXTS],
        chat=tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) if tok.chat_template else None,
    )  # fmt: skip


def _same_as_transformers(path):
    want = _described(_reference(path))
    for got in (gguf_io.tokenizer(path), gguf_io.tokenizer(path, gguf_io.open_reader(path))):
        got = _described(got)
        assert [k for k in want if got[k] != want[k]] == []
    return want


@pytest.mark.real_model
def test_the_shipped_tokenizer():
    import neuronjax

    d = _same_as_transformers(neuronjax.default_model_path())
    assert d["chat"].startswith("<|im_start|>system\nBe brief.<|im_end|>") and d["named"]["pad_token"] == ("<|im_end|>", 2)


def _write(path, arch, kind, **extra):
    """A GGUF holding a tokenizer of `kind` ("bpe", "sentencepiece") and one embedding tensor."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    if kind == "bpe":
        tokens, merges = gguf_files.bpe_vocabulary(96)
        tokens += ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(extra.pop("pre", "gpt-2"))
        w.add_token_list(tokens)
        w.add_token_types([3] + [1] * 95 + [3, 3, 4, 4])  # control, normal, user-defined
        w.add_token_merges(merges)
        w.add_bos_token_id(0)
        w.add_eos_token_id(97)
        w.add_pad_token_id(97)
        w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip
    else:
        tokens = gguf_files.add_sentencepiece(w, 96)
    for key, value in extra.items():
        getattr(w, f"add_{key}")(value)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


@pytest.mark.parametrize("arch,kind,extra", [
    ("qwen2", "bpe", {"pre": "qwen2"}), ("llama", "bpe", {"pre": "llama-bpe", "add_bos_token": True}),
    ("gpt2", "bpe", {}), ("llama", "sentencepiece", {"add_bos_token": False, "add_eos_token": True}),
    ("llama", "sentencepiece", {}),  # no add_bos_token: llama.cpp's default, BOS added
    ("gemma", "sentencepiece", {"add_space_prefix": False}), ("phi3", "sentencepiece", {}),
])  # fmt: skip
def test_each_tokenizer_kind(tmp_path, arch, kind, extra):
    _same_as_transformers(_write(tmp_path / f"{arch}.gguf", arch, kind, **extra))
