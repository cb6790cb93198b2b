r"""Per-example squared gradient norms of ONE parameter from ONE operation's data.

Each function takes the stacked per-example quantities of one recognised operation (leading
axis: the n examples) and returns the n squared norms :math:`\lVert\nabla_W\ell_i\rVert^2` of
the parameter consumed there, without forming the n per-example gradients of the model.
With :math:`a_i` the operation's data input and :math:`\delta_i = \partial\ell_i/\partial
\mathrm{out}_i` its output cotangent:

* dense contraction :math:`\mathrm{out}_{s} = W a_{s}` over the positions s of a shared
  (sequence / spatial) axis, per batch block b of ``dot_general``:

  .. math::

      \lVert\nabla_W\ell_i\rVert^2 = \Big\lVert\sum_s \delta_{i,s} a_{i,s}^\top\Big\rVert_F^2
      = \sum_{s,t} (a_{i,s}\!\cdot a_{i,t})(\delta_{i,s}\!\cdot\delta_{i,t}),

  which is :math:`\lVert a_i\rVert^2\lVert\delta_i\rVert^2` with one position ("outer"), the
  "ghost" Gram form when :math:`S^2(C+R) \le SCR` and the materialised :math:`a_i^\top\delta_i`
  otherwise (C, R: input and output sizes, S positions);
* selections (``gather``, ``dynamic_slice``: embedding lookups): with :math:`k(o)` the table
  entry that output element o reads,
  :math:`\lVert\nabla_T\ell_i\rVert^2 = \sum_k\big(\sum_{o:k(o)=k}\delta_{i,o}\big)^2`
  (a segment sum over the sorted entries, O(output) memory per example);
* elementwise (bias ``add``, scale ``mul``): the gradient of that one parameter, no larger
  than an activation, squared and summed;
* convolutions: the kernel's per-example gradient by the op's own transpose (one batched
  transposed convolution), or, without groups and when there are no more output positions
  than output channels, the unfolded patches with the dense formulas (whichever intermediate
  is smaller).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def _sq(g):
    """Per-example sums of squares of an (n, ...) array."""
    return jnp.sum((g * g).reshape(g.shape[0], -1), axis=1)


def dense_blocks(a_shape, dn, param_side):
    """Axis permutations that bring ``a`` and ``delta`` of one ``dot_general`` (one example) to
    ``(B, S, C)`` and ``(B, S, R)``: batch blocks, shared positions, contracted / output size.

    Returns ``(a_perm, nb, nf, (B, S, C))``: the permutation of ``a``, the numbers of batch
    and shared axes, and the block sizes.
    """
    (lc, rc), (lb, rb) = dn
    a_contract, a_batch = (lc, lb) if param_side == 1 else (rc, rb)
    a_free = [k for k in range(len(a_shape)) if k not in a_contract and k not in a_batch]
    nb, nf = len(a_batch), len(a_free)
    a_perm = tuple(a_batch) + tuple(a_free) + tuple(a_contract)
    B = math.prod(a_shape[k] for k in a_batch)
    S = math.prod(a_shape[k] for k in a_free)
    C = math.prod(a_shape[k] for k in a_contract)
    return a_perm, nb, nf, (B, S, C)


def dense_mode(S, C, R):
    """Cheapest exact form: ``outer`` (S = 1), ``ghost`` (Gram) or ``materialised``."""
    if S == 1:
        return "outer"
    return "ghost" if S * S * (C + R) <= S * C * R else "materialised"


def dense_sq_norms(a, d, dn, param_side):
    """Squared per-example gradient norms of the parameter of ``dot_general(lhs, rhs, dn)``.

    Args:
        a: the data operand, stacked ``(n, *a_shape)``.
        d: the output cotangent, stacked ``(n, *out_shape)``.
        dn: the ``dimension_numbers`` of the per-example ``dot_general``.
        param_side: 1 when the parameter is ``rhs``, 0 when it is ``lhs``.
    """
    n = a.shape[0]
    a_perm, nb, nf, (B, S, C) = dense_blocks(a.shape[1:], dn, param_side)
    if B == 1 and S == 1:  # plain dense layer: no transposes, two fused reductions
        sq = lambda t: jnp.sum(t * t, axis=tuple(range(1, t.ndim)))
        return sq(a.astype(d.dtype)) * sq(d)
    out_nd = d.ndim - 1
    if param_side == 1:  # out = (batch, a free, W free)
        d_perm = tuple(range(out_nd))
    else:  # out = (batch, W free, a free)
        nwf = out_nd - nb - nf
        d_perm = (tuple(range(nb)) + tuple(range(nb + nwf, out_nd))
                  + tuple(range(nb, nb + nwf)))
    A = jnp.transpose(a, (0,) + tuple(p + 1 for p in a_perm)).reshape(n, B, S, C)
    A = A.astype(d.dtype)
    D = jnp.transpose(d, (0,) + tuple(p + 1 for p in d_perm)).reshape(n, B, S, -1)
    mode = dense_mode(S, C, D.shape[-1])
    if mode == "outer":
        return jnp.sum(jnp.sum(A * A, axis=(2, 3)) * jnp.sum(D * D, axis=(2, 3)), axis=1)
    if mode == "ghost":
        ga = jnp.einsum("nbsc,nbtc->nbst", A, A, precision=HIGHEST)
        gd = jnp.einsum("nbsr,nbtr->nbst", D, D, precision=HIGHEST)
        return jnp.sum(ga * gd, axis=(1, 2, 3))
    g = jnp.einsum("nbsc,nbsr->nbcr", A, D, precision=HIGHEST)
    return _sq(g)


def unbroadcast(g, shape):
    """Sum ``g`` (one example) down to ``shape`` over the axes an implicit broadcast added."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    g = jnp.sum(g, axis=tuple(range(lead))) if lead else g
    axes = tuple(k for k, s in enumerate(shape) if s == 1 and g.shape[k] != 1)
    return jnp.sum(g, axis=axes, keepdims=True).reshape(shape)


