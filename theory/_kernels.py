r"""Pair terms through arc-cosine kernels: the two-layer ReLU exact moments and the
infinite-width (NTK) limit of every family.

Arc-cosine moments (Cho & Saul 2009): for :math:`(u, v)` centred Gaussian with variances
:math:`k_{11}, k_{22}` and angle :math:`\theta`, :math:`\cos\theta = k_{12}/\sqrt{k_{11}k_{22}}`,

.. math::

    E[\theta(u)\theta(v)] = \frac{J_0}{2\pi},\quad
    E[\mathrm{relu}(u)\mathrm{relu}(v)] = \sqrt{k_{11}k_{22}}\frac{J_1}{2\pi},\quad
    E[\mathrm{relu}(u)^2\mathrm{relu}(v)^2] = k_{11}k_{22}\frac{J_2}{2\pi},

:math:`J_0 = \pi - \theta`, :math:`J_1 = \sin\theta + (\pi-\theta)\cos\theta`,
:math:`J_2 = 3\sin\theta\cos\theta + (\pi - \theta)(1 + 2\cos^2\theta)`.

**Two-layer ReLU, exact at finite width** (:math:`f = W_2\,\mathrm{relu}(W_1 x)`, both layers
trained, :math:`\sigma_1^2 = s_1^2/d`, :math:`\sigma_2^2 = s_2^2/K`). With :math:`m_0, m_2, m_4`
the three moments above for the pre-activation kernel :math:`\sigma_1^2 x_i\cdot x_j`:

.. math::

    E\langle g_i, g_j\rangle_\text{net} = c\sigma_2^2 K\,[m_4 + (K-1) m_2^2]
      + c\sigma_2^4 (x_i\cdot x_j) K\,[(c+2) m_2 + (K-1) m_0 m_2],

    E\langle g_i, g_j\rangle_\text{label} = (y_i\cdot y_j)\,K\,[m_2 + \sigma_2^2 m_0 (x_i\cdot x_j)]

(the first from :math:`E[W_2^\top W_2 Q W_2^\top W_2] = c\sigma^4(\operatorname{tr}Q\, I + (c+1)Q)`
and independence of hidden units; cross terms are odd in :math:`W_2`).

**Infinite width.** Pre-activation kernels :math:`K_l`, post-activation :math:`\hat K_l`,
derivative kernel :math:`\dot K_l = E[\phi'(u)\phi'(v)]` propagate as in the NTK; the
layer-:math:`l` pair term is :math:`E[r_i\cdot r_j]\,\langle a^i_{l-1}, a^j_{l-1}\rangle\,
\Delta_l(i,j)` with :math:`E[r_i\cdot r_j] = cK_L(i,j) + y_i\cdot y_j` and the backward factor
:math:`\Delta_L = 1`, :math:`\Delta_l = s_{l+1}^2\dot K_l\Delta_{l+1}` (fully connected) or
:math:`\Delta_{l-1} = (1 + \alpha^2 s_l^2 \dot K_{l-1})\Delta_l` (residual blocks).
"""

from __future__ import annotations

import numpy as np

from ._spec import NetSpec

TWO_PI = 2.0 * np.pi


def _angles(k11, k22, k12, pointwise=False):
    norm = k11 * k22 if pointwise else np.multiply.outer(k11, k22)
    np.sqrt(norm, out=norm)
    cos = np.divide(k12, norm, out=np.ones_like(norm), where=norm > 0)
    np.clip(cos, -1.0, 1.0, out=cos)
    return np.arccos(cos), cos, norm


