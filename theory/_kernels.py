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
    norm = np.sqrt(k11 * k22 if pointwise else np.outer(k11, k22))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, k12 / np.where(norm > 0, norm, 1.0), 1.0)
    cos = np.clip(cos, -1.0, 1.0)
    return np.arccos(cos), cos, norm


def relu_moments(K: np.ndarray, k_row=None, k_col=None, *, pointwise: bool = False):
    """(m0, m2, m4) of centred Gaussian pairs with covariances ``K[i, j]`` and variances
    ``k_row[i]``, ``k_col[j]`` (default: the diagonal of a square ``K``); ``pointwise``: the
    pairs are (K[i], k_row[i], k_col[i]) (elementwise, the same arithmetic)."""
    if k_row is None:
        k_row = k_col = np.diag(K).copy()
    theta, cos, norm = _angles(k_row, k_col, K, pointwise)
    sin = np.sqrt(np.maximum(1.0 - cos * cos, 0.0))
    j0 = np.pi - theta
    j1 = sin + j0 * cos
    j2 = 3 * sin * cos + j0 * (1 + 2 * cos * cos)
    return j0 / TWO_PI, norm * j1 / TWO_PI, norm * norm * j2 / TWO_PI


def _post(K: np.ndarray, relu: bool, k_row=None, k_col=None):
    """Post-activation kernel and derivative kernel of a pre-activation Gram ``K`` (a block of
    rows, with the variances ``k_row``, ``k_col`` of its rows and columns)."""
    if not relu:
        return K, np.ones_like(K)
    m0, m2, _ = relu_moments(K, k_row, k_col)
    return m2, m0


def _diag_post(k: np.ndarray, relu: bool) -> np.ndarray:
    """Post-activation variances (the pairs (i, i)), by the same arithmetic as :func:`_post`,
    so that a block's diagonal entries and these agree to the last bit."""
    if not relu:
        return k
    return relu_moments(k, k, k, pointwise=True)[1]


def _gram_block(x: np.ndarray, rows):
    """(x[rows]·xᵀ, |x_i|² for all i), the block's diagonal entries set to the row norms (one
    value per pair (i, i), so angles there are exactly 0)."""
    sq = np.einsum("ij,ij->i", x, x)
    G = x[rows] @ x.T
    start = rows.start or 0
    r = np.arange(G.shape[0])
    G[r, start + r] = sq[start:start + G.shape[0]]
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


def two_layer_relu_terms(spec: NetSpec, x: np.ndarray, y: np.ndarray, rows=slice(None)):
    """Exact per-pair expectations (net, label) of a depth-2 ReLU net for the pairs (i, j),
    i in ``rows`` (default all), j = 1..n: per layer a (rows × n) array.

    Returns ``(net_layers, label_layers)``: lists of two arrays (layer 1, layer 2) whose
    diagonal sums give E[S1] and total sums give E[S2] (see :func:`pair_sums`).
    """
    (d, K), (_, c) = spec.layer_dims
    s1, s2 = (float(g) for g in spec.gain_squares)
    G, sq = _gram_block(x, rows)
    m0, m2, m4 = relu_moments(s1 / d * G, s1 / d * sq[rows], s1 / d * sq)
    net1, net2, lab1, lab2 = two_layer_pair_terms(m0, m2, m4, G, y[rows] @ y.T, K, c, s2 / K)
    return [net1, net2], [lab1, lab2]


def limit_terms(spec: NetSpec, x: np.ndarray, y: np.ndarray, rows=slice(None)):
    """Infinite-width pair terms per layer for the pairs (i, j), i in ``rows`` (default all):
    (rows × n) arrays, network and label parts.

    Widths enter only as the factors :math:`n_{l-1}` of :math:`\\langle a, a\\rangle`, i.e. these
    are the leading-order terms at the given widths.
    """
    relu = spec.activation == "relu"
    L = spec.depth
    dims = spec.dims
    s2 = [float(g) for g in spec.gain_squares]
    G, sq = _gram_block(x, rows)
    YY = y[rows] @ y.T
    c = spec.outputs
    acts = [G]              # <a_{l-1}^i, a_{l-1}^j>, l = 1..L (limit)
    dots = []               # derivative kernels of the layer inputs' activation, l = 1..L-1
    K = s2[0] * G / dims[0]
    kr, kc = s2[0] * sq[rows] / dims[0], s2[0] * sq / dims[0]  # variances of rows, columns
    residual = spec.arch == "residual"
    a2 = float(spec.alpha_square) if residual else 0.0
    for l in range(2, L + 1):  # layer l takes phi(h_{l-1})
        post, dot = _post(K, relu, kr, kc)
        pr, pc = _diag_post(kr, relu), _diag_post(kc, relu)
        acts.append(dims[l - 1] * post)
        dots.append(dot)
        if residual and l <= L - 1:
            K, kr, kc = K + a2 * s2[l - 1] * post, kr + a2 * s2[l - 1] * pr, \
                kc + a2 * s2[l - 1] * pc
        else:
            K, kr, kc = s2[l - 1] * post, s2[l - 1] * pr, s2[l - 1] * pc
    # backward factors Delta_l, l = L..1
    delta = [None] * (L + 1)
    delta[L] = np.ones_like(G)
    if L >= 2:
        delta[L - 1] = s2[L - 1] * dots[L - 2]
        for l in range(L - 1, 1, -1):
            if residual:
                delta[l - 1] = delta[l] * (1.0 + a2 * s2[l - 1] * dots[l - 2])
            else:
                delta[l - 1] = delta[l] * s2[l - 1] * dots[l - 2]
    net, lab = [], []
    for l in range(1, L + 1):
        coef = a2 if (residual and 2 <= l <= L - 1) else 1.0
        base = coef * acts[l - 1] * delta[l]
        net.append(c * K * base)
        lab.append(YY * base)
    return net, lab