def elementwise_sq_norms(d, x, view_shape, view_t):
    """Bias (``x is None``: ``out = x + b``) or scale (``out = x * s``) of one example.

    ``view_t`` maps a gradient of the operand (the parameter's view) back to the parameter
    (the transpose of the reshape / broadcast chain), or is None when that chain preserves norms.
    """
    def one(di, xi):
        if xi is not None:
            di = di * jnp.broadcast_to(xi, di.shape).astype(di.dtype)
        g = unbroadcast(di, view_shape)
        return g if view_t is None else view_t(g)

    g = jax.vmap(one)(d, x) if x is not None else jax.vmap(lambda di: one(di, None))(d)
    return _sq(g)


def conv_unfold(params, out_shape) -> bool:
    """Unfold (patches) rather than per-example kernel gradients: when there are no groups and
    the patches (positions × C_in k²) are no larger than the kernel (C_in k² × C_out), i.e.
    positions ≤ C_out, so memory stays at the smaller of the two."""
    if params["feature_group_count"] != 1 or params["batch_group_count"] != 1:
        return False
    c_out = out_shape[params["dimension_numbers"].out_spec[1]]
    return math.prod(out_shape) // c_out <= c_out


def conv_patches_sq_norms(a, d, params, kernel_shape):
    r"""Convolution kernels (no feature / batch groups) by unfolding: with the patches
    :math:`P_i` (positions × :math:`C_\text{in}k^2`) and cotangents :math:`D_i` (positions ×
    :math:`C_\text{out}`), the kernel's per-example gradient is a permutation of
    :math:`P_i^\top D_i`, whose squared norm takes the Gram or the materialised form as for
    dense layers (one batched matrix product, no grouped convolution)."""
    dn = params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    filt = tuple(kernel_shape[k] for k in rhs_spec[2:])

    def one(ai, di):
        pt = jax.lax.conv_general_dilated_patches(
            ai, filt, params["window_strides"], params["padding"],
            lhs_dilation=params["lhs_dilation"], rhs_dilation=params["rhs_dilation"],
            dimension_numbers=dn, precision=HIGHEST)
        order = (out_spec[0],) + tuple(out_spec[2:]) + (out_spec[1],)  # rows: positions
        to_rows = lambda t: jnp.transpose(t, order).reshape(-1, t.shape[out_spec[1]])
        return to_rows(pt), to_rows(di)

    P, D = jax.vmap(one)(a, d)
    P = P.astype(d.dtype)
    S, C, R = P.shape[1], P.shape[2], D.shape[2]
    if dense_mode(S, C, R) == "ghost":
        gp = jnp.einsum("nsc,ntc->nst", P, P, precision=HIGHEST)
        gd = jnp.einsum("nsr,ntr->nst", D, D, precision=HIGHEST)
        return jnp.sum(gp * gd, axis=(1, 2))
    return _sq(jnp.einsum("nsc,nsr->ncr", P, D, precision=HIGHEST))


def conv_sq_norms(op, a, d, view):
    """Convolution kernels: per-example gradient of ``op(a_i, view)`` by the op's own vjp (one
    batched transposed convolution; only this kernel's n gradients exist, never the model's),
    squared and summed."""
    def one(ai, di):
        return jax.vjp(lambda w: op(ai, w), view)[1](di)[0]

    return _sq(jax.vmap(one)(a, d))


def selection_sq_norms(src, d):
    r"""Embedding lookups: :math:`\sum_k(\sum_{o:k(o)=k}\delta_o)^2` per example.

    Args:
        src: ``(n, *out_shape)`` integers, 1 + the flat table index each output element reads,
            0 where the lookup is dropped (out of bounds in ``fill`` mode).
        d: ``(n, *out_shape)`` output cotangents.
    """
    def one(s, di):
        s, di = s.reshape(-1), di.reshape(-1)
        di = jnp.where(s > 0, di, jnp.zeros_like(di))
        order = jnp.argsort(s)
        s, di = s[order], di[order]
        new = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                               (s[1:] != s[:-1]).astype(jnp.int32)])
        seg = jnp.cumsum(new)
        sums = jax.ops.segment_sum(di, seg, num_segments=s.shape[0], indices_are_sorted=True)
        return jnp.sum(sums * sums)

    return jax.vmap(one)(src, d)