def relu_moments(K: np.ndarray, k_row=None, k_col=None, *, pointwise: bool = False,
                 fourth: bool = True):
    """(m0, m2, m4) of centred Gaussian pairs with covariances ``K[i, j]`` and variances
    ``k_row[i]``, ``k_col[j]`` (default: the diagonal of a square ``K``); ``pointwise``: the
    pairs are (K[i], k_row[i], k_col[i]) (elementwise, the same arithmetic); ``fourth=False``
    skips m4 (None). In-place arithmetic: these arrays are the cost of the ReLU pair sums."""
    if k_row is None:
        k_row = k_col = np.diag(K).copy()
    theta, cos, norm = _angles(k_row, k_col, K, pointwise)
    c2 = cos * cos
    sin = np.subtract(1.0, c2)
    np.maximum(sin, 0.0, out=sin)
    np.sqrt(sin, out=sin)
    j0 = np.subtract(np.pi, theta, out=theta)
    m0 = j0 / TWO_PI
    m2 = j0 * cos
    m2 += sin
    m2 *= norm
    m2 /= TWO_PI                      # norm * j1 / 2pi, j1 = sin + j0 cos
    m4 = None
    if fourth:
        c2 *= 2.0
        c2 += 1.0
        c2 *= j0                      # j0 (1 + 2 cos^2)
        sin *= 3.0
        sin *= cos
        sin += c2                     # j2 = 3 sin cos + j0 (1 + 2 cos^2)
        norm *= norm
        norm *= sin
        norm /= TWO_PI
        m4 = norm                     # norm^2 j2 / 2pi
    return m0, m2, m4


def _post(K: np.ndarray, relu: bool, k_row=None, k_col=None):
    """Post-activation kernel and derivative kernel of a pre-activation Gram ``K`` (a block of
    rows, with the variances ``k_row``, ``k_col`` of its rows and columns)."""
    if not relu:
        return K, np.ones_like(K)
    m0, m2, _ = relu_moments(K, k_row, k_col, fourth=False)
    return m2, m0


def _diag_post(k: np.ndarray, relu: bool) -> np.ndarray:
    """Post-activation variances (the pairs (i, i)), by the same arithmetic as :func:`_post`,
    so that a block's diagonal entries and these agree to the last bit."""
    if not relu:
        return k
    return relu_moments(k, k, k, pointwise=True, fourth=False)[1]


def _gram_block(x: np.ndarray, rows, cols):
    """(x[rows]·x[cols]ᵀ, |x_i|² for all i), the entries of the pairs (i, i) set to the row
    norms (one value per pair (i, i), so angles there are exactly 0)."""
    sq = np.einsum("ij,ij->i", x, x)
    G = x[rows] @ x[cols].T
    r0, c0 = rows.start or 0, cols.start or 0
    i = np.arange(max(r0, c0), min(r0 + G.shape[0], c0 + G.shape[1]))
    G[i - r0, i - c0] = sq[i]
    return G, sq


def two_layer_pair_terms(m0, m2, m4, g, yy, K, c, sig2):
    """Exact E<g_i, g_j> of a depth-2 ReLU net for one pair, split (net W1, net W2, label W1,
    label W2); plain arithmetic, so arrays or sympy symbols both work.

    ``m0, m2, m4``: arc-cosine moments of the layer-1 pre-activations, ``g = x_i.x_j``,
    ``yy = y_i.y_j``, ``K`` the width, ``c`` the outputs, ``sig2`` the variance of W_2 entries.
    """
    net2 = c * sig2 * K * (m4 + (K - 1) * m2 * m2)
    net1 = c * sig2 * sig2 * g * K * ((c + 2) * m2 + (K - 1) * m0 * m2)
    lab2 = yy * K * m2
    lab1 = yy * sig2 * K * m0 * g
    return net1, net2, lab1, lab2


