"""`LanguageModel`: a loaded model (parameters placed on their shardings), its tokenizer, and the
one compiled forward that every caller (scoring, attribution, interventions, generation) shares."""

from __future__ import annotations

import functools
from typing import Literal, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from neuronjax import sharding as sh
from neuronjax.errors import InputError
from neuronjax.intervention import Intervention
from neuronjax.models.config import ModelConfig
from neuronjax.models.decoder import ForwardOutput, KVCache


@functools.partial(jax.jit, static_argnames=("graphdef", "capture", "logits_at", "return_cache"))
def forward(
    state,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    intervention: Optional[Intervention] = None,
    cache: Optional[KVCache] = None,
    *,
    graphdef,
    capture: bool = False,
    logits_at: Literal["all", "last"] = "all",
    return_cache: bool = False,
) -> ForwardOutput:
    """Pure forward: (parameter state, inputs, intervention; graphdef static) -> ForwardOutput.
    Compiled once per (shapes, static flags); masks and interventions are ordinary arguments."""
    model = nnx.merge(graphdef, state)
    return model(
        input_ids, attention_mask, intervention, cache,
        capture=capture, logits_at=logits_at, return_cache=return_cache,
    )  # fmt: skip


class LanguageModel:
    """A causal LM ready to score: ``lm.logits(input_ids, attention_mask, intervention=None)``."""

    def __init__(self, graphdef, state, config: ModelConfig, tokenizer, mesh: Optional[Mesh], dtype, source: str,
                 report=None, rules: sh.ShardingRules = sh.DEFAULT_RULES):  # fmt: skip
        self.graphdef, self.state, self.config = graphdef, state, config
        self.tokenizer, self.mesh, self.dtype, self.source, self.report = tokenizer, mesh, jnp.dtype(dtype), source, report
        self.rules = rules  # logical axes -> mesh axes (neuronjax.sharding)

    def __repr__(self):
        c = self.config
        return (
            f"LanguageModel({c.model_type}, {c.num_layers} layers x {c.intermediate_size} neurons, "
            f"{self.num_params / 1e6:.1f}M params, {self.dtype.name}, from {self.source})"
        )

    @property
    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.state))

    @property
    def param_bytes(self) -> int:
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(self.state))

    @property
    def module(self):
        """The Flax NNX module (parameters merged in), for users who want to inspect or edit it."""
        return nnx.merge(self.graphdef, self.state)

    def on_mesh(self, mesh: Optional[Mesh], rules: Optional[sh.ShardingRules] = None) -> "LanguageModel":
        """The same model with every parameter placed on `mesh` by its logical axes (None: one
        device), under `rules` (default: the model's own). Each process materialises only the
        shards its devices hold."""
        from neuronjax.loader.place import target_sharding
        from neuronjax.models.decoder import Placement

        rules = rules or self.rules

        def move(var):
            x = np.asarray(jax.device_get(var.get_value())) if var.get_value().is_fully_addressable else None
            if x is None:
                raise InputError("on_mesh: the parameters already span other processes; load the model on the mesh")
            sharding = target_sharding(mesh, var.get_metadata()["logical_axes"], x.shape, rules)
            return var.replace(jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]))

        state = nnx.from_flat_state([(path, move(var)) for path, var in nnx.to_flat_state(self.state)])
        module = nnx.merge(self.graphdef, state)
        module.set_placement(Placement(mesh, rules) if mesh is not None else None)
        graphdef, state = nnx.split(module)
        return LanguageModel(graphdef, state, self.config, self.tokenizer, mesh, self.dtype, self.source, self.report,
                             rules)  # fmt: skip

    def place(self, x: np.ndarray | jax.Array) -> jax.Array:
        """Put an input whose first axis is the batch on the model's mesh (rows split over the
        data axes, the rest replicated); on one device, just a device array."""
        if self.mesh is None:
            return jnp.asarray(x)
        sharding = self.rules.batch_sharding(self.mesh, np.ndim(x), np.shape(x))
        if sharding.is_fully_addressable:
            return jax.device_put(x, sharding)
        # The mesh spans other processes: every process holds the same x (see
        # neuronjax.distributed.global_batches) and hands each of its devices its shard.
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def forward(
        self,
        input_ids,
        attention_mask=None,
        intervention: Optional[Intervention] = None,
        cache: Optional[KVCache] = None,
        *,
        capture: bool = False,
        logits_at: Literal["all", "last"] = "all",
        return_cache: bool = False,
    ) -> ForwardOutput:
        input_ids = jnp.asarray(input_ids, jnp.int32)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if intervention is not None:
            intervention.check_shape(self.config.num_layers, self.config.intermediate_size)
        return forward(
            self.state, self.place(input_ids), self.place(jnp.asarray(attention_mask, jnp.int32)),
            intervention, cache, graphdef=self.graphdef,
            capture=capture, logits_at=logits_at, return_cache=return_cache,
        )  # fmt: skip

    def logits(self, input_ids, attention_mask=None, intervention: Optional[Intervention] = None) -> jax.Array:
        """float32 [batch, seq, vocab]."""
        return self.forward(input_ids, attention_mask, intervention).logits

    def encode(self, texts: Sequence[str], add_special_tokens: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize and left-pad: (input_ids int32 [batch, seq], attention_mask int32 [batch, seq])."""
        if self.tokenizer is None:
            raise InputError(f"{self.source}: this checkpoint has no tokenizer files")
        rows = [self.tokenizer.encode(t, add_special_tokens=add_special_tokens) for t in texts]
        width = max(len(r) for r in rows)
        pad = self.pad_id
        ids = np.full((len(rows), width), pad, np.int32)
        mask = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r) :] = r
                mask[i, width - len(r) :] = 1
        return ids, mask

    def decode(self, ids, skip_special_tokens: bool = True) -> str | list[str]:
        """Token ids back to text: one row [seq] -> a string, a batch [batch, seq] -> a list."""
        if self.tokenizer is None:
            raise InputError(f"{self.source}: this checkpoint has no tokenizer files")
        ids = np.asarray(ids)
        if ids.ndim not in (1, 2):
            raise InputError(f"decode: ids of shape {ids.shape}; expected [seq] or [batch, seq]")
        rows = [[int(t) for t in row] for row in np.atleast_2d(ids)]
        texts = [self.tokenizer.decode(row, skip_special_tokens=skip_special_tokens) for row in rows]
        return texts[0] if ids.ndim == 1 else texts

    def generate(self, prompts: str | Sequence[str], intervention: Optional[Intervention] = None,
                 max_new_tokens: int = 32, chat: bool = False, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0) -> str | list[str]:  # fmt: skip
        """Continuations of a prompt (a string back) or of several (a list), under an optional
        intervention: greedy at temperature 0, else seeded sampling from the top_p nucleus; `chat`
        wraps each prompt in the chat template (neuronjax.generate)."""
        from neuronjax.generate import generate

        texts = generate(self, [prompts] if isinstance(prompts, str) else list(prompts), intervention,
                         max_new_tokens, chat=chat, temperature=temperature, top_p=top_p, seed=seed)  # fmt: skip
        return texts[0] if isinstance(prompts, str) else texts

    @property
    def pad_id(self) -> int:
        for cand in (getattr(self.tokenizer, "pad_token_id", None), self.config.pad_token_id, self.config.eos_token_id):
            if cand is not None:
                return int(cand)
        return 0
