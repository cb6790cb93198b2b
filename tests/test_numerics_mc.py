"""numerics.mc_moments: brute force, compile-once, multi-device, and Monte Carlo vs theory."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import numerics
from numerics._testing import TOL, count_compilations
from theory import NetSpec, data

F64 = TOL[np.dtype("float64")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sq_loss(spec):
    return lambda p, xi, yi: 0.5 * jax.numpy.sum((numerics.apply(spec, p, xi) - yi) ** 2)


@pytest.mark.parametrize("spec", [
    NetSpec(depth=3, widths=(6, 4), input_dim=3, outputs=2, activation="relu"),
    NetSpec(depth=4, widths=(5,) * 3, input_dim=3, arch="residual", activation="relu"),
], ids=["relu-fc", "relu-residual"])
def test_mc_samples_equal_brute_force_networks(spec, getkey):
    """Network i of the Monte Carlo is init_params(fold_in(key, i)); its S1, S2 equal the
    generic vmap(grad) path's on that network (float64 round-off)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, spec.outputs))
    key, samples = getkey(), 6  # not a multiple of the block (4): padding is discarded
    with numerics.x64():
        res = numerics.mc_moments(spec, x, y, key=key, samples=samples, chunk=1)
        assert res.S1_samples.shape == (samples,)
        for i in range(samples):
            params = numerics.init_params(spec, key=jax.random.fold_in(key, i))
            ref = numerics.gradient_diversity(_sq_loss(spec), params, x, y)
            np.testing.assert_allclose(res.S1_samples[i], float(ref["S1"]), rtol=F64["roundoff"])
            np.testing.assert_allclose(res.S2_samples[i], float(ref["S2"]), rtol=F64["roundoff"])
        np.testing.assert_allclose(res.S1_layer_samples.sum(1), res.S1_samples,
                                   rtol=F64["roundoff"])


def test_mc_summaries_and_estimators(getkey):
    spec = NetSpec(depth=2, widths=(8,), input_dim=3, activation="relu")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 1))
    with numerics.x64():
        res = numerics.mc_moments(spec, x, y, key=getkey(), samples=300, bootstrap=400)
    s1, s2 = res.S1_samples, res.S2_samples
    assert res.S1 == pytest.approx(s1.mean()) and res.S2 == pytest.approx(s2.mean())
    assert res.S1_se == pytest.approx(s1.std(ddof=1) / np.sqrt(300))
    assert res.batch_size_bound == pytest.approx(6 * s1.mean() / s2.mean())
    assert res.mean_B_S == pytest.approx(np.mean(6 * s1 / s2))
    q = res.B_S_quantiles
    assert q[0.05] <= q[0.5] <= q[0.95]
    assert res.running["samples"][-1] == 300
    assert res.running["batch_size_bound"][-1] == pytest.approx(res.batch_size_bound)
    lo, hi = res.bootstrap["batch_size_bound_ci"]
    assert lo < res.batch_size_bound < hi
    # the delta-method SE and the bootstrap interval measure the same spread: the 95% interval
    # is about 2 x 1.96 SE wide; allow a factor 2 either way (the bootstrap has its own noise)
    width = hi - lo
    assert 0.5 * 3.92 * res.batch_size_bound_se < width < 2 * 3.92 * res.batch_size_bound_se
    d = res.to_dict()
    for k in ("mc_S1", "mc_S1_se", "mc_S2", "mc_S2_se", "mc_batch_size_bound",
              "mc_batch_size_bound_se", "mc_mean_B_S", "mc_mean_B_S_se"):
        assert np.isfinite(d[k])
    json.dumps(d)


def test_mc_compiles_once_for_new_key_and_sample_count(getkey):
    spec = NetSpec(depth=3, widths=(8, 8), input_dim=4, activation="relu")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 1))
    k1, k2 = getkey(), getkey()
    numerics.mc_moments(spec, x, y, key=k1, samples=40, chunk=4)  # warm-up compile
    with count_compilations() as count:
        numerics.mc_moments(spec, x, y, key=k2, samples=40, chunk=4)
        numerics.mc_moments(spec, x, y, key=k1, samples=77, chunk=4)
        numerics.mc_moments(spec, x, y, key=k2, samples=3, chunk=4)
    assert count[0] == 0
    with count_compilations() as count:  # the counter does see compilations
        numerics.mc_moments(spec, x, y, key=k1, samples=3, chunk=5)
    assert count[0] >= 1


_MULTI = textwrap.dedent("""
    import json, sys, jax, numpy as np
    sys.path.insert(0, {root!r})
    import numerics
    from theory import NetSpec
    assert len(jax.local_devices()) == 4, jax.local_devices()
    spec = NetSpec(depth=4, widths=(6,) * 3, input_dim=3, outputs=2, arch="residual",
                   activation="relu")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal((9, 2))
    out = {{}}
    with numerics.x64():
        for dev in (1, 4):
            r = numerics.mc_moments(spec, x, y, key=jax.random.key(7), samples=37, chunk=3,
                                    devices=dev)
            out[dev] = [r.S1_samples.tolist(), r.S2_samples.tolist()]
    print(json.dumps(out))
""")


