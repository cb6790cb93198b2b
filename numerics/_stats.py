r"""Per-example gradient statistics of a :class:`theory.NetSpec` network in one backward pass.

The gradient of :math:`W_l` for example :math:`i` is :math:`c_l\,\delta_{l,i}a_{l,i}^\top`
(see :mod:`numerics._network`), so

.. math::

    S_1^{(l)} = c_l^2\sum_i \lVert\delta_{l,i}\rVert^2\lVert a_{l,i}\rVert^2,\qquad
    \textstyle\sum_i g^{(l)}_i = c_l\,\Delta_l^\top A_l,\qquad
    S_2^{(l)} = \lVert c_l\,\Delta_l^\top A_l\rVert_F^2,

with :math:`A_l, \Delta_l` the stacked inputs and signals (n rows). Memory is
O(n · Σ widths); per-example gradients (O(n · parameters)) are never formed.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import diversity

from ._network import LOSSES, branch_scales, example_signals


class GradStats(NamedTuple):
    """Gradient statistics of one network on one batch (a pytree).

    Attributes:
        S1: :math:`\\sum_i\\lVert g_i\\rVert^2`.
        S2: :math:`\\lVert\\sum_i g_i\\rVert^2`.
        S1_layers: per weight matrix, shape ``(L,)``; sums to ``S1``.
        S2_layers: per weight matrix, shape ``(L,)``; sums to ``S2``.
        grad_sum: :math:`\\sum_i \\nabla\\ell_i`, a list shaped like the params.
        loss_sum: :math:`\\sum_i \\ell_i`.
    """

    S1: jax.Array
    S2: jax.Array
    S1_layers: jax.Array
    S2_layers: jax.Array
    grad_sum: list
    loss_sum: jax.Array

    def summary(self, n: int) -> dict:
        """:func:`theory.diversity` of the totals plus ``"layers"``: ``{"W1": {...}, ...}``."""
        out = diversity(self.S1, self.S2, n)
        out["n"] = n
        out["layers"] = {
            f"W{l + 1}": diversity(self.S1_layers[l], self.S2_layers[l], n)
            for l in range(self.S1_layers.shape[0])
        }
        return out


def _stats(spec, params, x, y, loss):
    """Traceable core shared by :func:`per_example_stats` and the Monte Carlo engine."""
    inputs, deltas, values = jax.vmap(
        lambda xi, yi: example_signals(spec, params, xi, yi, loss))(x, y)
    s1, s2, gsum = [], [], []
    for c, a, d in zip(branch_scales(spec), inputs, deltas):
        per_ex = jnp.sum(a * a, axis=1) * jnp.sum(d * d, axis=1)
        g = d.T @ a
        if c != 1.0:
            per_ex, g = (c * c) * per_ex, c * g
        s1.append(jnp.sum(per_ex))
        s2.append(jnp.sum(g * g))
        gsum.append(g)
    S1_layers, S2_layers = jnp.stack(s1), jnp.stack(s2)
    return GradStats(jnp.sum(S1_layers), jnp.sum(S2_layers), S1_layers, S2_layers, gsum,
                     jnp.sum(values))


def is_traced(a) -> bool:
    """True for an array traced under ``jit``, ``grad`` or ``vmap`` (its values unknown).

    Public API only: a tracer refuses every question about its buffer with
    ``jax.errors.ConcretizationTypeError``. (The tracer class itself lives in a module that
    is trimmed between jax releases, so it is not named here.)"""
    if not isinstance(a, jax.Array):
        return False
    try:
        a.is_deleted()
    except (jax.errors.ConcretizationTypeError, AttributeError):  # a tracer of any release
        return True
    return False


def check_values(name: str, a) -> None:
    """Refuse (ValueError) a complex array, or a concrete floating one holding NaN or inf.
    Arrays traced under ``jit`` pass: their values are not known."""
    if is_traced(a):
        return
    if isinstance(a, jax.Array) and not jnp.issubdtype(a.dtype, jnp.inexact):
        return  # integer / boolean data (token ids, labels): nothing to refuse, no dispatch
    xp = jnp if isinstance(a, jax.Array) else np  # numpy data stays float64 for the check
    a = xp.asarray(a)
    if xp.iscomplexobj(a):
        raise ValueError(f"{name} is complex ({a.dtype}): the gradient statistics are defined "
                         f"for real data; pass the real part, or the real and imaginary parts "
                         f"as separate features, explicitly")
    if xp.issubdtype(a.dtype, xp.floating) and not bool(xp.all(xp.isfinite(a))):
        raise ValueError(f"{name} contains NaN or inf")


def _check_range(name: str, a, dtype) -> None:
    """Refuse values that the cast to ``dtype`` would turn into inf."""
    if is_traced(a) or not np.issubdtype(np.asarray(a).dtype, np.floating):
        return
    big = float(np.max(np.abs(a))) if np.size(a) else 0.0
    info = jnp.finfo(dtype)
    if big > float(info.max):
        raise ValueError(f"{name} has entries up to {big:.3g}, beyond the "
                         f"{jnp.dtype(dtype).name} range; rescale x and y (B_S does not "
                         f"change when x and y are scaled together)")
    if 0 < big < float(info.tiny):
        raise ValueError(f"{name}'s largest entry {big:.3g} is below the smallest normal "
                         f"{jnp.dtype(dtype).name} ({float(info.tiny):.3g}); rescale x and y "
                         f"(B_S does not change when x and y are scaled together)")


def prepare_xy(spec, x, y, loss, dtype):
    """Cast and shape-check a batch for a spec-built network (raises ValueError)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r} (choose from {LOSSES})")
    if not is_traced(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
    check_values("x", x)
    _check_range("x", x, dtype)
    x = jnp.asarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[1] != spec.input_dim:
        raise ValueError(f"x must have shape (n, {spec.input_dim}) (n examples of dimension "
                         f"d = {spec.input_dim}), got {x.shape}")
    n = x.shape[0]
    if loss == "squared":
        if not isinstance(y, jax.Array):
            y = np.asarray(y)
        check_values("y", y)
        _check_range("y", y, dtype)
        y = jnp.asarray(y, dtype=dtype)
        if y.ndim == 1 and spec.outputs == 1:
            y = y[:, None]
        if y.shape != (n, spec.outputs):
            raise ValueError(f"y must have shape ({n}, {spec.outputs}), got {y.shape}")
    else:
        y = jnp.asarray(y)
        if not jnp.issubdtype(y.dtype, jnp.integer) or y.shape != (n,):
            raise ValueError(f"cross_entropy needs integer class ids of shape ({n},), "
                             f"got {y.dtype} {y.shape}")
    return x, y


@partial(jax.jit, static_argnames=("spec", "loss"))
def _stats_jit(spec, params, x, y, loss):
    return _stats(spec, params, x, y, loss)


def per_example_stats(spec, params, x, y, *, loss: str = "squared") -> GradStats:
    r"""S1, S2 (total and per layer), :math:`\sum_i\nabla\ell_i` and :math:`\sum_i\ell_i`.

    One batched forward and backward pass (the per-layer signals are computed once and used for
    both the norms and the summed gradient); per-example gradients are never materialised.

    Args:
        spec: the network (:class:`theory.NetSpec`, a static argument).
        params: list of weight matrices as from :func:`numerics.init_params`.
        x: inputs, shape ``(n, d)``.
        y: ``squared``: targets ``(n, c)`` (or ``(n,)`` when c = 1);
            ``cross_entropy``: integer class ids ``(n,)``.
        loss: ``"squared"`` (:math:`\tfrac12\lVert f-y\rVert^2`) or ``"cross_entropy"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from theory import NetSpec
        >>> from numerics import init_params
        >>> spec = NetSpec(depth=2, widths=(16,), input_dim=3)
        >>> params = init_params(spec, key=jax.random.key(0))
        >>> st = per_example_stats(spec, params, jnp.ones((4, 3)), jnp.zeros((4, 1)))
        >>> round(float(st.summary(4)["batch_size_bound"]), 4)  # identical examples: B_S = 1
        1.0
    """
    x, y = prepare_xy(spec, x, y, loss, params[0].dtype)
    return _stats_jit(spec, list(params), x, y, loss)
