"""One decoder-only transformer for every supported family (Llama 2/3, Mistral, Qwen2/2.5/3,
Gemma 1/2/3, GPT-2); the family differences are switches of `ModelConfig`.

The forward pass takes, besides token ids and mask, an optional neuron `Intervention` (data, not a
hook), can return the FFN intermediate activations at the last position, and can continue from a
key/value cache of an earlier call (the attribution fast path and generation use this).

Batches may be left- or right-padded: positions count real tokens only, and "the last position"
of a row is its last real token.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from neuronjax import intervention as iv
from neuronjax.models.config import ModelConfig
from neuronjax.models.layers import Norm, activation, apply_rope, attend, attention_bias, param, rope_tables


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Keys and values of earlier tokens. keys/values: one [batch, keys, kv_heads, head_dim] array
    per layer; mask: bool [batch, keys] (False for padding slots)."""

    keys: tuple
    values: tuple
    mask: jax.Array

    @property
    def length(self) -> int:
        return self.mask.shape[1]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ForwardOutput:
    logits: Optional[jax.Array]  # float32 [batch, seq, vocab] (seq = 1 for logits_at="last"; None for "none")
    activations: Optional[jax.Array] = None  # float32 [batch, layers, mlp] at the last position
    cache: Optional[KVCache] = None  # the input cache extended by this call's tokens


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, layer: int, dtype, rngs: nnx.Rngs):
        e, h, kv, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.cfg, self.layer = cfg, layer
        self.q = param(rngs, (e, h, d), ("embed", "heads", "head_dim"), dtype)
        self.k = param(rngs, (e, kv, d), ("embed", "kv_heads", "head_dim"), dtype)
        self.v = param(rngs, (e, kv, d), ("embed", "kv_heads", "head_dim"), dtype)
        self.o = param(rngs, (h, d, e), ("heads", "head_dim", "embed"), dtype)
        if cfg.qkv_bias:
            self.q_bias = param(rngs, (h, d), ("heads", "head_dim"), dtype, "zeros")
            self.k_bias = param(rngs, (kv, d), ("kv_heads", "head_dim"), dtype, "zeros")
            self.v_bias = param(rngs, (kv, d), ("kv_heads", "head_dim"), dtype, "zeros")
        if cfg.out_bias:
            self.o_bias = param(rngs, (e,), ("embed",), dtype, "zeros")
        if cfg.qk_norm:
            self.q_norm = Norm(d, "rms", cfg.norm_eps, cfg.norm_plus_one, "head_dim", dtype, rngs)
            self.k_norm = Norm(d, "rms", cfg.norm_eps, cfg.norm_plus_one, "head_dim", dtype, rngs)

    def __call__(self, x, rope, bias, past):
        """x [..., batch, seq, embed]; rope: (cos, sin) or None; past: (keys, values) of earlier
        tokens or None. Returns (output like x, (keys, values) of past and this call's tokens);
        the returned keys are only built when the leading axes are just batch."""
        cfg = self.cfg
        q = jnp.einsum("...se,ehd->...shd", x, self.q[...])
        k = jnp.einsum("...se,ehd->...shd", x, self.k[...])
        v = jnp.einsum("...se,ehd->...shd", x, self.v[...])
        if cfg.qkv_bias:
            q, k, v = q + self.q_bias[...], k + self.k_bias[...], v + self.v_bias[...]
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = attend(q, k, v, bias, cfg.scale, cfg.attn_softcap, past)
        out = jnp.einsum("...shd,hde->...se", out, self.o[...])
        if cfg.out_bias:
            out = out + self.o_bias[...]
        if past is not None and x.ndim == 3:
            k = jnp.concatenate([past[0].astype(k.dtype), k], axis=1)
            v = jnp.concatenate([past[1].astype(v.dtype), v], axis=1)
        return out, (k, v)


