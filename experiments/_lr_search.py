r"""The learning-rate search of a study: the first grid, its extension beyond an edge optimum,
the step cap, and the best learning rate — the one rule the sweep (grid direction, the next
batch size's centre) and the analysis (the studies table) both use.

* First grid (:func:`first_grid`): ``lrs`` moved by the rule ``lr_scaling`` from
  ``lr_reference_batch``, or (``lr_center = "previous_best"``) the grid's shape centred on
  the previous batch size's best lr moved by the rule.
* Best lr (:func:`best_lr`): the smallest mean steps-to-target over seeds among the lrs where
  every seed reached the target, ties to the smaller lr. When there is none, the *leading*
  lr (:func:`leading_lr`: most seeds at the target, then the lowest mean final loss) plays
  its part for the grid's direction (:func:`edge_direction`) and the next centre.
* Extension (``train.lr_extend = N``): while the best (or leading) lr is the smallest or
  largest tried, as many more grid points as the first grid has are tried beyond that edge
  (the same number of trials, so the compiled step is reused), at most N times per side and
  once only while no lr reaches the target with every seed; ``study.json`` records each
  extension and ``edge_resolved``.
* Step cap (:func:`step_cap`): with ``train.step_cap_factor = c > 0``, c × the best mean
  steps-to-target of the nearest smaller batch size that has one.

Only :func:`search_study` trains (it imports :mod:`experiments._train`, and so jax, when
called); the rest is plain Python on trial records.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ._config import SweepConfig
from ._families import arch_id
from ._records import REACHED, SCHEMA


# --------------------------------------------------------------------------- the grid
def grid_ratio(lrs) -> float:
    """A grid's ratio (its extension step): (max/min)^(1/(k−1)); 1 for one point.

    Example:
        >>> round(grid_ratio((0.05, 0.1, 0.2)), 12)
        2.0
    """
    lrs = sorted(lrs)
    return (lrs[-1] / lrs[0]) ** (1 / (len(lrs) - 1)) if len(lrs) > 1 else 1.0


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def first_grid(cfg: SweepConfig, batch_size: int,
               previous: tuple[int, float] | None = None) -> tuple[float, ...]:
    r"""The learning-rate grid first tried at ``batch_size``.

    ``lr_center = "scaled"``: ``lrs`` × (m / lr_reference_batch)^p with p = 0 (``none``),
    1/2 (``sqrt``) or 1 (``linear``). ``"previous_best"``: the same grid shape (``lrs``
    divided by their geometric mean) centred on the best lr ``b`` of the previous batch
    size ``m'`` moved by the rule, :math:`b\,(m/m')^p`, when ``previous = (m', b)`` is
    given (the first batch size falls back to ``"scaled"``).

    Example:
        >>> c = SweepConfig(lrs=(0.05, 0.1, 0.2), lr_scaling="sqrt", lr_reference_batch=64)
        >>> first_grid(c, 256)
        (0.1, 0.2, 0.4)
        >>> first_grid(c.replace(lr_center="previous_best"), 256, previous=(64, 0.4))
        (0.4, 0.8, 1.6)
    """
    p = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}[cfg.lr_scaling]
    if cfg.lr_center == "previous_best" and previous is not None:
        m_prev, best = previous
        centre = best * (batch_size / m_prev) ** p
        g = math.exp(sum(math.log(v) for v in cfg.lrs) / len(cfg.lrs))
        return tuple(_round(centre * lr / g) for lr in cfg.lrs)
    f = (batch_size / cfg.lr_reference_batch) ** p
    return tuple(_round(lr * f) for lr in cfg.lrs)


def extension(tried, direction: str, ratio: float, k: int) -> list[float]:
    """``k`` more grid points beyond the largest (``"up"``) or smallest (``"down"``) lr tried,
    ``ratio`` apart, in increasing order.

    Example:
        >>> extension([0.1, 0.2], "up", 2.0, 2), extension([0.1, 0.2], "down", 2.0, 2)
        ([0.4, 0.8], [0.025, 0.05])
    """
    tried = sorted(tried)
    if direction == "up":
        return [_round(tried[-1] * ratio ** j) for j in range(1, k + 1)]
    return [_round(tried[0] / ratio ** j) for j in range(k, 0, -1)]


def step_cap(cfg: SweepConfig, previous_steps: float | None = None) -> int:
    r"""The step cap of a study: ``max_steps``, or with ``step_cap_factor = c > 0`` and the
    best mean steps-to-target :math:`S'` of the nearest smaller batch size that has one,
    :math:`\min(\text{max\_steps}, \lceil c\,S'\rceil)`.

    Why it is safe: at its best learning rate a larger batch needs at most the steps of a
    smaller one (McCandlish's :math:`S(B) = S_\min(1 + B_\text{noise}/B)` decreases in
    :math:`B`), so a study in which no lr has reached the target after :math:`c\,S'`
    steps has a grid that misses the optimum (typically: every lr too large after a long
    jump in batch size, the nets stalled at chance accuracy without a NaN). It then stops
    and extends its grid instead of running every trial to ``max_steps``; a batch size
    whose best lr truly needs more than :math:`c\,S'` is reported unreached.

    Example:
        >>> c = SweepConfig(max_steps=30000, step_cap_factor=4)
        >>> step_cap(c), step_cap(c, 250.5), step_cap(c, 9000)
        (30000, 1002, 30000)
    """
    if not cfg.step_cap_factor or previous_steps is None:
        return cfg.max_steps
    return min(cfg.max_steps, math.ceil(cfg.step_cap_factor * previous_steps - 1e-9))


# --------------------------------------------------------------------------- the best lr
def steps_by_lr(trials) -> dict:
    """``{lr: [steps-to-target of each trial (seed) at that lr, None where not reached]}``."""
    by = {}
    for t in trials:
        by.setdefault(t["lr"], []).append(t["steps_to_target"] if t["status"] == REACHED
                                          else None)
    return by


def best_lr(by: dict):
    """The best nominal lr of ``by = {lr: [steps or None, one per seed]}``: the smallest mean
    steps over seeds among the lrs whose every seed reached the target, ties to the smaller
    lr. Returns (lr, mean steps), or (None, None) when no lr has every seed at the target.

    Example:
        >>> best_lr({0.1: [300, 310], 0.2: [200, None], 0.4: [305, 305]})
        (0.1, 305.0)
    """
    best, steps = None, None
    for lr in sorted(by):
        vals = list(by[lr])
        if not vals or any(v is None for v in vals):
            continue
        mean = float(np.mean(vals))
        if steps is None or mean < steps:
            best, steps = lr, mean
    return best, steps


def leading_lr(results):
    """The best lr (:func:`best_lr`), else the one that came nearest: most seeds at the
    target, then the lowest mean final training loss (diverged seeds count as infinite).
    None when no seed reached the target and every trial diverged."""
    best, _ = best_lr(steps_by_lr(results))
    if best is not None:
        return best
    reached, final = {}, {}
    for r in results:
        v = r.get("final_loss")
        reached[r["lr"]] = reached.get(r["lr"], 0) + (r["status"] == REACHED)
        final.setdefault(r["lr"], []).append(math.inf if v is None else float(v))
    key = {lr: (-reached[lr], float(np.mean(v)), lr) for lr, v in final.items()}
    lead = min(key, key=key.get)
    return lead if reached[lead] or math.isfinite(key[lead][1]) else None


def edge_direction(results) -> str | None:
    """Where a study's learning-rate grid should grow: ``"up"`` when the best lr (smallest mean
    steps-to-target with every seed reaching it) is the largest tried, ``"down"`` when it is
    the smallest, None when the optimum is inside. When no lr reached the target with every
    seed, the lr with the most seeds that reached it, and among those the one whose seeds end
    with the lowest mean training loss (diverged seeds count as infinite), plays the best lr's
    part (:func:`leading_lr`): too large an lr can also stall a net (dead ReLUs, chance
    accuracy, a squared loss that collapses to a constant), so "nothing reached" alone says
    nothing about the direction, while an lr that got some seeds there is the nearest to
    the optimum.

    Example:
        >>> mk = lambda lr, st, loss=1.0: {"lr": lr, "status": st, "final_loss": loss,
        ...     "steps_to_target": 100 / lr if st == "REACHED" else None}
        >>> edge_direction([mk(0.1, "REACHED"), mk(0.2, "REACHED")])
        'up'
        >>> edge_direction([mk(0.1, "REACHED"), mk(0.2, "REACHED"), mk(0.4, "INFEASIBLE")])
        >>> edge_direction([mk(0.1, "UNREACHED", 0.3), mk(0.2, "UNREACHED", 0.9)])
        'down'
    """
    lrs = sorted({r["lr"] for r in results})
    best = leading_lr(results)
    if best is None:
        return "down"  # everything diverged
    if len(lrs) > 1 and best == lrs[-1]:
        return "up"
    if len(lrs) > 1 and best == lrs[0]:
        return "down"
    return None


def seed_best(results) -> dict:
    """{seed: fewest steps-to-target over the lrs tried} of a study's results so far."""
    best = {}
    for r in results:
        if r["status"] == REACHED:
            best[r["seed"]] = min(best.get(r["seed"], math.inf), r["steps_to_target"])
    return best


