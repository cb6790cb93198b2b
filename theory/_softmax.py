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
kind gains the suffix :data:`SUFFIX`. How far the true cross-entropy is from its linearisation
as the output gain :math:`s_L` grows is measured by Monte Carlo (README).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._spec import NetSpec

SUFFIX = " (linearised softmax)"
NOTE = ("cross-entropy linearised at small logits (softmax(f) ~ 1/c + Pf/c): exactly the squared "
        "loss of the same net with c-1 outputs and targets z_i = c Q^T e_(y_i), times 1/c^2; "
        "the true cross-entropy differs as the output gain s_L grows (README, Monte Carlo)")


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
