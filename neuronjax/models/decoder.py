"""One decoder-only transformer for every supported family (Llama 2/3, Mistral, Qwen2/2.5/3,
Gemma 1/2/3, GPT-2, GPT-NeoX/Pythia, OLMo-2, Phi-3); the family differences are switches of
`ModelConfig` (norm placement, parallel residual, partial rotary, q/k norm width, ...).

Layers are stored stacked: every block parameter has a leading ``layers`` axis, and every forward
pass runs the layers as one `jax.lax.scan` over them, so compile time does not grow with depth and
no code path re-stacks weights. What differs between layers (Gemma 2/3 sliding vs global
attention, Gemma 3's local vs global rope) is per-layer data in the scan: each layer carries the
index of its attention kind, and the rotary tables and attention masks are built once per kind.

The forward pass takes, besides token ids and mask, an optional neuron `Intervention` (data, not a
hook, scanned over with the layers), can return the FFN intermediate activations at the last
position, and can continue from a key/value cache of an earlier call (attribution's replay,
evaluation's shared prompts and cached generation use this).

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
    """Keys and values of earlier tokens, every layer stacked. keys/values: [layers, batch, keys,
    kv_heads, head_dim]; mask: bool [batch, keys] (False for padding slots)."""

    keys: jax.Array
    values: jax.Array
    mask: jax.Array

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def repeat_rows(self, times: int) -> "KVCache":
        """Each batch row repeated `times` times in place (row b becomes rows b*times .. )."""
        return KVCache(jnp.repeat(self.keys, times, axis=1), jnp.repeat(self.values, times, axis=1),
                       jnp.repeat(self.mask, times, axis=0))  # fmt: skip

    def pad_left(self, slots: int) -> "KVCache":
        """`slots` empty slots (mask False) before the cached keys."""
        pad = [(0, 0), (0, 0), (slots, 0), (0, 0), (0, 0)]
        return KVCache(jnp.pad(self.keys, pad), jnp.pad(self.values, pad), jnp.pad(self.mask, [(0, 0), (slots, 0)]))

    def drop_first(self) -> "KVCache":
        """Without the oldest slot."""
        return KVCache(self.keys[:, :, 1:], self.values[:, :, 1:], self.mask[:, 1:])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ForwardOutput:
    logits: Optional[jax.Array]  # float32 [batch, seq, vocab] (seq = 1 for logits_at="last"; None for "none")
    activations: Optional[jax.Array] = None  # float32 [batch, layers, mlp] at the last position
    cache: Optional[KVCache] = None  # the input cache extended by this call's tokens


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where activations live: the mesh and the sharding rules (static data of the model; None
    on one device). Activations get sharding constraints at block boundaries from it."""

    mesh: object  # jax.sharding.Mesh
    rules: object  # neuronjax.sharding.ShardingRules

    def constrain(self, x: jax.Array, axes) -> jax.Array:
        return self.rules.constrain(x, self.mesh, axes)


