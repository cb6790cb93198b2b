"""Symbolic vs numeric, closed form vs recursion, ReLU family at p = 1 vs linear, extremes.

Tolerances: 1e-12 relative where two exact evaluations of the same quantity meet in floating
point (mpmath at 50 digits, float64 data invariants); exact equality for rational arithmetic.
"""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp

import theory._transfer as B
from theory import Invariants, NetSpec, expected_moments, symbolic as S
from theory._chain import chain_sum, uniform_sum
from theory import _linear
from theory.data import gaussian

REL = 1e-12  # two evaluations of one exact expression, float64 invariants


def _subs(inv, K, L):
    return {S.K: K, S.L: L, S.n: inv.n, S.d: inv.d, S.c: inv.c, S.X4: inv.X4, S.X2: inv.X2,
            S.F: inv.F, S.Yd: inv.Yd, S.Yo: inv.Yo}


@pytest.fixture(scope="module")
def data():
    ds = gaussian(12, 5, seed=3, labels="teacher", outputs=2)
    return ds.x, ds.y, Invariants.of(ds.x, ds.y)


@pytest.mark.parametrize("arch,L,K", [("fc", 2, 7), ("fc", 3, 4), ("fc", 9, 13),
                                      ("residual", 3, 6), ("residual", 7, 5)])
def test_symbolic_matches_numeric(data, arch, L, K):
    x, y, inv = data
    cf = S.closed_form("linear", arch)
    r = expected_moments(NetSpec.uniform(L, K, 5, outputs=2, arch=arch), x, y)
    sym = sp.N(cf["B"].subs(_subs(inv, K, L)), 30)
    assert abs(float(sym) - r.batch_size_bound) <= REL * r.batch_size_bound
    s1 = sp.N(cf["S1"].subs(_subs(inv, K, L)), 30)
    assert abs(float(s1) / float(r.expected_S1) - 1) <= REL


@pytest.mark.parametrize("L,K", [(2, 3), (5, 9), (12, 4)])
def test_symbolic_relu_S1(data, L, K):
    x, y, inv = data
    cf = S.closed_form("relu", "fc")
    r = expected_moments(NetSpec.uniform(L, K, 5, outputs=2, activation="relu"), x, y)
    assert abs(float(sp.N(cf["S1"].subs(_subs(inv, K, L)), 30)) / float(r.expected_S1) - 1) <= REL


def test_two_layer_relu_symbolic_pair_term(data):
    x, y, inv = data
    from theory._kernels import relu_moments

    spec = NetSpec.uniform(2, 6, 5, outputs=2, activation="relu")
    term = S.two_layer_relu()["pair_term"]
    G = x @ x.T
    m0, m2, m4 = relu_moments(2.0 / 5 * G)
    f = sp.lambdify(sp.symbols("m0 m2 m4 g yy") + (S.K, S.c), term, "numpy")
    total = f(m0, m2, m4, G, y @ y.T, 6, 2)
    r = expected_moments(spec, x, y)
    assert abs(total.sum() / float(r.expected_S2) - 1) <= REL
    assert abs(np.trace(total) / float(r.expected_S1) - 1) <= REL


@pytest.mark.parametrize("widths", [(3, 9, 4), (7,), (5, 5, 2, 8)])
def test_relu_chain_at_p1_is_linear(data, widths):
    """The single-input ReLU-family recursion with p = 1 reproduces the linear E[S1]."""
    x, y, inv = data
    spec = NetSpec(depth=len(widths) + 1, widths=widths, input_dim=5, outputs=2)
    with mpmath.workdps(50):
        lin = B.linear_exact(spec, inv, closed_form=False)
        net, lab = B.relu_s1_exact(spec, inv, closed_form=False)
        assert abs(net / lin["S1_net"] - 1) < mpmath.mpf(10) ** -40
        assert abs(lab / lin["S1_label"] - 1) < mpmath.mpf(10) ** -40


@pytest.mark.parametrize("arch", ["fc", "residual"])
def test_closed_form_equals_recursion_exactly(arch):
    """uniform_sum (O(1) in L) and chain_sum (O(L)) agree exactly in rational arithmetic."""
    spec = NetSpec.uniform(6, 5, 3, outputs=2, arch=arch)
    net, lab = B.linear_layers(spec, conv=lambda v: v)  # Fractions throughout
    top = _linear.network_top(Fraction(2))
    bottom = (Fraction(7), Fraction(3))
    exact = chain_sum(net, top, bottom)
    closed = uniform_sum(net[0], net[1], net[-1], 6, top, bottom)
    assert isinstance(exact, Fraction) and closed == exact


def test_huge_width_and_depth_finite_and_match_limit(data):
    x, y, inv = data
    r = expected_moments(NetSpec.uniform(10_000, 10**6, 5, outputs=2), x, y)
    assert np.isfinite(r.batch_size_bound) and np.isfinite(r.to_dict()["expected_S1"])
    # L/K = 0.01: corrections are O(L/K) relative, so within 3% of the K -> oo limit
    assert abs(r.batch_size_bound / r.limit_batch_size_bound - 1) < 0.03
    deep = expected_moments(NetSpec.uniform(10_000, 4, 5, outputs=2), x, y)
    assert np.isfinite(deep.batch_size_bound)
    L_limit = 3 * inv.n * inv.X4 / (inv.X2 + 2 * inv.F)  # proved L -> oo limit
    # ((K-1)/(K+2))^L ~ 1e-2000 is gone; what remains is the O(1/L) weight of the first and
    # last layers, whose terms differ from the hidden ones: allow 5/L.
    assert abs(deep.batch_size_bound / L_limit - 1) < 5 / 10_000


