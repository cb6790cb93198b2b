"""experiments' command-line tools on bad input and Ctrl-C: one ``error: ...`` line and exit
status 2, or exit 130 with the finished trials on disk. In-process (``main(argv)``) except the
Ctrl-C test, which needs a real process and a real signal."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import report as report_cli
from experiments import reproduce as reproduce_cli
from experiments import sweep as sweep_cli

from .test_experiments import TINY  # the one tiny workload of the experiments tests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _refused(capsys, main, *argv) -> str:
    stop_code = main(list(argv))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert stop_code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("main, args, message", [
    (sweep_cli.main, ["--depths", "two"], "--depths"),
    (sweep_cli.main, ["--batch-sizes", "8,8", "--out", "/nonexistent/x"],
     "distinct positive integers"),
    (sweep_cli.main, ["--bogus"], "unrecognized arguments"),
    (sweep_cli.main, ["--seeds", "1000000000", "--out", "/nonexistent/x"],
     "train.seeds (a count) must be in 1..1000"),
    (sweep_cli.main, ["--data", "no_such_set", "--out", "/nonexistent/x"], "unknown data set"),
    (sweep_cli.main, ["--data", "mnist1d", "--target", "accuracy:0.05", "--out",
                      "/nonexistent/x"], "met by chance"),
    (sweep_cli.main, ["--data", "gaussian", "--target", "loss:0", "--out", "/nonexistent/x"],
     "needs an explicit train.target > 0"),
    (sweep_cli.main, ["--target", "2", "--out", "/nonexistent/x"],  # mnist1d: accuracy
     "an accuracy target must be in (0, 1]"),
    (reproduce_cli.main, ["--data", "/nonexistent/my.npz", "--out", "/nonexistent/x"],
     "no such file"),
    (report_cli.main, ["/nonexistent/run"], "no such folder"),
])
def test_bad_flag_gives_one_line_error(main, args, message, capsys):
    assert message in _refused(capsys, main, *args)


def _write(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_bad_config_file_gives_one_line_error(tmp_path, capsys):
    bad = _write(tmp_path, "bad.toml", b"[train]\nlearning_rate = 0.1\n")
    line = _refused(capsys, sweep_cli.main, "--config", bad, "--out", str(tmp_path / "o"))
    assert line.startswith(f"error: {bad}: unknown key train.learning_rate (known: loss, ")
    broken = _write(tmp_path, "broken.toml", b"[train\n")
    assert "not valid TOML" in _refused(capsys, sweep_cli.main, "--config", broken)
    latin1 = _write(tmp_path, "latin1.toml", "[data]\nname = \"caf\xe9\"\n".encode("latin-1"))
    line = _refused(capsys, sweep_cli.main, "--config", latin1, "--out", str(tmp_path / "o"))
    assert line == (f"error: {latin1}: not UTF-8 text (byte 0xe9 at offset 18); TOML files "
                    f"must be UTF-8")
    assert not os.path.exists(tmp_path / "o")


def test_huge_class_label_refused(tmp_path, capsys):
    """A label of 1e9 once made c = 10^9 + 1 classes (a one-hot of 8 GB per example row)."""
    path = tmp_path / "labels.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((8, 3)), y=np.array([0, 1, 2, 10**9, 0, 1, 2, 0]))
    line = _refused(capsys, sweep_cli.main, "--data", str(path), "--out", str(tmp_path / "o"))
    assert "class label 1000000000" in line and "relabel them 0..3" in line


def _trial_files(run):
    return [f for f in glob.glob(os.path.join(run, "trials", "*", "*", "*.json"))
            if not f.endswith("study.json")]


@pytest.mark.slow  # about 25 s on 2 shared cores: training until the first study is written
def test_ctrl_c_exits_130_with_finished_trials_saved(tmp_path):
    """SIGINT to a real sweep while it trains: the one line, exit status 130 (once: a SIGSEGV
    at interpreter teardown, exit 139, when the signal came during an XLA compilation), and
    every trial reported finished is on disk and readable."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    run = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", "--config", str(cfg),
                             "--out", run, "--no-progress"], cwd=ROOT,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not _trial_files(run):
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        time.sleep(1.0)  # into the next study: its compilation or training
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == sweep_cli.INTERRUPTED, err
    assert "Traceback" not in err and "Fatal Python error" not in err
    files = _trial_files(run)
    assert 0 < len(files) < 36
    import json

    for f in files:
        with open(f) as fh:
            assert json.load(fh)["status"] in ("REACHED", "UNREACHED", "INFEASIBLE")
