r"""The noise-scale prediction of the critical batch at a checkpoint, with its interval.

At parameters :math:`w` the training set's per-example gradients :math:`g_i` give, in a
metric :math:`P` (a positive diagonal; :math:`P = I` for SGD),

.. math::

    S_1 = \sum_i g_i^\top P g_i,\qquad S_2 = \Big(\sum_i g_i\Big)^\top P\Big(\sum_i g_i\Big),
    \qquad B_\text{simple} = \frac{\operatorname{tr}(P\Sigma)}{G^\top P G} = \frac{nS_1}{S_2} - 1,

the plug-in simple noise scale of McCandlish et al. (2018), which is *exact* for the
distribution the branches sample (batches drawn with replacement from these n examples),
and the unbiased two-batch estimator (batch sizes 1 and n), which treats the n examples as a
sample of a larger population. For Adam the metric is Adam's own,
:math:`P = \operatorname{diag}(1/(\sqrt{\hat v} + \epsilon))` with :math:`\hat v` the
bias-corrected second-moment estimate in the checkpoint's optimiser state
(:func:`numerics.adam_metric`): McCandlish's :math:`B_\text{noise} = \operatorname{tr}(H
\Sigma)/(G^\top H G)` for the preconditioned step :math:`-\eta P g` when :math:`H \approx
P^{-1}`. Per layer, the same with :math:`S_1, S_2` of that layer's parameters.

**Interval.** The plug-in value has no sampling error for the training distribution itself;
what it does carry is the error of the training set as a sample of the data distribution.
The n examples are cut into J blocks (a fixed random partition) and the delete-a-block
jackknife of :math:`\log B_\text{simple}` gives its standard error and a Student-t interval
with J − 1 degrees of freedom (on the linear scale when a leave-out value is not positive,
as the unbiased estimator can be).
"""

from __future__ import annotations

import math

import numpy as np

from theory import diversity

from ._fit import jackknife, t_quantile

PARTITION_SEED = 0


def _sq_norm(tree, metric=None) -> float:
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    if metric is None:
        return float(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in leaves))
    return float(sum(np.sum(np.asarray(p, np.float64) * np.square(np.asarray(a, np.float64)))
                     for a, p in zip(leaves, jax.tree_util.tree_leaves(metric))))


def _interval(full: float, loo: list, level: float) -> tuple:
    """(low, high, se, scale) of the delete-a-block jackknife of a statistic."""
    use_log = full > 0 and all(v > 0 for v in loo)
    f = math.log if use_log else (lambda v: v)
    se = jackknife(f(full), [f(v) for v in loo])
    if se is None:
        return None, None, None, None
    q = t_quantile(level, len(loo) - 1)
    if use_log:
        return math.exp(math.log(full) - q * se), math.exp(math.log(full) + q * se), se, "log"
    return full - q * se, full + q * se, se, "linear"


def block_noise_scale(loss_fn, params, x, y, *, blocks: int, metric=None,
                      level: float = 0.9) -> dict:
    """Plug-in and unbiased simple noise scale of ``(x, y)`` at ``params`` in ``metric``
    (None: Euclidean), their delete-a-block jackknife intervals, and per-layer plug-in
    values (module doc). ``loss_fn(params, x_i, y_i)`` is one example's loss."""
    import jax

    import numerics

    n = int(np.shape(jax.tree_util.tree_leaves(x)[0])[0])
    blocks = int(min(blocks, n))
    order = np.random.default_rng(PARTITION_SEED).permutation(n)
    parts = np.array_split(order, blocks)
    s1, gsum, layer_s1, counts = [], [], [], []
    for idx in parts:
        take = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], t)
        kw = {} if metric is None else {"metric": metric}
        out = numerics.gradient_diversity(loss_fn, params, take(x), take(y), **kw)
        s1.append(float(out["S1"]))
        layer_s1.append({k: float(v["S1"]) for k, v in out["layers"].items()})
        gsum.append(jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64),
                                           jax.device_get(out["grad_sum"])))
        counts.append(len(idx))
    add = lambda ts: jax.tree_util.tree_map(lambda *a: sum(a), *ts)
    G = add(gsum)

    def stats(n_, S1, Gs):
        return diversity(S1, _sq_norm(Gs, metric), n_)

    full = stats(n, sum(s1), G)
    loo = [stats(n - counts[j], sum(s1) - s1[j],
                 jax.tree_util.tree_map(lambda a, b: a - b, G, gsum[j]))
           for j in range(blocks)]
    res = {"n": n, "blocks": blocks, "level": level,
           "metric": "euclidean" if metric is None else "adam"}
    for key, name in (("B_simple", "B_simple"), ("B_simple_unbiased", "B_simple_unbiased")):
        value = float(full[key])
        lo, hi, se, scale = _interval(value, [float(d[key]) for d in loo], level)
        res.update({name: value, f"{name}_ci_low": lo, f"{name}_ci_high": hi,
                    f"{name}_se": se, f"{name}_se_scale": scale})
    res["S1"], res["S2"] = float(full["S1"]), float(full["S2"])
    # per layer: S1 from the blocks, S2 from the summed gradient of that leaf
    paths = list(layer_s1[0])
    g_leaves = jax.tree_util.tree_leaves(G)
    m_leaves = None if metric is None else jax.tree_util.tree_leaves(metric)
    res["layers"] = {}
    for i, k in enumerate(paths):
        S1k = sum(d[k] for d in layer_s1)
        p = 1.0 if m_leaves is None else np.asarray(m_leaves[i], np.float64)
        S2k = float(np.sum(p * np.square(g_leaves[i])))
        res["layers"][k] = float(diversity(S1k, S2k, n)["B_simple"]) if S2k > 0 else None
    return res


def predict(spec, start, w, optimizer: str, *, blocks: int, level: float = 0.9) -> dict:
    """The noise scales of a checkpoint ``start = (params, opt_state)`` of a spec net on the
    workload's training set: ``euclidean`` always, ``adam`` (Adam's metric) for Adam, and
    ``prediction``: the one in the optimiser's own metric (what the analysis compares with
    the measured critical batch)."""
    import numerics

    from ._train import _loss_from_output

    params, opt_state = start
    loss = w.loss

    def loss_fn(p, xi, yi):
        return _loss_from_output(numerics.apply(spec, p, xi), yi, loss)

    x = np.asarray(w.data.x, np.dtype(w.config.dtype))
    y = np.asarray(w.y_loss)
    out = {"euclidean": block_noise_scale(loss_fn, params, x, y, blocks=blocks, level=level)}
    if optimizer == "adam":
        metric = numerics.adam_metric(opt_state)
        out["adam"] = block_noise_scale(loss_fn, params, x, y, blocks=blocks, metric=metric,
                                        level=level)
    out["prediction"] = "adam" if optimizer == "adam" else "euclidean"
    return out


__all__ = ["block_noise_scale", "predict", "PARTITION_SEED"]
