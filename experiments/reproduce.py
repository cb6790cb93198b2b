"""``python -m experiments.reproduce``: the quick study end to end (sweep + report).

Example::

    python -m experiments.reproduce                      # mnist1d, output in runs/quick
    python -m experiments.reproduce --data my.npz --out runs/mine

Rerunning the same command resumes an interrupted sweep and rewrites the report.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from theory import cli

from ._config import load_config
from .sweep import INTERRUPTED

QUICK_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "quick.toml")
DEFAULT_OUT = "runs/quick"


def _parser():
    p = cli.Parser(prog="python -m experiments.reproduce", description=__doc__.split("\n")[0],
                   examples=["python -m experiments.reproduce",
                             "python -m experiments.reproduce --data my.npz --out runs/mine"])
    p.add_argument("--data", help="mnist1d (default) | gaussian | FILE.npz | MNIST IDX | "
                                  "CIFAR-10 batches")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--config", default=QUICK_CONFIG,
                   help="TOML config (default: experiments/configs/quick.toml)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@cli.command(interrupted=INTERRUPTED)
def main(argv=None) -> int:
    """Run the quick study (sweep, then report); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    cfg = load_config(args.config)
    if args.data is not None:
        cfg = cfg.replace(data=args.data)
    from ._report import write_report  # jax, matplotlib: only once the arguments are good
    from ._run import run_sweep

    t0 = time.perf_counter()
    command = "python -m experiments.reproduce " + " ".join(shlex.quote(a) for a in argv)
    run_sweep(cfg, args.out, progress=not args.no_progress, command=command)
    res = write_report(args.out, command=f"python -m experiments.report {shlex.quote(args.out)}")
    elapsed = time.perf_counter() - t0
    print(f"report: {res['report']}")
    print(f"verdict on C2: {res['verdict']['C2']}")
    print(f"quick study finished in {elapsed:.0f} s (sweep + report, this process)")
    return 0


if __name__ == "__main__":
    cli.run(main, hard_exit_on_interrupt=True)
