"""The study's statistics on synthetic step counts with a planted critical batch and known
noise: interval coverage measured over many draws, Holm / Benjamini–Hochberg against
hand-computed tables, matched-progress effects, predictors read off B_S curves, and the
calibration check against repeats.

The synthetic protocol mimics the sweep's: per seed and batch size, steps-to-target follow
McCandlish's law S(m) = S_min (1 + B/m) times a lognormal seed effect, plus the excess of a
learning-rate grid whose best point lies a uniform fraction of a step from the optimum, then
quantised up to the 10% evaluation grid. Coverage tests use fixed seeds, so they are
deterministic; their slack is the binomial standard error of a coverage over N draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import (benjamini_hochberg, calibration, holm, matched_effects, net_interval,
                         net_rows, slope_with_interval, steps_to)
from experiments._analysis import predictor_table, run_predictions, trends, adjust

BATCHES = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]


def _steps(rng, B, m, *, s_min=200.0, sd=0.08):
    """One seed's steps-to-target at batch m (planted B, lognormal noise, lr-grid excess
    up to 10% in log steps, quantised up to the next step of a 1.1-ratio grid)."""
    u = rng.uniform(-0.5, 0.5)
    v = s_min * (1 + B / m) * math.exp(sd * rng.standard_normal() + 0.4 * u * u)
    return float(math.ceil(v * 1.0000001 / 1.1 ** math.floor(math.log(v, 1.1)))
                 * 1.1 ** math.floor(math.log(v, 1.1)))


def _by_m(rng, B, seeds, **kw):
    return {m: {s: _steps(rng, B, m, **kw) for s in seeds} for m in BATCHES}


def _binomial_slack(p, n):
    # 3 binomial standard errors of a coverage estimated from n independent draws
    return 3 * math.sqrt(p * (1 - p) / n)


def test_net_interval_covers_a_planted_critical_batch():
    rng = np.random.default_rng(0)
    hits, n = 0, 0
    for _ in range(240):
        r = net_interval(_by_m(rng, 150.0, range(5)), range(5), level=0.9)
        assert r["ci_low"] is not None
        n += 1
        hits += r["ci_low"] <= 150.0 <= r["ci_high"]
    cov = hits / n
    # nominal 90%; slack: 3 binomial SE of 240 draws (0.058) plus 0.03 for the fit's bias
    # from the one-sided lr-grid excess and the quantisation (both mostly cancel in B)
    assert abs(cov - 0.9) <= _binomial_slack(0.9, n) + 0.03, cov


def test_net_interval_width_tracks_the_noise():
    rng = np.random.default_rng(1)
    quiet = net_interval(_by_m(rng, 150.0, range(5), sd=0.02), range(5))
    noisy = net_interval(_by_m(rng, 150.0, range(5), sd=0.3), range(5))
    # 15x more noise must widen the interval by a lot (not by a factor ~1: a constant width
    # would be a bug); quantisation and the lr-grid excess keep the quiet one from 0
    assert math.log(noisy["ci_high"] / noisy["ci_low"]) > 3 * math.log(
        quiet["ci_high"] / quiet["ci_low"])
    # the reproduction interval is the CI widened by sqrt(2) in log space
    w = lambda lo, hi: math.log(hi / lo)
    assert w(quiet["repro_low"], quiet["repro_high"]) == pytest.approx(
        math.sqrt(2) * w(quiet["ci_low"], quiet["ci_high"]))


def test_family_slope_interval_covers_a_planted_slope():
    rng = np.random.default_rng(2)
    widths = [48, 68, 96, 136]
    true = -0.4
    hits = 0
    draws = 200
    for _ in range(draws):
        pts = []
        for K in widths:
            B = 150.0 * (K / 48) ** true
            r = net_interval(_by_m(rng, B, range(5)), range(5))
            pts.append((math.log(K), math.log(r["B_crit"]),
                        {j: v for j, v in r["loo"].items()}))
        res = slope_with_interval([pts], range(5), level=0.9)
        hits += res["ci_low"] <= true <= res["ci_high"]
    cov = hits / draws
    # nominal 90%, slack: 3 binomial SE (0.064) + 0.03 (the fit's small bias, as above)
    assert abs(cov - 0.9) <= _binomial_slack(0.9, draws) + 0.03, cov


def test_calibration_of_repeats_is_nominal_for_right_intervals():
    rng = np.random.default_rng(3)
    first, rep = [], []
    for i in range(200):
        B = float(np.exp(rng.uniform(np.log(40), np.log(400))))
        a = net_interval(_by_m(rng, B, range(5)), range(5))
        b = net_interval(_by_m(rng, B, range(5, 10)), range(5, 10))
        first.append({**a, "key": i})
        rep.append({**b, "key": i})
    cal = calibration(first, rep, level=0.9)
    assert cal["pairs"] == 200 and cal["nominal"] == 0.9
    # right intervals: repeats land in the reproduction interval ~90% of the time (3 binomial
    # SE of 200 pairs + 0.03 for the fit's bias), and in the narrower CI less often
    assert abs(cal["coverage"] - 0.9) <= _binomial_slack(0.9, 200) + 0.03, cal
    assert cal["ci_coverage"] < cal["coverage"]
    assert cal["ci_expected"] == pytest.approx(0.7552, abs=1e-3)


def test_calibration_catches_intervals_that_are_too_narrow():
    rng = np.random.default_rng(4)
    first, rep = [], []
    for i in range(100):
        a = net_interval(_by_m(rng, 150.0, range(5)), range(5))
        b = net_interval(_by_m(rng, 150.0, range(5, 10)), range(5, 10))
        # shrink the first interval 4x around its estimate: a miscalibrated method
        c = a["B_crit"]
        a = {**a, "repro_low": c * (a["repro_low"] / c) ** 0.25,
             "repro_high": c * (a["repro_high"] / c) ** 0.25, "key": i}
        first.append(a)
        rep.append({**b, "key": i})
    assert calibration(first, rep)["coverage"] < 0.6


@pytest.mark.parametrize("p, holm_p, bh_q", [
    # hand-computed: Holm multiplies the k-th smallest by (n - k + 1), running maximum;
    # BH multiplies by n / rank, running minimum from the top
    ([0.01, 0.04, 0.03, 0.20], [0.04, 0.09, 0.09, 0.20], [0.04, 0.0533333333, 0.0533333333,
                                                          0.20]),
    ([0.5], [0.5], [0.5]),
    ([0.001, None, 0.9], [0.002, None, 0.9], [0.002, None, 0.9]),
    ([0.3, 0.3, 0.3], [0.9, 0.9, 0.9], [0.3, 0.3, 0.3]),
])
def test_holm_and_bh_tables(p, holm_p, bh_q):
    assert holm(p) == pytest.approx(holm_p)
    assert benjamini_hochberg(p) == pytest.approx(bh_q)


def _curve(stages, loss_at, acc_at):
    return {"step": list(stages), "loss": [loss_at(t) for t in stages],
            "accuracy": [acc_at(t) for t in stages]}


def _trials_for(nets, *, seeds, rng, stop_loss=0.4, n=2048):
    """Trial records whose curves follow loss(t) = 2.3·exp(-t/τ_net(m)) with τ chosen so that
    the steps to reach loss ℓ obey McCandlish's law with B_crit = b(ℓ, net)."""
    trials = []
    evals = sorted({0} | {int(math.ceil(1.1 ** k)) for k in range(1, 130)})
    for aid, depth, width, bfun in nets:
        for m in BATCHES:
            for s in seeds:
                noise = math.exp(0.05 * rng.standard_normal())

                def t_of(loss):  # steps to reach a loss level at this batch size
                    return 100.0 * math.log(2.3 / loss) * (1 + bfun(loss) / m) * noise

                grid = np.geomspace(2.29, stop_loss, 200)
                ts = np.array([t_of(v) for v in grid])

                def loss_at(t):
                    return float(np.interp(t, ts, grid)) if t <= ts[-1] else stop_loss

                curve = _curve(evals, loss_at, lambda t: 1 - loss_at(t) / 2.3)
                hit = steps_to(curve, "loss", stop_loss * 1.01)
                trials.append({"arch_id": aid, "arch": "fc", "activation": "relu",
                               "depth": depth, "width": width, "params": 1000,
                               "batch_size": m, "seed": s, "lr": 0.1, "n": n,
                               "status": "REACHED" if hit else "UNREACHED",
                               "target_metric": "loss", "target": stop_loss * 1.01,
                               "steps_to_target": hit, "curve": curve})
    return trials


