r"""Per-example gradient norms of ANY JAX model in one backward pass ("ghost norms").

The per-example loss :math:`\ell(w; x_i, y_i)` is traced once with :func:`jax.make_jaxpr`
and re-evaluated by a small jaxpr interpreter (public APIs only: ``jax.make_jaxpr``,
``jax.extend.core``). The interpreter follows every parameter leaf through norm-preserving or
linear *views* (reshape, transpose, squeeze, dtype casts, broadcasts) to the operations that
consume it, recursing into the sub-computations of ``jit``, ``remat``/``checkpoint``,
``closed_call``, ``custom_jvp_call`` and ``custom_vjp_call``. An operation is *recognised*
when it consumes exactly one parameter view and data:

======================  ==================================  ===============================
operation               parameter                           per-example norm from
======================  ==================================  ===============================
``dot_general``         dense / attention weight            inputs and output cotangents
``conv_general_dilated`` kernel (any groups)                per-group patches, dense forms
``add``, ``sub``        bias (broadcast over positions)     output cotangent
``mul``                 elementwise scale (layer norm)      input × output cotangent
``gather``,             embedding table                     cotangents by table entry
``dynamic_slice``
======================  ==================================  ===============================

A zero *probe* :math:`p_i` is added to the output of each recognised operation; one
``jax.vjp`` of :math:`\sum_i \ell_i(w, p_i)` with respect to ``(params, probes)`` then gives
the summed gradient :math:`\sum_i g_i` (for :math:`S_2`) and every output cotangent
:math:`\delta_i = \partial\ell_i/\partial\mathrm{out}_i` with its example axis; the formulas of
:mod:`numerics._ghost_norms` turn :math:`(a_i, \delta_i)` into
:math:`\lVert\nabla_W\ell_i\rVert^2`. Operations inside ``lax.scan`` bodies are sites too
(probes scanned over, data stacked: the gradient sums over the steps).

A leaf used by several recognised operations (tied weights) takes the sum of each use's
per-example gradient of that leaf. Values computed from parameters alone that enter the loss
affinely (weight decay) contribute one constant vector per leaf, handled in closed form with a
second copy of the leaves. Every other leaf (an unrecognised operation, ``while``, ``cond``)
gets per-example copies in the same backward pass (or, when those do not fit, the exact
chunked ``vmap(grad)`` restricted to those leaves); :func:`plan` says which leaf took which
path and why. Inside ``custom_jvp_call`` / ``custom_vjp_call`` bodies the primal computation is
differentiated (for standard layers that is the same gradient); leaves that reach a recognised
operation there are labelled ``"... (primal of custom_vjp_call)"`` and their summed gradient is
checked against the custom rule's (:func:`numerics.gradient_diversity` falls back when they
differ).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from ._ghost_norms import (MEMORY_COST, conv_blocks, dense_blocks, dense_mode, mode_costs,
                           selection_costs, selection_mode)

#: Dependence bits carried with every value: on the example (x_i, y_i), on the parameters.
EXAMPLE, PARAMS = 1, 2

#: Unary views that keep the Frobenius norm (bijections of the entries, up to sign or dtype).
NORM_VIEWS = frozenset({"reshape", "transpose", "squeeze", "expand_dims", "convert_element_type",
                        "copy", "copy_p", "neg", "reduce_precision"})
#: Unary linear views that do not keep norms.
LINEAR_VIEWS = frozenset({"broadcast_in_dim"})
#: Elementwise binary ops that are a (non norm-preserving) view when the other operand does
#: not depend on the example.
CONST_BINARY_VIEWS = frozenset({"mul", "div", "add", "sub"})
#: Call-like primitives whose body is evaluated inline, and the parameter holding the body.
CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
         "remat2": "jaxpr", "checkpoint": "jaxpr", "remat": "jaxpr",
         "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
         "custom_vjp_call_jaxpr": "fun_jaxpr"}
CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})
#: Primitives whose probe-free handling is only a view when the index operands are data.
SELECTIONS = frozenset({"gather", "dynamic_slice"})


@dataclass(frozen=True)
class View:
    """A parameter leaf seen through a chain of views: ``fn(leaf) -> value``."""

    leaf: int
    fn: Callable
    preserving: bool
    custom: str | None = None  # the custom rule whose body it entered, if any
    #: ``s`` when the leaf is first multiplied entrywise by a constant ``s`` of its own shape
    #: and only norm-preserving views follow: the per-example gradient is then ``s`` times
    #: that of a preserving view, so a dense use keeps an exact weighted form (weights
    #: ``fn(s)`` = the preserving views of ``s²``). ``numerics._metric``'s reparametrisation
    #: ``u ⊙ √P`` is such a view.
    scale: object = None
    ident: bool = False  # the leaf itself (no view applied yet)


@dataclass
class Site:
    """One recognised operation consuming one parameter view."""

    leaf: int
    kind: str
    view: View
    info: dict = field(default_factory=dict)


@dataclass
class Context:
    """Trace-time record of one interpretation (analysis when ``plan`` is None)."""

    plan: frozenset | None = None
    probes: dict | None = None
    sites: list = field(default_factory=list)
    unrecognised: dict = field(default_factory=dict)
    outs: list = field(default_factory=list)
    aux: dict = field(default_factory=dict)
    no_inline: frozenset = frozenset()  # leaves whose custom rules are bound, not inlined
    custom: set = field(default_factory=set)  # leaves that entered an inlined custom body
    affine: dict = field(default_factory=dict)  # analysis: var -> enters the loss affinely
    const_sets: list = field(default_factory=list)  # leaf sets of affine parameter-only terms
    nonconst_sets: list = field(default_factory=list)
    const: frozenset = frozenset()  # run: leaves whose parameter-only terms read a_leaves
    a_leaves: dict = field(default_factory=dict)
    steps: tuple = ()  # lengths of the scans being interpreted
    scan_ranges: list = field(default_factory=list)  # site ids inside each scan, in order
    scan_index: list = field(default_factory=lambda: [0])
    pending: dict = field(default_factory=dict)  # analysis: var -> sites whose output adds into it
    alias: dict = field(default_factory=dict)  # analysis: site -> site with the same cotangent
    data_only: frozenset = frozenset()  # run: sites that record their data but take no probe


def _bind(eqn, invals):
    got = eqn.primitive.get_bind_params(eqn.params)
    # jax >= 0.10 returns the params; older versions returned (subfuns, params)
    subfuns, params = got if isinstance(got, tuple) else ((), got)
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _compose(view, eqn, const=None, side=0):
    if const is None:
        return lambda w: _bind(eqn, [view.fn(w)])[0]
    return lambda w: _bind(eqn, [view.fn(w), const] if side == 0 else [const, view.fn(w)])[0]


def _iota(shape):
    size = 1
    for s in shape:
        size *= s
    return (jnp.arange(size, dtype=jnp.int32) + 1).reshape(shape)


def _site(eqn, invals, views, steps=()):
    """``(kind, info, data)`` of a recognised operation, or ``(None, reason, None)``;
    ``steps``: the lengths of the scans it sits in (its gradient is summed over them)."""
    info = _site_info(eqn, invals, views, math.prod(steps))
    if info[0] is not None:
        info[1]["steps"] = len(steps)
    return info


def _site_info(eqn, invals, views, T):
    name = eqn.primitive.name
    tracked = [k for k, v in enumerate(views) if v is not None]
    if len(tracked) != 1:
        return None, f"{name} of several parameters", None
    k = tracked[0]
    v = views[k]
    if name == "dot_general" and len(invals) == 2:
        if not v.preserving and v.scale is None:
            return None, "dot_general of a broadcast or scaled parameter", None
        dn, data = eqn.params["dimension_numbers"], invals[1 - k]
        _, _, _, (B, S, C) = dense_blocks(data.shape, dn, k)
        R = invals[k].size // max(B * C, 1)
        S *= T
        mode = dense_mode(S, C, R, B)
        if v.scale is not None and mode == "ghost":
            mode = "materialised"  # a Gram form cannot carry entrywise weights
        return "dense", {"dn": dn, "side": k, "mode": mode, "blocks": (B, S, C, R),
                         "shape": tuple(invals[k].shape),
                         "weighted": v.scale is not None}, data
    if name == "conv_general_dilated" and k == 1:
        if not v.preserving:
            return None, "convolution with a broadcast or scaled kernel", None
        params = dict(eqn.params)
        out_shape = tuple(eqn.outvars[0].aval.shape)
        blocks = conv_blocks(params, tuple(invals[k].shape), out_shape)
        blocks = (blocks[0], blocks[1] * T) + blocks[2:]
        return "conv", {"params": params, "kernel_shape": tuple(invals[k].shape),
                        "blocks": blocks, "mode": dense_mode(*blocks[1:], blocks[0])}, invals[0]
    if name in ("add", "sub", "add_any") and len(invals) == 2:
        return "bias", {"shape": tuple(invals[k].shape)}, None
    if name == "mul" and len(invals) == 2:
        return "scale", {"shape": tuple(invals[k].shape)}, invals[1 - k]
    if name in SELECTIONS and k == 0 and v.preserving:
        params = dict(eqn.params)
        if "fill_value" in params:
            params["fill_value"] = 0  # dropped lookups read "entry 0", which no entry is
        src = eqn.primitive.bind(_iota(invals[0].shape), *invals[1:], **params)
        M, table = math.prod(eqn.outvars[0].aval.shape) * T, invals[0].size
        rows = _whole_slices(eqn, invals[0].shape) if name == "gather" else None
        R = math.prod(eqn.outvars[0].aval.shape[a] for a in rows) if rows is not None else 1
        collapsed = (tuple(eqn.params["dimension_numbers"].collapsed_slice_dims)
                     if rows is not None else None)
        return "embedding", {"mode": selection_mode(M, table, R), "shape": tuple(invals[0].shape),
                             "costs": selection_costs(M, table, R), "rows": rows,
                             "collapsed": collapsed, "lookups": M // R}, src
    return None, name, None


def _whole_slices(eqn, table_shape):
    """The output axes (one example) of a ``gather`` that reads whole slices of the table (every
    lookup takes all entries of the non-collapsed axes: an embedding row), else None."""
    dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
    collapsed = tuple(dn.collapsed_slice_dims)
    if getattr(dn, "operand_batching_dims", ()) or any(sizes[a] != 1 for a in collapsed):
        return None
    if any(sizes[a] != table_shape[a] for a in range(len(table_shape)) if a not in collapsed):
        return None
    return tuple(dn.offset_dims)


def interpret(jaxpr, consts, args, views, deps, ctx, psets=None):
    """Evaluate ``jaxpr`` on ``args``; ``views[k]`` is the :class:`View` of ``args[k]`` (or
    None), ``deps[k]`` its dependence bits (:data:`EXAMPLE`, :data:`PARAMS`) and ``psets[k]``
    the leaves a parameter-only value (not a view) was computed from (or None).

    Returns ``(outs, out_views, out_deps, out_psets)`` and fills ``ctx``."""
    env, venv, denv, penv = {}, {}, {}, {}
    psets = psets or [None] * len(args)

    def read(v):
        if isinstance(v, jcore.Literal):
            return v.val, None, 0, None
        return env[v], venv.get(v), denv.get(v, 0), penv.get(v)

    for v, c in zip(jaxpr.constvars, consts):
        env[v], denv[v] = c, 0
    for v, a, w, d, ps in zip(jaxpr.invars, args, views, deps, psets):
        env[v], venv[v], denv[v] = a, w, d
        if ps:
            penv[v] = ps
    for eqn in jaxpr.eqns:
        got = [read(v) for v in eqn.invars]
        invals = [g[0] for g in got]
        ins = [g[1] for g in got]
        indeps = [g[2] for g in got]
        inps = [g[3] for g in got]
        dep = 0
        for d in indeps:
            dep |= d
        name = eqn.primitive.name
        outviews = [None] * len(eqn.outvars)
        outdeps = [dep] * len(eqn.outvars)
        outps = [None] * len(eqn.outvars)
        n_views = sum(w is not None for w in ins)
        if not dep & EXAMPLE and (any(inps) or n_views > 1 or (
                n_views == 1 and not _is_view_op(eqn, invals, ins, indeps)
                and _site(eqn, invals, ins, ctx.steps)[0] is None)):
            # a parameter-only value (does not depend on the example): weight decay, W1 @ W2
            leaves = frozenset().union(*(ps for ps in inps if ps),
                                       (w.leaf for w in ins if w is not None))
            if ctx.plan is not None and leaves <= ctx.const:
                invals = [v if w is None else w.fn(ctx.a_leaves[w.leaf])
                          for v, w in zip(invals, ins)]
            outs = _bind(eqn, invals)
            outps = [leaves] * len(eqn.outvars)
        elif n_views == 0:
            outs = _bind(eqn, invals)
            for v, ps in zip(eqn.invars, inps):
                if ps:  # a parameter-only value meets the example
                    _boundary(ctx, v, ps, name)
        elif name in CUSTOM and any(w is not None and w.leaf in ctx.no_inline for w in ins):
            outs = _bind(eqn, invals)  # the custom rule's gradient, exactly
            for w in ins:
                if w is not None:
                    ctx.unrecognised.setdefault(w.leaf, f"{name} whose rule differs from its "
                                                        "primal's gradient")
        elif name == "scan":
            outs = _scan(eqn, invals, ins, indeps, inps, ctx)
        elif name in CALLS:
            body = eqn.params[CALLS[name]]
            inner, inner_consts = (body.jaxpr, body.consts) if isinstance(
                body, jcore.ClosedJaxpr) else (body, [])
            if name in CUSTOM:
                ins = [None if w is None else View(w.leaf, w.fn, w.preserving, name)
                       for w in ins]
                ctx.custom.update(w.leaf for w in ins if w is not None)
            outs, outviews, outdeps, outps = interpret(inner, inner_consts, invals, ins, indeps,
                                                       ctx, inps)
        elif _is_view_op(eqn, invals, ins, indeps) and len(eqn.invars) == 1:
            outs = _bind(eqn, invals)
            w = ins[0]
            outviews = [View(w.leaf, _compose(w, eqn), w.preserving and name in NORM_VIEWS,
                             w.custom, w.scale if name in NORM_VIEWS else None)]
        elif _is_view_op(eqn, invals, ins, indeps):
            outs = _bind(eqn, invals)
            side = 0 if ins[0] is not None else 1
            w = ins[side]
            const = invals[1 - side]
            scale = const if (name == "mul" and w.ident and w.custom is None
                              and tuple(jnp.shape(const)) == tuple(jnp.shape(invals[side]))) \
                else None
            outviews = [View(w.leaf, _compose(w, eqn, const, side), False, w.custom, scale)]
        else:
            for v, ps in zip(eqn.invars, inps):
                if ps:
                    _boundary(ctx, v, ps, name)
            kind, info, data = _site(eqn, invals, ins, ctx.steps)
            outs = _bind(eqn, invals)
            if kind is None:
                for w in ins:
                    if w is not None:
                        ctx.unrecognised.setdefault(w.leaf, info)
            else:
                w = next(w for w in ins if w is not None)
                sid = len(ctx.sites)
                ctx.sites.append(Site(w.leaf, kind, w, info))
                if ctx.plan is None:
                    ctx.outs.append(jax.ShapeDtypeStruct(tuple(ctx.steps) + outs[0].shape,
                                                         outs[0].dtype))
                    for a in ctx.pending.pop(eqn.outvars[0], ()):
                        ctx.alias.setdefault(a, sid)  # a's output cotangent is this one's
                    for v in _add_chain(jaxpr, eqn.outvars[0]):
                        ctx.pending.setdefault(v, []).append(sid)
                elif sid in ctx.plan:
                    outs = [jax.lax.add(outs[0], ctx.probes[sid].astype(outs[0].dtype))]
                    ctx.aux[sid] = data
                    outdeps = [dep | EXAMPLE]
                elif sid in ctx.data_only:
                    ctx.aux[sid] = data
        for v, o, w, d, ps in zip(eqn.outvars, outs, outviews, outdeps, outps):
            if isinstance(v, jcore.DropVar):
                continue
            env[v] = o
            if w is not None:
                venv[v] = w
            if ps:
                penv[v] = ps
            denv[v] = d
    got = [read(v) for v in jaxpr.outvars]
    return [g[0] for g in got], [g[1] for g in got], [g[2] for g in got], [g[3] for g in got]


def _add_chain(jaxpr, var):
    """The variables that ``var`` flows into through a chain of ``add`` (or the first operand
    of ``sub``) of equal shapes, each link its only use: they all have ``var``'s cotangent."""
    uses, nxt = {}, {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if _var(v):
                uses[v] = uses.get(v, 0) + 1
        if eqn.primitive.name in ("add", "add_any", "sub") and len(eqn.invars) == 2:
            for k, v in enumerate(eqn.invars[:1] if eqn.primitive.name == "sub"
                                  else eqn.invars):
                if _var(v) and v.aval.shape == eqn.outvars[0].aval.shape:
                    nxt[v] = eqn.outvars[0]
    outs = {v for v in jaxpr.outvars if _var(v)}
    chain = []
    while var in nxt and uses.get(var) == 1 and var not in outs:
        var = nxt[var]
        chain.append(var)
    return chain


def _scan(eqn, invals, ins, indeps, inps, ctx):
    """A ``scan`` whose body reads parameter views among its constants: the body is
    interpreted at every step, the probes of its recognised operations are scanned over (one
    slice per step) and their data stacked, so each such operation is a site whose gradient
    sums over the steps (an RNN's weights are dense layers with T positions)."""
    p = eqn.params
    nc, ncar, T = p["num_consts"], p["num_carry"], p["length"]
    body = p["jaxpr"]
    for w in ins[nc:]:
        if w is not None:
            ctx.unrecognised.setdefault(w.leaf, "scan (as a carry or scanned input)")
    for v, ps in zip(eqn.invars[nc:], inps[nc:]):
        if ps:
            _boundary(ctx, v, ps, "scan")
    views = list(ins[:nc]) + [None] * (len(invals) - nc)
    deps = (list(indeps[:nc]) + [d | EXAMPLE | PARAMS for d in indeps[nc:nc + ncar]]
            + list(indeps[nc + ncar:]))
    psets = list(inps[:nc]) + [None] * (len(invals) - nc)
    k = ctx.scan_index[0]
    ctx.scan_index[0] += 1
    if ctx.plan is None:
        start, mine = len(ctx.sites), {}
    else:
        start, end = ctx.scan_ranges[k]
        mine = {sid: ctx.probes[sid] for sid in range(start, end) if sid in ctx.plan}
    consts, init, xs = invals[:nc], invals[nc:nc + ncar], invals[nc + ncar:]

    def step(carry, sl):
        xs_t, probes_t = sl
        child = dataclasses.replace(ctx, probes=probes_t, aux={}, steps=ctx.steps + (T,))
        outs = interpret(body.jaxpr, body.consts, list(consts) + list(carry) + list(xs_t),
                         views, deps, child, psets)[0]
        return outs[:ncar], (outs[ncar:], child.aux)

    carry, (ys, aux) = jax.lax.scan(step, list(init), (list(xs), mine), length=T,
                                    reverse=p["reverse"], unroll=p["unroll"])
    if ctx.plan is None:
        ctx.scan_ranges.append((start, len(ctx.sites)))
    else:
        ctx.aux.update(aux)
    return list(carry) + list(ys)


def _is_view_op(eqn, invals, ins, indeps):
    """A unary norm-preserving / linear view, or a binary op with a true constant."""
    name = eqn.primitive.name
    if len(eqn.invars) == 1:
        return (name in NORM_VIEWS | LINEAR_VIEWS and _float(invals[0])
                and jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.inexact))
    return (name in CONST_BINARY_VIEWS and len(invals) == 2
            and sum(w is not None for w in ins) == 1
            and indeps[1 if ins[0] is not None else 0] == 0)


