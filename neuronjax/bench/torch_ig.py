"""Integrated gradients per FFN neuron in PyTorch + transformers: the peer of the benchmark.

Written the way neuron-attribution research code usually is (knowledge-neuron style, Dai et al.
2022): a forward pre-hook on the FFN down projection scales the last position's neuron vector by
alpha and keeps the scaled tensor so that its gradient can be read; the whole prompt is
recomputed for every (layer, alpha); the m alphas of one layer run as one batch of m copies of
the prompt, forward and backward, one prompt at a time. Nothing is cached between steps.

Definitions, as in NeuronLLM (Li et al., arXiv 2601.04548, Sec. 3, "neuron attribution"):

- neuron: one unit of h, the input of the down projection (``act(x W_gate) * (x W_up)`` for
  Llama-like MLPs, ``act(x W_fc + b)`` for GPT-2);
- option score_o = logsumexp over the candidate token ids t of option o of the raw next-token
  logit at the last prompt position (the vocabulary normaliser cancels in F);
- F = score_gold - logsumexp_o score_o (log softmax over the four options, at the gold option);
- IG for layer l (zero baseline, right Riemann sum, alpha_k = k / m, k = 1..m):
  IG_l = h_l * (1/m) sum_k dF/dh'_l at h'_l = alpha_k h_l, with h_l scaled at the last position
  only and every other layer computed normally from the changed residual stream. m = 1 is
  gradient x activation.

Left padding: each row is run with its attention mask and position ids cumsum(mask) - 1
(clipped at 0), as transformers' ``generate`` does.

`attribute_captum` is the same attribution through Captum's `LayerIntegratedGradients` (and
`LayerGradientXActivation` for grad x act), the library a researcher reaches for first: per
layer, one Captum call over the down projection's input at the last position, right Riemann
(Captum's ``riemann_right``: alpha_k = k / m), ``internal_batch_size`` rows per forward. Captum
interpolates a layer between the layer values of its inputs and of its baselines, both given in
the model's input space; so the forward function takes a gate besides the token ids, the last
position's neuron vector passes through a tap (an identity module, the layer Captum hooks) as
gate * h, and the gate is 1 for the input and 0 for the baseline: the layer's baseline is then
h = 0 at the last position and every other position is untouched, as in IG above.
"""

from __future__ import annotations

import numpy as np
import torch

from neuronjax.errors import ConfigError


def down_projections(model) -> list:
    """Per layer, the module whose input is the neuron vector h."""
    if hasattr(model, "transformer"):  # GPT-2: block.mlp.c_proj
        return [block.mlp.c_proj for block in model.transformer.h]
    return [layer.mlp.down_proj for layer in model.model.layers]


def position_ids(mask: np.ndarray) -> np.ndarray:
    """Positions of a left-padded mask [..., seq]: cumsum(mask) - 1, clipped at 0."""
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0)


def option_scores(logits: torch.Tensor, option_ids: np.ndarray) -> torch.Tensor:
    """[rows, 4]: logsumexp of the raw logits [rows, vocab] of each option's candidate ids
    (option_ids [4, candidates], -1 = none)."""
    cols = [torch.logsumexp(logits[:, [int(t) for t in row if t >= 0]], dim=-1) for row in option_ids]
    return torch.stack(cols, dim=-1)


def target_f(scores: torch.Tensor, gold: int) -> torch.Tensor:
    """F [rows] = log softmax over the options, at the gold option."""
    return scores[:, gold] - torch.logsumexp(scores, dim=-1)


class _ScaleLast:
    """Forward pre-hook: h[:, -1] -> alpha[:, None] * h[:, -1] (one alpha per batch row).

    Keeps the unscaled h of the last position (``h``) and the scaled tensor that the rest of the
    model reads (``scaled``), whose gradient is dF/dh'."""

    def __init__(self, alpha: torch.Tensor):
        self.alpha = alpha
        self.h = self.scaled = None

    def __call__(self, module, args):
        (x,) = args
        last = x[:, -1]
        self.h = last.detach()
        if not last.requires_grad:  # frozen weights: start the graph here (only dF/dh' is wanted)
            last = last.detach().requires_grad_(True)
        self.scaled = self.alpha[:, None].to(x.dtype) * last
        return (torch.cat([x[:, :-1], self.scaled[:, None]], dim=1),)


