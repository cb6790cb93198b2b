"""numerics: networks, the per-layer fast path, the generic vmap(grad) path and the identities
of README's "Definitions and conventions" (B_S = B_simple + 1, mini-batch second moment,
McCandlish's two-batch estimator)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numerics
from numerics._testing import TOL
from theory import NetSpec, minibatch_second_moment, unbiased_noise_scale

from ._bruteforce import per_network_S

F64 = TOL[np.dtype("float64")]

FAMILIES = [  # (id, spec): every network family and width profile numerics/ builds
    ("linear-L1", NetSpec(depth=1, widths=(), input_dim=3, outputs=2)),
    ("linear-L2", NetSpec(depth=2, widths=(7,), input_dim=3, outputs=1)),
    ("linear-L4-nonuniform", NetSpec(depth=4, widths=(5, 9, 4), input_dim=3, outputs=2)),
    ("relu-L2", NetSpec(depth=2, widths=(11,), input_dim=3, activation="relu")),
    ("relu-L4-gains", NetSpec(depth=4, widths=(6, 8, 5), input_dim=3, outputs=2,
                              activation="relu", gains=(1.5, 1, "0.5", 2))),
    ("residual-linear-L5", NetSpec(depth=5, widths=(6,) * 4, input_dim=3, outputs=2,
                                   arch="residual")),
    ("residual-relu-L4-alpha", NetSpec(depth=4, widths=(7,) * 3, input_dim=3, outputs=1,
                                       arch="residual", activation="relu", alpha=0.7)),
]
IDS = [f[0] for f in FAMILIES]
SPECS = [f[1] for f in FAMILIES]


def _data(spec, n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, spec.input_dim)), rng.standard_normal((n, spec.outputs))


def _sq_loss(spec):
    return lambda p, xi, yi: 0.5 * jnp.sum((numerics.apply(spec, p, xi) - yi) ** 2)


def test_init_params_shapes_dtype_and_variance(getkey):
    spec = NetSpec(depth=3, widths=(300, 200), input_dim=100, activation="relu")
    params = numerics.init_params(spec, key=getkey())
    assert [p.shape for p in params] == [(300, 100), (200, 300), (1, 200)]
    assert all(p.dtype == numerics.default_dtype() for p in params)  # float32 unless x64
    for p, (n_in, _), s2 in zip(params, spec.layer_dims, spec.gain_squares):
        var = float(jnp.var(p)) * n_in
        # the sample variance of N entries has relative SE sqrt(2/N); allow 4 SE
        assert abs(var - float(s2)) <= 4 * np.sqrt(2 / p.size) * float(s2) + 1e-6
    with numerics.x64():
        assert numerics.init_params(spec, key=getkey())[0].dtype == jnp.float64


def test_x64_restores_flag_on_error():
    before = jax.config.jax_enable_x64
    with pytest.raises(RuntimeError):
        with numerics.x64():
            assert jax.config.jax_enable_x64
            raise RuntimeError("boom")
    assert jax.config.jax_enable_x64 == before


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_fast_path_matches_numpy_reference_and_generic_path(spec, getkey):
    n = 9
    x, y = _data(spec, n, 3)
    with numerics.x64():
        params = numerics.init_params(spec, key=getkey())
        Ws = [np.asarray(p) for p in params]
        # the one numpy backprop reference of the tests (tests/_bruteforce.py), on this net
        ref_S1, ref_S2 = per_network_S(spec, [W[None] for W in Ws], x, y)
        fast = numerics.per_example_stats(spec, params, x, y)
        gen = numerics.gradient_diversity(_sq_loss(spec), params, x, y, chunk_size=4)
        tol = F64["roundoff"]  # same quantity, different operation order: float64 round-off
        np.testing.assert_allclose(float(fast.S1), ref_S1[0], rtol=tol)
        np.testing.assert_allclose(float(fast.S2), ref_S2[0], rtol=tol)
        summary = fast.summary(n)
        for key in ("S1", "S2", "batch_size_bound", "B_simple", "B_simple_unbiased",
                    "norm_test_theta2"):
            np.testing.assert_allclose(float(summary[key]), float(gen[key]), rtol=tol)
        gen_layers = list(gen["layers"].values())
        for l in range(spec.depth):
            np.testing.assert_allclose(float(fast.S1_layers[l]), float(gen_layers[l]["S1"]),
                                       rtol=tol)
            np.testing.assert_allclose(float(fast.S2_layers[l]), float(gen_layers[l]["S2"]),
                                       rtol=tol)
        total = jax.grad(lambda p: jnp.sum(jax.vmap(
            lambda xi, yi: _sq_loss(spec)(p, xi, yi))(jnp.asarray(x), jnp.asarray(y))))(params)
        for a, b, c in zip(fast.grad_sum, total, gen["grad_sum"]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)
            np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=tol, atol=tol)


@pytest.mark.parametrize("spec", [SPECS[2], SPECS[4], SPECS[6]], ids=[IDS[2], IDS[4], IDS[6]])
def test_cross_entropy_fast_matches_generic(spec, getkey):
    spec = NetSpec(depth=spec.depth, widths=spec.widths, input_dim=spec.input_dim, outputs=4,
                   activation=spec.activation, arch=spec.arch, gains=spec.gains,
                   alpha=spec.alpha)
    n = 11
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((n, 3)), rng.integers(0, 4, size=n)

    def ce(p, xi, yi):
        f = numerics.apply(spec, p, xi)
        return jax.nn.logsumexp(f) - f[yi]

    with numerics.x64():
        params = numerics.init_params(spec, key=getkey())
        fast = numerics.per_example_stats(spec, params, x, y, loss="cross_entropy")
        gen = numerics.gradient_diversity(ce, params, x, y)
        tol = F64["roundoff"]  # float64 round-off
        np.testing.assert_allclose(float(fast.S1), float(gen["S1"]), rtol=tol)
        np.testing.assert_allclose(float(fast.S2), float(gen["S2"]), rtol=tol)
        loss_sum = sum(float(ce(params, x[i], y[i])) for i in range(n))
        np.testing.assert_allclose(float(fast.loss_sum), loss_sum, rtol=tol)


def test_float32_fast_path_close_to_float64(getkey):
    spec = SPECS[4]
    x, y = _data(spec, 16, 1)
    key = getkey()
    with numerics.x64(False):  # float32 even when the suite runs with JAX_ENABLE_X64=1
        st32 = numerics.per_example_stats(spec, numerics.init_params(spec, key=key), x, y)
    assert st32.S1.dtype == jnp.float32
    with numerics.x64():
        p64 = [p.astype(jnp.float64) for p in numerics.init_params(spec, key=key,
                                                                   dtype=jnp.float32)]
        st64 = numerics.per_example_stats(spec, p64, x, y)
        ref = float(st64.S1), float(st64.S2)
    rtol = TOL[np.dtype("float32")]["roundoff"]  # float32 round-off of short sums
    np.testing.assert_allclose([float(st32.S1), float(st32.S2)], ref, rtol=rtol)


def test_batch_size_bound_is_B_simple_plus_one(getkey):
    spec = SPECS[5]
    x, y = _data(spec, 13, 2)
    with numerics.x64():
        out = numerics.per_example_stats(
            spec, numerics.init_params(spec, key=getkey()), x, y).summary(13)
        # an algebraic identity: equal to round-off
        np.testing.assert_allclose(float(out["batch_size_bound"]), float(out["B_simple"]) + 1,
                                   rtol=F64["roundoff"])
        for layer in out["layers"].values():
            np.testing.assert_allclose(float(layer["batch_size_bound"]),
                                       float(layer["B_simple"]) + 1, rtol=F64["roundoff"])


def _batch_sums_sq(spec, params, x, y, idx):
    """||sum_{j in batch} g_j||^2 for each row of idx (batches of indices)."""
    return jax.vmap(lambda b: numerics._stats._stats(spec, params, x[b], y[b], "squared").S2)(idx)


def test_minibatch_second_moment_identity_by_sampling(getkey):
    spec = SPECS[4]
    n, m, batches = 12, 5, 20000
    x, y = _data(spec, n, 4)
    with numerics.x64():
        params = numerics.init_params(spec, key=getkey())
        st = numerics.per_example_stats(spec, params, x, y)
        idx = jax.random.randint(getkey(), (batches, m), 0, n)  # uniform, with replacement
        sq = np.asarray(_batch_sums_sq(spec, params, jnp.asarray(x), jnp.asarray(y), idx))
        expected = float(minibatch_second_moment(st.S1, st.S2, n, m))
    se = sq.std(ddof=1) / np.sqrt(batches)
    assert abs(sq.mean() - expected) <= F64["z"] * se  # Monte Carlo mean: 4 standard errors


def test_two_batch_estimator_vs_per_example(getkey):
    spec = SPECS[3]
    n = 10
    x, y = _data(spec, n, 6)
    with numerics.x64():
        params = numerics.init_params(spec, key=getkey())
        st = numerics.per_example_stats(spec, params, x, y)
        S1, S2 = float(st.S1), float(st.S2)
        # exact: batch 1 averaged over all examples and the full batch -> the unbiased variant
        exact = numerics.two_batch_noise_scale(S1 / n, S2 / n**2, 1, n)
        np.testing.assert_allclose(exact["B_simple"], float(unbiased_noise_scale(S1, S2, n)),
                                   rtol=F64["roundoff"])  # algebraic identity
        # sampled: batches drawn with replacement estimate E|G_b|^2 = |G|^2 + tr(Sigma)/b, so
        # the two-batch estimator recovers the plug-in B_simple = B_S - 1
        b1, b2, batches = 2, 8, 40000
        means, ses = [], []
        for b in (b1, b2):
            idx = jax.random.randint(getkey(), (batches, b), 0, n)
            g2 = np.asarray(_batch_sums_sq(spec, params, jnp.asarray(x), jnp.asarray(y), idx))
            g2 = g2 / b**2
            means.append(g2.mean())
            ses.append(g2.std(ddof=1) / np.sqrt(batches))
    est = numerics.two_batch_noise_scale(means[0], means[1], b1, b2)["B_simple"]
    plug_in = n * S1 / S2 - 1
    # SE of the estimator by the delta method (the two batch means are independent)
    h = 1e-6
    d1 = (numerics.two_batch_noise_scale(means[0] * (1 + h), means[1], b1, b2)["B_simple"]
          - est) / (means[0] * h)
    d2 = (numerics.two_batch_noise_scale(means[0], means[1] * (1 + h), b1, b2)["B_simple"]
          - est) / (means[1] * h)
    se = np.hypot(d1 * ses[0], d2 * ses[1])
    assert abs(est - plug_in) <= F64["z"] * se


def test_no_per_example_gradients_in_memory(getkey):
    spec = NetSpec.uniform(4, 256, 32)
    n = 256
    x, y = _data(spec, n, 0)
    with numerics.x64(False):  # the float32 byte count below, whatever the suite's x64 flag
        params = numerics.init_params(spec, key=getkey())
        xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
        compiled = numerics._stats._stats_jit.lower(spec, params, xj, yj, "squared").compile()
    mem = compiled.memory_analysis()
    if mem is None:
        pytest.skip("memory analysis not available on this backend")
    per_example_bytes = n * spec.params * 4
    # O(n * widths) activations: far below one copy of the per-example gradients
    assert mem.temp_size_in_bytes < per_example_bytes / 20


def test_generic_path_pytree_params_and_chunking(getkey):
    """A plain-dict model: chunk sizes that do / do not divide n give the same result."""
    k1, k2 = getkey(), getkey()
    params = {"dense": {"w": jax.random.normal(k1, (4, 3)), "b": jnp.zeros(4)},
              "out": jax.random.normal(k2, (4,))}

    def loss(p, xi, yi):
        h = jnp.tanh(p["dense"]["w"] @ xi + p["dense"]["b"])
        return 0.5 * (jnp.dot(p["out"], h) - yi) ** 2

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    with numerics.x64():
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        outs = [numerics.gradient_diversity(loss, params, x, y, chunk_size=c) for c in (1, 3, 10)]
        for o in outs[1:]:
            np.testing.assert_allclose(float(o["S1"]), float(outs[0]["S1"]), rtol=F64["roundoff"])
            np.testing.assert_allclose(float(o["S2"]), float(outs[0]["S2"]), rtol=F64["roundoff"])
        assert set(outs[0]["layers"]) == {"['dense']['b']", "['dense']['w']", "['out']"}
        S1 = sum(float(v["S1"]) for v in outs[0]["layers"].values())
        np.testing.assert_allclose(S1, float(outs[0]["S1"]), rtol=F64["roundoff"])


def test_is_traced_under_every_transform():
    """Data checks skip traced arrays (values unknown) and only those: concrete jax and
    numpy arrays are checked, tracers of jit, grad, vmap and jvp are not."""
    from numerics._stats import is_traced

    seen = []

    def f(a):
        seen.append(is_traced(a))
        return jnp.sum(a)

    x = jnp.ones(3)
    assert not is_traced(x) and not is_traced(np.ones(3)) and not is_traced(1.0)
    jax.jit(f)(x)
    jax.grad(f)(x)
    jax.vmap(f)(jnp.ones((2, 3)))
    jax.jvp(f, (x,), (x,))
    assert seen == [True] * 4
    # and a NaN under jit is not refused at trace time, but is refused outside
    numerics_check = numerics._stats.check_values
    jax.jit(lambda a: numerics_check("x", a) or a)(jnp.array([np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        numerics_check("x", jnp.array([np.nan]))
