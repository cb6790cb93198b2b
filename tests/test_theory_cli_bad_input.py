"""`python -m theory.bounds` on inputs that once crashed, hung or printed wrong numbers (issue 14):
each answers correctly or refuses with one line ``error: ...`` and exit status 2. In-process
(``bounds.main(argv)``), so each case costs what the CLI itself costs."""

import json
import time

import mpmath
import numpy as np
import pytest

import theory._registry as R
import theory._transfer as B
from theory import Invariants, NetSpec, bounds
from theory.data import gaussian

#: A refusal must come at once, before any per-layer work: seconds, not the minutes the
#: evaluation would take (generous for the shared 2-core machine under load).
REFUSE_SECONDS = 10.0


def _refused(capsys, *args):
    """Run the CLI, expect exit 2 and exactly one ``error:`` line; return that line."""
    exc_code = bounds.main(list(args))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exc_code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def _json(capsys, *args):
    code = bounds.main([*args, "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def _npz(tmp_path, name, x, y):
    path = tmp_path / name
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "seed must be an integer in 0..4294967295"),
    (["--data", "mnist1d", "--n", "8", "--seed", "4294967296"], "seed must be an integer"),
    (["--gains", "1e300,1e300,1e300", "--activation", "relu", "--depth", "3", "--width", "4"],
     "outside the float64 range"),
    (["--gains", "1e100,1e100,1e100", "--activation", "relu", "--depth", "3", "--width", "4"],
     "overflow float64"),
    (["--gains", "1e100,1e100,1e100,1e100", "--activation", "relu", "--depth", "4", "--width",
      "4", "--arch", "residual"], "overflow float64"),
])
def test_bad_numbers_refused(capsys, args, needle):
    assert needle in _refused(capsys, *args, "--no-same-budget")


@pytest.mark.parametrize("args", [
    ["--depth", "100000", "--width", "2", "--activation", "relu"],
    ["--depth", "20000", "--width", "256", "--activation", "relu", "--n", "64"],
])
def test_very_deep_relu_refused_at_once(capsys, args):
    t = time.perf_counter()
    line = _refused(capsys, *args)
    assert time.perf_counter() - t < REFUSE_SECONDS
    assert f"deeper than {R.RELU_MAX_DEPTH}" in line


def test_residual_alpha_zero_is_the_two_layer_net(capsys):
    """alpha = 0 switches every block off: f = W_L W_1 x, the depth-2 net's moments."""
    res = _json(capsys, "--arch", "residual", "--alpha", "0", "--depth", "5", "--width", "4",
                "--no-same-budget")
    two = _json(capsys, "--depth", "2", "--width", "4", "--no-same-budget")
    for key in ("expected_S1", "expected_S2", "batch_size_bound"):
        assert res[key] == pytest.approx(two[key], rel=1e-12)  # two exact evaluations, float64


def test_data_out_of_float64_range(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3))
    big = _npz(tmp_path, "big.npz", x * 1e200, np.zeros(8))
    tiny = _npz(tmp_path, "tiny.npz", x * 1e-200, np.zeros(8))
    zero = _npz(tmp_path, "zero.npz", np.zeros((8, 3)), np.zeros(8))
    for act in ("linear", "relu"):
        common = ("--depth", "3", "--width", "4", "--activation", act, "--no-same-budget")
        assert "too large for float64" in _refused(capsys, "--data", big, *common)
        line = _refused(capsys, "--data", tiny, *common)
        assert "too small for float64" in line and "zero" not in line
        assert "every input row is zero" in _refused(capsys, "--data", zero, *common)


def test_out_of_memory_message_names_the_data(monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr("theory.cli.resolve", no_memory)
    line = _refused(capsys, "--input-dim", "1000000000", "--depth", "3", "--width", "4")
    assert "building the data" in line and "d = 1000000000" in line and "ReLU" not in line


def test_broken_pipe_exits_quietly(monkeypatch, capsys):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    exc_code = bounds.main(["--depth", "3", "--width", "4", "--no-same-budget"])
    assert exc_code == 1 and capsys.readouterr().err == ""


def test_data_free_says_what_it_averages_over(capsys):
    assert bounds.main(["--data-free", "--depth", "3", "--width", "4"]) == 0
    text = capsys.readouterr().out
    assert "data fixed" not in text and "data-free" in text.splitlines()[1]
    d = _json(capsys, "--data-free", "--depth", "3", "--width", "4")
    assert "data fixed" not in d["bound_definition"] and "N(0, I_32)" in d["bound_definition"]


UNEQUAL_HIDDEN_GAINS = ("--depth", "4", "--width", "4", "--gains", "1,1.5,1,1")


def test_unequal_hidden_gains_exact_numbers(capsys):
    """Issue 14's input: the CLI's E[S1], E[S2] are the explicit recursion's (every layer with
    its own gain), not the closed form with layer 2's gain on every hidden layer."""
    d = _json(capsys, *UNEQUAL_HIDDEN_GAINS, "--no-same-budget")
    ds = gaussian(128, 32, seed=0)
    spec = NetSpec(depth=4, widths=(4, 4, 4), input_dim=32, gains=(1, 1.5, 1, 1))
    with mpmath.workdps(B.DPS):
        rec = B.linear_exact(spec, Invariants.of(ds.x, ds.y), closed_form=False)
        S1, S2 = rec["S1_net"] + rec["S1_label"], rec["S2_net"] + rec["S2_label"]
    # both exact in 50-digit arithmetic; the JSON floats are the mpf rounded to float64
    assert d["expected_S1"] == pytest.approx(float(S1), rel=1e-15)
    assert d["expected_S2"] == pytest.approx(float(S2), rel=1e-15)
    assert d["kind"]["expected_S1"] == "exact"


@pytest.mark.parametrize("extra", [(), ("--data-free",), ("--arch", "residual"),
                                   ("--activation", "relu"), ("--loss", "cross_entropy",
                                                              "--outputs", "3")])
def test_symbolic_without_closed_form(capsys, extra):
    """Unequal hidden gains: no closed form in L; --symbolic says so (text and JSON), exit 0."""
    args = [*UNEQUAL_HIDDEN_GAINS, *extra, "--symbolic", "--no-same-budget"]
    assert bounds.main(args) == 0
    assert "hidden layers have different gains" in capsys.readouterr().out
    sym = _json(capsys, *args)["symbolic"]
    assert sym["kind"] == "none" and "S1" not in sym
