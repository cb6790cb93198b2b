"""numerics' statistics in a diagonal metric (gradient_diversity(metric=)) and Adam's metric
(adam_metric), against brute-force weighted vmap(grad) and hand-computed Adam moments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
from numerics._testing import TOL

F64 = TOL[np.dtype("float64")]
F32 = TOL[np.dtype("float32")]


def _model(key, dtype=jnp.float32):
    """A dense layer with bias and an elementwise scale (layer-norm gain), then a readout: the
    weighted dense form and the bias and scale paths under the metric's scaling."""
    k = jax.random.split(key, 5)
    p = {"w": jax.random.normal(k[0], (6, 3)), "b": 0.1 * jax.random.normal(k[4], (6,)),
         "g": jnp.ones(6), "v": jax.random.normal(k[1], (6,))}
    p = jax.tree_util.tree_map(lambda a: a.astype(dtype), p)

    def loss(p, x, y):
        h = jnp.tanh(p["w"] @ x + p["b"]) * p["g"]
        return 0.5 * (jnp.dot(p["v"], h) - y) ** 2

    x = jax.random.normal(k[2], (12, 3), dtype)
    y = jax.random.normal(k[3], (12,), dtype)
    return loss, p, x, y


def _random_metric(key, params):
    keys = jax.random.split(key, len(jax.tree_util.tree_leaves(params)))
    leaves, tdef = jax.tree_util.tree_flatten(params)
    return jax.tree_util.tree_unflatten(tdef, [
        jnp.exp(jax.random.normal(k, a.shape, a.dtype)) for k, a in zip(keys, leaves)])


def _brute(loss, params, x, y, metric):
    """Per leaf: sum_i g_i^T P g_i and (sum_i g_i)^T P (sum_i g_i) from vmap(grad)."""
    g = jax.vmap(jax.grad(loss), (None, 0, 0))(params, x, y)
    s1 = jax.tree_util.tree_map(lambda m, a: float(jnp.sum(m[None] * a * a)), metric, g)
    s2 = jax.tree_util.tree_map(lambda m, a: float(jnp.sum(m * jnp.sum(a, 0) ** 2)), metric, g)
    return s1, s2


def test_unit_metric_equals_no_metric(getkey):
    with numerics.x64():
        loss, p, x, y = _model(getkey(), jnp.float64)
        ones = jax.tree_util.tree_map(jnp.ones_like, p)
        a = numerics.gradient_diversity(loss, p, x, y)
        b = numerics.gradient_diversity(loss, p, x, y, metric=ones)
    tol = F64["roundoff"]  # the same sums through another path (vmap fallback vs ghost)
    for k in ("S1", "S2", "batch_size_bound", "B_simple", "B_simple_unbiased"):
        np.testing.assert_allclose(float(b[k]), float(a[k]), rtol=tol)
    for key in a["layers"]:
        for k in ("S1", "S2"):
            np.testing.assert_allclose(float(b["layers"][key][k]), float(a["layers"][key][k]),
                                       rtol=tol)
    for u, v in zip(jax.tree_util.tree_leaves(b["grad_sum"]),
                    jax.tree_util.tree_leaves(a["grad_sum"])):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)
    # every leaf keeps its ghost path through the reparametrisation u * sqrt(P): bias and
    # scale leaves, and the dense weight with its weighted one-position form
    assert b["paths"]["['b']"] == "bias" and b["paths"]["['g']"] == "scale"
    assert b["paths"]["['w']"] == "dense"


def _sequence_model(key, dtype):
    """Dense weights applied at T = 5 positions (the materialised weighted form) and inside a
    transpose (a norm-preserving view after the metric's scaling)."""
    k = jax.random.split(key, 4)
    p = {"w": jax.random.normal(k[0], (3, 4), dtype), "u": jax.random.normal(k[1], (2, 4), dtype)}

    def loss(p, x, y):
        h = jnp.tanh(x @ p["w"])                  # (5, 4): 5 positions
        return jnp.sum((h @ p["u"].T) ** 2) - y   # u used through a transpose

    return loss, p, jax.random.normal(k[2], (7, 5, 3), dtype), jax.random.normal(k[3], (7,),
                                                                                 dtype)