class MLP(nnx.Module):
    """The FFN. Its neurons are the mlp axis of h, the input of the down projection."""

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs):
        e, f = cfg.hidden_size, cfg.intermediate_size
        self.cfg = cfg
        if cfg.gated_mlp:
            self.gate = param(rngs, (e, f), ("embed", "mlp"), dtype)
        self.up = param(rngs, (e, f), ("embed", "mlp"), dtype)
        self.down = param(rngs, (f, e), ("mlp", "embed"), dtype)
        if cfg.mlp_bias:
            if cfg.gated_mlp:
                self.gate_bias = param(rngs, (f,), ("mlp",), dtype, "zeros")
            self.up_bias = param(rngs, (f,), ("mlp",), dtype, "zeros")
            self.down_bias = param(rngs, (e,), ("embed",), dtype, "zeros")

    def neurons(self, x: jax.Array) -> jax.Array:
        """h [batch, seq, mlp] = act(x Wg) * (x Wu), or act(x Wfc + b) when not gated."""
        cfg = self.cfg
        up = x @ self.up[...]
        if cfg.mlp_bias:
            up = up + self.up_bias[...]
        if not cfg.gated_mlp:
            return activation(cfg.activation, up)
        gate = x @ self.gate[...]
        if cfg.mlp_bias:
            gate = gate + self.gate_bias[...]
        return activation(cfg.activation, gate) * up

    def project(self, h: jax.Array) -> jax.Array:
        out = h @ self.down[...]
        return out + self.down_bias[...] if self.cfg.mlp_bias else out


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, layer: int, dtype, rngs: nnx.Rngs):
        def norm():
            return Norm(cfg.hidden_size, cfg.norm_kind, cfg.norm_eps, cfg.norm_plus_one, "embed", dtype, rngs)

        self.cfg, self.layer = cfg, layer
        self.attn_norm = norm()
        self.attn = Attention(cfg, layer, dtype, rngs)
        self.ffn_norm = norm()
        self.mlp = MLP(cfg, dtype, rngs)
        if cfg.sandwich_norm:
            self.attn_out_norm = norm()
            self.ffn_out_norm = norm()

    def attend(self, x, rope, bias, past):
        """Attention half: x [batch, seq, embed] -> (residual after attention, (keys, values))."""
        a, kv = self.attn(self.attn_norm(x), rope, bias, past)
        if self.cfg.sandwich_norm:
            a = self.attn_out_norm(a)
        return x + a, kv

    def neurons(self, x_mid: jax.Array) -> jax.Array:
        """FFN neurons h [batch, seq, mlp] from the residual after attention."""
        return self.mlp.neurons(self.ffn_norm(x_mid))

    def ffn_out(self, h: jax.Array) -> jax.Array:
        """What the FFN adds to the residual stream, from its neurons h [..., mlp]."""
        f = self.mlp.project(h)
        return self.ffn_out_norm(f) if self.cfg.sandwich_norm else f

    def __call__(self, x, rope, bias, past, intervention, where):
        """where: float [batch, seq], 1 at the positions the intervention edits."""
        x_mid, kv = self.attend(x, rope, bias, past)
        h = self.neurons(x_mid)
        if intervention is not None:
            h = iv.apply(h, intervention.scale[self.layer], intervention.shift[self.layer], where)
        return x_mid + self.ffn_out(h), h, kv


class Decoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype=jnp.float32, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), dtype)
        if cfg.position_kind == "learned":
            self.pos_embed = param(
                rngs, (cfg.max_position_embeddings, cfg.hidden_size), ("positions", "embed"), dtype
            )
        self.layers = nnx.List([Block(cfg, i, dtype, rngs) for i in range(cfg.num_layers)])
        self.final_norm = Norm(cfg.hidden_size, cfg.norm_kind, cfg.norm_eps, cfg.norm_plus_one, "embed", dtype, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), dtype)

    @property
    def head_weights(self) -> jax.Array:
        """[embed, vocab]: the output head (the embedding, transposed, when tied)."""
        return self.embed[...].T if self.cfg.tie_embeddings else self.lm_head[...]

    def soft_cap(self, logits: jax.Array) -> jax.Array:
        cap = self.cfg.final_softcap
        return logits if cap is None else cap * jnp.tanh(logits / cap)

    def embed_tokens(self, input_ids: jax.Array, positions: jax.Array) -> jax.Array:
        """[batch, seq, embed] input of the first layer."""
        x = self.embed[...][input_ids]
        if self.cfg.embed_scale:
            x = x * jnp.asarray(self.cfg.hidden_size**0.5, x.dtype)
        if self.cfg.position_kind == "learned":
            x = x + self.pos_embed[...][positions]
        return x

    def layer_inputs(self, positions, q_index, k_index, key_mask) -> tuple[list, list]:
        """Per layer: rotary tables (cos, sin) or None, and the additive attention mask.
        positions int [batch, seq]; q_index [seq], k_index [keys] slot indices; key_mask bool
        [batch, keys]. Tables and masks are built once per distinct rope / window."""
        cfg = self.cfg
        ropes, biases, rope_cache, bias_cache = [], [], {}, {}
        for i in range(cfg.num_layers):
            w = cfg.window_for(i)
            if w not in bias_cache:
                bias_cache[w] = attention_bias(q_index, k_index, key_mask, w)
            biases.append(bias_cache[w])
            if cfg.position_kind == "rope":
                r = cfg.rope_for(i)
                if r not in rope_cache:
                    rope_cache[r] = rope_tables(positions, r, cfg.head_dim)
                ropes.append(rope_cache[r])
            else:
                ropes.append(None)
        return ropes, biases

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        intervention: Optional[iv.Intervention] = None,
        cache: Optional[KVCache] = None,
        *,
        capture: bool = False,
        logits_at: Literal["all", "last", "none"] = "all",
        return_cache: bool = False,
    ) -> ForwardOutput:
        """input_ids int [batch, seq]; attention_mask [batch, seq] (1 = real token).
        ``logits_at`` "none" skips the output head (to build a cache only). The intervention
        edits the positions its policy names (see `neuronjax.intervention`).

        With a ``cache``, the tokens continue the cached ones: their positions start after the
        cache's real tokens, and attention sees the cached keys.
        """
        s = input_ids.shape[1]
        mask = attention_mask.astype(bool)
        prefix = 0 if cache is None else cache.length
        seen = 0 if cache is None else cache.mask.sum(axis=1, keepdims=True)
        positions = jnp.maximum(seen + jnp.cumsum(mask, axis=1) - 1, 0)
        last = s - 1 - jnp.argmax(mask[:, ::-1], axis=1)  # last real token of each row
        where = None
        if intervention is not None:
            if intervention.positions == "all":
                where = mask.astype(jnp.float32)
            else:
                where = jax.nn.one_hot(last, s, dtype=jnp.float32)

        key_mask = mask if cache is None else jnp.concatenate([cache.mask, mask], axis=1)
        ropes, biases = self.layer_inputs(positions, prefix + jnp.arange(s), jnp.arange(prefix + s), key_mask)
        x = self.embed_tokens(input_ids, positions)

        acts, new_k, new_v = [], [], []
        for i, block in enumerate(self.layers):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, h, (k, v) = block(x, ropes[i], biases[i], past, intervention, where)
            if capture:
                acts.append(jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0].astype(jnp.float32))
            if return_cache:
                new_k.append(k)
                new_v.append(v)

        logits = None
        if logits_at != "none":
            x = self.final_norm(x)
            if logits_at == "last":
                x = jnp.take_along_axis(x, last[:, None, None], axis=1)
            logits = self.soft_cap(jnp.einsum("bse,ev->bsv", x, self.head_weights, preferred_element_type=jnp.float32))
        return ForwardOutput(
            logits=logits,
            activations=jnp.stack(acts, axis=1) if capture else None,
            cache=KVCache(tuple(new_k), tuple(new_v), key_mask) if return_cache else None,
        )
