"""``python -m theory.bench``: start-up cost of the bounds CLI, as ratios measured in one run.

Times (median of ``--repeat`` runs, fresh interpreter each) of
``python -c "import sympy"`` (the reference), ``python -m theory.bounds --depth 8 --width 256``
and the same at depth 2 and 10000. Targets: CLI / import-sympy < 1.5; depth 10000 / depth 2
close to 1 (the closed form is O(1) in depth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m theory.bench")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    py = sys.executable
    cli = [py, "-m", "theory.bounds", "--width", "256"]
    res = {
        "import_sympy_s": _time([py, "-c", "import sympy"], a.repeat),
        "cli_depth8_s": _time(cli + ["--depth", "8"], a.repeat),
        "cli_depth2_s": _time(cli + ["--depth", "2"], a.repeat),
        "cli_depth10000_s": _time(cli + ["--depth", "10000"], a.repeat),
    }
    res["ratio_cli_vs_import_sympy"] = res["cli_depth8_s"] / res["import_sympy_s"]
    res["ratio_depth10000_vs_depth2"] = res["cli_depth10000_s"] / res["cli_depth2_s"]
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:30s} {v:8.3f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