def _run(model, hooks: dict, ids, mask, pos, option_ids, gold):
    """Forward with pre-hooks {layer: _ScaleLast}; returns (F [rows], option scores [rows, 4])."""
    downs = down_projections(model)
    handles = [downs[layer].register_forward_pre_hook(hook) for layer, hook in hooks.items()]
    try:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1]
    finally:
        for handle in handles:
            handle.remove()
    scores = option_scores(logits.to(torch.promote_types(logits.dtype, torch.float32)), option_ids)
    return target_f(scores, gold), scores


def attribute_prompt(model, ids, mask, option_ids, gold: int, method: str = "ig", steps: int = 16):
    """One prompt (ids, mask [seq], possibly left-padded): (scores [layers, mlp], F, option scores [4]).

    ig: for each layer, one batch of ``steps`` copies of the prompt whose last-position h_l is
    scaled by alpha_k; grad_x_act: one forward and backward with every layer hooked at alpha = 1.
    """
    num_layers = len(down_projections(model))
    rows = steps if method == "ig" else 1
    t_ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)[None].repeat(rows, 1)
    t_mask = torch.as_tensor(np.asarray(mask), dtype=torch.long)[None].repeat(rows, 1)
    t_pos = torch.as_tensor(position_ids(np.asarray(mask)), dtype=torch.long)[None].repeat(rows, 1)
    args = (t_ids, t_mask, t_pos, option_ids, gold)

    if method == "grad_x_act":
        hooks = {layer: _ScaleLast(torch.ones(1)) for layer in range(num_layers)}
        f, scores = _run(model, hooks, *args)
        grads = torch.autograd.grad(f.sum(), [hooks[layer].scaled for layer in range(num_layers)])
        attr = torch.stack([hooks[layer].h[0] * g[0] for layer, g in enumerate(grads)])
        return attr.numpy(), float(f[0].detach()), scores[0].detach().numpy()
    if method != "ig":
        raise ConfigError(f"method {method!r} unknown; expected 'ig' or 'grad_x_act'")

    alpha = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    with torch.no_grad():
        f, scores = _run(model, {}, *[a[:1] if torch.is_tensor(a) else a for a in args])
    attr = []
    for layer in range(num_layers):
        hook = _ScaleLast(alpha)
        f_steps, _ = _run(model, {layer: hook}, *args)
        (g,) = torch.autograd.grad(f_steps.sum(), hook.scaled)  # rows are independent: dF_k/dh'_k
        attr.append(hook.h[0] * g.mean(dim=0))
    return torch.stack(attr).numpy(), float(f[0]), scores[0].numpy()


