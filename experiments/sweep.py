"""``python -m experiments.sweep``: train every (architecture × batch size) study of a workload.

Example::

    python -m experiments.sweep --config experiments/configs/quick.toml --out runs/quick
    python -m experiments.sweep --data my.npz --depths 2,4 --batch-sizes 16,64,256 --out runs/my
    python -m experiments.sweep --config experiments/configs/c2.toml --data my.npz \
        --seeds 2 --max-steps 5000 --out runs/c2-mine      # a reduced C2 study on your data

With a suite config (``[suite]``), ``--data``, ``--arch`` and ``--loss`` replace the suite's
lists, and every other flag wins over the suite's per-data overrides.

Without ``--config`` the quick-study defaults apply. Each finished trial is written atomically;
Ctrl-C or a kill loses nothing finished, and rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from theory import cli

from ._config import SweepConfig, load_config

DEFAULT_OUT = "runs/quick"
EXAMPLES = (
    "python -m experiments.sweep --config experiments/configs/quick.toml --out runs/quick",
    "python -m experiments.sweep --data my.npz --depths 2,4 --batch-sizes 16,64,256 --out "
    "runs/my",
    "python -m experiments.sweep --config experiments/configs/c2.toml --data my.npz --seeds 2 "
    "--max-steps 5000 --out runs/c2-mine",
)
#: The one line printed on Ctrl-C (exit status 130).
INTERRUPTED = "interrupted: finished trials are saved; rerun the same command to resume"


def target_arg(text: str):
    """``0.9`` (value for the configured metric) or ``METRIC:VALUE``."""
    metric, _, value = text.rpartition(":")
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VALUE or METRIC:VALUE, got {text!r}") \
            from None
    return (metric or None, v)


def add_override_flags(p) -> None:
    """The config overrides shared by ``sweep`` and ``reproduce``."""
    p.add_argument("--config", help="TOML config (default: the quick study)")
    p.add_argument("--data", help="mnist1d | gaussian | FILE.npz | MNIST IDX | CIFAR-10 batches")
    p.add_argument("--n", type=int, help="use the first N training examples (0 = all)")
    p.add_argument("--arch", choices=("fc", "residual"),
                   help="network family: fc (fully connected) or residual (blocks h + "
                        "alpha*W*relu(h)); default: the config's")
    p.add_argument("--loss", choices=("cross_entropy", "squared"),
                   help="training loss (squared: on centred one-hot targets for classes)")
    p.add_argument("--activation", choices=("linear", "relu"),
                   help="hidden-layer nonlinearity (default: the config's, relu in the "
                        "shipped configs)")
    p.add_argument("--depths", type=cli.int_list, help="e.g. 2,4,8 (weight matrices)")
    p.add_argument("--budget", type=int, help="parameter budget P of the family")
    p.add_argument("--batch-sizes", type=cli.int_list, help="e.g. 16,64,256")
    p.add_argument("--lrs", type=cli.float_list,
                   help="learning-rate grid at the reference batch size, e.g. 0.01,0.1,1")
    p.add_argument("--lr-scaling", choices=("none", "sqrt", "linear"),
                   help="how the grid moves with batch size (none: same lrs everywhere)")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    p.add_argument("--seed-start", type=int,
                   help="first seed (a repeat of a study under new seeds, e.g. 5)")
    p.add_argument("--max-steps", type=int, help="step cap per trial")
    p.add_argument("--target", type=target_arg,
                   help="target value for the metric, or METRIC:VALUE "
                        "(accuracy | loss | relative_loss)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0: off)")


def build_config(args) -> SweepConfig:
    cfg = load_config(args.config)
    changes = {}
    for flag, attr in (("data", "data"), ("n", "n"), ("arch", "arch"),
                       ("activation", "activation"), ("depths", "depths"), ("budget", "budget"),
                       ("batch_sizes", "batch_sizes"), ("lrs", "lrs"),
                       ("lr_scaling", "lr_scaling"), ("seeds", "seeds"),
                       ("seed_start", "seed_start"),
                       ("max_steps", "max_steps"), ("momentum", "momentum")):
        v = getattr(args, flag)
        if v is not None:
            changes[attr] = v
    if getattr(args, "loss", None) is not None:
        changes["loss"] = args.loss
    if args.target is not None:
        metric, value = args.target
        if metric is not None:
            changes["target_metric"] = metric
        changes["target"] = value
    if changes and cfg.is_suite:
        # a flag wins over the suite: --data/--arch/--loss replace the suite's lists, and
        # every other flag replaces the per-data overrides of the same setting
        for flag, lists in (("data", "suite_data"), ("arch", "suite_archs"),
                            ("loss", "suite_losses")):
            if flag in changes:
                changes[lists] = (changes[flag],)
        changes["suite_overrides"] = tuple(o for o in cfg.suite_overrides
                                           if o[1] not in changes)
        changes["suite_exclude"] = ()
    if changes:
        cfg = cfg.replace(**changes)  # validates, raising ExperimentError
    return cfg


def _parser():
    p = cli.Parser(prog="python -m experiments.sweep", description=__doc__.split("\n")[0],
                   examples=EXAMPLES)
    add_override_flags(p)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--workloads", type=lambda t: [w for w in t.split(",") if w],
                   help="a suite's workloads to run (names as in suite.json; default: all)")
    p.add_argument("--jobs", type=int, default=1,
                   help="run this many workloads of a suite at once, one process each")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@cli.command(interrupted=INTERRUPTED)
def main(argv=None) -> int:
    """Parse flags, run or resume the sweep; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    cfg = build_config(args)
    command = "python -m experiments.sweep " + " ".join(shlex.quote(a) for a in argv)
    from ._run import run_sweep  # jax: only once the arguments are good

    run_sweep(cfg, args.out, progress=not args.no_progress, command=command,
              workloads=args.workloads, jobs=args.jobs)
    return 0


__all__ = ["main", "build_config", "add_override_flags"]

if __name__ == "__main__":
    cli.run(main, hard_exit_on_interrupt=True)