def test_matched_loss_effect_is_zero_when_bcrit_depends_on_the_loss_alone():
    # B_crit grows as the loss falls, the same function for every width; wide nets merely
    # get there in other step counts — the confound of issue 13, item 3
    rng = np.random.default_rng(5)
    nets = [(f"fc-relu-L3-K{K}", 3, K, lambda loss: 400.0 / loss) for K in (48, 68, 96, 136)]
    trials = _trials_for(nets, seeds=range(5), rng=rng)
    targets = [("loss", v) for v in (1.5, 1.1, 0.85, 0.6)]
    rows = net_rows(trials, targets, n=2048)
    fam = {"width": [n[0] for n in nets]}
    (m,) = matched_effects(rows, fam, range(5))
    assert m["coef"] is not None and m["ci_low"] <= 0 <= m["ci_high"], m
    assert abs(m["coef"]) < 0.15


def test_matched_loss_effect_recovers_a_planted_width_effect():
    rng = np.random.default_rng(6)
    nets = [(f"fc-relu-L3-K{K}", 3, K, (lambda K: lambda loss: 400.0 / loss * (K / 48) ** 0.8)
             (K)) for K in (48, 68, 96, 136)]
    trials = _trials_for(nets, seeds=range(5), rng=rng)
    rows = net_rows(trials, [("loss", v) for v in (1.5, 1.1, 0.85, 0.6)], n=2048)
    (m,) = matched_effects(rows, {"width": [n[0] for n in nets]}, range(5))
    # the planted exponent 0.8 per log K, recovered within its interval and 0.2
    assert m["ci_low"] <= 0.8 <= m["ci_high"] and abs(m["coef"] - 0.8) < 0.2, m
    ts = adjust(trends(rows, {"width": [n[0] for n in nets]}, range(5),
                       primary="loss:0.6"))
    prim = [t for t in ts if t["primary"]]
    assert len(prim) == 1 and prim[0]["verdict"] == "supported", prim
    assert {"p_adjusted", "q_bh", "target_metric", "target"} <= set(prim[0])
    assert all(t["p_adjusted"] >= t["p"] for t in ts if t["p"] is not None)