def _boundary(ctx, var, leaves, name):
    """A parameter-only value ``var`` enters an example-dependent operation: its cotangent is
    the same for every example when it enters the loss affinely (``+ λ·Σ‖W‖²``)."""
    if ctx.plan is not None:
        return
    if ctx.affine.get(var, False):
        ctx.const_sets.append(leaves)
    else:
        ctx.nonconst_sets.append(leaves)
        for leaf in leaves:
            ctx.unrecognised.setdefault(leaf, f"{name} (through a parameter-only value)")


#: Operations linear in every operand (their cotangents are the output's, rearranged).
LINEAR_ALL = frozenset({"add", "sub", "add_any", "neg", "convert_element_type", "reshape",
                        "squeeze", "expand_dims", "broadcast_in_dim", "reduce_sum", "transpose",
                        "copy", "copy_p", "reduce_precision", "slice", "concatenate"})


def _body(eqn):
    body = eqn.params[CALLS[eqn.primitive.name]]
    return (body.jaxpr, body.consts) if isinstance(body, jcore.ClosedJaxpr) else (body, [])


def _var(v):
    return not isinstance(v, jcore.Literal)


def _example_deps(jaxpr, in_ex, ex):
    """Which variables depend on the example (static, merged over the call sites of a body)."""
    for v, e in zip(jaxpr.invars, in_ex):
        ex[v] = ex.get(v, False) or e
    for eqn in jaxpr.eqns:
        ins = [_var(v) and ex.get(v, False) for v in eqn.invars]
        if eqn.primitive.name in CALLS:
            outs = _example_deps(_body(eqn)[0], ins, ex)
        else:
            outs = [any(ins)] * len(eqn.outvars)
        for v, e in zip(eqn.outvars, outs):
            if not isinstance(v, jcore.DropVar):
                ex[v] = ex.get(v, False) or e
    return [_var(v) and ex.get(v, False) for v in jaxpr.outvars]


