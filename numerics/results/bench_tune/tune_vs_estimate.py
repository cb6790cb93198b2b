"""The compiled ghost program with the estimated forms and with ``tune=True``'s measured
forms, against one backward, on the bench models with a choice of forms (n = 64 and 512).
Run from the repository root: ``python numerics/results/bench_tune/tune_vs_estimate.py``."""
import json
import statistics
import time

import jax
import jax.numpy as jnp

import numerics
from numerics import _bench_models
from numerics._bench import _time_interleaved
from numerics._generic import _ghost_core, _plan

for n in (64, 512):
    for name in ("block", "transformer", "rnn", "cnn", "dcnn"):
        loss, params, x, y, _ = _bench_models.MODELS[name](n=n, key=jax.random.key(3))
        plan = _plan(loss, params, x, y)
        t0 = time.perf_counter()
        tuned = numerics.ghost_plan(loss, params, x, y, tune=True)
        tune_s = time.perf_counter() - t0
        fns = {"backward": jax.jit(jax.grad(lambda p, x, y: jnp.sum(
            jax.vmap(loss, (None, 0, 0))(p, x, y)))).lower(params, x, y).compile()}
        for k, pl in (("estimate", plan), ("tuned", tuned)):
            fns[k] = jax.jit(lambda p, x, y, pl=pl: _ghost_core(loss, p, x, y, pl, 1)[:3]
                             ).lower(params, x, y).compile()
        t = _time_interleaved(fns, (params, x, y), 15 if n == 64 else 7)
        b = statistics.median(t["backward"])
        print(json.dumps({"model": name, "n": n, "backward_ms": 1e3 * b,
                          "estimate_over_backward": statistics.median(t["estimate"]) / b,
                          "tuned_over_backward": statistics.median(t["tuned"]) / b,
                          "tuning_s": tune_s,
                          "changed": [(a, c) for a, c in zip(plan.paths, tuned.paths)
                                      if a != c]}), flush=True)