def two_layer_relu_terms(spec: NetSpec, x: np.ndarray, y: np.ndarray, rows=slice(None),
                         cols=slice(None), width_factors=(1,)):
    """Exact per-pair expectations (net, label) of a depth-2 ReLU net for the pairs (i, j),
    i in ``rows``, j in ``cols`` (default all): per layer a (rows × cols) array.

    Returns ``(net_layers, label_layers)``: lists of two arrays (layer 1, layer 2) whose
    diagonal sums give E[S1] and total sums give E[S2] (see :func:`theory._pair_sums.pair_sums`);
    with several ``width_factors`` (hidden width × factor, from the same arc-cosine moments),
    two arrays per factor, in order.
    """
    (d, K), (_, c) = spec.layer_dims
    s1, s2 = (float(g) for g in spec.gain_squares)
    G, sq = _gram_block(x, rows, cols)
    m0, m2, m4 = relu_moments(s1 / d * G, s1 / d * sq[rows], s1 / d * sq[cols])
    YY = y[rows] @ y[cols].T
    net, lab = [], []
    for factor in width_factors:
        Kf = float(K * factor)
        net1, net2, lab1, lab2 = two_layer_pair_terms(m0, m2, m4, G, YY, Kf, c, s2 / Kf)
        net += [net1, net2]
        lab += [lab1, lab2]
    return net, lab


def limit_terms(spec: NetSpec, x: np.ndarray, y: np.ndarray, rows=slice(None),
                cols=slice(None)):
    """Infinite-width pair terms per layer for the pairs (i, j), i in ``rows``, j in ``cols``
    (default all): (rows × cols) arrays, network and label parts.

    Widths enter only as the factors :math:`n_{l-1}` of :math:`\\langle a, a\\rangle`, i.e. these
    are the leading-order terms at the given widths.
    """
    K, base = limit_kernels(spec, x, rows, cols)
    YY = y[rows] @ y[cols].T
    c = spec.outputs
    return [c * K * b for b in base], [YY * b for b in base]


def limit_kernels(spec: NetSpec, x: np.ndarray, rows=slice(None), cols=slice(None)):
    """(K_L, [Θ_1, …, Θ_L]) for the pairs (i, j), i in ``rows``, j in ``cols``: the
    infinite-width per-logit output kernel (NNGP, E[f_k(x_i) f_k(x_j)]) and the per-layer
    per-logit tangent kernels (E[∂f_k(x_i)·∂f_k(x_j)] over the layer's weights), widths entering
    only as the factors n_{l-1} (as in :func:`limit_terms`)."""
    relu = spec.activation == "relu"
    L = spec.depth
    layers = spec.layers  # layers[l - 1] is W_l: fan-in, gain, residual block or not
    s2 = [float(lay.gain_square) for lay in layers]
    b2 = [float(lay.branch_square) for lay in layers]  # alpha^2 on blocks, 1 elsewhere
    G, sq = _gram_block(x, rows, cols)
    acts = [G]              # <a_{l-1}^i, a_{l-1}^j>, l = 1..L (limit)
    dots = []               # derivative kernels of the layer inputs' activation, l = 1..L-1
    K = s2[0] * G / layers[0].fan_in
    kr, kc = s2[0] * sq[rows] / layers[0].fan_in, s2[0] * sq[cols] / layers[0].fan_in
    for l in range(2, L + 1):  # layer l takes phi(h_{l-1})
        lay = layers[l - 1]
        post, dot = _post(K, relu, kr, kc)
        pr, pc = _diag_post(kr, relu), _diag_post(kc, relu)
        acts.append(lay.fan_in * post)
        dots.append(dot)
        w = b2[l - 1] * s2[l - 1]
        if lay.block:
            K, kr, kc = K + w * post, kr + w * pr, kc + w * pc
        else:
            K, kr, kc = w * post, w * pr, w * pc
    # backward factors Delta_l, l = L..1: Delta_{l-1} = Delta_l (skip + beta_l^2 s_l^2 Kdot)
    delta = [None] * (L + 1)
    delta[L] = np.ones_like(G)
    for l in range(L, 1, -1):
        lay = layers[l - 1]
        delta[l - 1] = delta[l] * (lay.skip_square + b2[l - 1] * s2[l - 1] * dots[l - 2])
    return K, [b2[l - 1] * acts[l - 1] * delta[l] for l in range(1, L + 1)]
