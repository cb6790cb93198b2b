r"""Deep fully connected ReLU nets at finite width: E[S2] by an exact reduction to the angle
between the two inputs of a pair, integrated numerically.

For one pair of inputs write :math:`a_l, a'_l` for the inputs of :math:`W_l`,
:math:`\delta_l, \delta'_l` for the backpropagated signals at its output (zero labels:
:math:`\delta_L = f`), and let :math:`(e_1, e_2)` be an orthonormal frame of
:math:`\mathrm{span}(a_l, a'_l)`. By rotation invariance and 1-homogeneity, conditional on
:math:`(a_l, a'_l)` the quantities

.. math::

    U_l = E[\delta_l\cdot\delta'_l],\qquad
    V_l^{\alpha\beta} = E[(W_le_\alpha\cdot\delta_l)(W_le_\beta\cdot\delta'_l)],\qquad
    \Psi_l = \sum_{m\ge l} E[(\delta_m\cdot\delta'_m)(a_m\cdot a'_m)]

equal :math:`|a_l|^p|a'_l|^q` times functions of the angle :math:`\theta_l` alone
(:math:`(p, q) = (1, 1)` for U, V and (2, 2) for Ψ; the label part :math:`\delta_L = y` has
(0, 0) and (1, 1) and a factor :math:`y\cdot y'`). They obey an exact recursion down the
layers: split :math:`W_{l+1}` into its action on the frame :math:`(f_1, f_2)` of
:math:`(a_{l+1}, a'_{l+1})` (which, with the layers above, determines :math:`\delta_{l+1}`) and
the orthogonal rest (independent Gaussian). With :math:`g_\alpha = W_le_\alpha` (i.i.d.
:math:`\mathcal N(0, \sigma_l^2)` vectors), masks :math:`D = \mathbb 1[h_l > 0]`,
:math:`D' = \mathbb 1[h'_l > 0]`, :math:`M = DD'`, :math:`v^\alpha = Dg_\alpha`,
:math:`v'^\beta = D'g_\beta`:

.. math::

    U_l = E\Big[\sum_{\gamma\epsilon}(f_\gamma^\top M f_\epsilon)V_{l+1}^{\gamma\epsilon}
      + \sigma_{l+1}^2\big(\operatorname{tr}M - \textstyle\sum_\gamma f_\gamma^\top M f_\gamma
      \big)U_{l+1}\Big],

    V_l^{\alpha\beta} = E\Big[\sum_{\gamma\epsilon}(f_\gamma\cdot v^\alpha)(f_\epsilon\cdot
      v'^\beta)V_{l+1}^{\gamma\epsilon} + \sigma_{l+1}^2\big(v^\alpha\cdot v'^\beta -
      \textstyle\sum_\gamma (f_\gamma\cdot v^\alpha)(f_\gamma\cdot v'^\beta)\big)U_{l+1}\Big],

    \Psi_l = (a_l\cdot a'_l)\,U_l + E[\Psi_{l+1}],

the expectations over :math:`g_1, g_2` (one layer's :math:`n_l` units) at fixed
:math:`\theta_l`. At the output (:math:`f = W_La`, c outputs): :math:`U_L = c\sigma_L^2 a\cdot
a'`, :math:`V_L = |a||a'|\sigma_L^4 c\,[(c+2)\cos\theta,\ c\sin\theta;\ \sin\theta,\
\cos\theta]` (labels: :math:`U_L = 1`, :math:`V_L = \sigma_L^2 I`). The pair's contribution to
E[S2] is :math:`\Psi_1` at the data, :math:`|x|^2|x'|^2\psi_1(\theta_0)` (labels:
:math:`(y\cdot y')|x||x'|\psi^y_1(\theta_0)`).

Numerics: each layer's expectation is an average over fixed antithetic pseudo-random draws of
:math:`(g_1, g_2)` (the same draws for every angle, so the functions are smooth in θ; how many:
:func:`layer_nodes`, fewer for wider layers, whose per-draw values concentrate), corrected by
regression on five control variates with exact means (:func:`_control_variates`), on grids of
angles (:func:`grid_points`, more for deeper nets) with linear interpolation. Every unit sum
the recursion needs is a sum over the units of a mask (:math:`D, D', M`) times
:math:`1, g_1^2, g_1g_2` or :math:`g_2^2`, and the masks are arcs of the polar angle of
:math:`(g_{1u}, g_{2u})`, so after one sort per draw they are prefix-sum differences
(:func:`_unit_sums`): a layer costs O(draws · units · log units + draws · angles). The caller
(:func:`theory._registry.pair_chain_parts`) keeps E[S1] and the diagonal pairs exact and
scales the functions to the exact value at angle 0. Precision (README): spread over draw seeds
0.11-0.34% of E[S2] (K = 16-1024, L = 8-32), offset of the draw rule from 4-8x the draws at
most 0.12%, interpolation bias at most +0.17%. For a linear activation the same recursion
reproduces the exact linear result (tested).
"""

