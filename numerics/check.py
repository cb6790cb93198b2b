"""``python -m numerics.check``: Monte Carlo vs theory, side by side.

Takes every network and data option of ``python -m theory.bounds`` with the same meaning
(:mod:`theory.cli`; ``--seed`` is the DATA seed there and here), plus the Monte Carlo options
``--samples``, ``--mc-seed`` (networks are ``init_params(fold_in(key(mc_seed), i))``),
``--chunk``, ``--bootstrap``, ``--x64``. Prints E[S1], E[S2], B̄_S = n·E[S1]/E[S2] (ratio of
expectations; Monte Carlo: ratio of means with a delta-method SE), E[B_S] (mean of the ratio,
Monte Carlo only), each with the theory's value, its kind (exact / numerical / limit) and
the z-score (MC − theory)/SE. ``--json`` prints one object: ``mc_*`` keys, the keys of
``theory.bounds --json`` and ``z_*``.

Grid mode (``--grid-widths`` × ``--grid-depths``, or ``--budget P`` × ``--grid-depths``) writes
``grid.csv``, ``grid.png`` and ``grid.pdf`` into ``--out``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import replace

from theory import cli
from theory.cli import (Parser, add_data_args, add_network_args, dataset_from_args, fail,
                        int_list, spec_from_args)

EXAMPLES = (
    "python -m numerics.check --depth 8 --width 64 --samples 2000",
    "python -m numerics.check --depth 4 --width 32 --activation relu --data mnist1d --rel-se "
    "0.01 --json",
    "python -m numerics.check --grid-widths 16,64,256 --grid-depths 2,4,8 --out runs/grid",
    "python -m numerics.check --budget 20000 --grid-depths 2,3,4,6,8 --out runs/budget",
)

CSV_COLUMNS = (
    "depth", "width", "params", "n", "activation", "arch", "samples", "dtype",
    "mc_S1", "mc_S1_se", "mc_S2", "mc_S2_se", "mc_batch_size_bound", "mc_batch_size_bound_se",
    "mc_mean_B_S", "mc_mean_B_S_se", "theory_S1", "theory_S2", "theory_batch_size_bound",
    "theory_kind", "z_S1", "z_S2", "z_batch_size_bound", "mc_stop_reason",
)


def build_parser() -> Parser:
    p = Parser(prog="python -m numerics.check",
               description="Monte Carlo over random initialisations vs theory (definitions: "
                           "README, \"Definitions and conventions\").",
               examples=EXAMPLES)
    add_network_args(p)
    add_data_args(p)
    g = p.add_argument_group("Monte Carlo")
    g.add_argument("--samples", type=int, default=None,
                   help="random networks (default 512); with --rel-se the cap (default 10^6)")
    g.add_argument("--rel-se", type=float, default=None,
                   help="draw networks in compiled blocks until the relative SEs of E[S1] and "
                        "E[S2] are below this (e.g. 0.01), or --samples / --max-seconds stop it")
    g.add_argument("--max-seconds", type=float, default=None,
                   help="wall-clock cap of the Monte Carlo per network (seconds)")
    g.add_argument("--mc-seed", type=cli.seed_int, default=0,
                   help="seed of the network keys (default 0); --seed is the data seed")
    g.add_argument("--chunk", type=int, default=None,
                   help="networks vmapped together per device (default: by memory)")
    g.add_argument("--bootstrap", type=int, default=0,
                   help="percentile-bootstrap resamples for 95%% intervals (default 0: none)")
    g.add_argument("--x64", action="store_true", help="float64 (default float32)")
    g.add_argument("--delta", type=float, default=1.0,
                   help="delta of the predicted maximum batch delta*B_S + 1 (default 1)")
    g = p.add_argument_group("grid mode (writes CSV + PNG + PDF into --out)")
    g.add_argument("--grid-widths", type=int_list, default=None, help="e.g. 16,64,256")
    g.add_argument("--grid-depths", type=int_list, default=None, help="e.g. 2,4,8")
    g.add_argument("--budget", type=int, default=None,
                   help="parameter budget P: for each --grid-depths the width closest to P")
    g.add_argument("--out", default=None, help="output folder of the grid mode")
    p.add_argument("--json", action="store_true", help="print JSON (one object; grid: a list)")
    return p


def _fmt(v, digits=6):
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def _print_human(r: dict, out=None):
    w = (out or sys.stdout).write
    w("numerics.check: Monte Carlo over random initialisations vs theory\n")
    w(f"conventions: {r['conventions']}; expectations over random init, data fixed\n")
    w(f"data: {r['data']}\n")
    w(f"parameters: P = {r['params']}; Monte Carlo: {r['mc_samples']} networks, {r['dtype']}, "
      f"{r['devices']} {r['backend']} device(s), {r['mc_seconds']:.2f} s\n")
    stop = {"samples": "the requested count",
            "rel_se": f"relative SEs of E[S1], E[S2] below the target {r['mc_target_rel_se']}",
            "max_samples": f"the --samples cap, before the target {r['mc_target_rel_se']}",
            "max_seconds": "the --max-seconds cap" + (
                f", before the target {r['mc_target_rel_se']}" if r["mc_target_rel_se"]
                else "")}[r["mc_stop_reason"]]
    w(f"stopped by: {stop} (relative SE: E[S1] {r['mc_S1_rel_se']:.3g}, "
      f"E[S2] {r['mc_S2_rel_se']:.3g})\n\n")
    kind = r.get("kind", {})
    rows = [
        ("E[S1]", "mc_S1", "expected_S1", "expected_S1", "z_S1"),
        ("E[S2]", "mc_S2", "expected_S2", "expected_S2", "z_S2"),
        ("B_S-bar = n E[S1]/E[S2] (ratio of means)", "mc_batch_size_bound", "batch_size_bound",
         "batch_size_bound", "z_batch_size_bound"),
        ("E[B_S] (mean of the ratio, MC only)", "mc_mean_B_S", None, None, None),
    ]
    name_w = max(len(row[0]) for row in rows)
    w(f"{'quantity'.ljust(name_w)}  {'Monte Carlo':>14} {'± SE':>11}  {'theory':>14}  "
      f"{'kind':<13} {'z':>6}\n")
    for name, mk, tk, kk, zk in rows:
        t = r.get(tk) if tk else None
        z = r.get(zk) if zk else None
        w(f"{name.ljust(name_w)}  {_fmt(r[mk]):>14} {_fmt(r[mk + '_se'], 3):>11}  "
          f"{_fmt(t):>14}  {kind.get(kk, '-') if kk else '-':<13} "
          f"{'-' if z is None else f'{z:+.2f}':>6}\n")
    q = r["mc_B_S_quantiles"]
    w("B_S quantiles over networks: " + ", ".join(f"{k}: {_fmt(v, 4)}" for k, v in q.items())
      + "\n")
    if "mc_bootstrap" in r:
        b = r["mc_bootstrap"]
        w(f"bootstrap 95% intervals ({b['resamples']} resamples): B_S-bar "
          f"[{_fmt(b['batch_size_bound_ci'][0], 4)}, {_fmt(b['batch_size_bound_ci'][1], 4)}], "
          f"E[B_S] [{_fmt(b['mean_B_S_ci'][0], 4)}, {_fmt(b['mean_B_S_ci'][1], 4)}]\n")
    if "theory_error" in r:
        w(f"theory: not available for this net ({r['theory_error']})\n")
    for note in r.get("notes", []):
        w(f"note: {note}\n")


def _csv_row(r: dict, spec) -> dict:
    kind = r.get("kind", {}).get("batch_size_bound") if "kind" in r else None
    row = {"depth": spec.depth, "width": spec.width if spec.width is not None else "",
           "params": spec.params, "n": r["n"], "activation": spec.activation,
           "arch": spec.arch, "samples": r["mc_samples"], "dtype": r["dtype"],
           "theory_S1": r.get("expected_S1"), "theory_S2": r.get("expected_S2"),
           "theory_batch_size_bound": r.get("batch_size_bound"), "theory_kind": kind}
    for k in CSV_COLUMNS:
        if k.startswith(("mc_", "z_")):
            row[k] = r.get(k)
    return row


def _grid_specs(args, base):
    depths = args.grid_depths or (base.depth,)
    if args.budget is not None:
        if args.grid_widths is not None:
            fail("--budget picks the width for each depth: drop --grid-widths")
        from theory import width_for_budget
        cells = []
        for L in depths:
            K = width_for_budget(args.budget, base.input_dim, base.outputs, L)
            cells.append((L, () if K is None else (K,) * (L - 1)))
    else:
        widths = args.grid_widths or ((base.width or base.widths[0],) if base.widths else (1,))
        cells = [(L, (K,) * (L - 1)) for L in depths for K in widths]
    specs = []
    for L, ws in cells:
        try:
            specs.append(replace(base, depth=L, widths=ws,
                                 gains=None if len(base.gains or ()) != L else base.gains))
        except ValueError as err:
            fail(f"grid cell depth {L}, widths {ws}: {err}")
    return specs


def _run(args, spec, ds, key, progress):
    from ._compare import compare
    return compare(spec, ds.x, ds.y, key=key, samples=args.samples, rel_se=args.rel_se,
                   max_seconds=args.max_seconds, chunk=args.chunk,
                   delta=args.delta, bootstrap=args.bootstrap, progress=progress,
                   data_description=ds.description)


def _check_out(out: str) -> None:
    """Refuse, before any Monte Carlo, an --out that is a file or cannot be written."""
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out {out}: exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        fail(f"--out {out}: cannot create the folder ({err.strerror or err})")
    if not os.access(out, os.W_OK | os.X_OK):
        fail(f"--out {out}: the folder is not writable")


@cli.command(out_of_memory="try a smaller --n, --width, --depth or --chunk")
def main(argv=None) -> int:
    """Parse the options, run the Monte Carlo and theory, print them; returns 0."""
    args = build_parser().parse_args(argv)
    from ._mc import MAX_SAMPLES
    for name in ("rel_se", "max_seconds"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            fail(f"--{name.replace('_', '-')} must be a positive number, got {v}")
    if args.samples is None:
        args.samples = 512 if args.rel_se is None else MAX_SAMPLES
    if args.samples < 2:
        fail(f"--samples must be at least 2 (standard errors), got {args.samples}")
    if args.chunk is not None and args.chunk < 1:
        fail(f"--chunk must be positive, got {args.chunk}")
    if args.bootstrap < 0:
        fail(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not math.isfinite(args.delta) or args.delta <= 0:
        fail(f"--delta must be a positive number, got {args.delta}")
    grid = args.grid_widths is not None or args.grid_depths is not None or args.budget
    if grid and not args.out:
        fail("grid mode needs --out DIR (for grid.csv, grid.png, grid.pdf)")
    if args.budget is not None and args.budget <= 0:
        fail(f"--budget must be a positive parameter count, got {args.budget}")
    if grid:
        _check_out(args.out)
    ds = dataset_from_args(args)
    spec = spec_from_args(args, ds)

    import jax

    from ._precision import x64

    with x64(args.x64):
        key = jax.random.key(args.mc_seed)
        try:
            if not grid:
                r = _run(args, spec, ds, key, progress=not args.json)
                if args.json:
                    json.dump(r, sys.stdout, indent=1, default=float)
                    sys.stdout.write("\n")
                else:
                    _print_human(r)
                return 0
            specs = _grid_specs(args, spec)
            rows, results = [], []
            cells = specs
            if not args.json:
                from tqdm.auto import tqdm
                cells = tqdm(specs, desc="grid cells", unit="net")
            for i, s in enumerate(cells):
                r = _run(args, s, ds, jax.random.fold_in(key, i), progress=False)
                results.append(r)
                rows.append(_csv_row(r, s))
        except ValueError as err:
            fail(str(err))
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "grid.csv")
    with open(csv_path + ".tmp", "w", newline="") as f:  # atomic: write, then rename
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
    os.replace(csv_path + ".tmp", csv_path)
    from ._plot import save_figure
    budget = args.budget is not None
    one_width = len({row["width"] for row in rows}) == 1
    # x axis: depth for a budget grid or a single width; else width, one series per depth
    x_axis = "depth" if (budget or one_width) else "width"
    group = None if budget else ("width" if one_width else "depth")
    figs = save_figure(rows, os.path.join(args.out, "grid"), x=x_axis, group=group,
                       title=f"{spec.arch} {spec.activation}, n={ds.n}, {ds.name}"
                             + (f", P≈{args.budget}" if budget else ""))
    if args.json:
        json.dump(results, sys.stdout, indent=1, default=float)
        sys.stdout.write("\n")
    else:
        for row in rows:
            t = row["theory_batch_size_bound"]
            print(f"L={row['depth']:>3} K={row['width']!s:>6} P={row['params']:>9}  "
                  f"MC B_S-bar={_fmt(row['mc_batch_size_bound'], 5)} "
                  f"± {_fmt(row['mc_batch_size_bound_se'], 2)}  theory={_fmt(t, 5)} "
                  f"({row['theory_kind'] or '-'})")
        print(f"wrote {csv_path}, {figs[0]}, {figs[1]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    cli.run(main)
