r"""Softmax cross-entropy at initialisation, linearised at small logits, as a squared loss.

Per example, with logits :math:`f \in \mathbb R^c` and integer class :math:`y`, the gradient of
:math:`\ell = \operatorname{logsumexp}(f) - f_y` is :math:`J^\top(\operatorname{softmax}(f) -
e_y)`. At small logits :math:`\operatorname{softmax}(f) = \tfrac1c\mathbf 1 + \tfrac1c Pf +
O(|f|^2)` with :math:`P = I - \tfrac1c\mathbf 1\mathbf 1^\top`, so the *linearised* gradient is

.. math::

    g = \tfrac1c J^\top (Pf - c\tilde y),\qquad \tilde y = e_y - \tfrac1c\mathbf 1,

the gradient of :math:`\tfrac1{2c}\lVert Pf - c\tilde y\rVert^2` (because :math:`P\tilde y =
\tilde y` and :math:`P^2 = P`). Write :math:`P = QQ^\top` with :math:`Q \in \mathbb R^{c\times
(c-1)}` orthonormal (the Helmert basis, :func:`helmert`). The loss depends on the last layer
only through :math:`V = Q^\top W_L`, whose entries are again i.i.d.
:math:`\mathcal N(0, s_L^2/n_{L-1})`, and the gradient with respect to :math:`W_L` is
:math:`Q\,\partial\ell/\partial V` (same norms). Hence, in law over the initialisation,

.. math::

    S_{1,2}^{\text{lin-CE}}(c\text{ outputs}, y) = \tfrac1{c^2}\,
    S_{1,2}^{\text{sq}}\big(c - 1\text{ outputs}, z\big),\qquad z_i = cQ^\top\tilde y_i =
    cQ^\top e_{y_i},\quad z_i\cdot z_j = c^2\big(\delta_{y_iy_j} - \tfrac1c\big),

for every architecture: the linearised cross-entropy is *exactly* the squared loss of the same
net with :math:`c - 1` outputs and targets :math:`z`, scaled by :math:`1/c^2` (B̄_S unchanged).
Every result of this toolkit for the squared loss therefore carries over with its kind; the
kind gains the suffix :data:`SUFFIX` (``softmax="linearised"``).

**Softmax correction** (``softmax="gaussian"``, the default; kind
:data:`KIND_GAUSSIAN`). Per example :math:`g_i = J_i^\top e_i`, :math:`e_i =
\operatorname{softmax}(f_i) - e_{y_i}`. At the mean-field level the logits are centred Gaussian,
i.i.d. over the c classes with per-class covariance :math:`q_{ij}` (the infinite-width output
kernel), independent of the per-logit tangent kernel :math:`\Theta_{ij}`
(:func:`theory._kernels.limit_kernels`). By exchangeability :math:`E[p_{i,k}] = 1/c`, so
:math:`E[e_i\cdot e_j] = E[p_i\cdot p_j] - 2/c + \delta_{y_iy_j}` while the linearisation gives
:math:`(c-1)q_{ij}/c^2 - 1/c + \delta_{y_iy_j}`: the labels cancel in the difference, and

.. math::

    \Delta E[S_2] = R_2\sum_{ij}\Theta_{ij}\,\mathcal G(q_{ii}, q_{jj}, q_{ij}),\qquad
    \Delta E[S_1] = R_1\sum_i\Theta_{ii}\,\mathcal G(q_{ii}, q_{ii}, q_{ii}),

    \mathcal G = E[\operatorname{softmax}(f)\cdot\operatorname{softmax}(f')] - \tfrac1c
    - \tfrac{(c-1)q_{ij}}{c^2}

(:math:`f, f' \in \mathbb R^c`, coordinates i.i.d. pairs with covariance
:math:`[[q_{ii}, q_{ij}], [q_{ij}, q_{jj}]]`), added to the exact linearised moments.
Two finite-width refinements (both measured to matter at K = 32–64): (i) the logits' scale
fluctuates, :math:`q \to \lambda q` with λ log-normal of mean 1 and the exact single-input
relative variance of the hidden squared norms (2/K per linear, 5/K per ReLU layer,
:func:`scale_fluctuations`; the layer-l tangent kernel carries the factor of layers < l, so
each layer gets :math:`E[\lambda_{<l}\mathcal G(\lambda q)]`, a one-dimensional average of the
table); (ii) :math:`R_k` is the ratio of the linearised moments' network part (the part driven
by the logits, exact at finite width) to its value in this model,
:math:`\sum_l\sum\Theta_{l,ij}E[\lambda_{<l}\lambda](c-1)q_{ij}/c^2`: the remaining
finite-width excess of the logit-driven part is taken to shrink with softmax saturation in the
same proportion (the label part's mean-field value is exact, ratio 1). Without (ii) the
correction is 1.2–2.2 times too small at K = 32–64. Residual nets use (ii) only.
:math:`\mathcal G` is a 2c-dimensional Gaussian
integral: tabulated once per call on a grid in :math:`(\log q_{ii}, \log q_{jj},
\rho_{ij})` from fixed scrambled-Sobol antithetic draws (common random numbers, the exactly
known linear term as control variate) and interpolated linearly, so the cost is
:math:`O(n^2 d L)` like the other pair sums, with no per-example gradients (numerical
precision about 0.3% of E[S2]: Sobol seed and grid step). Measured against
numerics' Monte Carlo of the true cross-entropy in README.
"""