from __future__ import annotations

import functools

import numpy as np

from ._spec import NetSpec

GRID = 41          # angles per grid up to depth GRID_DEPTH (see grid_points)
GRID_DEPTH = 16
GRID_MAX = 161
NODES = 4096       # antithetic draws of one layer's (g1, g2) per angle, at widths <= NODES_WIDTH
NODES_WIDTH = 16   # wider layers get NODES * NODES_WIDTH / width draws (see layer_nodes) ...
NODES_MIN = 256    # ... but at least this many
SEED = 20260      # of the draws (fixed: the result is a deterministic function of the net)
CHUNK = 1 << 19    # floats per array of one chunk of (angles x nodes x units)
PN_MIN = 1e-10     # |a' - k a|^2 / |a'|^2 below this: the inputs are parallel (no f2)


def layer_nodes(units: int, nodes: int | None = None) -> int:
    """Draws for a layer of ``units`` units (even: antithetic pairs). The per-draw values of a
    layer's expectations are sums over its units, so their relative spread shrinks like
    1/units and the draws needed for a fixed precision like 1/units: :data:`NODES` ·
    :data:`NODES_WIDTH` / units, at least :data:`NODES_MIN` (the regression on the control
    variates is biased at few draws) and at most :data:`NODES`. ``nodes`` (an int) overrides
    the rule."""
    if nodes is None:
        nodes = min(NODES, max(NODES_MIN, round(NODES * NODES_WIDTH / max(1, units))))
    return max(2, 2 * (int(nodes) // 2))


def grid_points(depth: int) -> int:
    """Angles per grid for a net of ``depth`` weight matrices. The bias of linear interpolation
    grows with the depth (41 vs 161 angles, MNIST-1D: +0.2% of E[S2] at K = 128, L = 16;
    +0.5% at K = 256, L = 32), about like L^1.4; at fixed depth it falls like 1/points². So
    :data:`GRID` angles up to depth :data:`GRID_DEPTH`, then GRID · (L/GRID_DEPTH)^0.75
    (bias about constant), at most :data:`GRID_MAX` (reached at L ≈ 100)."""
    return int(min(GRID_MAX, max(GRID, round(GRID * (depth / GRID_DEPTH) ** 0.75))))


def angle_grid(points: int = GRID) -> np.ndarray:
    """Angles of the data pairs in [0, π], up to 3× denser near 0."""
    t = np.linspace(0.0, 1.0, points)
    return np.pi * (t + t * t) / 2


def hidden_grid(points: int = GRID, relu: bool = True) -> np.ndarray:
    """Angles inside the net: [0, π/2] for ReLU (nonnegative activations), quadratically denser
    near 0 where depth drives them; [0, π] for the identity."""
    t = np.linspace(0.0, 1.0, points)
    return (np.pi / 2 if relu else np.pi) * t * t


def _top(theta, c, sig2, label: bool):
    """(u, v[2,2]) of the output layer at unit input norms."""
    cos, sin = np.cos(theta), np.sin(theta)
    if label:
        one = np.ones_like(theta)
        zero = np.zeros_like(theta)
        return one, np.array([[sig2 * one, zero], [zero, sig2 * one]])
    s4 = sig2 * sig2 * c
    return c * sig2 * cos, np.array([[s4 * (c + 2) * cos, s4 * c * sin],
                                     [s4 * sin, s4 * cos]])


def _control_variates(r, r2, aa, theta, units, sig2, relu):
    r"""A mean over the draws (last axis) corrected by regression on five control variates whose
    exact means are known: :math:`|a|^2, |a'|^2, a\cdot a', |a|^2|a'|^2, (a\cdot a')^2` (arc-cosine
    moments :math:`J_1, J_2` for ReLU, Gaussian moments for the identity), per angle."""
    cos, sin = np.cos(theta), np.sin(theta)
    K = float(units)
    if relu:
        j1 = (sin + (np.pi - theta) * cos) / (2 * np.pi)       # E relu(u) relu(u')
        j2 = (3 * sin * cos + (np.pi - theta) * (1 + 2 * cos * cos)) / (2 * np.pi)
        sq = 0.5                                                 # E relu(u)^2
    else:
        j1, j2, sq = cos, 1 + 2 * cos * cos, 1.0
    one = np.ones_like(theta)
    exact = np.stack([K * sq * one, K * sq * one, K * j1,
                      K * j2 + K * (K - 1) * sq * sq, K * j2 + K * (K - 1) * j1 * j1])
    scale = np.array([K, K, K, K * K, K * K])[:, None]
    C = np.stack([r * r / sig2, r2 * r2 / sig2, aa / sig2, (r * r2) ** 2 / sig2 ** 2,
                  (aa / sig2) ** 2]) / scale[..., None]
    exact = exact / scale
    nodes = C.shape[-1]
    Cbar = C.mean(-1)
    Cc = C - Cbar[..., None]
    S = np.einsum("ian,jan->aij", Cc, Cc) / nodes
    Sinv = np.linalg.pinv(S, rcond=1e-10, hermitian=True)
    dev = (Cbar - exact).T                                       # (angles, 5)

    def mean(Y):
        Yc = Y - Y.mean(-1, keepdims=True)
        beta = np.einsum("aij,ja->ai", Sinv, np.einsum("ian,an->ia", Cc, Yc) / nodes)
        return Y.mean(-1) - np.einsum("ai,ai->a", beta, dev)

    return mean


def _unit_sums(g, theta, relu: bool):
    r"""Sums over one layer's units, per angle and draw, of the masks
    :math:`D, M = DD', D'` times :math:`(1, g_1^2, g_1g_2, g_2^2)`: arrays (angles, nodes, 4)
    (D, which does not depend on the angle: (1, nodes, 4)). With :math:`h = g_1`,
    :math:`h' = \cos\theta\,g_1 + \sin\theta\,g_2` and φ the polar angle of a unit's
    :math:`(g_1, g_2)`: :math:`D = [|φ| < π/2]`, :math:`M = [θ - π/2 < φ < π/2]`,
    :math:`D' = [θ - π/2 < φ < θ + π/2]` (mod 2π) for θ ∈ [0, π]. So, once each draw's units
    are sorted by φ, every sum is a difference of prefix sums: O(log units) per angle and draw
    instead of O(units)."""
    nodes, units, _ = g.shape
    step = max(1, CHUNK // (4 * units))             # draws per chunk: bounded memory
    if nodes > step:
        parts = [_unit_sums(g[s:s + step], theta, relu) for s in range(0, nodes, step)]
        return tuple(np.concatenate(p, 1) for p in zip(*parts))
    g1, g2 = g[..., 0], g[..., 1]
    if not relu:  # identity: every mask is 1
        tot = np.stack([np.full(nodes, float(units)), (g1 * g1).sum(1), (g1 * g2).sum(1),
                        (g2 * g2).sum(1)], -1)[None]
        shape = (theta.size, nodes, 4)
        return tot, np.broadcast_to(tot, shape), np.broadcast_to(tot, shape)
    phi = np.arctan2(g2, g1)
    order = np.argsort(phi, axis=1)
    phi = np.take_along_axis(phi, order, 1)
    g1, g2 = np.take_along_axis(g1, order, 1), np.take_along_axis(g2, order, 1)
    csum = np.zeros((3, nodes, units + 1))          # prefix sums of g1 g1, g1 g2, g2 g2
    for i, q in enumerate((g1 * g1, g1 * g2, g2 * g2)):
        np.cumsum(q, 1, out=csum[i, :, 1:])
    th = np.clip(theta, 0.0, np.pi)
    # one sorted array: draw k's angles shifted by 8πk (φ in (-π, π]); a query t in (π, 2π)
    # wraps to t - 2π with one full turn (all units) added
    shift = 8 * np.pi * np.arange(nodes)
    keys = (phi + shift[:, None]).ravel()
    rows = np.arange(nodes)

    def prefix(t):                                   # t: (k,) -> (k, nodes, 4)
        wrap = t > np.pi
        tt = np.where(wrap, t - 2 * np.pi, t)
        idx = np.searchsorted(keys, tt[:, None] + shift) - units * rows
        out = np.empty(t.shape + (nodes, 4))
        out[..., 0] = idx
        out[..., 1:] = np.moveaxis(csum[:, rows, idx], 0, -1)
        return out, wrap

    lo, _ = prefix(th - np.pi / 2)
    ends, _ = prefix(np.array([-np.pi / 2, np.pi / 2]))
    hi, wrap = prefix(th + np.pi / 2)
    total = np.concatenate([np.full((nodes, 1), float(units)), csum[:, :, -1].T], 1)
    hi[wrap] += total
    D = (ends[1] - ends[0])[None]
    return D, ends[1][None] - lo, hi - lo       # D, M, D'


def _layer(theta, g, sig2_next, sets, grid, relu: bool, sig2_this: float):
    """One step down: for each function set ``(u, v, psi, p)`` (next layer's values on
    ``grid``; p = 1 network, 0 labels) its values at this layer's input angles ``theta``,
    averaging over the draws ``g`` (nodes, units, 2) of this layer's frame pre-activations
    (variance ``sig2_this``; ``sig2_next`` is the next layer's). Every unit sum of the recursion
    is a combination of :func:`_unit_sums` (the frame :math:`f_1 = a/|a|`,
    :math:`f_2 \\propto a' - k a`, :math:`k = a\\cdot a'/|a|^2`, expanded). Where
    :math:`a' \\parallel a` (angle 0) the frame has no :math:`f_2` and that direction joins the
    orthogonal rest (exact: there :math:`V^{22} = \\sigma^2 U`, :math:`V^{12} = 0`)."""
    nodes, units, _ = g.shape
    d, m, e = _unit_sums(g, theta, relu)
    step = max(1, CHUNK // (4 * nodes))   # angles per chunk: about 100 arrays of this size
    parts = [_layer_angles(theta[i:i + step], d, m[i:i + step], e[i:i + step], units,
                           sig2_next, sets, grid, relu, sig2_this)
             for i in range(0, theta.size, step)]
    return [(np.concatenate([q[k][0] for q in parts]),
             np.concatenate([q[k][1] for q in parts], axis=-1),
             np.concatenate([q[k][2] for q in parts])) for k in range(len(sets))]


def _layer_angles(theta, d, m, e, units, sig2_next, sets, grid, relu, sig2_this):
    """:func:`_layer` at the angles ``theta`` from their unit sums ``d, m, e``."""
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    d11, d12 = d[..., 1], d[..., 2]                       # sum D g1 g_alpha
    m0, m11, m12, m22 = (m[..., i] for i in range(4))     # sum M {1, g1 g1, g1 g2, g2 g2}
    e11, e12, e22 = e[..., 1], e[..., 2], e[..., 3]       # sum D' {...}
    r = np.sqrt(d11) * np.ones_like(c)                    # |a|, a = D g1
    r2 = np.sqrt(c * c * e11 + 2 * c * s * e12 + s * s * e22)   # |a'|, a' = D' h'
    aa = c * m11 + s * m12                                # a.a' = sum M g1 h'
    ok = (r > 0) & (r2 > 0)
    rs, r2s = np.where(ok, r, 1.0), np.where(ok, r2, 1.0)
    k = aa / (rs * rs)
    pn2 = r2s * r2s - aa * k                              # |a' - k a|^2
    has2 = pn2 > PN_MIN * r2s * r2s   # else a' is parallel to a: f2 joins the orthogonal rest
    pn = np.where(has2, np.sqrt(np.where(has2, pn2, 1.0)), 1.0)
    w2 = has2 / pn                                        # 1/|a' - k a|, 0 without f2
    th_next = np.arccos(np.clip(aa / (rs * r2s), -1.0, 1.0))
    mean = _control_variates(r, r2, aa, theta, units, sig2_this, relu)
    Mhh = c * c * m11 + 2 * c * s * m12 + s * s * m22     # sum M h'^2
    f00 = m11 / (rs * rs)
    f01 = (aa - k * m11) / rs * w2
    f11 = (Mhh - 2 * k * aa + k * k * m11) * w2 * w2
    fMf = [[f00, f01], [f01, f11]]
    rest_u = m0 - f00 - f11                               # tr M - sum_g f_g' M f_g
    Dg = (d11, d12)                                       # sum D g1 g_alpha = a.g_alpha
    Mhg = (c * m11 + s * m12, c * m12 + s * m22)          # sum M h' g_alpha = a'.(D g_alpha)
    Mgg = ((m11, m12), (m12, m22))
    Ehg = (c * e11 + s * e12, c * e12 + s * e22)          # sum D' h' g_beta = a'.(D' g_beta)
    fv = [[Dg[al] / rs, (Mhg[al] - k * Dg[al]) * w2] for al in range(2)]       # f_k.(D g_al)
    fvp = [[Mgg[0][be] / rs, (Ehg[be] - k * Mgg[0][be]) * w2] for be in range(2)]  # f_k.(D' g_be)
    rest_v = [[Mgg[al][be] - fv[al][0] * fvp[be][0] - fv[al][1] * fvp[be][1]
               for be in range(2)] for al in range(2)]
    outs = []
    for u, v, psi, p in sets:
        un = np.interp(th_next, grid, u)
        vn = [[np.interp(th_next, grid, v[i][j]) for j in range(2)] for i in range(2)]
        scale = (rs * r2s) ** p * ok           # homogeneity of U, V at the next layer
        tot = sum(fMf[i][j] * vn[i][j] for i in range(2) for j in range(2))
        ou = mean((tot + sig2_next * rest_u * un) * scale)
        ov = np.empty((2, 2) + theta.shape)
        for al in range(2):
            for be in range(2):
                tot = sum(fv[al][i] * fvp[be][j] * vn[i][j] for i in range(2) for j in range(2))
                ov[al, be] = mean((tot + sig2_next * rest_v[al][be] * un) * scale)
        opsi = mean((rs * r2s) ** (p + 1) * ok * np.interp(th_next, grid, psi))
        outs.append((ou, ov, opsi + np.cos(theta) * ou))
    return outs


def _layer_direct(theta, g, sig2_next, sets, grid, relu: bool, sig2_this: float):
    """Reference for :func:`_layer` (tests): the same step with every unit sum taken
    directly, O(angles × nodes × units); where a' ∥ a its f_2 is rounding noise, so compare at
    other angles. One step down: for each function set ``(u, v, psi, p)`` (next layer's values on
    ``grid``; p = 1 network, 0 labels) its values at this layer's input angles ``theta``,
    averaging over the draws ``g`` (nodes, units, 2) of this layer's frame pre-activations
    (variance ``sig2_this``; ``sig2_next`` is the next layer's)."""
    outs = [(np.empty(theta.shape), np.empty((2, 2) + theta.shape), np.empty(theta.shape))
            for _ in sets]
    nodes, units, _ = g.shape
    step = max(1, CHUNK // (nodes * units))
    g1, g2 = g[..., 0], g[..., 1]
    dot = lambda a, b: np.einsum("anu,anu->an", a, b)  # noqa: E731
    for s in range(0, theta.size, step):
        th = theta[s:s + step][:, None, None]
        h = np.broadcast_to(g1[None], (th.shape[0],) + g1.shape)
        h2 = np.cos(th) * g1[None] + np.sin(th) * g2[None]
        if relu:
            D, D2 = h > 0, h2 > 0
            a, a2 = np.where(D, h, 0.0), np.where(D2, h2, 0.0)
        else:
            D = D2 = np.ones(h.shape, bool)
            a, a2 = h, h2
        r, r2 = np.sqrt(dot(a, a)), np.sqrt(dot(a2, a2))
        ok = (r > 0) & (r2 > 0)
        rs, r2s = np.where(ok, r, 1.0), np.where(ok, r2, 1.0)
        f1 = a / rs[..., None]
        c12 = dot(f1, a2)
        perp = a2 - c12[..., None] * f1
        pn = np.sqrt(dot(perp, perp))
        fs = (f1, perp / np.where(pn > 0, pn, 1.0)[..., None])
        th_next = np.arccos(np.clip(c12 / r2s, -1.0, 1.0))
        mean = _control_variates(r, r2, c12 * rs, theta[s:s + step], units,
                                 sig2_this, relu)
        M = D & D2
        Mf = [f * M for f in fs]
        fMf = [[dot(fs[i], Mf[j]) for j in range(2)] for i in range(2)]
        rest_u = M.sum(-1) - fMf[0][0] - fMf[1][1]           # tr M - sum_g f_g' M f_g
        vs = (np.where(D, g1[None], 0.0), np.where(D, g2[None], 0.0))      # D g_alpha
        vps = (np.where(D2, g1[None], 0.0), np.where(D2, g2[None], 0.0))   # D' g_beta
        fv = [[dot(fs[k], vs[al]) for k in range(2)] for al in range(2)]
        fvp = [[dot(fs[k], vps[be]) for k in range(2)] for be in range(2)]
        rest_v = [[dot(vs[al], vps[be]) - fv[al][0] * fvp[be][0] - fv[al][1] * fvp[be][1]
                   for be in range(2)] for al in range(2)]
        for (u, v, psi, p), (ou, ov, opsi) in zip(sets, outs):
            un = np.interp(th_next, grid, u)
            vn = [[np.interp(th_next, grid, v[i][j]) for j in range(2)] for i in range(2)]
            scale = (rs * r2s) ** p * ok           # homogeneity of U, V at the next layer
            tot = sum(fMf[i][j] * vn[i][j] for i in range(2) for j in range(2))
            ou[s:s + step] = mean((tot + sig2_next * rest_u * un) * scale)
            for al in range(2):
                for be in range(2):
                    tot = sum(fv[al][i] * fvp[be][j] * vn[i][j]
                              for i in range(2) for j in range(2))
                    ov[al, be, s:s + step] = mean((tot + sig2_next * rest_v[al][be] * un)
                                                  * scale)
            opsi[s:s + step] = mean((rs * r2s) ** (p + 1) * ok
                                    * np.interp(th_next, grid, psi))
    return [(ou, ov, opsi + np.cos(theta) * ou) for ou, ov, opsi in outs]


def pair_functions(spec: NetSpec, *, grid=None, nodes: int | None = None,
                   seed: int | None = None, points: int | None = None):
    r"""(grid, ψ_net, ψ_label): the pair-sum functions of the first layer's input angle,
    :math:`\Psi_1 = |x|^2|x'|^2\psi_\text{net}(\theta)` and
    :math:`(y\cdot y')|x||x'|\psi_\text{label}(\theta)` (see the module doc). ``nodes``:
    draws per layer (default: :func:`layer_nodes` of each layer's width). Deterministic in
    its arguments, so results on the default grid are cached (read-only arrays)."""
    if spec.arch != "fc":
        raise ValueError("the pair chain covers fully connected nets")
    points = grid_points(spec.depth) if points is None else points
    seed = SEED if seed is None else seed
    if grid is None:
        return _cached(spec, nodes, seed, points)
    return _pair_functions(spec, np.asarray(grid, float), nodes, seed, points)


@functools.lru_cache(maxsize=16)
def _cached(spec, nodes, seed, points):
    out = _pair_functions(spec, angle_grid(points), nodes, seed, points)
    for a in out:
        a.setflags(write=False)
    return out


def _pair_functions(spec, grid, nodes, seed, points):
    relu = spec.activation == "relu"
    # ReLU outputs are nonnegative: inside the net the angles lie in [0, pi/2]
    hgrid = hidden_grid(points, relu)
    L = spec.depth
    dims = spec.dims
    sig2 = [float(s2) / dims[l] for l, s2 in enumerate(spec.gain_squares)]  # sigma_l^2, l=1..L

    def draws(l):  # layer l's draws (nodes, n_(l+1), 2), antithetic: h and -h swap the masks
        z = np.random.default_rng([seed, l]).standard_normal(
            (layer_nodes(dims[l + 1], nodes) // 2, dims[l + 1], 2))
        return np.concatenate([z, -z]) * np.sqrt(sig2[l])

    sets = []
    for label in (False, True):
        u, v = _top(hgrid, spec.outputs, sig2[L - 1], label)
        sets.append((u, v, np.cos(hgrid) * u, 0 if label else 1))
    for l in range(L - 2, -1, -1):     # python index of W_{l+1}, whose output has n_{l+1}
        new = _layer(grid if l == 0 else hgrid, draws(l), sig2[l + 1], sets, hgrid, relu,
                     sig2[l])
        sets = [(u, v, psi, p) for (u, v, psi), (_, _, _, p) in zip(new, sets)]
    return grid, sets[0][2], sets[1][2]


def pair_terms(grid, psi_net, psi_label, x, y, rows=slice(None), cols=slice(None)):
    """Pair contributions (rows × cols) to E[S2] from the angle functions (network, label);
    one "layer" each, in the form :func:`theory._pair_sums.pair_sums` sums."""
    sq = np.einsum("ij,ij->i", x, x)
    nr, nc = np.sqrt(sq[rows]), np.sqrt(sq[cols])
    norm = np.multiply.outer(nr, nc)
    G = x[rows] @ x[cols].T
    cos = np.divide(G, norm, out=np.ones_like(G), where=norm > 0)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    net = norm * norm * np.interp(theta, grid, psi_net)
    lab = (y[rows] @ y[cols].T) * norm * np.interp(theta, grid, psi_label)
    return [net], [lab]
