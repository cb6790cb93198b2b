r"""Gradient diversity of ANY JAX model: ghost norms in one backward pass, with an exact
chunked ``vmap(grad)`` fallback per leaf.

``method="ghost"`` (the default) traces the per-example loss and takes every parameter leaf
through :mod:`numerics._ghost` in one batched backward pass (recognised operations without
per-example gradients; tied weights, parameter-only terms and unrecognised uses with only
those leaves' per-example gradients); leaves whose per-example gradients would not fit in
``CHUNK_BYTES``, and every leaf with ``method="vmap"``, take the reference path: the examples are processed ``chunk_size`` at a time inside one
``lax.scan``, only one chunk of per-example gradients (``chunk_size`` × those parameters) is
alive at once, and the running sums :math:`S_1` (per leaf) and :math:`\sum_i g_i` are carried.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import diversity

from . import _ghost, _ghost_norms, _tune
from ._stats import check_values, is_traced

#: Default memory bound for one chunk of per-example gradients (bytes).
CHUNK_BYTES = 1 << 28
#: Relative difference (global norm) between the summed gradient with custom_jvp/vjp bodies
#: inlined and the one under the custom rules, per dtype, above which the rules are kept and
#: the leaves entering them take vmap(grad). Two evaluations of the same gradient in another
#: operation order agree to ~1e-6 (float32) / ~1e-15 (float64) relative; a rule that is not the
#: primal's gradient (straight-through, clipping) differs by far more.
CUSTOM_RULE_RTOL = {"float32": 1e-4, "float64": 1e-9}
METHODS = ("ghost", "vmap")


def _pad(tree, n_pad):
    return jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[:1], n_pad, axis=0)]) if n_pad else a, tree)


def _vmap_sums(loss_fn, params, x, y, chunk):
    """Traceable reference: per-leaf S1, S2 and the summed gradient by chunked vmap(grad)."""
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    m = -(-n // chunk)
    n_pad = m * chunk - n
    x, y = _pad(x, n_pad), _pad(y, n_pad)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    mask = (jnp.arange(m * chunk) < n).astype(dtype)
    split = lambda a: a.reshape((m, chunk) + a.shape[1:])
    xs, ys, ms = jax.tree_util.tree_map(split, x), jax.tree_util.tree_map(split, y), split(mask)
    per_ex = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))

    def body(carry, batch):
        s1, gsum = carry
        xb, yb, mb = batch
        g = per_ex(params, xb, yb)
        sq = jax.tree_util.tree_map(
            lambda a: jnp.sum((a * a).reshape(chunk, -1), axis=1), g)
        s1 = jax.tree_util.tree_map(lambda s, q: s + jnp.sum(mb.astype(q.dtype) * q), s1, sq)
        gsum = jax.tree_util.tree_map(
            lambda s, a: s + jnp.tensordot(mb.astype(a.dtype), a, axes=1), gsum, g)
        return (s1, gsum), None

    zero_s = jax.tree_util.tree_map(lambda p: jnp.zeros((), p.dtype), params)
    zero_g = jax.tree_util.tree_map(jnp.zeros_like, params)
    (s1, gsum), _ = jax.lax.scan(body, (zero_s, zero_g), (xs, ys, ms))
    s2 = jax.tree_util.tree_map(lambda g: jnp.sum(g * g), gsum)
    return s1, s2, gsum


_sums = partial(jax.jit, static_argnames=("loss_fn", "chunk"))(_vmap_sums)


def default_chunk(params, n: int, max_bytes: int = CHUNK_BYTES) -> int:
    """Largest chunk whose per-example gradients fit in ``max_bytes`` (at least 1, at most n)."""
    leaves = jax.tree_util.tree_leaves(params)
    nbytes = sum(int(np.prod(p.shape)) * jnp.dtype(p.dtype).itemsize for p in leaves)
    return int(max(1, min(n, max_bytes // max(nbytes, 1))))


def _structs(tree, drop_lead=False):
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape[1:] if drop_lead else a.shape, a.dtype), tree)


def _key(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(a.shape), a.dtype) for a in leaves)


@functools.lru_cache(maxsize=256)
def _plan_cached(loss_fn, pkey, xkey, ykey, force):
    (pdef, pav), (xdef, xav), (ydef, yav) = pkey, xkey, ykey
    mk = lambda d, av, lead: jax.tree_util.tree_unflatten(
        d, [jax.ShapeDtypeStruct(s[lead:], dt) for s, dt in av])
    p, x1, y1 = mk(pdef, pav, 0), mk(xdef, xav, 1), mk(ydef, yav, 1)
    closed = _ghost.trace(loss_fn, p, x1, y1)
    xy = jax.tree_util.tree_leaves((x1, y1))
    return _ghost.analyse(closed, len(pav), jax.tree_util.tree_leaves(p), xy, force)


def _plan(loss_fn, params, x, y, no_inline=()) -> _ghost.Plan:
    """The cached plan; ``no_inline``: leaves whose custom_jvp/vjp rules are kept."""
    return _plan_cached(loss_fn, _key(params), _key(x), _key(y), tuple(no_inline))


def ghost_plan(loss_fn, params, x, y, *, batched: bool = False,
               tune: bool = False) -> _ghost.Plan:
    """Which path each parameter leaf takes, without computing anything (shapes only; with
    ``tune=True`` the forms chosen by timing the program on these arrays, as
    ``gradient_diversity(..., tune=True)`` uses them).

    Arguments as for :func:`gradient_diversity`. Returns a :class:`numerics._ghost.Plan`;
    ``plan.paths`` lists each leaf's path in ``jax.tree_util.tree_leaves(params)`` order
    (``gradient_diversity(...)["paths"]`` gives the same keyed by leaf; there a custom_jvp/vjp
    body whose rule differs from its primal's gradient also sends its leaves to ``vmap``).

    Example:
        >>> import jax.numpy as jnp
        >>> loss = lambda p, x, y: (jnp.tanh(p["w"] @ x) @ (p["w"] @ x) - y) ** 2
        >>> ghost_plan(loss, {"w": jnp.ones((2, 3))}, jnp.ones((4, 3)), jnp.ones(4)).paths
        ('shared-ghost (2 uses: dense, dense)',)
        >>> sine = lambda p, x, y: (jnp.sin(p["w"]) @ x).sum() - y
        >>> ghost_plan(sine, {"w": jnp.ones((2, 3))}, jnp.ones((4, 3)), jnp.ones(4)).paths
        ('vmap: used by dot_general (through a parameter-only value)',)
    """
    if batched:
        loss_fn = _one_example(loss_fn)
    x = jax.tree_util.tree_map(jnp.asarray, x)
    y = jax.tree_util.tree_map(jnp.asarray, y)
    _check_inputs(params, x, y)
    if tune:
        return _tuned_plan(loss_fn, params, x, y)
    return _plan(loss_fn, params, x, y)


def _tuned_plan(loss_fn, params, x, y, no_inline=()) -> _ghost.Plan:
    """The plan with each dense / conv leaf's form chosen by the measured time of the whole
    compiled program on these arrays (:mod:`numerics._tune`), cached like :func:`_plan`."""
    key = (loss_fn, _key(params), _key(x), _key(y), tuple(no_inline))
    hit = _TUNED.get(key)
    if hit is None:
        plan = _plan(loss_fn, params, x, y, no_inline)
        n = jax.tree_util.tree_leaves(x)[0].shape[0]
        leaves = jax.tree_util.tree_leaves(params)
        chunk = default_chunk([leaves[k] for k in plan.fallback], n)

        compiled = {}

        def make(pl):
            if id(pl) not in compiled:  # the current best is compiled once
                compiled[id(pl)] = (pl, jax.jit(ghost_program(loss_fn, pl, chunk))
                                    .lower(params, x, y).compile())
            return compiled[id(pl)][1]

        def compare(a, b):
            return _tune.paired_seconds(lambda: make(a), lambda: make(b), (params, x, y))

        if len(_TUNED) >= 256:
            _TUNED.clear()
        hit = _TUNED[key] = _tune.tune(plan, compare)
    return hit


_TUNED = {}


def _site_sq_norms(site, aux, delta, leaf, mode, want_sum):
    """n squared per-example gradient norms of ``leaf`` from its one recognised operation, and
    (with ``want_sum`` and a materialised form) its summed gradient, else None."""
    view = site.view
    if site.kind == "dense" and site.info.get("weighted"):
        # leaf ⊙ s then norm-preserving views (a signed permutation: abs undoes a neg):
        # weights s² in the operand's layout
        sq, g = _ghost_norms.weighted_dense_sq_norms(
            aux, delta, site.info["dn"], site.info["side"], mode, jnp.abs(view.fn(view.scale)),
            site.info["shape"] if want_sum else None, site.info["steps"])
    elif site.kind == "dense":
        sq, g = _ghost_norms.dense_sq_norms(aux, delta, site.info["dn"], site.info["side"],
                                            mode, site.info["shape"] if want_sum else None,
                                            site.info["steps"])
    elif site.kind == "conv":
        sq, g = _ghost_norms.conv_sq_norms(aux, delta, site.info["params"],
                                           site.info["kernel_shape"], mode,
                                           want_sum, site.info["steps"])
    elif site.kind == "embedding":
        sq, g = _ghost_norms.selection_sq_norms(aux, delta, mode, site.info["shape"],
                                                site.info.get("rows"), site.info["steps"])
    else:
        view_t = None if view.preserving else (lambda g: jax.vjp(view.fn, leaf)[1](g)[0])
        x = aux if site.kind == "scale" else None
        return _ghost_norms.elementwise_sq_norms(delta, x, site.info["shape"], view_t), None
    if g is not None:
        g = jax.vjp(view.fn, leaf)[1](g.astype(leaf.dtype))[0]
    return sq, g


def _site_plain_sq_norms(site, aux, delta, leaf, mode, d):
    """Per-example squared norms of the plain gradients :math:`g_i` of a leaf seen through
    the metric's scaling (``leaf ⊙ d`` then preserving views, :mod:`numerics._metric`): the
    unweighted dense form, or the elementwise gradients divided by ``d``."""
    if site.kind == "dense" and site.info.get("weighted"):
        return _ghost_norms.dense_sq_norms(aux, delta, site.info["dn"], site.info["side"],
                                           mode, None, site.info["steps"])[0]
    if site.kind in ("bias", "scale"):
        back = jax.vjp(site.view.fn, leaf)[1]
        view_t = lambda g: back(g)[0] / d
        x = aux if site.kind == "scale" else None
        return _ghost_norms.elementwise_sq_norms(delta, x, site.info["shape"], view_t)
    # an unscaled leaf (preserving view): plain and weighted are the same gradients
    return _site_sq_norms(site, aux, delta, leaf, mode, False)[0]


def _site_grads(site, aux, delta, leaf):
    """Per-example gradients ``(n, *leaf.shape)`` of ``leaf`` from one of its operations."""
    info = site.info
    if site.kind == "dense":
        g = _ghost_norms.dense_grads(aux, delta, info["dn"], info["side"], info["shape"],
                                     info["steps"])
    elif site.kind == "conv":
        g = _ghost_norms.conv_grads(aux, delta, info["params"], info["kernel_shape"],
                                    info["steps"])
    elif site.kind == "embedding":
        g = _ghost_norms.selection_grads(aux, delta, info["shape"])
    else:
        g = _ghost_norms.elementwise_grads(delta, aux if site.kind == "scale" else None,
                                           info["shape"])
    if site.view.preserving and g.shape[1:] == leaf.shape and site.view.fn(leaf) is leaf:
        return g.astype(leaf.dtype)
    back = lambda gi: jax.vjp(site.view.fn, leaf)[1](gi.astype(leaf.dtype))[0]
    return jax.vmap(back)(g)


def _ghost_core(loss_fn, params, x, y, plan, chunk, unscale=None):
    """Traceable: per-leaf S1, S2, the summed gradient, the loss sum and the custom-rule check.

    ``unscale`` (the metric's reparametrisation, :mod:`numerics._metric`: ``loss_fn`` takes
    ``u`` with ``w = u ⊙ D``, ``unscale`` the leaves of ``D``): a sixth output, the per-leaf
    S1 of the *plain* gradients :math:`g_i = (D ⊙ g_i)/D` from the same pass, or None when
    a leaf's form cannot give it (a chunked ``vmap(grad)`` leaf).

    One ``jax.vjp`` of the summed loss with respect to: the leaves (less those in
    ``plan.skip``, whose summed gradient comes with their norms), zero probes at the outputs of
    the recognised operations, a second copy of the leaves for their example-independent terms
    (``plan.const``) and per-example copies of the fallback leaves (when they fit in
    ``CHUNK_BYTES``; else those take the chunked ``vmap(grad)``).
    """
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    closed = _ghost.trace(loss_fn, _structs(params), _structs(x, True), _structs(y, True))
    n_params = len(p_leaves)
    xy = jax.tree_util.tree_leaves((x, y))
    probed = plan.site_ids
    probes = {sid: jnp.zeros((n,) + shape, dtype) for sid, _, shape, dtype, _ in plan.sites
              if sid in probed}
    fb, multi = list(plan.fallback), list(plan.multi)
    nbytes = lambda ks: n * sum(p_leaves[k].size * p_leaves[k].dtype.itemsize for k in ks)
    if nbytes(fb + multi) <= CHUNK_BYTES:
        copies, chunked = fb, []
    else:  # per-example gradients of these leaves do not fit: chunked vmap(grad)
        copies, chunked, multi = [], fb + multi, []
    skip, const = set(plan.skip) - set(chunked), list(plan.const)
    diff = [k for k in range(n_params) if k not in skip and k not in copies]
    seen = []

    def one(pd, pr, xyl, pa, pc):
        leaves = list(p_leaves)
        for k, a in zip(diff, pd):
            leaves[k] = a
        for k, a in zip(copies, pc):
            leaves[k] = a
        ctx = _ghost.Context(plan=probed, probes=pr, no_inline=frozenset(plan.no_inline),
                             data_only=frozenset(a for a, _ in plan.alias),
                             const=frozenset(const), a_leaves=dict(zip(const, pa)),
                             scan_ranges=list(plan.scan_ranges))
        seen.append(ctx)
        return _ghost.run(closed, n_params, leaves, xyl, ctx), ctx.aux

    def total(pd, pr, pa, pc):
        losses, aux = jax.vmap(one, in_axes=(None, 0, 0, None, 0))(pd, pr, xy, pa, pc)
        return jnp.sum(losses), aux

    per_ex = [jnp.broadcast_to(p_leaves[k], (n,) + p_leaves[k].shape) for k in copies]
    loss_sum, vjp_fn, aux = jax.vjp(total, [p_leaves[k] for k in diff], probes,
                                    [p_leaves[k] for k in const], per_ex, has_aux=True)
    g_diff, deltas, g_const, g_copies = vjp_fn(jnp.ones_like(loss_sum))
    deltas = dict(deltas)
    for a, t in plan.alias:  # x @ W + b: the product's output cotangent is the sum's
        deltas[a] = deltas[t]
    sites = seen[-1].sites
    s1 = [jnp.zeros((), a.dtype) for a in p_leaves]
    gsum = [jnp.zeros_like(a) for a in p_leaves]
    for k, g in zip(diff, g_diff):
        gsum[k] = g
    plain = None if unscale is None else [jnp.zeros((), a.dtype) for a in p_leaves]
    for k, g in zip(copies, g_copies):
        s1[k] = jnp.sum(g * g).astype(p_leaves[k].dtype)
        gsum[k] = _ghost_norms.sum_examples(g)
        if plain is not None:
            plain[k] = jnp.sum((g / unscale[k][None]) ** 2).astype(p_leaves[k].dtype)
    shared, factored, per_example = {}, {}, []
    for sid, leaf, _, _, mode in plan.sites:
        if leaf in chunked:
            continue
        if leaf in plan.cross:
            factored.setdefault(leaf, []).append(
                _ghost_norms.cross_factors(sites[sid], aux[sid], deltas[sid], mode,
                                           p_leaves[leaf].shape))
            continue
        if leaf in multi:
            g = _site_grads(sites[sid], aux[sid], deltas[sid], p_leaves[leaf])
            shared[leaf] = g if leaf not in shared else shared[leaf] + g
            continue
        sq, g = _site_sq_norms(sites[sid], aux[sid], deltas[sid], p_leaves[leaf], mode,
                               leaf in skip)
        per_example.append((leaf, sq))
        if plain is not None:
            plain[leaf] = jnp.sum(_site_plain_sq_norms(
                sites[sid], aux[sid], deltas[sid], p_leaves[leaf], mode,
                unscale[leaf])).astype(p_leaves[leaf].dtype)
        if leaf in skip:
            gsum[leaf] = g
    if per_example:  # every leaf's sum over the examples as one product (one operation)
        dt = _common_float([sq for _, sq in per_example])
        tot = _ghost_norms.sum_examples(jnp.stack([sq.astype(dt) for _, sq in per_example], 1))
        for j, (leaf, _) in enumerate(per_example):
            s1[leaf] = tot[j].astype(p_leaves[leaf].dtype)
    for leaf, facs in factored.items():
        s1[leaf] = jnp.sum(_ghost_norms.cross_sq_norms(facs)).astype(p_leaves[leaf].dtype)
        if plain is not None:  # cross forms need preserving views: unscaled leaves only
            plain[leaf] = s1[leaf]
    for leaf, g in shared.items():
        s1[leaf] = jnp.sum(g * g).astype(p_leaves[leaf].dtype)
        gsum[leaf] = _ghost_norms.sum_examples(g)
        if plain is not None:
            plain[leaf] = jnp.sum((g / unscale[leaf][None]) ** 2).astype(p_leaves[leaf].dtype)
    for k, ga in zip(const, g_const):  # g_i = h_i + c with c = ga / n: closed form of S1
        if k not in chunked:
            c = ga / n
            s1[k] = s1[k] + 2 * jnp.sum(gsum[k] * c) + n * jnp.sum(c * c)
            if plain is not None:
                d = unscale[k]
                plain[k] = plain[k] + 2 * jnp.sum(gsum[k] * c / (d * d)) \
                    + n * jnp.sum((c / d) ** 2)
        gsum[k] = gsum[k] + ga
    if chunked:
        def loss_fb(pf, xi, yi):
            leaves = list(p_leaves)
            for k, a in zip(chunked, pf):
                leaves[k] = a
            return loss_fn(jax.tree_util.tree_unflatten(p_def, leaves), xi, yi)

        s1_fb, _, _ = _vmap_sums(loss_fb, [p_leaves[k] for k in chunked], x, y, chunk)
        for k, v in zip(chunked, s1_fb):
            s1[k] = v
    s2 = _ghost_norms.sq_norms(gsum)
    check = jnp.zeros((), loss_sum.dtype)
    if plan.custom:  # compare with the summed gradient under the custom rules
        true = jax.grad(lambda pl: jnp.sum(jax.vmap(
            lambda xi, yi: loss_fn(jax.tree_util.tree_unflatten(p_def, pl), xi, yi))(x, y)))(
                p_leaves)
        diff_sq = sum(jnp.sum((a - b) ** 2) for a, b in zip(gsum, true))
        ref = sum(jnp.sum(b * b) for b in true)
        check = jnp.sqrt(diff_sq / jnp.maximum(ref, jnp.finfo(ref.dtype).tiny))
    unflat = lambda v: jax.tree_util.tree_unflatten(p_def, v)
    if unscale is not None:
        return (unflat(s1), unflat(s2), unflat(gsum), loss_sum, check,
                None if chunked else unflat(plain))
    return unflat(s1), unflat(s2), unflat(gsum), loss_sum, check


_ghost_sums = partial(jax.jit, static_argnames=("loss_fn", "plan", "chunk"))(_ghost_core)


def _check_inputs(params, x, y):
    xs, ys = jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)
    if not xs:
        raise ValueError("x has no arrays")
    n = xs[0].shape[0] if xs[0].ndim else None
    if n is None or any(a.ndim == 0 or a.shape[0] != n for a in xs + ys):
        raise ValueError("x and y must hold the examples along axis 0 of every array, got "
                         f"shapes {[a.shape for a in xs]} and {[a.shape for a in ys]}")
    if n == 0:
        raise ValueError("gradient_diversity needs at least one example")
    dtype = lambda a: a.dtype if hasattr(a, "dtype") else jnp.result_type(a)
    if all(jnp.issubdtype(dtype(a), jnp.floating) for a in jax.tree_util.tree_leaves(params)):
        return n  # the common case, without flattening the paths
    for path, a in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not jnp.issubdtype(dtype(a), jnp.floating):
            raise ValueError(f"parameter {jax.tree_util.keystr(path)} is not floating "
                             f"({dtype(a)}); pass only trainable float arrays")
    return n


def _per_leaf_sums(loss_fn, params, x, y, *, method="ghost", chunk_size=None, batched=False,
                   metric=None, tune=False):
    r"""Per-leaf :math:`S_1, S_2`, :math:`\sum_i g_i` and the paths.

    The eager core of :func:`gradient_diversity`; arguments as there. Returns
    ``(s1, s2, grad_sum, paths)``: the first three shaped like ``params``, ``paths`` a dict
    keyed like ``gradient_diversity``'s ``layers``; with ``metric`` :math:`S_1, S_2` in that
    metric (:mod:`numerics._metric`), ``grad_sum`` the plain :math:`\sum_i g_i`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if batched:
        loss_fn = _one_example(loss_fn)
    x, y = _as_arrays(x), _as_arrays(y)
    n = _check_inputs(params, x, y)
    finite = _check_finite_later(x, y)
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if tune and (metric is not None or method != "ghost"):
        raise ValueError("tune=True chooses the ghost forms: it needs method='ghost' and no "
                         "metric")
    if metric is not None or method == "vmap":
        finite.start()
    if metric is not None:
        from . import _metric
        out = _metric.per_leaf_sums(loss_fn, params, x, y, metric, method=method,
                                    chunk_size=chunk_size)
        finite()
        return out
    keys = _leaf_keys(params)
    if method == "vmap":
        chunk = default_chunk(params, n) if chunk_size is None else int(min(chunk_size, n))
        s1, s2, gsum = _sums(loss_fn, params, x, y, chunk)
        finite()
        return s1, s2, gsum, {k: "vmap" for k in keys}
    plan_of = _tuned_plan if tune else _plan
    return ghost_until_exact(lambda force: plan_of(loss_fn, params, x, y, force),
                             lambda plan, chunk: _ghost_fn(loss_fn, plan, chunk)(params, x, y),
                             params, n, chunk_size, keys, finite)


def _leaf_keys(params):
    """``keystr`` of every leaf's path, cached by the tree structure."""
    treedef = jax.tree_util.tree_structure(params)
    keys = _LEAF_KEYS.get(treedef)
    if keys is None:
        if len(_LEAF_KEYS) >= 256:
            _LEAF_KEYS.clear()
        keys = _LEAF_KEYS[treedef] = [
            jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return keys


_LEAF_KEYS = {}


def ghost_until_exact(plan_of, run, params, n, chunk_size, keys, after=lambda flags=None: None):
    """Run the ghost sums of ``plan_of(force)`` (``run(plan, chunk)``), and again with the
    custom_jvp/vjp rules bound (``force``) while the summed gradient disagrees with the
    rules' (:data:`CUSTOM_RULE_RTOL`); returns ``(s1, s2, grad_sum, paths)``.
    ``after(flags)`` runs after each pass (the deferred NaN/inf check of the data). ``run``
    returns ``(s1, s2, grad_sum, loss_sum, check)``, or a :class:`Packed` read with one
    transfer: S1 and S2 then come back as host scalars, ``flags`` is the vector's tail (else
    None)."""
    force = ()
    while True:
        plan = plan_of(force)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        fb = [leaves[k] for k in plan.fallback]
        chunk = (default_chunk(fb, n) if chunk_size is None else int(min(chunk_size, n)))
        out = run(plan, chunk)
        if isinstance(out, Packed):  # S1, S2 per leaf in the leaf's dtype (as _ghost_core)
            host, L = np.asarray(out.vector), len(leaves)
            gsum = out.grad_sum
            unflat = lambda v, dts: jax.tree_util.tree_unflatten(
                treedef, [np.asarray(a, dt) for a, dt in zip(v, dts)])
            s1 = unflat(host[:L], [a.dtype for a in leaves])
            s2 = unflat(host[L:2 * L], [g.dtype for g in jax.tree_util.tree_leaves(gsum)])
            check, check_dtype = host[2 * L], out.vector.dtype
            after(host[2 * L + 1:] > 0)
        else:
            s1, s2, gsum, _, check = out
            check_dtype = check.dtype
            after()
        rtol = CUSTOM_RULE_RTOL.get(str(check_dtype), 1e-4)
        if not plan.custom or float(check) <= rtol:
            return s1, s2, gsum, dict(zip(keys, plan.paths))
        force = tuple(sorted(set(force) | set(plan.custom)))


def _as_arrays(tree):
    """``jnp.asarray`` of every leaf that is not already a jax array (no dispatch for those)."""
    return jax.tree_util.tree_map(lambda a: a if isinstance(a, jax.Array) else jnp.asarray(a),
                                  tree)


class Packed(NamedTuple):
    """What the public call's compiled program returns: the summed gradient and one vector of
    what the host reads (:func:`_stats_vector`). Per-leaf scalars as separate outputs would
    cost XLA an operation each (a slice into its own buffer), and the loss sum, which the call
    does not report, three more (5-15% of a small model's backward on CPU, measured)."""
    grad_sum: object
    vector: jax.Array


def _ghost_fn(loss_fn, plan, chunk):
    """The jitted ghost sums for one (loss, plan, chunk), found by identity: the plan comes
    from the plan cache, so a repeated call neither hashes the plan nor re-traces. It
    returns a :class:`Packed`."""
    key = (id(loss_fn), id(plan), chunk)
    hit = _GHOST_FNS.get(key)
    if hit is None or hit[0] is not loss_fn or hit[1] is not plan:
        if len(_GHOST_FNS) >= 256:
            _GHOST_FNS.clear()

        hit = _GHOST_FNS[key] = (loss_fn, plan, jax.jit(ghost_program(loss_fn, plan, chunk)))
    return hit[2]


def ghost_program(loss_fn, plan, chunk):
    """The traceable ``(params, x, y) -> Packed`` that the public call compiles (the program
    ``numerics.bench`` and ``tune=True`` time)."""
    def fn(p, x, y):
        s1, s2, gsum, loss_sum, check = _ghost_core(loss_fn, p, x, y, plan, chunk)
        return Packed(gsum, _stats_vector(s1, s2, check, x, y))

    return fn


def _common_float(arrays):
    """float64 when any of ``arrays`` is, else float32: a dtype holding each of them exactly,
    chosen explicitly (``jnp.result_type`` refuses bfloat16 with float32 under strict dtype
    promotion, and parameters of mixed precision are common)."""
    return jnp.float64 if any(a.dtype == jnp.float64 for a in arrays) else jnp.float32


def _stats_vector(s1, s2, check, x, y):
    """Per-leaf S1, per-leaf S2, the custom-rule check and one finite flag per floating
    array of ``x``, ``y``, as one vector (one transfer to the host instead of one per leaf:
    9 scalars cost 0.26 ms against 0.07 ms for one array of 9 on CPU)."""
    l1, l2 = jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s2)
    dt = _common_float(l1 + l2 + [check])
    flags = [jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves((x, y))
             if jnp.issubdtype(a.dtype, jnp.floating)]
    return jnp.concatenate([jnp.stack([a.astype(dt) for a in l1 + l2 + [check]]),
                            jnp.stack(flags).astype(dt) if flags else jnp.zeros(0, dt)])


_GHOST_FNS = {}


@jax.jit
def _finite_flags(leaves):
    return jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves])


