"""``python -m experiments.branch``: a tiny run end to end (the branch.json contract, resume)
and one ``error: ...`` line with exit status 2 on bad input, before anything is written."""

import json
import os

import pytest

from experiments import branch as branch_cli

TINY = """
[data]
name = "mnist1d"
n = 128
[model]
arch = "fc"
activation = "relu"
[families]
width_depth = 2
widths = [4, 8]
[train]
loss = "cross_entropy"
batch_sizes = [8, 32, 128]
lr_center = "previous_best"
lr_extend = 1
lr_jitter = true
seeds = 2
max_steps = 400
step_cap_factor = 3
[branch]
optimizers = ["sgd", "adam"]
reference_lr = {sgd = 0.1, adam = 0.003}
reference_max_steps = 400
checkpoint_losses = [2.2, 2.05]
reduction = 0.05
prediction_blocks = 4
"""
CONTRACT = ("arch_id", "width", "depth", "optimizer", "checkpoint_step", "train_loss",
            "B_crit", "ci_low", "ci_high", "B_simple", "B_simple_ci_low", "B_simple_ci_high")


def _read(path):
    with open(path) as f:
        return json.load(f)


def _config(tmp_path, text=TINY, name="branch.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _refused(capsys, *argv) -> str:
    code = branch_cli.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def standard_promotion():
    """optax.adam's own update mixes int and float (its bias correction), which the suite's
    strict dtype promotion refuses; a user's run has jax's standard promotion."""
    import jax

    with jax.numpy_dtype_promotion("standard"):
        yield


SGD_ONLY = (TINY.replace('optimizers = ["sgd", "adam"]', 'optimizers = ["sgd"]')
            .replace("[2.2, 2.05]", "[2.1]"))


@pytest.mark.parametrize("text, runs", [
    (SGD_ONLY, 2),
    # both optimizers and two checkpoints: 4x the studies, plus Adam's metric (~3 min)
    pytest.param(TINY, 4, marks=pytest.mark.slow),
])
def test_tiny_branched_study_end_to_end_and_resume(tmp_path, capsys, standard_promotion,
                                                   text, runs):
    cfg, out = _config(tmp_path, text), str(tmp_path / "out")
    assert branch_cli.main(["--config", cfg, "--out", out, "--no-progress"]) == 0
    res = _read(os.path.join(out, "branch.json"))
    rows = res["rows"]
    # 2 widths x 2 optimizers x the checkpoints each reference run reached
    refs = [_read(os.path.join(out, "reference", f))
            for f in sorted(os.listdir(os.path.join(out, "reference"))) if f.endswith(".json")]
    assert len(refs) == runs
    assert len(rows) == sum(len(r["checkpoints"]) for r in refs) > 0
    for r in rows:
        assert set(CONTRACT) <= set(r)
        assert r["optimizer"] in ("sgd", "adam") and r["B_simple"] > 0
        assert r["B_simple_metric"] == ("adam" if r["optimizer"] == "adam" else "euclidean")
    for f in ("report.md", "branch_critical_batch.png", "branch_critical_batch.pdf"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    before = {f: os.path.getmtime(os.path.join(d, f))
              for d, _, fs in os.walk(os.path.join(out, "studies")) for f in fs}
    capsys.readouterr()
    assert branch_cli.main(["--config", cfg, "--out", out, "--no-progress"]) == 0  # resume
    after = {f: os.path.getmtime(os.path.join(d, f))
             for d, _, fs in os.walk(os.path.join(out, "studies")) for f in fs}
    assert after == before  # nothing retrained
    run = _read(os.path.join(out, "run.json"))
    assert len(run["invocations"]) == 2 and run["invocations"][1]["studies_run"] == 0
    # the folder as its own repeat: every checkpoint inside its reproduction interval
    assert branch_cli.main(["--report-only", "--out", out, "--repeat", out]) == 0
    rep = _read(os.path.join(out, "branch.json"))["repeat"]
    assert rep["pairs"] > 0 and rep["inside_reproduction_interval"] == rep["pairs"]


@pytest.mark.parametrize("edit, message", [
    (("[branch]", "[branch]\nbogus = 1"), "unknown key branch.bogus"),
    (("reduction = 0.05", "reduction = 1.5"), "branch.reduction must be in (0, 1)"),
    (("[2.2, 2.05]", "[2.05, 2.2]"), "decreasing order"),
    (("{sgd = 0.1, adam = 0.003}", "{sgd = 0.1}"), "no learning rate for adam"),
    (("{sgd = 0.1, adam = 0.003}", "{sgd = -1, adam = 0.003}"), "positive learning rates"),
    (('["sgd", "adam"]', '["sgd", "lion"]'), "among 'sgd', 'adam'"),
    (("seeds = 2", "seeds = 1"), "train.seeds must be >= 2"),
    (("batch_sizes = [8, 32, 128]", "batch_sizes = [8, 32]"), "at least 3 sizes"),
    (("[families]\nwidth_depth = 2\nwidths = [4, 8]\n", ""), "set families.widths"),
    (("prediction_blocks = 4", "prediction_blocks = 1"), "prediction_blocks must be >= 2"),
])
def test_bad_config_is_refused(tmp_path, capsys, edit, message):
    cfg = _config(tmp_path, TINY.replace(*edit))
    out = tmp_path / "out"
    assert message in _refused(capsys, "--config", cfg, "--out", str(out))
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--config", "/nonexistent/b.toml"], "no such config file"),
    (["--seeds", "1"], "--seeds must be >= 2"),
    (["--max-steps", "0"], "--max-steps must be >= 1"),
    (["--data", "/nonexistent/my.npz"], "no such file"),
    (["--report-only"], "no such folder"),
    (["--repeat", "/nonexistent/rep"], "not a branched study folder"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_flag_is_refused(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    if "--config" not in args:
        args = ["--config", _config(tmp_path)] + args
    assert message in _refused(capsys, *args, "--out", str(out))
    assert not out.exists()


def test_folder_of_another_study_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert "not a branched study folder" in _refused(capsys, "--report-only", "--out",
                                                     str(out))
    (out / "branch_config.toml").write_text("[data]\nname = 'mnist1d'\n")
    assert "another config" in _refused(capsys, "--config", _config(tmp_path), "--out",
                                        str(out))
