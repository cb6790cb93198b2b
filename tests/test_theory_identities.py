"""Definitions and identities of README's "Definitions and conventions" on random vectors
(numpy float64, fixed seeds)."""

import numpy as np
import pytest
from fractions import Fraction
from hypothesis import given, settings, strategies as st

from theory import (batch_size_bound, diversity, minibatch_second_moment, norm_test_theta2,
                    simple_noise_scale, unbiased_noise_scale)

REL = 1e-12  # float64 round-off on sums of a few hundred terms


def _S(g):
    return float(np.sum(g * g)), float(np.sum(g.sum(0) ** 2))


# case table: gradients -> expected B_S
CASES = [
    ("all-equal", np.ones((5, 3)), 1.0),
    ("orthogonal", np.eye(4), 4.0),
    ("pairs-opposite-plus-one", np.array([[1.0, 0], [-1.0, 0], [0, 1.0]]), 3.0 * 3.0 / 1.0),
]


@pytest.mark.parametrize("name,g,expected", CASES, ids=[c[0] for c in CASES])
def test_batch_size_bound_cases(name, g, expected):
    S1, S2 = _S(g)
    assert batch_size_bound(S1, S2, g.shape[0]) == pytest.approx(expected, rel=REL)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), p=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_simple_noise_scale_is_B_S_minus_one(n, p, seed):
    g = np.random.default_rng(seed).standard_normal((n, p)) + 0.3
    S1, S2 = _S(g)
    G = g.mean(0)
    trace_cov = float(np.sum((g - G) ** 2)) / n  # per-example covariance, divide by n
    assert trace_cov / float(G @ G) == pytest.approx(batch_size_bound(S1, S2, n) - 1, rel=1e-9)
    assert simple_noise_scale(S1, S2, n) == pytest.approx(batch_size_bound(S1, S2, n) - 1,
                                                         rel=1e-9)
    assert batch_size_bound(S1, S2, n) >= 1 - 1e-9  # Cauchy-Schwarz: S2 <= n S1


def test_estimator_variants_exact_rationals():
    S1, S2, n = Fraction(10), Fraction(4), 5  # Delta = 5/2 > 1
    assert unbiased_noise_scale(S1, S2, n) == (Fraction(25, 2) - 1) / (1 - Fraction(5, 2))
    assert unbiased_noise_scale(S1, S2, n) < 0  # the "negative noise scale" when Delta > 1
    assert norm_test_theta2(S1, S2, n) == (Fraction(25, 2) - 1) / 4
    d = diversity(S1, S2, n)
    assert d["batch_size_bound"] == Fraction(25, 2) and d["B_simple"] == Fraction(23, 2)


def test_minibatch_identity_exact_enumeration():
    """E||sum_{j in batch} g_j||^2 over all n^m ordered batches equals (m/n) S1 (1+(m-1)/B_S)."""
    rng = np.random.default_rng(0)
    n, m = 5, 3
    g = rng.standard_normal((n, 4))
    S1, S2 = _S(g)
    idx = np.array(np.meshgrid(*[np.arange(n)] * m, indexing="ij")).reshape(m, -1).T
    brute = np.mean([np.sum(g[b].sum(0) ** 2) for b in idx])
    assert brute == pytest.approx(minibatch_second_moment(S1, S2, n, m), rel=REL)


def test_minibatch_identity_by_sampling():
    """Sampled batches: within 4 standard errors of the identity (fixed seed)."""
    rng = np.random.default_rng(1)
    n, m, T = 50, 8, 20000
    g = rng.standard_normal((n, 6)) + 0.5
    S1, S2 = _S(g)
    b = rng.integers(0, n, size=(T, m))
    vals = np.sum(g[b].sum(1) ** 2, axis=1)
    se = vals.std(ddof=1) / np.sqrt(T)
    assert abs(vals.mean() - minibatch_second_moment(S1, S2, n, m)) <= 4 * se
