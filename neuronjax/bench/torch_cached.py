"""Our attribution algorithm in PyTorch + transformers: the benchmark's strongest PyTorch peer.

The algorithm of `neuronjax.attribution.last_token`, written for PyTorch's eager execution
(NeuronLLM, arXiv 2601.04548, Sec. 3; definitions of h, F and IG as in `torch_ig`):

1. The prompt without its last token runs once through transformers with its KV cache
   (``use_cache=True``, the model's ``past_key_values``); the token prefix common to a batch's
   rows (a task's role block and demonstration) runs once for the batch, as in ours.
2. The last token runs as a one-token step against that cache (the base pass), keeping each
   layer's residual stream after attention (x_mid) and its neurons h.
3. IG: the (layer, alpha) variants of a group of layers run as one batch of one-token rows
   through the layers above, and one backward pass per group gives dF/dh' of every variant at
   its own edit. IG_l = h_l * sum_k w_k dF/dh'(alpha_k h_l), with the nodes and weights of
   `neuronjax.attribution.quadrature`. grad x act: one backward through the base pass.

Two refinements that eager execution allows and one compiled scan with fixed shapes does not:
a variant of layer j enters at layer j's down projection (below it, and in attention and the
gate/up products of layer j itself, it is the base pass: x_mid_j + down(alpha h_j)), and rows are
appended as the loop climbs (at layer j the batch holds the variants of layers lo..j), so no
work is spent below a variant's edit; groups then only bound the memory of the backward pass.

The one-token attention reads the cache in place: the queries of every row, folded with the
heads that share a key head, multiply the cached keys [batch, kv_heads, keys, head_dim] as one
batched matmul per layer (never a copy of the cache per variant); each row's own key and value
are one more column. The cache and the base pass run under ``torch.no_grad``, not
``inference_mode``: the variants' backward saves them (the keys for the queries' gradient), and
inference tensors cannot be saved for backward. Parameters are frozen during a call.

Scope: Llama-type decoders (llama, mistral, qwen2: pre-norm, rotary attention, gated MLP,
optional biases) with full attention over the prompt.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import torch
from transformers import DynamicCache

from neuronjax.attribution.quadrature import nodes
from neuronjax.bench.torch_ig import position_ids
from neuronjax.cached import split_prefix
from neuronjax.errors import ConfigError

SUPPORTED = ("llama", "mistral", "qwen2")


@dataclasses.dataclass
class Prompt:
    """What the one-token steps read, for a batch of left-padded prompts."""

    keys: list  # per layer [batch, kv_heads, keys, head_dim], rotary already applied
    values: list  # per layer [batch, kv_heads, keys, head_dim]
    key_bias: torch.Tensor  # [batch, 1, 1, keys]: 0 at prompt tokens, -inf at padding
    cos: torch.Tensor  # [batch, head_dim]: rotary table of the last position
    sin: torch.Tensor
    x0: torch.Tensor  # [batch, embed]: the last token's embedding


def _layers(model, seq: int):
    cfg = model.config
    if cfg.model_type not in SUPPORTED:
        raise ConfigError(f"torch_cached: model_type {cfg.model_type!r} not supported; expected one of {SUPPORTED}")
    window = getattr(cfg, "sliding_window", None)
    if window and getattr(cfg, "use_sliding_window", True) and seq > window:
        raise ConfigError(f"torch_cached: a {seq}-token prompt exceeds the sliding window {window}")
    return model.model.layers


def _cached(cache, i: int):
    """(keys, values) of layer i of a transformers cache (4.56+: cache.layers; before: key_cache)."""
    if hasattr(cache, "layers"):
        return cache.layers[i].keys, cache.layers[i].values
    return cache.key_cache[i], cache.value_cache[i]


def _cache_argument(module) -> str:
    """The forward argument that takes a cache: `cache` (transformers 5), else `past_key_values`."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache  # renamed `cache` in transformers 5


