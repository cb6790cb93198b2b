r"""From trial records to the observed and predicted critical batch (SPEC §5).

* Per study (architecture, batch size m): the learning rate is tuned per batch size — the best
  lr is the one with the smallest mean steps-to-target over seeds among those whose every seed
  reached the target; :math:`S(m)` is that mean. INFEASIBLE / UNREACHED trials are counted,
  never dropped.
* Fit (McCandlish et al. 2018) :math:`S(m) = S_\min(1 + B_\text{crit}/m)` by least squares on
  :math:`\log S` (the points span decades); for each :math:`B` the best :math:`S_\min` is closed
  form, and :math:`\log B` is found by a grid plus golden-section refinement. The interval is a
  percentile bootstrap over seeds (resample seeds with replacement, redo the lr choice and the
  fit).
* Largest useful batch: the largest m whose epochs-to-target :math:`E(m) = S(m)\,m/n` is within
  :math:`(1+\epsilon)` × the best; :math:`\epsilon = 1` corresponds to :math:`B_\text{crit}`
  (at :math:`m = B_\text{crit}` the model's :math:`E` is twice its small-batch limit).
* Predicted: :math:`m_\max = \delta B_S + 1` (:func:`theory.predicted_max_batch`) with
  :math:`B_S` of the training set at initialisation (Monte Carlo mean over random inits) and
  averaged along the best small-batch run; theory's :math:`\bar B_S` where theory covers the
  model (squared loss).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from theory import predicted_max_batch

from ._train import INFEASIBLE, REACHED, UNREACHED


# --------------------------------------------------------------------------- fit
EDGE_FACTOR = 2.0  # fits below m_min/2 or above 2·m_max are reported as at an edge


def _sse(logB, m, logS):
    """Least-squares error of the fit for each candidate log B (vectorised over ``logB``);
    for each the best log S_min is the mean residual (closed form). Returns (sse, S_min)."""
    logB = np.atleast_1d(np.asarray(logB, np.float64))
    pred = np.log1p(np.exp(logB)[:, None] / m[None, :])
    log_smin = np.mean(logS[None, :] - pred, axis=1)
    r = logS[None, :] - log_smin[:, None] - pred
    return np.einsum("ij,ij->i", r, r), np.exp(log_smin)


def fit_critical_batch(batch_sizes, steps) -> dict:
    r"""Least-squares fit of :math:`\log S(m) = \log S_\min + \log(1 + B_\text{crit}/m)`.

    :math:`\log B_\text{crit}` is found on a grid over :math:`[m_\min/10^3, 10^3 m_\max]`
    refined twice around the best point (relative resolution below :math:`10^{-5}`);
    :math:`S_\min` is closed form for each candidate.

    Args:
        batch_sizes: the m values (at least 3 distinct ones: two parameters are fitted, and
            two points would fit exactly whatever the data).
        steps: the steps-to-target :math:`S(m)` (positive).

    Returns:
        dict with ``B_crit``, ``S_min``, ``rmse_log`` and ``at_edge`` (``"low"`` when the fit
        lies above 2× the largest m — the data show no slowdown from perfect scaling, so it is
        only a lower bound — , ``"high"`` when it lies below half the smallest m — even the
        smallest batch is past the critical batch —, else None). Families' trends leave
        edge fits out.

    Example:
        >>> m = np.array([8, 16, 32, 64, 128, 256, 512])
        >>> fit = fit_critical_batch(m, 100 * (1 + 64 / m))
        >>> round(fit["B_crit"], 3), round(fit["S_min"], 3)
        (64.0, 100.0)
    """
    m = np.asarray(batch_sizes, np.float64)
    s = np.asarray(steps, np.float64)
    ok = np.isfinite(s) & (s > 0)
    m, s = m[ok], s[ok]
    if np.unique(m).size < 3:
        return {"B_crit": None, "S_min": None, "rmse_log": None, "at_edge": None,
                "points": int(m.size)}
    logS = np.log(s)
    lo, hi = math.log(m.min() / 1e3), math.log(m.max() * 1e3)
    grid = np.linspace(lo, hi, 241)
    for _ in range(3):  # grid, then two refinements of width 2 cells around the best
        i = int(np.argmin(_sse(grid, m, logS)[0]))
        step = grid[1] - grid[0]
        grid = np.linspace(max(grid[i] - step, lo), min(grid[i] + step, hi), 201)
    i = int(np.argmin(_sse(grid, m, logS)[0]))
    logB = float(grid[i])
    sse, smin = (float(v[0]) for v in _sse(logB, m, logS))
    edge = None  # a B_crit more than 2x outside the batches tried is an extrapolation
    if logB > math.log(m.max() * EDGE_FACTOR):
        edge = "low"  # perfect scaling throughout: B_crit beyond the batches tried
    elif logB < math.log(m.min() / EDGE_FACTOR):
        edge = "high"  # no perfect-scaling regime: B_crit below the batches tried
    return {"B_crit": float(math.exp(logB)), "S_min": smin,
            "rmse_log": math.sqrt(sse / m.size), "at_edge": edge, "points": int(m.size)}


def max_useful_batch(batch_sizes, epochs, epsilon: float = 1.0) -> dict:
    """Largest batch whose epochs-to-target is within ``(1 + epsilon)`` × the best.

    Returns ``{"max_batch", "best_epochs", "lower_bound"}``; ``lower_bound`` is True when the
    largest batch tried still qualifies (the true value may be larger).

    Example:
        >>> max_useful_batch([8, 16, 32, 64], [10, 11, 15, 30])["max_batch"]
        32
    """
    m = np.asarray(batch_sizes, np.float64)
    e = np.asarray(epochs, np.float64)
    ok = np.isfinite(e)
    if not ok.any():
        return {"max_batch": None, "best_epochs": None, "lower_bound": False}
    best = float(e[ok].min())
    good = ok & (e <= (1 + epsilon) * best)
    mb = int(m[good].max())
    return {"max_batch": mb, "best_epochs": best, "lower_bound": bool(mb == m.max())}


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant
    or fewer than 2 pairs are finite.

    Example:
        >>> spearman([1, 2, 3], [10, 30, 20])
        0.5
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    if np.all(ra == ra[0]) or np.all(rb == rb[0]):
        return float("nan")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float(ra @ rb / math.sqrt((ra @ ra) * (rb @ rb)))


def _ranks(v):
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(v.size)
    ranks[order] = np.arange(1, v.size + 1, dtype=np.float64)
    for val in np.unique(v):
        tie = v == val
        ranks[tie] = ranks[tie].mean()
    return ranks


# --------------------------------------------------------------------------- studies
def study_table(trials: list[dict]) -> dict:
    """Group trials by (arch_id, batch_size) and pick the best learning rate.

    Returns ``{arch_id: {m: summary}}`` where a summary has ``best_lr``, ``steps`` (mean over
    seeds at the best lr, or None), ``seed_steps`` ({seed: steps} at the best lr), ``epochs``,
    ``lr_at_edge`` (the best lr is the smallest or largest of the grid), the counts
    ``REACHED``, ``UNREACHED``, ``INFEASIBLE`` and ``steps_by_lr_seed`` ({lr: {seed: steps or
    None}}) for the bootstrap.
    """
    groups = defaultdict(list)
    for t in trials:
        groups[(t["arch_id"], t["batch_size"])].append(t)
    out = defaultdict(dict)
    for (aid, m), ts in groups.items():
        by = defaultdict(dict)
        for t in ts:
            by[t["lr"]][t["seed"]] = t["steps_to_target"] if t["status"] == REACHED else None
        best_lr, best = _best_lr(by, None)
        lrs = sorted(by)
        counts = {s: sum(t["status"] == s for t in ts) for s in (REACHED, UNREACHED, INFEASIBLE)}
        n = ts[0]["n"]
        out[aid][m] = {
            "batch_size": m, "best_lr": best_lr, "steps": best,
            "epochs": None if best is None else best * m / n,
            "seed_steps": dict(by[best_lr]) if best_lr is not None else {},
            "lr_at_edge": best_lr is not None and len(lrs) > 1 and best_lr in (lrs[0], lrs[-1]),
            "lrs": lrs, "steps_by_lr_seed": {lr: dict(v) for lr, v in by.items()}, **counts,
        }
    return dict(out)


def _best_lr(by: dict, seeds):
    """Best lr: smallest mean steps over ``seeds`` (all seeds if None) among lrs whose every
    seed reached the target. Returns (lr, mean steps) or (None, None)."""
    best_lr, best = None, None
    for lr in sorted(by):
        ss = by[lr]
        pick = list(ss) if seeds is None else seeds
        vals = [ss.get(s) for s in pick]
        if not vals or any(v is None for v in vals):
            continue
        mean = float(np.mean(vals))
        if best is None or mean < best:
            best_lr, best = lr, mean
    return best_lr, best


def _resampled_steps(studies: dict, pick) -> tuple[list, list]:
    """(batch sizes, best-lr mean steps) of one net with the seeds ``pick`` (lr choice
    redone)."""
    ms, ss = [], []
    for m, st in sorted(studies.items()):
        _, s = _best_lr(st["steps_by_lr_seed"], pick)
        if s is not None:
            ms.append(m)
            ss.append(s)
    return ms, ss


def _percentile_interval(values, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``values``."""
    a = (1 - level) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def _seeds_of(studies: dict) -> list:
    return sorted({s for st in studies.values() for v in st["steps_by_lr_seed"].values()
                   for s in v})


