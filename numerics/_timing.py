"""Timing of compiled functions against each other: interleaved batches of blocked calls
(used by ``numerics.bench`` and by ``tune=True``)."""

from __future__ import annotations

import math
import time

import jax


def interleaved_times(fns, args, reps, skip_after=None, first=None, min_s=0.02):
    """Seconds per call of each of ``fns`` (a dict): per repetition, each function runs
    ``inner`` blocked calls back to back and records their mean; the order rotates from one
    repetition to the next. ``inner`` (the same for all) makes the fastest function's batch
    last about ``min_s``, so a sub-millisecond call is not timed alone (one timed call then
    carries the cache misses and host work of whatever ran before it). Functions in
    ``skip_after`` (slow references) run once per repetition, for that many repetitions.
    ``first``: a dict that receives each function's warm-up output."""
    skip_after = skip_after or {}
    warm = {}
    for k, f in fns.items():
        out = jax.block_until_ready(f(*args))  # compile + warm-up
        if first is not None:
            first[k] = out
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        warm[k] = time.perf_counter() - t0
    fast = min([t for k, t in warm.items() if k not in skip_after] or [min_s])
    inner = max(1, math.ceil(min_s / max(fast, 1e-6)))
    times = {k: [] for k in fns}
    order = list(fns)
    for r in range(reps):
        order = order[1:] + order[:1]
        for k in order:
            if k in skip_after and r >= skip_after[k]:
                continue
            m = 1 if k in skip_after else inner
            t0 = time.perf_counter()
            for _ in range(m):
                jax.block_until_ready(fns[k](*args))
            times[k].append((time.perf_counter() - t0) / m)
    return times