def prefix(model, ids: torch.Tensor, mask: torch.Tensor, share: bool = True) -> Prompt:
    """Run every position but the last once (ids, mask: int [batch, seq], left-padded).

    share: the token prefix common to every row (`neuronjax.cached.split_prefix`, the decision
    ours makes) runs once for the batch, its keys and values are repeated for every row, and
    each row's own tokens after it run on that cache, left-padded to the longest row's."""
    split = split_prefix(ids.numpy(), mask.numpy(), seq_bucket=1) if share and ids.shape[0] > 1 else None
    layers = range(len(model.model.layers))
    with torch.no_grad():
        if split is None:
            pos = torch.as_tensor(position_ids(mask.numpy()))
            out = model.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                              use_cache=True)  # fmt: skip
        else:
            p, b = split.length, ids.shape[0]
            head = _cache_of(model.model(input_ids=torch.as_tensor(split.shared, dtype=torch.long), use_cache=True))
            cache = DynamicCache(config=model.config)
            for i in layers:
                k, v = _cached(head, i)
                cache.update(k.expand(b, -1, -1, -1).contiguous(), v.expand(b, -1, -1, -1).contiguous(), i)
            ids = torch.as_tensor(split.input_ids, dtype=torch.long)
            own = torch.as_tensor(split.attention_mask, dtype=torch.long)
            mask = torch.cat([torch.ones((b, p), dtype=torch.long), own], dim=1)
            pos = p + torch.as_tensor(position_ids(own.numpy()))
            past = {_cache_argument(model.model): cache}
            out = model.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                              use_cache=True, **past)  # fmt: skip
        x0 = model.model.embed_tokens(ids[:, -1])
        cos, sin = model.model.rotary_emb(x0[:, None], pos[:, -1:])
    kv = [_cached(_cache_of(out), i) for i in layers]
    bias = torch.zeros(mask[:, :-1].shape, dtype=x0.dtype).masked_fill(mask[:, :-1] == 0, float("-inf"))
    return Prompt([k for k, _ in kv], [v for _, v in kv], bias[:, None, None], cos[:, 0], sin[:, 0], x0)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def attend(layer, prompt: Prompt, i: int, x: torch.Tensor) -> torch.Tensor:
    """x_mid [rows, batch, embed]: one-token rows x after layer i's attention (residual added)."""
    attn = layer.self_attn
    r, b, _ = x.shape
    keys, values = prompt.keys[i], prompt.values[i]
    kv, d = keys.shape[1], keys.shape[-1]
    y = layer.input_layernorm(x)
    q = attn.q_proj(y).view(r, b, kv, -1, d)  # [rows, batch, kv_heads, group, head_dim]
    g = q.shape[3]
    k = attn.k_proj(y).view(r, b, kv, d)
    v = attn.v_proj(y).view(r, b, kv, d)
    cos, sin = prompt.cos[None, :, None], prompt.sin[None, :, None]
    q = _rotate(q, cos[..., None, :], sin[..., None, :])
    k = _rotate(k, cos, sin)
    qf = q.permute(1, 2, 0, 3, 4).reshape(b, kv, r * g, d)  # rows folded into the query axis
    s_cache = torch.matmul(qf, keys.transpose(-1, -2)) * attn.scaling + prompt.key_bias
    s_self = (q * k[..., None, :]).sum(-1).permute(1, 2, 0, 3).reshape(b, kv, r * g, 1) * attn.scaling
    p = torch.softmax(torch.cat([s_cache, s_self], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
    v_self = v.permute(1, 2, 0, 3)[:, :, :, None].expand(b, kv, r, g, d).reshape(b, kv, r * g, d)
    out = torch.matmul(p[..., :-1], values) + p[..., -1:] * v_self
    out = out.view(b, kv, r, g, d).permute(2, 0, 1, 3, 4).reshape(r, b, kv * g * d)
    return x + attn.o_proj(out)


def neurons(layer, x_mid: torch.Tensor) -> torch.Tensor:
    """h [rows, batch, mlp]: the input of layer's down projection."""
    y = layer.post_attention_layernorm(x_mid)
    return layer.mlp.act_fn(layer.mlp.gate_proj(y)) * layer.mlp.up_proj(y)


def target(model, x: torch.Tensor, option_ids: torch.Tensor, gold: torch.Tensor):
    """(F [rows, batch], option scores [rows, batch, option]) of final residuals x [rows, batch,
    embed]: only the output-head rows of the candidate tokens (option_ids [batch, option, cand],
    -1 = none) are multiplied."""
    y = model.model.norm(x)
    cols = model.lm_head.weight[option_ids.clamp(min=0)]  # [batch, option, cand, embed]
    logits = torch.einsum("rbe,boce->rboc", y, cols).float()
    if model.lm_head.bias is not None:
        logits = logits + model.lm_head.bias[option_ids.clamp(min=0)].float()
    scores = torch.logsumexp(logits.masked_fill(option_ids < 0, float("-inf")), dim=-1)
    gold_score = scores.gather(-1, gold[None, :, None].expand(scores.shape[0], -1, 1))[..., 0]
    return gold_score - torch.logsumexp(scores, dim=-1), scores


def base_pass(model, layers, prompt: Prompt, option_ids, gold, shifts: bool = False):
    """The unedited last position: (F [batch], option scores [batch, option], x_mid and h per
    layer [batch, embed] / [batch, mlp], the zero shifts added to h when ``shifts``, whose
    gradient is dF/dh)."""
    x = prompt.x0[None]
    mids, hs, added = [], [], []
    for i, layer in enumerate(layers):
        x_mid = attend(layer, prompt, i, x)
        h = neurons(layer, x_mid)
        if shifts:
            added.append(torch.zeros_like(h, requires_grad=True))
            h = h + added[-1]
        mids.append(x_mid[0])
        hs.append(h[0])
        x = x_mid + layer.mlp.down_proj(h)
    f, scores = target(model, x, option_ids, gold)
    return f[0], scores[0], mids, hs, added


def groups_of(num_layers: int, groups: int) -> list[tuple[int, int]]:
    """Contiguous layer groups of about equal size: for equal nodes per layer, the sizes
    `neuronjax.attribution.quadrature.schedule_groups` finds cheapest."""
    parts = np.array_split(np.arange(num_layers), max(1, min(groups, num_layers)))
    return [(int(p[0]), int(p[-1]) + 1) for p in parts]


def integrated_gradients(model, layers, prompt, mids, hs, option_ids, gold, steps: int, rule: str, groups: int):
    """IG [batch, layers, mlp] from the base pass's x_mid and h (see the module docstring)."""
    a, w = (torch.as_tensor(x, dtype=hs[0].dtype) for x in nodes(rule, steps))
    out = []
    for lo, hi in groups_of(len(layers), groups):
        x, leaves = None, []
        for j in range(lo, len(layers)):
            if x is not None:
                x_mid = attend(layers[j], prompt, j, x)
                x = x_mid + layers[j].mlp.down_proj(neurons(layers[j], x_mid))
            if j < hi:  # the variants of layer j enter: [steps, batch, mlp] scaled copies of h_j
                edited = (a[:, None, None] * hs[j]).requires_grad_()
                leaves.append(edited)
                enter = mids[j] + layers[j].mlp.down_proj(edited)
                x = enter if x is None else torch.cat([x, enter])
        f, _ = target(model, x, option_ids, gold)
        grads = torch.autograd.grad(f.sum(), leaves)  # rows are independent: dF_v / dh'_v
        out += [hs[j] * torch.einsum("k,kbf->bf", w, g) for j, g in zip(range(lo, hi), grads)]
    return torch.stack(out, dim=1)


def attribute(model, input_ids, attention_mask, option_ids, gold, method: str = "ig", steps: int = 16,
              rule: str = "right_riemann", groups: int = 4, share_prefix: bool = True) -> dict:  # fmt: skip
    """A left-padded batch at once: input_ids, attention_mask int [batch, seq]; option_ids int
    [batch, 4, candidates] (-1 = none); gold int [batch]; share_prefix: the rows' common prefix
    runs once (`prefix`). Returns numpy {"scores": float32 [batch, layers, mlp], "f": float32
    [batch], "option_scores": float32 [batch, 4]}, like `torch_ig.attribute`."""
    if method not in ("ig", "grad_x_act"):
        raise ConfigError(f"method {method!r} unknown; expected 'ig' or 'grad_x_act'")
    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    mask = torch.as_tensor(np.asarray(attention_mask), dtype=torch.long)
    opts = torch.as_tensor(np.asarray(option_ids), dtype=torch.long)
    gold_t = torch.as_tensor(np.asarray(gold), dtype=torch.long)
    layers = _layers(model, ids.shape[1])
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        prompt = prefix(model, ids, mask, share_prefix)
        if method == "grad_x_act":
            with torch.enable_grad():
                f, scores, _, hs, added = base_pass(model, layers, prompt, opts, gold_t, shifts=True)
                grads = torch.autograd.grad(f.sum(), added)
            attr = torch.stack([h * g[0] for h, g in zip(hs, grads)], dim=1)
        else:
            with torch.no_grad():
                f, scores, mids, hs, _ = base_pass(model, layers, prompt, opts, gold_t)
            with torch.enable_grad():
                attr = integrated_gradients(model, layers, prompt, mids, hs, opts, gold_t, steps, rule, groups)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return {"scores": attr.detach().float().numpy(), "f": f.detach().float().numpy(),
            "option_scores": scores.detach().float().numpy()}  # fmt: skip
