"""The Python APIs on bad input (issue 15, section 3): each refuses with a ValueError naming the
problem instead of returning NaN, a wrong number, or a raw numpy / ZeroDivision error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numerics
import theory
from theory import NetSpec

SPEC = NetSpec(depth=2, widths=(4,), input_dim=3)


def _data(n=5):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)), np.zeros((n, 1))


def _with(x, value):
    x = x.copy()
    x[1, 2] = value
    return x


# --------------------------------------------------------------------------- theory
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_expected_moments_refuses_nan_inf(value):
    x, y = _data()
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        theory.expected_moments(SPEC, _with(x, value), y)
    bad_y = y.copy()
    bad_y[1, 0] = value
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        theory.expected_moments(SPEC, x, bad_y)


def test_expected_moments_refuses_complex_x():
    """Once, the imaginary part was dropped with a warning and a number returned."""
    x, y = _data()
    for loss, spec, labels in (("squared", SPEC, y),
                               ("cross_entropy", NetSpec(depth=2, widths=(4,), input_dim=3,
                                                         outputs=3), np.arange(5) % 3)):
        with pytest.raises(ValueError, match="x is complex"):
            theory.expected_moments(spec, x + 1j * x, labels, loss=loss)


def test_expected_moments_shapes_named():
    x, y = _data()
    with pytest.raises(ValueError, match=r"x must be 2-D .* got shape \(5,\)"):
        theory.expected_moments(NetSpec(depth=2, widths=(4,), input_dim=5), x[:, 0], y)
    with pytest.raises(ValueError, match=r"y has 4 rows but x has 5 .*\(5, 3\).*\(4, 1\)"):
        theory.expected_moments(SPEC, x, y[:4])


def test_expected_moments_one_dimensional_y_is_one_column():
    x, y = _data()
    a = theory.expected_moments(SPEC, x, np.arange(5.0))
    b = theory.expected_moments(SPEC, x, np.arange(5.0)[:, None])
    assert a.batch_size_bound == b.batch_size_bound  # the same float64 sums


@pytest.mark.parametrize("delta", [-1, 0, float("nan"), float("inf")])
def test_delta_must_be_positive(delta):
    """The CLI refuses --delta -1; the API used to return a negative predicted batch."""
    x, y = _data()
    with pytest.raises(ValueError, match="delta must be a positive number"):
        theory.expected_moments(SPEC, x, y, delta=delta)
    with pytest.raises(ValueError, match="delta must be a positive number"):
        theory.predicted_max_batch(10.0, delta)


def test_batch_size_bound_of_zero_S2():
    with pytest.raises(ValueError, match="S2 .* = 0 .* undefined"):
        theory.batch_size_bound(1, 0, 7)
    assert theory.batch_size_bound(1, 2, 7) == 3.5


@pytest.mark.parametrize("P", [-5, 0])
def test_width_for_budget_needs_a_positive_budget(P):
    with pytest.raises(ValueError, match="budget P must be positive"):
        theory.width_for_budget(P, 3, 1, 3)
    # P = 1000, d = 3, c = 1, L = 3: K^2 + 4K closest to 1000 is K = 30 (1020; K = 29: 957)
    assert theory.width_for_budget(1000, 3, 1, 3) == 30


# --------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_mc_moments_refuses_nan_inf(value):
    x, y = _data()
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        numerics.mc_moments(SPEC, _with(x, value), y, key=jax.random.key(0), samples=4)


def test_mc_moments_refuses_complex_and_names_shapes():
    x, y = _data()
    with pytest.raises(ValueError, match="x is complex"):
        numerics.mc_moments(SPEC, x + 1j, y, key=jax.random.key(0), samples=4)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\).*got \(5,\)"):
        numerics.mc_moments(SPEC, x[:, 0], y, key=jax.random.key(0), samples=4)
    with pytest.raises(ValueError, match=r"y must have shape \(5, 1\), got \(4, 1\)"):
        numerics.mc_moments(SPEC, x, y[:4], key=jax.random.key(0), samples=4)


def test_mc_moments_needs_two_samples():
    """The same rule as ``numerics.check --samples`` (a standard error needs two networks)."""
    x, y = _data()
    with pytest.raises(ValueError, match="samples must be at least 2"):
        numerics.mc_moments(SPEC, x, y, key=jax.random.key(0), samples=1)


@pytest.mark.parametrize("scale,needle", [
    (1e200, "beyond the float32 range"),  # the cast would make inf
    (1e15, "overflow float32"),           # S1 ~ |x|^4 overflows inside the Monte Carlo
    (1e-200, "below the smallest normal float32"),
    (1e-15, "underflow"),                 # S1 ~ |x|^4 flushes to zero
])
def test_mc_moments_out_of_float32_range(scale, needle):
    """Once NaN (or 0) was returned as the estimate."""
    x, _ = _data()
    y = np.ones((5, 1)) * scale
    with pytest.raises(ValueError, match=needle):
        numerics.mc_moments(SPEC, x * scale, y, key=jax.random.key(0), samples=4)


def test_mc_moments_network_too_large_refused_before_compiling():
    spec = NetSpec(depth=8, widths=(10**9,) * 7, input_dim=3)
    x, y = _data()
    with pytest.raises(ValueError, match="one network does not fit in memory"):
        numerics.mc_moments(spec, x, y, key=jax.random.key(0), samples=4)


def _loss(p, xi, yi):
    return 0.5 * (jnp.dot(p["w"], xi) - yi) ** 2


@pytest.mark.parametrize("where", ["x", "y"])
def test_gradient_diversity_refuses_nan_inf(where):
    x, y = _data()
    y = y[:, 0]
    x, y = (_with(x, np.nan), y) if where == "x" else (x, np.where(np.arange(5) == 2, np.inf, y))
    with pytest.raises(ValueError, match=f"{where} contains NaN or inf"):
        numerics.gradient_diversity(_loss, {"w": jnp.ones(3)}, x, y)


def test_gradient_diversity_refuses_complex():
    x, y = _data()
    with pytest.raises(ValueError, match="x is complex"):
        numerics.gradient_diversity(_loss, {"w": jnp.ones(3)}, x + 1j, y[:, 0])
