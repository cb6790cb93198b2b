r"""Gradient statistics in a diagonal metric, and the metric of Adam's second moment.

With a pytree ``metric`` shaped like the parameters holding positive diagonal weights
:math:`P`, every statistic is measured in that metric:

.. math::

    S_1^P = \sum_i g_i^\top P g_i,\qquad
    S_2^P = \Big(\sum_i g_i\Big)^\top P \Big(\sum_i g_i\Big),\qquad
    B_\text{simple}^P = \frac{\operatorname{tr}(P\Sigma)}{G^\top P G}
    = \frac{n S_1^P}{S_2^P} - 1

(per leaf as well), so the plug-in, unbiased and :math:`B_S` formulas of :mod:`theory` apply
unchanged to :math:`S_1^P, S_2^P`.

**How, exactly and for any model: a reparametrisation.** With :math:`D = \sqrt P`, new
parameters :math:`u = w / D` and :math:`\ell^u(u; x, y) = \ell(u\odot D; x, y)`, the
per-example gradients in :math:`u` are :math:`D\odot g_i`, whose plain statistics are the
weighted ones above. The ghost tracer (:mod:`numerics._ghost`) sees :math:`u\odot D` as a
scaled view of the leaf (``View.scale``): bias and elementwise-scale leaves keep their fast
path, a weight consumed by ``dot_general`` (dense layers, attention projections, an RNN's
weights in ``scan``) takes the weighted dense form — for one position per example
:math:`\sum_{jk} P_{jk}(g_i)_{jk}^2 = (a_i^{2})^\top P\,(\delta_i^{2})`, one product the size
of the layer's; over a sequence the materialised per-example gradients, since a Gram form
cannot carry weights (:func:`numerics._ghost_norms.weighted_dense_sq_norms`) — and a leaf
consumed by a convolution or a lookup, or shared by several operations, takes the exact
per-example-copies / chunked ``vmap(grad)`` fallback (``paths`` says which).

**Adam** (:func:`adam_metric`): :math:`P = 1/(\sqrt{\hat v + \epsilon_\text{root}} +
\epsilon)` with :math:`\hat v = \nu/(1-\beta_2^t)` the bias-corrected second-moment estimate
of an ``optax.adam`` state after :math:`t` updates. The *Adam-preconditioned noise scale*
:math:`B_\text{simple}^\text{Adam} = \operatorname{tr}(P\Sigma)/(G^\top P G)` measures noise
and signal in the metric of Adam's second-moment estimate; it is McCandlish et al.'s
:math:`B_\text{noise} = \operatorname{tr}(H\Sigma)/(G^\top H G)` for the preconditioned update
:math:`-\eta P g` when the Hessian :math:`H\approx P^{-1}` (the preconditioned problem then has
Hessian :math:`\approx I` and gradient covariance :math:`D\Sigma D`).
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np


def check_metric(metric, params, *, check_values: bool = True):
    """The metric's leaves (a list, ``tree_leaves(params)`` order), validated.

    Raises ValueError on a tree structure or leaf shape other than ``params``'s and, when the
    values are concrete and ``check_values``, on non-positive or non-finite weights."""
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    try:
        m_leaves = p_def.flatten_up_to(metric)
    except (ValueError, TypeError) as e:
        raise ValueError(f"metric must be a pytree shaped like params: {e}".split("\n")[0]) \
            from None
    out = []
    for path_leaf, p, m in zip(jax.tree_util.tree_flatten_with_path(params)[0], p_leaves,
                               m_leaves):
        name = jax.tree_util.keystr(path_leaf[0])
        m = jnp.asarray(m) if not isinstance(m, jax.Array) else m
        if tuple(m.shape) != tuple(jnp.shape(p)):
            raise ValueError(f"metric{name} has shape {tuple(m.shape)}, params{name} has "
                             f"{tuple(jnp.shape(p))}")
        if not jnp.issubdtype(m.dtype, jnp.floating) and not jnp.issubdtype(m.dtype,
                                                                             jnp.integer):
            raise ValueError(f"metric{name} is not real ({m.dtype})")
        a = _concrete(m) if check_values else None
        if a is not None:
            if a.size and not (np.all(np.isfinite(a)) and np.all(a > 0)):
                raise ValueError(f"metric{name} must be positive and finite, got min "
                                 f"{np.nanmin(a) if not np.all(np.isnan(a)) else np.nan} "
                                 f"(NaN: {bool(np.any(np.isnan(a)))})")
        out.append(m.astype(jnp.result_type(p)))
    return out


def _concrete(a):
    """``a`` as a numpy array, or None when it is traced (inside ``jit``)."""
    try:
        return np.asarray(a)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return None


def reparametrise(loss_fn, params, metric_leaves):
    r"""``(loss_u, u, D)``: :math:`\ell^u(u) = \ell(u\odot D)`, :math:`u = w/D`,
    :math:`D = \sqrt P` (leaves in ``tree_leaves(params)`` order), traceable."""
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    d = [jnp.sqrt(m) for m in metric_leaves]
    u = jax.tree_util.tree_unflatten(p_def, [a / s for a, s in zip(p_leaves, d)])
    d_tree = jax.tree_util.tree_unflatten(p_def, d)
    return _Reparam(loss_fn, d_tree), u, d_tree


def _find(tree, pred):
    """Nodes of ``tree`` (tuples, lists, dicts, NamedTuples, optax states) satisfying ``pred``,
    with the ``hyperparams`` of the innermost ``inject_hyperparams`` state around each."""
    found = []

    def walk(node, hyper):
        if pred(node):
            found.append((node, hyper))
            return
        if hasattr(node, "hyperparams") and hasattr(node, "inner_state"):
            walk(node.inner_state, dict(node.hyperparams))
            return
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, (tuple, list)):
            children = list(node)
        else:
            return
        for c in children:
            walk(c, hyper)

    walk(tree, {})
    return found


def adam_metric(opt_state, *, b2=None, eps=None, eps_root=None):
    r"""Adam's preconditioner :math:`P = 1/(\sqrt{\hat v + \epsilon_\text{root}} + \epsilon)`
    from an optax state (a pytree shaped like the parameters), jittable.

    :math:`\hat v = \nu/(1-\beta_2^t)` is the bias-corrected second moment of the state's
    ``optax.ScaleByAdamState`` after :math:`t` = its ``count`` updates (:math:`\hat v = 0` at
    :math:`t = 0`, where the metric is uniform). Works on ``optax.adam`` / ``adamw`` states,
    ``optax.inject_hyperparams(optax.adam)`` (whose injected ``b2``, ``eps``, ``eps_root`` are
    read from the state) and chains holding one of them.
    For trials stacked on a leading axis (one state per trial), call it inside ``jax.vmap``.

    With it, :func:`numerics.gradient_diversity` (``metric=``) and
    :func:`numerics.value_grad_and_diversity` give the **Adam-preconditioned noise scale**:
    noise and signal measured in the metric of Adam's second-moment estimate,
    :math:`B_\text{simple}^\text{Adam} = \operatorname{tr}(P\Sigma)/(G^\top P G)`, which is
    McCandlish's :math:`B_\text{noise} = \operatorname{tr}(H\Sigma)/(G^\top H G)` for the
    preconditioned update :math:`-\eta P g` when the Hessian :math:`H \approx P^{-1}`.

    Args:
        opt_state: the optimiser state.
        b2, eps, eps_root: Adam's; default: the injected hyperparameters when the state has
            them, else optax's defaults (0.999, 1e-8, 0). Pass them when ``optax.adam`` was
            built with other values (a plain Adam state does not store them).

    Raises:
        ValueError: when the state holds no, or more than one, ``ScaleByAdamState``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> state = optax.adam(0.1, eps=1e-3).init({"w": jnp.zeros(2)})
        >>> adam_metric(state, eps=1e-3)["w"].tolist()  # no step yet: the uniform 1/eps
        [1000.0, 1000.0]
    """
    import optax

    found = _find(opt_state, lambda s: isinstance(s, optax.ScaleByAdamState))
    if len(found) != 1:
        raise ValueError(f"adam_metric needs exactly one optax ScaleByAdamState in the state, "
                         f"found {len(found)}")
    state, hyper = found[0]
    pick = lambda given, name, default: (given if given is not None
                                         else hyper.get(name, default))
    b2, eps, eps_root = (pick(b2, "b2", 0.999), pick(eps, "eps", 1e-8),
                         pick(eps_root, "eps_root", 0.0))
    t = jnp.asarray(state.count)

    def one(nu):
        dt = nu.dtype
        corr = 1 - jnp.asarray(b2, dt) ** t.astype(dt)
        v_hat = jnp.where(t > 0, nu / jnp.where(t > 0, corr, 1), jnp.zeros_like(nu))
        return 1 / (jnp.sqrt(v_hat + jnp.asarray(eps_root, dt)) + jnp.asarray(eps, dt))

    return jax.tree_util.tree_map(one, state.nu)


@functools.lru_cache(maxsize=256)
def _plan_cached(loss_fn, pkey, xkey, ykey, force):
    """The ghost plan of the reparametrised loss (structural: the same for every metric, so
    traced once with :math:`D = 1`)."""
    from . import _generic

    pdef, pav = pkey
    ones = jax.tree_util.tree_unflatten(pdef, [np.ones(s, dt) for s, dt in pav])
    loss_u = _Reparam(loss_fn, ones)
    return _generic._plan_cached.__wrapped__(loss_u, pkey, xkey, ykey, force)


class _Reparam:
    """:math:`\\ell^u(u; x, y) = \\ell(u\\odot D; x, y)`."""

    def __init__(self, loss_fn, d_tree):
        self.loss_fn, self.d_tree = loss_fn, d_tree

    def __call__(self, u, xi, yi):
        return self.loss_fn(jax.tree_util.tree_map(operator.mul, u, self.d_tree), xi, yi)


def plan(loss_fn, params, x, y, no_inline=()):
    """The cached ghost plan of ``loss_fn`` reparametrised by a metric (any metric)."""
    from . import _generic

    return _plan_cached(loss_fn, _generic._key(params), _generic._key(x), _generic._key(y),
                        tuple(no_inline))


def core(loss_fn, params, metric_leaves, x, y, plan_, chunk, method="ghost", plain=False):
    """Traceable: per-leaf :math:`S_1^P, S_2^P`, the plain summed gradient, the loss sum and
    the custom-rule check (as :func:`numerics._generic._ghost_core`); with ``plain`` (ghost
    method) a sixth output, the per-leaf plain :math:`S_1` from the same pass (None when some
    leaf's form cannot give it)."""
    from . import _generic

    loss_u, u, d_tree = reparametrise(loss_fn, params, metric_leaves)
    s1_plain = None
    if method == "vmap":
        s1, s2, gsum_u = _generic._vmap_sums(loss_u, u, x, y, chunk)
        loss_sum, check = None, None
    elif plain:
        s1, s2, gsum_u, loss_sum, check, s1_plain = _generic._ghost_core(
            loss_u, u, x, y, plan_, chunk, unscale=jax.tree_util.tree_leaves(d_tree))
    else:
        s1, s2, gsum_u, loss_sum, check = _generic._ghost_core(loss_u, u, x, y, plan_, chunk)
    gsum = jax.tree_util.tree_map(lambda g, d: g / d, gsum_u, d_tree)
    if plain:
        return s1, s2, gsum, loss_sum, check, s1_plain
    return s1, s2, gsum, loss_sum, check


_core_jit = functools.partial(jax.jit, static_argnames=("loss_fn", "plan_", "chunk", "method"))(
    core)


def per_leaf_sums(loss_fn, params, x, y, metric, *, method, chunk_size):
    """:func:`numerics._generic._per_leaf_sums` in the metric (inputs already checked)."""
    from . import _generic

    m = check_metric(metric, params)
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    keys = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if method == "vmap":
        chunk = (_generic.default_chunk(params, n) if chunk_size is None
                 else int(min(chunk_size, n)))
        s1, s2, gsum, _, _ = _core_jit(loss_fn, params, m, x, y, None, chunk, "vmap")
        return s1, s2, gsum, {k: "vmap" for k in keys}
    return _generic.ghost_until_exact(
        lambda force: plan(loss_fn, params, x, y, force),
        lambda plan_, chunk: _core_jit(loss_fn, params, m, x, y, plan_, chunk),
        params, n, chunk_size, keys)
