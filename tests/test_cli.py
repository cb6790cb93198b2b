"""theory/cli.py: the one error style of every command-line tool, --help with examples, and
--help without jax. In-process (``main(argv)``), except one subprocess that imports every CLI
and asks each for --help in a fresh interpreter."""

import importlib
import os
import subprocess
import sys

import pytest

from theory import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIS = ("theory.bounds", "theory.bench", "numerics.check", "numerics.bench", "experiments.sweep",
        "experiments.report", "experiments.collect", "experiments.reproduce",
        "experiments.branch", "tests.measure_theory")


def _main_raising(exc):
    @cli.command(interrupted="interrupted: custom line")
    def main(argv=None):
        raise exc
    return main


@pytest.mark.parametrize("exc,line", [
    (ValueError("bad\nvalue"), "error: bad value"),
    (FileNotFoundError(2, "No such file or directory", "/no/such"),
     "error: /no/such: No such file or directory"),
    (MemoryError(), "error: out of memory"),
])
def test_refusals_are_one_line_exit_2(exc, line, capsys):
    stop_code = _main_raising(exc)([])
    assert stop_code == cli.EXIT_ERROR == 2
    assert capsys.readouterr().err == line + "\n"


def test_interrupt_exit_130_with_its_line(capsys):
    stop_code = _main_raising(KeyboardInterrupt())([])
    assert stop_code == 130
    assert capsys.readouterr().err == "interrupted: custom line\n"


def test_closed_pipe_is_quiet_exit_1(capsys):
    """``python -m ... | head``: the reader went away; no traceback, no error line."""
    assert _main_raising(BrokenPipeError(32, "Broken pipe"))([]) == 1
    assert capsys.readouterr().err == ""


def test_other_exceptions_keep_their_traceback():
    """A bug (not a refused input) is not dressed up as a one-line error."""
    with pytest.raises(ZeroDivisionError):
        _main_raising(ZeroDivisionError("bug"))([])


def test_traceback_switch(monkeypatch):
    monkeypatch.setenv("WIDTHDEPTH_TRACEBACK", "1")
    with pytest.raises(ValueError, match="bad"):
        _main_raising(ValueError("bad"))([])


def test_fail_and_argparse_exits_become_return_values(capsys):
    """``main(argv)`` returns its status: fail() and argparse's SystemExit are caught."""
    @cli.command
    def main(argv=None):
        p = cli.Parser(prog="demo")
        p.add_argument("--n", type=cli.positive_int)
        args = p.parse_args(argv)
        if args.n == 3:
            cli.fail("three is refused")
        return 0

    assert main(["--n", "2"]) == 0
    assert main(["--n", "3"]) == 2
    assert main(["--n", "0"]) == 2
    assert main(["--help"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: three is refused",
                   "error: argument --n: expected a positive integer, got 0 (see --help)"]


def test_run_exits_with_main_status():
    for code in (0, 2, 130):
        with pytest.raises(SystemExit) as stop:
            cli.run(lambda: code)
        assert stop.value.code == code


@pytest.mark.parametrize("name", CLIS)
def test_help_has_examples_and_exits_0(name, capsys):
    module = importlib.import_module(name)
    stop_code = module.main(["--help"])
    out = capsys.readouterr().out
    assert stop_code == 0
    assert "examples:\n  python -m " + name in out, out
    assert "SPEC" not in out


@pytest.mark.parametrize("name", CLIS)
def test_unknown_flag_is_one_line_exit_2(name, capsys):
    module = importlib.import_module(name)
    positional = {"tests.measure_theory": ["ce"], "experiments.report": ["runs/x"],
                  "experiments.collect": ["runs/x", "results/x"]}
    argv = positional.get(name, []) + ["--frobnicate"]
    stop_code = module.main(argv)
    err = capsys.readouterr().err
    assert stop_code == 2
    assert err.startswith("error: unrecognized arguments: --frobnicate") and err.count("\n") == 1


HELP_WITHOUT_JAX = """
import contextlib, io, runpy, sys
for name in {clis!r}:
    sys.argv = [name, "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            assert stop.code == 0, (name, stop.code)
bad = sorted(m for m in ("jax", "optax", "matplotlib", "sympy") if m in sys.modules)
print("heavy modules:", ",".join(bad) or "none")
"""


def test_help_imports_no_jax():
    """``--help`` of every CLI, run as ``python -m``, imports none of jax, optax, matplotlib,
    sympy (those cost seconds: the issue measured 6-13 s per --help when they were imported)."""
    p = subprocess.run([sys.executable, "-c", HELP_WITHOUT_JAX.format(clis=CLIS)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "heavy modules: none", p.stdout + p.stderr


def test_bench_model_names_match_the_models():
    """numerics.bench lists the generic models without importing jax; the list must be the
    models module's."""
    from numerics import _bench_models, bench

    assert bench.MODEL_NAMES == tuple(_bench_models.MODELS)
