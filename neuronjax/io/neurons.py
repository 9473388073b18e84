"""Identified neurons on disk, in a form others can load and check.

A result directory holds:

    arrays/              Orbax checkpoint: scores float32 [layers, mlp], good and bad bool [layers, mlp]
    neurons.safetensors  the same arrays for any framework (`safetensors.numpy.load_file`): scores
                         float32, good and bad bool [layers, mlp], grid int64 [2] = (layers, mlp);
                         its string metadata names the model, its revision and the method
    neurons.json         sidecar: model id and weight hash, task and split, method and every
                         hyper-parameter, neuronjax version, and the neuron lists in plain JSON

Orbax writes the checkpoint to a temporary directory and renames it when complete, the
safetensors file is written through a rename, and the sidecar is written last (also through a
rename; if it fails, the safetensors file is removed), so a directory with a sidecar always has
both complete. Loading a result for a model whose weight hash differs fails and names both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

from neuronjax.errors import ConfigError, SaveError

SIDECAR = "neurons.json"
ARRAYS = "arrays"
SAFETENSORS = "neurons.safetensors"


@dataclasses.dataclass
class NeuronSet:
    scores: np.ndarray  # float32 [layers, mlp]: the method's score per neuron (ACE for NeuronLLM)
    good: np.ndarray  # bool [layers, mlp]
    bad: np.ndarray  # bool [layers, mlp]
    meta: dict  # model, task, method, hyper-parameters, version (see save_neurons)

    @property
    def good_neurons(self) -> list[tuple[int, int]]:
        return [tuple(map(int, x)) for x in np.argwhere(self.good)]

    @property
    def bad_neurons(self) -> list[tuple[int, int]]:
        return [tuple(map(int, x)) for x in np.argwhere(self.bad)]

    @property
    def method(self) -> str:
        """The method that found the set (from the sidecar; '' if unknown)."""
        m = self.meta.get("method")
        return str(m.get("name", "") if isinstance(m, dict) else m or "")

    @property
    def k(self) -> int:
        """The K the set was selected with (from the sidecar), else its larger side."""
        m = self.meta.get("method")
        k = m.get("k") if isinstance(m, dict) else None
        return int(k) if k is not None else max(int(np.sum(self.good)), int(np.sum(self.bad)))

    @property
    def experts(self) -> int:
        """Experts per layer of the model the set was found on (0: a dense FFN). With experts, a
        layer's neuron i is neuron i % expert_size of expert i // expert_size (expert-major)."""
        model = self.meta.get("model")
        return int(model.get("experts", 0)) if isinstance(model, dict) else 0

    def expert_of(self, index) -> tuple:
        """(expert, index within the expert) of layer-neuron index(es) `index`; requires experts."""
        if not self.experts:
            raise ValueError("this set was found on a dense model: its neurons belong to no expert")
        size = np.shape(self.scores)[1] // self.experts
        return np.divmod(index, size)

    def __repr__(self) -> str:
        def side(mask) -> str:
            per_layer = np.asarray(mask).sum(axis=1)
            layers = " ".join(f"L{j}:{int(n)}" for j, n in enumerate(per_layer) if n)
            return f"{int(per_layer.sum())}" + (f" ({layers})" if layers else "")

        layers, mlp = np.shape(self.scores)
        grid = (
            f"{layers} layers x {self.experts} experts x {mlp // self.experts}"
            if self.experts
            else f"{layers} layers x {mlp}"
        )
        return (f"NeuronSet({self.method or '?'}, K={self.k}, {grid} neurons; "
                f"good {side(self.good)}; bad {side(self.bad)})")  # fmt: skip

    def to_dataframe(self):
        """A pandas DataFrame (the [notebook] extra) with one row per good and bad neuron: layer,
        index (the neuron within its layer), score, side ('good' / 'bad'), and for a mixture of
        experts expert and expert_index (the neuron within its expert); by side, then score from
        the strongest."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("NeuronSet.to_dataframe needs pandas; pip install 'neuronjax[notebook]'") from None
        frames = []
        for name, mask, strongest_first in (("good", self.good, -1), ("bad", self.bad, 1)):
            layer, index = np.nonzero(np.asarray(mask))
            score = np.asarray(self.scores, np.float32)[layer, index]
            order = np.argsort(strongest_first * score, kind="stable")
            frame = pd.DataFrame({"layer": layer[order], "index": index[order], "score": score[order], "side": name})
            if self.experts:
                frame["expert"], frame["expert_index"] = self.expert_of(index[order])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def __treescope_repr__(self, path, subtree_renderer):
        """Treescope's rendering (in a notebook with treescope, e.g. from flax): the method, K and
        the arrays, each expandable."""
        from treescope import repr_lib

        attributes = {"method": self.method, "k": self.k, "good": self.good, "bad": self.bad, "scores": self.scores,
                      "meta": self.meta}  # fmt: skip
        return repr_lib.render_object_constructor(type(self), attributes, path, subtree_renderer)


def _file_digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _param_digest(state) -> str:
    import jax

    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(state), key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


def model_fingerprint(lm) -> dict:
    """Identity of a loaded model: where it came from (for a model loaded by Hugging Face repo id,
    the repo id and the snapshot's commit hash), a hash of its checkpoint files, and the shape of
    its neuron grid."""
    from neuronjax.loader import hub_origin

    src = lm.source
    if os.path.isdir(src):
        digest = _file_digest([os.path.join(src, f) for f in os.listdir(src) if f.endswith(".safetensors")])
    elif os.path.isfile(src):
        digest = _file_digest([src])
    else:  # built in memory: hash the parameters themselves
        digest = _param_digest(lm.state)
    c = lm.config
    hub = hub_origin(src) if os.path.exists(src) else None
    return {
        "model_id": hub.repo_id if hub else os.path.basename(os.path.normpath(src)),
        **({"revision": hub.revision} if hub else {}),
        "model_path": os.path.abspath(src) if os.path.exists(src) else src,
        "weight_sha256": digest,
        "model_type": c.model_type,
        "layers": c.num_layers,
        "mlp": c.intermediate_size,
        # a mixture of experts: neuron i of a layer is neuron i % expert_size of expert i // expert_size
        **({"experts": c.num_experts} if c.num_experts else {}),
    }


def save_neurons(directory: str, result: NeuronSet) -> str:
    """Write `result` under `directory` (created; must not hold a result already).

    With several processes every process calls this with the same result: Orbax writes the
    arrays once (a collective save) and process 0 writes the sidecar."""
    import orbax.checkpoint as ocp

    from neuronjax import __version__
    from neuronjax.distributed import barrier, is_primary

    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, SIDECAR)):
        raise FileExistsError(f"{directory}: already holds a result ({SIDECAR}); choose another directory")
    os.makedirs(directory, exist_ok=True)
    arrays = {
        "scores": np.asarray(result.scores, np.float32),
        "good": np.asarray(result.good, bool),
        "bad": np.asarray(result.bad, bool),
    }
    try:
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(os.path.join(directory, ARRAYS), arrays, force=True)
    except (OSError, ValueError, RuntimeError) as err:  # a full disk: OSError, or the array store's error
        raise _save_failed(directory, f"the arrays ({ARRAYS}/)", err) from err
    if is_primary():
        try:
            write_safetensors(os.path.join(directory, SAFETENSORS), NeuronSet(**arrays, meta=result.meta))
        except OSError as err:
            raise _save_failed(directory, f"the safetensors file ({SAFETENSORS})", err) from err
        meta = dict(result.meta)
        meta.setdefault("neuronjax_version", __version__)
        meta["good_neurons"] = NeuronSet(**arrays, meta={}).good_neurons
        meta["bad_neurons"] = NeuronSet(**arrays, meta={}).bad_neurons
        tmp = os.path.join(directory, SIDECAR + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=2, sort_keys=True, default=_json_default)
            os.replace(tmp, os.path.join(directory, SIDECAR))
        except Exception as err:
            # never leave a half-written sidecar behind, nor a safetensors file other tools would
            # take for a finished set
            for path in (tmp, os.path.join(directory, SAFETENSORS)):
                if os.path.exists(path):
                    os.remove(path)
            if isinstance(err, OSError):
                raise _save_failed(directory, f"the sidecar ({SIDECAR})", err) from err
            raise
    barrier(f"neurons-saved:{directory}")
    return directory


def write_safetensors(path: str, result: NeuronSet) -> str:
    """Write scores float32, good and bad bool [layers, mlp] and grid int64 [2] to one safetensors
    file, readable without neuronjax (`safetensors.numpy.load_file`, `safetensors.torch.load_file`).
    Its string metadata carries the model id, revision and weight hash and the method's name."""
    from safetensors.numpy import save_file

    from neuronjax import __version__

    scores = np.asarray(result.scores, np.float32)
    model, method = result.meta.get("model") or {}, result.meta.get("method")
    info = {
        "format": "neuronjax.neurons",
        "neuronjax_version": str(result.meta.get("neuronjax_version", __version__)),
        "layers": str(scores.shape[0]),
        "mlp": str(scores.shape[1]),
        "method": str(method.get("name", "") if isinstance(method, dict) else method or ""),
        **{key: str(model[key]) for key in ("model_id", "revision", "weight_sha256") if key in model},
    }
    tensors = {
        "scores": scores,
        "good": np.asarray(result.good, bool),
        "bad": np.asarray(result.bad, bool),
        "grid": np.asarray(scores.shape, np.int64),
    }
    tmp = path + ".tmp"
    try:
        save_file(tensors, tmp, metadata=info)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _save_failed(directory: str, what: str, err: Exception) -> SaveError:
    return SaveError(
        f"{directory}: saving the neuron set failed while writing {what}: {type(err).__name__}: {err}. "
        f"The directory has no {SIDECAR}, so it is not taken for a result; save again once the cause is fixed",
        getattr(err, "errno", None),
    )


def _json_default(x: Any):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    raise TypeError(f"cannot write {type(x).__name__} to {SIDECAR}")


def load_neurons(directory: str, lm=None) -> NeuronSet:
    """Read a result. With `lm`, check that it was identified on this very model."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    side = os.path.join(directory, SIDECAR)
    if not os.path.exists(side):
        left = os.listdir(directory) if os.path.isdir(directory) else []
        if any(name.startswith((ARRAYS, SAFETENSORS, SIDECAR)) for name in left):  # incl. Orbax's tmp folder
            raise FileNotFoundError(
                f"{directory}: an unfinished save: it holds {sorted(left)} but no {SIDECAR}, which is written "
                "last (the save failed or was cut short); save the result again"
            )
        raise FileNotFoundError(f"{directory}: no {SIDECAR}; not a neuronjax result (or an unfinished one)")
    with open(side) as f:
        meta = json.load(f)
    if lm is not None:
        _check_model(meta, lm, side)
    with ocp.StandardCheckpointer() as ckpt:
        arrays = ckpt.restore(os.path.join(directory, ARRAYS))
    return NeuronSet(
        scores=np.asarray(arrays["scores"]), good=np.asarray(arrays["good"]), bad=np.asarray(arrays["bad"]), meta=meta
    )


def _check_model(meta: dict, lm, where: str) -> None:
    saved = meta.get("model")
    if not isinstance(saved, dict):
        raise ConfigError(f"{where}: field 'model' is missing; expected the fingerprint of the model the neurons were "
                          f"identified on, to check them against {lm.source}")  # fmt: skip
    c = lm.config
    grid = (saved.get("layers"), saved.get("mlp"))
    if grid != (c.num_layers, c.intermediate_size):
        raise ConfigError(
            f"{where}: field 'model' describes a {grid[0]} x {grid[1]} neuron grid; the loaded model "
            f"({lm.source}) has {c.num_layers} x {c.intermediate_size}"
        )
    here = model_fingerprint(lm)["weight_sha256"]
    if saved.get("weight_sha256") != here:
        raise ConfigError(
            f"{where}: field 'model.weight_sha256' = {saved.get('weight_sha256')} (model "
            f"{saved.get('model_id')!r}) does not match the loaded model {lm.source} ({here}); "
            "these neurons were identified on other weights"
        )
