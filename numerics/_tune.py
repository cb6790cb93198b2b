r"""Each leaf's exact form chosen by measured time (``gradient_diversity(..., tune=True)``).

The plan (:func:`numerics._ghost.analyse`) picks each dense / conv leaf's form (Gram
``"ghost"`` or ``"materialised"``) from a cost estimate calibrated on one CPU
(:func:`numerics._ghost_norms.mode_costs`). Another device, or shapes far from that
calibration, can make the other form faster. :func:`tune` measures instead: starting from the
estimated plan it tries, leaf by leaf, every other exact form, times the whole compiled program
on the caller's own data and keeps a change that is faster by more than ``rel``. Every form is
exact, so tuning changes the cost, never the numbers beyond float rounding.

Only single-use dense and conv leaves are tuned (their forms are tested forced on every kind
of operation); one-position dense layers (``"outer"``), embeddings, shared and fallback leaves
keep their form.
"""

from __future__ import annotations

import dataclasses
import statistics

from ._timing import interleaved_times

#: The exact forms each tunable kind has.
MODES = {"dense": ("ghost", "materialised"), "conv": ("ghost", "materialised")}


def _kind(path):
    base = path.split(" ")[0]
    return next((k for k in MODES if base == k or base.startswith(k + "-")), None)


def label(kind, mode):
    """The path label of a ``kind`` leaf in ``mode`` (as :func:`numerics._ghost._site_label`)."""
    if kind == "conv":
        return "conv" if mode == "materialised" else f"conv-{mode}"
    return f"dense-{mode}"


def tunable(plan):
    """Indices into ``plan.sites`` of the single-use dense / conv leaves with a choice."""
    out = []
    for i, (_, leaf, _, _, mode) in enumerate(plan.sites):
        kind = _kind(plan.paths[leaf])
        if (kind and mode in MODES[kind] and leaf not in plan.multi
                and leaf not in plan.cross):
            out.append(i)
    return out


def with_mode(plan, i, mode):
    """``plan`` with site ``i`` in ``mode``: the leaf's summed gradient then comes from its
    materialised per-example gradients (``skip``) or from the backward pass, and its path
    label says the form."""
    sid, leaf, shape, dtype, old = plan.sites[i]
    kind = _kind(plan.paths[leaf])
    sites = plan.sites[:i] + ((sid, leaf, shape, dtype, mode),) + plan.sites[i + 1:]
    skip = [k for k in plan.skip if k != leaf] + ([leaf] if mode == "materialised" else [])
    paths = list(plan.paths)
    paths[leaf] = label(kind, mode) + paths[leaf][len(label(kind, old)):]
    return dataclasses.replace(plan, sites=sites, skip=tuple(sorted(skip)), paths=tuple(paths))


def paired_seconds(make_a, make_b, args, reps=9, min_s=0.01):
    """Median seconds per call of the compiled ``make_a()`` and ``make_b()`` on ``args``,
    timed interleaved (:func:`numerics._timing.interleaved_times`: ``reps`` rounds of batches
    lasting at least ``min_s``), so that drift of the host's speed hits both alike."""
    times = interleaved_times({"a": make_a(), "b": make_b()}, args, reps, min_s=min_s)
    return statistics.median(times["a"]), statistics.median(times["b"])


def tune(plan, compare, rel=0.03):
    """Greedy per-leaf choice of form by measured time.

    Args:
        plan: the estimated plan.
        compare: ``compare(plan_a, plan_b) -> (seconds_a, seconds_b)``, the measured times of
            the programs of two plans (:func:`paired_seconds`).
        rel: a change is kept when it is faster than the current best by more than this
            fraction (timing noise).

    Returns the tuned plan (``plan`` itself when nothing was faster).
    """
    for i in tunable(plan):
        kind, first = _kind(plan.paths[plan.sites[i][1]]), plan.sites[i][4]
        for mode in MODES[kind]:
            if mode == first:
                continue
            cand = with_mode(plan, i, mode)
            t_best, t_cand = compare(plan, cand)
            if t_cand < t_best * (1 - rel):
                plan = cand
    return plan
