"""``python -m experiments.report DIR``: report.md, analysis.csv and figures of a sweep.

Example::

    python -m experiments.report runs/quick
"""

from __future__ import annotations

import shlex
import sys

from . import _cli
from ._report import write_report


def _parser():
    p = _cli.ArgumentParser(prog="python -m experiments.report",
                            description=__doc__.split("\n")[0])
    p.add_argument("dir", help="sweep output folder (as given to experiments.sweep --out)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: the config's)")
    return p


@_cli.guarded
def main(argv=None) -> int:
    """Analyse a sweep folder and write its report; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 0:
        raise _cli.ExperimentError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    command = "python -m experiments.report " + " ".join(shlex.quote(a) for a in argv)
    res = write_report(args.dir, n_boot=args.bootstrap, command=command)
    print(f"report: {res['report']}")
    print(f"verdict on C2: {res['verdict']['C2']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