def bootstrap_fit(studies: dict, n_boot: int = 1000, *, seed: int = 0, level: float = 0.9):
    """Percentile interval of B_crit resampling seeds with replacement (lr choice redone).

    Returns ``(lo, hi, n_valid)``; None bounds when fewer than 3 batch sizes can be fitted in
    most resamples. With s seeds there are only C(2s-1, s) distinct resamples (3 for 2 seeds),
    so the interval is coarse; it is reported as such.
    """
    if n_boot <= 0:
        return None, None, 0
    seeds = _seeds_of(studies)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        pick = list(rng.choice(seeds, size=len(seeds), replace=True))
        f = fit_critical_batch(*_resampled_steps(studies, pick))
        if f["B_crit"] is not None:
            vals.append(f["B_crit"])
    if len(vals) < n_boot / 2:
        return None, None, len(vals)
    return (*_percentile_interval(vals, level), len(vals))


def analyse(trials: list[dict], archs: dict, *, epsilon: float = 1.0, delta: float = 1.0,
            n_boot: int = 1000, level: float = 0.9) -> list[dict]:
    """One row per architecture: observed B_crit (with bootstrap interval), observed max useful
    batch, predicted max batch (init, along the run, theory) and the counts of trial states."""
    table = study_table(trials)
    rows = []
    for aid, studies in table.items():
        t0 = next(t for t in trials if t["arch_id"] == aid)
        ms = sorted(studies)
        steps = [studies[m]["steps"] for m in ms]
        fit = fit_critical_batch(ms, [np.nan if s is None else s for s in steps])
        lo, hi, _ = bootstrap_fit(studies, n_boot, level=level)
        mub = max_useful_batch(ms, [np.nan if studies[m]["epochs"] is None
                                    else studies[m]["epochs"] for m in ms], epsilon)
        arch = archs.get(aid, {})
        init = arch.get("training_loss", {})
        b_init = init.get("E_B_S")
        # B_S averaged along the best run, and McCandlish's B_simple where it reached the
        # target, at the smallest batch size that reached the target
        b_run = _best_run_mean(trials, studies, aid, "B_S_run_mean")
        b_simple = _best_run_mean(trials, studies, aid, "B_simple_at_target")
        th = arch.get("theory", {})
        theory_pred = None
        if th.get("covered"):
            theory_pred = float(predicted_max_batch(th["batch_size_bound"], delta))
        rows.append({
            "arch_id": aid, "arch": t0["arch"], "activation": t0["activation"],
            "depth": t0["depth"], "width": t0["width"], "params": t0["params"],
            "observed_B_crit": fit["B_crit"], "B_crit_lo": lo, "B_crit_hi": hi,
            "S_min": fit["S_min"], "fit_rmse_log": fit["rmse_log"], "fit_edge": fit["at_edge"],
            "fit_points": fit["points"],
            "observed_max_batch": mub["max_batch"],
            "max_batch_lower_bound": mub["lower_bound"],
            "best_epochs": mub["best_epochs"],
            "B_S_init": b_init,
            "B_S_init_ratio_of_means": init.get("B_S_ratio_of_means"),
            "predicted_max_batch": None if b_init is None
            else float(predicted_max_batch(b_init, delta)),
            "B_S_run": b_run,
            "predicted_max_batch_run": None if b_run is None
            else float(predicted_max_batch(b_run, delta)),
            "B_simple_at_target": b_simple,
            "theory_B_S": th.get("batch_size_bound"),
            "theory_kind": th.get("kind"),
            "predicted_max_batch_theory": theory_pred,
            "theory_note": (None if theory_pred is not None else
                            th.get("reason") or "not covered"),
            "trials": sum(studies[m][REACHED] + studies[m][UNREACHED] + studies[m][INFEASIBLE]
                          for m in ms),
            "reached": sum(studies[m][REACHED] for m in ms),
            "unreached": sum(studies[m][UNREACHED] for m in ms),
            "infeasible": sum(studies[m][INFEASIBLE] for m in ms),
            "lr_at_edge": [m for m in ms if studies[m]["lr_at_edge"]],
        })
    rows.sort(key=lambda r: (r["depth"], -(r["width"] or 0)))
    return rows