# --------------------------------------------------------------------------- one study
def search_study(w, spec, m: int, seeds, *, previous, cap: int, dtype, moments: bool,
                 lr_multipliers, save, start=None) -> dict:
    """One study of workload ``w`` (every lr × seed at batch ``m``, at most ``cap`` steps
    each), its grid extended at the edges. ``save(results)`` is called with each batch of
    trial results as soon as it returns (the caller writes the trial files). Returns the
    study record (``study.json``)."""
    from ._train import run_study  # jax: only when a study is trained

    cfg = w.config
    t0 = time.perf_counter()
    lrs = list(first_grid(cfg, m, previous))
    results, extensions = [], []
    ups = downs = 0
    batch = lrs
    ratio = grid_ratio(cfg.lrs)
    while True:
        _, known = best_lr(steps_by_lr(results))
        res = run_study(
            spec, w.data.x, w.y_loss, w.data.classes if w.task == "classification" else None,
            loss=w.loss, batch_size=m, lrs=batch, seeds=seeds,
            momentum=cfg.effective_momentum, max_steps=cap, target_metric=w.metric,
            target=w.target, eval_growth=cfg.eval_growth, stop_factor=cfg.stop_factor,
            dtype=dtype, known_best=known, optimizer=cfg.optimizer,
            lr_multipliers=lr_multipliers, lr_jitter=ratio if cfg.lr_jitter else 1.0,
            known_seed_best=seed_best(results), moments=moments, start=start)
        save(res)
        results += res
        direction = edge_direction(results)
        if direction is None or not cfg.lr_extend:
            break
        if extensions and best_lr(steps_by_lr(results))[0] is None:
            break  # no lr reached the target with every seed even after extending: the
            # target is likely beyond this net at this batch size; more lrs would only
            # burn max_steps each
        if (direction == "up" and ups >= cfg.lr_extend) or \
                (direction == "down" and downs >= cfg.lr_extend):
            break
        ups, downs = ups + (direction == "up"), downs + (direction == "down")
        batch = extension({r["lr"] for r in results}, direction, ratio, len(lrs))
        extensions.append({"direction": direction, "lrs": batch})
    best, best_steps = best_lr(steps_by_lr(results))
    return {"schema": SCHEMA, "arch_id": arch_id(spec), "batch_size": m, "lrs_initial": lrs,
            "lrs_tried": sorted({r["lr"] for r in results}), "extensions": extensions,
            "best_lr": best, "best_steps": best_steps, "step_cap": cap,
            "anchor_lr": leading_lr(results),
            "edge_resolved": best is not None and edge_direction(results) is None,
            "wall_s": round(time.perf_counter() - t0, 3)}


__all__ = ["grid_ratio", "first_grid", "extension", "step_cap", "steps_by_lr", "best_lr",
           "leading_lr", "edge_direction", "seed_best", "search_study"]
