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
* convolutions (any padding, strides, dilations, feature or batch groups): per group, the
  patches (strided slices of the padded input, one per kernel tap) and cotangents with the
  dense formulas (one batched matrix product; no grouped or per-example convolution).

The form (Gram or materialised) is chosen by an estimated cost (:func:`mode_costs`); the
materialised form also returns the summed gradient, so the caller can leave that leaf out of
its backward pass.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


def _sq(g):
    """Per-example sums of squares of an (n, ...) array."""
    return jnp.sum((g * g).reshape(g.shape[0], -1), axis=1)


def sum_examples(g):
    """``sum_i g[i]``: the summed gradient of stacked per-example gradients, as a product with
    a vector of ones (XLA's CPU backend reduces over a leading axis several times slower than
    it multiplies: 13 ms against 0.7 ms for 64 × 288 × 64 floats)."""
    ones = jnp.ones(g.shape[:1], g.dtype)
    return jnp.tensordot(ones, g, axes=1, precision=HIGHEST)


def sq_norm(g):
    """``sum(g * g)`` as one product (XLA's CPU backend runs the square and a two-stage
    reduction as three operations, a few microseconds each on small models)."""
    g = g.reshape(-1)
    return jnp.dot(g, g, precision=HIGHEST)


#: S2 packing (:func:`sq_norms`): leaves of at most ``PACK_LEAF`` entries are packed, at most
#: ``PACK_LEAVES`` of them and ``PACK_TOTAL`` entries per pack (the copy and the constant 0/1
#: matrix stay small: ≤ 1 MB and 0.5 MB in float32), each padded to whole blocks of
#: ``PACK_BLOCK``.
PACK_LEAF, PACK_LEAVES, PACK_TOTAL, PACK_BLOCK = 1 << 16, 64, 1 << 18, 128


