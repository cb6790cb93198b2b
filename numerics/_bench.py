"""The measurements of ``python -m numerics.bench`` (see that module for what each column means);
imported only once its arguments parse, since it needs jax."""


from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from theory import NetSpec

from . import _bench_models
from ._generic import _plan, _vmap_sums, default_chunk as generic_chunk, ghost_program
from ._mc import STEPS_PER_CALL, _block_fn, default_chunk
from ._network import apply, init_params
from ._stats import _stats_jit
from ._timing import interleaved_times as _time_interleaved


def _time(fn, *args, reps):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


def generic_cases(widths, depths, n, mlp_input_dim, models):
    """``(name, sizes)`` of the generic suite, in table order."""
    cases = []
    if "mlp" in models:
        cases += [("mlp", {"n": n, "d": mlp_input_dim, "K": K, "L": L})
                  for K in widths for L in depths]
    cases += [(m, {"n": n}) for m in _bench_models.MODELS if m in models and m != "mlp"]
    return cases


def bench_generic(name, sizes, *, reps, vmap_reps, key, vmap=True):
    """One row of the generic suite; ``vmap=False`` skips the ``vmap(grad)`` reference (its
    cost and the S1 agreement are then None)."""
    loss, params, x, y, desc = _bench_models.MODELS[name](**sizes, key=key)
    n = x.shape[0]
    plan = _plan(loss, params, x, y)
    leaves = jax.tree_util.tree_leaves(params)
    chunk = generic_chunk([leaves[k] for k in plan.fallback], n)
    ghost = jax.jit(ghost_program(loss, plan, chunk))  # the program the public call runs
    backward = jax.jit(jax.grad(lambda p, x, y: jnp.sum(jax.vmap(loss, (None, 0, 0))(p, x, y))))
    vchunk = generic_chunk(params, n)
    vmap_fn = jax.jit(lambda p, x, y: _vmap_sums(loss, p, x, y, vchunk))
    # compiled once each: the executables are timed and their memory analysed
    fns = {k: f.lower(params, x, y).compile()
           for k, f in {"ghost": ghost, "backward": backward, "vmap": vmap_fn}.items()
           if k != "vmap" or vmap}
    peak = _peak_mb()
    row = {"suite": "generic", "model": name, "description": desc, **sizes,
           "params": int(sum(a.size for a in leaves)), "dtype": "float32",
           "device": jax.local_devices()[0].device_kind, "backend": jax.default_backend(),
           "paths": sorted(set(plan.paths))}
    for k, f in fns.items():
        # a device without memory statistics (CPU) has no peak to read: no extra call (the
        # vmap(grad) reference of a grouped conv takes minutes per call there)
        row[f"{k}_peak_mb"], peak = ((None, None) if peak is None
                                     else _measured_peak(peak, f, params, x, y))
        row[f"{k}_xla_mb"] = _compiled_mb(f)
    from ._generic import gradient_diversity
    timed = dict(fns, call=lambda p, x, y: gradient_diversity(loss, p, x, y)["S1"])
    first = {}
    times = _time_interleaved(timed, (params, x, y), reps, skip_after={"vmap": vmap_reps},
                              first=first)
    t = {k: statistics.median(v) for k, v in times.items()}
    for k in timed:
        row[f"{k}_s"] = t[k]
        row[f"{k}_min_s"] = min(times[k])
    # the public call (input checks, cached plan, one transfer, per-layer statistics) over the
    # compiled ghost program: its fixed per-call overhead
    row["call_overhead_s"] = t["call"] - t["ghost"]
    row["call_over_backward"] = t["call"] / t["backward"]
    row["ghost_over_backward"] = t["ghost"] / t["backward"]
    row["ghost_over_backward_min"] = row["ghost_min_s"] / row["backward_min_s"]
    row["vmap_over_backward"] = t["vmap"] / t["backward"] if vmap else None
    row["ghost_over_backward_mem"] = (None if not row["backward_xla_mb"] or row["ghost_xla_mb"]
                                      is None else row["ghost_xla_mb"] / row["backward_xla_mb"])
    g1 = float(np.sum(np.asarray(first["ghost"].vector)[:len(leaves)]))  # per-leaf S1 first
    row["S1_rel_diff"] = None
    if vmap:
        v1 = float(sum(jax.tree_util.tree_leaves(first["vmap"][0])))
        row["S1_rel_diff"] = abs(g1 - v1) / abs(v1)
    return row


def _print_generic(rows):
    print(f"{'model':<12} {'n':>4} {'K':>5} {'L':>2} {'ghost_s':>9} {'backward_s':>10} "
          f"{'ghost/bwd':>9} {'(min)':>6} {'call/bwd':>8} {'overhead_ms':>11} {'vmap/bwd':>8} "
          f"{'mem ghost/bwd (MB)':>18} {'S1 rel diff':>11}  paths")
    for r in rows:
        mem = (f"{_f(r['ghost_xla_mb'], '.1f')}/{_f(r['backward_xla_mb'], '.1f')}="
               f"{_f(r['ghost_over_backward_mem'])}")
        print(f"{r['model']:<12} {r['n']:>4} {r.get('K', '-')!s:>5} {r.get('L', '-')!s:>2} "
              f"{r['ghost_s']:>9.4g} {r['backward_s']:>10.4g} {r['ghost_over_backward']:>9.3f} "
              f"{r['ghost_over_backward_min']:>6.3f} {r['call_over_backward']:>8.3f} "
              f"{1e3 * r['call_overhead_s']:>11.2f} {_f(r['vmap_over_backward'], '.1f'):>8} "
              f"{mem:>18} {_f(r['S1_rel_diff'], '.2g'):>11}  {', '.join(r['paths'])}")


def _f(v, spec=".3g"):
    return "-" if v is None else format(v, spec)
