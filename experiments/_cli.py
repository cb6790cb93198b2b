"""Shared command-line plumbing: one-line errors, exit status 2, no tracebacks."""

from __future__ import annotations

import argparse
import sys

from theory import DataError, SpecError
from theory._cli import Parser, float_list, int_list  # noqa: F401  (re-exported)

from ._errors import ExperimentError  # noqa: F401  (re-exported for the CLIs)


# One-line-error argparse and list parsers are theory's (shared by every CLI of the toolkit).
ArgumentParser = Parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def guarded(main):
    """Run ``main(argv)``; user errors become one ``error: ...`` line on stderr and exit 2,
    Ctrl-C exits 130 after saying that finished trials are kept."""

    def wrapper(argv=None):
        try:
            return main(argv)
        except (ExperimentError, DataError, SpecError) as err:
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 2
        except OSError as err:
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            print(f"error: {where}{_one_line(err.strerror or err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: every finished trial is saved; rerun the same command to "
                  "resume", file=sys.stderr)
            return 130

    wrapper.__doc__ = main.__doc__
    wrapper.__name__ = main.__name__
    return wrapper


def target_arg(text: str):
    """``0.9`` (value for the configured metric) or ``METRIC:VALUE``."""
    metric, _, value = text.rpartition(":")
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VALUE or METRIC:VALUE, got {text!r}")
    return (metric or None, v)