def _affine(jaxpr, out_aff, ex, aff):
    """Which variables reach the outputs marked in ``out_aff`` only through operations linear
    in them with example-independent coefficients (so their cotangent is the same for every
    example). Returns the flags of the invars; ``aff`` collects all (AND over call sites)."""
    ok = {}

    def mark(v, flag):
        if _var(v):
            ok[v] = ok.get(v, True) and flag

    for v, f in zip(jaxpr.outvars, out_aff):
        mark(v, f)
    for eqn in reversed(jaxpr.eqns):
        out_ok = [ok.get(v, True) for v in eqn.outvars if not isinstance(v, jcore.DropVar)]
        name = eqn.primitive.name
        if name in CALLS:
            in_ok = _affine(_body(eqn)[0], [ok.get(v, True) for v in eqn.outvars], ex, aff)
        else:
            good = all(out_ok)
            exs = [_var(v) and ex.get(v, False) for v in eqn.invars]
            if name in LINEAR_ALL:
                in_ok = [good] * len(eqn.invars)
            elif name in ("mul", "dot_general") and len(exs) == 2:
                in_ok = [good and not exs[1], good and not exs[0]]
            elif name == "div" and len(exs) == 2:
                in_ok = [good and not exs[1], False]
            else:
                in_ok = [False] * len(eqn.invars)
        for v, f in zip(eqn.invars, in_ok):
            mark(v, f)
    for v, f in ok.items():
        aff[v] = aff.get(v, True) and f
    return [ok.get(v, True) if _var(v) else True for v in jaxpr.invars]


