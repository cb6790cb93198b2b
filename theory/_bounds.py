r"""Expected :math:`S_1, S_2` at initialisation and the expected batch-size bound
:math:`\bar B_S = n E[S_1]/E[S_2]` for any :class:`~theory.NetSpec`, each labelled by kind.

This module checks the inputs and dispatches; which method evaluates which net, and with what
kind, is the family registry (:mod:`theory._registry`, :func:`theory.covers`). The methods:
exact transfer chains (:mod:`theory._transfer` over :mod:`theory._linear` and
:mod:`theory._relu_chain`), pair sums over the data (:mod:`theory._pair_sums`) of arc-cosine
kernels (:mod:`theory._kernels`) or of the pair chain (:mod:`theory._pair_chain`), and the
softmax cross-entropy reduction (:mod:`theory._softmax`). Numbers are evaluated with mpmath at
50 significant digits (no overflow: arbitrary exponent range); data invariants are float64
sums.
"""

from __future__ import annotations

import math
from dataclasses import replace

import mpmath
import numpy as np

from . import _softmax
from ._diversity import check_delta
from ._invariants import Invariants, check_real
from ._registry import covers, family_of
from ._result import TheoryResult
from ._spec import NetSpec
from ._transfer import DPS


def expected_moments(spec: NetSpec, x=None, y=None, *, delta: float = 1.0,
                     invariants: Invariants | None = None, data: str = "",
                     loss: str = "squared", progress: bool = False,
                     softmax: str = "gaussian") -> TheoryResult:
    """Expected :math:`S_1`, :math:`S_2` over random initial weights, data fixed.

    Args:
        spec: the network.
        x, y: data (n×d, n×c). Alternatively ``invariants`` (linear nets only), e.g.
            :meth:`Invariants.gaussian_expectation` for the data-free Gaussian-input mode.
            With ``loss="cross_entropy"``, ``y`` holds integer class labels (n,) in
            0..c−1, c = ``spec.outputs`` ≥ 2 (the number of logits).
        delta: the δ of the predicted maximum batch δ·B̄_S + 1.
        data: a description of the data, carried into the result.
        loss: ``"squared"`` (½‖f − y‖²) or ``"cross_entropy"`` (softmax cross-entropy,
            :mod:`theory._softmax`).
        softmax: with ``loss="cross_entropy"``: ``"gaussian"`` (default: the linearised
            moments plus the mean-field softmax correction; kinds "approximation (softmax,
            Gaussian logits)" or weaker) or ``"linearised"`` (small-logit linearisation only,
            as good for output gains s_L ≤ 0.3; kinds suffixed " (linearised softmax)", e.g.
            "exact (linearised softmax)").
        progress: a progress bar on stderr for long ReLU pair sums (terminal only).

    Example:
        >>> import numpy as np
        >>> from theory import NetSpec
        >>> x = np.eye(3); y = np.zeros((3, 1))
        >>> r = expected_moments(NetSpec(depth=1, widths=(), input_dim=3), x, y)
        >>> r.batch_size_bound, r.kind  # orthogonal inputs: B_S = n
        (3.0, 'exact')
    """
    _check_arguments(delta, x)
    with mpmath.workdps(DPS):
        if softmax not in _softmax.METHODS:
            raise ValueError(f"unknown softmax method {softmax!r} (choose from "
                             f"{_softmax.METHODS})")
        cov = covers(spec, loss, data_free=invariants is not None and x is None)
        if not cov.covered:
            raise ValueError(cov.reason)
        if loss == "squared":
            return _expected_moments(spec, x, y, delta, invariants, data, progress)
        if loss != "cross_entropy":
            raise ValueError(f"unknown loss {loss!r} (choose 'squared' or 'cross_entropy')")
        if invariants is not None or x is None or y is None:
            raise ValueError("cross_entropy needs data x and integer class labels y")
        x = np.asarray(x, dtype=np.float64)
        reduced, z, c = _softmax.reduce(spec, y, x.shape[0] if x.ndim == 2 else None)
        r = _expected_moments(reduced, x, z, delta, None, data, progress)
        scale = mpmath.mpf(1) / (c * c)
        r = replace(r, spec=spec, expected_S1=r.expected_S1 * scale,
                    expected_S2=r.expected_S2 * scale,
                    parts={k: v * scale for k, v in r.parts.items()},
                    kind_S1=r.kind_S1 + _softmax.SUFFIX, kind_S2=r.kind_S2 + _softmax.SUFFIX,
                    notes=r.notes + (_softmax.NOTE,), loss="cross_entropy")
        return r if softmax == "linearised" else _softmax.gaussian_correction(r, spec, x)