def constrain(placement: Optional[Placement], x: jax.Array, axes) -> jax.Array:
    return x if placement is None else placement.constrain(x, axes)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs, stack: Optional[int] = None,
                 placement: Optional[Placement] = None):  # fmt: skip
        e, h, kv, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.cfg = cfg
        self.placement = placement  # where the shared-prefix kernel runs per shard
        self.q = param(rngs, (e, h, d), ("embed", "heads", "head_dim"), dtype, stack=stack)
        self.k = param(rngs, (e, kv, d), ("embed", "kv_heads", "head_dim"), dtype, stack=stack)
        self.v = param(rngs, (e, kv, d), ("embed", "kv_heads", "head_dim"), dtype, stack=stack)
        self.o = param(rngs, (h, d, e), ("heads", "head_dim", "embed"), dtype, stack=stack)
        if cfg.qkv_bias:
            self.q_bias = param(rngs, (h, d), ("heads", "head_dim"), dtype, "zeros", stack)
            self.k_bias = param(rngs, (kv, d), ("kv_heads", "head_dim"), dtype, "zeros", stack)
            self.v_bias = param(rngs, (kv, d), ("kv_heads", "head_dim"), dtype, "zeros", stack)
        if cfg.out_bias:
            self.o_bias = param(rngs, (e,), ("embed",), dtype, "zeros", stack)
        if cfg.qk_norm and cfg.qk_norm_width == "all":  # OLMo-2: over the whole projected q and k
            eps, one = cfg.norm_eps, cfg.norm_plus_one
            self.q_norm = Norm((h, d), "rms", eps, one, ("heads", "head_dim"), dtype, rngs, stack)
            self.k_norm = Norm((kv, d), "rms", eps, one, ("kv_heads", "head_dim"), dtype, rngs, stack)
        elif cfg.qk_norm:
            self.q_norm = Norm(d, "rms", cfg.norm_eps, cfg.norm_plus_one, "head_dim", dtype, rngs, stack)
            self.k_norm = Norm(d, "rms", cfg.norm_eps, cfg.norm_plus_one, "head_dim", dtype, rngs, stack)

    def __call__(self, x, rope, bias, past):
        """One layer (parameters of one layer): x [..., batch, seq, embed]; rope: (cos, sin) or
        None; past: (keys, values) of earlier tokens or None. Returns (output like x, (keys,
        values) of past and this call's tokens); the returned keys are only built when the
        leading axes are just batch."""
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
        out = attend(q, k, v, bias, cfg.scale, cfg.attn_softcap, past, self.placement)
        out = jnp.einsum("...shd,hde->...se", out, self.o[...])
        if cfg.out_bias:
            out = out + self.o_bias[...]
        if past is not None and x.ndim == 3:
            k = jnp.concatenate([past[0].astype(k.dtype), k], axis=1)
            v = jnp.concatenate([past[1].astype(v.dtype), v], axis=1)
        return out, (k, v)


class MLP(nnx.Module):
    """The FFN. Its neurons are the mlp axis of h, the input of the down projection.

    A mixture of experts (``num_experts`` > 0) is the same FFN with every expert's neurons side by
    side on the mlp axis (expert-major) and a router: a token's neurons are those of every expert
    scaled by the expert's routing weight, which is 0 for the experts the token is not routed to.
    So a neuron's activation is act(x Wg) * (x Wu) * (routing weight of its expert): 0 where the
    token does not reach the expert (its attribution is then 0 too, and an intervention on it does
    nothing), and scaling it scales exactly that expert's contribution through its down-projection
    column. Every expert is computed densely, then weighted: simple and exact, at num_experts /
    experts_per_token times the FLOPs of a routed implementation.
    """

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs, stack: Optional[int] = None):
        e, f = cfg.hidden_size, cfg.intermediate_size
        self.cfg = cfg
        if cfg.num_experts:
            self.router = param(rngs, (e, cfg.num_experts), ("embed", "experts"), dtype, stack=stack)
        if cfg.gated_mlp:
            self.gate = param(rngs, (e, f), ("embed", "mlp"), dtype, stack=stack)
        self.up = param(rngs, (e, f), ("embed", "mlp"), dtype, stack=stack)
        self.down = param(rngs, (f, e), ("mlp", "embed"), dtype, stack=stack)
        if cfg.mlp_bias:
            if cfg.gated_mlp:
                self.gate_bias = param(rngs, (f,), ("mlp",), dtype, "zeros", stack)
            self.up_bias = param(rngs, (f,), ("mlp",), dtype, "zeros", stack)
            self.down_bias = param(rngs, (e,), ("embed",), dtype, "zeros", stack)

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
        h = activation(cfg.activation, gate) * up
        if cfg.num_experts:
            h = h * jnp.repeat(self.routing(x), cfg.expert_size, axis=-1).astype(h.dtype)
        return h

    def routing(self, x: jax.Array) -> jax.Array:
        """float32 [..., experts]: each expert's weight for each token (0 off its top-k experts)."""
        cfg = self.cfg
        logits = jnp.einsum("...e,ex->...x", x, self.router[...], preferred_element_type=jnp.float32)
        _, chosen = jax.lax.top_k(logits, cfg.experts_per_token)
        on = jax.nn.one_hot(chosen, cfg.num_experts, dtype=bool).any(axis=-2)
        if cfg.router_renormalize:
            return jax.nn.softmax(jnp.where(on, logits, -jnp.inf), axis=-1)
        return jnp.where(on, jax.nn.softmax(logits, axis=-1), 0.0)

    def project(self, h: jax.Array) -> jax.Array:
        out = h @ self.down[...]
        return out + self.down_bias[...] if self.cfg.mlp_bias else out


