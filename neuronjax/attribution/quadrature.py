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