def _check_arguments(delta, x) -> None:
    """Refuse a non-positive delta and complex x (before any cast drops the imaginary part)."""
    check_delta(delta)
    if x is not None:
        check_real("x", x)


def _expected_moments(spec, x, y, delta, invariants, data, progress=False):
    if invariants is None:
        if x is None or y is None:
            raise ValueError("give data x, y or invariants")
        inv = Invariants.of(x, y)
    else:
        inv = invariants  # precomputed (or data-free); x, y still serve the ReLU kernels
    if inv.d != spec.input_dim:
        raise ValueError(f"data has input dim {inv.d} but the net expects {spec.input_dim}")
    if inv.c != spec.outputs:
        raise ValueError(f"labels have {inv.c} columns but the net has {spec.outputs} outputs")
    _check_invariants(inv, x, y)
    family = family_of(spec)
    if family.needs_data:
        if x is None:
            raise ValueError("ReLU nets need data x, y (the data-free mode covers linear nets)")
        try:
            with np.errstate(over="raise"):  # float64 pair sums: overflow is an error, not inf
                parts, kinds, limit_bound, notes = family.compute(spec, inv, x, y, progress)
        except (OverflowError, FloatingPointError) as err:
            raise ValueError(f"the ReLU moments overflow float64 ({err}): the gains or the "
                             f"data are too large; rescale them") from None
    else:
        parts, kinds, limit_bound, notes = family.compute(spec, inv, x, y, progress)
    if not all(mpmath.isfinite(v) for v in parts.values()):
        raise ValueError("the moments overflow float64 in the ReLU pair sums (E[S1] or E[S2] "
                         "is inf or nan): the gains or the data are too large; rescale them")
    return TheoryResult(
        spec=spec, n=inv.n, data=data,
        expected_S1=parts["S1_net"] + parts["S1_label"],
        expected_S2=parts["S2_net"] + parts["S2_label"],
        kind_S1=kinds[0], kind_S2=kinds[1], parts=parts,
        limit_batch_size_bound=limit_bound, delta=delta, notes=tuple(notes),
    )


def _check_invariants(inv: Invariants, x, y) -> None:
    """One-line ValueErrors for data whose float64 invariants are unusable: all-zero inputs
    (B̄_S = 0/0), and inputs or labels so large or so small that the fourth-order sums
    overflow to inf or underflow to 0 (B̄_S would print as nan, or the data would be called
    zero)."""
    names = {"X4": "sum_i |x_i|^4", "X2": "(sum_i |x_i|^2)^2", "F": "sum_ij (x_i.x_j)^2",
             "Yd": "sum_i |y_i|^2 |x_i|^2", "Yo": "sum_ij (y_i.y_j)(x_i.x_j)"}
    big = [k for k in names if not math.isfinite(getattr(inv, k))]
    if big:
        largest = "" if x is None else f" (largest |x| entry {np.max(np.abs(x)):.3g}, " \
            f"largest |y| entry {np.max(np.abs(np.asarray(y, dtype=np.float64))):.3g})"
        raise ValueError(f"the data are too large for float64: {names[big[0]]} overflows"
                         f"{largest}; rescale x and y")
    if inv.X4 == 0:
        if x is not None and np.any(np.asarray(x) != 0):
            raise ValueError(f"the inputs are too small for float64: sum_i |x_i|^4 underflows "
                             f"to 0 (largest |x| entry {np.max(np.abs(x)):.3g}); rescale x "
                             f"and y")
        raise ValueError("every input row is zero: all gradients vanish at every "
                         "initialisation, so B_S-bar = n*E[S1]/E[S2] = 0/0 is undefined")
