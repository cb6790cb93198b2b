"""Exact theory vs independent brute-force float64 Monte Carlo (tests/_bruteforce.py).

Tolerance: |MC mean - exact| <= Z * SE with Z = 4 (two-sided normal tail 6e-5 per check; the
SE comes from the same fixed-seed samples). Each case also asserts SE/mean < 6% so the
comparison is not vacuous.
"""

import numpy as np
import pytest

from theory import NetSpec, expected_moments
from theory.data import gaussian, mnist1d

from ._bruteforce import mc_moments

Z = 4.0  # standard errors allowed (fixed seeds, normal approximation of the sample mean)
MAX_REL_SE = 0.06  # MC precision we require for the comparison to mean something
SAMPLES = 40000


def _correlated(n, d, c, seed):
    """Data the project never uses elsewhere: strongly correlated, shifted, anisotropic."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(d)
    x = 0.8 * base + 0.6 * rng.standard_normal((n, d)) * np.linspace(0.2, 2.0, d)
    y = rng.uniform(-1, 1, (n, c))
    return x, y


CASES = [
    # id, spec, data
    ("linear-L1-vector", NetSpec(depth=1, widths=(), input_dim=4, outputs=3), "gauss"),
    ("linear-L3-nonuniform", NetSpec(depth=3, widths=(5, 3), input_dim=4, outputs=2), "corr"),
    ("linear-L4-zero-labels", NetSpec(depth=4, widths=(6, 6, 6), input_dim=4), "gauss0"),
    ("linear-L5-gains", NetSpec(depth=5, widths=(4, 7, 4, 5), input_dim=4, outputs=2,
                                gains=(1.5, 0.5, 1.0, 1.25, 0.75)), "corr"),
    ("residual-linear-L4", NetSpec(depth=4, widths=(5, 5, 5), input_dim=4, outputs=2,
                                   arch="residual"), "corr"),
    ("residual-linear-L5-alpha", NetSpec(depth=5, widths=(4, 4, 4, 4), input_dim=4,
                                         arch="residual", alpha=0.9), "gauss"),
    ("relu-L2", NetSpec(depth=2, widths=(6,), input_dim=4, outputs=2, activation="relu"),
     "corr"),
    ("relu-L2-K3", NetSpec(depth=2, widths=(3,), input_dim=4, activation="relu"), "gauss"),
    ("relu-L2-mnist1d", NetSpec(depth=2, widths=(8,), input_dim=40, outputs=10,
                                activation="relu"), "mnist1d"),
]


def _data(kind, spec, seed):
    if kind == "mnist1d":
        ds = mnist1d(6)
        return ds.x, ds.y
    if kind == "corr":
        return _correlated(5, spec.input_dim, spec.outputs, seed)
    ds = gaussian(5, spec.input_dim, seed=seed, labels="zero" if kind == "gauss0" else "teacher",
                  outputs=spec.outputs, noise=0.3)
    return ds.x, ds.y


@pytest.mark.parametrize("name,spec,kind", CASES, ids=[c[0] for c in CASES])
def test_exact_moments_match_monte_carlo(name, spec, kind):
    x, y = _data(kind, spec, seed=7)
    r = expected_moments(spec, x, y)
    assert r.kind_S1 == "exact" and r.kind_S2 == "exact"
    m1, se1, m2, se2 = mc_moments(spec, x, y, samples=SAMPLES, seed=11)
    assert se1 < MAX_REL_SE * m1 and se2 < MAX_REL_SE * m2
    assert abs(m1 - float(r.expected_S1)) <= Z * se1, (m1, se1, float(r.expected_S1))
    assert abs(m2 - float(r.expected_S2)) <= Z * se2, (m2, se2, float(r.expected_S2))


@pytest.mark.parametrize("widths", [(6, 5), (4, 8, 6)])
def test_deep_relu_S1_exact(widths):
    spec = NetSpec(depth=len(widths) + 1, widths=widths, input_dim=4, outputs=2,
                   activation="relu")
    x, y = _correlated(5, 4, 2, seed=3)
    r = expected_moments(spec, x, y)
    assert r.kind_S1 == "exact"
    m1, se1, _, _ = mc_moments(spec, x, y, samples=SAMPLES, seed=5)
    assert se1 < MAX_REL_SE * m1
    assert abs(m1 - float(r.expected_S1)) <= Z * se1


@pytest.mark.parametrize("L,K", [(3, 48), (4, 64)])
def test_deep_relu_S2_pair_chain_at_wider_nets(L, K):
    """Wider nets (formerly the closed approximation's range): the pair chain's E[S2] is within
    PAIR_CHAIN_PRECISION (its numerical integration) of brute-force Monte Carlo, on top of Z
    standard errors of the Monte Carlo."""
    from theory import PAIR_CHAIN_PRECISION

    spec = NetSpec.uniform(L, K, 8, activation="relu")
    ds = gaussian(6, 8, seed=1, labels="teacher")
    r = expected_moments(spec, ds.x, ds.y)
    assert r.kind_S2 == "numerical"
    _, _, m2, se2 = mc_moments(spec, ds.x, ds.y, samples=4000, seed=9, chunk=500)
    assert se2 < MAX_REL_SE * m2
    assert abs(m2 - float(r.expected_S2)) <= PAIR_CHAIN_PRECISION * m2 + Z * se2
