r"""Random networks of a :class:`theory.NetSpec`: initialisation, forward pass, backward pass.

Everything here is written for ONE example and vmapped for batches. The conventions are the
spec's (README, "Definitions and conventions"; ``theory/_spec.py``): depth :math:`L` weight matrices,

.. math::

    h_1 = W_1 x,\qquad h_{l+1} = W_{l+1}\phi(h_l)\ \text{(fc)},\qquad
    h_{l+1} = h_l + \alpha W_{l+1}\phi(h_l)\ \text{(residual blocks } l+1 = 2..L-1),\qquad
    f = h_L,

with :math:`\phi` the identity or ReLU (:math:`\mathrm{relu}'(0) = 0`) and
:math:`(W_l)_{ab} \sim \mathcal N(0, s_l^2/n_{l-1})`.

For the backward pass write :math:`a_l` for the input of :math:`W_l` (:math:`a_1 = x`,
:math:`a_l = \phi(h_{l-1})`) and :math:`\delta_l = \partial\ell/\partial(\text{output of the
branch } W_l a_l)` up to the branch scale. Then the gradient of :math:`W_l` is
:math:`c_l\,\delta_l a_l^\top` with :math:`c_l = \alpha` on residual blocks and 1 elsewhere, so
its squared norm is :math:`c_l^2\lVert\delta_l\rVert^2\lVert a_l\rVert^2` (the per-layer trick).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._precision import default_dtype

LOSSES = ("squared", "cross_entropy")


def _is_block(spec, l: int) -> bool:
    """True when weight matrix ``l`` (python index 0..L-1) is a residual branch (the spec's
    :class:`~theory._spec.LayerSpec` says so)."""
    return spec.layer(l + 1).block


def branch_scales(spec) -> tuple[float, ...]:
    """:math:`c_l`: the residual branch scale on blocks, 1 on every other weight matrix."""
    alpha = spec.branch_scale
    return tuple(alpha if _is_block(spec, l) else 1.0 for l in range(spec.depth))


def init_params(spec, *, key, dtype=None) -> list:
    r"""Sample :math:`W_1, \dots, W_L` (shapes ``(n_out, n_in)``), entries
    :math:`\mathcal N(0, s_l^2/n_{l-1})`, one key split per layer.

    Args:
        spec: the network (:class:`theory.NetSpec`).
        key: a PRNG key from ``jax.random.key`` (legacy raw ``uint32`` keys work too).
        dtype: floating dtype; default float64 under :func:`numerics.x64`, else float32.

    Example:
        >>> import jax
        >>> from theory import NetSpec
        >>> spec = NetSpec(depth=3, widths=(8, 8), input_dim=4, activation="relu")
        >>> [w.shape for w in init_params(spec, key=jax.random.key(0))]
        [(8, 4), (8, 8), (1, 8)]
    """
    dtype = default_dtype() if dtype is None else dtype
    keys = jax.random.split(key, spec.depth)
    params = []
    for k, (n_in, n_out), s2 in zip(keys, spec.layer_dims, spec.gain_squares):
        scale = math.sqrt(float(s2) / n_in)
        params.append(scale * jax.random.normal(k, (n_out, n_in), dtype))
    return params


def _phi(spec, h):
    if spec.activation == "relu":
        return jnp.where(h > 0, h, 0)  # relu'(0) = 0 under autodiff as well
    return h


def forward(spec, params, x):
    """Output ``f`` and, per weight matrix, its input ``a_l`` and the pre-activations.

    Returns ``(f, inputs, pre)`` with ``inputs[l]`` the input of ``params[l]`` and ``pre[l]``
    the hidden state :math:`h_{l+1}` that ``phi`` is applied to (``len(pre) == L - 1``).
    """
    inputs, pre = [x], []
    h = params[0] @ x
    for l in range(1, spec.depth):
        pre.append(h)
        a = _phi(spec, h)
        inputs.append(a)
        if _is_block(spec, l):
            h = h + spec.branch_scale * (params[l] @ a)
        else:
            h = params[l] @ a
    return h, inputs, pre


def apply(spec, params, x):
    """Network output for ONE example ``x`` of shape ``(d,)``; vmap for batches.

    Example:
        >>> import jax
        >>> from theory import NetSpec
        >>> spec = NetSpec(depth=4, widths=(8, 8, 8), input_dim=3, arch="residual")
        >>> params = init_params(spec, key=jax.random.key(0))
        >>> jax.vmap(lambda x: apply(spec, params, x))(jax.numpy.ones((5, 3))).shape
        (5, 1)
    """
    return forward(spec, params, x)[0]


def output_loss(f, y, loss: str):
    """Per-example loss and its gradient w.r.t. the output ``f``.

    ``squared``: :math:`\\tfrac12\\lVert f-y\\rVert^2`; ``cross_entropy``: softmax cross-entropy
    with integer class ``y``.
    """
    if loss == "squared":
        r = f - y
        return 0.5 * jnp.sum(r * r), r
    if loss == "cross_entropy":
        logz = jax.nn.logsumexp(f)
        onehot = jax.nn.one_hot(y, f.shape[0], dtype=f.dtype)
        return logz - jnp.sum(onehot * f), jnp.exp(f - logz) - onehot
    raise ValueError(f"unknown loss {loss!r} (choose from {LOSSES})")


def backward(spec, params, pre, r):
    """Backpropagated signals :math:`\\delta_l` (one per weight matrix) from ``r = dl/df``."""
    deltas = [None] * spec.depth
    delta = r
    for l in range(spec.depth - 1, -1, -1):
        deltas[l] = delta
        if l == 0:
            break
        block = _is_block(spec, l)
        back = params[l].T @ delta
        if block:
            back = spec.branch_scale * back
        if spec.activation == "relu":
            back = jnp.where(pre[l - 1] > 0, back, 0)
        delta = delta + back if block else back
    return deltas


def example_signals(spec, params, x, y, loss: str = "squared"):
    """For one example: layer inputs :math:`a_l`, signals :math:`\\delta_l` and the loss."""
    f, inputs, pre = forward(spec, params, x)
    value, r = output_loss(f, y, loss)
    return inputs, backward(spec, params, pre, r), value