def _float(a):
    return jnp.issubdtype(jnp.result_type(a), jnp.inexact)


def trace(loss_fn, params, x1, y1):
    """Closed jaxpr of ``loss_fn(params, x_i, y_i)`` for one example (abstract inputs)."""
    closed = jax.make_jaxpr(loss_fn)(params, x1, y1)
    out = closed.out_avals
    if len(out) != 1 or out[0].shape != ():
        raise ValueError("loss_fn must return one scalar for one example, got "
                         f"{[tuple(a.shape) for a in out]}")
    return closed


def run(closed, n_params, p_leaves, xy_leaves, ctx):
    """Interpret the traced loss on one example; returns the scalar loss."""
    views = [View(k, lambda w: w, True, ident=True) for k in range(n_params)] \
        + [None] * len(xy_leaves)
    deps = [PARAMS] * n_params + [EXAMPLE] * len(xy_leaves)
    outs, outviews, _, outps = interpret(closed.jaxpr, closed.consts,
                                         list(p_leaves) + list(xy_leaves), views, deps, ctx)
    for w in outviews:
        if w is not None:
            ctx.unrecognised.setdefault(w.leaf, "returned by the loss")
    for v, ps in zip(closed.jaxpr.outvars, outps):
        if ps:
            _boundary(ctx, v, ps, "the loss")
    return outs[0]