def test_weighted_dense_forms_match_brute_force_x64(getkey):
    with numerics.x64():
        loss, p, x, y = _sequence_model(getkey(), jnp.float64)
        m = _random_metric(getkey(), p)
        out = numerics.gradient_diversity(loss, p, x, y, metric=m)
        s1, s2 = _brute(loss, p, x, y, m)
    assert out["paths"] == {"['u']": "dense-materialised", "['w']": "dense-materialised"}
    tol = F64["roundoff"]  # exact: the same weighted sums in another operation order
    for key in ("['u']", "['w']"):
        np.testing.assert_allclose(float(out["layers"][key]["S1"]), s1[key[2]], rtol=tol)
        np.testing.assert_allclose(float(out["layers"][key]["S2"]), s2[key[2]], rtol=tol)


@pytest.mark.parametrize("method", ["ghost", "vmap"])
def test_random_metric_matches_brute_force_x64(getkey, method):
    with numerics.x64():
        loss, p, x, y = _model(getkey(), jnp.float64)
        m = _random_metric(getkey(), p)
        out = numerics.gradient_diversity(loss, p, x, y, metric=m, method=method)
        s1, s2 = _brute(loss, p, x, y, m)
        g = jax.vmap(jax.grad(loss), (None, 0, 0))(p, x, y)
    tol = F64["roundoff"]  # exact: the same weighted sums in another operation order
    for path, v in jax.tree_util.tree_flatten_with_path(s1)[0]:
        key = jax.tree_util.keystr(path)
        np.testing.assert_allclose(float(out["layers"][key]["S1"]), v, rtol=tol)
    for path, v in jax.tree_util.tree_flatten_with_path(s2)[0]:
        key = jax.tree_util.keystr(path)
        np.testing.assert_allclose(float(out["layers"][key]["S2"]), v, rtol=tol)
    S1, S2 = sum(jax.tree_util.tree_leaves(s1)), sum(jax.tree_util.tree_leaves(s2))
    np.testing.assert_allclose(float(out["S1"]), S1, rtol=tol)
    np.testing.assert_allclose(float(out["S2"]), S2, rtol=tol)
    np.testing.assert_allclose(float(out["batch_size_bound"]), 12 * S1 / S2, rtol=tol)
    for u, v in zip(jax.tree_util.tree_leaves(out["grad_sum"]), jax.tree_util.tree_leaves(g)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v).sum(0), rtol=tol,
                                   atol=tol)


def test_random_metric_matches_brute_force_float32(getkey):
    loss, p, x, y = _model(getkey())
    m = _random_metric(getkey(), p)
    out = numerics.gradient_diversity(loss, p, x, y, metric=m)
    with numerics.x64():  # the reference in float64 from the same float32 inputs
        p64, m64, x64, y64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                                    (p, m, x, y))
        s1, s2 = _brute(loss, p64, x64, y64, m64)
    S1, S2 = sum(jax.tree_util.tree_leaves(s1)), sum(jax.tree_util.tree_leaves(s2))
    # float32 against float64: S1 is a sum of non-negative terms (relative error a few ulp
    # per operation, ~1e-6); S2 = |sum_i D g_i|^2 loses relative precision by up to the
    # cancellation factor n S1 / S2 = B_S, so its bound is the float32 round-off table entry
    # (2e-4, which covers B_S up to ~100 at ~1e-6 per term) times max(1, B_S / 10)
    np.testing.assert_allclose(float(out["S1"]), S1, rtol=F32["roundoff"])
    np.testing.assert_allclose(float(out["S2"]), S2,
                               rtol=F32["roundoff"] * max(1.0, 12 * S1 / S2 / 10))


def _adam_by_hand(grads_seq, b1, b2, eps, eps_root=0.0):
    nu = np.zeros_like(grads_seq[0])
    for g in grads_seq:
        nu = b2 * nu + (1 - b2) * g * g
    t = len(grads_seq)
    v_hat = nu / (1 - b2 ** t)
    return 1 / (np.sqrt(v_hat + eps_root) + eps)