def _each_prompt(one, model, input_ids, attention_mask, option_ids, gold) -> dict:
    """Run one(ids, mask, option_ids, gold) -> (scores, f, option scores) per prompt with the
    model's parameters frozen; stack the results."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    out = {"scores": [], "f": [], "option_scores": []}
    try:
        for b in range(np.shape(input_ids)[0]):
            row = (np.asarray(input_ids[b]), np.asarray(attention_mask[b]), np.asarray(option_ids[b]), int(gold[b]))
            s, f, sc = one(*row)
            out["scores"].append(s)
            out["f"].append(f)
            out["option_scores"].append(sc)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return {k: np.asarray(np.stack(v), np.float32) for k, v in out.items()}


def attribute(model, input_ids, attention_mask, option_ids, gold, method: str = "ig", steps: int = 16) -> dict:
    """Every prompt of a left-padded batch, one prompt at a time.

    input_ids, attention_mask: int [batch, seq]; option_ids: int [batch, 4, candidates] (-1 = none);
    gold: int [batch]. Returns numpy {"scores": float32 [batch, layers, mlp], "f": float32 [batch],
    "option_scores": float32 [batch, 4]}. The model's parameters are frozen for the call (only
    gradients with respect to the neurons are needed) and restored afterwards.
    """
    return _each_prompt(lambda *row: attribute_prompt(model, *row, method, steps), model, input_ids, attention_mask,
                        option_ids, gold)  # fmt: skip


class _Gate:
    """Forward pre-hook of a down projection: the last position's h goes through ``tap`` as
    gate * h (gate [rows, 1], set by the forward function before each call)."""

    def __init__(self, tap):
        self.tap, self.gate = tap, None

    def __call__(self, module, args):
        (x,) = args
        last = self.tap(self.gate.to(x.dtype) * x[:, -1])
        return (torch.cat([x[:, :-1], last[:, None]], dim=1),)


def captum_prompt(model, ids, mask, option_ids, gold: int, method: str = "ig", steps: int = 16,
                  internal_batch_size=None, layers=None):  # fmt: skip
    """One prompt through Captum: (scores [layers, mlp], F, option scores [4]). layers: the layers
    to attribute (default all; IG runs one Captum call per layer)."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    downs = down_projections(model)
    layers = list(range(len(downs))) if layers is None else list(layers)
    ids_t = torch.as_tensor(np.asarray(ids), dtype=torch.long)[None]
    extra = (torch.as_tensor(np.asarray(mask), dtype=torch.long)[None],
             torch.as_tensor(position_ids(np.asarray(mask)), dtype=torch.long)[None])  # fmt: skip
    gates = {layer: _Gate(torch.nn.Identity()) for layer in layers}

    def forward(ids_rows, gate, mask_rows, pos_rows):
        for g in gates.values():
            g.gate = gate
        logits = model(input_ids=ids_rows, attention_mask=mask_rows, position_ids=pos_rows, logits_to_keep=1).logits
        return target_f(option_scores(logits[:, -1].float(), option_ids), gold)

    one, zero = torch.ones(1, 1), torch.zeros(1, 1)
    with torch.no_grad():
        f, scores = _run(model, {}, ids_t, *extra, option_ids, gold)
    if method == "grad_x_act":
        handles = [downs[layer].register_forward_pre_hook(gates[layer]) for layer in layers]
        try:
            lgxa = LayerGradientXActivation(forward, [gates[layer].tap for layer in layers])
            attr = lgxa.attribute((ids_t, one), additional_forward_args=extra, attribute_to_layer_input=True)
        finally:
            for handle in handles:
                handle.remove()
        attr = [a[0] if isinstance(a, (tuple, list)) else a for a in attr]
    elif method == "ig":
        attr = []
        for layer in layers:
            handle = downs[layer].register_forward_pre_hook(gates[layer])
            try:
                lig = LayerIntegratedGradients(forward, gates[layer].tap, multiply_by_inputs=True)
                a = lig.attribute((ids_t, one), baselines=(ids_t, zero), additional_forward_args=extra, n_steps=steps,
                                  method="riemann_right", internal_batch_size=internal_batch_size,
                                  attribute_to_layer_input=True)  # fmt: skip
            finally:
                handle.remove()
            attr.append(a[0] if isinstance(a, (tuple, list)) else a)
    else:
        raise ConfigError(f"method {method!r} unknown; expected 'ig' or 'grad_x_act'")
    return torch.stack([a[0] for a in attr]).detach().numpy(), float(f[0]), scores[0].numpy()


def attribute_captum(model, input_ids, attention_mask, option_ids, gold, method: str = "ig", steps: int = 16,
                     internal_batch_size=None, layers=None) -> dict:  # fmt: skip
    """`attribute` through Captum (see the module docstring), one prompt at a time; same arrays in
    and out (scores over ``layers`` only when given). Captum's right Riemann rule needs steps >= 2."""
    return _each_prompt(lambda *row: captum_prompt(model, *row, method, steps, internal_batch_size, layers), model,
                        input_ids, attention_mask, option_ids, gold)  # fmt: skip