@dataclass(frozen=True)
class Plan:
    r"""Which operation (site id) gives each leaf's norms, and which leaves fall back.

    Attributes:
        sites: ``((site_id, leaf, out_shape, out_dtype, mode), ...)`` of the leaves with one
            recognised use (the shape and dtype of that operation's output, one example; the
            form of the dense / conv formulas, else None).
        fallback: leaves whose per-example gradients are materialised (per-example copies of
            those leaves in the one backward pass, or the chunked ``vmap(grad)`` when they do
            not fit in memory).
        paths: per leaf, ``"dense"``, ``"dense-ghost"``, ``"dense-materialised"``,
            ``"bias"``, ``"scale"``, ``"conv"``, ``"conv-ghost"``, ``"embedding"``,
            ``"shared (k uses: ...)"``, ``"shared-ghost (k uses: ...)"``,
            ``"parameter-only"`` (only in example-independent terms of the loss, like weight
            decay), ``"unused"`` or ``"vmap: <reason>"``; ``" + parameter-only term"`` is
            appended when the leaf also enters such a term.
        custom: leaves that enter an inlined custom_jvp/vjp body (there the primal is
            differentiated, which changes every upstream cotangent if the rule is not the
            primal's gradient: :func:`numerics.gradient_diversity` checks the summed gradient).
        no_inline: leaves whose custom rules are bound as they are (after a failed check).
        const: leaves entering example-independent terms added to the loss (their
            per-example gradient is the example-dependent part plus one constant vector c:
            :math:`\lVert h_i + c\rVert^2` summed in closed form).
        skip: leaves whose summed gradient comes from their materialised per-example
            gradients (left out of the backward pass, which would compute it again).
        multi: leaves used by several recognised operations (tied weights): their per-example
            gradients are the sums of each use's, materialised for those leaves only.
        alias: ``((site, target), ...)``: sites whose output only adds into the target's
            output (``x @ W + b``: the product's cotangent is the bias's), so they share its
            probe.
        cross: shared 2-D leaves whose uses are dense products or row lookups: their norms
            are the Gram cross terms of the per-use factors (no per-example gradient).
        costs: per leaf, the estimated extra cost of its norms in multiply-adds per example
            (:func:`numerics._ghost_norms.mode_costs`; None for the fallback, 0 when free).
    """

    sites: tuple
    fallback: tuple
    paths: tuple
    custom: tuple = ()
    no_inline: tuple = ()
    const: tuple = ()
    skip: tuple = ()
    costs: tuple = ()
    multi: tuple = ()
    scan_ranges: tuple = ()
    cross: tuple = ()
    alias: tuple = ()

    @property
    def site_ids(self) -> frozenset:
        """The sites that take a probe (an aliased site reads its target's cotangent)."""
        aliased = {a for a, _ in self.alias}
        return frozenset(s[0] for s in self.sites if s[0] not in aliased)


