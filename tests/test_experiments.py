"""experiments/: tiny sweeps end to end, resume, the critical-batch fit, data loaders, CLI errors.

Everything runs at toy size with fixed seeds (a tiny Gaussian teacher–student workload), so the
whole file takes well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import numerics
from experiments import _run, _train
from experiments._lr_search import first_grid
from experiments import (ExperimentError, SweepConfig, budget_family, net_interval,
                         config_from_dict, fit_critical_batch, load_config, load_data,
                         max_useful_batch, restricted_load, spearman, train_step)
from experiments import report as report_cli
from experiments import reproduce as reproduce_cli
from experiments import sweep as sweep_cli
from theory import NetSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A workload small enough to compile and train in seconds: Gaussian teacher (d = 32, c = 1),
# n = 96, two nets of ~600 parameters, three batch sizes, two learning rates plus one that
# must diverge (1e4: the squared loss overflows within a few steps), two seeds.
TINY = """
[data]
name = "gaussian"
n = 96
init_samples = 3
[model]
depths = [2, 3]
budget = 600
[train]
batch_sizes = [8, 16, 32]
lrs = [0.05, 0.2, 10000.0]
lr_scaling = "none"
seeds = 2
max_steps = 150
target_metric = "relative_loss"
target = 0.5
[analysis]
bootstrap = 50
"""


def _write_config(tmp_path, text=TINY, name="tiny.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _strip(rec):
    """A trial record without its timing fields (which differ between runs)."""
    return {k: v for k, v in rec.items() if k not in ("wall_s", "compile_s", "workload")}


def _load(path):
    with open(path) as f:
        return json.load(f)


def _read(path):
    with open(path) as f:
        return f.read()


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _records(out, studies=False):
    """Trial records (or, with ``studies``, the study.json records) by relative path."""
    return {os.path.relpath(os.path.join(d, f), out): _load(os.path.join(d, f))
            for d, _, fs in os.walk(os.path.join(out, "trials")) for f in fs
            if not f.startswith(".tmp-")  # a killed run's half-written temporary file
            and (f == "study.json") == studies}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One uninterrupted tiny study end to end (``reproduce``: sweep + report), shared by
    several tests; the report CLI is rerun on it to check it is repeatable."""
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = _write_config(tmp)
    out = str(tmp / "run")
    assert reproduce_cli.main(["--config", cfg, "--out", out, "--no-progress"]) == 0
    assert report_cli.main([out]) == 0
    return cfg, out


# --------------------------------------------------------------------------- end to end
def test_tiny_sweep_end_to_end(tiny_run):
    _, out = tiny_run
    recs = _records(out)
    assert len(recs) == 2 * 3 * 3 * 2  # archs × batch sizes × lrs × seeds
    required = {"arch", "depth", "width", "params", "batch_size", "lr", "seed", "status",
                "steps_to_target", "epochs_to_target", "curve", "B_S_curve", "wall_s"}
    for rec in recs.values():
        assert required <= set(rec)
        assert rec["status"] in ("REACHED", "UNREACHED", "INFEASIBLE")
        if rec["status"] == "REACHED":
            assert rec["steps_to_target"] >= 1
            assert rec["epochs_to_target"] == rec["steps_to_target"] * rec["batch_size"] / 96
    assert any(r["status"] == "REACHED" for r in recs.values())
    rows = [r for r in _csv(os.path.join(out, "analysis.csv"))
            if r["main_variant"] == "True"]
    assert sorted(r["depth"] for r in rows) == ["2", "3"]
    for col in ("B_crit", "ci_low", "repro_low", "observed_max_batch", "pred_mc_init"):
        assert col in rows[0]
    md = _read(os.path.join(out, "report.md"))
    assert "Claim C2 is **" in md and "Spearman" in md
    for stem in ("steps_vs_batch", "epochs_vs_batch", "predicted_vs_observed",
                 "bs_along_training", "theory_mc_training"):
        for ext in ("png", "pdf"):
            assert os.path.getsize(os.path.join(out, "figures", f"{stem}.{ext}")) > 1000
    # the squared-loss workload is covered by theory: its prediction is in the table
    assert all(r["pred_theory_init"] for r in rows)


