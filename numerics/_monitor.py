r"""A gradient-noise monitor for users' own training loops (optax-compatible).

:func:`value_grad_and_diversity` gives, from ONE backward pass of any JAX model (the ghost
norms of :mod:`numerics._ghost`), the mean loss and mean gradient the loop needs anyway and the
step's :class:`DiversityStats`. :func:`noise_scale_ema` is an optax transformation that leaves
the updates unchanged and keeps exponential moving averages of the noise-scale ingredients, as
gradient-noise-scale tools do (McCandlish et al. 2018, App. A: average the numerator and the
denominator separately, then divide). With m examples in the step, per-example gradients
:math:`g_i` and :math:`G = \frac1m\sum_i g_i`:

.. math::

    \bar s = S_1/m,\quad |G|^2 = S_2/m^2,\quad
    B_S = \frac{\overline{\bar s}}{\overline{|G|^2}},\quad
    B_\text{simple} = B_S - 1,\quad
    B_\text{simple}^\text{unbiased} = \frac{\overline{\operatorname{tr}\Sigma}}
    {\overline{|G|^2_\text{unb}}},

with overlines the EMAs and :math:`\operatorname{tr}\Sigma, |G|^2_\text{unb}` McCandlish's
unbiased two-batch estimates with batch sizes 1 and m (:func:`numerics.two_batch_noise_scale`).
The EMAs' bias correction :math:`1/(1-\beta^t)` cancels in every ratio.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from theory import diversity

from . import _generic


class DiversityStats(NamedTuple):
    """Gradient statistics of one step's batch (a pytree of scalars).

    Attributes:
        S1, S2: :math:`\\sum_i\\lVert g_i\\rVert^2`, :math:`\\lVert\\sum_i g_i\\rVert^2`.
        n: examples in the batch (a float scalar, so the tuple is all arrays).
        batch_size_bound: :math:`B_S = nS_1/S_2`.
        B_simple: plug-in :math:`B_S - 1`.
        B_simple_unbiased: McCandlish's two-batch estimator with batch sizes 1 and n.
        G2: unbiased estimate of :math:`|G|^2`.
        trace_sigma: unbiased estimate of :math:`\\operatorname{tr}\\Sigma`.
    """

    S1: jax.Array
    S2: jax.Array
    n: jax.Array
    batch_size_bound: jax.Array
    B_simple: jax.Array
    B_simple_unbiased: jax.Array
    G2: jax.Array
    trace_sigma: jax.Array


def diversity_stats(S1, S2, n) -> DiversityStats:
    """:class:`DiversityStats` from :math:`S_1, S_2, n` (formulas of :mod:`theory`)."""
    d = diversity(S1, S2, n)
    tb = _generic.two_batch_noise_scale(S1 / n, S2 / (n * n), 1, n)
    return DiversityStats(S1, S2, jnp.asarray(n, S1.dtype), d["batch_size_bound"],
                          d["B_simple"], d["B_simple_unbiased"], tb["G2"], tb["trace_sigma"])


def value_grad_and_diversity(loss_fn, *, batched: bool = False, chunk_size: int | None = None):
    r"""``f(params, x, y) -> (mean loss, mean gradient, DiversityStats)``, jittable.

    One batched backward pass (ghost norms); leaves it cannot split take the exact chunked
    ``vmap(grad)`` (:func:`numerics.ghost_plan` says which). Inside ``jit`` a custom_jvp/vjp
    rule that a parameter enters is kept as it is (those leaves take ``vmap(grad)``), since
    the eager check of :func:`numerics.gradient_diversity` cannot run there.

    Args:
        loss_fn: ``loss_fn(params, x_i, y_i) -> scalar`` for one example (or a batched loss
            with ``batched=True``, as in :func:`numerics.gradient_diversity`).
        batched: see above.
        chunk_size: examples per chunk of the ``vmap(grad)`` fallback (default by memory).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> loss = lambda p, x, y: 0.5 * (jnp.dot(p["w"], x) - y) ** 2
        >>> f = jax.jit(value_grad_and_diversity(loss))
        >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]]); y = jnp.array([1.0, 1.0])
        >>> value, grads, stats = f({"w": jnp.zeros(2)}, x, y)
        >>> float(value), grads["w"].tolist(), float(stats.batch_size_bound)
        (0.5, [-0.5, -0.5], 2.0)
    """
    one = _generic._one_example(loss_fn) if batched else loss_fn

    def f(params, x, y):
        x = jax.tree_util.tree_map(jnp.asarray, x)
        y = jax.tree_util.tree_map(jnp.asarray, y)
        n = _generic._check_inputs(params, x, y)
        plan = _generic._plan(one, params, x, y)
        if plan.custom:  # keep the custom rules: exact whatever they compute
            plan = _generic._plan(one, params, x, y, plan.custom)
        leaves = jax.tree_util.tree_leaves(params)
        chunk = (_generic.default_chunk([leaves[k] for k in plan.fallback], n)
                 if chunk_size is None else int(min(chunk_size, n)))
        s1, s2, gsum, loss_sum, _ = _generic._ghost_core(one, params, x, y, plan, chunk)
        S1 = sum(jax.tree_util.tree_leaves(s1))
        S2 = sum(jax.tree_util.tree_leaves(s2))
        grads = jax.tree_util.tree_map(lambda g: g / n, gsum)
        return loss_sum / n, grads, diversity_stats(S1, S2, n)

    return f


class NoiseScaleState(NamedTuple):
    """State of :func:`noise_scale_ema`: step count and EMAs (not bias-corrected) of the mean
    squared per-example norm ``S1/n``, of ``S2/n²`` and of the unbiased ``G2``,
    ``trace_sigma``; ``last``: the latest step's :class:`DiversityStats`."""

    count: jax.Array
    mean_sq: jax.Array
    G2_plugin: jax.Array
    G2: jax.Array
    trace_sigma: jax.Array
    last: DiversityStats


