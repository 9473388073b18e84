"""Matrix-product FLOPs an attribution call executes, counted from the shapes.

XLA's cost analysis counts the body of a `scan` once, not once per layer, so the figure the
benchmark divides by the run time is counted here instead. Counted: every matrix product of the
prompt pass, the base pass and the IG variants (forward, and backward with respect to the
activations, which costs the same products again); not counted: elementwise work (norms,
activations, softmax), which is small next to them, and three small products: the output head's
candidate columns, the sum of the variants' gradients into their layers by the quadrature
weights, and the backward of the edited token's attention to its own key and value (about 0.05%
of an IG call on SmolLM2; tests/attribution/test_flops.py checks the count against the products
of the traced program).

IG's cost depends on the number of nodes m (``steps``, or one count per layer) and not on the
quadrature rule: every node is one (layer, alpha) variant, and a node at alpha = 0 (the
trapezoid's) costs like any other.
"""

from __future__ import annotations

from neuronjax.attribution.quadrature import layer_schedule, schedule_groups
from neuronjax.models.config import ModelConfig


def layer_macs(cfg: ModelConfig, tokens: int, keys: int) -> int:
    """Multiply-accumulates of one layer for `tokens` query positions against `keys` keys."""
    e, h, kv, d, f = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
    projections = e * h * d + 2 * e * kv * d + h * d * e
    mlp = (3 if cfg.gated_mlp else 2) * e * f
    return tokens * (projections + mlp) + 2 * h * d * tokens * keys


ENTRIES = ("group", "own")


def attribution_flops(cfg: ModelConfig, batch: int, seq: int, method: str, steps, groups: int, layer_steps=None,
                      shared: int = 0, entry: str = "group") -> dict:  # fmt: skip
    """FLOPs (2 x MACs) of one `attribute` call on [batch, seq] prompts, by phase; steps (and
    layer_steps) = IG nodes m per layer as in `attribute`, whatever the rule. shared: the length
    of a prefix common to every row that runs once (`cached.split_prefix`); seq is then the
    rows' width after it.

    Keys: "shared", the common prefix's own products (counted as the compiled program runs them,
    once per call; `attribute` computes the prefix once for all its chunks, so a count over
    several chunks takes it once); "prefix", the rows' own tokens before the last; "base" and
    "variants", the last position's passes; "total", their sum.

    entry: where a variant joins the rows. "group" (ours, `last_token.enter_after`): the variants
    of a layer group join as its first layer lo leaves it, those of lo having run lo's down
    projection, and every one of them runs lo+1.. to the last layer. "own" (the PyTorch port's,
    `neuronjax.bench.torch_cached`, which appends rows as its loop climbs): a variant of layer j
    runs j's down projection and j+1.. only, whatever the groups."""
    if entry not in ENTRIES:
        raise ValueError(f"entry {entry!r}: expected one of {ENTRIES}")
    n = cfg.num_layers
    prefix = batch * n * layer_macs(cfg, seq - 1, shared + seq - 1)
    one = layer_macs(cfg, 1, shared + seq)  # one token against the cache and itself
    base = batch * n * one * (2 if method == "grad_x_act" else 1)
    variants = 0
    if method == "ig":
        schedule = layer_schedule(n, steps, layer_steps)
        down = cfg.intermediate_size * cfg.hidden_size  # a variant of a group's first layer runs its down projection there
        if entry == "own":
            variants = sum(m * ((n - j - 1) * one + down) for j, m in enumerate(schedule)) * batch * 2
        else:
            for lo, hi in schedule_groups(schedule, groups):
                variants += (sum(schedule[lo:hi]) * (n - lo - 1) * one + schedule[lo] * down) * batch * 2
    out = {"shared": 2 * n * layer_macs(cfg, shared, shared), "prefix": 2 * prefix, "base": 2 * base,
           "variants": 2 * variants}  # fmt: skip
    out["total"] = sum(out.values())
    return out
