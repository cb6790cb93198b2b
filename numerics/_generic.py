r"""Gradient diversity of ANY JAX model: chunked ``vmap(grad)`` with a memory bound.

For a per-example loss ``loss_fn(params, x_i, y_i)`` with any pytree ``params`` (dicts, flax,
equinox, ...), the examples are processed ``chunk_size`` at a time inside one ``lax.scan``;
only one chunk of per-example gradients (``chunk_size`` × parameters) is alive at once, and
the running sums :math:`S_1` (per leaf) and :math:`\sum_i g_i` are carried.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from theory import diversity

#: Default memory bound for one chunk of per-example gradients (bytes).
CHUNK_BYTES = 1 << 28


def _pad(tree, n_pad):
    return jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[:1], n_pad, axis=0)]) if n_pad else a, tree)


@partial(jax.jit, static_argnames=("loss_fn", "chunk"))
def _sums(loss_fn, params, x, y, chunk):
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    m = -(-n // chunk)
    n_pad = m * chunk - n
    x, y = _pad(x, n_pad), _pad(y, n_pad)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    mask = (jnp.arange(m * chunk) < n).astype(dtype)
    split = lambda a: a.reshape((m, chunk) + a.shape[1:])
    xs, ys, ms = jax.tree_util.tree_map(split, x), jax.tree_util.tree_map(split, y), split(mask)
    per_ex = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))

    def body(carry, batch):
        s1, gsum = carry
        xb, yb, mb = batch
        g = per_ex(params, xb, yb)
        sq = jax.tree_util.tree_map(
            lambda a: jnp.sum((a * a).reshape(chunk, -1), axis=1), g)
        s1 = jax.tree_util.tree_map(lambda s, q: s + jnp.sum(mb * q), s1, sq)
        gsum = jax.tree_util.tree_map(lambda s, a: s + jnp.tensordot(mb, a, axes=1), gsum, g)
        return (s1, gsum), None

    zero_s = jax.tree_util.tree_map(lambda p: jnp.zeros((), p.dtype), params)
    zero_g = jax.tree_util.tree_map(jnp.zeros_like, params)
    (s1, gsum), _ = jax.lax.scan(body, (zero_s, zero_g), (xs, ys, ms))
    s2 = jax.tree_util.tree_map(lambda g: jnp.sum(g * g), gsum)
    return s1, s2, gsum


def default_chunk(params, n: int, max_bytes: int = CHUNK_BYTES) -> int:
    """Largest chunk whose per-example gradients fit in ``max_bytes`` (at least 1, at most n)."""
    leaves = jax.tree_util.tree_leaves(params)
    nbytes = sum(int(np.prod(p.shape)) * jnp.dtype(p.dtype).itemsize for p in leaves)
    return int(max(1, min(n, max_bytes // max(nbytes, 1))))


def gradient_diversity(loss_fn, params, x, y, *, chunk_size: int | None = None) -> dict:
    r"""S1, S2, gradient diversity, :math:`B_S` and the estimator variants of SPEC §2.

    Args:
        loss_fn: ``loss_fn(params, x_i, y_i) -> scalar`` for ONE example.
        params: any pytree of floating arrays.
        x, y: arrays (or pytrees of arrays) with the examples along axis 0.
        chunk_size: examples per vmapped chunk; default keeps one chunk of per-example
            gradients under 256 MiB.

    Returns:
        The dict of :func:`theory.diversity` (``S1``, ``S2``, ``gradient_diversity``,
        ``batch_size_bound`` = :math:`B_S`, ``B_simple`` (plug-in, :math:`B_S-1`),
        ``B_simple_unbiased`` (McCandlish two-batch with sizes 1 and n), ``norm_test_theta2``)
        with ``n``, ``grad_sum`` (:math:`\sum_i g_i`, shaped like params) and ``layers``: the
        same statistics per pytree leaf, keyed by ``jax.tree_util.keystr`` of its path.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = lambda p, x, y: 0.5 * (jnp.dot(p["w"], x) - y) ** 2
        >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]]); y = jnp.array([1.0, 1.0])
        >>> out = gradient_diversity(loss, {"w": jnp.zeros(2)}, x, y)
        >>> float(out["batch_size_bound"])  # orthogonal gradients: B_S = n
        2.0
    """
    n = jax.tree_util.tree_leaves(x)[0].shape[0]
    if n == 0:
        raise ValueError("gradient_diversity needs at least one example")
    chunk = default_chunk(params, n) if chunk_size is None else int(min(chunk_size, n))
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    s1, s2, gsum = _sums(loss_fn, params, x, y, chunk)
    S1 = sum(jax.tree_util.tree_leaves(s1))
    S2 = sum(jax.tree_util.tree_leaves(s2))
    out = diversity(S1, S2, n)
    out["n"] = n
    out["grad_sum"] = gsum
    flat1 = jax.tree_util.tree_flatten_with_path(s1)[0]
    flat2 = jax.tree_util.tree_leaves(s2)
    out["layers"] = {jax.tree_util.keystr(path): diversity(a, b, n)
                     for (path, a), b in zip(flat1, flat2)}
    return out


def two_batch_noise_scale(small_sq, big_sq, b_small, b_big) -> dict:
    r"""McCandlish et al. (2018, App. A) two-batch estimator of the simple noise scale.

    From mean squared norms of mean gradients over batches of two sizes,
    :math:`E|G_b|^2 = |G|^2 + \operatorname{tr}\Sigma/b`, solve for
    :math:`|G|^2 = (b_\text{big}|G_\text{big}|^2 - b_\text{small}|G_\text{small}|^2)
    /(b_\text{big} - b_\text{small})` and
    :math:`\operatorname{tr}\Sigma = (|G_\text{small}|^2 - |G_\text{big}|^2)
    /(1/b_\text{small} - 1/b_\text{big})`. Needs no per-example norms.

    With ``b_small = 1`` (``small_sq = S1/n``) and ``b_big = n`` (``big_sq = S2/n²``) this is
    :func:`theory.unbiased_noise_scale`.
    """
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    tr = (small_sq - big_sq) / (1 / b_small - 1 / b_big)
    return {"G2": g2, "trace_sigma": tr, "B_simple": tr / g2}
