r"""Data invariants that the exact moments depend on (float64 sums over the data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def check_real(name: str, a) -> None:
    """Refuse (ValueError) a complex array instead of dropping its imaginary part."""
    if np.iscomplexobj(a):
        raise ValueError(f"{name} is complex ({np.asarray(a).dtype}): the moments are defined "
                         f"for real data; pass the real part, or the real and imaginary parts "
                         f"as separate features, explicitly")


def check_data(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (n×d) and ``y`` (n×c, or n → n×1) as float64 arrays; ValueError naming the
    problem for other shapes, complex values, or NaN / inf.

    >>> check_data(np.ones((2, 3)), np.zeros(3))
    Traceback (most recent call last):
    ...
    ValueError: y has 3 rows but x has 2 (x: shape (2, 3), y: shape (3,)); ...
    """
    xa, ya = np.asarray(x), np.asarray(y)
    for name, a in (("x", xa), ("y", ya)):
        check_real(name, a)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if xa.ndim != 2:
        raise ValueError(f"x must be 2-D (n examples × d inputs), got shape {xa.shape}")
    if ya.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D (n) or 2-D (n × c), got shape {ya.shape}")
    if ya.shape[0] != xa.shape[0]:
        raise ValueError(f"y has {ya.shape[0]} rows but x has {xa.shape[0]} (x: shape "
                         f"{xa.shape}, y: shape {ya.shape}); both need one row per example")
    xa = xa.astype(np.float64, copy=False)
    ya = ya.astype(np.float64, copy=False).reshape(ya.shape[0], -1)
    for name, a in (("x", xa), ("y", ya)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")
    return xa, ya


@dataclass(frozen=True)
class Invariants:
    r""":math:`X_4 = \sum_i |x_i|^4`, :math:`X_2 = (\sum_i |x_i|^2)^2`,
    :math:`F = \sum_{ij} (x_i\cdot x_j)^2`, :math:`Y_d = \sum_i |y_i|^2 |x_i|^2`,
    :math:`Y_o = \sum_{ij} (y_i\cdot y_j)(x_i\cdot x_j)`, and n, d, c."""

    n: int
    d: int
    c: int
    X4: float
    X2: float
    F: float
    Yd: float
    Yo: float

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> "Invariants":
        r"""From the data without the n×n Gram matrix: :math:`F = \lVert X^\top X\rVert_F^2`,
        :math:`Y_o = \lVert X^\top Y\rVert_F^2` (or the n×n forms when n < d, whichever is
        smaller), row norms for the rest: O(n·min(n, d)·max(d, c)) time, O(min(n, d)²) memory."""
        x, y = check_data(x, y)
        n, d = x.shape
        with np.errstate(over="ignore", invalid="ignore"):  # inf/nan: the caller refuses them
            return cls._of(x, y, n, d)

    @classmethod
    def _of(cls, x, y, n, d) -> "Invariants":
        sq = np.einsum("ij,ij->i", x, x)
        ysq = np.einsum("ij,ij->i", y, y)
        if n <= d:  # the n×n Gram is the smaller matrix
            G = x @ x.T
            F, Yo = float(np.sum(G * G)), float(np.sum((y @ y.T) * G))
        else:
            C = x.T @ x
            XY = x.T @ y
            F, Yo = float(np.sum(C * C)), float(np.sum(XY * XY))
        return cls(n=n, d=d, c=y.shape[1], X4=float(np.sum(sq * sq)),
                   X2=float(np.sum(sq) ** 2), F=F, Yd=float(np.sum(ysq * sq)), Yo=Yo)

    @classmethod
    def gaussian_expectation(cls, n: int, d: int, c: int = 1) -> "Invariants":
        r"""Expectations over :math:`x_i \sim \mathcal N(0, I_d)` i.i.d., zero labels:
        :math:`E X_4 = n d(d+2)`, :math:`E X_2 = n d(d+2) + n(n-1) d^2`,
        :math:`E F = n d(d+2) + n(n-1) d`."""
        return cls(n=n, d=d, c=c, X4=n * d * (d + 2), X2=n * d * (d + 2) + n * (n - 1) * d * d,
                   F=n * d * (d + 2) + n * (n - 1) * d, Yd=0, Yo=0)
