"""Property tests (hypothesis): for random small linear nets crossing widths (equal and unequal)
× gains (equal and unequal) × arch (fc / residual) × outputs × branch scale α × labels (zero /
teacher) × loss, the exact moments agree three ways:

* ``expected_moments`` (the dispatch, which takes the O(1)-in-depth closed form whenever
  :attr:`NetSpec.hidden_repeats` allows it),
* the layer-by-layer recursion with every layer explicit (``closed_form=False``),
* an independent brute force that shares nothing with theory/ but :class:`NetSpec`: the
  per-example gradients of every weight configuration of the three-point Gauss-Hermite rule
  (``tests/_bruteforce.exact_linear_moments``; exact for linear nets, see its docstring).

Equal hidden widths with unequal hidden gains once took the closed form with layer 2's gain
for every hidden layer (issue 14); these tests fail on that code (e.g. the first explicit
example below: E[S1] off by a factor ~2).

Tolerances:

* ``REL_MP = 1e-25``: dispatch vs recursion, both in 50-digit mpmath on the same float64
  invariants; the closed form's geometric sums (x^m − y^m)/(x − y) lose at most a few digits
  to cancellation at these widths (ratios of eigenvalues ≥ 1 + 1/9), far from 25.
* ``REL_BF = 1e-9``: theory vs the brute force, which sums at most 3**10 nonnegative float64
  terms (pairwise summation, no cancellation; measured ≤ 2e-15), each a product of ≲ 20 float64
  factors: rounding ≲ 1e-13 relative, with a wide margin.
"""

from fractions import Fraction

import mpmath
import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

import theory._transfer as B
from theory import Invariants, NetSpec, expected_moments

from ._bruteforce import exact_linear_moments, linearised_softmax_grad

REL_MP = mpmath.mpf("1e-25")
REL_BF = 1e-9
MAX_PARAMS = 10  # 3**10 = 59 049 networks per brute-force example (~0.3 s)
GAINS = (Fraction(1, 2), Fraction(1), Fraction(3, 2), Fraction(7, 5))


@st.composite
def small_linear_nets(draw):
    """(spec, x, y, loss): a linear net with at most MAX_PARAMS weights and its data."""
    arch = draw(st.sampled_from(("fc", "residual")))
    loss = draw(st.sampled_from(("squared", "cross_entropy")))
    depth = draw(st.integers(3 if arch == "residual" else 1, 4))
    d = draw(st.integers(1, 2))
    c = draw(st.integers(2, 3) if loss == "cross_entropy" else st.integers(1, 2))
    if arch == "residual" or draw(st.booleans()):  # equal hidden widths
        widths = (draw(st.integers(1, 2)),) * (depth - 1)
    else:
        widths = tuple(draw(st.integers(1, 3)) for _ in range(depth - 1))
    if draw(st.booleans()):  # equal gains (one value, or the defaults)
        g = draw(st.sampled_from((None,) + GAINS))
        gains = None if g is None else (g,) * depth
    else:
        gains = tuple(draw(st.sampled_from(GAINS)) for _ in range(depth))
    alpha = draw(st.sampled_from((None, Fraction(1, 2), Fraction(3, 2)))) \
        if arch == "residual" else None
    n = draw(st.integers(1, 3))
    labels = draw(st.sampled_from(("zero", "teacher")))
    seed = draw(st.integers(0, 2**16))
    spec = NetSpec(depth=depth, widths=widths, input_dim=d, outputs=c, arch=arch, gains=gains,
                   alpha=alpha)
    assume(spec.params <= MAX_PARAMS)  # 3**params networks in the brute force
    return _with_data(spec, n, labels, loss, seed)


def _with_data(spec, n, labels, loss, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, spec.input_dim))
    if loss == "cross_entropy":
        y = rng.integers(0, spec.outputs, n)
    elif labels == "teacher":
        y = x @ rng.standard_normal((spec.input_dim, spec.outputs)) / np.sqrt(spec.input_dim)
    else:
        y = np.zeros((n, spec.outputs))
    return spec, x, y, loss


def _rel(a, b):
    return abs(a / b - 1)


# Issue 14's class of inputs, always tried: equal hidden widths, unequal hidden gains (fc with
# teacher labels; residual; cross-entropy).
@example(_with_data(NetSpec(depth=4, widths=(1, 1, 1), input_dim=2, outputs=2,
                            gains=(1, Fraction(3, 2), 1, 1)), 3, "teacher", "squared", 1))
