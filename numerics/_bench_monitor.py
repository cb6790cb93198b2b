"""The ``monitor`` suite of ``python -m numerics.bench``: one jitted training step with the
gradient-noise monitor against one plain optax step, timed interleaved in one run.

For each model (:mod:`numerics._bench_models`) and optimiser the steps are

* ``plain``: ``jax.value_and_grad`` of the mean loss (``vmap`` of the per-example loss), the
  optimiser's update, ``optax.apply_updates``;
* ``monitor``: :func:`numerics.value_grad_and_diversity` (one backward pass with S1, S2), the
  update of ``optax.chain(noise_scale_ema(), optimiser)`` with ``diversity=stats``, apply;
* ``monitor_layers``: the same with ``per_layer=True`` (per-leaf S1, S2 and their EMAs);
* Adam only, ``monitor_adam_metric``: ``metric = numerics.adam_metric(state)`` and the
  statistics in it as well (``noise_scale_ema(precond=True)``): the Adam-preconditioned noise
  scale, from a second pass (the reparametrisation of :mod:`numerics._metric`).

The steps are compiled once each, then called one after the other per repetition (so load on
a shared host hits them alike); the table gives the ratio of medians and of minima.
"""

from __future__ import annotations

import statistics

import jax
import jax.numpy as jnp
import optax

from . import _bench_models
from ._bench import _time_interleaved
from ._metric import adam_metric
from ._monitor import noise_scale_ema, value_grad_and_diversity


def _steps(loss, optimiser, adam):
    """The jitted steps ``(params, state, x, y) -> (params, state)`` of one optimiser."""
    mean_loss = lambda p, x, y: jnp.mean(jax.vmap(loss, (None, 0, 0))(p, x, y))

    def plain(params, state, x, y):
        _, grads = jax.value_and_grad(mean_loss)(params, x, y)
        upd, state = optimiser.update(grads, state, params)
        return optax.apply_updates(params, upd), state

    def monitored(per_layer, metric):
        f = value_grad_and_diversity(loss, per_layer=per_layer)
        tx = optax.chain(noise_scale_ema(0.99, per_layer=per_layer, precond=metric), optimiser)

        def step(params, state, x, y):
            m = adam_metric(state) if metric else None
            _, grads, st = f(params, x, y, metric=m)
            upd, state = tx.update(grads, state, params, diversity=st)
            return optax.apply_updates(params, upd), state

        return step, tx

    steps = {"plain": (plain, optimiser), "monitor": monitored(False, False),
             "monitor_layers": monitored(True, False)}
    if adam:
        steps["monitor_adam_metric"] = monitored(False, True)
    return steps


def bench_monitor(name, sizes, *, reps, key):
    """Rows (one per optimiser) of the monitor suite for one model."""
    loss, params, x, y, desc = _bench_models.MODELS[name](**sizes, key=key)
    rows = []
    for opt_name, optimiser in (("sgd", optax.sgd(1e-3)), ("adam", optax.adam(1e-3))):
        steps = _steps(loss, optimiser, opt_name == "adam")
        fns, states = {}, {}
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts and floats
            for k, (step, tx) in steps.items():
                states[k] = tx.init(params)
                fns[k] = jax.jit(step).lower(params, states[k], x, y).compile()
            # each step runs on its own state: a wrapper so the timer's one argument list fits
            calls = {k: (lambda f, s: lambda p, x, y: f(p, s, x, y))(fns[k], states[k])
                     for k in fns}
            times = _time_interleaved(calls, (params, x, y), reps)
        t = {k: statistics.median(v) for k, v in times.items()}
        row = {"suite": "monitor", "model": name, "description": desc, **sizes,
               "optimizer": opt_name, "params": int(sum(a.size for a in
                                                        jax.tree_util.tree_leaves(params))),
               "dtype": "float32", "device": jax.local_devices()[0].device_kind,
               "backend": jax.default_backend(), "reps": reps}
        for k in fns:
            row[f"{k}_s"] = t[k]
            row[f"{k}_min_s"] = min(times[k])
            if k != "plain":
                row[f"{k}_over_plain"] = t[k] / t["plain"]
                row[f"{k}_over_plain_min"] = min(times[k]) / min(times["plain"])
        rows.append(row)
    return rows


def monitor_cases(widths, depths, n, mlp_input_dim, models):
    """``(name, sizes)`` of the monitor suite: the MLP at every width × depth, the
    transformer block."""
    cases = []
    if "mlp" in models:
        cases += [("mlp", {"n": n, "d": mlp_input_dim, "K": K, "L": L})
                  for K in widths for L in depths]
    cases += [(m, {"n": n}) for m in ("transformer",) if m in models]
    return cases


def print_monitor(rows):
    print(f"{'model':<12} {'opt':<5} {'n':>4} {'K':>5} {'L':>2} {'plain_s':>9} "
          f"{'monitor/plain':>13} {'(min)':>6} {'+layers':>8} {'(min)':>6} "
          f"{'+adam metric':>12} {'(min)':>6}")
    g = lambda r, k: "-" if k not in r else f"{r[k]:.3f}"
    for r in rows:
        print(f"{r['model']:<12} {r['optimizer']:<5} {r['n']:>4} {r.get('K', '-')!s:>5} "
              f"{r.get('L', '-')!s:>2} {r['plain_s']:>9.4g} "
              f"{g(r, 'monitor_over_plain'):>13} {g(r, 'monitor_over_plain_min'):>6} "
              f"{g(r, 'monitor_layers_over_plain'):>8} "
              f"{g(r, 'monitor_layers_over_plain_min'):>6} "
              f"{g(r, 'monitor_adam_metric_over_plain'):>12} "
              f"{g(r, 'monitor_adam_metric_over_plain_min'):>6}")
