"""`python -m theory.bounds`: JSON keys, human table, every error path, --symbolic round trip."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from theory import bounds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"expected_S1", "expected_S2", "batch_size_bound", "predicted_max_batch", "kind",
        "params", "n", "depth", "widths", "activation", "arch", "outputs"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "theory.bounds", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def run_main(capsys, *args):
    code = bounds.main(list(args))
    return code, capsys.readouterr()


def refused(capsys, *args) -> str:
    """Run the CLI in-process, expect exit 2 and exactly one ``error:`` line; return it."""
    stop_code = bounds.main(list(args))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert stop_code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def test_json_keys_and_kinds(capsys):
    code, out = run_main(capsys, "--depth", "3", "--width", "16", "--json")
    d = json.loads(out.out)
    assert code == 0 and KEYS <= set(d)
    assert d["kind"]["batch_size_bound"] == "exact"
    assert d["predicted_max_batch"] == pytest.approx(d["batch_size_bound"] + 1)
    assert d["widths"] == [16, 16] and d["params"] == 32 * 16 + 16 * 16 + 16


def test_human_table_labels_every_number(capsys):
    code, out = run_main(capsys, "--depth", "4", "--width", "32", "--activation", "relu")
    text = out.out
    assert code == 0
    for needle in ("conventions:", "parameters: P =", "E[S1]", "E[S2]", "B_S-bar",
                   "predicted max batch", "K -> infinity limit", "same parameter budget",
                   "numerical", "exact", "gaussian: n=128"):
        assert needle in text, needle


@pytest.mark.parametrize("args,needle", [
    (["--depth", "0"], "positive integer"),
    (["--width", "-3"], "positive integer"),
    (["--activation", "tanh"], "invalid choice"),
    (["--arch", "conv"], "invalid choice"),
    (["--widths", "8,x"], "comma-separated"),
    (["--depth", "3", "--widths", "8,8,8"], "needs 2"),
    (["--depth", "2", "--arch", "residual"], "residual net needs depth >= 3"),
    (["--gains", "1,1"], "need 8 gains"),
    (["--delta", "-1"], "--delta"),
    (["--data", "/nonexistent/file.npz"], "no such file"),
    (["--frobnicate"], "unrecognized arguments"),
    (["--data-free", "--activation", "relu"], "linear nets only"),
])
def test_bad_input_one_line_exit_2(args, needle, capsys):
    assert needle in refused(capsys, *args)


def test_as_module_one_line_no_traceback():
    """End to end: ``python -m theory.bounds`` with a bad flag (exit status and stderr as a
    shell sees them)."""
    p = run_cli("--depth", "0")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error:") and p.stderr.count("\n") == 1, p.stderr


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_bad_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3))
    cases = {
        _npz(tmp_path, "nokeys.npz", a=x): "missing array",
        _npz(tmp_path, "shape.npz", x=x, y=np.zeros(5)): "rows",
        _npz(tmp_path, "nan.npz", x=np.where(x > 1, np.nan, x), y=np.zeros(6)): "NaN",
        _npz(tmp_path, "empty.npz", x=np.zeros((0, 3)), y=np.zeros(0)): "empty",
        _npz(tmp_path, "obj.npz", x=np.array([{"a": 1}] * 6, dtype=object), y=np.zeros(6)):
            "unpickling",
    }
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    cases[str(garbage)] = "not an .npz"
    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps({"x": x}))
    cases[str(evil)] = "never loaded"
    for path, needle in cases.items():
        assert needle in refused(capsys, "--depth", "2", "--width", "4", "--data", path), path


def test_user_npz_and_outputs_from_labels(tmp_path, capsys):
    rng = np.random.default_rng(1)
    path = _npz(tmp_path, "ok.npz", x=rng.standard_normal((10, 4)),
                y=rng.standard_normal((10, 3)))
    code, out = run_main(capsys, "--depth", "3", "--width", "8", "--data", path, "--json")
    d = json.loads(out.out)
    assert code == 0 and d["outputs"] == 3 and d["n"] == 10


def test_symbolic_round_trip(capsys):
    code, out = run_main(capsys, "--depth", "5", "--width", "8", "--json", "--symbolic")
    d = json.loads(out.out)["symbolic"]
    from theory import symbolic as S

    cf = S.closed_form()
    printed = sp.sympify(d["B"], locals=_locals())
    # equal as functions: exact rational evaluation at two points where no factor vanishes
    # (sympy's simplify of the difference takes minutes on the collected form)
    for K, L in ((7, 6), (13, 9)):
        point = {S.K: K, S.L: L, S.n: 11, S.d: 3, S.c: 2, S.X4: sp.Rational(13, 3), S.X2: 5,
                 S.F: sp.Rational(7, 2), S.Yd: 2, S.Yo: 3}
        assert sp.nsimplify(printed.subs(point)) == sp.nsimplify(cf["B"].subs(point))
    code, out = run_main(capsys, "--depth", "5", "--width", "8", "--symbolic")
    assert "LaTeX:" in out.out and "closed form (exact" in out.out


def _locals():
    from theory import symbolic as S
    return {str(s): s for s in (S.K, S.L, S.n, S.d, S.c, S.X4, S.X2, S.F, S.Yd, S.Yo)}


def test_cli_does_not_import_jax():
    code = ("import sys, runpy; sys.argv=['x','--depth','8','--width','256','--json'];"
            "import io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: runpy.run_module('theory.bounds', run_name='__main__')\n"
            "    except SystemExit: pass\n"
            "print('jax' in sys.modules, 'sympy' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.stdout.split() == ["False", "False"], p.stdout + p.stderr


def test_data_free_mode(capsys):
    code, out = run_main(capsys, "--depth", "4", "--width", "16", "--data-free", "--json")
    d = json.loads(out.out)
    assert code == 0 and d["kind"]["batch_size_bound"] == "exact" and "data-free" in d["data"]


SYMBOLIC_CASES = [
    # args -> expected key facts of the --symbolic JSON
    (["--depth", "1"], {"valid": "L = 1", "B": "n*(X4*c/d + Y_d)/(F*c/d + Y_o)"}),
    (["--depth", "2", "--width", "8", "--activation", "relu"], {"valid": "L = 2"}),
    (["--widths", "64,32,16"], {"kind": "none"}),
    (["--depth", "3", "--width", "8", "--data-free"], {"valid": "L >= 2"}),
]


@pytest.mark.parametrize("args,facts", SYMBOLIC_CASES, ids=[" ".join(a) for a, _ in
                                                           SYMBOLIC_CASES])
def test_symbolic_cases(capsys, args, facts):
    code, out = run_main(capsys, *args, "--json", "--symbolic")
    sym = json.loads(out.out)["symbolic"]
    assert code == 0
    for k, v in facts.items():
        if k == "B":
            assert sp.simplify(sp.sympify(sym["B"], locals=_locals())
                               - sp.sympify(v, locals=_locals())) == 0
        else:
            assert sym[k] == v
    if "--data-free" in args:
        free = sp.sympify(sym["B"], locals=_locals()).free_symbols
        assert {str(s) for s in free} <= {"n", "d", "K", "L", "c"}
