r"""Deep fully connected ReLU (and linear) nets: exact finite-width :math:`E[S_1]`.

One input :math:`x` at a time. A layer of width :math:`n` with activation that is active with
probability :math:`p` (ReLU: :math:`p = 1/2`; identity: :math:`p = 1`) and
:math:`\sigma^2 = s^2/n_{\text{in}}` multiplies :math:`E|a|^2` by :math:`\sigma^2 n p` and
:math:`E|a|^4` by :math:`f = \sigma^4 n(3p + (n-1)p^2)` (He ReLU, equal widths:
:math:`(K+5)/K`). The backward signal obeys an exact recursion found by splitting each weight
matrix into its component along the layer input and the orthogonal rest (independent of the
forward pass), using :math:`h_{l+1}\cdot\delta_{l+1} = |f|^2` (positive homogeneity):

.. math::

    \rho_l = \sigma_l^2 R_l,\quad
    R_{l-1} = n_{l-1}p_{l-1} Q_l + \sigma_l^4 n_{l-1}(n_{l-1}-1)p_{l-1}^2 R_l,\quad
    Q_l = f_l Q_{l+1},\quad R_L = c,\ Q_{L+1} = 1,

with :math:`E[|\delta_l|^2 \mid a_{l-1}] = \rho_l |a_{l-1}|^2` and
:math:`E\|\nabla_{W_l} f_i\|^2 = \rho_l E|a_{l-1}|^4` (zero labels). The label part uses
:math:`\tau_{l-1} = P_l/c + \sigma_l^2(n_{l-1}p_{l-1} - 1)\tau_l`, :math:`P_l = \sigma_l^2 n_l p_l
P_{l+1}`, :math:`\tau_L = 1`, and contributes :math:`\tau_l |y|^2 E|a_{l-1}|^2`. At
:math:`p = 1` this reproduces the linear result of :mod:`theory._linear` (tested).
"""

from __future__ import annotations

from ._chain import Layer


def fourth_moment_factors(n_in, n_out, s2, p_out):
    r"""Forward factors of one layer: :math:`f = \sigma^4 n(3p + (n-1)p^2)` multiplies
    :math:`E|a|^4` (the "aligned" eigenvalue; linear: :math:`\lambda_+`), and
    :math:`\mu = \sigma^4 n(n-1)p^2` is its "orthogonal" partner (linear: :math:`\lambda_-`)."""
    sig2 = s2 / n_in
    return (sig2 * sig2 * n_out * (3 * p_out + (n_out - 1) * p_out * p_out),
            sig2 * sig2 * n_out * (n_out - 1) * p_out * p_out)


def network_layer(n_in, n_out, s2, p_in, p_out) -> Layer:
    sig2 = s2 / n_in
    f, _ = fourth_moment_factors(n_in, n_out, s2, p_out)
    mu = sig2 * sig2 * n_in * (n_in - 1) * p_in * p_in
    zero = 0 * f
    B = ((f, zero), (n_in * p_in * f, mu))
    C = ((zero,), (sig2,))
    return Layer(((f,),), B, C, (f,), (f, mu))


def label_layer(n_in, n_out, s2, p_in, p_out, c) -> Layer:
    sig2 = s2 / n_in
    g = sig2 * n_out * p_out
    t = sig2 * (n_in * p_in - 1)
    zero = 0 * g
    B = ((g, zero), (g / c, t))
    C = ((zero,), (1 + zero,))
    return Layer(((g,),), B, C, (g,), (g, t))


def network_top(c):
    return (1, c)


LABEL_TOP = (1, 1)