def _static_flags(closed, n_params, n_xy):
    ex = {}
    for _ in range(8):  # to a fixed point over bodies called from several sites
        before = dict(ex)
        _example_deps(closed.jaxpr, [False] * n_params + [True] * n_xy, ex)
        if ex == before:
            break
    aff = {}
    _affine(closed.jaxpr, [True] * len(closed.jaxpr.outvars), ex, aff)
    return aff


def analyse(closed, n_params, p_structs, xy_structs, no_inline=()) -> Plan:
    """Walk the traced loss abstractly and decide each leaf's path."""
    ctx = Context(no_inline=frozenset(no_inline),
                  affine=_static_flags(closed, n_params, len(xy_structs)))
    jax.eval_shape(lambda p, xy: run(closed, n_params, p, xy, ctx), list(p_structs),
                   list(xy_structs))
    nonconst = set().union(*ctx.nonconst_sets)
    changed = True
    while changed:  # a term mixing a fallback leaf's value cannot be split off
        changed = False
        for ls in ctx.const_sets:
            if ls & nonconst and not ls <= nonconst:
                nonconst |= ls
                changed = True
    const = set().union(*ctx.const_sets) - nonconst
    for leaf in set().union(*ctx.const_sets) & nonconst:
        ctx.unrecognised.setdefault(leaf, "a parameter-only term shared with another leaf")
    by_leaf = {}
    for sid, s in enumerate(ctx.sites):
        by_leaf.setdefault(s.leaf, []).append(sid)
    sites, fallback, paths, skip, costs, multi, cross_leaves = [], [], [], [], [], [], []
    for leaf in range(n_params):
        used = by_leaf.get(leaf, [])
        extra = " + parameter-only term" if leaf in const else ""
        if leaf in ctx.unrecognised:
            reason = f"used by {ctx.unrecognised[leaf]}"
        elif len(used) > 1 and (cross := _cross_forms([ctx.sites[sid] for sid in used],
                                                       p_structs[leaf].shape)):
            # shared 2-D weights whose every use is a dense product or a row lookup: the Gram
            # cross terms of the per-use factors (no per-example gradient)
            for sid, form in zip(used, cross):
                out = ctx.outs[sid]
                sites.append((sid, leaf, tuple(out.shape), str(out.dtype), form))
            kinds = ", ".join(ctx.sites[sid].kind for sid in used)
            paths.append(f"shared-ghost ({len(used)} uses: {kinds}){extra}")
            cross_leaves.append(leaf)
            costs.append(_cross_cost([ctx.sites[sid] for sid in used], p_structs[leaf].shape))
            continue
        elif len(used) > 1:  # shared (tied) weights: the per-use gradients, summed
            for sid in used:
                out = ctx.outs[sid]
                sites.append((sid, leaf, tuple(out.shape), str(out.dtype), "materialised"))
            kinds = ", ".join(ctx.sites[sid].kind for sid in used)
            paths.append(f"shared ({len(used)} uses: {kinds}){extra}")
            multi.append(leaf)
            skip.append(leaf)
            costs.append(None)
            continue
        elif not used:
            paths.append("parameter-only" if leaf in const else "unused")
            costs.append(0)
            continue
        else:
            sid = used[0]
            s = ctx.sites[sid]
            sites.append((sid, leaf, tuple(ctx.outs[sid].shape), str(ctx.outs[sid].dtype),
                          s.info.get("mode")))
            label = _site_label(s, ctx.outs[sid])
            if s.view.custom:
                label += f" (primal of {s.view.custom})"
            paths.append(label + extra)
            if s.info.get("mode") == "materialised":
                skip.append(leaf)
            blocks, cost = s.info.get("blocks"), s.info.get("costs")
            cost = mode_costs(*blocks) if blocks else cost
            costs.append(cost[s.info["mode"]] if cost else int(math.prod(ctx.outs[sid].shape)))
            continue
        fallback.append(leaf)
        paths.append(f"vmap: {reason}{extra}")
        costs.append(None)
    return Plan(tuple(sites), tuple(fallback), tuple(paths), tuple(sorted(ctx.custom)),
                tuple(sorted(no_inline)), tuple(sorted(const)), tuple(skip), tuple(costs),
                tuple(multi), tuple(ctx.scan_ranges), tuple(cross_leaves),
                _aliases(ctx.alias, {s[0] for s in sites}))


