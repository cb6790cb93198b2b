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

**Per layer** (``per_layer=True``): the same with :math:`S_1^{(l)}, S_2^{(l)}` of each parameter
leaf :math:`l` (keys as :func:`numerics.gradient_diversity`'s ``layers``); the leaves' sums are
the totals, :math:`S_k = \sum_l S_k^{(l)}`.

**In a metric** (``f(params, x, y, metric=P)``, :mod:`numerics._metric`): with positive diagonal
weights :math:`P`, :math:`S_1^P = \sum_i g_i^\top P g_i`, :math:`S_2^P = (\sum_i g_i)^\top P
(\sum_i g_i)` and the formulas above give
:math:`B_\text{simple}^P = \operatorname{tr}(P\Sigma)/(G^\top P G)` (``stats.precond``). With
:math:`P` = :func:`numerics.adam_metric` of the optimiser state before the step,
:math:`P = 1/(\sqrt{\hat v}+\epsilon)`, this is the **Adam-preconditioned noise scale**:
McCandlish's :math:`B_\text{noise} = \operatorname{tr}(H\Sigma)/(G^\top HG)` for the update
:math:`-\eta Pg` when the Hessian :math:`H\approx P^{-1}`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from theory import diversity

from . import _generic, _metric


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
        layers: None, or (``per_layer=True``) ``{leaf key: {"S1": ..., "S2": ...}}`` keyed
            like :func:`numerics.gradient_diversity`'s ``layers``; they sum to ``S1``, ``S2``.
        precond: None, or (with a ``metric``) the :class:`DiversityStats` of the same batch in
            that metric (:math:`S_1^P, S_2^P`, its own ``layers``; ``precond`` None).
    """

    S1: jax.Array
    S2: jax.Array
    n: jax.Array
    batch_size_bound: jax.Array
    B_simple: jax.Array
    B_simple_unbiased: jax.Array
    G2: jax.Array
    trace_sigma: jax.Array
    layers: dict | None = None
    precond: "DiversityStats | None" = None


_SCALARS = DiversityStats._fields[:8]


def diversity_stats(S1, S2, n, *, layers=None, precond=None) -> DiversityStats:
    """:class:`DiversityStats` from :math:`S_1, S_2, n` (formulas of :mod:`theory`);
    ``layers``, ``precond`` are stored as given."""
    S1, S2 = jnp.asarray(S1), jnp.asarray(S2)
    d = diversity(S1, S2, n)
    tb = _generic.two_batch_noise_scale(S1 / n, S2 / (n * n), 1, n)
    return DiversityStats(S1, S2, jnp.asarray(n, S1.dtype), d["batch_size_bound"],
                          d["B_simple"], d["B_simple_unbiased"], tb["G2"], tb["trace_sigma"],
                          layers, precond)


def _stats_of(s1, s2, n, keys, per_layer, precond=None):
    """:class:`DiversityStats` from per-leaf sums (pytrees shaped like the parameters)."""
    l1, l2 = jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s2)
    layers = ({k: {"S1": a, "S2": b} for k, a, b in zip(keys, l1, l2)} if per_layer else None)
    return diversity_stats(sum(l1), sum(l2), n, layers=layers, precond=precond)


def _leaf_keys(params):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def value_grad_and_diversity(loss_fn, *, batched: bool = False, chunk_size: int | None = None,
                             per_layer: bool = False):
    r"""``f(params, x, y, metric=None) -> (mean loss, mean gradient, DiversityStats)``,
    jittable.

    One batched backward pass (ghost norms); leaves it cannot split take the exact chunked
    ``vmap(grad)`` (:func:`numerics.ghost_plan` says which). Inside ``jit`` a custom_jvp/vjp
    rule that a parameter enters is kept as it is (those leaves take ``vmap(grad)``), since
    the eager check of :func:`numerics.gradient_diversity` cannot run there.

    With ``metric`` (a pytree shaped like ``params`` of positive diagonal weights :math:`P`,
    e.g. ``numerics.adam_metric(opt_state)``), ``stats.precond`` holds the same statistics in
    that metric (:math:`B_\text{simple}^P = \operatorname{tr}(P\Sigma)/(G^\top PG)`; module
    docstring), from a second pass over the batch: the reparametrisation of
    :mod:`numerics._metric`: dense weights take a weighted ghost form, convolutions and
    embeddings the exact per-example fallback. Under ``jit`` the
    metric's shapes are checked, its values are not (they are traced).

    Args:
        loss_fn: ``loss_fn(params, x_i, y_i) -> scalar`` for one example (or a batched loss
            with ``batched=True``, as in :func:`numerics.gradient_diversity`).
        batched: see above.
        chunk_size: examples per chunk of the ``vmap(grad)`` fallback (default by memory).
        per_layer: also return each leaf's :math:`S_1, S_2` (``stats.layers``, and
            ``stats.precond.layers``), at no extra cost.

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

    def _chunk(plan, params, n):
        leaves = jax.tree_util.tree_leaves(params)
        return (_generic.default_chunk([leaves[k] for k in plan.fallback], n)
                if chunk_size is None else int(min(chunk_size, n)))

    def f(params, x, y, metric=None):
        x = jax.tree_util.tree_map(jnp.asarray, x)
        y = jax.tree_util.tree_map(jnp.asarray, y)
        n = _generic._check_inputs(params, x, y)
        keys = _leaf_keys(params)
        precond = None
        if metric is not None:
            m = _metric.check_metric(metric, params)
            plan = _metric.plan(one, params, x, y)
            if plan.custom:  # keep the custom rules: exact whatever they compute
                plan = _metric.plan(one, params, x, y, plan.custom)
            s1, s2, gsum, loss_sum, _, s1_plain = _metric.core(
                one, params, m, x, y, plan, _chunk(plan, params, n), plain=True)
            precond = _stats_of(s1, s2, n, keys, per_layer)
            if s1_plain is not None:  # one pass gave both: the plain S2 from the sum
                s2_plain = jax.tree_util.tree_map(lambda g: jnp.sum(g * g), gsum)
                grads = jax.tree_util.tree_map(lambda g: g / n, gsum)
                return loss_sum / n, grads, _stats_of(s1_plain, s2_plain, n, keys,
                                                      per_layer, precond)
        plan = _generic._plan(one, params, x, y)
        if plan.custom:
            plan = _generic._plan(one, params, x, y, plan.custom)
        s1, s2, gsum, loss_sum, _ = _generic._ghost_core(one, params, x, y, plan,
                                                         _chunk(plan, params, n))
        grads = jax.tree_util.tree_map(lambda g: g / n, gsum)
        return loss_sum / n, grads, _stats_of(s1, s2, n, keys, per_layer, precond)

    return f


