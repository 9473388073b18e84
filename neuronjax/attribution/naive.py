"""The straightforward attribution: the whole prompt rerun for every (layer, alpha), with the
scaling applied through an `Intervention`, and the target read off the model's full last-position
logits. Slow (layers x steps full passes per prompt) and obviously right; the cached replay in
`engine` is tested against it, for both targets and every quadrature rule (same nodes, same
weights, summed here in float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from neuronjax.attribution import quadrature
from neuronjax.attribution.engine import Attribution, PromptBatch
from neuronjax.errors import InputError
from neuronjax.intervention import Intervention
from neuronjax.lm import forward
from neuronjax.tasks.metrics import target_f


def _f(lm, ids, mask, option_ids, gold, scale, shift, target="ce"):
    iv = Intervention(scale=scale, shift=shift, positions="last")
    logits = forward(lm.state, ids, mask, iv, graphdef=lm.graphdef, logits_at="last").logits[:, 0]
    picked = jnp.take_along_axis(logits, jnp.clip(option_ids, 0).reshape(1, -1), axis=-1).reshape(option_ids.shape)
    scores = jax.nn.logsumexp(jnp.where(option_ids >= 0, picked, -jnp.inf), axis=-1)
    if target == "prob":  # P(gold option) over the whole vocabulary
        logits32 = logits[0].astype(jnp.float32)
        return jnp.exp(scores[gold] - jax.nn.logsumexp(logits32)), scores
    return target_f(scores[None], gold[None])[0], scores


def naive_attribute(
    lm, batch: PromptBatch, method: str = "ig", steps=16, target: str = "ce", rule: str = "gauss_legendre",
    layer_steps=None,
) -> Attribution:
    """One prompt at a time; for ``ig`` a full forward and backward per (layer, alpha). target,
    rule, steps and layer_steps (nodes per layer) as in `engine.attribute`."""
    if target not in ("ce", "prob"):
        raise InputError(f"target {target!r} unknown; expected 'ce' or 'prob'")
    c = lm.config
    shape = (c.num_layers, c.intermediate_size)
    grad_f = jax.jit(jax.grad(lambda *a: _f(*a, target=target)[0], argnums=6), static_argnums=0)
    value_f = jax.jit(lambda *a: _f(*a, target=target), static_argnums=0)
    schedule = quadrature.layer_schedule(c.num_layers, steps, layer_steps)
    out = {"scores": [], "f": [], "option_scores": [], "activations": []}
    ones, zeros = jnp.ones(shape), jnp.zeros(shape)
    for i in range(np.shape(batch.input_ids)[0]):
        ids = jnp.asarray(batch.input_ids)[i : i + 1]
        mask = jnp.asarray(batch.attention_mask)[i : i + 1]
        opts, gold = jnp.asarray(batch.option_ids)[i], jnp.asarray(batch.gold)[i]
        f, scores = value_f(lm, ids, mask, opts, gold, ones, zeros)
        h = np.asarray(lm.forward(ids, mask, capture=True).activations[0])
        if method == "activation":
            attr = h
        elif method == "grad_x_act":
            attr = h * np.asarray(grad_f(lm, ids, mask, opts, gold, ones, zeros))
        else:
            attr = np.zeros(shape, np.float32)
            for layer in range(c.num_layers):
                g = np.zeros(c.intermediate_size)
                for a, w in zip(*quadrature.nodes(rule, schedule[layer])):
                    scale = ones.at[layer].set(np.float32(a))
                    g += w * np.asarray(grad_f(lm, ids, mask, opts, gold, scale, zeros))[layer]
                attr[layer] = h[layer] * g
        out["scores"].append(attr)
        out["f"].append(float(f))
        out["option_scores"].append(np.asarray(scores))
        out["activations"].append(h)
    return Attribution(**{k: jnp.asarray(np.stack(v)) for k, v in out.items()})
