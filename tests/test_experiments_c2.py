"""The C2 study's machinery: family trends with bootstrap intervals on synthetic data of known
slope, learning-rate grid extension, the squared loss on one-hot targets, a tiny suite end to
end, and one-line errors for bad suites.

Synthetic steps-to-target follow McCandlish's law S(m) = S_min (1 + B/m) with fixed-seed
multiplicative noise, so every expected verdict is known in advance.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import (ExperimentError, SweepConfig, adjust, config_from_dict,
                         edge_direction, load_data, net_rows, trends)
from experiments import report as report_cli
from experiments import write_report
from experiments import sweep as sweep_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHES = [8, 16, 32, 64, 128, 256, 512, 1024]


def _synthetic_trials(nets, *, sigma, seeds=3, seed=0, n=4096):
    """Trial records of nets ``[(arch_id, depth, width, B_crit)]``: one lr that reaches the
    target with steps S_min (1 + B/m) × exp(sigma·N(0,1)) per seed, and one lr that never
    does (so the lr choice is exercised)."""
    rng = np.random.default_rng(seed)
    trials = []
    for aid, depth, width, B in nets:
        for m in BATCHES:
            for s in range(seeds):
                steps = 200.0 * (1 + B / m) * math.exp(sigma * rng.standard_normal())
                base = {"arch_id": aid, "arch": "fc", "activation": "relu", "depth": depth,
                        "width": width, "params": 1000, "batch_size": m, "seed": s, "n": n,
                        "target_metric": "accuracy", "target": 0.9}
                trials.append({**base, "lr": 0.1, "status": "REACHED",
                               "steps_to_target": steps})
                trials.append({**base, "lr": 0.01, "status": "UNREACHED",
                               "steps_to_target": None})
    return trials


def _width_family(slope, widths=(16, 32, 64, 128)):
    """Nets whose true critical batch is 64·(K/16)^slope: a known slope of log B vs log K."""
    return [(f"fc-relu-L3-K{K}", 3, K, 64.0 * (K / 16) ** slope) for K in widths]


def _trend_of(nets, family, *, sigma, seeds=5):
    rows = net_rows(_synthetic_trials(nets, sigma=sigma, seeds=seeds),
                    [("accuracy", 0.9)], n=4096)
    return adjust(trends(rows, {family: [a for a, *_ in nets]}, range(seeds),
                         primary="accuracy:0.9"))


@pytest.mark.parametrize("family, slope, sigma, expected", [
    # width raises B_crit clearly (true slope +1 per log K, 3% noise): C2 supported
    ("width", 1.0, 0.03, "supported"),
    # width lowers it clearly: contradicted
    ("width", -1.0, 0.03, "contradicted"),
    # no true trend and 30% noise: the interval must contain 0
    ("width", 0.0, 0.30, "inconclusive"),
])
def test_family_trend_verdicts_on_synthetic_data(family, slope, sigma, expected):
    nets = _width_family(slope)
    (t,) = [t for t in _trend_of(nets, family, sigma=sigma) if t["primary"]]
    assert t["verdict"] == expected, t
    assert len(t["nets"]) == 4
    # the point slope recovers the truth within the noise: with sigma = 3% per point the
    # fitted log B_crit of each net is off by ~ sigma·3 (the fit's lever arm), so the slope
    # over log K spanning log 8 is within 0.2 of the truth; for the 30% case only the sign
    # question matters and is checked by the verdict
    if sigma < 0.1:
        assert t["slope"] == pytest.approx(slope, abs=0.2)
        assert t["ci_low"] <= t["slope"] <= t["ci_high"]


def test_depth_family_sign_convention_and_too_few_nets():
    # deeper -> smaller B_crit is what C2 predicts: a negative slope in L supports it
    nets = [(f"fc-relu-L{L}-K32", L, 32, 256.0 * 0.7 ** L) for L in (3, 4, 6, 8)]
    (t,) = [t for t in _trend_of(nets, "depth", sigma=0.03) if t["primary"]]
    assert t["verdict"] == "supported" and t["slope"] == pytest.approx(math.log(0.7), abs=0.1)
    # two nets: no slope, whatever the data say
    (t2,) = [t for t in _trend_of(nets[:2], "depth", sigma=0.03) if t["primary"]]
    assert t2["verdict"] == "inconclusive" and "a slope needs 3" in t2["reason"]
    assert t2["slope"] is None and t2["p_adjusted"] is None


def test_edge_direction_cases():
    def mk(lr, status, steps=None, loss=1.0):
        return {"lr": lr, "status": status, "steps_to_target": steps,
                "final_loss": None if status == "INFEASIBLE" else loss}

    inside = [mk(0.1, "REACHED", 300), mk(0.2, "REACHED", 200), mk(0.4, "REACHED", 250)]
    assert edge_direction(inside) is None
    assert edge_direction([mk(0.1, "REACHED", 300), mk(0.2, "REACHED", 200)]) == "up"
    assert edge_direction([mk(0.1, "REACHED", 200), mk(0.2, "REACHED", 300)]) == "down"
    # nothing reached: follow the lowest final training loss
    assert edge_direction([mk(0.1, "UNREACHED", loss=0.5),
                           mk(0.2, "UNREACHED", loss=0.3)]) == "up"
    # ... a large lr that stalled (e.g. collapsed to a constant) points down
    assert edge_direction([mk(0.1, "UNREACHED", loss=0.3), mk(0.2, "UNREACHED", loss=0.45),
                           mk(0.4, "UNREACHED", loss=0.45)]) == "down"
    # everything diverged: try smaller
    assert edge_direction([mk(0.1, "INFEASIBLE"), mk(0.2, "INFEASIBLE")]) == "down"
    # the lowest final loss inside the grid: nothing to extend
    assert edge_direction([mk(0.1, "UNREACHED", loss=0.5), mk(0.2, "UNREACHED", loss=0.2),
                           mk(0.4, "INFEASIBLE")]) is None
    # seeds that reached the target count before the final loss (MNIST-1D L = 6, batch 4000 of
    # the C2 run: the smallest lr got 2 of 3 seeds there, one diverged; the others stalled at
    # chance accuracy with a finite loss): grow towards the lr that got seeds there
    stalled = [mk(1.33, "REACHED", 963, 0.96), mk(1.33, "REACHED", 1166, 0.85),
               mk(1.33, "INFEASIBLE"), mk(1.88, "UNREACHED", loss=2.30),
               mk(1.88, "UNREACHED", loss=2.30), mk(2.66, "UNREACHED", loss=2.30),
               mk(2.66, "INFEASIBLE")]
    assert edge_direction(stalled) == "down"
    # more seeds there wins over a lower loss
    assert edge_direction([mk(0.1, "REACHED", 90, 0.2), mk(0.1, "UNREACHED", loss=0.9),
                           mk(0.2, "UNREACHED", loss=0.1), mk(0.4, "UNREACHED", loss=0.5)]
                          ) == "down"


# --------------------------------------------------------------------------- tiny suite
SUITE = """
[suite]
data = ["digits"]
losses = ["cross_entropy", "squared"]
archs = ["fc"]