class NoiseScaleState(NamedTuple):
    """State of :func:`noise_scale_ema`: step count and EMAs (not bias-corrected) of the mean
    squared per-example norm ``S1/n``, of ``S2/n²`` and of the unbiased ``G2``,
    ``trace_sigma``; ``last``: the latest step's :class:`DiversityStats`; ``layers``: None or
    ``{leaf key: (mean_sq, G2_plugin, G2, trace_sigma)}`` EMAs per leaf; ``precond``: None or
    the same EMAs of the statistics in the metric (a :class:`NoiseScaleState` whose ``last``
    and ``precond`` are None)."""

    count: jax.Array
    mean_sq: jax.Array
    G2_plugin: jax.Array
    G2: jax.Array
    trace_sigma: jax.Array
    last: DiversityStats
    layers: dict | None = None
    precond: "NoiseScaleState | None" = None


def _pieces(S1, S2, n):
    """``(S1/n, S2/n², G2, trace_sigma)``: the four averaged ingredients."""
    tb = _generic.two_batch_noise_scale(S1 / n, S2 / (n * n), 1, n)
    return (S1 / n, S2 / (n * n), tb["G2"], tb["trace_sigma"])


def noise_scale_ema(decay: float = 0.99, dtype=None, *, per_layer: bool = False,
                    precond: bool = False) -> optax.GradientTransformationExtraArgs:
    r"""Optax transformation keeping EMAs of the gradient-noise scale; updates pass unchanged.

    Call ``update(updates, state, params, diversity=stats)`` with the
    :class:`DiversityStats` of the step (from :func:`value_grad_and_diversity`); inside
    ``optax.chain`` the keyword reaches it and the other transformations ignore it. Read the
    estimates with :func:`noise_scale_estimates`.

    Args:
        decay: EMA decay :math:`\beta` in [0, 1).
        dtype: dtype of the state (default: the x64-aware float).
        per_layer: also keep EMAs per parameter leaf (the stats must carry ``layers``:
            ``value_grad_and_diversity(..., per_layer=True)``).
        precond: also keep EMAs of the statistics in a metric (from stats carrying
            ``precond``: ``f(params, x, y, metric=P)``, e.g. the Adam-preconditioned noise
            scale with ``P = numerics.adam_metric(opt_state)``); with ``per_layer``, per leaf
            too. Those EMAs advance only on steps whose stats carry ``precond`` (their own
            ``steps``), so the costlier metric pass may run every k-th step (a second jitted
            step function) while the plain statistics are taken at every step. Statistics
            the stats carry but these flags do not ask for are dropped.

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

    def zeros(params, dt, with_last):
        z = jnp.zeros((), dt)
        layers = None
        if per_layer:
            if params is None:
                raise ValueError("noise_scale_ema(per_layer=True) needs init(params)")
            layers = {k: (z, z, z, z) for k in _leaf_keys(params)}
        last = None
        if with_last:
            zl = None if layers is None else {k: {"S1": z, "S2": z} for k in layers}
            inner = (DiversityStats(*([z] * len(_SCALARS)), layers=zl) if precond else None)
            last = DiversityStats(*([z] * len(_SCALARS)), layers=zl, precond=inner)
        return NoiseScaleState(jnp.zeros((), jnp.int32), z, z, z, z, last, layers,
                               zeros(params, dt, False) if with_last and precond else None)

    def init(params):
        from ._precision import default_dtype
        return zeros(params, dtype or default_dtype(), True)

    def ema(old, new):
        return jax.tree_util.tree_map(lambda a, b: decay * a + (1 - decay) * b, old, new)

    def advance(state, st, dt):
        n = jnp.asarray(st.n, dt)
        pieces = _pieces(jnp.asarray(st.S1, dt), jnp.asarray(st.S2, dt), n)
        layers = None
        if per_layer:
            if st.layers is None:
                raise ValueError("noise_scale_ema(per_layer=True) needs per-layer stats: "
                                 "value_grad_and_diversity(loss, per_layer=True)")
            if set(st.layers) != set(state.layers):
                raise ValueError(f"per-layer stats keyed {sorted(st.layers)}, the state "
                                 f"{sorted(state.layers)}")
            layers = {k: ema(state.layers[k], _pieces(jnp.asarray(v["S1"], dt),
                                                      jnp.asarray(v["S2"], dt), n))
                      for k, v in st.layers.items()}
        return NoiseScaleState(state.count + 1, *ema(
            (state.mean_sq, state.G2_plugin, state.G2, state.trace_sigma), pieces),
            None, layers, None)

    def kept(st, dt, inner=False):
        """``st`` cast to the state's dtype, without what the flags do not keep."""
        cast = lambda t: jax.tree_util.tree_map(lambda v: jnp.asarray(v, dt), t)
        layers = cast(st.layers) if per_layer else None
        pre = kept(st.precond, dt, True) if precond and not inner else None
        return DiversityStats(*cast(tuple(st[:len(_SCALARS)])), layers=layers, precond=pre)

    def update(updates, state, params=None, *, diversity=None, **extra):
        del params, extra
        if diversity is None:
            raise ValueError("noise_scale_ema needs update(..., diversity=DiversityStats); "
                             "get it from numerics.value_grad_and_diversity")
        dt = state.mean_sq.dtype
        new = advance(state, diversity, dt)
        if not precond:
            return updates, new._replace(last=kept(diversity, dt))
        if diversity.precond is None:  # a step without the metric pass: those EMAs wait
            last = kept(diversity._replace(precond=state.last.precond), dt)
            return updates, new._replace(last=last, precond=state.precond)
        pre = advance(state.precond, diversity.precond, dt)
        return updates, new._replace(last=kept(diversity, dt), precond=pre)

    return optax.GradientTransformationExtraArgs(init, update)


