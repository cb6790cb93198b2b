r"""Deep linear networks, fully connected or residual: exact finite-width :math:`E[S_1], E[S_2]`.

Write layer :math:`l` as :math:`T_l = \gamma_l I + \beta_l W_l` (fully connected:
:math:`\gamma=0, \beta=1`; residual block: :math:`\gamma=1, \beta=\alpha`), :math:`W_l` with
:math:`n` rows and i.i.d. :math:`\mathcal N(0, \sigma^2)` entries, :math:`\sigma^2 = s_l^2/n_{l-1}`.
For fixed vectors :math:`a, b`, with :math:`p = |a|^2|b|^2` and :math:`q = (a\cdot b)^2`,
Gaussian fourth moments give the exact linear map

.. math::

    \begin{pmatrix} p' \\ q' \end{pmatrix} = M \begin{pmatrix} p \\ q \end{pmatrix},\quad
    M = \begin{pmatrix}
      \gamma^4 + 2\gamma^2\beta^2\sigma^2 n + \beta^4\sigma^4 n^2 &
      4\gamma^2\beta^2\sigma^2 + 2\beta^4\sigma^4 n \\
      2\gamma^2\beta^2\sigma^2 + \beta^4\sigma^4 n &
      \gamma^4 + 2\gamma^2\beta^2\sigma^2 (n+1) + \beta^4\sigma^4 n(n+1)
    \end{pmatrix}

for :math:`(p', q')` of :math:`(T a, T b)`, with eigenvectors :math:`(1, 1)`, :math:`(2, -1)` and
eigenvalues :math:`\lambda_\pm = \gamma^4 + 2\gamma^2\beta^2\sigma^2(n+e_\pm) +
\beta^4\sigma^4 n (n + e_\pm)`, :math:`e_+ = 2`, :math:`e_- = -1` (for equal fully connected
widths :math:`K`: :math:`\lambda_+ = s^4(1 + 2/K)`, :math:`\lambda_- = s^4(1 - 1/K)`).
The same map with :math:`n = n_{l-1}` moves :math:`((\operatorname{tr} AA^\top)^2,
\operatorname{tr}(AA^\top)^2)` of the backward product :math:`A_l = T_L \cdots T_{l+1}` one layer
down. With :math:`r_i = f(x_i) - y_i` the layer-:math:`l` gradient inner product is
:math:`\beta_l^2 (r_i^\top A_l A_l^\top r_j)(a_i \cdot a_j)`, :math:`a = T_{l-1}\cdots T_1 x`;
odd moments vanish, and

.. math::

    E[S_2] = \sum_l \beta_l^2\Big(\tfrac{\gamma_l^2}{n_l} + \beta_l^2\sigma_l^2\Big)
      E\operatorname{tr}(A_lA_l^\top)^2\, \sum_{ij} E(a_i\cdot a_j)^2
      + \sum_l \beta_l^2 \prod_{k>l} u_k \prod_{k<l} v_k \sum_{ij} (y_i\cdot y_j)(x_i\cdot x_j),

:math:`u_k = \gamma_k^2 + \beta_k^2\sigma_k^2 n_{k-1}`, :math:`v_k = \gamma_k^2 +
\beta_k^2\sigma_k^2 n_k`. :math:`E[S_1]` is the same with :math:`i = j` only. Data enter through
:math:`X_4 = \sum_i|x_i|^4`, :math:`X_2 = (\sum_i |x_i|^2)^2`, :math:`F = \sum_{ij}(x_i\cdot x_j)^2`,
:math:`Y_d = \sum_i |y_i|^2|x_i|^2`, :math:`Y_o = \sum_{ij}(y_i\cdot y_j)(x_i\cdot x_j)`.
"""

from __future__ import annotations

from ._chain import Layer


def pair_map(n, sig2, g2, b2):
    """The 2×2 map :math:`M` above and its eigenvalues :math:`(\\lambda_+, \\lambda_-)`."""
    gb = g2 * b2 * sig2
    bb = b2 * b2 * sig2 * sig2
    M = ((g2 * g2 + 2 * gb * n + bb * n * n, 4 * gb + 2 * bb * n),
         (2 * gb + bb * n, g2 * g2 + 2 * gb * (n + 1) + bb * n * (n + 1)))
    eigs = (g2 * g2 + 2 * gb * (n + 2) + bb * n * (n + 2),
            g2 * g2 + 2 * gb * (n - 1) + bb * n * (n - 1))
    return M, eigs


def network_layer(n_in, n_out, s2, g2, b2) -> Layer:
    """Network-term transfers of one linear layer (state (p, q) forward, (T1², T2) backward)."""
    sig2 = s2 / n_in
    F, Fe = pair_map(n_out, sig2, g2, b2)
    B, Be = pair_map(n_in, sig2, g2, b2)
    kappa = b2 * (g2 / n_out + b2 * sig2)
    zero = 0 * kappa
    C = ((zero, zero), (zero, kappa))
    return Layer(F, B, C, Fe, Be)


def label_layer(n_in, n_out, s2, g2, b2) -> Layer:
    """Label-term transfers of one linear layer (1×1)."""
    sig2 = s2 / n_in
    v = g2 + b2 * sig2 * n_out
    u = g2 + b2 * sig2 * n_in
    return Layer(((v,),), ((u,),), ((b2,),), (v,), (u,))


def network_top(c):
    """Backward state at the output: :math:`((\\operatorname{tr} I_c)^2, \\operatorname{tr} I_c)`."""
    return (c * c, c)


LABEL_TOP = (1,)
