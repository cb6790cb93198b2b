r"""Sums over layers of transfer-matrix products: the one engine behind every exact moment.

Every exact expectation in this toolkit has the form

.. math::

    E = \sum_{l=1}^{L} S_l^\top C_l D_{l-1}, \qquad D_l = F_l D_{l-1}, \qquad S_{l-1} = B_l S_l,

with small (1×1 or 2×2) *forward* transfers :math:`F_l` acting on data moments :math:`D_0`,
*backward* transfers :math:`B_l` acting on output moments :math:`S_L`, and a per-layer
contraction :math:`C_l` (the layer's own weight gradient). A :class:`Layer` holds
:math:`(F_l, B_l, C_l)`; its entries may be ``Fraction``, ``mpmath.mpf`` or sympy expressions —
the code below only adds, multiplies, divides and raises to powers, so one derivation yields the
exact rational, the high-precision float and the symbolic closed form.

For equal hidden widths the hidden layers are identical, and the sum over them is a sum of
geometric series in the eigenvalues of :math:`F` and :math:`B`:
:func:`uniform_sum` evaluates it in :math:`O(1)` for any depth (symbolic :math:`L` included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

Matrix = tuple  # tuple of rows, each a tuple of scalars


def _zeros(rows: int, cols: int, zero=0) -> Matrix:
    return tuple(tuple(zero for _ in range(cols)) for _ in range(rows))


def matmul(a: Matrix, b: Matrix) -> Matrix:
    """Product of two small matrices given as tuples of rows."""
    return tuple(
        tuple(sum((a[i][k] * b[k][j] for k in range(len(b))), 0 * a[i][0])
              for j in range(len(b[0])))
        for i in range(len(a))
    )


def matvec(a: Matrix, v: Sequence) -> tuple:
    return tuple(sum((a[i][k] * v[k] for k in range(len(v))), 0 * a[i][0])
                 for i in range(len(a)))


def dot(u: Sequence, v: Sequence):
    return sum((ui * vi for ui, vi in zip(u, v)), 0 * u[0])


def bilinear(s: Sequence, c: Matrix, d: Sequence):
    """:math:`s^\\top C d`."""
    return dot(s, matvec(c, d))


@dataclass(frozen=True)
class Layer:
    """Transfers of one weight matrix: forward ``F`` (D_{l-1} → D_l), backward ``B``
    (S_l → S_{l-1}) and contraction ``C`` (term_l = S_lᵀ C D_{l-1}). ``F_eigs``/``B_eigs``
    list distinct eigenvalues (needed only for :func:`uniform_sum`)."""

    F: Matrix
    B: Matrix
    C: Matrix
    F_eigs: tuple = ()
    B_eigs: tuple = ()


def chain_terms(layers: Sequence[Layer], top: Sequence, bottom: Sequence) -> list:
    """Per-layer terms :math:`S_l^\\top C_l D_{l-1}`, l = 1..L, by explicit O(L) recursion."""
    L = len(layers)
    D = [tuple(bottom)]
    for layer in layers[:-1]:
        D.append(matvec(layer.F, D[-1]))
    S = [None] * (L + 1)
    S[L] = tuple(top)
    for l in range(L, 1, -1):
        S[l - 1] = matvec(layers[l - 1].B, S[l])
    return [bilinear(S[l], layers[l - 1].C, D[l - 1]) for l in range(1, L + 1)]


def chain_sum(layers: Sequence[Layer], top: Sequence, bottom: Sequence):
    """:math:`\\sum_l S_l^\\top C_l D_{l-1}` by explicit recursion (any width profile)."""
    return sum(chain_terms(layers, top, bottom))


def spectral(M: Matrix, eigs: tuple) -> list[tuple[Any, Matrix]]:
    """:math:`M = \\sum_a e_a P_a` with Frobenius projectors, for distinct eigenvalues ``eigs``.

    :math:`P_a = \\prod_{b \\ne a} (M - e_b I)/(e_a - e_b)`, so :math:`M^k = \\sum_a e_a^k P_a`.
    """
    n = len(M)
    if n == 1:
        return [(M[0][0], ((1 + 0 * M[0][0],),))]
    if len(eigs) != n:
        raise ValueError("spectral decomposition needs all distinct eigenvalues")
    if all(_is_same(e, eigs[0]) for e in eigs[1:]):
        # one eigenvalue: M = e I is its own decomposition (e.g. a residual block with branch
        # scale 0, the identity map); a defective M has no such sum
        e = eigs[0]
        ident = tuple(tuple((1 if i == j else 0) + 0 * M[0][0] for j in range(n))
                      for i in range(n))
        if all(_is_same(M[i][j], e * ident[i][j]) for i in range(n) for j in range(n)):
            return [(e, ident)]
        raise ValueError("spectral decomposition of a defective matrix (repeated eigenvalue)")
    out = []
    for a, ea in enumerate(eigs):
        P = tuple(tuple((1 if i == j else 0) + 0 * M[0][0] for j in range(n)) for i in range(n))
        for b, eb in enumerate(eigs):
            if a == b:
                continue
            shifted = tuple(tuple(M[i][j] - (eb if i == j else 0) for j in range(n))
                            for i in range(n))
            P = matmul(P, tuple(tuple(v / (ea - eb) for v in row) for row in shifted))
        out.append((ea, P))
    return out


def _is_same(x, y) -> bool:
    """Structural equality for sympy, exact equality for numbers."""
    diff = x - y
    try:
        return bool(diff == 0) or (hasattr(diff, "is_zero") and diff.is_zero is True)
    except TypeError:  # pragma: no cover
        return False


def geom(x, y, m):
    r""":math:`\sum_{j=0}^{m-1} x^{m-1-j} y^j = (x^m - y^m)/(x - y)`, or :math:`m x^{m-1}` if
    :math:`x = y` (m may be a sympy symbol; m = 0 gives 0)."""
    if _is_same(x, y):
        return m * x ** (m - 1)
    return (x ** m - y ** m) / (x - y)


def uniform_sum(first: Layer, hidden: Layer, last: Layer, depth, top: Sequence,
                bottom: Sequence):
    r"""The chain sum for layers ``[first, hidden × (depth-2), last]`` in closed form.

    Valid for depth ≥ 2 (``depth`` may be a sympy integer symbol); O(1) work in the depth.
    """
    m = depth - 2
    s_last = tuple(top)
    s_hid_top = matvec(last.B, s_last)  # S_{L-1}
    d1 = matvec(first.F, bottom)        # D_1
    Bspec = spectral(hidden.B, hidden.B_eigs)
    Fspec = spectral(hidden.F, hidden.F_eigs)
    # S_1 = B_h^m S_{L-1};  D_{L-1} = F_h^m D_1
    S1 = tuple(sum((e ** m * v for e, P in Bspec for v in [matvec(P, s_hid_top)[i]]),
                   0 * s_hid_top[0]) for i in range(len(s_hid_top)))
    DLm1 = tuple(sum((e ** m * v for e, P in Fspec for v in [matvec(P, d1)[i]]),
                     0 * d1[0]) for i in range(len(d1)))
    total = bilinear(S1, first.C, bottom) + bilinear(s_last, last.C, DLm1)
    for eb, Pb in Bspec:
        sp = matvec(Pb, s_hid_top)
        for ef, Pf in Fspec:
            total = total + geom(eb, ef, m) * bilinear(sp, hidden.C, matvec(Pf, d1))
    return total
