"""Nets of the same parameter budget at other depths: the one budget family of the toolkit
(experiments/ and numerics/ add only their own rules on top)."""

from __future__ import annotations

import math

from ._bounds import expected_moments
from ._invariants import Invariants
from ._spec import MAX_DEPTH, NetSpec


def budget_family(template: NetSpec, budget: int, depths, *, tolerance: float = 0.05):
    """For each depth (L ≥ 2; L ≥ 3 for residual nets): ``(spec, within_tolerance)`` with the
    uniform width from :func:`width_for_budget`."""
    out = []
    for L in depths:
        K = width_for_budget(budget, template.input_dim, template.outputs, L)
        if K is None or (template.arch == "residual" and L < 3) or L > MAX_DEPTH:
            continue
        spec = template.reshaped(L, K)
        out.append((spec, abs(spec.params - budget) <= tolerance * budget))
    return out


def same_budget_alternatives(spec: NetSpec, x, y, *, depths=None, tolerance: float = 0.05,
                             loss: str = "squared", progress: bool = False,
                             softmax: str = "gaussian"):
    """Nets of other depths whose parameter count is within ``tolerance`` of ``spec.params``.

    For each depth, the uniform width K with P(d, K, L, c) closest to the budget; those outside
    the tolerance are reported with ``within_tolerance=False``. Returns a list of dicts with
    depth, width, params and the theory result (or an error string). ``loss``, ``y``,
    ``softmax`` as for :func:`expected_moments`.
    """
    inv = Invariants.of(x, y) if loss == "squared" else None
    if depths is None:
        L = spec.depth
        depths = sorted({max(1, L // 2), max(1, L - 1), L + 1, 2 * L} - {L})
    out = []
    for alt, within in budget_family(spec, spec.params, depths, tolerance=tolerance):
        try:
            res = expected_moments(alt, x, y, delta=1.0, invariants=inv, loss=loss,
                                   progress=progress, softmax=softmax)
        except ValueError as err:
            res = str(err)
        out.append({"depth": alt.depth, "width": alt.width, "params": alt.params,
                    "within_tolerance": within, "result": res})
    return out


def width_for_budget(P: int, d: int, c: int, L: int) -> int | None:
    """Uniform width K ≥ 1 whose parameter count dK + (L-2)K² + Kc is closest to P
    (None for L = 1, which has no width)."""
    if L == 1:
        return None
    if not P > 0:
        raise ValueError(f"the parameter budget P must be positive, got {P}")
    a, b = L - 2, d + c
    if a == 0:
        k = P / b
    else:
        k = (-b + math.sqrt(b * b + 4 * a * P)) / (2 * a)
    best = None
    for K in {max(1, math.floor(k)), max(1, math.ceil(k))}:
        p = d * K + a * K * K + K * c
        if best is None or abs(p - P) < abs(best[1] - P):
            best = (K, p)
    return best[0]