def test_net_rows_with_and_without_the_full_batch_point():
    rng = np.random.default_rng(7)
    nets = [("fc-relu-L3-K48", 3, 48, lambda loss: 300.0)]
    rows = net_rows(_trials_for(nets, seeds=range(3), rng=rng), [("loss", 1.0)], n=2048)
    assert sorted(r["full_batch_point"] for r in rows) == [False, True]
    without = next(r for r in rows if not r["full_batch_point"])
    assert without["points"] == len(BATCHES) - 1
    # the planted B_crit = 300, seen both ways within 25% (5% step noise, 10% quantisation)
    assert all(abs(math.log(r["B_crit"] / 300.0)) < 0.25 for r in rows), rows


def test_run_predictions_read_the_bs_curve_up_to_and_at_the_target():
    base = {"arch_id": "a", "batch_size": 8, "lr": 0.1, "status": "REACHED",
            "target_metric": "accuracy", "target": 0.9}
    curve = {"step": [0, 10, 20, 40], "loss": [2, 1, 0.5, 0.2], "accuracy": [0, 0.3, 0.6, 0.95]}
    bs = {"step": [0, 1, 2, 4, 8, 16, 32], "B_S": [2.0, 2.0, 3.0, 5.0, 9.0, 17.0, 33.0]}
    trials = [{**base, "seed": 0, "steps_to_target": 40, "curve": curve, "B_S_curve": bs},
              # another lr of seed 0, slower to every target: not this seed's choice
              {**base, "lr": 0.05, "seed": 0, "steps_to_target": 80,
               "curve": {**curve, "step": [0, 20, 40, 80]}, "B_S_curve": bs}]
    pred = run_predictions(trials, "accuracy", 0.6)["a"]
    # seed 0 reaches 0.6 at step 20: B_S points at steps 0..16 average to 38/6; +1 (δ = 1)
    assert pred["run_to_target"] == pytest.approx(38.0 / 6 + 1)
    # at step 20, log B_S interpolated in log(1 + step) between 17 (16) and 33 (32), minus 1
    w = (math.log(21) - math.log(17)) / (math.log(33) - math.log(17))
    assert pred["B_simple_at_target"] == pytest.approx(math.exp(
        (1 - w) * math.log(17) + w * math.log(33)) - 1)