@pytest.mark.parametrize("kind", ["adam", "inject", "chain"])
def test_adam_metric_by_hand(getkey, kind):
    w = {"w": jnp.zeros(4)}
    b2, eps = 0.95, 1e-3
    if kind == "adam":
        tx, kw = optax.adam(0.1, b2=b2, eps=eps), {"b2": b2, "eps": eps}
    elif kind == "inject":  # hyperparameters read from the state
        tx, kw = optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b2=b2, eps=eps), {}
    else:
        tx = optax.chain(optax.clip_by_global_norm(1e9),
                         optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b2=b2,
                                                              eps=eps),
                         optax.add_decayed_weights(0.0))
        kw = {}
    state = tx.init(w)
    np.testing.assert_allclose(np.asarray(numerics.adam_metric(state, **kw)["w"]),
                               1 / eps)  # t = 0: v_hat = 0, the uniform metric 1/eps
    grads = [np.asarray(jax.random.normal(getkey(), (4,))) for _ in range(3)]
    step = jax.jit(tx.update)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        for g in grads:
            upd, state = step({"w": jnp.asarray(g)}, state, w)
            w = optax.apply_updates(w, upd)
    got = jax.jit(lambda s: numerics.adam_metric(s, **kw))(state)["w"]
    # float32 EMA of three squares and one sqrt: a few ulp
    np.testing.assert_allclose(np.asarray(got), _adam_by_hand(grads, 0.9, b2, eps), rtol=1e-5)


def test_metric_bad_input(getkey):
    loss, p, x, y = _model(getkey())
    ones = jax.tree_util.tree_map(jnp.ones_like, p)
    bad_shape = dict(ones, w=jnp.ones((3, 6)))
    with pytest.raises(ValueError, match=r"metric\['w'\] has shape \(3, 6\)"):
        numerics.gradient_diversity(loss, p, x, y, metric=bad_shape)
    with pytest.raises(ValueError, match="shaped like params"):
        numerics.gradient_diversity(loss, p, x, y, metric={"w": ones["w"]})
    for bad in (0.0, -1.0, np.nan, np.inf):
        m = dict(ones, b=ones["b"].at[2].set(bad))
        with pytest.raises(ValueError, match=r"metric\['b'\] must be positive and finite"):
            numerics.gradient_diversity(loss, p, x, y, metric=m)
    with pytest.raises(ValueError, match="exactly one optax ScaleByAdamState"):
        numerics.adam_metric(optax.sgd(0.1).init(p))
    two = optax.chain(optax.adam(0.1), optax.adam(0.1)).init(p)
    with pytest.raises(ValueError, match="found 2"):
        numerics.adam_metric(two)


def test_masked_and_negated_weights_keep_an_exact_weighted_form(getkey):
    """A weight multiplied by a constant mask of its own shape (no metric) is the same scaled
    view the metric's reparametrisation makes: its per-example norms are the weighted dense
    form with weights mask², also through a negation after it (a signed view) and crossed
    with a metric (a second scaling: the exact fallback)."""
    with numerics.x64():
        k = jax.random.split(getkey(), 4)
        mask = (jax.random.uniform(k[0], (3, 4)) > 0.3).astype(jnp.float64) * 2.0
        p = {"w": jax.random.normal(k[1], (3, 4), jnp.float64)}

        def loss(p, x, y):
            return jnp.sum(jnp.tanh(x @ -(p["w"] * mask)) ** 2) - y

        x = jax.random.normal(k[2], (6, 5, 3), jnp.float64)
        y = jax.random.normal(k[3], (6,), jnp.float64)
        out = numerics.gradient_diversity(loss, p, x, y)
        ref = numerics.gradient_diversity(loss, p, x, y, method="vmap")
        m = _random_metric(getkey(), p)
        out_m = numerics.gradient_diversity(loss, p, x, y, metric=m)
        s1, s2 = _brute(loss, p, x, y, m)
    assert out["paths"]["['w']"].startswith("dense")
    tol = F64["roundoff"]  # exact: the same sums in another operation order
    np.testing.assert_allclose(float(out["S1"]), float(ref["S1"]), rtol=tol)
    np.testing.assert_allclose(float(out_m["S1"]), s1["w"], rtol=tol)
    np.testing.assert_allclose(float(out_m["S2"]), s2["w"], rtol=tol)
