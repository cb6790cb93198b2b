"""numerics/: JIT-compiled Monte Carlo and per-example gradient statistics (JAX).

Thin re-exports; each concept lives in one private module:

* :func:`init_params`, :func:`apply` — random networks of a :class:`theory.NetSpec`;
* :func:`per_example_stats` — S1, S2 (and per layer) of a spec network in one backward pass;
* :func:`gradient_diversity` — the same for ANY JAX model (ghost norms from one backward pass,
  exact chunked ``vmap(grad)`` for unrecognised leaves; :func:`ghost_plan` says which), also in
  a diagonal metric (``metric=``; :func:`adam_metric`: the Adam-preconditioned noise scale);
* :func:`mc_moments` — Monte Carlo over random networks (:class:`MCResult`), to a fixed count
  or to a stated relative standard error;
* :func:`value_grad_and_diversity`, :func:`noise_scale_ema` — a per-step monitor (S1, S2, B_S,
  B_simple plug-in and unbiased, EMAs) for users' own optax training loops;
* :func:`x64` — the one precision switch (float32 default).
"""

import importlib

# name -> private module; imported on first use (PEP 562), so ``python -m numerics.check --help``
# and its argument errors answer without importing jax
_LAZY = {
    "x64": "_precision", "default_dtype": "_precision",
    "init_params": "_network", "apply": "_network", "branch_scales": "_network",
    "GradStats": "_stats", "per_example_stats": "_stats",
    "gradient_diversity": "_generic", "ghost_plan": "_generic",
    "two_batch_noise_scale": "_generic", "adam_metric": "_metric",
    "MCResult": "_mc", "mc_moments": "_mc",
    "DiversityStats": "_monitor", "NoiseScaleState": "_monitor", "diversity_stats": "_monitor",
    "noise_scale_ema": "_monitor", "noise_scale_estimates": "_monitor",
    "value_grad_and_diversity": "_monitor",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'numerics' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "x64", "default_dtype", "init_params", "apply", "branch_scales", "GradStats",
    "per_example_stats", "gradient_diversity", "ghost_plan", "two_batch_noise_scale",
    "adam_metric", "MCResult", "mc_moments", "DiversityStats", "NoiseScaleState",
    "diversity_stats", "noise_scale_ema", "noise_scale_estimates", "value_grad_and_diversity",
]