def _best_run_mean(trials, studies, aid, key):
    """Mean of ``key`` over the best-lr trials at the smallest batch size whose best lr exists
    and has the value."""
    for m in sorted(studies):
        st = studies[m]
        if st["best_lr"] is None:
            continue
        vals = [t.get(key) for t in trials if t["arch_id"] == aid and t["batch_size"] == m
                and t["lr"] == st["best_lr"] and t.get(key) is not None]
        if vals:
            return float(np.mean(vals))
    return None


def verdict(trends: list[dict]) -> dict:
    """Plain-words verdict on claim C2 from the family trends (:func:`family_trend`).

    C2 says wider nets train with larger batches without slowing down, deeper ones do not.
    Each family gets its own verdict; the summary is ``"supported"`` when at least one family
    supports C2 and none contradicts it, ``"contradicted"`` in the mirror case, ``"mixed"``
    when families disagree, and ``"inconclusive"`` when none decides.

    Example:
        >>> verdict([{"family": "width", "verdict": "supported", "slope": 0.4,
        ...           "ci_low": 0.1, "ci_high": 0.7, "axis": "log K", "nets": [1, 2, 3, 4],
        ...           "reason": ""}])["C2"]
        'supported'
    """
    votes = [t["verdict"] for t in trends]
    sup, con = votes.count("supported"), votes.count("contradicted")
    if sup and con:
        c2 = "mixed"
    elif sup:
        c2 = "supported"
    elif con:
        c2 = "contradicted"
    else:
        c2 = "inconclusive"
    parts = []
    for t in trends:
        if t["verdict"] == "inconclusive" and len(trends) > 1:
            continue  # the table lists them; the text names the families that decide
        where = " / ".join(str(t[k]) for k in ("data", "loss", "arch") if k in t)
        slope = ("no slope" if t["slope"] is None else
                 f"slope {t['slope']:+.2f} per {t['axis']}"
                 + ("" if t["ci_low"] is None else
                    f" [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]"))
        parts.append(f"{(where + ', ') if where else ''}{t['family']} family "
                     f"({len(t['nets'])} nets): {t['verdict']} ({slope}; {t.get('reason', '')})")
    text = (f"Claim C2 is **{c2}** by these measurements: {sup} of {len(trends)} families "
            f"support it, {con} contradict it, {len(trends) - sup - con} cannot decide. "
            + ". ".join(parts) + ("." if parts else ""))
    return {"C2": c2, "text": text, "supported": sup, "contradicted": con,
            "families": len(trends)}