def _find_state(opt_state):
    found = [s for s in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda s: isinstance(s, NoiseScaleState))
        if isinstance(s, NoiseScaleState)]
    if len(found) != 1:
        raise ValueError(f"expected one noise_scale_ema state in the optimiser state, "
                         f"found {len(found)}")
    return found[0]


def _ratios(mean_sq, g2_plugin, g2, trace_sigma):
    bound = mean_sq / g2_plugin
    return {"batch_size_bound": bound, "B_simple": bound - 1,
            "B_simple_unbiased": trace_sigma / g2}


def _estimates(s):
    out = _ratios(s.mean_sq, s.G2_plugin, s.G2, s.trace_sigma)
    if s.layers is not None:
        out["layers"] = {k: _ratios(*v) for k, v in s.layers.items()}
    return out


def noise_scale_estimates(opt_state) -> dict:
    r"""EMA estimates from a state holding one :func:`noise_scale_ema` (e.g. a chain's).

    Returns:
        ``batch_size_bound`` (:math:`B_S`, ratio of EMAs), ``B_simple`` (plug-in,
        :math:`B_S - 1`), ``B_simple_unbiased`` (ratio of the EMAs of McCandlish's unbiased
        :math:`\operatorname{tr}\Sigma` and :math:`|G|^2`), ``steps``, and ``last``: the latest
        step's :class:`DiversityStats` as a dict. With ``per_layer``: ``layers``, the same
        three ratios per leaf (``{leaf key: {...}}``); with ``precond``: ``precond``, the three
        ratios in the metric (e.g. :math:`B_\text{simple}^\text{Adam}`), with its ``layers``
        and ``steps`` (the steps that carried statistics in the metric).
    """
    s = _find_state(opt_state)
    out = _estimates(s)
    out.update(steps=s.count, last=s.last._asdict())
    if s.precond is not None:
        out["precond"] = dict(_estimates(s.precond), steps=s.precond.count)
    return out