def test_multi_device_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _MULTI.format(root=ROOT)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, four = np.array(out["1"]), np.array(out["4"])
    # the same networks (keys fold_in(key, i)) computed on other devices: float64 round-off
    np.testing.assert_allclose(four, one, rtol=F64["roundoff"])


# ---------------------------------------------------------------- Monte Carlo vs theory
theory = pytest.importorskip("theory")
if not hasattr(theory, "expected_moments"):  # pragma: no cover - theory lands separately
    pytest.skip("theory.expected_moments not available", allow_module_level=True)


def _teacher(n, d, c, seed):
    ds = data.gaussian(n, d, seed=seed, labels="teacher", outputs=c, noise=0.3)
    return ds.x, ds.y


EXACT_CASES = [  # (id, spec, data, samples): every family theory calls "exact"
    ("deep-linear-L4", NetSpec.uniform(4, 6, 5, outputs=2), _teacher(6, 5, 2, 0), 4000),
    ("deep-linear-nonuniform", NetSpec(depth=3, widths=(4, 9), input_dim=5),
     _teacher(5, 5, 1, 1), 4000),
    ("linear-residual-L5", NetSpec.uniform(5, 6, 4, arch="residual"), _teacher(6, 4, 1, 2),
     4000),
    ("relu-L2", NetSpec.uniform(2, 10, 4, activation="relu", outputs=2), _teacher(7, 4, 2, 3),
     4000),
    ("relu-L2-zero-labels", NetSpec.uniform(2, 5, 4, activation="relu"),
     (_teacher(6, 4, 1, 4)[0], np.zeros((6, 1))), 4000),
]


@pytest.mark.parametrize("spec,xy,samples", [c[1:] for c in EXACT_CASES],
                         ids=[c[0] for c in EXACT_CASES])
def test_mc_agrees_with_exact_theory(spec, xy, samples, getkey):
    x, y = xy
    th = theory.expected_moments(spec, x, y)
    assert th.kind_S1 == th.kind_S2 == "exact"
    with numerics.x64():
        mc = numerics.mc_moments(spec, x, y, key=getkey(), samples=samples)
    z = F64["z"]  # a Monte Carlo mean vs its exact expectation: 4 standard errors
    assert abs(mc.S1 - float(th.expected_S1)) <= z * mc.S1_se
    assert abs(mc.S2 - float(th.expected_S2)) <= z * mc.S2_se
    assert abs(mc.batch_size_bound - th.batch_size_bound) <= z * mc.batch_size_bound_se


def test_mc_agrees_with_exact_theory_mnist1d(getkey):
    ds = data.mnist1d(12)
    spec = NetSpec.uniform(3, 8, ds.input_dim, outputs=ds.outputs)
    th = theory.expected_moments(spec, ds.x, ds.y)
    with numerics.x64():
        mc = numerics.mc_moments(spec, ds.x, ds.y, key=getkey(), samples=3000)
    z = F64["z"]  # Monte Carlo mean vs exact expectation: 4 standard errors
    assert abs(mc.S1 - float(th.expected_S1)) <= z * mc.S1_se
    assert abs(mc.S2 - float(th.expected_S2)) <= z * mc.S2_se


@pytest.mark.parametrize("L,K", [(3, 48), (4, 64), (3, 96)])
def test_mc_vs_deep_relu_pair_chain(L, K, getkey):
    spec = NetSpec.uniform(L, K, 4, activation="relu")
    x, y = _teacher(6, 4, 1, 5)
    th = theory.expected_moments(spec, x, y)
    assert (th.kind_S1, th.kind_S2) == ("exact", "numerical")
    with numerics.x64():
        mc = numerics.mc_moments(spec, x, y, key=getkey(), samples=3000)
    z = F64["z"]
    # E[S1] is exact: 4 standard errors
    assert abs(mc.S1 - float(th.expected_S1)) <= z * mc.S1_se
    # E[S2] is numerical (theory/_pair_chain.py): 4 SE plus its stated precision
    slack = z * mc.S2_se + theory.PAIR_CHAIN_PRECISION * float(th.expected_S2)
    assert abs(mc.S2 - float(th.expected_S2)) <= slack


@pytest.mark.parametrize("L", [3, 4])
def test_mc_vs_deep_relu_pair_chain_mnist1d(L, getkey):
    """MNIST-1D at K = 64, where the retired closed approximation was about 9% off E[S2]: the
    pair chain is within its precision + 4 SE."""
    K = 64
    ds = data.mnist1d(48)
    spec = NetSpec.uniform(L, K, 40, outputs=10, activation="relu")
    th = theory.expected_moments(spec, ds.x, ds.y)
    assert th.kind_S2 == "numerical"
    with numerics.x64():
        mc = numerics.mc_moments(spec, ds.x, ds.y, key=getkey(), samples=1024)
    slack = F64["z"] * mc.S2_se + theory.PAIR_CHAIN_PRECISION * float(th.expected_S2)
    assert abs(mc.S2 - float(th.expected_S2)) <= slack
