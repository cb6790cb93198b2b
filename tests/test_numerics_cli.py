"""numerics.check and numerics.bench entry points: output keys, grid files, one-line errors."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from numerics import bench, check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--depth", "3", "--width", "8", "--n", "6", "--input-dim", "4", "--samples", "32"]
MC_KEYS = ("mc_S1", "mc_S1_se", "mc_S2", "mc_S2_se", "mc_batch_size_bound",
           "mc_batch_size_bound_se", "mc_mean_B_S", "mc_mean_B_S_se")
THEORY_KEYS = ("expected_S1", "expected_S2", "batch_size_bound", "predicted_max_batch", "kind",
               "limit_batch_size_bound", "params", "n", "depth", "widths", "activation",
               "arch", "outputs")


def test_check_json_has_mc_theory_and_z_keys(capsys):
    assert check.main(SMALL + ["--json", "--x64"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in MC_KEYS + THEORY_KEYS + ("z_S1", "z_S2", "z_batch_size_bound"):
        assert k in out, k
    assert out["kind"]["batch_size_bound"] == "exact"
    assert out["dtype"] == "float64" and out["depth"] == 3 and out["widths"] == [8, 8]


def test_check_human_table(capsys):
    assert check.main(SMALL + ["--activation", "relu", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "E[S1]" in out and "numerical" in out and "bootstrap 95%" in out


def test_check_grid_writes_csv_png_pdf(tmp_path, capsys):
    out = tmp_path / "grid"
    assert check.main(SMALL + ["--grid-widths", "4", "--grid-depths", "2,3",
                               "--out", str(out)]) == 0
    with open(out / "grid.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["depth"] for r in rows} == {"2", "3"}
    assert all(r["theory_kind"] == "exact" for r in rows)
    assert (out / "grid.png").stat().st_size > 0 and (out / "grid.pdf").stat().st_size > 0


@pytest.mark.parametrize("argv,message", [
    (["--samples", "1"], "--samples"),
    (["--depth", "2", "--arch", "residual"], "residual"),
    (["--data", "/no/such/file.npz"], "no such file"),
    (["--grid-depths", "2,3"], "--out"),
    (["--widths", "3,4", "--depth", "5"], "hidden widths"),
    (["--bogus"], "unrecognized"),
])
def test_check_bad_input_one_line_exit_2(argv, message, capsys):
    err_code = check.main(argv)
    assert err_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def _check_refused(capsys, *argv) -> str:
    err_code = check.main(list(argv))
    lines = capsys.readouterr().err.strip().splitlines()
    assert err_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    return lines[0]


@pytest.fixture
def no_monte_carlo(monkeypatch):
    """Fail the test if the Monte Carlo starts: a refusal must come before it."""
    def never(*args, **kwargs):
        raise AssertionError("the Monte Carlo ran before the refusal")
    monkeypatch.setattr("numerics._compare.mc_moments", never)


def test_check_out_refused_before_the_monte_carlo(tmp_path, capsys, no_monte_carlo):
    afile = tmp_path / "afile"
    afile.write_text("")
    grid = SMALL + ["--grid-depths", "2,3"]
    assert "exists and is not a folder" in _check_refused(capsys, *grid, "--out", str(afile))
    line = _check_refused(capsys, *grid, "--out", str(afile / "sub"))
    assert "cannot create the folder" in line
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root may write anywhere
            assert "not writable" in _check_refused(capsys, *grid, "--out", str(ro))
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("argv,needle", [
    (["--width", "1000000000"], "one network does not fit in memory"),
    (["--n", "1000000000"], "out of memory building the data"),
    (["--seed", "-1"], "seed must be an integer in 0..4294967295"),
    (["--mc-seed", "-1"], "--mc-seed: expected a seed in 0 .. 2**32 - 1"),
])
def test_check_huge_or_bad_sizes_refused(argv, needle, capsys, monkeypatch):
    if "--n" in argv:  # do not really allocate 238 GiB: the allocation fails as it would
        def no_memory(*args, **kwargs):
            raise MemoryError
        monkeypatch.setattr("theory.cli.resolve", no_memory)
    assert needle in _check_refused(capsys, "--depth", "3", "--samples", "4", *argv)


@pytest.mark.parametrize("scale,needle", [(1e200, "beyond the float32 range"),
                                          (1e-200, "below the smallest normal float32"),
                                          (1j, "x is complex")])
def test_check_data_out_of_range_refused(tmp_path, capsys, scale, needle):
    """Once: NaN everywhere with exit 0 (x 1e200), or the imaginary part dropped (complex)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.standard_normal((6, 3)) * scale, y=np.zeros(6))
    assert needle in _check_refused(capsys, "--depth", "3", "--width", "4", "--samples", "4",
                                    "--data", str(path))


