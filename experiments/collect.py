"""``python -m experiments.collect RUN DEST``: copy a finished sweep (or suite) into a results
folder for committing — reports, analysis, figures, the study records, B_S at initialisation,
theory's predictions — and every trial record with its training curve as
``<workload>/trials-curves.jsonl.gz``, from which ``python -m experiments.report DEST``
recomputes everything (any other target included) without the run folder.

Example::

    python -m experiments.collect runs/c2 experiments/results/c2
"""

from __future__ import annotations

import os
import shutil
import sys

from theory import cli

from ._errors import ExperimentError

_FILES = ("report.md", "analysis.csv", "analysis.json", "suite.json", "workload.json",
          "config.toml", "timing.json")
_DIRS = ("figures", "archs", "theory")


def collect(src: str, dst: str) -> list[str]:
    """Copy one run folder (suite or workload) to ``dst``; returns the workloads copied."""
    from ._records import CURVES_FILE, write_curves

    if not os.path.isdir(src):
        raise ExperimentError(f"{src}: no such folder")
    folders = [src] + [os.path.join(src, d) for d in sorted(os.listdir(src))
                       if os.path.exists(os.path.join(src, d, "workload.json"))]
    done = []
    for folder in folders:
        rel = os.path.relpath(folder, src)
        out = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(out, exist_ok=True)
        for f in _FILES:
            if os.path.exists(os.path.join(folder, f)):
                shutil.copy2(os.path.join(folder, f), out)
        for d in _DIRS:
            if os.path.isdir(os.path.join(folder, d)):
                shutil.copytree(os.path.join(folder, d), os.path.join(out, d),
                                dirs_exist_ok=True)
        if os.path.exists(os.path.join(folder, "workload.json")):
            for d, _, fs in os.walk(os.path.join(folder, "trials")):
                if "study.json" in fs:
                    target = os.path.join(out, os.path.relpath(d, folder))
                    os.makedirs(target, exist_ok=True)
                    shutil.copy2(os.path.join(d, "study.json"), target)
            write_curves(folder, os.path.join(out, CURVES_FILE))
            done.append(rel)
    return done


def _parser():
    p = cli.Parser(prog="python -m experiments.collect", description=__doc__.split("\n")[0],
                   examples=["python -m experiments.collect runs/c2 experiments/results/c2"])
    p.add_argument("src", help="run folder (as given to experiments.sweep --out)")
    p.add_argument("dst", help="results folder to write")
    return p


@cli.command
def main(argv=None) -> int:
    """Copy a run folder into a results folder; returns the exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    done = collect(args.src, args.dst)
    print(f"collected {len(done)} workload(s) from {args.src} into {args.dst}")
    return 0


if __name__ == "__main__":
    cli.run(main)
