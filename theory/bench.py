"""``python -m theory.bench``: speed of the bounds CLI, measured in one run (fresh interpreters).

Start-up (default): times (median of ``--repeat`` runs) of ``python -c "import sympy"`` (the
reference), ``python -m theory.bounds --depth 8 --width 256`` and the same at depth 2 and 10000.
Targets: CLI / import-sympy < 1.5; depth 10000 / depth 2 close to 1 (the closed form is O(1) in
depth).

Scale (``--scale``): wall time and peak memory (max RSS of the child process) of the CLI on full
data sets. Targets: linear net on n = 60,000 Gaussian inputs of dimension d = 784 (the size of
MNIST) in ≤ 10 s; two-layer ReLU on n = 20,000 MNIST-1D examples (d = 40, labels) in ≤ 120 s
with ≤ 2 GiB peak memory (ReLU pair sums in blocks of rows). ``--no-same-budget``: only the asked
net is evaluated.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from . import cli

SCALE_CASES = (
    # name, CLI arguments, target seconds, target peak bytes (None: no memory target)
    ("linear_n60000_d784", ["--n", "60000", "--input-dim", "784", "--depth", "8", "--width",
                            "256"], 10.0, None),
    ("relu2_n20000_mnist1d", ["--data", "mnist1d", "--n", "20000", "--depth", "2", "--width",
                              "256", "--activation", "relu"], 120.0, 2 * 1024**3),
)


def _time(cmd: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def _run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of the child, stdout) of one run."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        cli.fail(f"{' '.join(cmd)} exited with {proc.returncode}")
    return wall, usage.ru_maxrss * 1024, out.decode()


def startup(repeat: int) -> dict:
    py = sys.executable
    cli = [py, "-m", "theory.bounds", "--width", "256"]
    res = {
        "import_sympy_s": _time([py, "-c", "import sympy"], repeat),
        "cli_depth8_s": _time(cli + ["--depth", "8"], repeat),
        "cli_depth2_s": _time(cli + ["--depth", "2"], repeat),
        "cli_depth10000_s": _time(cli + ["--depth", "10000"], repeat),
    }
    res["ratio_cli_vs_import_sympy"] = res["cli_depth8_s"] / res["import_sympy_s"]
    res["ratio_depth10000_vs_depth2"] = res["cli_depth10000_s"] / res["cli_depth2_s"]
    return res


def scale() -> dict:
    res = {}
    for name, args, t_max, mem_max in SCALE_CASES:
        cmd = [sys.executable, "-m", "theory.bounds", *args, "--no-same-budget", "--json"]
        wall, peak, out = _run_measured(cmd)
        d = json.loads(out)
        res[name] = {"command": " ".join(["python", "-m", "theory.bounds", *args,
                                          "--no-same-budget"]),
                     "seconds": wall, "target_seconds": t_max, "peak_bytes": peak,
                     "target_peak_bytes": mem_max, "batch_size_bound": d["batch_size_bound"],
                     "kind": d["kind"]["batch_size_bound"],
                     "ok": wall <= t_max and (mem_max is None or peak <= mem_max)}
    return res


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m theory.bench",
                   description="Speed of python -m theory.bounds: start-up (default) or full "
                               "data sets (--scale), each run in a fresh interpreter.",
                   examples=["python -m theory.bench", "python -m theory.bench --repeat 11 "
                             "--json", "python -m theory.bench --scale"])
    p.add_argument("--repeat", type=cli.positive_int, default=5,
                   help="start-up: fresh-interpreter runs per command; the median is reported "
                        "(default 5)")
    p.add_argument("--scale", action="store_true",
                   help="full-data-set benchmarks (about 1-2 minutes) instead of start-up")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (start-up: seconds and ratios; --scale: per "
                        "case seconds, peak bytes, targets, ok) instead of the table")
    return p


@cli.command
def main(argv=None) -> int:
    """Run the benchmarks and print them; returns 0."""
    a = build_parser().parse_args(argv)
    res = scale() if a.scale else startup(a.repeat)
    if a.json:
        print(json.dumps(res))
    elif a.scale:
        for name, r in res.items():
            mem = "" if r["target_peak_bytes"] is None else \
                f" (target <= {r['target_peak_bytes'] / 2**30:.0f} GiB)"
            print(f"{name}: {r['seconds']:.1f} s (target <= {r['target_seconds']:.0f} s), peak "
                  f"memory {r['peak_bytes'] / 2**20:.0f} MiB{mem}, B_S-bar "
                  f"{r['batch_size_bound']:.6g} ({r['kind']}): {'ok' if r['ok'] else 'MISSED'}")
            print(f"  {r['command']}")
    else:
        for k, v in res.items():
            print(f"{k:30s} {v:8.3f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    cli.run(main)