[suite."digits/squared"]
"train.target" = 0.5

[data]
n = 96
init_samples = 2
[model]
depths = [3, 4]
budget = 2352       # the parameter count of (L = 3, K = 24): that net is in both families
[families]
width_depth = 3
widths = [8, 24]
[train]
batch_sizes = [8, 24, 96]
lrs = [0.0125, 0.0176777]
lr_reference_batch = 8
lr_center = "previous_best"
lr_extend = 1
seeds = 2
lr_jitter = true
max_steps = 80
target_metric = "accuracy"
target = 0.6
extra_targets = ["accuracy:0.4", "loss:2.0"]
[analysis]
bootstrap = 40
"""


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    pytest.importorskip("sklearn")
    tmp = tmp_path_factory.mktemp("suite")
    cfg = tmp / "suite.toml"
    cfg.write_text(SUITE)
    out = str(tmp / "run")
    assert sweep_cli.main(["--config", str(cfg), "--out", out, "--no-progress"]) == 0
    assert report_cli.main([out]) == 0
    return str(cfg), out


def _load(path):
    with open(path) as f:
        return json.load(f)


def _walk(out, name):
    return [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if f == name]


def test_tiny_suite_end_to_end_contract(tiny_suite):
    _, out = tiny_suite
    suite = _load(os.path.join(out, "suite.json"))
    assert suite["workloads"] == ["digits-cross_entropy-fc", "digits-squared-fc"]
    a = _load(os.path.join(out, "analysis.json"))
    keys = {"data", "loss", "arch", "family", "nets", "slope", "ci_low", "ci_high", "verdict",
            "target_metric", "target", "optimizer", "parametrisation", "p_adjusted",
            "full_batch_point", "primary"}
    assert a["trends"] and all(keys <= set(t) for t in a["trends"])
    assert {(t["loss"], t["family"]) for t in a["trends"]} == {
        (lo, f) for lo in ("cross_entropy", "squared") for f in ("width", "budget")}
    # every target (the primary one and the extra ones) has its trend rows
    assert {t["target_metric"] for t in a["trends"]} == {"accuracy", "loss"}
    assert all(t["verdict"] in ("supported", "contradicted", "inconclusive")
               for t in a["trends"])
    assert all(t["optimizer"] == "sgd" and t["parametrisation"] == "standard"
               for t in a["trends"])
    # two nets per family: never a slope, never a verdict
    assert all(t["verdict"] == "inconclusive" for t in a["trends"])
    mkeys = {"data", "loss", "arch", "optimizer", "parametrisation", "factor", "coef",
             "ci_low", "ci_high"}
    assert a["matched"] and all(mkeys <= set(m) for m in a["matched"])
    assert "calibration" in a and a["calibration"] is None  # no repeat given
    pkeys = {"data", "loss", "predictor", "nets", "spearman", "spearman_ci_low",
             "spearman_ci_high", "ratio_median", "lower_bound_held", "lower_bound_nets",
             "target_metric", "target"}
    assert {p["predictor"] for p in a["predictors"]} == {
        "theory_init", "mc_init", "run_to_target", "B_simple_at_target"}
    assert all(pkeys <= set(p) for p in a["predictors"])
    with open(os.path.join(out, "report.md")) as f:
        md = f.read()
    assert "Claim C2 is **" in md and "| digits | fc | sgd | standard | width |" in md
    for stem in ("predictors_digits-cross_entropy", "predictors_digits-squared"):
        assert os.path.getsize(os.path.join(out, "figures", f"{stem}.png")) > 1000
    wdir = os.path.join(out, "digits-squared-fc")
    for stem in ("steps_vs_batch_width", "epochs_vs_batch_budget", "bcrit_vs_width",
                 "bcrit_vs_depth_budget", "bcrit_vs_progress_width"):
        assert os.path.getsize(os.path.join(wdir, "figures", f"{stem}.pdf")) > 1000


@pytest.mark.slow  # 25 s: a second tiny suite; calibration() is unit-tested in test_experiments_stats
def test_repeat_gives_a_calibration_object(tiny_suite, tmp_path):
    cfg, out = tiny_suite
    rep = str(tmp_path / "repeat")
    assert sweep_cli.main(["--config", cfg, "--out", rep, "--seed-start", "2",
                           "--no-progress"]) == 0
    res = write_report(out, repeat=rep)
    cal = res["calibration"]
    assert {"nominal", "coverage", "pairs", "nets"} <= set(cal) and cal["nominal"] == 0.9
    a = _load(os.path.join(out, "analysis.json"))
    assert a["calibration"]["pairs"] == cal["pairs"]
    trial = _load(next(p for p in _walk(rep, "lr0.0125-seed2.json")))
    assert trial["seed"] == 2 and trial["lr_actual"] != trial["lr"]  # lr_jitter


def test_squared_loss_on_one_hot_targets_is_trained_and_predicted(tiny_suite):
    _, out = tiny_suite
    wdir = os.path.join(out, "digits-squared-fc")
    wl = _load(os.path.join(wdir, "workload.json"))
    assert wl["loss"] == "squared" and wl["target_metric"] == "accuracy"
    assert wl["target"] == 0.5  # the [suite."digits/squared"] override
    trial = _load(_walk(os.path.join(wdir, "trials"), "lr0.0125-seed0.json")[0])
    assert trial["loss"] == "squared" and trial["final_accuracy"] is not None
    # the targets the squared loss fits: centred one-hot rows e_k - 1/10 of the classes
    ds, _ = load_data("digits", n=96)
    np.testing.assert_allclose(ds.y, np.eye(10)[ds.classes] - 0.1)
    # theory covers the squared loss: every net has its prediction and kind
    rows = {r["arch_id"]: r for r in _load(os.path.join(wdir, "analysis.json"))["rows"]}
    assert all(r["predicted"]["theory_init"] and r["theory_kind"].split(" (")[0] in
               ("exact", "numerical", "approximation", "limit") for r in rows.values())
    # and the cross-entropy arm gets theory's linearised-softmax number
    ce = _load(os.path.join(out, "digits-cross_entropy-fc", "analysis.json"))["rows"]
    assert all(r["predicted"]["theory_init"] and "linearised softmax" in r["theory_kind"]
               for r in ce)


def test_lr_grid_is_extended_and_recorded(tiny_suite):
    _, out = tiny_suite
    studies = [_load(p) for p in _walk(out, "study.json")]
    assert studies and all({"lrs_initial", "lrs_tried", "extensions", "best_lr",
                            "edge_resolved"} <= set(s) for s in studies)
    grown = [s for s in studies if s["extensions"]]
    # the first grid (0.0125, 0.0177 at batch 8) is far below the best lr for 80 steps, so
    # some studies must have grown upwards, each time by as many sqrt(2) steps as the first
    # grid has points (2), at most lr_extend = 1 time per side
    assert grown and any(e["direction"] == "up" for s in grown for e in s["extensions"])
    for s in grown:
        assert len(s["lrs_tried"]) == len(s["lrs_initial"]) * (1 + len(s["extensions"]))
        assert all(len(e["lrs"]) == len(s["lrs_initial"]) for e in s["extensions"])
        for side in ("up", "down"):
            assert sum(e["direction"] == side for e in s["extensions"]) <= 1
        if s["best_lr"] is None:  # nothing reached even after extending: extended once
            assert len(s["extensions"]) == 1
        ratio = sorted(s["lrs_tried"])
        assert all(b / a == pytest.approx(math.sqrt(2), rel=1e-3) for a, b in
                   zip(ratio, ratio[1:]))
        if s["edge_resolved"]:
            assert s["best_lr"] not in (min(s["lrs_tried"]), max(s["lrs_tried"]))


@pytest.mark.slow  # 14 s: the single-workload resume tests cover the skip rule
def test_suite_resume_runs_nothing_twice(tiny_suite, tmp_path):
    cfg, out = tiny_suite
    import shutil

    run = str(tmp_path / "copy")
    shutil.copytree(out, run)
    victim = _walk(os.path.join(run, "digits-squared-fc", "trials"), "study.json")[0]
    os.unlink(victim)  # a study that was interrupted before its record was written
    # resume with both workloads in parallel processes (--jobs 2)
    r = subprocess.run([sys.executable, "-m", "experiments.sweep", "--config", cfg, "--out",
                        run, "--jobs", "2", "--no-progress"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    assert "2 workloads in 2 processes" in r.stderr
    assert os.path.exists(victim)
    for name in ("digits-cross_entropy-fc", "digits-squared-fc"):
        last = _load(os.path.join(run, name, "timing.json"))["runs"][-1]
        # nothing finished is trained or written again: the rerun study found its trials
        assert last["trials_run"] == 0 and last["workloads"] == [name]
    assert _load(os.path.join(run, "timing.json"))["runs"][-1]["jobs"] == 2


STEP_CAP = """
[data]
name = "digits"
n = 96
init_samples = 2
[model]
depths = [3]
budget = 2352
[train]
loss = "cross_entropy"
batch_sizes = [8, 24, 96]
lrs = [0.1, 0.141421]
lr_reference_batch = 8
lr_center = "previous_best"
lr_extend = 1
seeds = 2
max_steps = 400
target_metric = "accuracy"
target = 0.6
step_cap_factor = 1.0
[analysis]
bootstrap = 20
"""


def test_step_cap_follows_the_previous_batch_size(tmp_path):
    """With step_cap_factor = 1 each study after the first stops its trials at the best mean
    steps-to-target of the nearest smaller batch size (never at max_steps = 400 here)."""
    pytest.importorskip("sklearn")
    cfg = tmp_path / "cap.toml"
    cfg.write_text(STEP_CAP)
    out = str(tmp_path / "run")
    assert sweep_cli.main(["--config", str(cfg), "--out", out, "--no-progress"]) == 0
    studies = sorted((_load(p) for p in _walk(out, "study.json")),
                     key=lambda s: s["batch_size"])
    assert [s["batch_size"] for s in studies] == [8, 24, 96]
    assert studies[0]["step_cap"] == 400  # nothing smaller to compare with
    assert studies[0]["best_steps"] is not None  # the test needs batch 8 to reach the target
    previous = studies[0]["best_steps"]
    for s in studies[1:]:
        assert s["step_cap"] == math.ceil(previous - 1e-9) < 400
        trials = [_load(p) for d, _, fs in os.walk(os.path.dirname(
            study_file(out, s))) for p in [os.path.join(d, f) for f in fs]
            if not p.endswith("study.json")]
        assert trials and all(t["steps_run"] <= s["step_cap"] for t in trials)
        previous = s["best_steps"] or previous
    with pytest.raises(ExperimentError, match="step_cap_factor"):
        SweepConfig(step_cap_factor=0.5)


def study_file(out, study):
    return os.path.join(out, "trials", study["arch_id"], f"bs{study['batch_size']}",
                        "study.json")


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("raw, message", [
    ({"families": {"width_depth": 3, "widths": [16]}}, "at least 2 distinct"),
    ({"families": {"depth_width": 16, "depths": [3, 3]}}, "at least 2 distinct"),
    ({"families": {"width_depth": 3}}, "needs both"),
    ({"train": {"target_metric": "accuracy", "target": 1.5}}, "no net can reach it"),
    ({"suite": {"data": ["digits"], "exclude": ["digits"]}}, "leaves no workload"),
    ({"suite": {"archs": ["fc", "fc"]}}, "twice"),
    ({"suite": {"losses": ["hinge"]}}, "suite.losses"),
    ({"suite": {"digits": {"train.lrr": 0.1}}}, "unknown override"),
    ({"train": {"lr_extend": 2, "lrs": [0.1, 0.15, 0.4]}}, "geometric"),
    ({"train": {"seeds": 1000000000}}, "train.seeds"),
    ({"model": {"budget": 10 ** 12}}, "above 1e"),
    ({"families": {"width_depth": 3, "widths": [16, 10 ** 9]}}, "widths above"),
    ({"train": {"optimizer": "lbfgs"}}, "train.optimizer"),
    ({"suite": {"parametrisations": ["ntk"]}}, "train.parametrisation"),
    ({"train": {"extra_targets": ["accuracy:1.5"]}}, "extra_targets"),
    ({"train": {"extra_targets": ["perplexity:3"]}}, "extra_targets"),
    ({"train": {"lr_jitter": 1}}, "true or false"),
])
def test_bad_suite_configs_are_one_line_errors(raw, message):
    with pytest.raises(ExperimentError, match=message) as err:
        config_from_dict(raw)
    assert "\n" not in str(err.value)


def test_suite_config_round_trip():
    import tomllib

    cfg = config_from_dict(tomllib.loads(SUITE))
    assert config_from_dict(tomllib.loads(cfg.to_toml())) == cfg
    (_, ce), (_, sq) = cfg.workloads()
    assert (ce.loss, ce.target, sq.loss, sq.target) == ("cross_entropy", 0.6, "squared", 0.5)
    c2 = os.path.join(ROOT, "experiments", "configs", "c2.toml")
    from experiments import load_config

    names = [n for n, _ in load_config(c2).workloads()]
    assert names == ["digits-cross_entropy-fc", "digits-cross_entropy-residual",
                     "mnist1d-cross_entropy-fc", "mnist1d-cross_entropy-residual"]
    assert SweepConfig().workloads() == [("", SweepConfig())]
    # the axes suite: optimizer x parametrisation, "sgd/standard" excluded, per-optimizer lrs
    axes = dict(load_config(os.path.join(ROOT, "experiments", "configs", "axes.toml"))
                .workloads())
    assert sorted(axes) == sorted(f"mnist1d-cross_entropy-fc-{o}-{p}" for o, p in (
        ("sgd", "mup"), ("momentum", "standard"), ("momentum", "mup"), ("adam", "standard"),
        ("adam", "mup")))
    adam = axes["mnist1d-cross_entropy-fc-adam-mup"]
    assert adam.optimizer == "adam" and adam.parametrisation == "mup" and adam.lrs[1] == 0.001
    mom = axes["mnist1d-cross_entropy-fc-momentum-standard"]
    assert mom.effective_momentum == 0.9 and mom.budget == 0


def test_cli_flags_win_over_the_suite():
    """A reduced C2 study on any data file: --data/--arch/--loss replace the suite's lists,
    other flags beat the per-data overrides (digits' batch sizes here)."""
    c2 = os.path.join(ROOT, "experiments", "configs", "c2.toml")
    args = sweep_cli._parser().parse_args(["--config", c2, "--data", "digits", "--seeds", "2",
                                           "--batch-sizes", "8,64", "--arch", "fc"])
    works = sweep_cli.build_config(args).workloads()
    assert [n for n, _ in works] == ["digits-cross_entropy-fc"]
    assert all(w.seeds == 2 and w.batch_sizes == (8, 64) for _, w in works)
    assert [w.target for _, w in works] == [0.99]  # untouched overrides stay
    args = sweep_cli._parser().parse_args(["--config", c2, "--data", "my.npz", "--loss",
                                           "squared"])
    assert [n for n, _ in sweep_cli.build_config(args).workloads()] == [
        "my-squared-fc", "my-squared-residual"]


def test_second_sweep_on_a_running_folder_refuses_in_one_line(tmp_path, capsys):
    from experiments._records import _FolderLock

    out = tmp_path / "busy"
    out.mkdir()
    (out / "workload.json").write_text("[1, 2, 3]")
    with _FolderLock(str(out), ".suite.lock"):  # as a running sweep holds it
        assert sweep_cli.main(["--out", str(out), "--no-progress", "--max-steps", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another sweep is running" in err[0]
    # once free, a folder holding something that is not a workload record is refused
    assert sweep_cli.main(["--out", str(out), "--no-progress", "--max-steps", "5",
                           "--n", "64", "--batch-sizes", "8,16,32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "not a workload record" in err[-1]
    assert report_cli.main([str(out)]) == 2
    assert "not a workload record" in capsys.readouterr().err
