"""numerics' training-loop monitor: value_grad_and_diversity (jit, one pass) and the optax
noise_scale_ema transformation, against vmap(grad) and hand-computed moving averages."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
from numerics._testing import TOL
from theory import diversity

F64 = TOL[np.dtype("float64")]
F32 = TOL[np.dtype("float32")]


def _paired_step(f, tx, plain, loss, x, y, metric_of=None):
    """One jitted step of the monitored chain ``tx`` (``f`` = value_grad_and_diversity, with
    ``metric_of(state)`` as the metric when given) beside one of the ``plain`` optimiser on
    ``jax.grad`` of the mean loss: the trajectories they must share."""

    @jax.jit
    def step(params, state, ref_params, ref_state):
        kw = {} if metric_of is None else {"metric": metric_of(state)}
        value, grads, st = f(params, x, y, **kw)
        upd, state = tx.update(grads, state, params, diversity=st)
        ref_grads = jax.grad(lambda q: jnp.mean(jax.vmap(loss, (None, 0, 0))(q, x, y)))(
            ref_params)
        ref_upd, ref_state = plain.update(ref_grads, ref_state, ref_params)
        return (optax.apply_updates(params, upd), state,
                optax.apply_updates(ref_params, ref_upd), ref_state)

    return step


def _model(key):
    k = jax.random.split(key, 4)
    p = {"w": jax.random.normal(k[0], (6, 3)), "b": jnp.zeros(6),
         "v": jax.random.normal(k[1], (6,))}
    loss = lambda p, x, y: 0.5 * (jnp.dot(p["v"], jnp.tanh(p["w"] @ x + p["b"])) - y) ** 2
    return loss, p, jax.random.normal(k[2], (12, 3)), jax.random.normal(k[3], (12,))


def test_value_grad_and_diversity_matches_reference(getkey):
    with numerics.x64():
        loss, p, x, y = _model(getkey())
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)
        value, grads, st = jax.jit(numerics.value_grad_and_diversity(loss))(p, x, y)
        mean_loss = lambda p: jnp.mean(jax.vmap(loss, (None, 0, 0))(p, x, y))
        ref_v, ref_g = jax.value_and_grad(mean_loss)(p)
        ref = numerics.gradient_diversity(loss, p, x, y, method="vmap")
        tol = F64["roundoff"]  # the same quantities in another operation order
        np.testing.assert_allclose(float(value), float(ref_v), rtol=tol)
        for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_g)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)
        for k in ("S1", "S2", "batch_size_bound", "B_simple", "B_simple_unbiased"):
            np.testing.assert_allclose(float(getattr(st, k)), float(ref[k]), rtol=tol)
        # McCandlish's unbiased pieces: tr(Sigma)/|G|^2 is the unbiased noise scale
        np.testing.assert_allclose(float(st.trace_sigma / st.G2), float(st.B_simple_unbiased),
                                   rtol=tol)


def test_custom_rule_inside_jit_keeps_the_rule(getkey):
    """A straight-through custom_vjp on a parameter: inside jit the rule is kept (vmap path)."""
    @jax.custom_vjp
    def ste(s):
        return jnp.round(s)

    ste.defvjp(lambda s: (jnp.round(s), None), lambda _, g: (g,))
    with numerics.x64():
        loss0, p, x, y = _model(getkey())
        p = dict(jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p), s=jnp.ones(3))
        loss = lambda p, xi, yi: loss0(p, xi, yi) + jnp.dot(ste(p["s"]), xi) ** 2
        _, _, st = jax.jit(numerics.value_grad_and_diversity(loss))(p, x, y)
        ref = numerics.gradient_diversity(loss, p, x, y, method="vmap")
        np.testing.assert_allclose(float(st.S1), float(ref["S1"]), rtol=F64["roundoff"])
        np.testing.assert_allclose(float(st.S2), float(ref["S2"]), rtol=F64["roundoff"])


def test_noise_scale_ema_by_hand():
    decay = 0.8
    tx = numerics.noise_scale_ema(decay)
    with numerics.x64():
        state = tx.init(None)
        steps = [(12.0, 3.0, 4), (5.0, 4.0, 4), (9.0, 1.0, 8)]
        for S1, S2, n in steps:
            st = numerics.diversity_stats(jnp.float64(S1), jnp.float64(S2), n)
            upd, state = tx.update({"g": jnp.ones(2)}, state, diversity=st)
            np.testing.assert_array_equal(np.asarray(upd["g"]), 1.0)  # updates unchanged
        est = numerics.noise_scale_estimates(state)

    def ema(values):
        e = 0.0
        for v in values:
            e = decay * e + (1 - decay) * v
        return e

    mean_sq = ema([S1 / n for S1, _, n in steps])
    g2 = ema([S2 / n**2 for _, S2, n in steps])
    tol = F64["roundoff"]  # a few float64 operations
    np.testing.assert_allclose(float(est["batch_size_bound"]), mean_sq / g2, rtol=tol)
    np.testing.assert_allclose(float(est["B_simple"]), mean_sq / g2 - 1, rtol=tol)
    tr = ema([(S1 / n - S2 / n**2) / (1 - 1 / n) for S1, S2, n in steps])
    g2u = ema([(S2 / n - S1 / n) / (n - 1) for S1, S2, n in steps])
    np.testing.assert_allclose(float(est["B_simple_unbiased"]), tr / g2u, rtol=tol)
    assert int(est["steps"]) == 3
    last = diversity(9.0, 1.0, 8)
    np.testing.assert_allclose(float(est["last"]["batch_size_bound"]),
                               last["batch_size_bound"], rtol=tol)


def test_monitor_in_an_optax_training_loop(getkey):
    loss, p, x, y = _model(getkey())
    tx = optax.chain(numerics.noise_scale_ema(0.9), optax.sgd(0.05))
    plain = optax.sgd(0.05)
    f = numerics.value_grad_and_diversity(loss)

    step = _paired_step(f, tx, plain, loss, x, y)

    state, ref, ref_state = tx.init(p), p, plain.init(p)
    for _ in range(5):
        p, state, ref, ref_state = step(p, state, ref, ref_state)
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(ref)):
        # the same SGD trajectory: float32 round-off of 5 steps
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    est = numerics.noise_scale_estimates(state)
    assert int(est["steps"]) == 5 and float(est["batch_size_bound"]) >= 1.0
    np.testing.assert_allclose(float(est["B_simple"]), float(est["batch_size_bound"]) - 1,
                               rtol=1e-6)  # float32 round-off of one subtraction


def test_monitor_errors():
    with pytest.raises(ValueError, match="decay must be in"):
        numerics.noise_scale_ema(1.0)
    tx = numerics.noise_scale_ema()
    with pytest.raises(ValueError, match="needs update"):
        tx.update({}, tx.init(None))
    with pytest.raises(ValueError, match="expected one noise_scale_ema state"):
        numerics.noise_scale_estimates(optax.sgd(0.1).init({"w": jnp.zeros(2)}))
    params = {"w": jnp.zeros(2)}
    st = numerics.diversity_stats(jnp.float32(12.0), jnp.float32(3.0), 4)
    with pytest.raises(ValueError, match="needs init"):
        numerics.noise_scale_ema(per_layer=True).init(None)
    tx = numerics.noise_scale_ema(per_layer=True)
    with pytest.raises(ValueError, match="needs per-layer stats"):
        tx.update(params, tx.init(params), diversity=st)
    tx = numerics.noise_scale_ema(precond=True)  # a step without the metric: those EMAs wait
    _, state = tx.update(params, tx.init(params), diversity=st)
    est = numerics.noise_scale_estimates(state)
    assert int(est["steps"]) == 1 and int(est["precond"]["steps"]) == 0
    loss = lambda p, x, y: jnp.dot(p["w"], x) * y
    f = numerics.value_grad_and_diversity(loss)
    with pytest.raises(ValueError, match=r"metric\['w'\] has shape"):
        f(params, jnp.ones((3, 2)), jnp.ones(3), metric={"w": jnp.ones(3)})


def test_vmapped_over_trials(getkey):
    """Several trials stacked on a leading axis (as experiments/ trains them): one vmapped
    call equals the trials one at a time."""
    loss, p, x, y = _model(getkey())
    _, q, _, _ = _model(getkey())
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), p, q)
    f = numerics.value_grad_and_diversity(loss)
    _, grads, st = jax.jit(jax.vmap(f, in_axes=(0, None, None)))(stacked, x, y)
    for t, params in enumerate((p, q)):
        _, g1, s1 = f(params, x, y)
        # the same float32 computation batched over trials: round-off only
        np.testing.assert_allclose(float(st.S1[t]), float(s1.S1), rtol=1e-5)
        np.testing.assert_allclose(float(st.S2[t]), float(s1.S2), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(grads["w"][t]), np.asarray(g1["w"]), rtol=1e-5,
                                   atol=1e-6)


def _weighted_brute(loss, p, x, y, metric):
    """Per leaf sum_i g_i^T P g_i and (sum_i g_i)^T P (sum_i g_i), from vmap(grad)."""
    g = jax.vmap(jax.grad(loss), (None, 0, 0))(p, x, y)
    s1 = jax.tree_util.tree_map(lambda m, a: float(jnp.sum(m[None] * a * a)), metric, g)
    s2 = jax.tree_util.tree_map(lambda m, a: float(jnp.sum(m * jnp.sum(a, 0) ** 2)), metric, g)
    keyed = lambda t: {jax.tree_util.keystr(k): v
                       for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
    return keyed(s1), keyed(s2)


def test_per_layer_and_metric_match_brute_force(getkey):
    with numerics.x64():
        loss, p, x, y = _model(getkey())
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)
        keys = jax.random.split(getkey(), 3)
        metric = {k: jnp.exp(jax.random.normal(kk, p[k].shape, jnp.float64))
                  for k, kk in zip(sorted(p), keys)}
        f = jax.jit(numerics.value_grad_and_diversity(loss, per_layer=True))
        value, grads, st = f(p, x, y, metric=metric)
        _, grads0, st0 = f(p, x, y)  # without a metric: the same plain statistics
        ref = numerics.gradient_diversity(loss, p, x, y, method="vmap")
        w1, w2 = _weighted_brute(loss, p, x, y, metric)
    tol = F64["roundoff"]  # the same sums in another operation order
    assert st0.precond is None
    for key, d in ref["layers"].items():
        for k in ("S1", "S2"):
            np.testing.assert_allclose(float(st.layers[key][k]), float(d[k]), rtol=tol)
            np.testing.assert_allclose(float(st0.layers[key][k]), float(d[k]), rtol=tol)
        np.testing.assert_allclose(float(st.precond.layers[key]["S1"]), w1[key], rtol=tol)
        np.testing.assert_allclose(float(st.precond.layers[key]["S2"]), w2[key], rtol=tol)
    for s in (st, st.precond):  # the leaves' sums are the totals
        np.testing.assert_allclose(sum(float(v["S1"]) for v in s.layers.values()),
                                   float(s.S1), rtol=tol)
        np.testing.assert_allclose(sum(float(v["S2"]) for v in s.layers.values()),
                                   float(s.S2), rtol=tol)
    np.testing.assert_allclose(float(st.S1), float(ref["S1"]), rtol=tol)
    S1, S2 = sum(w1.values()), sum(w2.values())
    np.testing.assert_allclose(float(st.precond.batch_size_bound), 12 * S1 / S2, rtol=tol)
    np.testing.assert_allclose(float(st.precond.B_simple), 12 * S1 / S2 - 1, rtol=tol)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads0)):
        # one pass in the metric's coordinates gives both: (D ⊙ g)/D is g up to a rounding
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_per_layer_and_precond_ema_by_hand():
    decay = 0.5
    tx = numerics.noise_scale_ema(decay, per_layer=True, precond=True)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    steps = [((3.0, 1.0), (9.0, 2.0), 4), ((5.0, 2.0), (1.0, 1.0), 4)]
    with numerics.x64():
        state = tx.init(params)
        for (a1, a2), (b1, b2), n in steps:
            lay = {"['a']": {"S1": jnp.float64(a1), "S2": jnp.float64(a2)},
                   "['b']": {"S1": jnp.float64(b1), "S2": jnp.float64(b2)}}
            pre = numerics.diversity_stats(jnp.float64(2 * a1 + b1), jnp.float64(2 * a2 + b2),
                                           n, layers=lay)
            st = numerics.diversity_stats(jnp.float64(a1 + b1), jnp.float64(a2 + b2), n,
                                          layers=lay, precond=pre)
            _, state = jax.jit(tx.update)(params, state, diversity=st)
        est = numerics.noise_scale_estimates(state)

    def ema(values):
        e = 0.0
        for v in values:
            e = decay * e + (1 - decay) * v
        return e

    def bounds(pairs):
        mean_sq = ema([s1 / n for (s1, _), n in pairs])
        g2 = ema([s2 / n**2 for (_, s2), n in pairs])
        tr = ema([(s1 / n - s2 / n**2) / (1 - 1 / n) for (s1, s2), n in pairs])
        g2u = ema([(s2 / n - s1 / n) / (n - 1) for (s1, s2), n in pairs])
        return mean_sq / g2, tr / g2u

    tol = F64["roundoff"]  # a few float64 operations
    cases = {("layers", "['a']"): [(a, n) for a, _, n in steps],
             ("layers", "['b']"): [(b, n) for _, b, n in steps],
             ("precond",): [((2 * a[0] + b[0], 2 * a[1] + b[1]), n) for a, b, n in steps]}
    for where, pairs in cases.items():
        got = est[where[0]] if len(where) == 1 else est[where[0]][where[1]]
        bound, unb = bounds(pairs)
        np.testing.assert_allclose(float(got["batch_size_bound"]), bound, rtol=tol)
        np.testing.assert_allclose(float(got["B_simple"]), bound - 1, rtol=tol)
        np.testing.assert_allclose(float(got["B_simple_unbiased"]), unb, rtol=tol)
    assert set(est["precond"]["layers"]) == {"['a']", "['b']"}
    assert float(est["last"]["precond"].S1) == 2 * 5.0 + 1.0


def test_adam_chain_with_preconditioned_monitor_under_jit(getkey):
    """optax.chain(noise_scale_ema, adam) under jit, the metric from the chain's Adam state:
    the same trajectory as plain Adam, and each step's preconditioned statistics those of
    gradient_diversity(metric=adam_metric(state before the step))."""
    loss, p, x, y = _model(getkey())
    tx = optax.chain(numerics.noise_scale_ema(0.9, per_layer=True, precond=True),
                     optax.adam(0.01))
    plain = optax.adam(0.01)
    f = numerics.value_grad_and_diversity(loss, per_layer=True)

    step = _paired_step(f, tx, plain, loss, x, y, numerics.adam_metric)

    state, ref, ref_state = tx.init(p), p, plain.init(p)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        for t in range(4):
            before = numerics.adam_metric(state)
            p_before = p
            p, state, ref, ref_state = step(p, state, ref, ref_state)
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(ref)):
        # the same Adam trajectory: float32 round-off of 4 steps
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    est = numerics.noise_scale_estimates(state)
    assert int(est["steps"]) == 4 and set(est["precond"]["layers"]) == set(est["layers"])
    last = est["last"]["precond"]
    ref_last = numerics.gradient_diversity(loss, p_before, x, y, metric=before)
    # float32, two exact computations of the same sums (ghost vs per-example fallback path)
    np.testing.assert_allclose(float(last.S1), float(ref_last["S1"]), rtol=F32["roundoff"])
    np.testing.assert_allclose(float(last.S2), float(ref_last["S2"]), rtol=F32["roundoff"])


def test_bench_monitor_suite_smoke(capsys):
    """``python -m numerics.bench --suite monitor``: one row per model x optimiser with the
    step ratios (tiny sizes, one repetition)."""
    import json

    from numerics import bench
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int counts and floats
        assert bench.main(["--json", "--suite", "monitor", "--models", "mlp", "--n", "4",
                           "--widths", "8", "--depths", "2", "--reps", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["model"], r["optimizer"]) for r in rows] == [("mlp", "sgd"), ("mlp", "adam")]
    assert "monitor_adam_metric_over_plain" in rows[1]
    assert "monitor_adam_metric_over_plain" not in rows[0]
    assert all(r["monitor_over_plain"] > 0 and r["monitor_layers_over_plain"] > 0 for r in rows)


def test_vmapped_over_trials_with_adam_metric(getkey):
    """Trials stacked on a leading axis with their own Adam states: adam_metric and the
    metric pass inside one vmap equal the trials one at a time."""
    loss, p, x, y = _model(getkey())
    _, q, _, _ = _model(getkey())
    tx = optax.adam(0.01)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        states = []
        for params in (p, q):
            s = tx.init(params)
            _, s = tx.update(jax.tree_util.tree_map(jnp.ones_like, params), s, params)
            states.append(s)
    stack = lambda *t: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *t)
    f = numerics.value_grad_and_diversity(loss)
    one = lambda params, s: f(params, x, y, metric=numerics.adam_metric(s))[2].precond
    st = jax.jit(jax.vmap(one))(stack(p, q), stack(*states))
    for t, (params, s) in enumerate(zip((p, q), states)):
        ref = one(params, s)
        # the same float32 computation batched over trials: round-off only
        np.testing.assert_allclose(float(st.S1[t]), float(ref.S1), rtol=1e-5)
        np.testing.assert_allclose(float(st.S2[t]), float(ref.S2), rtol=1e-5)


@pytest.mark.parametrize("name, kw", [
    ("mlp_wd", dict(K=32)),                      # a parameter-only (weight-decay) term
    ("tied", dict(dim=16, vocab=32, seq=6)),     # a weight shared by a lookup and a product
    pytest.param("block", {}, marks=pytest.mark.slow),  # attention, layer norm (18 s)
    ("rnn", dict(seq=5, hidden=16)),             # weights inside lax.scan
])
def test_one_pass_gives_plain_and_metric_statistics(name, kw):
    """With a metric the monitor takes ONE pass in the metric's coordinates and reads the
    plain statistics off it too: both against method="vmap", every leaf form of the bench
    models. float32 against float32 in another operation order: the round-off table's
    entry (per-example sums of squares, ~1e-7 relative here)."""
    from numerics import _bench_models

    loss, p, x, y, _ = _bench_models.MODELS[name](n=16, key=jax.random.key(0), **kw)
    leaves, tdef = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    m = jax.tree_util.tree_unflatten(tdef, [jnp.exp(jax.random.normal(k, a.shape, a.dtype))
                                            for k, a in zip(keys, leaves)])
    _, _, st = jax.jit(numerics.value_grad_and_diversity(loss))(p, x, y, metric=m)
    ref = numerics.gradient_diversity(loss, p, x, y, method="vmap")
    ref_m = numerics.gradient_diversity(loss, p, x, y, method="vmap", metric=m)
    tol = TOL[np.dtype("float32")]["roundoff"]
    for got, want in ((st, ref), (st.precond, ref_m)):
        np.testing.assert_allclose(float(got.S1), float(want["S1"]), rtol=tol)
        np.testing.assert_allclose(float(got.S2), float(want["S2"]), rtol=tol)
