"""Command-line options shared by ``theory.bounds``, ``numerics.check`` and experiments/.

``--depth 8`` means the same thing everywhere: eight weight matrices (see :class:`NetSpec`).
Errors are one line on stderr (``error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ._spec import ACTIVATIONS, ARCHS, NetSpec, SpecError, check_depth
from .data import DataError, Dataset, resolve

DEFAULT_N = 128
DEFAULT_INPUT_DIM = 32


def fail(message: str, code: int = 2):
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr)
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        fail(f"{message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
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
    g = parser.add_argument_group("network (SPEC §3; depth = number of weight matrices)")
    g.add_argument("--depth", type=_positive_int, default=None,
                   help=f"number of weight matrices L (default {depth_default}, or "
                        "len(--widths)+1)")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--width", type=_positive_int, default=None,
                   help=f"width K of every hidden layer (default {width_default})")
    w.add_argument("--widths", type=int_list, default=None,
                   help="hidden widths n_1,...,n_(L-1), e.g. 64,32,16")
    g.add_argument("--activation", default="linear", choices=ACTIVATIONS,
                   help="linear or relu (default linear)")
    g.add_argument("--arch", default="fc", choices=ARCHS, help="fc or residual (default fc)")
    g.add_argument("--outputs", type=_positive_int, default=None,
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
    g.add_argument("--n", type=_positive_int, default=None,
                   help=f"number of examples (gaussian default {DEFAULT_N}; mnist1d 512; "
                        "for a file: use the first n)")
    g.add_argument("--input-dim", type=_positive_int, default=None,
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