# Symbolic case table: input -> expected expression
LIMIT_CASES = [
    ("K->oo", lambda: S.width_limit(S.closed_form()["B"]),
     S.n * (S.c * S.X4 + S.d * S.Yd) / (S.c * S.F + S.d * S.Yo)),
]


@pytest.mark.parametrize("name,compute,expected", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_symbolic_limits(name, compute, expected):
    assert sp.simplify(compute() - expected) == 0


@pytest.mark.slow
def test_symbolic_depth_limit():
    k = sp.Symbol("k", positive=True)
    B_ = S.closed_form()["B"].subs({S.K: k + 2, S.c: 1})
    lim = sp.limit(B_, S.L, sp.oo)
    assert sp.simplify(lim - 3 * S.n * S.X4 / (S.X2 + 2 * S.F)) == 0
    df = sp.limit(S.data_free_bound().subs({S.K: k + 2, S.c: 1}), S.L, sp.oo)
    assert sp.simplify(df - 3 * S.n / (S.n + 2)) == 0


def test_depth_one_is_width_limit(data):
    """Depth 1 (linear model) has the same B_S-bar as the K -> oo limit of any depth."""
    x, y, inv = data
    r1 = expected_moments(NetSpec(depth=1, widths=(), input_dim=5, outputs=2), x, y)
    expected = inv.n * (inv.c * inv.X4 + inv.d * inv.Yd) / (inv.c * inv.F + inv.d * inv.Yo)
    assert abs(r1.batch_size_bound / expected - 1) <= REL
    r8 = expected_moments(NetSpec.uniform(8, 64, 5, outputs=2), x, y)
    assert abs(r8.limit_batch_size_bound / expected - 1) <= 1e-9


def test_data_free_matches_gaussian_invariants():
    spec = NetSpec.uniform(4, 16, 6)
    inv = Invariants.gaussian_expectation(10, 6)
    r = expected_moments(spec, invariants=inv)
    sym = S.data_free_bound().subs({S.K: 16, S.L: 4, S.n: 10, S.d: 6, S.c: 1})
    assert abs(float(sym) / r.batch_size_bound - 1) <= REL


@pytest.mark.parametrize("arch,gains,alpha", [
    ("fc", (1, 1.5, 1.5, 1.5, 0.5), None),
    ("residual", (0.5, 1.5, 1.5, 1.5, 2), 0.7),
])
def test_symbolic_with_equal_hidden_gains(data, arch, gains, alpha):
    """Non-default but equal hidden gains (and branch scale): the closed form in K, L applies
    (``hidden_repeats``) and matches the numbers."""
    x, y, inv = data
    spec = NetSpec(depth=5, widths=(4,) * 4, input_dim=5, outputs=2, arch=arch, gains=gains,
                   alpha=alpha)
    assert spec.hidden_repeats == 3
    cf = S.closed_form("linear", arch, S.spec_gain_triple(spec),
                       None if alpha is None else spec.alpha_square)
    r = expected_moments(spec, x, y)
    assert abs(float(sp.N(cf["B"].subs(_subs(inv, 4, 5)), 30)) / r.batch_size_bound - 1) <= REL
    assert abs(float(sp.N(cf["S1"].subs(_subs(inv, 4, 5)), 30)) / float(r.expected_S1) - 1) \
        <= REL


def test_no_closed_form_for_unequal_hidden_gains():
    spec = NetSpec(depth=4, widths=(4, 4, 4), input_dim=3, gains=(1, 1.5, 1, 1))
    assert spec.is_uniform and spec.hidden_repeats is None
    with pytest.raises(ValueError, match="hidden layers differ"):
        S.spec_gain_triple(spec)
    assert S.closed_form_strings(spec)["kind"] == "none"


@pytest.mark.parametrize("activation,data_free", [("linear", False), ("linear", True),
                                                  ("relu", False)])
def test_printed_closed_form_is_short_and_equal(activation, data_free):
    """``--symbolic`` prints the collected, factored form: readable (E[S1] ≤ 600 characters,
    B̄ ≤ 1000 on the default fc net) and identical to the raw closed form (exact rational
    evaluation at a point where no factor vanishes, so any dropped term would show)."""
    spec = NetSpec.uniform(8, 256, 32, activation=activation)
    s = S.closed_form_strings(spec, data_free)
    assert len(s["S1"]) <= 600 and len(s.get("B", "")) <= 1000
    raw = S.closed_form(activation, "fc")
    point = {S.K: 7, S.L: 6, S.n: 11, S.d: 3, S.c: 2, S.X4: sp.Rational(13, 3), S.X2: 5,
             S.F: sp.Rational(7, 2), S.Yd: 2, S.Yo: 3}
    for key in ("S1", "S2"):
        if key not in s:
            continue
        want = raw[key].subs(S.GAUSSIAN_INPUTS) if data_free else raw[key]
        names = {str(v): v for v in point}  # the printed string parses back to these symbols
        assert sp.nsimplify(want.subs(point)) == sp.sympify(s[key], locals=names).subs(point)
