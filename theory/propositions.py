r"""The width-vs-depth statements (claim C1, README, "Definitions and conventions") as
checkable propositions.

* **P1** :math:`\bar B_S` increases with the width K at fixed depth L.
* **P2** :math:`\bar B_S` decreases with the depth L at fixed width K.
* **P3** at a fixed parameter budget P the wider-shallower net has the larger :math:`\bar B_S`.
* **Limits** (proved with sympy, linear fully connected nets, unit gains, any data):
  :math:`\lim_{K\to\infty}\bar B_S = n(cX_4 + dY_d)/(cF + dY_o)` for every L (depth stops
  mattering at infinite width); :math:`\lim_{L\to\infty}\bar B_S = 3nX_4/(X_2 + 2F)` for every
  K ≥ 2 (labels stop mattering; with Gaussian inputs this is :math:`3n/(n+2) < 3`). At large K
  and L the bound depends on :math:`r = L/K` only (:func:`scaling_limit`).

P1–P3 are verified on grids with the exact evaluator (:func:`theory.expected_moments`); each
check returns its violations, so a failure is visible. Known failure (found by these checks):
**P1 fails in the bottleneck regime** K < d — for Gaussian inputs :math:`\bar B_S` *decreases*
from K = 2 up to K ≈ 0.06–0.5·d (e.g. up to K ≈ 27–32 for d = 512) before increasing.
**P2 fails for deep ReLU nets at infinite width**: in the exact infinite-width (NTK) limit the
bound falls with depth, bottoms out (near L ≈ 12 on MNIST-1D) and then rises again (the deep
ReLU NTK keeps a fixed off-diagonal/diagonal ratio). At finite width this turn is *not* seen:
Monte Carlo at K = 256 on MNIST-1D shows the bound decreasing through L = 48.
"""

from __future__ import annotations


import numpy as np

from ._bounds import expected_moments
from ._budget import budget_family
from ._invariants import Invariants
from ._spec import NetSpec

REL_TOL = 1e-12  # ties closer than this (relative) are not violations: mpmath at 50 digits


def bound(spec: NetSpec, x=None, y=None, invariants: Invariants | None = None) -> float:
    """:math:`\\bar B_S` of one net (exact evaluator)."""
    return expected_moments(spec, x, y, invariants=invariants).batch_size_bound


def bound_grid(template: NetSpec, depths, widths, x=None, y=None, invariants=None):
    """:math:`\\bar B_S` on a depth × width grid (rows: depths, columns: widths)."""
    out = np.empty((len(depths), len(widths)))
    for i, L in enumerate(depths):
        for j, K in enumerate(widths):
            spec = template.reshaped(L, K)
            out[i, j] = bound(spec, x, y, invariants)
    return out


def width_violations(grid, depths, widths) -> list[tuple]:
    """(L, K_prev, K, B_prev, B) wherever :math:`\\bar B_S` fails to increase with K."""
    bad = []
    for i, L in enumerate(depths):
        for j in range(1, len(widths)):
            if grid[i, j] < grid[i, j - 1] * (1 - REL_TOL):
                bad.append((L, widths[j - 1], widths[j], grid[i, j - 1], grid[i, j]))
    return bad


def depth_violations(grid, depths, widths) -> list[tuple]:
    """(K, L_prev, L, B_prev, B) wherever :math:`\\bar B_S` fails to decrease with L."""
    bad = []
    for j, K in enumerate(widths):
        for i in range(1, len(depths)):
            if grid[i, j] > grid[i - 1, j] * (1 + REL_TOL):
                bad.append((K, depths[i - 1], depths[i], grid[i - 1, j], grid[i, j]))
    return bad


def budget_table(template: NetSpec, budget: int, depths, x=None, y=None, invariants=None,
                 tolerance: float = 0.05) -> list[dict]:
    """For each depth, the uniform width meeting ``budget`` (within ``tolerance``) and its
    :math:`\\bar B_S`; rows outside the tolerance are marked."""
    return [{"depth": spec.depth, "width": spec.width, "params": spec.params,
             "within_tolerance": within, "batch_size_bound": bound(spec, x, y, invariants)}
            for spec, within in budget_family(template, budget, depths, tolerance=tolerance)]


def budget_violations(rows) -> list[tuple]:
    """Pairs (shallower, deeper) within tolerance where the shallower-wider net does NOT have
    the larger bound."""
    ok = [r for r in rows if r["within_tolerance"]]
    bad = []
    for a in ok:
        for b in ok:
            if a["depth"] < b["depth"] and not (
                    a["batch_size_bound"] > b["batch_size_bound"] * (1 + REL_TOL)):
                bad.append((a["depth"], a["width"], b["depth"], b["width"],
                            a["batch_size_bound"], b["batch_size_bound"]))
    return bad


def scaling_limit(r=None):
    """Data-free (Gaussian inputs, c = 1) :math:`\\bar B_S` in the joint limit
    :math:`K, L \\to \\infty` with :math:`L/K = r` fixed (sympy; needs ``theory.symbolic``)."""
    import sympy as sp

    from . import symbolic as S

    rr = sp.Symbol("r", positive=True) if r is None else r
    B = S.data_free_bound().subs(S.c, 1)
    return sp.simplify(sp.limit(B.subs(S.L, rr * S.K), S.K, sp.oo)), rr