def test_lower_bound_counted_only_where_it_can_fail():
    rows = [{"B_crit": b, "observed_max_batch": mb, "at_edge": None,
             "predicted": {"theory_init": None, "mc_init": p, "run_to_target": None,
                           "B_simple_at_target": None}}
            for b, mb, p in ((100, 128, 3), (200, 256, 20), (400, 512, 40), (800, 512, 1000))]
    mc = {p["predictor"]: p for p in predictor_table(rows, smallest_batch=8,
                                                    n_boot=100)}["mc_init"]
    # the net predicted at 3 (< the smallest batch 8) cannot fail the check: not counted
    assert mc["lower_bound_nets"] == 3 and mc["lower_bound_held"] == pytest.approx(2 / 3)
    assert mc["nets"] == 4 and mc["spearman"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- optimizer axes
def test_mup_is_the_standard_parametrisation_at_the_base_width():
    from experiments._families import mup_lr_multipliers, mup_spec
    from theory import NetSpec

    base = NetSpec.uniform(3, 48, 40, outputs=10, activation="relu")
    same = mup_spec(base, 48)
    # gains round-trip through decimal strings: equal to 1e-12
    assert [float(g) for g in same.gain_squares] == pytest.approx(
        [float(g) for g in base.gain_squares], rel=1e-12)
    assert mup_lr_multipliers(base, "sgd", 48) == (1.0, 1.0, 1.0)
    wide = NetSpec.uniform(4, 192, 40, outputs=10, activation="relu")
    # output variance s_L^2 K0 / K^2 = 1 * 48 / 192^2: gain^2 = 48/192 of the standard 1
    assert float(mup_spec(wide, 48).gain_squares[-1]) == pytest.approx(0.25, rel=1e-12)
    assert float(mup_spec(wide, 48).gain_squares[1]) == pytest.approx(2.0, rel=1e-12)
    assert mup_lr_multipliers(wide, "momentum", 48) == (4.0, 1.0, 1.0, 0.25)
    assert mup_lr_multipliers(wide, "adam", 48) == (1.0, 0.25, 0.25, 0.25)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_per_layer_lr_multipliers_scale_each_layer_update(optimizer):
    import jax
    import jax.numpy as jnp

    from experiments._train import _set_lr, make_optimizer

    # optax's Adam raises a float to the int32 step count, which the strict promotion of
    # tests/conftest.py refuses; training runs under JAX's standard promotion
    with jax.numpy_dtype_promotion("standard"):
        _check_multipliers(optimizer, jnp, _set_lr, make_optimizer)


def _check_multipliers(optimizer, jnp, _set_lr, make_optimizer):
    params = [jnp.ones((3, 2)), jnp.ones((2, 3))]
    grads = [jnp.full((3, 2), 0.5), jnp.full((2, 3), -2.0)]
    plain = make_optimizer(0.9 if optimizer == "momentum" else 0.0, optimizer)
    scaled = make_optimizer(0.9 if optimizer == "momentum" else 0.0, optimizer, (3.0, 0.5))
    u0, _ = plain.update(grads, _set_lr(plain.init(params), 0.1), params)
    u1, _ = scaled.update(grads, _set_lr(scaled.init(params), 0.1), params)
    # the multiplier scales exactly that layer's update, whatever the optimiser's state does
    np.testing.assert_allclose(np.asarray(u1[0]), 3.0 * np.asarray(u0[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(u1[1]), 0.5 * np.asarray(u0[1]), rtol=1e-6)
    # and the injected lr is the one set: SGD's first update is -lr * g
    if optimizer == "sgd":
        np.testing.assert_allclose(np.asarray(u0[0]), -0.1 * 0.5, rtol=1e-6)
    if optimizer == "adam":  # Adam's first step is -lr * sign(g) (bias-corrected moments)
        np.testing.assert_allclose(np.asarray(u0[1]), 0.1, rtol=1e-4)


def test_lr_jitter_spreads_five_seeds_over_one_grid_step():
    from experiments._train import lr_jitter_factor

    r = 2 ** 0.5
    u = sorted(math.log(lr_jitter_factor(s, r), r) + 0.5 for s in range(5))
    # golden-ratio fractions: 5 seeds, one in each fifth of the grid step
    assert [int(5 * v) for v in u] == [0, 1, 2, 3, 4]
    assert lr_jitter_factor(3, 1.0) == 1.0


# --------------------------------------------------------------------------- vs numerics, theory
@pytest.mark.slow  # 12 s: numerics' Monte Carlo itself is tested in test_numerics_mc
def test_init_statistics_agree_with_numerics_monte_carlo():
    """The sweep's B_S at initialisation (numerics.mc_moments in float32 over the sweep's
    init key) against an independent numerics.mc_moments run (another key, float64, 10×
    the nets) on the same net, data and loss: E[B_S] within 4 combined standard errors —
    so the sweep hands numerics the right data, labels and loss for each quantity."""
    import jax

    import numerics
    from experiments._run import init_statistics
    from theory import NetSpec

    rng = np.random.default_rng(8)
    x = rng.standard_normal((48, 6))
    classes = rng.integers(0, 3, 48)
    spec = NetSpec.uniform(3, 12, 6, outputs=3, activation="relu")
    onehot = np.eye(3)[classes] - 1 / 3
    st = init_statistics(spec, x, classes, onehot, "cross_entropy", 200)
    with numerics.x64():
        mc = numerics.mc_moments(spec, x, classes, key=jax.random.key(3), samples=2000,
                                 loss="cross_entropy")
    ours = st["training_loss"]
    se = math.sqrt((ours["B_S_sd"] ** 2) / 200 + mc.mean_B_S_se ** 2)
    # 4 SE: a 1-in-15000 false alarm for two independent Monte Carlo estimates
    assert abs(ours["E_B_S"] - mc.mean_B_S) < 4 * se, (ours["E_B_S"], mc.mean_B_S, se)


def test_report_theory_column_is_theory_for_the_trained_net_muP_gains_included(tmp_path):
    """The report rebuilds each net from the workload's config (one source of truth); a μP
    net's output gain must reach theory: its B̄_S equals theory.expected_moments of
    experiments._families.mup_spec, and differs from the standard-parametrisation net's."""
    import theory
    from experiments._config import SweepConfig
    from experiments._families import mup_spec
    from experiments._plan import specs_of as _specs_of

    cfg = SweepConfig(parametrisation="mup", budget=0, width_family_depth=3,
                      width_family_widths=(16, 64), depth_family_width=16,
                      depth_family_depths=(3, 4))
    wl = {"config": cfg.to_dict(), "data": {"input_dim": 5, "outputs": 3}}
    specs = {s.widths[-1]: s for s in _specs_of(wl) if s.depth == 3}
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((20, 5)), rng.standard_normal((20, 3))
    std = theory.NetSpec.uniform(3, 64, 5, outputs=3, activation="relu")
    got = theory.expected_moments(specs[64], x, y).batch_size_bound
    want = theory.expected_moments(mup_spec(std, 16), x, y).batch_size_bound
    assert got == pytest.approx(want, rel=1e-12)
    # at K = 4 K0 the output variance is 4x smaller: the label term weighs more, B̄_S moves
    assert abs(got / theory.expected_moments(std, x, y).batch_size_bound - 1) > 1e-3