def test_check_as_module_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "numerics.check", "--width", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


def test_bench_json_smoke(capsys):
    assert bench.main(["--json", "--suite", "spec", "--n", "16", "--widths", "8", "--depths",
                       "2", "--reps", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 1
    for k in ("n", "width", "depth", "ours_s", "floor_s", "naive_s", "ours_peak_mb",
              "naive_peak_mb", "mc_per_net_s"):
        assert k in rows[0], k
    assert rows[0]["ours_s"] > 0 and rows[0]["naive_s"] > 0


def _bench_generic(models, capsys):
    assert bench.main(["--json", "--suite", "generic", "--models", ",".join(models), "--n", "4",
                       "--widths", "8", "--depths", "2", "--reps", "1", "--vmap-reps", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["model"] for r in rows] == list(models)
    for r in rows:
        assert r["ghost_s"] > 0 and r["backward_s"] > 0 and r["vmap_s"] > 0
        # float32 ghost vs float32 vmap(grad): the 1e-5 agreement target
        assert r["S1_rel_diff"] <= 1e-5, r
        assert not [p for p in r["paths"] if p.startswith("vmap")], r["paths"]


def test_bench_generic_suite_smoke(capsys):
    _bench_generic(("mlp",), capsys)


@pytest.mark.slow
def test_bench_generic_suite_all_models(capsys):
    _bench_generic(("mlp", "cnn", "transformer"), capsys)


def test_bench_bad_models_one_line_exit_2(capsys):
    err_code = bench.main(["--suite", "generic", "--models", "resnet"])
    assert err_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "resnet" in lines[0]


def test_readme_examples_run():
    import doctest
    failures, tried = doctest.testfile(os.path.join(ROOT, "numerics", "README.md"),
                                       module_relative=False,
                                       optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


@pytest.mark.slow
def test_bench_quick_every_model(capsys):
    """``--quick``: every generic model once (n = 8), exact to 1e-5 in float32, no fallback."""
    assert bench.main(["--quick", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["model"] for r in rows] == list(bench.DEFAULT_MODELS)
    for r in rows:
        assert r["S1_rel_diff"] <= 1e-5, r
        assert not [p for p in r["paths"] if p.startswith("vmap")], r["paths"]


def test_bench_vmap_max_n_skips_only_the_reference(capsys):
    """``--vmap-max-n``: the rows above it have no vmap(grad) cost or agreement (None, printed
    "-"), the rows at or below it keep both."""
    assert bench.main(["--json", "--suite", "generic", "--models", "mlp", "--n", "8,4",
                       "--widths", "8", "--depths", "2", "--reps", "1", "--vmap-max-n",
                       "4"]) == 0
    rows = {r["n"]: r for r in map(json.loads,
                                   capsys.readouterr().out.strip().splitlines())}
    assert rows[8]["vmap_over_backward"] is None and rows[8]["S1_rel_diff"] is None
    assert "vmap_s" not in rows[8] and rows[8]["ghost_s"] > 0 and rows[8]["call_s"] > 0
    assert rows[4]["vmap_s"] > 0 and rows[4]["S1_rel_diff"] <= 1e-5  # float32 target
