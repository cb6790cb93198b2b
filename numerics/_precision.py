"""One precision policy: float32 by default, float64 only inside :func:`x64`.

The dtype of every array numerics/ creates is taken from the x64 flag in force
(:func:`default_dtype`), and the flag is switched only through the :func:`x64` context
manager, which restores the previous value even when the body raises.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp


def default_dtype():
    """``float64`` when x64 is enabled, else ``float32``.

    Example:
        >>> with x64():
        ...     print(default_dtype().__name__)
        float64
    """
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


@contextlib.contextmanager
def x64(enabled: bool = True):
    """Run the body with ``jax_enable_x64`` set to ``enabled``; restore the old flag after.

    Example:
        >>> import jax
        >>> before = jax.config.jax_enable_x64
        >>> with x64():
        ...     jax.numpy.zeros(1).dtype.name
        'float64'
        >>> jax.config.jax_enable_x64 == before
        True
    """
    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", bool(enabled))
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)