def noise_scale_ema(decay: float = 0.99, dtype=None) -> optax.GradientTransformationExtraArgs:
    r"""Optax transformation keeping EMAs of the gradient-noise scale; updates pass unchanged.

    Call ``update(updates, state, params, diversity=stats)`` with the
    :class:`DiversityStats` of the step (from :func:`value_grad_and_diversity`); inside
    ``optax.chain`` the keyword reaches it and the other transformations ignore it. Read the
    estimates with :func:`noise_scale_estimates`.

    Args:
        decay: EMA decay :math:`\beta` in [0, 1).
        dtype: dtype of the state (default: the x64-aware float).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> tx = optax.chain(noise_scale_ema(0.9), optax.sgd(0.1))
        >>> params = {"w": jnp.zeros(2)}
        >>> state = tx.init(params)
        >>> stats = diversity_stats(jnp.float32(12.0), jnp.float32(3.0), 4)
        >>> _, state = tx.update({"w": jnp.ones(2)}, state, params, diversity=stats)
        >>> est = noise_scale_estimates(state)
        >>> float(est["batch_size_bound"]), float(est["B_simple"])
        (16.0, 15.0)
    """
    if not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay!r}")

    def init(params):
        del params
        from ._precision import default_dtype
        dt = dtype or default_dtype()
        z = jnp.zeros((), dt)
        return NoiseScaleState(jnp.zeros((), jnp.int32), z, z, z, z,
                               DiversityStats(*([z] * len(DiversityStats._fields))))

    def update(updates, state, params=None, *, diversity=None, **extra):
        del params, extra
        if diversity is None:
            raise ValueError("noise_scale_ema needs update(..., diversity=DiversityStats); "
                             "get it from numerics.value_grad_and_diversity")
        dt = state.mean_sq.dtype
        st = DiversityStats(*[jnp.asarray(v, dt) for v in diversity])
        ema = lambda old, new: decay * old + (1 - decay) * new
        new = NoiseScaleState(
            state.count + 1,
            ema(state.mean_sq, st.S1 / st.n),
            ema(state.G2_plugin, st.S2 / (st.n * st.n)),
            ema(state.G2, st.G2),
            ema(state.trace_sigma, st.trace_sigma),
            st)
        return updates, new

    return optax.GradientTransformationExtraArgs(init, update)


def _find_state(opt_state):
    found = [s for s in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda s: isinstance(s, NoiseScaleState))
        if isinstance(s, NoiseScaleState)]
    if len(found) != 1:
        raise ValueError(f"expected one noise_scale_ema state in the optimiser state, "
                         f"found {len(found)}")
    return found[0]


def noise_scale_estimates(opt_state) -> dict:
    r"""EMA estimates from a state holding one :func:`noise_scale_ema` (e.g. a chain's).

    Returns:
        ``batch_size_bound`` (:math:`B_S`, ratio of EMAs), ``B_simple`` (plug-in,
        :math:`B_S - 1`), ``B_simple_unbiased`` (ratio of the EMAs of McCandlish's unbiased
        :math:`\operatorname{tr}\Sigma` and :math:`|G|^2`), ``steps``, and ``last``: the latest
        step's :class:`DiversityStats` as a dict.
    """
    s = _find_state(opt_state)
    bound = s.mean_sq / s.G2_plugin
    return {"batch_size_bound": bound, "B_simple": bound - 1,
            "B_simple_unbiased": s.trace_sigma / s.G2, "steps": s.count,
            "last": s.last._asdict()}