from __future__ import annotations

from dataclasses import replace

import mpmath
import numpy as np

from ._pair_sums import pair_sums
from ._result import weakest
from ._spec import NetSpec

SUFFIX = " (linearised softmax)"
NOTE = ("cross-entropy linearised at small logits (softmax(f) ~ 1/c + Pf/c): exactly the squared "
        "loss of the same net with c-1 outputs and targets z_i = c Q^T e_(y_i), times 1/c^2; "
        "the true cross-entropy differs as the output gain s_L grows (README, Monte Carlo)")


METHODS = ("gaussian", "linearised")
KIND_GAUSSIAN = " (softmax, Gaussian logits)"
NOTE_GAUSSIAN = ("cross-entropy with the softmax correction: the exact linearised moments plus "
                 "R * sum_ij Theta_ij G(q_ii, q_jj, q_ij), G = E[softmax(f).softmax(f')] - 1/c "
                 "- (c-1) q_ij/c^2 over Gaussian logits with the infinite-width output kernel q "
                 "(times a log-normal finite-width scale) and tangent kernel Theta, R = exact/"
                 "model network part of the linearised moments; approximation, measured within "
                 "2.4% of E[S1], E[S2] and B_S-bar at the default output gain on fc nets of "
                 "width 32-64 (3.3% at K = 128; E[S2] +6% on a linear residual net), within "
                 "1.2% at s_L <= 0.3, up to 10% at s_L = 3 (README); softmax='linearised' for "
                 "the plain linearisation. The K -> infinity limit reported alongside is the "
                 "linearisation's")
#: Scrambled-Sobol draws (2**SOBOL_LOG2, doubled by antithetics) of the table of G.
SOBOL_LOG2 = 11
SOBOL_SEED = 0
#: Grid of the table: spacing in log q, and points in the correlation rho.
LOG_Q_STEP = 0.2
RHO_POINTS = 41
#: Rows per block of the pair sums of the correction.
BLOCK_ROWS = 256
#: Gauss–Hermite nodes of the average over the logits' finite-width scale.
SCALE_NODES = 7


def helmert(c: int) -> np.ndarray:
    r"""Orthonormal basis :math:`Q` (c × (c−1)) of the vectors summing to zero:
    column k (1-based) is :math:`(1, \dots, 1, -k, 0, \dots, 0)/\sqrt{k(k+1)}` with k ones.

    Example:
        >>> Q = helmert(3)
        >>> bool(np.allclose(Q.T @ Q, np.eye(2)) and np.allclose(Q @ Q.T, np.eye(3) - 1 / 3))
        True
    """
    Q = np.zeros((c, c - 1))
    for k in range(1, c):
        Q[:k, k - 1] = 1.0
        Q[k, k - 1] = -float(k)
        Q[:, k - 1] /= np.sqrt(k * (k + 1.0))
    return Q