@example(_with_data(NetSpec(depth=4, widths=(1, 1, 1), input_dim=2, outputs=1, arch="residual",
                            gains=(1, Fraction(1, 2), Fraction(3, 2), 1)), 2, "zero",
                    "squared", 2))
@example(_with_data(NetSpec(depth=4, widths=(1, 1, 1), input_dim=2, outputs=3,
                            gains=(1, Fraction(3, 2), 1, 1)), 3, "", "cross_entropy", 3))
@settings(deadline=None, max_examples=40, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(small_linear_nets())
def test_exact_equals_recursion_equals_bruteforce(case):
    spec, x, y, loss = case
    r = expected_moments(spec, x, y, loss=loss, softmax="linearised")  # the brute force's loss
    grad = (lambda f, yy: linearised_softmax_grad(f, yy)) if loss == "cross_entropy" else None
    e1, e2 = exact_linear_moments(spec, x, y, output_grad=grad, max_params=MAX_PARAMS)
    assert _rel(float(r.expected_S1), e1) <= REL_BF, (spec, float(r.expected_S1), e1)
    assert _rel(float(r.expected_S2), e2) <= REL_BF, (spec, float(r.expected_S2), e2)
    if loss == "squared":  # the dispatch vs every layer explicit, in 50-digit arithmetic
        inv = Invariants.of(x, y)
        with mpmath.workdps(B.DPS):
            rec = B.linear_exact(spec, inv, closed_form=False)
            S1 = rec["S1_net"] + rec["S1_label"]
            S2 = rec["S2_net"] + rec["S2_label"]
            assert _rel(r.expected_S1, S1) <= REL_MP and _rel(r.expected_S2, S2) <= REL_MP


@st.composite
def nets(draw):
    """Wider and deeper nets (no brute force): linear or ReLU, fc or residual."""
    arch = draw(st.sampled_from(("fc", "residual")))
    activation = draw(st.sampled_from(("linear", "relu")))
    depth = draw(st.integers(3, 12))
    if arch == "residual" or draw(st.booleans()):
        widths = (draw(st.integers(2, 9)),) * (depth - 1)
    else:
        widths = tuple(draw(st.integers(2, 9)) for _ in range(depth - 1))
    hidden = draw(st.sampled_from(GAINS))
    gains = [draw(st.sampled_from(GAINS)), *([hidden] * (depth - 2)),
             draw(st.sampled_from(GAINS))]
    if draw(st.booleans()):  # perturb one hidden gain: the hidden layers differ
        k = draw(st.integers(1, depth - 2))
        gains[k] = draw(st.sampled_from([g for g in GAINS if g != hidden]))
    alpha = draw(st.sampled_from((None, Fraction(1, 3), Fraction(2)))) \
        if arch == "residual" else None
    outputs = draw(st.integers(1, 3))
    return NetSpec(depth=depth, widths=widths, input_dim=draw(st.integers(1, 5)),
                   outputs=outputs, activation=activation, arch=arch, gains=tuple(gains),
                   alpha=alpha)


@settings(deadline=None, max_examples=60, derandomize=True)
@given(nets(), st.sampled_from(("zero", "teacher")))
def test_closed_form_rule_and_recursion(spec, labels):
    """``hidden_repeats`` is set exactly when the hidden LayerSpecs are all equal, and the sum
    the dispatch chooses (closed form or recursion) equals the explicit recursion: the linear
    moments and the single-input ReLU chain behind E[S1] (fc)."""
    hidden = set(spec.layers[1:-1])
    assert (spec.hidden_repeats is not None) == (len(hidden) <= 1)
    if spec.hidden_repeats is not None:
        assert spec.hidden_repeats == spec.depth - 2
    _, x, y, _ = _with_data(spec, 4, labels, "squared", spec.depth)
    inv = Invariants.of(x, y)
    with mpmath.workdps(B.DPS):
        if spec.activation == "linear":
            fast, slow = B.linear_exact(spec, inv), B.linear_exact(spec, inv, False)
            for key in fast:
                assert fast[key] == slow[key] or _rel(fast[key], slow[key]) <= REL_MP, key
        elif spec.arch == "fc":
            fast, slow = B.relu_s1_exact(spec, inv), B.relu_s1_exact(spec, inv, False)
            for a, b in zip(fast, slow):
                assert a == b or _rel(a, b) <= REL_MP