def _aliases(alias, kept):
    """``((site, target), ...)`` for the kept sites, targets followed to a kept site that takes
    its own probe."""
    out = []
    for a in sorted(alias):
        if a not in kept:
            continue
        t = alias[a]
        while t in alias and t in kept:
            t = alias[t]
        if t in kept:
            out.append((a, t))
    return tuple(out)


def _positions(site):
    """Per-example positions of a dense use (B = 1) or lookups of a row gather."""
    if site.kind == "dense":
        return site.info["blocks"][1]
    return site.info["lookups"]


def _cross_cost(sites, shape):
    """Extra multiply-adds per example of the cross-term form: every pair of uses."""
    V, D = shape
    pos = [_positions(s) for s in sites]
    return int(sum(p * q * (V + D + MEMORY_COST) for p in pos for q in pos))


def _cross_forms(sites, shape):
    """For a 2-D leaf ``(V, D)`` whose every use is a ``dot_general`` with one block (B = 1)
    or a lookup of whole rows, the factor form of each use (``"cross:a:±1"``: the data
    operand's vectors index the leaf's rows, ``"cross:d:±1"``: the cotangent's do,
    ``"cross:rows:1"``: a row lookup), when the cross terms are cheaper than materialising;
    else None. The layout is read off each view applied to the leaf's entry numbers."""
    if len(shape) != 2 or math.prod(shape) >= 1 << 24:
        return None
    from ._ghost_norms import _dense_to_param
    V, D = shape
    rows = np.arange(V * D).reshape(V, D)
    forms = []
    with jax.ensure_compile_time_eval():
        leaf_ids = jnp.asarray(rows + 1, dtype=jnp.int32)
        for s in sites:
            if not s.view.preserving or s.view.custom:
                return None
            try:
                seen = np.asarray(s.view.fn(leaf_ids))
            except Exception:  # noqa: BLE001 - a view that cannot run on integers
                return None
            ids = np.abs(seen).astype(np.int64).reshape(-1) - 1
            signs = np.sign(seen).reshape(-1)
            if not np.all(signs == signs[0]):
                return None
            sign = int(signs[0])
            if s.kind == "embedding" and s.info.get("collapsed") == (0,):
                if seen.shape == (V, D) and sign == 1 and np.array_equal(ids, rows.reshape(-1)):
                    forms.append("cross:rows:1")
                    continue
                return None
            if s.kind != "dense" or s.info["blocks"][0] != 1:
                return None
            _, _, C, R = s.info["blocks"]
            blk = np.asarray(_dense_to_param(jnp.arange(C * R, dtype=jnp.int32).reshape(1, C, R),
                                             s.info["dn"], s.info["side"], s.info["shape"], 0))
            where = np.zeros(C * R, np.int64)
            where[blk.reshape(-1)] = ids
            where = where.reshape(C, R)
            if (C, R) == (V, D) and np.array_equal(where, rows):
                forms.append(f"cross:a:{sign}")
            elif (C, R) == (D, V) and np.array_equal(where, rows.T):
                forms.append(f"cross:d:{sign}")
            else:
                return None
    pos = [_positions(s) for s in sites]
    materialised = sum(p * V * D for p in pos) + MEMORY_COST * len(sites) * V * D
    return tuple(forms) if _cross_cost(sites, shape) <= materialised else None


def _site_label(site, out):
    if site.kind == "embedding":
        return "embedding" if site.info["mode"] == "sorted" else f"embedding-{site.info['mode']}"
    if site.kind not in ("dense", "conv"):
        return site.kind
    mode = site.info["mode"]
    if site.kind == "conv":
        return "conv" if mode == "materialised" else f"conv-{mode}"
    return "dense" if mode == "outer" else f"dense-{mode}"
