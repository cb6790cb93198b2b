"""``python -m experiments.branch``: the critical batch along training, measured by branching
short runs from checkpoints of one reference run and predicted by the noise scale there.

Example::

    python -m experiments.branch --config experiments/configs/branch.toml --out runs/branch
    python -m experiments.branch --config experiments/configs/branch.toml --data my.npz \\
        --seeds 2 --max-steps 3000 --out runs/branch-mine

Writes ``OUT/branch.json`` (one row per net × optimizer × checkpoint), ``OUT/report.md`` and
the figure ``OUT/branch_critical_batch.png`` / ``.pdf``. Every study is written atomically
as it finishes; Ctrl-C loses nothing finished, and rerunning the same command resumes.
"""

from __future__ import annotations

import shlex
import sys

from theory import cli

DEFAULT_CONFIG = "experiments/configs/branch.toml"
EXAMPLES = (
    "python -m experiments.branch --config experiments/configs/branch.toml --out runs/branch",
    "python -m experiments.branch --config experiments/configs/branch.toml --data my.npz "
    "--seeds 2 --max-steps 3000 --out runs/branch-mine",
    "python -m experiments.branch --report-only --out runs/branch",
)
INTERRUPTED = "interrupted: finished studies are saved; rerun the same command to resume"


def _parser():
    p = cli.Parser(prog="python -m experiments.branch", description=__doc__.split("\n")[0],
                   examples=EXAMPLES)
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"TOML config with a [branch] table (default {DEFAULT_CONFIG})")
    p.add_argument("--out", default="runs/branch", help="output folder (default runs/branch)")
    p.add_argument("--data", help="mnist1d | digits | gaussian | FILE.npz | MNIST IDX | CIFAR-10")
    p.add_argument("--n", type=int, help="use the first N training examples (0 = all)")
    p.add_argument("--seeds", type=int, help="branch seeds (batch order, lr-grid shift)")
    p.add_argument("--max-steps", type=int, help="step cap of each branch trial")
    p.add_argument("--report-only", action="store_true",
                   help="analyse OUT as it is, with the config stored there (no training)")
    p.add_argument("--repeat", help="a repeat of the same study with another "
                                    "branch.reference_seed: how far reference runs move it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@cli.command(interrupted=INTERRUPTED)
def main(argv=None) -> int:
    """Parse flags, run or resume the branched study, write its report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    from ._branch import load_branch_config
    from ._errors import ExperimentError

    import os

    if args.repeat and not os.path.exists(os.path.join(args.repeat, "branch_config.toml")):
        raise ExperimentError(f"{args.repeat}: not a branched study folder "
                              f"(no branch_config.toml)")
    cfg = load_branch_config(args.config)
    changes = {k: v for k, v in (("data", args.data), ("n", args.n), ("seeds", args.seeds),
                                 ("max_steps", args.max_steps)) if v is not None}
    for k in ("n", "seeds", "max_steps"):
        if k in changes and (changes[k] < (0 if k == "n" else 1)):
            raise ExperimentError(f"--{k.replace('_', '-')} must be "
                                  f"{'>= 0' if k == 'n' else '>= 1'}, got {changes[k]}")
    if changes:
        import dataclasses

        cfg = dataclasses.replace(cfg, sweep=cfg.sweep.replace(**changes))
        if cfg.sweep.seeds < 2:
            raise ExperimentError("--seeds must be >= 2 (the intervals are a jackknife over "
                                  "seeds)")
    command = "python -m experiments.branch " + " ".join(shlex.quote(a) for a in argv)
    from ._branch import run_branches
    from ._branch_report import write_branch_report

    if not args.report_only:
        run_branches(cfg, args.out, command=command, progress=not args.no_progress)
    res = write_branch_report(args.out, repeat=args.repeat)
    print(f"report: {res['report']}")
    for line in res["summary"]:
        print(line)
    return 0


__all__ = ["main"]

if __name__ == "__main__":
    cli.run(main, hard_exit_on_interrupt=True)
