"""Quadrature rules for the IG path integral over the scale alpha in [0, 1].

Integrated gradients (Sundararajan et al. 2017) with a zero baseline is
IG_l = h_l * integral_0^1 dF/dh(alpha h_l) d alpha, computed as h_l * sum_k w_k dF/dh(alpha_k h_l)
with weights that sum to 1. m is the number of nodes for every rule: one gradient of F per node,
so equal m means equal cost (a node at alpha = 0 costs like any other).

- ``right_riemann``: alpha_k = k / m, w_k = 1 / m, k = 1..m. Exact for constants only; the error
  falls as 1/m. m = 1 is gradient x activation.
- ``trapezoid``: alpha_k = k / (m - 1), k = 0..m-1, half weight on the two ends. Exact for
  polynomials of degree 1; the error falls as 1/m^2. Needs m >= 2; evaluates dF/dh with the
  layer's neurons zeroed (alpha = 0).
- ``gauss_legendre``: the Gauss-Legendre nodes and weights on [-1, 1] (`numpy.polynomial.legendre.
  leggauss`) mapped to [0, 1]. Exact for polynomials of degree 2m - 1; for an integrand analytic
  around [0, 1] the error falls geometrically in m. Never evaluates either end of the path.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from neuronjax.errors import InputError

Rule = Literal["right_riemann", "trapezoid", "gauss_legendre"]
RULES = ("right_riemann", "trapezoid", "gauss_legendre")


def min_nodes(rule: str) -> int:
    """The fewest nodes the rule is defined with (the trapezoid needs both ends)."""
    return 2 if rule == "trapezoid" else 1


def nodes(rule: str, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha [m], weight [m]) in float64: the scaling points on [0, 1] and their weights (sum 1)."""
    if rule not in RULES:
        raise InputError(f"rule {rule!r} unknown; expected one of {RULES}")
    if m < min_nodes(rule):
        raise InputError(f"IG rule {rule} needs m >= {min_nodes(rule)} nodes, got {m}")
    if rule == "right_riemann":
        return np.arange(1, m + 1) / m, np.full(m, 1.0 / m)
    if rule == "trapezoid":
        w = np.full(m, 1.0 / (m - 1))
        w[[0, -1]] /= 2
        return np.arange(m) / (m - 1), w
    x, w = np.polynomial.legendre.leggauss(m)
    return (x + 1) / 2, w / 2


def layer_schedule(num_layers: int, steps, layer_steps=None) -> tuple[int, ...]:
    """Nodes per layer, a tuple of num_layers counts: ``steps`` for every layer, except the layers
    named in ``layer_steps`` ({layer index: m}, a negative index counts from the last layer; keys
    may be strings, as config files give them). ``steps`` may itself be a per-layer sequence.

    One number for every layer spends the same nodes where the integrand is smooth (a few
    Gauss-Legendre nodes are exact there to float32 rounding) as where it is not; a schedule puts
    them where they are needed (docs/attribution.md, Quadrature)."""
    if isinstance(steps, (int, np.integer)):
        schedule = [int(steps)] * num_layers
    else:
        schedule = [int(m) for m in steps]
        if len(schedule) != num_layers:
            raise InputError(f"steps: {len(schedule)} per-layer node counts given for a {num_layers}-layer model")
    for key, m in (layer_steps or {}).items():
        try:
            layer = int(key)
        except (TypeError, ValueError):
            raise InputError(f"layer_steps: key {key!r} is not a layer index (an integer; negative counts from the end)") from None
        if not -num_layers <= layer < num_layers:
            raise InputError(f"layer_steps: layer {layer} is out of range for a {num_layers}-layer model "
                             f"(expected {-num_layers}..{num_layers - 1})")  # fmt: skip
        schedule[layer % num_layers] = int(m)
    return tuple(schedule)


def check_schedule(rule: str, schedule) -> None:
    """Every layer's node count is one the rule is defined with."""
    low = [(j, m) for j, m in enumerate(schedule) if m < min_nodes(rule)]
    if low:
        j, m = low[0]
        raise InputError(f"IG rule {rule} needs m >= {min_nodes(rule)} nodes per layer; layer {j} has {m}")


def variants(rule: str, schedule, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(layer [V], alpha [V], weight [V]) of the (layer, node) variants of layers lo..hi-1, layer
    by layer, each layer with its own schedule[layer] nodes."""
    parts = [(np.full(schedule[j], j), *nodes(rule, schedule[j])) for j in range(lo, hi)]
    return tuple(np.concatenate(p) for p in zip(*parts))


# what a node of a group's first layer costs there, in one-token layer passes: the down
# projection alone, a quarter of a layer's products in a gated FFN whose width is about 2.7x the
# model's (SmolLM2, Llama; the rest are attention and the gate and up projections)
ENTRY_COST = 0.25


def schedule_groups(schedule, groups: int, rerun_first: bool = False) -> list[tuple[int, int]]:
    """At most ``groups`` contiguous layer groups (lo, hi) that minimise the replay's work.

    A group's variants join the replay as its first layer lo leaves it and run every layer after
    it (`last_token.enter_after`), so it costs (its node count) x (layers - lo - 1) one-token
    layer passes, plus lo's down projection for the nodes of lo itself (`ENTRY_COST` of a pass
    each). rerun_first: every row runs its group's first layer whole instead, (its row count) x
    (layers - lo) passes (the evaluation's interventions, `evaluation.joined`). For equal counts
    per layer the best groups have about equal sizes; a layer with many more nodes than the rest
    gets a group of its own or shares one with few layers. Found exactly by dynamic programming
    over the cut points."""
    n = len(schedule)
    g = max(1, min(groups, n))
    total = np.concatenate([[0], np.cumsum(schedule)])

    def cost(lo, hi):
        rows = int(total[hi] - total[lo])
        return rows * (n - lo) if rerun_first else rows * (n - lo - 1) + ENTRY_COST * int(schedule[lo])

    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(g + 1)]  # best[k][i]: layers 0..i-1 in k groups
    cut = [[0] * (n + 1) for _ in range(g + 1)]
    best[0][0] = 0
    for k in range(1, g + 1):
        for i in range(1, n + 1):
            for j in range(k - 1, i):
                c = best[k - 1][j] + cost(j, i)
                if c < best[k][i]:
                    best[k][i], cut[k][i] = c, j
    k = min(range(1, g + 1), key=lambda k: (best[k][n], k))
    out, i = [], n
    while k:
        j = cut[k][i]
        out.append((j, i))
        i, k = j, k - 1
    return out[::-1]