class Block(nnx.Module):
    """A decoder layer. Built with `stack` = the number of layers, it holds every layer's
    parameters stacked; its methods run one layer, on the parameters of one layer (the scan
    hands them out, see `Decoder.scan`).

    A layer is three steps, the interface attribution's replay also uses: `attend` (x -> x_mid,
    the residual after attention), `neurons` (the FFN's neurons h, from x and x_mid) and
    `ffn_out` (what the FFN adds to x_mid). Every family fits it: sequential blocks read x_mid
    in the FFN; GPT-NeoX's parallel residual, x + attn(ln1(x)) + mlp(ln2(x)), reads x."""

    def __init__(self, cfg: ModelConfig, dtype, rngs: nnx.Rngs, stack: Optional[int] = None,
                 placement: Optional[Placement] = None):  # fmt: skip
        def norm():
            return Norm(cfg.hidden_size, cfg.norm_kind, cfg.norm_eps, cfg.norm_plus_one, "embed", dtype, rngs, stack)

        self.cfg = cfg
        if cfg.pre_norm:
            self.attn_norm = norm()
        self.attn = Attention(cfg, dtype, rngs, stack, placement)
        if cfg.pre_norm:
            self.ffn_norm = norm()
        self.mlp = MLP(cfg, dtype, rngs, stack)
        if cfg.sandwich_norm:
            self.attn_out_norm = norm()
            self.ffn_out_norm = norm()

    def attend(self, x, rope, bias, past):
        """Attention half: x [batch, seq, embed] -> (residual after attention, (keys, values))."""
        a, kv = self.attn(self.attn_norm(x) if self.cfg.pre_norm else x, rope, bias, past)
        if self.cfg.sandwich_norm:
            a = self.attn_out_norm(a)
        return x + a, kv

    def neurons(self, x: jax.Array, x_mid: jax.Array) -> jax.Array:
        """FFN neurons h [batch, seq, mlp] from the layer input x and the residual after attention
        x_mid: the FFN reads x_mid, or x itself under parallel residual (GPT-NeoX)."""
        y = x if self.cfg.parallel_residual else x_mid
        return self.mlp.neurons(self.ffn_norm(y) if self.cfg.pre_norm else y)

    def ffn_out(self, h: jax.Array) -> jax.Array:
        """What the FFN adds to the residual stream, from its neurons h [..., mlp]."""
        f = self.mlp.project(h)
        return self.ffn_out_norm(f) if self.cfg.sandwich_norm else f

    def __call__(self, x, rope, bias, past, edit=None, where=None):
        """edit: (scale, shift) [mlp] of this layer's intervention or None; where: float [batch,
        seq], 1 at the positions it edits (None: every position)."""
        x_mid, kv = self.attend(x, rope, bias, past)
        h = self.neurons(x, x_mid)
        if edit is not None:
            h = iv.apply(h, edit[0], edit[1], where)
        return x_mid + self.ffn_out(h), h, kv


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerTables:
    """Per attention kind (see `ModelConfig.kind_ids`): rotary tables and additive masks, stacked
    over kinds, and the kind of every layer."""

    kind: jax.Array  # int32 [layers]
    cos: Optional[jax.Array]  # float32 [kinds, batch, seq, rope_dim] (None: learned positions)
    sin: Optional[jax.Array]
    bias: jax.Array  # float32 [kinds, batch, 1, 1, seq, keys]

    def rope(self, kind):
        return None if self.cos is None else (self.cos[kind], self.sin[kind])


