"""``python -m numerics.bench [--json]``: cost of S1+S2, as ratios measured in one run.

Two suites (``--suite spec|generic|all``, default all).

``generic`` — :func:`numerics.gradient_diversity` on models given as a per-example loss
(:mod:`numerics._bench_models`: the ReLU MLP with biases at d = 64 for every ``--widths`` ×
``--depths``, a small CNN, a transformer block, and the models of issue 16: a block with token
and position embeddings, causal attention and a GELU MLP, CNNs with a grouped / depthwise /
stride-2 / dilated conv, an RNN in ``lax.scan``, tied embedding / output weights, an MLP with
weight decay in the loss; n = ``--n``, default 512 and 64, float32; ``--quick``: every model
once at n = 8, one repetition, for tests):

* ``ghost_s``: the ghost path (per-leaf S1, S2 and the summed gradient, one backward pass);
* ``backward_s``: the plain batched backward ``jit(grad)`` of the summed loss;
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

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from theory import NetSpec
from theory._cli import fail, int_list

from . import _bench_models
from ._generic import _ghost_core, _plan, _vmap_sums, default_chunk as generic_chunk
from ._mc import STEPS_PER_CALL, _block_fn, default_chunk
from ._network import apply, init_params
from ._stats import _stats_jit


def _time(fn, *args, reps):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_interleaved(fns, args, reps, skip_after=None):
    """Median seconds of each of ``fns`` (a dict), one call of each per repetition."""
    for f in fns.values():
        jax.block_until_ready(f(*args))  # compile + warm-up
    times = {k: [] for k in fns}
    for r in range(reps):
        for k, f in fns.items():
            if skip_after and k in skip_after and r >= skip_after[k]:
                continue
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[k].append(time.perf_counter() - t0)
    return times


def _xla_mb(jitted, *args):
    try:
        m = jitted.lower(*args).compile().memory_analysis()
    except Exception:  # noqa: BLE001 - analysis is optional on some backends
        return None
    if m is None:
        return None
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return total / 2**20


def _compiled_mb(compiled):
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - analysis is optional on some backends
        return None
    if m is None:
        return None
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20


def _peak_mb():
    stats = jax.local_devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def _measured_peak(before, fn, *args):
    """Peak device memory after ``fn`` if it raised the running peak, else None."""
    jax.block_until_ready(fn(*args))
    after = _peak_mb()
    if after is None or before is None:
        return None, after
    return (after if after > before else None), after


def bench_one(n, K, L, d, *, reps, naive_max_gb, key):
    spec = NetSpec.uniform(L, K, d)
    kp, kx = jax.random.split(key)
    params = init_params(spec, key=kp, dtype=jnp.float32)
    x = jax.random.normal(kx, (n, d), jnp.float32)
    y = jnp.zeros((n, 1), jnp.float32)

    def loss_i(p, xi, yi):
        r = apply(spec, p, xi) - yi
        return 0.5 * jnp.sum(r * r)

    ours = jax.jit(lambda p, x, y: _stats_jit(spec, p, x, y, "squared")[:4])
    floor = jax.jit(jax.grad(lambda p, x, y: jnp.sum(jax.vmap(loss_i, (None, 0, 0))(p, x, y))))

    @jax.jit
    def naive(p, x, y):
        g = jax.vmap(jax.grad(loss_i), (None, 0, 0))(p, x, y)
        s1 = sum(jnp.sum(a * a) for a in g)
        s2 = sum(jnp.sum(jnp.sum(a, 0) ** 2) for a in g)
        return s1, s2

    row = {"n": n, "width": K, "depth": L, "input_dim": d, "params": spec.params,
           "dtype": "float32", "device": jax.local_devices()[0].device_kind,
           "backend": jax.default_backend()}
    peak = _peak_mb()
    row["ours_s"] = _time(ours, params, x, y, reps=reps)
    row["ours_peak_mb"], peak = _measured_peak(peak, ours, params, x, y)
    row["ours_xla_mb"] = _xla_mb(ours, params, x, y)
    row["floor_s"] = _time(floor, params, x, y, reps=reps)
    row["floor_xla_mb"] = _xla_mb(floor, params, x, y)
    chunk = default_chunk(spec, n, jnp.float32)
    fn, net_sharding, rep = _block_fn(spec, "squared", chunk, len(jax.local_devices()))
    block = len(jax.local_devices()) * chunk * STEPS_PER_CALL
    idx = jax.device_put(np.arange(block, dtype=np.int32), net_sharding)
    args = [jax.device_put(a, rep) for a in (jax.random.key(1), x, y)]
    row["mc_block"] = block
    row["mc_per_net_s"] = _time(lambda i: fn(args[0], i, args[1], args[2]), idx,
                                reps=max(1, reps // 2)) / block
    naive_bytes = n * spec.params * 4
    if naive_bytes > naive_max_gb * 2**30:
        row["naive_s"] = row["naive_peak_mb"] = row["naive_xla_mb"] = None
        row["naive_skipped"] = (f"per-example gradients need {naive_bytes / 2**30:.1f} GiB "
                                f"> --naive-max-gb {naive_max_gb}")
    else:
        row["naive_s"] = _time(naive, params, x, y, reps=reps)
        row["naive_peak_mb"], peak = _measured_peak(peak, naive, params, x, y)
        row["naive_xla_mb"] = _xla_mb(naive, params, x, y)
    row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
    row["mc_per_net_over_floor"] = row["mc_per_net_s"] / row["floor_s"]
    row["naive_over_ours_time"] = None if row["naive_s"] is None else row["naive_s"] / row["ours_s"]
    row["naive_over_ours_mem"] = (None if row["naive_xla_mb"] is None or not row["ours_xla_mb"]
                                  else row["naive_xla_mb"] / row["ours_xla_mb"])
    return row


#: The generic suite's default models, in table order.
DEFAULT_MODELS = ("mlp", "cnn", "transformer", "block", "gcnn", "dwcnn", "scnn", "dcnn", "rnn",
                  "tied", "mlp_wd")


def generic_cases(widths, depths, n, mlp_input_dim, models):
    """``(name, sizes)`` of the generic suite, in table order."""
    cases = []
    if "mlp" in models:
        cases += [("mlp", {"n": n, "d": mlp_input_dim, "K": K, "L": L})
                  for K in widths for L in depths]
    cases += [(m, {"n": n}) for m in _bench_models.MODELS if m in models and m != "mlp"]
    return cases


def bench_generic(name, sizes, *, reps, vmap_reps, key):
    loss, params, x, y, desc = _bench_models.MODELS[name](**sizes, key=key)
    n = x.shape[0]
    plan = _plan(loss, params, x, y)
    leaves = jax.tree_util.tree_leaves(params)
    chunk = generic_chunk([leaves[k] for k in plan.fallback], n)
    ghost = jax.jit(lambda p, x, y: _ghost_core(loss, p, x, y, plan, chunk)[:3])
    backward = jax.jit(jax.grad(lambda p, x, y: jnp.sum(jax.vmap(loss, (None, 0, 0))(p, x, y))))
    vchunk = generic_chunk(params, n)
    vmap = jax.jit(lambda p, x, y: _vmap_sums(loss, p, x, y, vchunk))
    # compiled once each: the executables are timed and their memory analysed
    fns = {k: f.lower(params, x, y).compile()
           for k, f in {"ghost": ghost, "backward": backward, "vmap": vmap}.items()}
    peak = _peak_mb()
    row = {"suite": "generic", "model": name, "description": desc, **sizes,
           "params": int(sum(a.size for a in leaves)), "dtype": "float32",
           "device": jax.local_devices()[0].device_kind, "backend": jax.default_backend(),
           "paths": sorted(set(plan.paths))}
    for k, f in fns.items():
        row[f"{k}_peak_mb"], peak = _measured_peak(peak, f, params, x, y)
        row[f"{k}_xla_mb"] = _compiled_mb(f)
    times = _time_interleaved(fns, (params, x, y), reps, skip_after={"vmap": vmap_reps})
    t = {k: statistics.median(v) for k, v in times.items()}
    for k in fns:
        row[f"{k}_s"] = t[k]
        row[f"{k}_min_s"] = min(times[k])
    row["ghost_over_backward"] = t["ghost"] / t["backward"]
    row["ghost_over_backward_min"] = row["ghost_min_s"] / row["backward_min_s"]
    row["vmap_over_backward"] = t["vmap"] / t["backward"]
    row["ghost_over_backward_mem"] = (None if not row["backward_xla_mb"] or row["ghost_xla_mb"]
                                      is None else row["ghost_xla_mb"] / row["backward_xla_mb"])
    g1 = float(sum(jax.tree_util.tree_leaves(fns["ghost"](params, x, y)[0])))
    v1 = float(sum(jax.tree_util.tree_leaves(fns["vmap"](params, x, y)[0])))
    row["S1_rel_diff"] = abs(g1 - v1) / abs(v1)
    return row


def _print_generic(rows):
    print(f"{'model':<12} {'n':>4} {'K':>5} {'L':>2} {'ghost_s':>9} {'backward_s':>10} "
          f"{'ghost/bwd':>9} {'(min)':>6} {'vmap/bwd':>8} {'mem ghost/bwd':>13} "
          f"{'S1 rel diff':>11}  paths")
    for r in rows:
        print(f"{r['model']:<12} {r['n']:>4} {r.get('K', '-')!s:>5} {r.get('L', '-')!s:>2} "
              f"{r['ghost_s']:>9.4g} {r['backward_s']:>10.4g} {r['ghost_over_backward']:>9.3f} "
              f"{r['ghost_over_backward_min']:>6.3f} {r['vmap_over_backward']:>8.1f} "
              f"{_f(r['ghost_over_backward_mem']):>13} {r['S1_rel_diff']:>11.2g}  "
              f"{', '.join(r['paths'])}")


def _f(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m numerics.bench", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int_list, default=None,
                   help="examples (default 512; generic suite: 512,64)")
    p.add_argument("--widths", type=int_list, default=(256, 1024), help="default 256,1024")
    p.add_argument("--depths", type=int_list, default=(2, 8), help="default 2,8")
    p.add_argument("--input-dim", type=int, default=128, help="default 128")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median; default 5)")
    p.add_argument("--naive-max-gb", type=float, default=4.0,
                   help="skip naive when its per-example gradients exceed this (default 4)")
    p.add_argument("--suite", choices=("spec", "generic", "all"), default="all",
                   help="spec networks, generic models (any JAX loss), or both (default)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"generic suite models (default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--quick", action="store_true",
                   help="generic suite, every model once at n = 8, widths 16, depth 2, one "
                        "repetition (a smoke run for tests)")
    p.add_argument("--mlp-input-dim", type=int, default=64,
                   help="input dim of the generic MLP (default 64)")
    p.add_argument("--vmap-reps", type=int, default=2,
                   help="timed runs of the slow vmap(grad) reference (default 2)")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    p.error = lambda message: fail(f"{message} (see --help)")
    args = p.parse_args(argv)
    if args.quick:
        args.suite, args.reps, args.vmap_reps = "generic", 1, 1
        args.n, args.widths, args.depths = args.n or (8,), (16,), (2,)
    generic_n = args.n or (512, 64)
    args.n = args.n or (512,)
    if args.reps < 1 or args.input_dim < 1 or args.mlp_input_dim < 1 or args.vmap_reps < 1:
        fail("--reps, --vmap-reps, --input-dim and --mlp-input-dim must be positive")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    bad = [m for m in models if m not in _bench_models.MODELS]
    if bad or not models:
        fail(f"--models: unknown {bad or args.models!r} (choose from "
             f"{', '.join(_bench_models.MODELS)})")
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
                                key=jax.random.key(100 + i))
            grows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
        if not args.json:
            _print_generic(grows)
        if args.suite == "generic":
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
    raise SystemExit(main())
