"""``python -m experiments.report DIR``: report.md, analysis.csv and figures of a sweep.

Example::

    python -m experiments.report runs/quick
    python -m experiments.report runs/c2 --repeat runs/c2-repeat     # with the calibration
    python -m experiments.report runs/axes --reference runs/c2/mnist1d-cross_entropy-fc
"""

from __future__ import annotations

import shlex
import sys

from theory import cli

from ._errors import ExperimentError


def _parser():
    p = cli.Parser(prog="python -m experiments.report", description=__doc__.split("\n")[0],
                   examples=["python -m experiments.report runs/quick",
                             "python -m experiments.report runs/c2 --repeat runs/c2-repeat",
                             "python -m experiments.report runs/axes --reference "
                             "runs/c2/mnist1d-cross_entropy-fc"])
    p.add_argument("dir", help="sweep output folder (as given to experiments.sweep --out)")
    p.add_argument("--bootstrap", type=int,
                   help="bootstrap resamples of the predictors' Spearman intervals "
                        "(default: the config's)")
    p.add_argument("--repeat", help="a repeat of (some of) the same workloads under other "
                                    "seeds: calibrates the intervals")
    p.add_argument("--reference", action="append", default=[],
                   help="another workload folder to analyse with this suite (repeatable)")
    return p


@cli.command
def main(argv=None) -> int:
    """Analyse a sweep folder and write its report; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 0:
        raise ExperimentError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    command = "python -m experiments.report " + " ".join(shlex.quote(a) for a in argv)
    import os

    for d in [args.repeat] + args.reference:
        if d is not None and not os.path.isdir(d):
            raise ExperimentError(f"{d}: no such folder")
    from ._report import write_report  # jax, matplotlib: only once the arguments are good

    res = write_report(args.dir, n_boot=args.bootstrap, command=command, repeat=args.repeat,
                       reference=args.reference)
    print(f"report: {res['report']}")
    print(f"verdict on C2: {res['verdict']['C2']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
