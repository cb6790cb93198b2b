r"""The older deep-ReLU approximation of E[S2] (nets too wide for the pair chain): finite-width
norms, infinite-width correlations, plus the first-order finite-width fluctuation of the angles
between inputs (:func:`approx_parts`). Stated validity range :data:`APPROX_VALID_L_OVER_K`
(L/K ≤ 1/16) with relative error of E[S2] at most :data:`APPROX_REL_ERROR` (10%), both from
Monte Carlo (README).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath

from . import _relu_chain
from ._invariants import Invariants
from ._kernels import limit_terms
from ._pair_sums import pair_sums
from ._spec import NetSpec
from ._transfer import DPS, layer_args, linear_exact, mp, relu_s1_terms

APPROX_VALID_L_OVER_K = Fraction(1, 16)  # deep-ReLU approximation checked for depth/width ≤ this
APPROX_REL_ERROR = 0.10  # stated bound on its relative error of E[S2] there (Monte Carlo, README)
#: Measured band of the relative error of E[S2], (theory - MC)/MC, outside that range: fully
#: connected ReLU, K = 16 and 32, L = 3..8 (L/K <= 1/2), MNIST-1D, Gaussian-teacher and
#: correlated data, n = 64, 40 000-120 000 nets per cell (README;
#: `python -m tests.measure_theory relu --arch fc`).
APPROX_OUTSIDE_ERROR = (-0.12, 0.38)


def outside_note(ratio) -> str:
    """The note printed when depth/width exceeds the approximation's checked range."""
    lo, hi = APPROX_OUTSIDE_ERROR
    return (f"depth/width = {float(ratio):.3g} exceeds the approximation's checked range "
            f"L/K <= {APPROX_VALID_L_OVER_K} (error of E[S2] <= {100 * APPROX_REL_ERROR:.0f}% "
            f"there): measured error of E[S2] for K = 16-32, L/K <= 1/2 is {100 * lo:+.0f}% "
            f"to {100 * hi:+.0f}% depending on the data (Monte Carlo, README); narrower nets "
            f"use the pair chain")


def approx_parts(spec: NetSpec, inv: Invariants, x, y, progress: bool = False):
    r"""The deep-ReLU approximation: (E[S1]_net, E[S1]_label, E[S2]_net, E[S2]_label).

    Per layer l, with :math:`T^\infty_l(i,j)` the infinite-width pair term and
    :math:`r_l = E[\text{term}_l(x,x)]/T^\infty_l(x,x)` the exact single-input factor:

    .. math::

        \text{term}_l(i,j) \approx r_l\Big[T^\infty_l(i,j) + \tfrac{1 - \rho_l}{3}
        \big(\sqrt{T^\infty_l(i,i)T^\infty_l(j,j)} - T^\infty_l(i,j)\big)\Big],\qquad
        \rho_l = \prod_{k<l} \mu_k / f_k

    for the network term (:func:`theory._relu_chain.fourth_moment_factors`); the label term uses
    :math:`r_l T^\infty_l(i,j)`. The bracket's second part is the finite-width fluctuation of
    the angle between inputs; for linear nets (p = 1, :math:`\rho_l = \Lambda_-/\Lambda_+`)
    the formula is exact, and it is exact for every net on the diagonal and as K → ∞.
    """
    tn, tl = relu_s1_terms(spec, inv)
    ps = pair_sums(limit_terms, spec, x, y, progress=progress)
    args = layer_args(spec, mp)
    S2n = S2l = mp(0)
    rho = mp(1)
    for l in range(spec.depth):
        dn = float(ps.net_trace[l])
        if dn != 0:
            pair = mp(float(ps.net_sum[l]))
            spread = mp(float(ps.net_sqrt[l])) ** 2 - pair  # sum_ij sqrt(T(i,i) T(j,j)) - T
            S2n += tn[l] / mp(dn) * (pair + (1 - rho) / 3 * spread)
        dl = float(ps.lab_trace[l])
        if dl != 0:
            S2l += tl[l] / mp(dl) * mp(float(ps.lab_sum[l]))
        n_in, n_out, s2, _, _, _, p_out = args[l]
        f, mu = _relu_chain.fourth_moment_factors(n_in, n_out, s2, p_out)
        rho *= mu / f
    return sum(tn), sum(tl), S2n, S2l


def approx_relu_as_linear(spec: NetSpec, x, y):
    """The deep-ReLU approximation's recipe applied to a *linear* net, where the exact answer is
    known: returns (E[S2]_approx, E[S2]_exact) as mpf."""
    if spec.activation != "linear" or spec.arch != "fc":
        raise ValueError("approx_relu_as_linear takes a linear fully connected net")
    inv = Invariants.of(x, y)
    with mpmath.workdps(DPS):
        _, _, S2n, S2l = approx_parts(spec, inv, x, y)
        exact = linear_exact(spec, inv)
        return S2n + S2l, exact["S2_net"] + exact["S2_label"]
