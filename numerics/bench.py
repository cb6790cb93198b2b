"""``python -m numerics.bench [--json]``: cost of S1+S2, as ratios measured in one run.

Three suites (``--suite spec|generic|monitor|all``, default all).

``monitor`` — the training-loop monitor's cost (:mod:`numerics._bench_monitor`): one jitted
step with :func:`numerics.value_grad_and_diversity` + :func:`numerics.noise_scale_ema` in an
optax chain (SGD and Adam; per-layer; for Adam also the Adam-preconditioned statistics with
:func:`numerics.adam_metric`) over one plain optax step (``jax.value_and_grad`` of the mean
loss + update), timed interleaved, on the generic suite's MLP (every ``--widths`` ×
``--depths``) and transformer block (``--models`` picks them), n = ``--n`` (default 512).

``generic`` — :func:`numerics.gradient_diversity` on models given as a per-example loss
(:mod:`numerics._bench_models`: the ReLU MLP with biases at d = 64 for every ``--widths`` ×
``--depths``, a small CNN, a transformer block, and the models of issue 16: a block with token
and position embeddings, causal attention and a GELU MLP, CNNs with a grouped / depthwise /
stride-2 / dilated conv, an RNN in ``lax.scan``, tied embedding / output weights, an MLP with
weight decay in the loss; n = ``--n``, default 512 and 64, float32; ``--quick``: every model
once at n = 8, one repetition, for tests):

* ``ghost_s``: the ghost path (per-leaf S1, S2 and the summed gradient, one backward pass);
* ``backward_s``: the plain batched backward ``jit(grad)`` of the summed loss;
* ``call_s``: the public :func:`numerics.gradient_diversity` call, ``call_overhead_s`` its
  excess over ``ghost_s`` (the fixed per-call cost: input checks, plan lookup, transfer);
* ``vmap_s``: the reference chunked ``vmap(grad)`` (``method="vmap"``), timed ``--vmap-reps``
  times;
* memory: XLA's static analysis of each executable (``*_xla_mb``; arguments + outputs +
  temporaries) and the device's peak where it has one; ``S1_rel_diff``: agreement of the ghost
  and vmap S1 in float32.

The three are timed interleaved (one of each per repetition), so load on a shared host hits
them alike; the table gives the ratio of medians and of minima (the least-disturbed run).

``spec`` — for each configuration (n examples, hidden width K, depth L; input dim d, c = 1,
float32):

* ``ours_s``: :func:`numerics.per_example_stats` (per-layer trick: S1, S2 per layer, summed
  gradient), jitted;
* ``floor_s``: a plain batched forward+backward of the same net (``jit(grad)`` of the summed
  loss) — the least any method can cost;
* ``naive_s``: ``jit(vmap(grad))`` materialising the n × P per-example gradients, then S1, S2
  (null when n·P·4 bytes exceeds ``--naive-max-gb``);
* ``mc_per_net_s``: one compiled Monte Carlo block of many networks, per network.

Times are medians of ``--reps`` runs after a compile/warm-up run, all measured in one process,
so the printed ratios compare like with like. Memory: ``*_peak_mb`` from the device's memory
statistics (``peak_bytes_in_use``, GPU) or null where the backend has none (CPU);
``*_xla_mb`` is XLA's static memory analysis of the compiled executable (arguments + outputs +
temporaries), available on every backend.
"""

from __future__ import annotations

import json
import sys

from theory import cli

#: The generic suite's models (``numerics._bench_models.MODELS``; listed here so that
#: ``--help`` and a bad ``--models`` answer without importing jax).
MODEL_NAMES = ("mlp", "cnn", "transformer", "block", "gcnn", "dwcnn", "scnn", "dcnn", "rnn",
               "tied", "mlp_wd")
DEFAULT_MODELS = MODEL_NAMES
EXAMPLES = (
    "python -m numerics.bench --suite generic --reps 9 --vmap-reps 1",
    "python -m numerics.bench --suite spec --n 512 --widths 256,1024 --depths 2,8 --json",
    "python -m numerics.bench --quick",
    "python -m numerics.bench --suite monitor --reps 15 --models mlp,transformer",
)


