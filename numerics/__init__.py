"""numerics/: JIT-compiled Monte Carlo and per-example gradient statistics (JAX).

Thin re-exports; each concept lives in one private module:

* :func:`init_params`, :func:`apply` — random networks of a :class:`theory.NetSpec`;
* :func:`per_example_stats` — S1, S2 (and per layer) of a spec network in one backward pass;
* :func:`gradient_diversity` — the same for ANY JAX model (ghost norms from one backward pass,
  exact chunked ``vmap(grad)`` for unrecognised leaves; :func:`ghost_plan` says which);
* :func:`mc_moments` — Monte Carlo over random networks (:class:`MCResult`), to a fixed count
  or to a stated relative standard error;
* :func:`value_grad_and_diversity`, :func:`noise_scale_ema` — a per-step monitor (S1, S2, B_S,
  B_simple plug-in and unbiased, EMAs) for users' own optax training loops;
* :func:`x64` — the one precision switch (float32 default).
"""

from ._precision import x64, default_dtype
from ._network import init_params, apply, branch_scales
from ._stats import GradStats, per_example_stats
from ._generic import gradient_diversity, ghost_plan, two_batch_noise_scale
from ._mc import MCResult, mc_moments
from ._monitor import (DiversityStats, NoiseScaleState, diversity_stats, noise_scale_ema,
                       noise_scale_estimates, value_grad_and_diversity)

__all__ = [
    "x64", "default_dtype", "init_params", "apply", "branch_scales", "GradStats",
    "per_example_stats", "gradient_diversity", "ghost_plan", "two_batch_noise_scale", "MCResult",
    "mc_moments", "DiversityStats", "NoiseScaleState", "diversity_stats", "noise_scale_ema",
    "noise_scale_estimates", "value_grad_and_diversity",
]