def test_infeasible_trials_are_recorded_and_reported(tiny_run):
    _, out = tiny_run
    recs = _records(out).values()
    huge = [r for r in recs if r["lr"] == 10000.0]
    # lr 1e4 either overflows (NaN/inf: INFEASIBLE) or kills every ReLU (a finite, constant
    # loss above the target: UNREACHED); it never reaches the target
    assert huge and all(r["status"] in ("INFEASIBLE", "UNREACHED") for r in huge)
    diverged = [r for r in huge if r["status"] == "INFEASIBLE"]
    assert len(diverged) >= len(huge) // 2
    assert all(r["steps_to_target"] is None and r["diverged_by_step"] >= 1 for r in diverged)
    assert all(r["final_loss"] is None for r in diverged)
    rows = _load(os.path.join(out, "analysis.json"))["rows"]
    assert sum(int(r["infeasible"]) for r in rows) == len(diverged)
    md = _read(os.path.join(out, "report.md"))
    assert f"Infeasible (diverged, NaN/inf) trials: {len(diverged)}" in md
    assert f"lr 10000 seed {diverged[0]['seed']}: INFEASIBLE" in md


def test_resume_after_deleting_trials_equals_uninterrupted(tiny_run, tmp_path):
    cfg, out = tiny_run
    resumed = str(tmp_path / "resumed")
    shutil.copytree(out, resumed)
    # simulate a kill: one study entirely missing, another one half written
    shutil.rmtree(os.path.join(resumed, "trials", "fc-relu-L3-K13", "bs16"))
    half = os.path.join(resumed, "trials", "fc-relu-L2-K18", "bs32")
    victims = sorted(os.listdir(half))[:3]
    for f in victims:
        os.unlink(os.path.join(half, f))
    keep = os.path.join(half, sorted(os.listdir(half))[0])
    before = os.stat(keep).st_mtime_ns
    # and a study record without its keys (a foreign or truncated writer): run again
    stale = os.path.join(resumed, "trials", "fc-relu-L2-K18", "bs8", "study.json")
    with open(stale, "w") as f:
        json.dump({"schema": 1}, f)
    assert sweep_cli.main(["--config", cfg, "--out", resumed, "--no-progress"]) == 0
    assert os.stat(keep).st_mtime_ns == before  # finished results are never rewritten
    a, b = _records(out), _records(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert _strip(a[k]) == _strip(b[k]), k


def test_interrupt_then_rerun_equals_uninterrupted(tiny_run, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of the sweep: exit 130, finished trials kept, rerun completes."""
    cfg, out = tiny_run
    real = _train.run_study
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    run = str(tmp_path / "interrupted")
    monkeypatch.setattr(_train, "run_study", flaky)
    assert sweep_cli.main(["--config", cfg, "--out", run, "--no-progress"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert len(_records(run)) == 2 * 6  # the two finished studies
    monkeypatch.setattr(_train, "run_study", real)
    assert sweep_cli.main(["--config", cfg, "--out", run, "--no-progress"]) == 0
    a, b = _records(out), _records(run)
    assert a.keys() == b.keys()
    assert all(_strip(a[k]) == _strip(b[k]) for k in a)


def test_other_workload_in_folder_is_refused(tiny_run, tmp_path):
    cfg, out = tiny_run
    run = str(tmp_path / "copy")
    shutil.copytree(out, run)
    with pytest.raises(ExperimentError, match="different workload"):
        _run.run_sweep(load_config(cfg).replace(max_steps=99), run, progress=False,
                         log=lambda m: None)


# --------------------------------------------------------------------------- analysis
def test_fit_recovers_known_critical_batch():
    m = 2.0 ** np.arange(3, 11)  # 8 .. 1024
    B, S_min = 100.0, 250.0
    exact = fit_critical_batch(m, S_min * (1 + B / m))
    # noiseless data: only the refined grid search limits the accuracy (< 1e-7 in log B)
    assert exact["B_crit"] == pytest.approx(B, rel=1e-6)
    assert exact["S_min"] == pytest.approx(S_min, rel=1e-6)
    sigma = 0.05  # 5% multiplicative noise on steps-to-target, fixed seed
    rng = np.random.default_rng(0)
    noisy = S_min * (1 + B / m) * np.exp(sigma * rng.standard_normal(m.size))
    fit = fit_critical_batch(m, noisy)
    # Tolerance from the fit's own standard error: linearise log S = a + log(1 + e^u/m) in
    # (a, u = log B); Cov = sigma^2 (J^T J)^-1. Three standard errors of u.
    w = (B / m) / (1 + B / m)
    J = np.stack([np.ones_like(m), w], axis=1)
    se_u = sigma * np.sqrt(np.linalg.inv(J.T @ J)[1, 1])
    assert abs(np.log(fit["B_crit"]) - np.log(B)) < 3 * se_u
    # perfect scaling everywhere: the fit says B_crit lies beyond the batches tried
    assert fit_critical_batch(m, 1e5 / m)["at_edge"] == "low"
    # fewer than three batch sizes: no fit
    assert fit_critical_batch([8, 16], [10, 6])["B_crit"] is None


def test_seed_interval_covers_truth():
    m = [8, 16, 32, 64, 128, 256]
    B, S_min = 64.0, 100.0
    rng = np.random.default_rng(1)
    # each seed's steps at each batch size: McCandlish's law with 5% lognormal noise
    by_m = {mm: {seed: float(S_min * (1 + B / mm) * np.exp(0.05 * rng.standard_normal()))
                 for seed in range(6)} for mm in m}
    r = net_interval(by_m, range(6), level=0.9)
    assert r["ci_low"] < B < r["ci_high"] and r["seeds"] == 6
    # leaving a seed out moves log B_crit by little at 5% noise (coverage over many draws is
    # tests/test_experiments_stats.py)
    assert all(abs(v - np.log(r["B_crit"])) < 0.2 for v in r["loo"].values())


def test_max_useful_batch_and_spearman():
    r = max_useful_batch([8, 16, 32, 64], [10.0, 12.0, 19.0, 40.0], epsilon=1.0)
    assert r == {"max_batch": 32, "best_epochs": 10.0, "lower_bound": False}
    assert max_useful_batch([8, 16], [10.0, 11.0])["lower_bound"] is True
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))


# --------------------------------------------------------------------------- training step
def test_train_step_is_a_dropin_optax_step(getkey):
    spec = NetSpec.uniform(3, 12, 5, outputs=4, activation="relu")
    params = numerics.init_params(spec, key=getkey())
    x = jax.random.normal(getkey(), (16, 5))
    y = jax.random.randint(getkey(), (16,), 0, 4)
    opt = optax.sgd(0.3)
    step = jax.jit(train_step(spec, opt, "cross_entropy"))
    new, _, met = step(params, opt.init(params), x, y)

    def mean_loss(p):
        out = jax.vmap(lambda xi: numerics.apply(spec, p, xi))(x)
        return jnp.mean(jax.nn.logsumexp(out, axis=1) - jnp.take_along_axis(
            out, y[:, None], axis=1)[:, 0])

    grads = jax.grad(mean_loss)(params)
    for p, g, q in zip(params, grads, new):
        np.testing.assert_allclose(q, p - 0.3 * g, rtol=1e-4, atol=1e-6)
    st = numerics.per_example_stats(spec, params, x, y, loss="cross_entropy")
    assert float(met["batch_size_bound"]) == pytest.approx(16 * float(st.S1 / st.S2), rel=1e-5)
    assert float(met["B_simple"]) == pytest.approx(float(met["batch_size_bound"]) - 1, rel=1e-4)
    assert float(met["loss"]) == pytest.approx(float(mean_loss(params)), rel=1e-5)


# --------------------------------------------------------------------------- families, config
def test_budget_family_within_tolerance():
    fam = budget_family(10000, (2, 4, 8), input_dim=40, outputs=10)
    assert [s.depth for s in fam] == [2, 4, 8]
    assert all(abs(s.params - 10000) <= 500 for s in fam)
    assert fam[0].width > fam[1].width > fam[2].width
    with pytest.raises(ExperimentError, match="cannot be met within 5%"):
        budget_family(100, (2, 8), input_dim=40, outputs=10)


def test_config_round_trip_and_rejections():
    cfg = SweepConfig()
    import tomllib

    assert config_from_dict(tomllib.loads(cfg.to_toml())) == cfg
    assert load_config(os.path.join(ROOT, "experiments", "configs", "quick.toml")) == cfg
    load_config(os.path.join(ROOT, "experiments", "configs", "paper.toml"))
    with pytest.raises(ExperimentError, match="unknown key train.lr\\b"):
        config_from_dict({"train": {"lr": 0.1}})
    with pytest.raises(ExperimentError, match="expected an integer"):
        config_from_dict({"train": {"seeds": "two"}})
    with pytest.raises(ExperimentError, match="unknown table"):
        config_from_dict({"optim": {}})
    assert first_grid(cfg, 256) == tuple(lr * 2 for lr in cfg.lrs)  # sqrt scaling from 64


# --------------------------------------------------------------------------- data
def test_restricted_unpickler_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({b"data": Evil(), b"labels": [0]})
    with pytest.raises(ExperimentError, match="refusing to load global"):
        restricted_load(payload, source="evil")
    assert not marker.exists()
    # and through the CIFAR loader, by file
    f = tmp_path / "data_batch_1"
    f.write_bytes(payload)
    with pytest.raises(ExperimentError, match="data_batch_1: unsafe"):
        load_data(str(f))
    assert not marker.exists()
    # object arrays are refused too (their elements could be anything)
    with pytest.raises(ExperimentError, match="object-dtype"):
        restricted_load(pickle.dumps(np.array([1, "a"], dtype=object)))


def test_cifar_and_mnist_idx_loaders(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in (1, 2):
        batch = {b"batch_label": b"training batch", b"labels": [int(v) for v in
                                                                rng.integers(0, 10, 5)],
                 b"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8),
                 b"filenames": [b"a.png"] * 5}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    ds, task = load_data(str(folder))
    assert task == "classification" and ds.x.shape == (10, 3072) and ds.y.shape[0] == 10
    assert abs(ds.x.mean()) < 1e-9

    imgs = rng.integers(0, 256, (7, 4, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 6], np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(
        struct.pack(">BBBBIII", 0, 0, 8, 3, 7, 4, 4) + imgs.tobytes()))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        struct.pack(">BBBBI", 0, 0, 8, 1, 7) + labels.tobytes())
    ds, task = load_data(str(tmp_path / "train-images-idx3-ubyte.gz"))
    assert ds.x.shape == (7, 16) and list(ds.classes) == list(range(7))
    (tmp_path / "bad-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    with pytest.raises(ExperimentError, match="truncated IDX header|labels-idx1"):
        load_data(str(tmp_path / "bad-images-idx3-ubyte"))


def test_npz_classification_and_regression(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((20, 3)), y=rng.integers(0, 3, 20))
    ds, task = load_data(str(tmp_path / "c.npz"))
    assert task == "classification" and ds.y.shape == (20, 3)
    np.savez(tmp_path / "r.npz", x=rng.standard_normal((20, 3)), y=rng.standard_normal(20))
    ds, task = load_data(str(tmp_path / "r.npz"), n=10)
    assert task == "regression" and ds.n == 10


# --------------------------------------------------------------------------- CLI errors
# (tests/test_experiments_cli.py: every CLI's bad flags and files in-process, and Ctrl-C)


# --------------------------------------------------------------------------- scale-out
SHARD_SCRIPT = r"""
import json, sys
import jax
from experiments import load_data, budget_family, run_study
ds, _ = load_data("gaussian", n=64)
spec = budget_family(600, (2,), input_dim=ds.input_dim, outputs=1)[0]
res = run_study(spec, ds.x, ds.y, None, loss="squared", batch_size=8, lrs=(0.05, 0.2, 0.1),
                seeds=(0, 1, 2), max_steps=60, target_metric="relative_loss", target=0.5)
print(json.dumps({"devices": jax.local_device_count(), "sharded": res[0]["devices"],
                  "res": [(r["lr"], r["seed"], r["status"], r["steps_to_target"],
                           r["final_loss"], r["B_S_at_target"]) for r in res]}))
"""


@pytest.mark.slow  # 15 s: a subprocess with 4 host devices; run with -m slow
def test_trials_sharded_across_devices_match_one_device():
    """With 2 (forced host) devices the 9 trials (3 lrs x 3 seeds) are padded to 10 and
    sharded 5 + 5; the padding is dropped and no result changes."""
    outs = []
    for flags in ("", "--xla_force_host_platform_device_count=2"):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
        r = subprocess.run([sys.executable, "-c", SHARD_SCRIPT], capture_output=True, text=True,
                           cwd=ROOT, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert [(o["devices"], o["sharded"]) for o in outs] == [(1, 1), (2, 2)]
    one, two = outs[0]["res"], outs[1]["res"]
    assert len(one) == len(two) == 9
    assert [r[:4] for r in one] == [r[:4] for r in two]
    assert any(r[2] == "REACHED" for r in one)  # B_S at target is compared on real hits
    for a, b in zip(one, two):
        # float32 reductions may reorder across devices
        assert a[4] == pytest.approx(b[4], rel=1e-4)
        assert (a[5] is None) == (b[5] is None)
        if a[5] is not None:
            assert a[5] == pytest.approx(b[5], rel=1e-3)  # a ratio of two float32 sums


# --------------------------------------------------------------------------- verdict
def _trend(family, verdict, primary=True):
    return {"family": family, "verdict": verdict, "slope": 0.5, "ci_low": 0.1, "ci_high": 0.9,
            "axis": "log K", "nets": ["a", "b", "c", "d"], "reason": "r", "primary": primary}


@pytest.mark.parametrize("verdicts, expected", [
    (["supported", "inconclusive", "inconclusive"], "supported"),
    (["contradicted", "inconclusive"], "contradicted"),
    (["supported", "contradicted"], "mixed"),
    (["inconclusive", "inconclusive", "inconclusive"], "inconclusive"),
])
def test_verdict_case_table(verdicts, expected):
    from experiments import verdict

    v = verdict([_trend(f, x) for f, x in zip(("width", "depth", "budget"), verdicts)]
                # secondary rows (other targets) never change the primary verdict
                + [_trend("width", "contradicted", primary=False)])
    assert v["C2"] == expected
    assert f"**{expected}**" in v["text"]


def test_target_flag_sets_metric_and_value():
    args = sweep_cli._parser().parse_args(["--target", "loss:0.25", "--depths", "2,3"])
    cfg = sweep_cli.build_config(args)
    assert (cfg.target_metric, cfg.target, cfg.depths) == ("loss", 0.25, (2, 3))
    args = sweep_cli._parser().parse_args(["--target", "0.95"])
    assert sweep_cli.build_config(args).target == 0.95


def test_study_compiles_once_per_architecture_and_batch_size():
    """A second study with the same network and batch size (other learning rates, seeds and
    step cap, hence other chunk lengths between evaluations) triggers no XLA compilation."""
    from numerics._testing import count_compilations

    from experiments import run_study

    ds, _ = load_data("gaussian", n=64)
    spec = budget_family(600, (3,), input_dim=ds.input_dim, outputs=1)[0]
    kw = dict(loss="squared", batch_size=8, target_metric="relative_loss", target=0.5)
    run_study(spec, ds.x, ds.y, None, lrs=(0.05, 0.1), seeds=(0, 1), max_steps=30, **kw)
    with count_compilations() as count:
        run_study(spec, ds.x, ds.y, None, lrs=(0.2, 0.3), seeds=(5, 6), max_steps=47, **kw)
    assert count[0] == 0


@pytest.mark.slow  # 29 s: a real SIGKILL of a subprocess; the in-process interrupt and resume tests cover the files
def test_sigkill_mid_sweep_then_rerun_equals_uninterrupted(tiny_run, tmp_path):
    """A real kill (SIGKILL, no cleanup) once the first trial files exist; the rerun of the
    same command completes the sweep with the same records as the uninterrupted run."""
    import signal
    import time

    cfg, out = tiny_run
    run = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "experiments.sweep", "--config", cfg, "--out", run,
           "--no-progress"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.isdir(os.path.join(run, "trials")) and _records(run):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    assert 0 < len(_records(run)) < 36
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    a, b = _records(out), _records(run)
    assert a.keys() == b.keys()
    assert all(_strip(a[k]) == _strip(b[k]) for k in a)