@cli.command(out_of_memory="try a smaller --n, --widths or --naive-max-gb")
def main(argv=None) -> int:
    """Parse the options, run the suites, print the table (or JSON lines); returns 0."""
    p = cli.Parser(prog="python -m numerics.bench", description=__doc__.split("\n")[0],
                   examples=EXAMPLES)
    p.add_argument("--n", type=cli.int_list, default=None,
                   help="examples (default 512; generic suite: 512,64)")
    p.add_argument("--widths", type=cli.int_list, default=(256, 1024), help="default 256,1024")
    p.add_argument("--depths", type=cli.int_list, default=(2, 8), help="default 2,8")
    p.add_argument("--input-dim", type=int, default=128, help="default 128")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median; default 5)")
    p.add_argument("--naive-max-gb", type=float, default=4.0,
                   help="skip naive when its per-example gradients exceed this (default 4)")
    p.add_argument("--suite", choices=("spec", "generic", "monitor", "all"), default="all",
                   help="spec networks, generic models (any JAX loss), the training-loop "
                        "monitor's cost, or all three (default)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"generic suite models (default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--quick", action="store_true",
                   help="generic suite, every model once at n = 8, widths 16, depth 2, one "
                        "repetition (a smoke run for tests)")
    p.add_argument("--mlp-input-dim", type=int, default=64,
                   help="input dim of the generic MLP (default 64)")
    p.add_argument("--vmap-reps", type=int, default=2,
                   help="timed runs of the slow vmap(grad) reference (default 2)")
    p.add_argument("--vmap-max-n", type=int, default=None,
                   help="generic suite: skip the vmap(grad) reference above this n (its cost "
                        "and the S1 agreement print '-'; a smaller n of the same model checks "
                        "the agreement). Default: always run it")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    args = p.parse_args(argv)
    if args.quick:
        args.suite, args.reps, args.vmap_reps = "generic", 1, 1
        args.n, args.widths, args.depths = args.n or (8,), (16,), (2,)
    generic_n = args.n or (512, 64)
    args.n = args.n or (512,)
    if args.reps < 1 or args.input_dim < 1 or args.mlp_input_dim < 1 or args.vmap_reps < 1:
        cli.fail("--reps, --vmap-reps, --input-dim and --mlp-input-dim must be positive")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad or not models:
        cli.fail(f"--models: unknown {bad or args.models!r} (choose from "
                 f"{', '.join(MODEL_NAMES)})")
    import jax  # only once the arguments are good

    from ._bench import _f, _print_generic, bench_generic, bench_one, generic_cases
    if args.suite in ("generic", "all"):
        cases = [(c, n) for n in generic_n for c in generic_cases(
            args.widths, args.depths, n, args.mlp_input_dim, models)]
        if not args.json:
            print(f"generic suite: device {jax.local_devices()[0].device_kind} "
                  f"({jax.default_backend()}), float32, interleaved medians of {args.reps} "
                  f"(vmap: {min(args.vmap_reps, args.reps)})")
        grows = []
        for i, ((name, sizes), _) in enumerate(cases):
            row = bench_generic(name, sizes, reps=args.reps, vmap_reps=args.vmap_reps,
                                key=jax.random.key(100 + i),
                                vmap=args.vmap_max_n is None or sizes["n"] <= args.vmap_max_n)
            grows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
        if not args.json:
            _print_generic(grows)
        if args.suite == "generic":
            return 0
    if args.suite in ("monitor", "all"):
        from ._bench_monitor import bench_monitor, monitor_cases, print_monitor
        cases = [c for n in args.n for c in monitor_cases(
            args.widths, args.depths, n, args.mlp_input_dim, models)]
        if not args.json:
            print(f"monitor suite: device {jax.local_devices()[0].device_kind} "
                  f"({jax.default_backend()}), float32, one training step with the monitor / "
                  f"one plain optax step, interleaved medians of {args.reps}")
        mrows = []
        for i, (name, sizes) in enumerate(cases):
            rows = bench_monitor(name, sizes, reps=args.reps, key=jax.random.key(200 + i))
            mrows += rows
            if args.json:
                for row in rows:
                    print(json.dumps(row), flush=True)
        if not args.json:
            print_monitor(mrows)
        if args.suite == "monitor":
            return 0
    cells = [(n, K, L) for n in args.n for K in args.widths for L in args.depths]
    it = cells
    if not args.json:
        from tqdm.auto import tqdm
        it = tqdm(cells, desc="configurations", file=sys.stderr)
        print(f"device: {jax.local_devices()[0].device_kind} ({jax.default_backend()}), "
              f"{len(jax.local_devices())} device(s), float32, median of {args.reps}")
    rows = []
    for i, (n, K, L) in enumerate(it):
        row = bench_one(n, K, L, args.input_dim, reps=args.reps, naive_max_gb=args.naive_max_gb,
                        key=jax.random.key(i))
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"{'n':>5} {'K':>5} {'L':>3} {'ours_s':>9} {'floor_s':>9} {'ours/floor':>10} "
              f"{'MC/net/floor':>12} {'naive_s':>9} {'naive/ours':>10} {'mem naive/ours':>14}")
        for r in rows:
            print(f"{r['n']:>5} {r['width']:>5} {r['depth']:>3} {r['ours_s']:>9.4g} "
                  f"{r['floor_s']:>9.4g} {r['ours_over_floor']:>10.3f} "
                  f"{r['mc_per_net_over_floor']:>12.3f} {_f(r['naive_s'], '.4g'):>9} "
                  f"{_f(r['naive_over_ours_time']):>10} {_f(r['naive_over_ours_mem']):>14}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    cli.run(main)