# --------------------------------------------------------------------------- trends (C2)
MIN_TREND_NETS = 4  # no verdict from 3 points
# Which sign of the slope C2 predicts: wider -> larger B_crit; deeper -> smaller (also along a
# budget family, where depth grows as width shrinks).
C2_SIGN = {"width": +1, "depth": -1, "budget": -1}
TREND_AXIS = {"width": "log K", "depth": "L", "budget": "L"}


def _slope(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def _trend_x(family: str, spec_row: dict) -> float:
    return math.log(spec_row["width"]) if family == "width" else float(spec_row["depth"])


def _fitted_log_bcrit(studies: dict, pick=None):
    """log B_crit of one net (None when not fitted or at an edge of the batches tried)."""
    ms, ss = _resampled_steps(studies, list(_seeds_of(studies)) if pick is None else pick)
    f = fit_critical_batch(ms, ss)
    if f["B_crit"] is None or f["at_edge"]:
        return None
    return math.log(f["B_crit"])


def family_trend(table: dict, family: str, members: list[dict], *, n_boot: int = 1000,
                 level: float = 0.9, seed: int = 0) -> dict:
    r"""Trend of the observed critical batch along one family, with a bootstrap interval.

    The slope is the least-squares slope of :math:`\log B_\text{crit}` against
    :math:`\log K` (width family) or :math:`L` (depth family, and along a parameter-budget
    family, where K falls as L grows). The interval is a percentile bootstrap: every net's
    seeds are resampled with replacement independently, the lr choice and the fit are redone,
    and the slope is recomputed. C2 predicts a positive slope in width and a negative one in
    depth; the verdict is ``"supported"`` when the interval lies on C2's side of zero,
    ``"contradicted"`` when it lies on the other side, and ``"inconclusive"`` otherwise, or
    when fewer than :data:`MIN_TREND_NETS` nets have a fitted B_crit inside the batches tried.

    Args:
        table: :func:`study_table` of the workload.
        family: ``"width"``, ``"depth"`` or ``"budget"``.
        members: one dict per net with ``arch_id``, ``depth`` and ``width``.

    Returns:
        dict with ``family``, ``axis``, ``nets`` (arch ids used), ``slope``, ``ci_low``,
        ``ci_high``, ``level``, ``verdict`` and ``reason``.
    """
    point = {r["arch_id"]: _fitted_log_bcrit(table[r["arch_id"]]) for r in members
             if r["arch_id"] in table}
    used = [r for r in members if point.get(r["arch_id"]) is not None]
    out = {"family": family, "axis": TREND_AXIS[family], "nets": [r["arch_id"] for r in used],
           "members": [r["arch_id"] for r in members], "slope": None, "ci_low": None,
           "ci_high": None, "level": level, "verdict": "inconclusive"}
    if len(used) < MIN_TREND_NETS:
        out["reason"] = (f"{len(used)} of {len(members)} nets have a critical batch fitted "
                         f"inside the batches tried; a verdict needs at least "
                         f"{MIN_TREND_NETS}")
        if len(used) >= 2:
            out["slope"] = _slope([_trend_x(family, r) for r in used],
                                  [point[r["arch_id"]] for r in used])
            agrees = (out["slope"] > 0) == (C2_SIGN[family] > 0)
            out["reason"] += (f"; the point slope's direction {'agrees' if agrees else 'disagrees'}"
                              f" with C2, which alone decides nothing")
        return out
    x = [_trend_x(family, r) for r in used]
    out["slope"] = _slope(x, [point[r["arch_id"]] for r in used])
    rng = np.random.default_rng(seed)
    seeds = {r["arch_id"]: _seeds_of(table[r["arch_id"]]) for r in used}
    slopes = []
    for _ in range(max(n_boot, 0)):
        xs, ys = [], []
        for r, xv in zip(used, x):
            sd = seeds[r["arch_id"]]
            v = _fitted_log_bcrit(table[r["arch_id"]],
                                  list(rng.choice(sd, size=len(sd), replace=True)))
            if v is not None:
                xs.append(xv)
                ys.append(v)
        if len(xs) >= MIN_TREND_NETS:
            slopes.append(_slope(xs, ys))
    if len(slopes) < max(n_boot, 1) / 2:
        out["reason"] = "too few bootstrap resamples gave a fit for every net"
        return out
    lo, hi = _percentile_interval(slopes, level)
    out.update(ci_low=lo, ci_high=hi)
    sign = C2_SIGN[family]
    if lo > 0 or hi < 0:
        agrees = (lo > 0) == (sign > 0)
        out["verdict"] = "supported" if agrees else "contradicted"
        out["reason"] = (f"the {level:.0%} interval of the slope excludes 0 on "
                         f"{'the side C2 predicts' if agrees else 'the side opposite to C2'}")
    else:
        out["reason"] = f"the {level:.0%} interval of the slope contains 0"
    return out


# --------------------------------------------------------------------------- predictors
PREDICTORS = {
    # name: (row key, what it is)
    "theory_init": ("predicted_max_batch_theory",
                    "theory δ·B̄_S+1 at initialisation (ratio of expectations; kind per net)"),
    "mc_init": ("predicted_max_batch",
                "δ·E[B_S]+1, Monte Carlo over random inits, training loss"),
    "along_run": ("predicted_max_batch_run",
                  "δ·B_S+1 with B_S averaged along the best small-batch run"),
    "B_simple_at_target": ("B_simple_at_target",
                           "McCandlish's B_simple (= B_S − 1, plug-in) of the training set "
                           "where the best small-batch run reached the target"),
}


def predictor_table(rows: list[dict], *, n_boot: int = 1000, level: float = 0.9,
                    seed: int = 0) -> list[dict]:
    """Every predictor against the observed critical batch over a set of nets.

    Per predictor: ``nets`` (with both values), ``spearman`` (predicted vs observed B_crit)
    with a percentile-bootstrap interval over nets (``spearman_ci_low/high``), the ratio
    observed B_crit / predicted (``ratio_median``, ``ratio_min``, ``ratio_max``), and
    ``lower_bound_held``: the fraction of nets whose prediction is ≤ the observed largest
    useful batch (Yin et al.'s δ·B_S+1 is a sufficient condition, so this is what the theory
    claims), with ``looseness_median`` = observed largest useful batch / predicted.
    """
    out = []
    for name, (key, what) in PREDICTORS.items():
        pairs = [(r[key], r["observed_B_crit"], r["observed_max_batch"]) for r in rows
                 if r.get(key) and r.get("observed_B_crit") and not r.get("fit_edge")]
        rec = {"predictor": name, "description": what, "nets": len(pairs), "spearman": None,
               "spearman_ci_low": None, "spearman_ci_high": None, "ratio_median": None,
               "ratio_min": None, "ratio_max": None, "lower_bound_held": None,
               "looseness_median": None}
        if pairs:
            p, b, mb = (np.array(v, np.float64) for v in zip(*[
                (a, c, np.nan if d is None else d) for a, c, d in pairs]))
            ratio = b / p
            rec.update(ratio_median=float(np.median(ratio)), ratio_min=float(ratio.min()),
                       ratio_max=float(ratio.max()))
            okm = np.isfinite(mb)
            if okm.any():
                rec["lower_bound_held"] = float(np.mean(p[okm] <= mb[okm]))
                rec["looseness_median"] = float(np.median(mb[okm] / p[okm]))
            if len(pairs) >= 3:
                rho = spearman(p, b)
                rec["spearman"] = _nn(rho)
                rng = np.random.default_rng(seed)
                boots = []
                for _ in range(max(n_boot, 0)):
                    i = rng.integers(0, len(pairs), len(pairs))
                    v = spearman(p[i], b[i])
                    if np.isfinite(v):
                        boots.append(v)
                if boots:
                    rec["spearman_ci_low"], rec["spearman_ci_high"] = \
                        _percentile_interval(boots, level)
        out.append(rec)
    return out


def _nn(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.2f}"


__all__ = ["fit_critical_batch", "max_useful_batch", "spearman", "study_table",
           "bootstrap_fit", "analyse", "verdict", "family_trend", "predictor_table",
           "PREDICTORS", "C2_SIGN", "MIN_TREND_NETS"]
