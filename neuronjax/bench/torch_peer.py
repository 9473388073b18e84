"""The peer of the attribution benchmark: integrated gradients in PyTorch + transformers, written
the way research code on neuron attribution usually does it (knowledge-neuron style): a forward
pre-hook on the FFN down projection replaces the last position's activation by alpha times its
unedited value, the whole prompt is recomputed for every step, and the m steps of one layer run
as one batch, forward and backward.

The definitions follow NeuronLLM (arXiv 2601.04548) as `neuronjax.attribution.engine` does:
option score = logsumexp of the raw logits of the option's candidate tokens at the last
position, F = log softmax of the four scores at the gold option, alpha_k = k / m, and
IG_l = h_l * mean_k dF/dh at alpha_k h_l. This module is the only one that imports torch.
"""

from __future__ import annotations

import numpy as np
import torch


def down_projections(model) -> list:
    """The module whose input is the FFN neuron vector, per layer."""
    if hasattr(model, "transformer"):  # GPT-2
        return [block.mlp.c_proj for block in model.transformer.h]
    return [layer.mlp.down_proj for layer in model.model.layers]


def _f(logits_last: torch.Tensor, option_ids: np.ndarray, gold: int) -> torch.Tensor:
    """F per row of logits_last [rows, vocab]."""
    scores = []
    for o in range(option_ids.shape[0]):
        ids = [int(t) for t in option_ids[o] if t >= 0]
        scores.append(torch.logsumexp(logits_last[:, ids], dim=-1))
    scores = torch.stack(scores, dim=-1)
    return torch.log_softmax(scores, dim=-1)[:, gold], scores


def _capture(model, ids: torch.Tensor, downs: list, keep_grad: bool):
    """Forward once; return (logits at the last position, per-layer last-position activations)."""
    acts = [None] * len(downs)
    handles = []
    for i, mod in enumerate(downs):

        def hook(module, args, i=i):
            x = args[0]
            if keep_grad:
                x.retain_grad()
            acts[i] = x
            return None

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        logits = model(input_ids=ids).logits[:, -1, :]
    finally:
        for h in handles:
            h.remove()
    return logits, acts


def attribute_prompt(model, ids: np.ndarray, option_ids: np.ndarray, gold: int, method: str = "ig", steps: int = 16):
    """(scores [layers, mlp], F, option scores [4]) for one unpadded prompt ids [seq]."""
    downs = down_projections(model)
    t_ids = torch.as_tensor(ids, dtype=torch.long)[None]
    if method == "grad_x_act":
        logits, acts = _capture(model, t_ids, downs, keep_grad=True)
        f, scores = _f(logits, option_ids, gold)
        f.sum().backward()
        attr = np.stack([(a[0, -1] * a.grad[0, -1]).detach().numpy() for a in acts])
        return attr, float(f[0]), scores[0].detach().numpy()

    with torch.no_grad():
        logits, acts = _capture(model, t_ids, downs, keep_grad=False)
        f, scores = _f(logits, option_ids, gold)
    base = [a[0, -1].clone() for a in acts]
    alphas = torch.arange(1, steps + 1, dtype=torch.float32) / steps
    batch = t_ids.repeat(steps, 1)
    attr = []
    for layer, mod in enumerate(downs):
        scaled = (alphas[:, None] * base[layer][None]).requires_grad_(True)

        def replace(module, args, scaled=scaled):
            x = args[0].clone()
            x[:, -1, :] = scaled
            return (x,)

        handle = mod.register_forward_pre_hook(replace)
        try:
            out = model(input_ids=batch).logits[:, -1, :]
            f_steps, _ = _f(out, option_ids, gold)
            f_steps.sum().backward()
        finally:
            handle.remove()
        attr.append((base[layer] * scaled.grad.mean(dim=0)).detach().numpy())
        model.zero_grad(set_to_none=True)
    return np.stack(attr), float(f[0]), scores[0].numpy()


def attribute(model, input_ids, attention_mask, option_ids, gold, method: str = "ig", steps: int = 16) -> dict:
    """Every prompt of a left-padded batch, one at a time (padding removed)."""
    out = {"scores": [], "f": [], "option_scores": []}
    for b in range(np.shape(input_ids)[0]):
        ids = np.asarray(input_ids[b])[np.asarray(attention_mask[b]).astype(bool)]
        s, f, sc = attribute_prompt(model, ids, np.asarray(option_ids[b]), int(gold[b]), method, steps)
        out["scores"].append(s)
        out["f"].append(f)
        out["option_scores"].append(sc)
    return {k: np.stack(v) if k != "f" else np.asarray(v, np.float32) for k, v in out.items()}
