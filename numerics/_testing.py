"""Test helpers shared by ``tests/test_numerics*.py``: the tolerance table and a compile counter.

Tolerances are keyed by dtype (neural-tangents style). ``roundoff`` is the relative agreement
expected between two exact computations of the same quantity that only differ in the order of
floating-point operations (fast path vs generic path, one device vs four); ``z`` is the number
of standard errors allowed between a Monte Carlo mean and the quantity it estimates (4 SE: a
two-sided normal tail of 6e-5 per assertion, so a suite of ~100 such assertions fails
spuriously with probability < 1%).
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

TOL = {
    np.dtype("float64"): {"roundoff": 1e-10, "z": 4.0},
    np.dtype("float32"): {"roundoff": 2e-4, "z": 4.0},
}

#: jax.monitoring event recorded once per XLA backend compilation.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations():
    """Count XLA compilations in the body through the public ``jax.monitoring`` listeners.

    Yields a one-element list whose entry is the running count.
    """
    count = [0]

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
