r"""Expected :math:`S_1, S_2` at initialisation and the expected batch-size bound
:math:`\bar B_S = n E[S_1]/E[S_2]` for any :class:`~theory.NetSpec`, each labelled by kind.

=====================  ======================  ======================  =====================
family                 :math:`E[S_1]`          :math:`E[S_2]`          module
=====================  ======================  ======================  =====================
linear fc / residual   exact                   exact                   :mod:`theory._linear`
relu fc, depth 1       exact (linear model)    exact                   :mod:`theory._linear`
relu fc, depth 2       exact                   exact (arc-cosine)      :mod:`theory._kernels`
relu fc, depth >= 3    exact                   numerical (narrow)      :mod:`theory._pair_chain`
relu fc, depth >= 3    exact                   approximation (wide)    :mod:`theory._relu_chain`
relu residual          limit                   limit                   :mod:`theory._kernels`
any, cross-entropy     kind + " (linearised softmax)"                  :mod:`theory._softmax`
=====================  ======================  ======================  =====================

*Numerical* (deep fully connected ReLU :math:`E[S_2]` when the hidden widths sum to at most
:data:`PAIR_CHAIN_MAX_UNITS`, :func:`_pair_chain_parts`): an exact reduction of every pair's
contribution to a recursion of functions of the angle between the two inputs
(:mod:`theory._pair_chain`), integrated numerically to :data:`PAIR_CHAIN_PRECISION`; checked
against Monte Carlo within :data:`PAIR_CHAIN_VALIDATED` (README).

*Approximation* (deep ReLU :math:`E[S_2]`, :func:`_approx_parts`): finite-width norms,
infinite-width correlations, plus the first-order finite-width fluctuation of the angles between
inputs. Each layer's pair term is the infinite-width pair term times that layer's exact
finite-width factor for a single input, :math:`r_l = E[\text{term}_l(x,x)] /
\text{term}^\infty_l(x,x)` (input independent by homogeneity), with a fluctuation term that
makes the recipe exact on linear nets. It is exact for :math:`i = j` (consistent with the exact
:math:`E[S_1]`) and as :math:`K \to \infty`. Stated validity range
:data:`APPROX_VALID_L_OVER_K` (L/K ≤ 1/16) with relative error of :math:`E[S_2]` at most
:data:`APPROX_REL_ERROR` (10%), both from Monte Carlo (README).

*Limit* (residual ReLU): the infinite-width (NTK) pair terms evaluated at the given widths —
the leading order in :math:`1/K`.

Numbers are evaluated with mpmath at 50 significant digits (no overflow: arbitrary exponent
range); data invariants are float64 sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import mpmath
import numpy as np

from . import _linear, _pair_chain, _relu_chain, _softmax
from ._chain import Layer, chain_sum, chain_terms, uniform_sum
from ._diversity import batch_size_bound, check_delta, predicted_max_batch
from ._invariants import Invariants, check_real
from ._kernels import limit_terms, two_layer_relu_terms
from ._spec import MAX_DEPTH, LayerSpec, NetSpec

DPS = 50
LARGE_WIDTH_FACTOR = 10**30  # widths × this factor evaluate the K → ∞ limit
APPROX_VALID_L_OVER_K = Fraction(1, 16)  # deep-ReLU approximation checked for depth/width ≤ this
APPROX_REL_ERROR = 0.10  # stated bound on its relative error of E[S2] there (Monte Carlo, README)
#: Measured band of the relative error of E[S2], (theory - MC)/MC, outside that range: fully
#: connected ReLU, K = 16 and 32, L = 3..8 (L/K <= 1/2), MNIST-1D, Gaussian-teacher and
#: correlated data, n = 64, 40 000-120 000 nets per cell (README;
#: `python -m tests.measure_theory relu --arch fc`).
APPROX_OUTSIDE_ERROR = (-0.12, 0.38)
#: The same for residual ReLU nets (kind "limit": NTK pair terms at the given widths).
RESIDUAL_LIMIT_ERROR = (-0.82, -0.35)
KIND_ORDER = ("exact", "numerical", "approximation", "limit")
#: Deep fully connected ReLU nets whose hidden widths sum to at most this use the pair chain
#: (kind "numerical", :mod:`theory._pair_chain`) for E[S2]; wider ones the approximation.
PAIR_CHAIN_MAX_UNITS = 320
#: Stated precision of the pair chain's E[S2] (numerical integration, relative): spread over
#: draw seeds <= 0.36% (K = 16-32, L = 8) plus linear-interpolation bias <= +0.2% (README).
PAIR_CHAIN_PRECISION = 0.006
#: (smallest width, largest L/K, largest |error of E[S2]| seen): the pair chain against Monte
#: Carlo, fully connected ReLU, K = 16 and 32, L = 3..8, three data sets (README).
PAIR_CHAIN_VALIDATED = (16, Fraction(1, 2), 0.027)
PAIR_BLOCK_BYTES = 1 << 28  # memory of one block of ReLU pair terms (float64 arrays)
#: Deepest ReLU net (depth >= 3) evaluated; deeper ones are refused at once. The ReLU pair sums
#: cost O(n²·L) with a Python loop over the layers (L = 1000, K = 256, n = 128: 2.1 s on the
#: 2-core development machine under load; L = 20 000 would take minutes), and beyond L/K = 1/16
#: the approximation they feed is unvalidated anyway (README).
RELU_MAX_DEPTH = 2000
PROGRESS_PAIRS = 2 * 10**8  # pair-layer terms above which pair_sums shows a progress bar


def _mp(value):
    if isinstance(value, Fraction):
        return mpmath.mpf(value.numerator) / value.denominator
    return mpmath.mpf(value)


def transfer_args(layer: LayerSpec, conv) -> tuple:
    """(n_in, n_out, s^2, gamma^2, beta^2, p_in, p_out) of one layer, converted by ``conv``:
    the arguments of the transfer layers of :mod:`theory._linear` and :mod:`theory._relu_chain`
    (p = 1/2, the fraction of active units, after a ReLU; 1 otherwise). The symbolic closed
    forms call this with sympy values."""
    half, one = Fraction(1, 2), Fraction(1)
    values = (layer.fan_in, layer.fan_out, layer.gain_square, layer.skip_square,
              layer.branch_square, half if layer.relu_in else one,
              half if layer.relu_out else one)
    # ints become Fractions first: int / int would be a float in rational arithmetic
    return tuple(conv(Fraction(v) if isinstance(v, int) else v) for v in values)


def _layer_args(spec: NetSpec, conv, layers=None):
    """:func:`transfer_args` of the layers l (1-based, all by default) of ``spec``."""
    ls = range(1, spec.depth + 1) if layers is None else layers
    return [transfer_args(spec.layer(l), conv) for l in ls]


def linear_layers(spec: NetSpec, conv=_mp, layers=None) -> tuple[list[Layer], list[Layer]]:
    """(network, label) transfer layers of a linear-activation net (fc or residual)."""
    args = _layer_args(spec, conv, layers)
    net = [_linear.network_layer(a[0], a[1], a[2], a[3], a[4]) for a in args]
    lab = [_linear.label_layer(a[0], a[1], a[2], a[3], a[4]) for a in args]
    return net, lab


def relu_chain_layers(spec: NetSpec, conv=_mp, layers=None) -> tuple[list[Layer], list[Layer]]:
    """(network, label) single-input transfer layers of a fully connected net."""
    args = _layer_args(spec, conv, layers)
    c = conv(Fraction(spec.outputs))
    net = [_relu_chain.network_layer(a[0], a[1], a[2], a[5], a[6]) for a in args]
    lab = [_relu_chain.label_layer(a[0], a[1], a[2], a[5], a[6], c) for a in args]
    return net, lab


def _summation(spec: NetSpec, closed_form: bool = True):
    """(layers to build, how to sum them): (first, one hidden, last) and the O(1)-in-depth
    closed form when the hidden layers are one layer repeated (:attr:`NetSpec.hidden_repeats`,
    at least once), else all layers and the explicit recursion."""
    repeats = spec.hidden_repeats
    if closed_form and repeats is not None and repeats >= 1:
        return (1, 2, spec.depth), lambda layers, top, bottom: uniform_sum(
            *layers, spec.depth, top, bottom)
    return None, chain_sum


def _linear_exact(spec: NetSpec, inv: Invariants, closed_form: bool = True):
    """Exact (network, label) parts of E[S1] and E[S2] for linear-activation nets."""
    which, total = _summation(spec, closed_form)
    net, lab = linear_layers(spec, layers=which)
    top = _linear.network_top(_mp(Fraction(spec.outputs)))
    X4, X2, F, Yd, Yo = (_mp(v) for v in (inv.X4, inv.X2, inv.F, inv.Yd, inv.Yo))
    return {
        "S1_net": total(net, top, (X4, X4)),
        "S2_net": total(net, top, (X2, F)),
        "S1_label": total(lab, _linear.LABEL_TOP, (Yd,)),
        "S2_label": total(lab, _linear.LABEL_TOP, (Yo,)),
    }


def _relu_s1_terms(spec: NetSpec, inv: Invariants):
    """Exact per-layer single-input S1 terms (network, label) of a fully connected net."""
    net, lab = relu_chain_layers(spec)
    c = _mp(Fraction(spec.outputs))
    tn = chain_terms(net, _relu_chain.network_top(c), (_mp(inv.X4),))
    tl = chain_terms(lab, _relu_chain.LABEL_TOP, (_mp(inv.Yd),))
    return tn, tl


def _relu_s1_exact(spec: NetSpec, inv: Invariants, closed_form: bool = True):
    """Exact E[S1] (network, label) of a fully connected net by the single-input chain."""
    which, total = _summation(spec, closed_form)
    net, lab = relu_chain_layers(spec, layers=which)
    c = _mp(Fraction(spec.outputs))
    return (total(net, _relu_chain.network_top(c), (_mp(inv.X4),)),
            total(lab, _relu_chain.LABEL_TOP, (_mp(inv.Yd),)))


@dataclass(frozen=True)
class PairSums:
    """Per layer (arrays of length L): total sums over all pairs (i, j) and diagonal sums of the
    network and label pair terms, and :math:`\\sum_i \\sqrt{\\text{net}_l(i,i)}`."""

    net_sum: np.ndarray
    net_trace: np.ndarray
    net_sqrt: np.ndarray
    lab_sum: np.ndarray
    lab_trace: np.ndarray

    def parts(self) -> dict:
        """E[S1] (diagonal sums) and E[S2] (total sums)."""
        return {"S1_net": _mp(float(self.net_trace.sum())),
                "S2_net": _mp(float(self.net_sum.sum())),
                "S1_label": _mp(float(self.lab_trace.sum())),
                "S2_label": _mp(float(self.lab_sum.sum()))}

    def split(self, k: int) -> tuple["PairSums", "PairSums"]:
        """(the first k layers, the rest): terms of two nets summed in one pass."""
        arrays = (self.net_sum, self.net_trace, self.net_sqrt, self.lab_sum, self.lab_trace)
        return PairSums(*(a[:k] for a in arrays)), PairSums(*(a[k:] for a in arrays))


def pair_block_rows(n: int, depth: int) -> int:
    """Rows i per block of pair terms (i, 1..n): the block's float64 arrays (about 6 per layer
    plus temporaries, each rows × n) stay under :data:`PAIR_BLOCK_BYTES`."""
    per_row = 8 * n * (6 * depth + 24)
    return int(max(1, min(n, PAIR_BLOCK_BYTES // per_row)))


def pair_sums(terms, spec: NetSpec, x, y, *, progress: bool = False, layers: int | None = None
              ) -> PairSums:
    """Sum the symmetric pair terms ``terms(spec, x, y, rows, cols)`` (per layer, rows × cols
    arrays) over all pairs (i, j): blocks of rows against the columns j ≥ the block's first
    row, off-block pairs counted twice. O(n²·d) time (half the pairs evaluated),
    O(block·n·L) memory; never the n×n matrices.

    ``layers``: how many arrays ``terms`` returns (default ``spec.depth``). ``progress``: a
    tqdm bar on stderr when the run is long (> :data:`PROGRESS_PAIRS` pair-layer terms) and
    stderr is a terminal."""
    n, L = x.shape[0], spec.depth if layers is None else layers
    block = pair_block_rows(n, L)
    out = [np.zeros(L) for _ in range(5)]
    bar = None
    if progress and n * n * L > PROGRESS_PAIRS:
        from tqdm.auto import tqdm
        bar = tqdm(total=n * (n + 1) // 2, desc=f"pair sums ({L} layers)", unit="pair",
                   unit_scale=True, disable=None, leave=False)
    try:
        for start in range(0, n, block):
            stop = min(n, start + block)
            b = stop - start
            net, lab = terms(spec, x, y, slice(start, stop), slice(start, n))
            r = np.arange(b)
            for l in range(L):
                for k, arr in ((0, net[l]), (3, lab[l])):
                    out[k][l] += arr[:, :b].sum() + 2.0 * arr[:, b:].sum()
                    dg = arr[r, r]
                    out[k + 1][l] += dg.sum()
                    if k == 0:
                        out[2][l] += np.sqrt(np.maximum(dg, 0.0)).sum()
            del net, lab
            if bar is not None:
                bar.update(b * (n - start) - b * (b - 1) // 2)
    finally:
        if bar is not None:
            bar.close()
    return PairSums(*out)


def _bound_of(parts: dict, n: int) -> float:
    return float(batch_size_bound(parts["S1_net"] + parts["S1_label"],
                                  parts["S2_net"] + parts["S2_label"], n))


def _scaled(spec: NetSpec, factor: int) -> NetSpec:
    return replace(spec, widths=tuple(w * factor for w in spec.widths))


def _to_float(v) -> float | None:
    """float of an mpf, or None when it overflows float64 (the ``*_str`` keys keep it)."""
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class TheoryResult:
    """Expected moments at initialisation for one net and one data set, each with its kind."""

    spec: NetSpec
    n: int
    data: str
    expected_S1: mpmath.mpf
    expected_S2: mpmath.mpf
    kind_S1: str
    kind_S2: str
    parts: dict
    limit_batch_size_bound: float | None
    delta: float = 1.0
    notes: tuple = field(default_factory=tuple)
    loss: str = "squared"
    #: what the expectations average over (the data-free mode also averages over the inputs)
    averaged_over: str = "random init, data fixed"

    @property
    def kind(self) -> str:
        """Kind of the bound: the weakest of the kinds of E[S1] and E[S2] (a qualifier such as
        " (linearised softmax)" is kept)."""
        return max(self.kind_S1, self.kind_S2, key=lambda k: KIND_ORDER.index(k.split()[0]))

    @property
    def batch_size_bound(self) -> float:
        """:math:`\\bar B_S = n E[S_1]/E[S_2]` (ratio of expectations)."""
        return float(batch_size_bound(self.expected_S1, self.expected_S2, self.n))

    @property
    def predicted_max_batch(self) -> float:
        return float(predicted_max_batch(self.batch_size_bound, self.delta))

    def to_dict(self) -> dict:
        spec = self.spec
        return {
            "expected_S1": _to_float(self.expected_S1),
            "expected_S2": _to_float(self.expected_S2),
            "expected_S1_str": mpmath.nstr(self.expected_S1, 17),
            "expected_S2_str": mpmath.nstr(self.expected_S2, 17),
            "batch_size_bound": self.batch_size_bound,
            "B_simple": self.batch_size_bound - 1.0,
            "predicted_max_batch": self.predicted_max_batch,
            "delta": self.delta,
            "loss": self.loss,
            "kind": {"expected_S1": self.kind_S1, "expected_S2": self.kind_S2,
                     "batch_size_bound": self.kind, "predicted_max_batch": self.kind},
            "limit_batch_size_bound": self.limit_batch_size_bound,
            "parts": {k: _to_float(v) for k, v in self.parts.items()},
            "params": spec.params,
            "n": self.n,
            "input_dim": spec.input_dim,
            "depth": spec.depth,
            "widths": list(spec.widths),
            "activation": spec.activation,
            "arch": spec.arch,
            "outputs": spec.outputs,
            "gain_squares": [str(g) for g in spec.gain_squares],
            "alpha_square": None if spec.alpha_square is None else str(spec.alpha_square),
            "parameterization": spec.parameterization,
            "bound_definition": f"ratio of expectations n*E[S1]/E[S2] over {self.averaged_over}",
            "data": self.data,
            "notes": list(self.notes),
        }


def expected_moments(spec: NetSpec, x=None, y=None, *, delta: float = 1.0,
                     invariants: Invariants | None = None, data: str = "",
                     loss: str = "squared", progress: bool = False,
                     deep_relu: str = "auto") -> TheoryResult:
    """Expected :math:`S_1`, :math:`S_2` over random initial weights, data fixed.

    Args:
        spec: the network.
        x, y: data (n×d, n×c). Alternatively ``invariants`` (linear nets only), e.g.
            :meth:`Invariants.gaussian_expectation` for the data-free Gaussian-input mode.
            With ``loss="cross_entropy"``, ``y`` holds integer class labels (n,) in
            0..c−1, c = ``spec.outputs`` ≥ 2 (the number of logits).
        delta: the δ of the predicted maximum batch δ·B̄_S + 1.
        data: a description of the data, carried into the result.
        loss: ``"squared"`` (½‖f − y‖²) or ``"cross_entropy"`` (softmax cross-entropy,
            linearised at small logits: :mod:`theory._softmax`; every kind gets the suffix
            " (linearised softmax)", e.g. "exact (linearised softmax)").
        progress: a progress bar on stderr for long ReLU pair sums (terminal only).
        deep_relu: E[S2] of fully connected ReLU nets of depth ≥ 3: ``"pair_chain"`` (the
            exact reduction to the pair's angle, integrated numerically; kind "numerical"),
            ``"approximation"`` (the older closed recipe), or ``"auto"``: the pair chain when
            the hidden widths sum to at most :data:`PAIR_CHAIN_MAX_UNITS` (its cost grows with
            them), else the approximation.

    Example:
        >>> import numpy as np
        >>> from theory import NetSpec
        >>> x = np.eye(3); y = np.zeros((3, 1))
        >>> r = expected_moments(NetSpec(depth=1, widths=(), input_dim=3), x, y)
        >>> r.batch_size_bound, r.kind  # orthogonal inputs: B_S = n
        (3.0, 'exact')
    """
    _check_arguments(delta, x)
    with mpmath.workdps(DPS):
        if deep_relu not in ("auto", "pair_chain", "approximation"):
            raise ValueError(f"unknown deep_relu method {deep_relu!r}")
        if loss == "squared":
            return _expected_moments(spec, x, y, delta, invariants, data, progress, deep_relu)
        if loss != "cross_entropy":
            raise ValueError(f"unknown loss {loss!r} (choose 'squared' or 'cross_entropy')")
        if invariants is not None or x is None or y is None:
            raise ValueError("cross_entropy needs data x and integer class labels y")
        x = np.asarray(x, dtype=np.float64)
        reduced, z, c = _softmax.reduce(spec, y, x.shape[0] if x.ndim == 2 else None)
        r = _expected_moments(reduced, x, z, delta, None, data, progress, deep_relu)
        scale = mpmath.mpf(1) / (c * c)
        return replace(r, spec=spec, expected_S1=r.expected_S1 * scale,
                       expected_S2=r.expected_S2 * scale,
                       parts={k: v * scale for k, v in r.parts.items()},
                       kind_S1=r.kind_S1 + _softmax.SUFFIX, kind_S2=r.kind_S2 + _softmax.SUFFIX,
                       notes=r.notes + (_softmax.NOTE,), loss="cross_entropy")


def _check_arguments(delta, x) -> None:
    """Refuse a non-positive delta and complex x (before any cast drops the imaginary part)."""
    check_delta(delta)
    if x is not None:
        check_real("x", x)


def _expected_moments(spec, x, y, delta, invariants, data, progress=False, deep_relu="auto"):
    notes = []
    if invariants is None:
        if x is None or y is None:
            raise ValueError("give data x, y or invariants")
        inv = Invariants.of(x, y)
    else:
        inv = invariants  # precomputed (or data-free); x, y still serve the ReLU kernels
    if inv.d != spec.input_dim:
        raise ValueError(f"data has input dim {inv.d} but the net expects {spec.input_dim}")
    if inv.c != spec.outputs:
        raise ValueError(f"labels have {inv.c} columns but the net has {spec.outputs} outputs")
    _check_invariants(inv, x, y)
    n = inv.n
    relu = spec.activation == "relu" and spec.depth >= 2
    if relu:
        _check_relu_cost(spec)
    limit_bound = None
    if not relu:
        parts = _linear_exact(spec, inv)
        kinds = ("exact", "exact")
        if spec.depth >= 2:
            limit_bound = _bound_of(_linear_exact(_scaled(spec, LARGE_WIDTH_FACTOR), inv), n)
        if spec.activation == "relu":
            notes.append("depth 1 has no activation: the linear model's exact result")
    else:
        if x is None:
            raise ValueError("ReLU nets need data x, y (the data-free mode covers linear nets)")
        try:
            with np.errstate(over="raise"):  # float64 pair sums: overflow is an error, not inf
                parts, kinds, limit_bound = _relu_moments(spec, inv, x, y, notes, progress,
                                                          deep_relu)
        except (OverflowError, FloatingPointError) as err:
            raise ValueError(f"the ReLU moments overflow float64 ({err}): the gains or the "
                             f"data are too large; rescale them") from None
    if not all(mpmath.isfinite(v) for v in parts.values()):
        raise ValueError("the moments overflow float64 in the ReLU pair sums (E[S1] or E[S2] "
                         "is inf or nan): the gains or the data are too large; rescale them")
    return TheoryResult(
        spec=spec, n=n, data=data,
        expected_S1=parts["S1_net"] + parts["S1_label"],
        expected_S2=parts["S2_net"] + parts["S2_label"],
        kind_S1=kinds[0], kind_S2=kinds[1], parts=parts,
        limit_batch_size_bound=limit_bound, delta=delta, notes=tuple(notes),
    )


def _relu_moments(spec, inv, x, y, notes, progress, deep_relu):
    """(parts, kinds, K → ∞ bound) of a ReLU net of depth ≥ 2 (float64 pair sums); appends
    its notes to ``notes``."""
    n = inv.n
    if spec.arch == "fc" and spec.depth == 2:  # exact and K -> oo from the same moments
        both = pair_sums(lambda *a: two_layer_relu_terms(
            *a, width_factors=(1, LARGE_WIDTH_FACTOR)), spec, x, y, progress=progress,
            layers=4)
        parts, limit = both.split(2)
        limit_bound = _bound_of(limit.parts(), n)
    else:
        limit_bound = _bound_of(pair_sums(limit_terms, _scaled(spec, LARGE_WIDTH_FACTOR),
                                          x, y, progress=progress).parts(), n)
    if spec.arch == "residual":
        parts = pair_sums(limit_terms, spec, x, y, progress=progress).parts()
        kinds = ("limit", "limit")
        lo, hi = RESIDUAL_LIMIT_ERROR
        notes.append(f"residual ReLU: infinite-width (NTK) leading order at these widths; "
                     f"measured error of E[S2] {100 * lo:+.0f}% to {100 * hi:+.0f}% at "
                     f"K = 16-32, L = 3-8 with 10 outputs (finite-width corrections of "
                     f"order outputs/K), -6% at K = 256, L = 3 (Monte Carlo, README)")
    elif spec.depth == 2:
        parts = parts.parts()
        kinds = ("exact", "exact")
    elif deep_relu == "pair_chain" or (deep_relu == "auto"
                                       and sum(spec.widths) <= PAIR_CHAIN_MAX_UNITS):
        S1n, S1l, S2n, S2l = _pair_chain_parts(spec, inv, x, y, progress)
        parts = {"S1_net": S1n, "S2_net": S2n, "S1_label": S1l, "S2_label": S2l}
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
    else:
        S1n, S1l, S2n, S2l = _approx_parts(spec, inv, x, y, progress)
        parts = {"S1_net": S1n, "S2_net": S2n, "S1_label": S1l, "S2_label": S2l}
        kinds = ("exact", "approximation")
        ratio = Fraction(spec.depth, min(spec.widths))
        if ratio > APPROX_VALID_L_OVER_K:
            lo, hi = APPROX_OUTSIDE_ERROR
            notes.append(f"depth/width = {float(ratio):.3g} exceeds the approximation's "
                         f"checked range L/K <= {APPROX_VALID_L_OVER_K} (error of E[S2] "
                         f"<= {100 * APPROX_REL_ERROR:.0f}% there): measured error of "
                         f"E[S2] for K = 16-32, L/K <= 1/2 is {100 * lo:+.0f}% to "
                         f"{100 * hi:+.0f}% depending on the data, and at K = 256, "
                         f"L/K = 0.09-0.19 E[S2] is under-estimated (B_S-bar over-estimated "
                         f"by 16-19%) (Monte Carlo, README); narrower nets (hidden widths "
                         f"summing to <= {PAIR_CHAIN_MAX_UNITS}) use the pair chain")
    return parts, kinds, limit_bound


def _check_invariants(inv: Invariants, x, y) -> None:
    """One-line ValueErrors for data whose float64 invariants are unusable: all-zero inputs
    (B̄_S = 0/0), and inputs or labels so large or so small that the fourth-order sums
    overflow to inf or underflow to 0 (B̄_S would print as nan, or the data would be called
    zero)."""
    names = {"X4": "sum_i |x_i|^4", "X2": "(sum_i |x_i|^2)^2", "F": "sum_ij (x_i.x_j)^2",
             "Yd": "sum_i |y_i|^2 |x_i|^2", "Yo": "sum_ij (y_i.y_j)(x_i.x_j)"}
    big = [k for k in names if not math.isfinite(getattr(inv, k))]
    if big:
        largest = "" if x is None else f" (largest |x| entry {np.max(np.abs(x)):.3g}, " \
            f"largest |y| entry {np.max(np.abs(np.asarray(y, dtype=np.float64))):.3g})"
        raise ValueError(f"the data are too large for float64: {names[big[0]]} overflows"
                         f"{largest}; rescale x and y")
    if inv.X4 == 0:
        if x is not None and np.any(np.asarray(x) != 0):
            raise ValueError(f"the inputs are too small for float64: sum_i |x_i|^4 underflows "
                             f"to 0 (largest |x| entry {np.max(np.abs(x)):.3g}); rescale x "
                             f"and y")
        raise ValueError("every input row is zero: all gradients vanish at every "
                         "initialisation, so B_S-bar = n*E[S1]/E[S2] = 0/0 is undefined")


def _check_relu_cost(spec: NetSpec) -> None:
    """Refuse, before any work, ReLU nets that the float64 pair sums cannot evaluate: deeper
    than :data:`RELU_MAX_DEPTH`, or with a gain square outside the float64 range."""
    if spec.depth > RELU_MAX_DEPTH:
        raise ValueError(f"ReLU nets deeper than {RELU_MAX_DEPTH} weight matrices are not "
                         f"evaluated (depth {spec.depth}): the pair sums cost O(n^2 * depth) "
                         f"(depth 1000, n = 128: about 2 s) and the deep-ReLU approximation is "
                         f"unvalidated beyond depth/width 1/16; use numerics' Monte Carlo "
                         f"(python -m numerics.check) for such nets")
    for l, s2 in enumerate(spec.gain_squares, 1):
        try:
            ok = 0 < float(s2) < math.inf
        except OverflowError:
            ok = False
        if not ok:
            raise ValueError(f"gain s_{l}^2 = {mpmath.nstr(_mp(s2), 3)} is outside the float64 "
                             f"range that the ReLU pair sums use")


def _pair_chain_parts(spec: NetSpec, inv: Invariants, x, y, progress: bool = False):
    """Deep fc ReLU: exact E[S1] (single-input chain) and E[S2] from the pair chain
    (:mod:`theory._pair_chain`) off the diagonal plus the exact diagonal. The angle functions
    are scaled so that their value at angle 0 is the exact single-input one (a control
    variate: the numerical noise is common to all angles)."""
    tn, tl = _relu_s1_terms(spec, inv)
    unit = Invariants(n=1, d=spec.input_dim, c=spec.outputs, X4=1.0, X2=1.0, F=1.0, Yd=1.0,
                      Yo=1.0)
    e_net, e_lab = (float(sum(t)) for t in _relu_s1_terms(spec, unit))
    grid, pn, pl = _pair_chain.pair_functions(spec)
    pn = pn * (e_net / pn[0])
    pl = pl * (e_lab / pl[0])
    ps = pair_sums(lambda sp, xx, yy, rows, cols: _pair_chain.pair_terms(
        grid, pn, pl, xx, yy, rows, cols), spec, x, y, progress=progress, layers=1)
    S1n, S1l = sum(tn), sum(tl)
    S2n = S1n + _mp(float(ps.net_sum[0] - ps.net_trace[0]))
    S2l = S1l + _mp(float(ps.lab_sum[0] - ps.lab_trace[0]))
    return S1n, S1l, S2n, S2l


def _approx_parts(spec: NetSpec, inv: Invariants, x, y, progress: bool = False):
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
    tn, tl = _relu_s1_terms(spec, inv)
    ps = pair_sums(limit_terms, spec, x, y, progress=progress)
    args = _layer_args(spec, _mp)
    S2n = S2l = _mp(0)
    rho = _mp(1)
    for l in range(spec.depth):
        dn = float(ps.net_trace[l])
        if dn != 0:
            pair = _mp(float(ps.net_sum[l]))
            spread = _mp(float(ps.net_sqrt[l])) ** 2 - pair  # sum_ij sqrt(T(i,i) T(j,j)) - T
            S2n += tn[l] / _mp(dn) * (pair + (1 - rho) / 3 * spread)
        dl = float(ps.lab_trace[l])
        if dl != 0:
            S2l += tl[l] / _mp(dl) * _mp(float(ps.lab_sum[l]))
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
        _, _, S2n, S2l = _approx_parts(spec, inv, x, y)
        exact = _linear_exact(spec, inv)
        return S2n + S2l, exact["S2_net"] + exact["S2_label"]


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
                             loss: str = "squared", progress: bool = False):
    """Nets of other depths whose parameter count is within ``tolerance`` of ``spec.params``.

    For each depth, the uniform width K with P(d, K, L, c) closest to the budget; those outside
    the tolerance are reported with ``within_tolerance=False``. Returns a list of dicts with
    depth, width, params and the theory result (or an error string). ``loss``, ``y`` as for
    :func:`expected_moments`.
    """
    inv = Invariants.of(x, y) if loss == "squared" else None
    if depths is None:
        L = spec.depth
        depths = sorted({max(1, L // 2), max(1, L - 1), L + 1, 2 * L} - {L})
    out = []
    for alt, within in budget_family(spec, spec.params, depths, tolerance=tolerance):
        try:
            res = expected_moments(alt, x, y, delta=1.0, invariants=inv, loss=loss,
                                   progress=progress)
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
