"""``tune=True``: each dense / conv leaf's form chosen by measured time (numerics._tune)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numerics
from numerics import _bench_models, _generic, _tune


@pytest.fixture
def fresh_caches():
    """Plans tuned under a fake timer must not leak into other tests (and vice versa)."""
    _generic._TUNED.clear()
    yield
    _generic._TUNED.clear()


def _model(name, n=4):
    loss, p, x, y, _ = _bench_models.MODELS[name](n=n, key=jax.random.key(5))
    return loss, p, x, y


@pytest.mark.parametrize("name", ["block", "scnn",
                                  pytest.param("rnn", marks=pytest.mark.slow)])  # 6 s: scan
def test_every_flip_is_exact_and_is_what_runs(name, monkeypatch, fresh_caches):
    """A fake timer that finds every other form faster flips every tunable leaf; the flipped
    forms then run (``paths`` says so) and agree with vmap(grad) in float64 (the slack:
    round-off of the same sums in another order)."""
    # every candidate twice as fast as the current best; nothing is compiled
    monkeypatch.setattr(_tune, "paired_seconds", lambda make_a, make_b, args: (1.0, 0.5))
    with numerics.x64():
        loss, p, x, y = _model(name)
        f64 = lambda t: jax.tree_util.tree_map(
            lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, t)
        p, x = f64(p), f64(x)
        plan = numerics.ghost_plan(loss, p, x, y)
        tuned = numerics.ghost_plan(loss, p, x, y, tune=True)
        flips = _tune.tunable(plan)
        assert flips, "the model should have a leaf with a choice of forms"
        for i in flips:
            leaf = plan.sites[i][1]
            assert tuned.sites[i][4] != plan.sites[i][4]
            assert tuned.paths[leaf] != plan.paths[leaf]
            assert (leaf in tuned.skip) == (tuned.sites[i][4] == "materialised")
        out = numerics.gradient_diversity(loss, p, x, y, tune=True)
        ref = numerics.gradient_diversity(loss, p, x, y, method="vmap")
    assert tuple(out["paths"].values()) == tuned.paths
    for k in ref["layers"]:
        for stat in ("S1", "S2"):
            np.testing.assert_allclose(float(out["layers"][k][stat]),
                                       float(ref["layers"][k][stat]), rtol=1e-10,
                                       atol=1e-10 * float(ref[stat]), err_msg=k)
    for a, b in zip(jax.tree_util.tree_leaves(out["grad_sum"]),
                    jax.tree_util.tree_leaves(ref["grad_sum"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10)


def _tiny():
    """Two dense layers over 3 positions per example: each has a Gram and a materialised form."""
    k = jax.random.split(jax.random.key(6), 4)
    p = {"w": jax.random.normal(k[0], (4, 5)), "v": jax.random.normal(k[1], (5, 2))}
    loss = lambda p, x, y: jnp.sum((jnp.tanh(x @ p["w"]) @ p["v"] - y) ** 2)
    return loss, p, jax.random.normal(k[2], (6, 3, 4)), jax.random.normal(k[3], (6, 3, 2))


def test_slower_forms_are_not_kept(monkeypatch, fresh_caches):
    """Candidates no faster than ``rel`` (3%) below the best stay unused: the estimated plan
    comes back unchanged."""
    # every candidate 2% faster: within the noise allowance
    monkeypatch.setattr(_tune, "paired_seconds", lambda make_a, make_b, args: (1.0, 0.98))
    loss, p, x, y = _tiny()
    assert len(_tune.tunable(numerics.ghost_plan(loss, p, x, y))) == 2
    assert numerics.ghost_plan(loss, p, x, y, tune=True) == numerics.ghost_plan(loss, p, x, y)


def test_real_timer_keeps_the_numbers(fresh_caches):
    """With the real timer (whatever it picks on this host) the statistics are those of the
    estimated plan up to float32 round-off of the other form (slack: 1e-5, the float32
    agreement target)."""
    loss, p, x, y = _tiny()
    a = numerics.gradient_diversity(loss, p, x, y)
    b = numerics.gradient_diversity(loss, p, x, y, tune=True)
    for k in a["layers"]:
        np.testing.assert_allclose(float(b["layers"][k]["S1"]), float(a["layers"][k]["S1"]),
                                   rtol=1e-5)


@pytest.mark.parametrize("kw", [{"method": "vmap"},
                                {"metric": "ones"}], ids=["vmap", "metric"])
def test_tune_needs_the_ghost_method_without_a_metric(kw):
    loss, p, x, y = _tiny()
    if "metric" in kw:
        kw = {"metric": jax.tree_util.tree_map(jnp.ones_like, p)}
    with pytest.raises(ValueError, match="tune=True"):
        numerics.gradient_diversity(loss, p, x, y, tune=True, **kw)