class _FiniteCheck:
    """Refuses NaN / inf in the floating arrays ``later`` (``(name, array)`` pairs):
    ``start()`` dispatches one reduction of them all, to run while the statistics are
    computed; ``check(flags)`` raises on the first False flag, with ``flags`` one per array
    (the tail of :func:`_stats_vector`), else those of the dispatch."""

    def __init__(self, later):
        self.later, self.flags = later, None

    def start(self):
        if self.later and self.flags is None:
            self.flags = _finite_flags([a for _, a in self.later])

    def __call__(self, flags=None):
        if flags is None and self.later:
            self.start()
            flags = np.asarray(self.flags)
        for (name, _), ok in zip(self.later, flags if self.later else ()):
            if not ok:
                raise ValueError(f"{name} contains NaN or inf")


def _check_finite_later(x, y):
    """Refuse complex data now; returns a :class:`_FiniteCheck` of the floating ``x``, ``y``
    (one dispatch or the flags computed with the statistics, one transfer, not two reductions
    and a transfer per array)."""
    named = [(name + jax.tree_util.keystr(path), leaf) for name, tree in (("x", x), ("y", y))
             for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
    later = []
    for name, leaf in named:
        if (isinstance(leaf, jax.Array) and not is_traced(leaf)
                and jnp.issubdtype(leaf.dtype, jnp.floating)):
            later.append((name, leaf))
        else:
            check_values(name, leaf)
    return _FiniteCheck(later)


def _one_example(batched_loss):
    """``loss(params, x_i, y_i)`` from a batched ``loss(params, xb, yb)`` (sum or mean over a
    batch, or per-example losses): evaluated on a batch of one."""
    @functools.wraps(batched_loss)
    def loss(params, xi, yi):
        add = lambda t: jax.tree_util.tree_map(lambda a: a[None], t)
        return jnp.sum(batched_loss(params, add(xi), add(yi)))

    return _ONE_EXAMPLE.setdefault(batched_loss, loss)


_ONE_EXAMPLE = {}


def gradient_diversity(loss_fn, params, x, y, *, method: str = "ghost",
                       chunk_size: int | None = None, batched: bool = False,
                       metric=None, tune: bool = False) -> dict:
    r"""S1, S2, gradient diversity, :math:`B_S` and the estimator variants (README,
    "Definitions and conventions").

    .. math::

        S_1 = \sum_i\lVert\nabla_w\ell(w; x_i, y_i)\rVert^2,\qquad
        S_2 = \Big\lVert\sum_i\nabla_w\ell(w; x_i, y_i)\Big\rVert^2,\qquad
        B_S = n S_1 / S_2 .

    Args:
        loss_fn: ``loss_fn(params, x_i, y_i) -> scalar`` for ONE example (or, with
            ``batched=True``, ``loss_fn(params, xb, yb)`` for a batch whose examples do not
            interact, e.g. no batch norm: it is evaluated on batches of one).
        params: any pytree of floating arrays (dicts, flax ``params`` / nnx ``State``,
            equinox modules partitioned with ``eqx.partition``).
        x, y: arrays (or pytrees of arrays) with the examples along axis 0.
        method: ``"ghost"`` (default): per-example norms from each leaf's one recognised
            operation in a single backward pass (:mod:`numerics._ghost`), exact
            ``vmap(grad)`` for the other leaves; ``"vmap"``: ``vmap(grad)`` for every leaf
            (the reference).
        chunk_size: examples per vmapped chunk of the ``vmap(grad)`` path; default keeps one
            chunk of per-example gradients under 256 MiB.
        batched: ``loss_fn`` takes a batch (see above).
        metric: optional pytree shaped like ``params`` of positive diagonal weights
            :math:`P` (e.g. :func:`numerics.adam_metric`): every statistic (and ``layers``) is
            then in that metric, :math:`S_1 = \sum_i g_i^\top P g_i`,
            :math:`S_2 = (\sum_i g_i)^\top P (\sum_i g_i)`, so
            :math:`B_\text{simple} = \operatorname{tr}(P\Sigma)/(G^\top P G)`
            (:mod:`numerics._metric`; ``grad_sum`` stays the plain :math:`\sum_i g_i`).
        tune: choose each dense / conv leaf's exact form (Gram or materialised) by the
            measured time of the compiled program on these arrays instead of the cost
            estimate (:mod:`numerics._tune`; the first call per shape compiles and times a few
            variants, later calls reuse the choice; ``method="ghost"``, no ``metric``).

    Returns:
        The dict of :func:`theory.diversity` (``S1``, ``S2``, ``gradient_diversity``,
        ``batch_size_bound`` = :math:`B_S`, ``B_simple`` (plug-in, :math:`B_S-1`),
        ``B_simple_unbiased`` (McCandlish two-batch with sizes 1 and n), ``norm_test_theta2``)
        with ``n``, ``grad_sum`` (:math:`\sum_i g_i`, shaped like params), ``layers``: the
        same statistics per pytree leaf, keyed by ``jax.tree_util.keystr`` of its path, and
        ``paths``: how each leaf's S1 was computed (``"dense"``, ``"dense-ghost"``,
        ``"dense-materialised"``, ``"bias"``, ``"scale"``, ``"conv"``, ``"conv-ghost"``,
        ``"embedding"`` (``-ghost``, ``-materialised``), ``"shared (k uses: ...)"``
        (``"shared-ghost (...)"``: by cross terms),
        ``"parameter-only"``, ``"... + parameter-only term"``, ``"unused"``, or
        ``"vmap..."`` with the reason), same keys (:class:`numerics._ghost.Plan`).

    Raises:
        ValueError: on an unknown ``method``, a non-positive ``chunk_size``, a loss that does
            not return one scalar per example, non-floating parameters, ``x``/``y`` without
            a common example axis (or no example), complex ``x``/``y``, or NaN/inf in them;
            on a ``metric`` not shaped like ``params`` or with a non-positive or NaN weight.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = lambda p, x, y: 0.5 * (jnp.dot(p["w"], x) - y) ** 2
        >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]]); y = jnp.array([1.0, 1.0])
        >>> out = gradient_diversity(loss, {"w": jnp.zeros(2)}, x, y)
        >>> float(out["batch_size_bound"])  # orthogonal gradients: B_S = n
        2.0
        >>> out["paths"]
        {"['w']": 'dense'}
    """
    s1, s2, gsum, paths = _per_leaf_sums(loss_fn, params, x, y, method=method,
                                           chunk_size=chunk_size, batched=batched,
                                           metric=metric, tune=tune)
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    # one transfer, then host arithmetic: per-leaf statistics as jax ops would cost a dispatch
    # each (milliseconds per call on small models)
    flat1, flat2 = jax.device_get((jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = diversity(sum(flat1), sum(flat2), n)
        out["n"] = n
        out["grad_sum"] = gsum
        out["layers"] = {k: diversity(a, b, n) for k, a, b in zip(paths, flat1, flat2)}
    out["paths"] = paths
    return out


def two_batch_noise_scale(small_sq, big_sq, b_small, b_big) -> dict:
    r"""McCandlish et al. (2018, App. A) two-batch estimator of the simple noise scale.

    From mean squared norms of mean gradients over batches of two sizes,
    :math:`E|G_b|^2 = |G|^2 + \operatorname{tr}\Sigma/b`, solve for
    :math:`|G|^2 = (b_\text{big}|G_\text{big}|^2 - b_\text{small}|G_\text{small}|^2)
    /(b_\text{big} - b_\text{small})` and
    :math:`\operatorname{tr}\Sigma = (|G_\text{small}|^2 - |G_\text{big}|^2)
    /(1/b_\text{small} - 1/b_\text{big})`. Needs no per-example norms.

    With ``b_small = 1`` (``small_sq = S1/n``) and ``b_big = n`` (``big_sq = S2/n²``) this is
    :func:`theory.unbiased_noise_scale`.
    """
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    tr = (small_sq - big_sq) / (1 / b_small - 1 / b_big)
    return {"G2": g2, "trace_sigma": tr, "B_simple": tr / g2}