def _packs(sizes):
    """Greedy groups (lists of indices) of the small ``sizes`` under the pack limits; groups of
    one are left out (a single product is as cheap)."""
    packs, cur, total = [], [], 0
    for k, size in enumerate(sizes):
        if size > PACK_LEAF:
            continue
        blocks = -(-size // PACK_BLOCK) * PACK_BLOCK
        if cur and (len(cur) == PACK_LEAVES or total + blocks > PACK_TOTAL):
            packs.append(cur)
            cur, total = [], 0
        cur.append(k)
        total += blocks
    packs.append(cur)
    return [p for p in packs if len(p) > 1]


def _packed_sq_norms(gs):
    """``[sum(g * g) for g in gs]`` of one pack (one dtype): zero-padded to whole blocks,
    concatenated, summed block by block in one reduction, and the block sums added per leaf in
    one product with a constant 0/1 matrix."""
    dt = gs[0].dtype
    parts, seg = [], []
    for j, g in enumerate(gs):
        g = g.reshape(-1)
        nb = -(-g.size // PACK_BLOCK)
        parts.append(jnp.pad(g, (0, nb * PACK_BLOCK - g.size)))
        seg += [j] * nb
    v = jnp.concatenate(parts).reshape(len(seg), PACK_BLOCK)
    ind = np.zeros((len(seg), len(gs)), np.dtype(dt))
    ind[np.arange(len(seg)), seg] = 1
    tot = jnp.dot(jnp.sum(v * v, axis=1), ind, precision=HIGHEST)
    return [tot[j] for j in range(len(gs))]


def sq_norms(gs):
    """``[sum(g * g) for g in gs]`` in few operations: small leaves in packs
    (:func:`_packed_sq_norms`), the others one product each (:func:`sq_norm`). XLA's CPU
    backend runs each leaf's own reduction as two to four operations of a few microseconds
    each, whatever its size: most of a small model's extra cost (3 of the 34 operations of a
    K = 256 MLP's program at n = 64)."""
    out = [None] * len(gs)
    for dt in dict.fromkeys(g.dtype for g in gs):  # one dtype per pack (no promotion)
        ks = [k for k, g in enumerate(gs) if g.dtype == dt]
        for pack in _packs([gs[k].size for k in ks]):
            for j, v in zip(pack, _packed_sq_norms([gs[ks[j]] for j in pack])):
                out[ks[j]] = v
    return [sq_norm(g) if v is None else v for g, v in zip(gs, out)]


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


#: Cost of moving one float through memory, in multiply-adds (a CPU / GPU rule of thumb; the
#: Gram form costs flops, the materialised form memory).
MEMORY_COST = 8


def mode_costs(B, S, C, R):
    """Estimated extra cost (multiply-adds per example) of each exact form for B blocks of
    ``S`` positions × ``C`` inputs × ``R`` outputs.

    The materialised form's batched products replace the backward's one large product (its
    summed gradient is taken from them), but n small products run about twice as long as one
    large product of the same size (measured with XLA on CPU: 2–3× for S = 12–32, C, R =
    32–256, n = 512), so they count ``S C R`` once more, plus the memory of the n gradients.
    The Gram form costs its two Gram matrices and their memory.
    """
    if S == 1:
        return {"outer": MEMORY_COST * (C + R)}
    return {"ghost": B * (S * S * (C + R) + MEMORY_COST * S * S),
            "materialised": B * (S + MEMORY_COST) * C * R}


def dense_mode(S, C, R, B=1):
    """Cheapest exact form: ``outer`` (S = 1), ``ghost`` (Gram) or ``materialised``."""
    costs = mode_costs(B, S, C, R)
    return min(costs, key=costs.get)


def _fold(X, n):
    """``(n T, B, S, C)`` (T steps of a scan per example) to ``(n, B, T S, C)``."""
    T = X.shape[0] // n
    X = X.reshape((n, T) + X.shape[1:]).transpose(0, 2, 1, 3, 4)
    return X.reshape(n, X.shape[1], T * X.shape[3], X.shape[4])


def _unstep(t, steps):
    """``(n, T_1..T_steps, ...)`` to ``(n T, ...)``."""
    return t.reshape((-1,) + t.shape[1 + steps:]) if steps else t


def param_to_blocks(w, dn, param_side):
    """A parameter-shaped array in the ``(B, C, R)`` block layout of
    :func:`_dense_blocks_of` (the inverse of :func:`_dense_to_param`)."""
    (lc, rc), (lb, rb) = dn
    p_contract, p_batch = (rc, rb) if param_side == 1 else (lc, lb)
    p_free = [k for k in range(w.ndim) if k not in p_contract and k not in p_batch]
    perm = tuple(p_batch) + tuple(p_contract) + tuple(p_free)
    B = math.prod(w.shape[k] for k in p_batch)
    C = math.prod(w.shape[k] for k in p_contract)
    return jnp.transpose(w, perm).reshape(B, C, -1)


def weighted_dense_sq_norms(a, d, dn, param_side, mode, weight, param_shape=None, steps=0):
    r"""Per-example :math:`\sum_{jk} w_{jk}\,(g_i)_{jk}^2` of a ``dot_general`` parameter
    with entrywise weights ``weight`` (shaped like the parameter): for one position per
    example (``mode="outer"``) :math:`\sum_b (a_{ib}^{2})^\top W_b\,(\delta_{ib}^{2})`, one
    product the size of the layer's; else from the materialised per-example gradients (a
    Gram form cannot carry weights). Returns ``(sq_norms, summed_gradient_or_None)`` as
    :func:`dense_sq_norms`."""
    A, D = _dense_blocks_of(a, d, dn, param_side, steps)
    Wb = param_to_blocks(weight.astype(D.dtype), dn, param_side)
    if mode == "outer":
        A2, D2 = jnp.sum(A * A, axis=2), jnp.sum(D * D, axis=2)  # S = 1: one position
        return jnp.einsum("nbc,bcr,nbr->n", A2, Wb, D2, precision=HIGHEST), None
    g = jnp.einsum("nbsc,nbsr->nbcr", A, D, precision=HIGHEST)
    sq = jnp.einsum("nbcr,bcr->n", g * g, Wb, precision=HIGHEST)
    if param_shape is None:
        return sq, None
    return sq, _dense_to_param(sum_examples(g), dn, param_side, param_shape, 0)


def dense_sq_norms(a, d, dn, param_side, mode, param_shape=None, steps=0):
    """Squared per-example gradient norms of the parameter of ``dot_general(lhs, rhs, dn)``.

    Args:
        a: the data operand, stacked ``(n, *a_shape)``.
        d: the output cotangent, stacked ``(n, *out_shape)``.
        dn: the ``dimension_numbers`` of the per-example ``dot_general``.
        param_side: 1 when the parameter is ``rhs``, 0 when it is ``lhs``.
        mode: the form (:func:`dense_mode`).
        param_shape: with the materialised form, also return the summed gradient of the
            parameter (shaped ``param_shape``), else None.
        steps: leading step axes of ``a`` and ``d`` after the examples' (a ``scan`` applying
            the operation at every step: the gradient is summed over them).

    Returns ``(sq_norms, summed_gradient_or_None)``.
    """
    _, _, _, (B, S, C) = dense_blocks(a.shape[1 + steps:], dn, param_side)
    if B == 1 and S == 1 and not steps:  # plain dense layer: two fused reductions
        sq = lambda t: jnp.sum(t * t, axis=tuple(range(1, t.ndim)))
        return sq(a.astype(d.dtype)) * sq(d), None
    A, D = _dense_blocks_of(a, d, dn, param_side, steps)
    sq, g = block_sq_norms(A, D, mode)
    if g is None or param_shape is None:
        return sq, None
    return sq, _dense_to_param(g, dn, param_side, param_shape, 0)


def _dense_blocks_of(a, d, dn, param_side, steps=0):
    """``(A, D)`` shaped ``(n, B, S, C)`` and ``(n, B, S, R)`` for one ``dot_general``."""
    if steps:
        n = a.shape[0]
        A, D = _dense_blocks_of(_unstep(a, steps), _unstep(d, steps), dn, param_side)
        return _fold(A, n), _fold(D, n)
    n = a.shape[0]
    a_perm, nb, nf, (B, S, C) = dense_blocks(a.shape[1:], dn, param_side)
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
    return A, D


def _dense_to_param(g, dn, param_side, param_shape, lead):
    """``(*lead, B, C, R)`` blocks back to the parameter's layout (``lead`` leading axes)."""
    (lc, rc), (lb, rb) = dn
    p_contract, p_batch = (rc, rb) if param_side == 1 else (lc, lb)
    p_free = [k for k in range(len(param_shape)) if k not in p_contract and k not in p_batch]
    perm = tuple(p_batch) + tuple(p_contract) + tuple(p_free)
    g = g.reshape(g.shape[:lead] + tuple(param_shape[k] for k in perm))
    inv = tuple(perm.index(k) + lead for k in range(len(perm)))
    return jnp.transpose(g, tuple(range(lead)) + inv)


def dense_grads(a, d, dn, param_side, param_shape, steps=0):
    """Per-example gradients ``(n, *param_shape)`` of a ``dot_general`` parameter."""
    A, D = _dense_blocks_of(a, d, dn, param_side, steps)
    g = jnp.einsum("nbsc,nbsr->nbcr", A, D, precision=HIGHEST)
    return _dense_to_param(g, dn, param_side, param_shape, 1)


def block_sq_norms(A, D, mode):
    """``sum_b ||A[i, b]^T D[i, b]||_F^2`` per example i, for A ``(n, B, S, C)`` and D
    ``(n, B, S, R)``, in the given form; returns ``(sq_norms, sum_i A_i^T D_i or None)`` (the
    summed gradient ``(B, C, R)`` comes with the materialised form)."""
    if mode == "outer":
        return jnp.sum(jnp.sum(A * A, axis=(2, 3)) * jnp.sum(D * D, axis=(2, 3)), axis=1), None
    if mode == "ghost":
        ga = jnp.einsum("nbsc,nbtc->nbst", A, A, precision=HIGHEST)
        gd = jnp.einsum("nbsr,nbtr->nbst", D, D, precision=HIGHEST)
        return jnp.sum(ga * gd, axis=(1, 2, 3)), None
    # the per-example products with the contracted axis last ("nbrc"): 1.2-1.4x faster than
    # "nbcr" with XLA on CPU (the norms do not care; only the small sum is transposed back)
    g = jnp.einsum("nbsc,nbsr->nbrc", A, D, precision=HIGHEST)
    return _sq(g), jnp.swapaxes(sum_examples(g), 1, 2)


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


def conv_patches(a, d, params, kernel_shape, steps=0, per_tap=False):
    r"""Per-group patches and cotangents of one convolution, stacked over the examples.

    Args:
        a: the lhs, ``(n, *lhs_shape)`` (one example's lhs may hold several images).
        d: the output cotangent, ``(n, *out_shape)``.
        params: the ``conv_general_dilated`` parameters (any padding, strides, lhs / rhs
            dilation, feature groups or batch groups).
        kernel_shape: the kernel's shape (one example).
        per_tap: return the taps one by one instead of stacked.

    Returns ``(P, D)`` shaped ``(n, G, S, k I)`` and ``(n, G, S, O_g)``: G groups, S
    positions (images × output positions), k kernel taps, I input channels per group, O_g
    output channels per group (with ``per_tap``, P is the list of the k taps ``(n, G, S, I)``).
    The kernel's per-example gradient of group g is a permutation of
    :math:`P_{i,g}^\top D_{i,g}` (:func:`_conv_to_kernel`). The patches are strided slices of
    the padded input (no convolution), one per kernel tap, taken channels-last: with NHWC data
    and one group they need no transpose at all.
    """
    if steps:  # stacked patches only (the tap-by-tap form is not used inside a scan)
        n = a.shape[0]
        P, D = conv_patches(_unstep(a, steps), _unstep(d, steps), params, kernel_shape)
        return _fold(P, n), _fold(D, n)
    dn = params["dimension_numbers"]
    ls, rs, os_ = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    n = a.shape[0]
    # channels last: (n, N, *spatial, C) and (n, N', *out_spatial, O)
    a = jnp.transpose(a, (0, ls[0] + 1) + tuple(k + 1 for k in ls[2:]) + (ls[1] + 1,))
    a = a.astype(d.dtype)
    d = jnp.transpose(d, (0, os_[0] + 1) + tuple(k + 1 for k in os_[2:]) + (os_[1] + 1,))
    groups, bg = params["feature_group_count"], params["batch_group_count"]
    if bg > 1:  # batch group b of the lhs is feature group b of an equivalent conv
        N, sp, C = a.shape[1], a.shape[2:-1], a.shape[-1]
        a = a.reshape((n, bg, N // bg) + sp + (C,))
        a = jnp.moveaxis(a, 1, -2).reshape((n, N // bg) + sp + (bg * C,))
        groups = bg
    filt = tuple(kernel_shape[k] for k in rs[2:])
    pad = [(0, 0, 0)] * 2 + [(lo, hi, ld - 1) for (lo, hi), ld in
                             zip(params["padding"], params["lhs_dilation"])] + [(0, 0, 0)]
    a = jax.lax.pad(a, jnp.zeros((), a.dtype), pad)
    N, C, osp, O = a.shape[1], a.shape[-1], d.shape[2:-1], d.shape[-1]
    strides, rdil = params["window_strides"], params["rhs_dilation"]
    taps = []
    for j in itertools.product(*(range(f) for f in filt)):
        start = [0, 0] + [jk * r for jk, r in zip(j, rdil)] + [0]
        limit = [n, N] + [s + (o - 1) * st + 1 for s, o, st in
                          zip(start[2:], osp, strides)] + [C]
        taps.append(jax.lax.slice(a, start, limit, [1, 1] + list(strides) + [1]))
    S, I, k = N * math.prod(osp), C // groups, len(taps)
    # (n, N, *osp, [k,] G, c) -> (n, G, N S, [k] c): a bitcast for one group
    to_groups = lambda t, c: jnp.moveaxis(t.reshape(t.shape[:-1] + (groups, c)), -2, 1)
    D = to_groups(d, O // groups).reshape(n, groups, S, O // groups)
    if per_tap:
        return [to_groups(t, I).reshape(n, groups, S, I) for t in taps], D
    P = jnp.stack(taps, axis=-2)  # (n, N, *osp, k, C)
    P = to_groups(P, I)  # (n, G, N, *osp, k, I)
    return P.reshape(n, groups, S, k * I), D


def conv_blocks(params, kernel_shape, out_shape):
    """``(B, S, C, R)`` of a conv kernel's blocks: groups, positions, inputs, outputs."""
    dn = params["dimension_numbers"]
    groups = params["feature_group_count"] * params["batch_group_count"]
    O = kernel_shape[dn.rhs_spec[0]]
    I = kernel_shape[dn.rhs_spec[1]]
    k = math.prod(kernel_shape[s] for s in dn.rhs_spec[2:])
    S = math.prod(out_shape) // O
    return groups, S, I * k, O // groups


def conv_mode(params, kernel_shape, out_shape):
    """The cheaper exact form for a conv kernel (``ghost`` or ``materialised``), from shapes."""
    B, S, C, R = conv_blocks(params, kernel_shape, out_shape)
    return dense_mode(S, C, R, B)


def conv_per_tap(params):
    """Whether the materialised form of a conv kernel runs tap by tap (one batched product
    per kernel tap) rather than on the stacked patches: for grouped / depthwise convs, whose
    stacked patches need a per-group transpose that costs more than the k small products
    (the depthwise CNN of the bench: 0.99 against 1.22 backwards at n = 64); ungrouped convs
    are faster stacked (the bench's CNNs: 1.10 against 1.17, 1.31 against 1.45)."""
    return params["feature_group_count"] * params["batch_group_count"] > 1


def conv_sq_norms(a, d, params, kernel_shape, mode, want_sum=False, steps=0):
    r"""Convolution kernels (any groups, strides, dilations): the patches and cotangents of
    :func:`conv_patches`, then per group the dense formulas (one batched matrix product, never
    a grouped or per-example convolution). Returns ``(sq_norms, summed kernel gradient or
    None)`` (the sum with the materialised form and ``want_sum``)."""
    if mode == "materialised" and not steps and conv_per_tap(params):
        taps, D = conv_patches(a, d, params, kernel_shape, per_tap=True)
        g = jnp.stack([jnp.einsum("ngsi,ngsr->ngir", t, D, precision=HIGHEST) for t in taps],
                      axis=2)  # (n, G, k, I, O_g)
        g = g.reshape(g.shape[:2] + (-1, g.shape[-1]))  # (n, G, k I, O_g), as the patches
        sq = _sq(g)
        if not want_sum:
            return sq, None
        return sq, _conv_to_kernel(sum_examples(g)[None], params, kernel_shape)[0]
    P, D = conv_patches(a, d, params, kernel_shape, steps)
    sq, g = block_sq_norms(P, D, mode)
    if g is None or not want_sum:
        return sq, None
    return sq, _conv_to_kernel(g[None], params, kernel_shape)[0]


def _conv_to_kernel(g, params, kernel_shape):
    """``(n, G, k I, O_g)`` per-group blocks (taps major, :func:`conv_patches`) to
    ``(n, *kernel_shape)``."""
    rs = params["dimension_numbers"].rhs_spec  # kernel axes of (O, I, *taps)
    n, G, kI, Og = g.shape
    filt = tuple(kernel_shape[k] for k in rs[2:])
    nf = len(filt)
    g = g.reshape((n, G) + filt + (kI // math.prod(filt), Og))  # (n, G, *taps, I, O_g)
    g = jnp.transpose(g, (0, 1, nf + 3, nf + 2) + tuple(range(2, nf + 2)))
    g = g.reshape((n, G * Og, kI // math.prod(filt)) + filt)  # canonical (O, I, *taps)
    return jnp.transpose(g, (0,) + tuple(rs.index(k) + 1 for k in range(len(rs))))


def conv_grads(a, d, params, kernel_shape, steps=0):
    """Per-example kernel gradients ``(n, *kernel_shape)``."""
    P, D = conv_patches(a, d, params, kernel_shape, steps)
    g = jnp.einsum("nbsc,nbsr->nbcr", P, D, precision=HIGHEST)
    return _conv_to_kernel(g, params, kernel_shape)


def elementwise_grads(d, x, view_shape):
    """Per-example gradients ``(n, *view_shape)`` of a bias (``x`` None) or a scale."""
    if x is not None:
        d = d * jnp.broadcast_to(x, d.shape).astype(d.dtype)
    return jax.vmap(lambda di: unbroadcast(di, view_shape))(d)


def selection_grads(src, d, table_shape):
    """Per-example table gradients ``(n, *table_shape)`` of a selection (scatter-adds)."""
    n = src.shape[0]
    src, d = src.reshape(n, -1), d.reshape(n, -1)
    size = math.prod(table_shape)
    g = jax.vmap(lambda s, di: jnp.zeros(size + 1, di.dtype).at[s].add(di))(src, d)[:, 1:]
    return g.reshape((n,) + tuple(table_shape))


def selection_costs(M, table, R=1):
    """Extra cost per example of the forms for a selection of ``M`` output elements from a
    table of ``table`` entries, read as ``M / R`` whole slices of ``R`` entries (an embedding
    row; R = 1: single entries): the Gram over the lookups, the materialised table gradient (a
    scatter-add) and the segment sums over sorted entries."""
    L = M // max(R, 1)
    return {"ghost": L * L * (R + 1) + MEMORY_COST * L * L,
            "materialised": MEMORY_COST * (table + M),
            "sorted": 64 * MEMORY_COST * M * max(1, math.ceil(math.log2(max(M, 2))))}


def selection_mode(M, table, R=1):
    costs = selection_costs(M, table, R)
    return min(costs, key=costs.get)


def _lookups(src, d, rows, steps):
    """``(key, d)`` shaped ``(n, L)`` and ``(n, L, R)``: the L lookups of whole slices (the
    output axes ``rows`` of one example) and their cotangents; ``key`` is 1 + the flat table
    index of the slice's first entry (0: dropped)."""
    n, lead = src.shape[0], 1 + steps
    off = tuple(a + lead for a in rows)
    perm = tuple(a for a in range(src.ndim) if a not in off) + off
    R = math.prod(src.shape[a] for a in off)
    src = jnp.transpose(src, perm).reshape(n, -1, R)
    d = jnp.transpose(d, perm).reshape(n, -1, R)
    key = src[:, :, 0]
    return key, jnp.where((key > 0)[:, :, None], d, jnp.zeros_like(d))


def selection_sq_norms(src, d, mode="sorted", table_shape=None, rows=None, steps=0):
    r"""Embedding lookups: :math:`\sum_k(\sum_{o:k(o)=k}\delta_o)^2` per example.

    Args:
        src: ``(n, *out_shape)`` integers, 1 + the flat table index each output element reads,
            0 where the lookup is dropped (out of bounds in ``fill`` mode).
        d: ``(n, *out_shape)`` output cotangents.
        mode: ``"ghost"``: :math:`\sum_{o,o'}[k(o) = k(o')]\,\delta_o\delta_{o'}`;
            ``"materialised"``: the per-example table gradient by a scatter-add (then also
            the summed gradient, shaped ``table_shape``); ``"sorted"``: segment sums over the
            sorted entries (O(output) memory).

        rows: for a lookup of whole slices (:func:`numerics._ghost._whole_slices`), the
            output axes of one slice: the Gram form is then over lookups,
            :math:`\sum_{l,m}[k_l = k_m]\,\delta_l\cdot\delta_m`.
        steps: leading step axes after the examples' (inside a ``scan``).

    Returns ``(sq_norms, summed_table_gradient_or_None)``.
    r"""
    n = src.shape[0]
    if mode == "ghost" and rows is not None:
        key, dl = _lookups(src, d, rows, steps)
        eq = (key[:, :, None] == key[:, None, :]).astype(d.dtype)
        gd = jnp.einsum("nlr,nmr->nlm", dl, dl, precision=HIGHEST)
        return jnp.sum(eq * gd, axis=(1, 2)), None
    src, d = src.reshape(n, -1), d.reshape(n, -1)
    d = jnp.where(src > 0, d, jnp.zeros_like(d))
    if mode == "ghost":
        eq = (src[:, :, None] == src[:, None, :]).astype(d.dtype)
        return jnp.einsum("no,nop,np->n", d, eq, d, precision=HIGHEST), None
    if mode == "materialised":
        g = selection_grads(src, d, table_shape)
        return _sq(g), sum_examples(g)

    def one(s, di):
        order = jnp.argsort(s)
        s, di = s[order], di[order]
        new = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                               (s[1:] != s[:-1]).astype(jnp.int32)])
        seg = jnp.cumsum(new)
        sums = jax.ops.segment_sum(di, seg, num_segments=s.shape[0], indices_are_sorted=True)
        return jnp.sum(sums * sums)

    return jax.vmap(one)(src, d), None


def cross_factors(site, a, d, form, shape):
    r"""One use of a shared 2-D leaf ``(V, D)`` as factors of its per-example gradient
    :math:`\sum_s u_s \otimes w_s`: ``("dense", U (n, S, V), W (n, S, D))`` or
    ``("rows", row (n, L) (-1: dropped), W (n, L, D))`` (``form``: ``"cross:a|d|rows:±1"``)."""
    _, orient, sign = form.split(":")
    info = site.info
    if orient == "rows":
        key, W = _lookups(a, d, info["rows"], info["steps"])
        return "rows", jnp.where(key > 0, (key - 1) // shape[1], -1), W
    A, Dl = _dense_blocks_of(a, d, info["dn"], info["side"], info["steps"])
    A, Dl = A[:, 0], Dl[:, 0] * int(sign)
    return ("dense", A, Dl) if orient == "a" else ("dense", Dl, A)


def _cross(f, g):
    r"""Per-example :math:`\langle G_f, G_g\rangle` of two factored uses."""
    (kf, Uf, Wf), (kg, Ug, Wg) = f, g
    if kf == "rows" and kg == "rows":
        eq = ((Uf[:, :, None] == Ug[:, None, :]) & (Uf[:, :, None] >= 0)).astype(Wf.dtype)
        return jnp.sum(eq * jnp.einsum("nld,nmd->nlm", Wf, Wg, precision=HIGHEST), axis=(1, 2))
    if kf == "rows":
        f, g = g, f
        (kf, Uf, Wf), (kg, Ug, Wg) = f, g
    if kg == "rows":  # sum_{s,l} U_s[row_l] (W_s . W'_l)
        idx = jnp.broadcast_to(jnp.maximum(Ug, 0)[:, None, :], Uf.shape[:2] + Ug.shape[1:])
        picked = jnp.take_along_axis(Uf, idx, axis=2)  # (n, S, L)
        return jnp.sum(picked * jnp.einsum("nsd,nld->nsl", Wf, Wg, precision=HIGHEST),
                       axis=(1, 2))
    gu = jnp.einsum("nsv,ntv->nst", Uf, Ug, precision=HIGHEST)
    gw = jnp.einsum("nsd,ntd->nst", Wf, Wg, precision=HIGHEST)
    return jnp.sum(gu * gw, axis=(1, 2))


def cross_sq_norms(factors):
    r"""Squared per-example norms of :math:`\sum_k G_k` from the uses' factors: the k Gram
    terms and twice the cross terms of each pair."""
    total = 0
    for i, f in enumerate(factors):
        total = total + _cross(f, f)
        for g in factors[i + 1:]:
            total = total + 2 * _cross(f, g)
    return total
