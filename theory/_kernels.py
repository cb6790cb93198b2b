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


def _angles(k11, k22, k12):
    norm = np.sqrt(np.outer(k11, k22))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, k12 / np.where(norm > 0, norm, 1.0), 1.0)
    cos = np.clip(cos, -1.0, 1.0)
    return np.arccos(cos), cos, norm


def relu_moments(K: np.ndarray):
    """(m0, m2, m4) of a centred Gaussian pair with covariance matrix entries of Gram ``K``."""
    k = np.diag(K).copy()
    theta, cos, norm = _angles(k, k, K)
    sin = np.sqrt(np.maximum(1.0 - cos * cos, 0.0))
    j0 = np.pi - theta
    j1 = sin + j0 * cos
    j2 = 3 * sin * cos + j0 * (1 + 2 * cos * cos)
    return j0 / TWO_PI, norm * j1 / TWO_PI, norm * norm * j2 / TWO_PI


def _post(K: np.ndarray, relu: bool):
    """Post-activation kernel and derivative kernel of a pre-activation Gram ``K``."""
    if not relu:
        return K, np.ones_like(K)
    m0, m2, _ = relu_moments(K)
    return m2, m0


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


def two_layer_relu_terms(spec: NetSpec, x: np.ndarray, y: np.ndarray):
    """Exact per-pair expectations (net, label) of a depth-2 ReLU net, as n×n matrices per layer.

    Returns ``(net_layers, label_layers)``: lists of two n×n arrays (layer 1, layer 2) whose
    diagonal sums give E[S1] and total sums give E[S2].
    """
    (d, K), (_, c) = spec.layer_dims
    s1, s2 = (float(g) for g in spec.gain_squares)
    G = x @ x.T
    m0, m2, m4 = relu_moments(s1 / d * G)
    net1, net2, lab1, lab2 = two_layer_pair_terms(m0, m2, m4, G, y @ y.T, K, c, s2 / K)
    return [net1, net2], [lab1, lab2]


def limit_terms(spec: NetSpec, x: np.ndarray, y: np.ndarray):
    """Infinite-width pair terms per layer (n×n arrays), network and label parts.

    Widths enter only as the factors :math:`n_{l-1}` of :math:`\\langle a, a\\rangle`, i.e. these
    are the leading-order terms at the given widths.
    """
    relu = spec.activation == "relu"
    L = spec.depth
    dims = spec.dims
    s2 = [float(g) for g in spec.gain_squares]
    G = x @ x.T
    YY = y @ y.T
    c = spec.outputs
    acts = [G]              # <a_{l-1}^i, a_{l-1}^j>, l = 1..L (limit)
    dots = []               # derivative kernels of the layer inputs' activation, l = 1..L-1
    K = s2[0] * G / dims[0]
    residual = spec.arch == "residual"
    a2 = float(spec.alpha_square) if residual else 0.0
    for l in range(2, L + 1):  # layer l takes phi(h_{l-1})
        post, dot = _post(K, relu)
        acts.append(dims[l - 1] * post)
        dots.append(dot)
        if residual and l <= L - 1:
            K = K + a2 * s2[l - 1] * post
        else:
            K = s2[l - 1] * post
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
