"""Command-line plumbing of every CLI of the toolkit, and the network / data options they share.

Every ``python -m ...`` entry point (``theory.bounds``, ``theory.bench``, ``numerics.check``,
``numerics.bench``, ``experiments.sweep``, ``experiments.report``, ``experiments.collect``,
``experiments.reproduce``, ``tests.measure_theory``) is built from this module, so all of them
behave alike:

* **errors**: one line ``error: <what is wrong>`` on stderr and exit status 2, never a traceback
  (:func:`fail`; :class:`Parser` for bad flags; :func:`command`, the decorator of every
  ``main(argv) -> int``, turns the library's bad-input exceptions into that line:
  :class:`ValueError` and its subclasses ``theory.SpecError``, ``theory.DataError``,
  ``experiments.ExperimentError``, an :class:`OSError` naming a file, :class:`MemoryError`).
  Any other exception is a bug and keeps its traceback; set ``WIDTHDEPTH_TRACEBACK=1`` to see
  the traceback of a refused input as well.
* **Ctrl-C**: one line (``interrupted``; for sweeps ``interrupted: finished trials are saved;
  rerun the same command to resume``) and exit status 130 (:func:`run` explains the sweeps'
  hard exit).
* **a closed pipe** (``... | head``): stop quietly, exit status 1 (Python's "Note on SIGPIPE").
* **fast** ``--help``: an entry module imports jax, sympy or matplotlib only after its arguments
  parse, so ``--help`` and argument errors answer in well under a second.
* **examples**: every ``--help`` ends with example command lines (``Parser(examples=...)``).

A CLI module is then::

    @cli.command
    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        ...  # heavy imports here, after parsing
        return 0

    if __name__ == "__main__":
        cli.run(main)

``--depth 8`` means the same thing everywhere: eight weight matrices (see
:class:`theory.NetSpec` and README, "Definitions and conventions").

Example:
    >>> p = Parser(prog="python -m demo", examples=["python -m demo --n 3"])
    >>> _ = p.add_argument("--n", type=positive_int)
    >>> p.parse_args(["--n", "3"]).n
    3
    >>> print(p.epilog)
    examples:
      python -m demo --n 3
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from ._spec import ACTIVATIONS, ARCHS, NetSpec, SpecError, check_depth
from .data import DataError, Dataset, resolve

DEFAULT_N = 128
DEFAULT_INPUT_DIM = 32
#: Exit status of a refused input (bad flag, bad file, bad value) — argparse's own convention.
EXIT_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130
#: Exit status when the reader of stdout went away (e.g. ``| head``).
EXIT_CLOSED_PIPE = 1


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def fail(message, code: int = EXIT_ERROR):
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump, exit status 2) and an ``examples``
    epilog: ``Parser(prog=..., description=..., examples=["python -m ... --flag", ...])``."""

    def __init__(self, *args, examples=(), **kwargs):
        if examples and "epilog" not in kwargs:
            kwargs["epilog"] = "examples:\n" + "\n".join(f"  {e}" for e in examples)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D401 - argparse API
        fail(f"{message} (see --help)")


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush after a closed pipe does
    not raise again (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _os_error(err: OSError) -> str:
    where = f"{err.filename}: " if getattr(err, "filename", None) else ""
    return f"{where}{err.strerror or err}"


def _error_line(message) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def command(main=None, *, interrupted: str = "interrupted", out_of_memory: str = ""):
    """Decorator of a CLI's ``main(argv=None) -> int``: the toolkit's one error style.

    The decorated ``main(argv)`` returns the exit status and never raises ``SystemExit``, so
    tests call it in-process: 0 on success (``--help`` included); 2 after one ``error: ...``
    line for a refused input (see the module docstring; :func:`fail` and :class:`Parser`
    inside ``main`` end up here too); 130 after the ``interrupted`` line on Ctrl-C; 1, quietly,
    when stdout was closed. ``out_of_memory`` is a hint appended to the out-of-memory line.
    """
    if main is None:
        return functools.partial(command, interrupted=interrupted, out_of_memory=out_of_memory)

    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        show = os.environ.get("WIDTHDEPTH_TRACEBACK") == "1"
        try:
            return main(argv)
        except SystemExit as stop:  # fail(), argparse's --help and errors
            if stop.code is None or isinstance(stop.code, int):
                return stop.code or 0
            return _error_line(stop.code)
        except KeyboardInterrupt:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            print(interrupted, file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            _quiet_stdout()
            return EXIT_CLOSED_PIPE
        except MemoryError:
            if show:
                raise
            return _error_line("out of memory" + (f"; {out_of_memory}" if out_of_memory
                                                  else ""))
        except OSError as err:
            if show:
                raise
            return _error_line(_os_error(err))
        except ValueError as err:  # SpecError, DataError, ExperimentError, the APIs' checks
            if show:
                raise
            return _error_line(str(err) or type(err).__name__)

    return wrapper


def run(main, *, hard_exit_on_interrupt: bool = False):
    """The ``if __name__ == "__main__":`` line of a CLI: exit with ``main()``'s status.

    ``hard_exit_on_interrupt``: after Ctrl-C, flush stdout and stderr and leave with
    ``os._exit(130)``, skipping the interpreter's teardown. The sweeps need it: Ctrl-C during
    an XLA compilation leaves the compile running on an XLA worker thread, and tearing the
    interpreter down under it crashes the process (SIGSEGV, exit 139) after the right message.
    Nothing is lost by skipping the teardown: every trial record is renamed into place when
    written, and the folder lock is an ``fcntl`` lock that the kernel drops at exit.
    """
    code = main()
    if code == EXIT_INTERRUPTED and hard_exit_on_interrupt:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(EXIT_INTERRUPTED)
    raise SystemExit(code)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in 0 .. 2**32 − 1 (what numpy and jax keys take
    without wrapping a negative value round)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed (an integer >= 0), got {text!r}") \
            from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected a seed in 0 .. 2**32 - 1, got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``"64,32,16"`` into positive integers."""
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def float_list(text: str) -> tuple[float, ...]:
    """Parse ``"0.01,0.1,1"`` into numbers."""
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_network_args(parser: argparse.ArgumentParser, *, depth_default: int = 8,
                     width_default: int = 256) -> None:
    """--depth --width/--widths --activation --arch --outputs --gains --alpha."""
    g = parser.add_argument_group("network (README, \"Definitions and conventions\"; depth = "
                                  "number of weight matrices)")
    g.add_argument("--depth", type=positive_int, default=None,
                   help=f"number of weight matrices L (default {depth_default}, or "
                        "len(--widths)+1)")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--width", type=positive_int, default=None,
                   help=f"width K of every hidden layer (default {width_default})")
    w.add_argument("--widths", type=int_list, default=None,
                   help="hidden widths n_1,...,n_(L-1), e.g. 64,32,16")
    g.add_argument("--activation", default="linear", choices=ACTIVATIONS,
                   help="linear or relu (default linear)")
    g.add_argument("--arch", default="fc", choices=ARCHS, help="fc or residual (default fc)")
    g.add_argument("--outputs", type=positive_int, default=None,
                   help="output dim c (default: the labels' columns, else 1)")
    g.add_argument("--gains", type=float_list, default=None,
                   help="per-layer gains s_1,...,s_L (default: 1; ReLU sqrt(2) for l<L)")
    g.add_argument("--alpha", type=float, default=None,
                   help="residual branch scale (default 1/sqrt(L-2))")
    parser.set_defaults(_width_default=width_default, _depth_default=depth_default)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--data --n --input-dim --labels --seed."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="gaussian (default), mnist1d, or a FILE.npz with arrays x (n×d), y")
    g.add_argument("--n", type=positive_int, default=None,
                   help=f"number of examples (gaussian default {DEFAULT_N}; mnist1d 512; "
                        "for a file: use the first n)")
    g.add_argument("--input-dim", type=positive_int, default=None,
                   help=f"input dim d of gaussian data (default {DEFAULT_INPUT_DIM})")
    g.add_argument("--labels", default=None, choices=("zero", "teacher", "data"),
                   help="gaussian: zero (default) or teacher; any data: zero to drop labels")
    g.add_argument("--seed", type=int, default=0, help="data seed (default 0)")


def dataset_from_args(args) -> Dataset:
    """Build the data set named by the options (one-line error on failure)."""
    name = args.data
    try:
        if name in (None, "gaussian"):
            if args.labels == "data":
                fail("gaussian data has no stored labels: use --labels zero or teacher")
            ds = resolve("gaussian", n=args.n or DEFAULT_N,
                         d=args.input_dim or DEFAULT_INPUT_DIM, seed=args.seed,
                         labels=args.labels or "zero", outputs=args.outputs or 1)
        else:
            if args.input_dim is not None:
                fail("--input-dim applies to gaussian data only (a data set fixes d)")
            if args.labels == "teacher":
                fail("--labels teacher applies to gaussian data only")
            if name == "mnist1d":
                ds = resolve("mnist1d", n=args.n or 512, seed=args.seed,
                             labels=args.labels)
            else:
                ds = resolve(name, labels=args.labels)
                if args.n is not None:
                    ds = ds.subset(args.n)
    except DataError as err:
        fail(str(err))
    except MemoryError:
        if name not in (None, "gaussian"):
            fail(f"out of memory loading the data set {name!r}; try a smaller --n")
        n, d = args.n or DEFAULT_N, args.input_dim or DEFAULT_INPUT_DIM
        fail(f"out of memory building the data (n = {n} examples of dimension d = {d}: "
             f"{8 * n * d / 2**30:.3g} GiB of float64 for the inputs alone); try a smaller "
             f"--n or --input-dim")
    return ds


def spec_from_args(args, dataset: Dataset | None = None, outputs: int | None = None) -> NetSpec:
    """The :class:`NetSpec` named by the options, with d and c taken from the data (or c =
    ``outputs`` when given, e.g. the number of classes of a cross-entropy net)."""
    if args.widths is not None:
        widths = tuple(args.widths)
        depth = args.depth if args.depth is not None else len(widths) + 1
        if len(widths) != depth - 1:
            fail(f"--widths gives {len(widths)} hidden widths but --depth {depth} needs "
                 f"{depth - 1}")
    else:
        depth = args.depth if args.depth is not None else args._depth_default
        try:
            check_depth(depth)
        except SpecError as err:
            fail(str(err))
        widths = (args.width or args._width_default,) * (depth - 1)
    d = dataset.input_dim if dataset is not None else (args.input_dim or DEFAULT_INPUT_DIM)
    c = dataset.outputs if dataset is not None else (args.outputs or 1)
    if outputs is not None:
        c = outputs
    elif dataset is not None and args.outputs is not None and args.outputs != dataset.outputs:
        fail(f"--outputs {args.outputs} but the labels have {dataset.outputs} columns")
    try:
        return NetSpec(depth=depth, widths=widths, input_dim=d, outputs=c,
                       activation=args.activation, arch=args.arch,
                       gains=None if args.gains is None else tuple(args.gains),
                       alpha=args.alpha)
    except SpecError as err:
        fail(str(err))