def check_classes(y, c: int, n: int | None = None) -> np.ndarray:
    """Integer class labels of shape (n,) in 0..c-1 (raises ValueError with one line)."""
    if c < 2:
        raise ValueError(f"cross_entropy needs at least 2 outputs (classes), the net has {c}")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"cross_entropy needs integer class labels of shape ({n},), got "
                         f"shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) \
                and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"cross_entropy needs integer class labels, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= c):
        raise ValueError(f"class labels must lie in 0..{c - 1} (c = {c} outputs), got "
                         f"{int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64)


def reduce(spec: NetSpec, y, n: int | None = None) -> tuple[NetSpec, np.ndarray, int]:
    """(the (c−1)-output net, targets z (n × (c−1)), c) of the squared loss equal in law to the
    linearised cross-entropy of ``spec`` with integer labels ``y``, up to the factor 1/c²."""
    c = spec.outputs
    classes = check_classes(y, c, n)
    z = c * helmert(c)[classes]
    return replace(spec, outputs=c - 1), z, c


def gaussian_draws(c: int, log2: int | None = None, seed: int | None = None):
    """Fixed standard-normal draws (Z1, Z2), each (2·2**log2) × c: scrambled Sobol points in
    2c dimensions through the normal quantile, and their negatives (antithetic); defaults
    :data:`SOBOL_LOG2`, :data:`SOBOL_SEED`."""
    from scipy.stats import norm, qmc

    log2 = SOBOL_LOG2 if log2 is None else log2
    seed = SOBOL_SEED if seed is None else seed
    u = qmc.Sobol(2 * c, scramble=True, seed=seed).random_base2(log2)
    z = norm.ppf(u)
    z = np.concatenate([z, -z])
    return z[:, :c], z[:, c:]


def _softmax(f):
    e = np.exp(f - f.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def overlap_table(c: int, log_q, rho, draws=None) -> np.ndarray:
    r""":math:`\mathcal G(e^{u_1}, e^{u_2}, \rho e^{(u_1 + u_2)/2})` on the grid ``log_q`` ×
    ``log_q`` × ``rho`` (common draws for every point; the linear term
    :math:`(Pf)\cdot(Pf')/c^2`, whose mean is :math:`(c-1)q_{12}/c^2`, is subtracted per draw)."""
    Z1, Z2 = gaussian_draws(c) if draws is None else draws
    M = Z1.shape[0]
    log_q = np.asarray(log_q, dtype=np.float64)
    sd = np.exp(log_q / 2)
    C1 = Z1 - Z1.mean(axis=1, keepdims=True)
    P1 = np.stack([_softmax(s * Z1) for s in sd]).reshape(len(sd), -1)
    F1 = (sd[:, None, None] * C1).reshape(len(sd), -1)
    out = np.empty((len(sd), len(sd), len(rho)))
    for b, r in enumerate(rho):
        W = r * Z1 + np.sqrt(max(1.0 - r * r, 0.0)) * Z2
        P2 = np.stack([_softmax(s * W) for s in sd]).reshape(len(sd), -1)
        F2 = (sd[:, None, None] * (W - W.mean(axis=1, keepdims=True))).reshape(len(sd), -1)
        out[:, :, b] = (P1 @ P2.T - F1 @ F2.T / c**2) / M - 1.0 / c
    return out


def overlap(q11: float, q22: float, q12: float, c: int, draws=None) -> float:
    r""":math:`\mathcal G(q_{11}, q_{22}, q_{12})` at one point (the table's estimator)."""
    if q11 <= 0 or q22 <= 0:
        return 0.0
    rho = q12 / np.sqrt(q11 * q22)
    return float(overlap_table(c, [np.log(q11), np.log(q22)], [rho], draws)[0, 1, 0])


class _Table:
    r""":math:`\mathcal G` tabulated over the data's range of q_ii (widened by ``pad`` in log q)
    and of rho, interpolated linearly; :meth:`smoothed` averages it over a log-normal scale."""

    def __init__(self, c, qd, rho_min, pad=0.0):
        pos = qd[qd > 0]
        lo, hi = np.log(pos.min()) - 0.05 - pad, np.log(pos.max()) + 0.05 + pad
        nq = max(2, int(np.ceil((hi - lo) / LOG_Q_STEP)) + 1)
        self.lq = np.linspace(lo, hi, nq)
        r0 = max(-1.0, min(rho_min - 0.01, 0.99))
        self.rho = np.linspace(r0, 1.0, RHO_POINTS)
        self.T = overlap_table(c, self.lq, self.rho)

    def smoothed(self, mu: float, var: float) -> np.ndarray:
        """E[T(u1 + s, u2 + s, rho)], s ~ N(mu, var): every q scaled by one log-normal factor
        (Gauss–Hermite, :data:`SCALE_NODES` nodes), on the same grid."""
        from scipy.ndimage import map_coordinates

        if var == 0 and mu == 0:
            return self.T
        z, w = np.polynomial.hermite_e.hermegauss(SCALE_NODES)
        w = w / w.sum()
        du = self.lq[1] - self.lq[0]
        i1, i2, i3 = np.meshgrid(*(np.arange(k, dtype=float) for k in self.T.shape),
                                 indexing="ij")
        out = np.zeros_like(self.T)
        for zk, wk in zip(z, w):
            sh = (mu + np.sqrt(var) * zk) / du
            out += wk * map_coordinates(self.T, [i1 + sh, i2 + sh, i3], order=1, mode="nearest")
        return out

    def __call__(self, T, qr, qc, K):
        from scipy.ndimage import map_coordinates

        ok = np.outer(qr > 0, qc > 0)
        lr = np.log(np.where(qr > 0, qr, 1.0))
        lc = np.log(np.where(qc > 0, qc, 1.0))
        norm = np.sqrt(np.outer(np.where(qr > 0, qr, 1.0), np.where(qc > 0, qc, 1.0)))
        rho = np.clip(K / norm, self.rho[0], 1.0)
        du, dr = self.lq[1] - self.lq[0], self.rho[1] - self.rho[0]
        I1 = np.broadcast_to(((lr - self.lq[0]) / du)[:, None], K.shape)
        I2 = np.broadcast_to(((lc - self.lq[0]) / du)[None, :], K.shape)
        G = map_coordinates(T, [I1.ravel(), I2.ravel(), ((rho - self.rho[0]) / dr).ravel()],
                            order=1, mode="nearest").reshape(K.shape)
        return np.where(ok, G, 0.0)  # a zero input has uniform softmax: G = 0


def scale_fluctuations(spec: NetSpec) -> list[tuple[float, float]]:
    r"""Per layer l = 1..L, (:math:`s_{<l}`, :math:`s_{\ge l}`): log(1 + relative variance) of
    the finite-width squared norm of the hidden activations through layers 1..l−1 and l..L−1
    (fully connected: relative variance 2/n_k per linear layer, 5/n_k per ReLU layer of width
    n_k, independent across layers). The layer-l tangent kernel carries the first factor, the
    logits' variance both. Residual nets: zeros (pure mean field)."""
    L = spec.depth
    if spec.arch != "fc" or L == 1:
        return [(0.0, 0.0)] * L
    per = 5.0 if spec.activation == "relu" else 2.0
    s = [float(np.log1p(per / w)) for w in spec.widths]
    return [(sum(s[: l - 1]), sum(s[l - 1:])) for l in range(1, L + 1)]


def mean_field_sums(spec: NetSpec, x, *, scale_mixture: bool = True) -> dict:
    r"""Sums over the pairs of the c-logit net ``spec``: ``d1, d2`` (:math:`\sum_i`,
    :math:`\sum_{ij}` of :math:`\sum_l \Theta_{l,ij}\,E[\lambda_{<l}\mathcal G(\lambda
    q_{ii}, \lambda q_{jj}, \lambda q_{ij})]`) and ``n1, n2`` (the same with
    :math:`(c-1)\lambda q_{ij}/c^2` in place of :math:`\mathcal G`: the model's network part of
    the linearised moments). :math:`\lambda = \lambda_{<l}\lambda_{\ge l}` is the finite-width
    fluctuation of the logits' scale, log-normal with mean 1 and the variances of
    :func:`scale_fluctuations` (``scale_mixture=False``: λ = 1, plain mean field); the tilt by
    :math:`\lambda_{<l}` makes log λ ~ N((s_{<l} − s_{≥l})/2, s_{<l} + s_{≥l}). Blocks of rows,
    O(n² d L) time, never n × n."""
    from ._kernels import limit_kernels

    x = np.asarray(x, dtype=np.float64)
    c, n, L = spec.outputs, x.shape[0], spec.depth
    qd, rho_min = np.empty(n), 1.0
    for a in range(0, n, BLOCK_ROWS):  # the diagonal q_ii, block by block
        b = min(n, a + BLOCK_ROWS)
        qd[a:b] = np.diag(limit_kernels(spec, x, slice(a, b), slice(a, b))[0])
    if not np.any(qd > 0):
        return {"d1": 0.0, "d2": 0.0, "n1": 0.0, "n2": 0.0}
    for a in range(0, n, BLOCK_ROWS):  # the range of rho, for the table
        b = min(n, a + BLOCK_ROWS)
        K = limit_kernels(spec, x, slice(a, b), slice(a, n))[0]
        nr = np.sqrt(np.outer(np.maximum(qd[a:b], 1e-300), np.maximum(qd[a:], 1e-300)))
        rho_min = min(rho_min, float(np.min(K / nr)))
    fl = scale_fluctuations(spec) if scale_mixture else [(0.0, 0.0)] * L
    mus = [(lo - hi) / 2 for lo, hi in fl]
    var = [lo + hi for lo, hi in fl]
    pad = max(abs(m) + 3.8 * np.sqrt(v) for m, v in zip(mus, var))
    table = _Table(c, qd, rho_min, pad)
    tables = [table.smoothed(m, v) for m, v in zip(mus, var)]
    def terms(spec, x, y, rows, cols):  # one "layer" each, summed by the shared pair sums
        K, base = limit_kernels(spec, x, rows, cols)
        tG = sum(th * table(T, qd[rows], qd[cols], K) for th, T in zip(base, tables))
        tN = sum(th * np.exp(lo) for th, (lo, _) in zip(base, fl)) * K * ((c - 1) / c**2)
        return [tG], [tN]

    ps = pair_sums(terms, spec, x, None, layers=1)
    return {"d1": float(ps.net_trace[0]), "d2": float(ps.net_sum[0]),
            "n1": float(ps.lab_trace[0]), "n2": float(ps.lab_sum[0])}


def kind_of(squared_kind: str, softmax: str = "gaussian") -> str:
    """Kind of a cross-entropy moment whose linearised (squared-loss) part has kind
    ``squared_kind``: that kind + :data:`SUFFIX` (``"linearised"``), else the weaker of it and
    "approximation" + :data:`KIND_GAUSSIAN`."""
    if softmax == "linearised":
        return squared_kind + SUFFIX
    return weakest(squared_kind, "approximation") + KIND_GAUSSIAN


def gaussian_correction(result, spec: NetSpec, x):
    """The linearised cross-entropy ``result`` (a TheoryResult of the c-logit net ``spec``)
    plus the mean-field softmax correction (module docstring), kinds and notes updated."""
    m = mean_field_sums(spec, x)
    p = {k: float(v) for k, v in result.parts.items()}
    R1 = p["S1_net"] / m["n1"] if m["n1"] != 0 else 1.0
    R2 = p["S2_net"] / m["n2"] if m["n2"] != 0 else 1.0
    d1, d2 = mpmath.mpf(R1 * m["d1"]), mpmath.mpf(R2 * m["d2"])
    parts = dict(result.parts, S1_softmax=d1, S2_softmax=d2)
    return replace(result, expected_S1=result.expected_S1 + d1,
                   expected_S2=result.expected_S2 + d2, parts=parts,
                   kind_S1=kind_of(result.kind_S1.split()[0], "gaussian"),
                   kind_S2=kind_of(result.kind_S2.split()[0], "gaussian"),
                   notes=tuple(nt for nt in result.notes if nt != NOTE) + (NOTE_GAUSSIAN,))
