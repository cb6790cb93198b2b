r"""The family registry: which method covers which net, with what kind, and how far it is
from the true expectation.

Every net :func:`theory.expected_moments` evaluates belongs to exactly one :class:`Family`:

================  =====================================  ==========  =============  =========
family            nets                                   E[S1]       E[S2]          module
================  =====================================  ==========  =============  =========
``linear``        linear activation (fc or residual);    exact       exact          _linear
                  any activation at depth 1
``relu-2``        fully connected ReLU, depth 2          exact       exact          _kernels
``relu-deep-fc``  fully connected ReLU, depth >= 3       exact       numerical      _pair_chain
``relu-residual`` residual ReLU                          limit       limit          _kernels
================  =====================================  ==========  =============  =========

:func:`covers` answers, without computing anything, whether a net (and a loss) is covered and
with which kinds — or why not; "not covered" is never a ValueError raised half-way through a
computation (bad *data* still raise ValueError from :func:`theory.expected_moments`).
Each family also states its measured error against Monte Carlo and how to run that Monte
Carlo (``reference``): ``tests/test_theory_families.py`` pairs every family with its
Monte-Carlo estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable

from . import _pair_chain, _softmax
from ._invariants import Invariants
from ._kernels import limit_terms, two_layer_relu_terms
from ._pair_sums import pair_sums
from ._result import bound_of, weakest
from ._spec import NetSpec
from ._transfer import linear_exact, mp, relu_s1_terms

LARGE_WIDTH_FACTOR = 10**30  # widths × this factor evaluate the K → ∞ limit
#: Deepest ReLU net (depth >= 3) evaluated; deeper ones are refused at once. The K -> oo pair
#: sums cost O(n²·L) (L = 1000, K = 256, n = 128: 2.1 s) and the pair chain about 0.05 s of CPU
#: per layer at K >= 256 but 0.5 s at K = 16 for L = 40 (more draws for narrow layers, more
#: angles for deep nets; :mod:`theory._pair_chain`): L = 2000 takes minutes at K = 256 and is
#: far beyond L/K = 1/2, where E[S2] is unvalidated (README).
RELU_MAX_DEPTH = 2000
#: Measured band of the relative error of E[S2], (theory - MC)/MC, of residual ReLU nets
#: (kind "limit": NTK pair terms at the given widths), K = 16-32, L = 3-8, 10 outputs (README);
#: E[S1] has the same kind and was measured in the same band (-73% at K = 16, L = 4; -22% at
#: K = 64, L = 3, MNIST-1D, n = 8). The limit under-estimates by less as K grows (-6% at
#: K = 256, L = 3), so the family's stated band over all widths is (-82%, 0).
RESIDUAL_LIMIT_ERROR = (-0.82, -0.35)
#: Stated precision of the pair chain's E[S2] (numerical integration, relative): spread over
#: draw seeds 0.11-0.34% (K = 16-1024, L = 8-32), offset of the draw rule from 4-8x the
#: draws <= 0.12% and linear-interpolation bias <= +0.17% (README).
PAIR_CHAIN_PRECISION = 0.006
#: (smallest width, largest L/K, largest |error of E[S2]| seen): the pair chain against Monte
#: Carlo, fully connected ReLU, K = 16-1024, L = 3..32, three data sets, every cell that the
#: Monte Carlo resolves (README; Gaussian data at K = 32, L = 8 read -3.1% +- 1.5% at 40 000
#: nets, -1.6% +- 1.1% at 60 000; L/K = 1/2 at K = 64 is beyond the Monte Carlo's reach).
PAIR_CHAIN_VALIDATED = (16, Fraction(1, 2), 0.017)


def monte_carlo_command(spec: NetSpec) -> str:
    """The ``numerics.check`` command line that estimates this net's moments by Monte Carlo
    (add the data options of the theory run)."""
    widths = (f"--width {spec.width}" if spec.width is not None
              else "--widths " + ",".join(map(str, spec.widths)) if spec.widths else "")
    parts = ["python -m numerics.check", f"--depth {spec.depth}", widths,
             f"--activation {spec.activation}", f"--arch {spec.arch}"]
    if spec.gains is not None:
        parts.append("--gains " + ",".join(f"{float(g):g}" for g in spec.gains))
    if spec.alpha is not None:
        parts.append(f"--alpha {float(spec.alpha):g}")
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Family:
    """One family of nets and the method that evaluates it.

    Attributes:
        name: registry key.
        nets: which nets, in words.
        kind_S1, kind_S2: kinds of E[S1] and E[S2] for the squared loss.
        module: where the method lives.
        needs_data: the method needs the data themselves (ReLU angles), not only the
            invariants (so the data-free Gaussian-input mode does not apply).
        error: (low, high) relative error of E[S1] and E[S2] vs the true expectations: (0, 0)
            for exact families, the validated band for numerical ones (E[S1] stays exact),
            the measured band for limits (README).
        matches: whether a spec belongs to the family.
        compute: ``(spec, inv, x, y, progress) -> (parts, kinds, K→∞ bound,
            notes)``.
    """

    name: str
    nets: str
    kind_S1: str
    kind_S2: str
    module: str
    needs_data: bool
    error: tuple[float, float]
    matches: Callable[[NetSpec], bool]
    compute: Callable


@dataclass(frozen=True)
class Coverage:
    """What :func:`covers` says of one net and loss: its family and kinds, or why it is not
    covered (``reason``)."""

    family: str | None
    kind_S1: str | None
    kind_S2: str | None
    reason: str | None = None
    needs_data: bool = True
    notes: tuple = ()

    @property
    def covered(self) -> bool:
        return self.reason is None

    @property
    def kind(self) -> str | None:
        """Kind of B̄_S: the weaker of the two."""
        if not self.covered:
            return None
        return weakest(self.kind_S1, self.kind_S2)


def _scaled(spec: NetSpec, factor: int) -> NetSpec:
    return replace(spec, widths=tuple(w * factor for w in spec.widths))


# ------------------------------------------------------------------------- the families
def _linear(spec, inv, x, y, progress):
    parts = linear_exact(spec, inv)
    limit = None
    if spec.depth >= 2:
        limit = bound_of(linear_exact(_scaled(spec, LARGE_WIDTH_FACTOR), inv), inv.n)
    notes = []
    if spec.activation == "relu":
        notes.append("depth 1 has no activation: the linear model's exact result")
    return parts, ("exact", "exact"), limit, notes


def _relu_limit_bound(spec, x, y, progress):
    return bound_of(pair_sums(limit_terms, _scaled(spec, LARGE_WIDTH_FACTOR), x, y,
                              progress=progress).parts(), x.shape[0])


def _relu_two_layer(spec, inv, x, y, progress):
    # exact and K -> oo from the same moments, in one pass over the pairs
    both = pair_sums(lambda *a: two_layer_relu_terms(
        *a, width_factors=(1, LARGE_WIDTH_FACTOR)), spec, x, y, progress=progress, layers=4)
    parts, limit = both.split(2)
    return parts.parts(), ("exact", "exact"), bound_of(limit.parts(), inv.n), []


def _relu_deep_fc(spec, inv, x, y, progress):
    limit = _relu_limit_bound(spec, x, y, progress)
    notes = []
    S1n, S1l, S2n, S2l = pair_chain_parts(spec, inv, x, y, progress)
    kinds = ("exact", "numerical")
    notes.append(f"E[S2]: exact reduction to the angle between the inputs of each "
                 f"pair, integrated numerically (precision about "
                 f"{100 * PAIR_CHAIN_PRECISION:.1f}% of E[S2]; within "
                 f"{100 * PAIR_CHAIN_VALIDATED[2]:.1f}% of Monte Carlo for K >= "
                 f"{PAIR_CHAIN_VALIDATED[0]}, L/K <= {PAIR_CHAIN_VALIDATED[1]}, README)")
    K_min = min(spec.widths)
    if K_min < PAIR_CHAIN_VALIDATED[0] or Fraction(spec.depth, K_min) > \
            PAIR_CHAIN_VALIDATED[1]:
        notes.append(f"this net (narrowest width {K_min}, L/K = "
                     f"{spec.depth / K_min:.3g}) is outside the range checked against "
                     f"Monte Carlo (K >= {PAIR_CHAIN_VALIDATED[0]}, L/K <= "
                     f"{PAIR_CHAIN_VALIDATED[1]}); the reduction is exact at every "
                     f"width, but its numerical noise there is unmeasured")
    parts = {"S1_net": S1n, "S2_net": S2n, "S1_label": S1l, "S2_label": S2l}
    return parts, kinds, limit, notes


def _relu_residual(spec, inv, x, y, progress):
    limit = _relu_limit_bound(spec, x, y, progress)
    parts = pair_sums(limit_terms, spec, x, y, progress=progress).parts()
    lo, hi = RESIDUAL_LIMIT_ERROR
    notes = [f"residual ReLU: infinite-width (NTK) leading order at these widths; measured "
             f"error of E[S2] {100 * lo:+.0f}% to {100 * hi:+.0f}% at K = 16-32, L = 3-8 with "
             f"10 outputs (finite-width corrections of order outputs/K), -6% at K = 256, "
             f"L = 3 (Monte Carlo, README)",
             f"Monte Carlo is the reference for residual ReLU nets: "
             f"{monte_carlo_command(spec)} (with the same data options)"]
    return parts, ("limit", "limit"), limit, notes


def pair_chain_parts(spec: NetSpec, inv: Invariants, x, y, progress: bool = False):
    """Deep fc ReLU: exact E[S1] (single-input chain) and E[S2] from the pair chain
    (:mod:`theory._pair_chain`) off the diagonal plus the exact diagonal. The angle functions
    are scaled so that their value at angle 0 is the exact single-input one (a control
    variate: the numerical noise is common to all angles)."""
    tn, tl = relu_s1_terms(spec, inv)
    unit = Invariants(n=1, d=spec.input_dim, c=spec.outputs, X4=1.0, X2=1.0, F=1.0, Yd=1.0,
                      Yo=1.0)
    e_net, e_lab = (float(sum(t)) for t in relu_s1_terms(spec, unit))
    grid, pn, pl = _pair_chain.pair_functions(spec)
    pn = pn * (e_net / pn[0])
    pl = pl * (e_lab / pl[0])
    ps = pair_sums(lambda sp, xx, yy, rows, cols: _pair_chain.pair_terms(
        grid, pn, pl, xx, yy, rows, cols), spec, x, y, progress=progress, layers=1)
    S1n, S1l = sum(tn), sum(tl)
    S2n = S1n + mp(float(ps.net_sum[0] - ps.net_trace[0]))
    S2l = S1l + mp(float(ps.lab_sum[0] - ps.lab_trace[0]))
    return S1n, S1l, S2n, S2l


def _is_linear(spec):
    return spec.activation == "linear" or spec.depth == 1


FAMILIES = (
    Family("linear", "linear activation, fully connected or residual, any depth, widths, "
           "gains, outputs and labels (and any net of depth 1)", "exact", "exact",
           "theory/_linear.py", False, (0.0, 0.0), _is_linear, _linear),
    Family("relu-2", "fully connected ReLU, depth 2 (both layers trained)", "exact", "exact",
           "theory/_kernels.py", True, (0.0, 0.0),
           lambda s: s.activation == "relu" and s.arch == "fc" and s.depth == 2,
           _relu_two_layer),
    Family("relu-deep-fc", "fully connected ReLU, depth >= 3", "exact", "numerical",
           "theory/_pair_chain.py", True, (-PAIR_CHAIN_VALIDATED[2], PAIR_CHAIN_VALIDATED[2]),
           lambda s: s.activation == "relu" and s.arch == "fc" and s.depth >= 3,
           _relu_deep_fc),
    Family("relu-residual", "residual ReLU (blocks h <- h + alpha W relu(h))", "limit",
           "limit", "theory/_kernels.py", True, (RESIDUAL_LIMIT_ERROR[0], 0.0),
           lambda s: s.activation == "relu" and s.arch == "residual", _relu_residual),
)
LOSSES = ("squared", "cross_entropy")


def family_of(spec: NetSpec) -> Family:
    """The one family of ``spec``."""
    found = [f for f in FAMILIES if f.matches(spec)]
    assert len(found) == 1, (spec, [f.name for f in found])  # the registry partitions nets
    return found[0]


def covers(spec: NetSpec, loss: str = "squared", *, data_free: bool = False,
           softmax: str = "gaussian") -> Coverage:
    """Whether theory covers ``spec`` under ``loss`` and with which kinds, without computing.

    Args:
        spec: the net.
        loss: ``"squared"`` or ``"cross_entropy"``.
        data_free: the expectation also over i.i.d. Gaussian inputs with zero labels
            (:meth:`Invariants.gaussian_expectation`), which needs a family that works
            from the data invariants alone.
        softmax: the cross-entropy method, as for :func:`theory.expected_moments`.

    Returns:
        a :class:`Coverage`; ``reason`` says why a net is not covered (then the kinds are
        None).

    Example:
        >>> from theory import NetSpec
        >>> covers(NetSpec.uniform(4, 16, 8, activation="relu")).kind_S2
        'numerical'
        >>> covers(NetSpec.uniform(4, 16, 8, activation="relu"), data_free=True).reason
        'the data-free mode covers nets evaluated from the data invariants alone (family linear); this is relu-deep-fc, whose moments need the angles between the data points'
    """
    if loss not in LOSSES:
        return Coverage(None, None, None, f"unknown loss {loss!r} (choose from {LOSSES})")
    fam = family_of(spec)

    def no(reason):
        return Coverage(fam.name, None, None, reason, fam.needs_data)

    if data_free and (fam.needs_data or loss != "squared"):
        if loss != "squared":
            return no("the data-free mode covers the squared loss with zero labels")
        return no(f"the data-free mode covers nets evaluated from the data invariants alone "
                  f"(family linear); this is {fam.name}, whose moments need the angles "
                  f"between the data points")
    if loss == "cross_entropy" and spec.outputs < 2:
        return no(f"cross_entropy needs at least 2 outputs (classes), the net has "
                  f"{spec.outputs}")
    if fam.needs_data:
        if spec.depth > RELU_MAX_DEPTH:
            return no(f"ReLU nets deeper than {RELU_MAX_DEPTH} weight matrices are not "
                      f"evaluated (depth {spec.depth}): the pair sums cost O(n^2 * depth); "
                      f"use Monte Carlo: {monte_carlo_command(spec)}")
        for l, s2 in enumerate(spec.gain_squares, 1):
            try:
                ok = 0 < float(s2) < math.inf
            except OverflowError:
                ok = False
            if not ok:
                return no(f"gain s_{l}^2 = {float(s2) if s2 < 10**300 else '>1e300'} is "
                          f"outside the float64 range that the ReLU pair sums use")
    kind_S2 = fam.kind_S2
    if loss == "cross_entropy":
        return Coverage(fam.name, _softmax.kind_of(fam.kind_S1, softmax),
                        _softmax.kind_of(kind_S2, softmax), None, fam.needs_data)
    return Coverage(fam.name, fam.kind_S1, kind_S2, None, fam.needs_data)
