"""Embedded data sets and the scaling limit in r = L/K."""

import numpy as np
import sympy as sp

from theory import propositions as P
from theory.data import gaussian, mnist1d


def test_gaussian_teacher_is_documented_map():
    ds = gaussian(20, 6, seed=4, labels="teacher", outputs=2)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 6))
    T = rng.standard_normal((2, 6))
    np.testing.assert_allclose(ds.x, x)
    np.testing.assert_allclose(ds.y, x @ T.T / np.sqrt(6))
    assert "n=20" in ds.description and "teacher" in ds.description


def test_mnist1d_offline_labels_centred_one_hot():
    state = np.random.get_state()
    ds = mnist1d(50)
    assert np.all(np.random.get_state()[1] == state[1])  # global RNG untouched
    assert ds.x.shape == (50, 40) and ds.y.shape == (50, 10)
    np.testing.assert_allclose(ds.y.sum(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.y[np.arange(50), ds.classes], 0.9)
    np.testing.assert_array_equal(mnist1d(50).x, ds.x)  # deterministic


def test_scaling_limit_in_L_over_K():
    """K, L -> oo with r = L/K fixed (data-free, c = 1): r -> 0 gives the width limit
    n(d+2)/(n+d+1), r -> oo gives the depth limit 3n/(n+2), decreasing in between."""
    B, r = P.scaling_limit()
    from theory import symbolic as S

    n, d = S.n, S.d
    assert sp.simplify(sp.limit(B, r, 0) - n * (d + 2) / (n + d + 1)) == 0
    assert sp.simplify(sp.limit(B, r, sp.oo) - 3 * n / (n + 2)) == 0
    f = sp.lambdify((r, n, d), B)
    for nv, dv in [(8, 4), (128, 32), (1000, 10)]:
        vals = [f(rv, nv, dv) for rv in np.linspace(0.01, 5, 60)]
        assert all(a > b for a, b in zip(vals, vals[1:]))