def layer_slice(tree, j):
    """Layer j of a stacked pytree, read in place (a dynamic index, not a copy of the stack)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, j, keepdims=False), tree)


class Decoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, dtype=jnp.float32, *, rngs: nnx.Rngs, placement: Optional[Placement] = None):
        self.cfg = cfg
        self.placement = placement
        self.embed = param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), dtype)
        if cfg.position_kind == "learned":
            self.pos_embed = param(rngs, (cfg.max_position_embeddings, cfg.hidden_size), ("positions", "embed"), dtype)
        self.blocks = Block(cfg, dtype, rngs, cfg.num_layers, placement)  # every layer, parameters stacked
        self.final_norm = Norm(cfg.hidden_size, cfg.norm_kind, cfg.norm_eps, cfg.norm_plus_one, "embed", dtype, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), dtype)

    def set_placement(self, placement: Optional[Placement]) -> None:
        """Where activations live from now on (the model moved to another mesh)."""
        self.placement = placement
        self.blocks.attn.placement = placement

    @property
    def head_weights(self) -> jax.Array:
        """[embed, vocab]: the output head (the embedding, transposed, when tied)."""
        return self.embed[...].T if self.cfg.tie_embeddings else self.lm_head[...]

    def soft_cap(self, logits: jax.Array) -> jax.Array:
        cap = self.cfg.final_softcap
        return logits if cap is None else cap * jnp.tanh(logits / cap)

    def head_logits(self, x: jax.Array) -> jax.Array:
        """[..., vocab] float32 logits of the residual stream x [..., embed] after the last layer:
        the final norm, the output head and the soft cap."""
        logits = jnp.einsum("...e,ev->...v", self.final_norm(x), self.head_weights, preferred_element_type=jnp.float32)
        return self.soft_cap(logits)

    def embed_tokens(self, input_ids: jax.Array, positions: jax.Array) -> jax.Array:
        """[batch, seq, embed] input of the first layer."""
        x = self.embed[...][input_ids]
        if self.cfg.embed_scale:
            x = x * jnp.asarray(self.cfg.hidden_size**0.5, x.dtype)
        if self.cfg.position_kind == "learned":
            x = x + self.pos_embed[...][positions]
        return x

    def layer_tables(self, positions, q_index, k_index, key_mask) -> LayerTables:
        """Rotary tables and attention masks of every attention kind, for integer positions
        [batch, seq], slot indices q_index [seq] and k_index [keys], key_mask bool [batch, keys]."""
        cfg = self.cfg
        kinds = cfg.attention_kinds
        bias = jnp.stack([attention_bias(q_index, k_index, key_mask, cfg.window_of(k)) for k in kinds])
        cos = sin = None
        if cfg.position_kind == "rope":
            tables = [rope_tables(positions, cfg.rope_of(k), cfg.rope_dim) for k in kinds]
            cos, sin = jnp.stack([t[0] for t in tables]), jnp.stack([t[1] for t in tables])
        return LayerTables(jnp.asarray(cfg.kind_ids, jnp.int32), cos, sin, bias)

    def blocks_split(self):
        """(graphdef of one block, the stacked block parameters)."""
        return nnx.split(self.blocks)

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
        tables = self.layer_tables(positions, prefix + jnp.arange(s), jnp.arange(prefix + s), key_mask)
        x = constrain(self.placement, self.embed_tokens(input_ids, positions), ("batch", "seq", "act_embed"))
        graphdef, params = self.blocks_split()
        xs = {"params": params, "kind": tables.kind}
        if intervention is not None:
            xs["edit"] = (intervention.scale, intervention.shift)
        if cache is not None:
            xs["past"] = (cache.keys, cache.values)

        def body(x, layer):
            block = nnx.merge(graphdef, layer["params"])
            kind = layer["kind"]
            x, h, kv = block(x, tables.rope(kind), tables.bias[kind], layer.get("past"), layer.get("edit"), where)
            x = constrain(self.placement, x, ("batch", "seq", "act_embed"))
            out = {}
            if capture:
                h_last = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0].astype(jnp.float32)
                out["h"] = constrain(self.placement, h_last, ("batch", "mlp"))
            if return_cache:
                out["kv"] = kv
            return x, out

        x, outs = jax.lax.scan(body, x, xs)
        logits = None
        if logits_at != "none":
            if logits_at == "last":  # the norm is per position: taking the position first is the same
                x = jnp.take_along_axis(x, last[:, None, None], axis=1)
            logits = self.head_logits(x)
        return ForwardOutput(
            logits=logits,
            activations=jnp.swapaxes(outs["h"], 0, 1) if capture else None,
            cache=KVCache(outs["kv"][0], outs["kv"][1], key_mask) if return_cache else None,
        )
