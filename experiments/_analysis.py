r"""From trial records to the observed and predicted critical batch (the protocol of the
README's "Experiments" section; statistics in :mod:`experiments._fit`).

* Targets: the workload's primary target (trials stop there) and every ``extra_targets``
  entry (accuracy or training-loss levels), read off the same runs' curves, so the critical
  batch is measured at several stages of training.
* Per net, target and batch size m, **each seed picks its own learning rate** (fewest steps
  to the target over the lrs it tried; with ``train.lr_jitter`` every seed's grid is shifted
  by its own fraction of a step). :math:`S(m)` is the geometric mean over seeds.
* Fit (McCandlish et al. 2018) :math:`S(m) = S_\min(1 + B_\text{crit}/m)` on
  :math:`\log S`; interval: jackknife over seeds, Student t with s − 1 degrees of freedom
  (:func:`experiments._fit.net_interval`), so seeds, fit residuals and the lr grid's
  resolution are all inside it. Every fit is made with and without the full-batch point.
* Trends: slope of :math:`\log B_\text{crit}` against :math:`\log K` (width family) or
  :math:`L` (depth family, fixed-budget family) per target, jackknife interval and p-value;
  Holm's adjustment over every trend row reported decides the verdict.
* Matched progress: the common within-target slope over the training-loss targets (B_crit at
  matched training loss), and the same over the accuracy targets.
* Largest useful batch: the largest m whose epochs-to-target :math:`E(m) = S(m)\,m/n` is
  within :math:`(1+\epsilon)` × the best.
* Predictors, per target: theory's :math:`\delta\bar B_S+1` and the Monte Carlo
  :math:`\delta E[B_S]+1` at initialisation; :math:`\delta B_S+1` averaged along the
  smallest-batch run up to the step where it reaches the target; McCandlish's
  :math:`B_\text{simple}` at that step (interpolated in log step between the power-of-two
  checkpoints).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from theory import predicted_max_batch

from ._config import data_label
from ._errors import ExperimentError
from ._fit import (calibration, fit_critical_batch, holm, benjamini_hochberg, net_interval,
                   pooled_steps, seed_steps, slope_with_interval, steps_to, target_key,
                   trial_steps)
from ._lr_search import best_lr
from ._records import (INFEASIBLE, REACHED, UNREACHED, init_record, load_studies,
                       load_workload_folder, read_json, workload_folders)


# --------------------------------------------------------------------------- fit
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
        lr, best = best_lr({k: list(v.values()) for k, v in by.items()})  # the sweep's rule
        lrs = sorted(by)
        counts = {s: sum(t["status"] == s for t in ts) for s in (REACHED, UNREACHED, INFEASIBLE)}
        n = ts[0]["n"]
        out[aid][m] = {
            "batch_size": m, "best_lr": lr, "steps": best,
            "epochs": None if best is None else best * m / n,
            "seed_steps": dict(by[lr]) if lr is not None else {},
            "lr_at_edge": lr is not None and len(lrs) > 1 and lr in (lrs[0], lrs[-1]),
            "lrs": lrs, "steps_by_lr_seed": {k: dict(v) for k, v in by.items()}, **counts,
        }
    return dict(out)


# --------------------------------------------------------------------------- per net
def workload_targets(wl: dict) -> list[tuple[str, float]]:
    """[(metric, value)]: the primary target first, then the extra ones (no duplicates)."""
    if "targets" in wl:  # recorded by the sweep: the primary target first
        extras = wl["targets"][1:]
    else:
        extras = [t.split(":") for t in wl.get("config", {}).get("extra_targets", [])]
    out = [(wl["target_metric"], float(wl["target"]))]
    for metric, value in extras:
        if (metric, float(value)) not in out:
            out.append((metric, float(value)))
    return out


def net_rows(trials: list[dict], targets, *, n: int, level: float = 0.9,
             epsilon: float = 1.0) -> list[dict]:
    """One row per net × target × {with, without the full-batch point}: B_crit with its
    jackknife interval (:func:`experiments._fit.net_interval`) and the largest useful batch.

    Where the full batch (m = n) was tried there are both rows, and the one with it is the
    ``main_variant``; otherwise one row, without it, which is the main one.
    """
    seeds = sorted({t["seed"] for t in trials})
    info = {}
    for t in trials:
        info.setdefault(t["arch_id"], {k: t[k] for k in ("arch_id", "arch", "activation",
                                                          "depth", "width", "params")})
    tried = sorted({t["batch_size"] for t in trials})
    # (full-batch point in the fit, batches left out, the main variant): with the full batch
    # when it was tried, and then also without it; a run that never tried m = n has one
    # variant, without it, and that is its main one
    variants = ([(True, (), True)] + ([(False, (n,), False)] if len(tried) > 3 else [])
                if n in tried else [(False, (), True)])
    rows = []
    for metric, value in targets:
        table = seed_steps(trials, metric, value)
        for aid, by_m in table.items():
            for full, exclude, main in variants:
                res = net_interval(by_m, seeds, level=level, exclude=exclude)
                # epochs from the same pooled S(m) as the fit; batches no pooled S counts NaN
                pooled = dict(zip(*pooled_steps(by_m, seeds, exclude=exclude)))
                ms = [m for m in sorted(by_m) if m not in exclude]
                mub = max_useful_batch(ms, [pooled[m] * m / n if m in pooled else math.nan
                                            for m in ms], epsilon)
                rows.append({**info[aid], "target_metric": metric, "target": value,
                             "target_key": target_key(metric, value), "full_batch_point": full,
                             "main_variant": main,
                             **res, "observed_max_batch": mub["max_batch"],
                             "max_batch_lower_bound": mub["lower_bound"],
                             "best_epochs": mub["best_epochs"]})
    return rows


# --------------------------------------------------------------------------- trends (C2)
MIN_TREND_NETS = 3  # a slope and its interval need 3 nets with a fit inside the batches tried
# Which sign of the slope C2 predicts: wider -> larger B_crit; deeper -> smaller (also along a
# budget family, where depth grows as width shrinks).
C2_SIGN = {"width": +1, "depth": -1, "budget": -1}
TREND_AXIS = {"width": "log K", "depth": "L", "budget": "L"}


def _trend_x(family: str, row: dict) -> float:
    return math.log(row["width"]) if family == "width" else float(row["depth"])


def _point(row):
    """(log B_crit, leave-one-seed-out values) of a net row; None when at an edge."""
    if row["B_crit"] is None or row["at_edge"]:
        return None
    return math.log(row["B_crit"]), row["loo"]


def family_trend(rows: list[dict], family: str, members: list[str], seeds, *,
                 level: float = 0.9) -> dict:
    r"""Trend of log B_crit along one family at one target (``rows``: that target's net rows,
    one variant of the full-batch point), with a jackknife-over-seeds interval and p-value.

    The slope is the least-squares slope of :math:`\log B_\text{crit}` against
    :math:`\log K` (width family) or :math:`L` (depth family, and along a parameter-budget
    family, where K falls as L grows); nets whose fit lies beyond the batches tried are left
    out. The verdict is set later, from the multiplicity-adjusted p-value (:func:`adjust`).
    """
    by = {r["arch_id"]: r for r in rows}
    pts, used = [], []
    for aid in members:
        r = by.get(aid)
        if r is None or _point(r) is None:
            continue
        theta, loo = _point(r)
        pts.append((_trend_x(family, r), theta, loo))
        used.append(aid)
    out = {"family": family, "axis": TREND_AXIS[family], "nets": used, "members": list(members),
           "slope": None, "se": None, "ci_low": None, "ci_high": None, "p": None,
           "dof": len(seeds) - 1, "level": level, "verdict": "inconclusive"}
    if len(used) < MIN_TREND_NETS:
        out["reason"] = (f"{len(used)} of {len(members)} nets have a critical batch fitted "
                         f"inside the batches tried; a slope needs {MIN_TREND_NETS}")
        return out
    res = slope_with_interval([pts], seeds, level=level)
    out.update({k: res[k] for k in ("slope", "se", "ci_low", "ci_high", "p")})
    if res["p"] is None:
        out["reason"] = "no interval: a leave-one-seed-out fit failed"
    return out


def adjust(trends: list[dict], level: float = 0.9) -> list[dict]:
    """Set ``p_adjusted`` (Holm, over every row passed), ``q_bh`` (Benjamini–Hochberg) and
    the verdict of each trend row: ``supported`` / ``contradicted`` when the adjusted p-value
    is below 1 − level and the slope has C2's / the opposite sign, else ``inconclusive``."""
    ps = [t.get("p") for t in trends]
    for t, pa, q in zip(trends, holm(ps), benjamini_hochberg(ps)):
        t["p_adjusted"], t["q_bh"] = pa, q
        if pa is None:
            t["verdict"] = "inconclusive"
            continue
        alpha = 1 - level
        if pa < alpha:
            agrees = (t["slope"] > 0) == (C2_SIGN[t["family"]] > 0)
            t["verdict"] = "supported" if agrees else "contradicted"
            t["reason"] = (f"Holm-adjusted p = {pa:.2g} < {alpha:.2g} over {len(trends)} "
                           f"rows; the slope is on {'C2' if agrees else 'the opposite'}'s side")
        else:
            t["verdict"] = "inconclusive"
            t["reason"] = (f"Holm-adjusted p = {pa:.2g} ≥ {alpha:.2g} over {len(trends)} rows"
                           + ("" if t["p"] is None or t["p"] >= alpha else
                              f" (unadjusted p = {t['p']:.2g})"))
    return trends


def trends(rows: list[dict], families: dict, seeds, *, level: float = 0.9,
           primary: str | None = None) -> list[dict]:
    """Every family × target × full-batch variant trend of one workload (unadjusted)."""
    out = []
    keys = sorted({(r["target_key"], r["full_batch_point"], r["main_variant"]) for r in rows},
                  key=lambda k: (k[0] != primary, k[0], not k[2]))
    for tk, full, main in keys:
        sub = [r for r in rows if r["target_key"] == tk and r["full_batch_point"] == full]
        metric, value = sub[0]["target_metric"], sub[0]["target"]
        for fam, members in families.items():
            t = family_trend(sub, fam, members, seeds, level=level)
            out.append({**t, "target_metric": metric, "target": value, "target_key": tk,
                        "full_batch_point": full,
                        "primary": tk == primary and main})
    return out


def matched_effects(rows: list[dict], families: dict, seeds, *, metric: str = "loss",
                    level: float = 0.9) -> list[dict]:
    r"""The width and depth effect on log B_crit **at matched progress**: per family, the
    common within-target slope over every ``metric`` target (each target its own intercept,
    :func:`experiments._fit.fixed_effect_slope`), with a jackknife interval. With ``metric =
    "loss"`` this compares nets at the same training loss, which settles whether a width
    effect is only "measured at an earlier stage" (B_crit grows as the loss falls).

    Returns one dict per family: ``factor`` (width / depth / budget), ``axis``, ``coef``,
    ``ci_low``, ``ci_high``, ``p``, ``targets`` (used), ``points``.
    """
    out = []
    sub = [r for r in rows if r["target_metric"] == metric and r["main_variant"]]
    tks = sorted({r["target_key"] for r in sub})
    for fam, members in families.items():
        groups, used = [], []
        for tk in tks:
            by = {r["arch_id"]: r for r in sub if r["target_key"] == tk}
            g = []
            for aid in members:
                r = by.get(aid)
                if r is not None and _point(r) is not None:
                    g.append((_trend_x(fam, r), *_point(r)))
            if len(g) >= 2:
                groups.append(g)
                used.append(tk)
        n_nets = len({p_[0] for g in groups for p_ in g})  # distinct x values (nets)
        res = slope_with_interval(groups, seeds, level=level) if n_nets >= MIN_TREND_NETS \
            else {"slope": None, "se": None, "ci_low": None, "ci_high": None, "p": None,
                  "nets": 0}
        out.append({"factor": fam, "axis": TREND_AXIS[fam], "matched_on": metric,
                    "coef": res["slope"], "se": res["se"], "ci_low": res["ci_low"],
                    "ci_high": res["ci_high"], "p": res["p"], "targets": used,
                    "points": res["nets"], "level": level})
    return out


def verdict(trend_rows: list[dict]) -> dict:
    """Plain-words verdict on claim C2 from the **primary** trend rows (the primary target,
    with the full-batch point where tried), whose verdicts come from :func:`adjust`.

    Summary: ``"supported"`` when at least one family supports C2 and none contradicts it,
    ``"contradicted"`` in the mirror case, ``"mixed"`` when families disagree, and
    ``"inconclusive"`` when none decides.

    Example:
        >>> verdict([{"family": "width", "verdict": "supported", "slope": 0.4, "primary": True,
        ...           "ci_low": 0.1, "ci_high": 0.7, "axis": "log K", "nets": [1, 2, 3, 4],
        ...           "reason": ""}])["C2"]
        'supported'
    """
    prim = [t for t in trend_rows if t.get("primary", True)]
    votes = [t["verdict"] for t in prim]
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
    for t in prim:
        if t["verdict"] == "inconclusive" and len(prim) > 1:
            continue  # the table lists them; the text names the families that decide
        where = " / ".join(str(t[k]) for k in ("data", "arch", "optimizer", "parametrisation")
                           if k in t)
        slope = ("no slope" if t["slope"] is None else
                 f"slope {t['slope']:+.2f} per {t['axis']}"
                 + ("" if t["ci_low"] is None else
                    f" [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]"))
        parts.append(f"{(where + ', ') if where else ''}{t['family']} family "
                     f"({len(t['nets'])} nets): {t['verdict']} ({slope}; {t.get('reason', '')})")
    text = (f"Claim C2 is **{c2}** by the primary analysis: {sup} of {len(prim)} families "
            f"support it, {con} contradict it, {len(prim) - sup - con} cannot decide after "
            f"the multiple-testing adjustment. " + ". ".join(parts) + ("." if parts else ""))
    return {"C2": c2, "text": text, "supported": sup, "contradicted": con,
            "families": len(prim)}


# --------------------------------------------------------------------------- predictors
PREDICTORS = {
    # name: what it is
    "theory_init": "theory δ·B̄_S+1 at initialisation (ratio of expectations; kind per net)",
    "mc_init": "δ·E[B_S]+1, Monte Carlo over random inits, training loss",
    "run_to_target": "δ·B_S+1 with B_S of the training set averaged along the smallest-batch "
                     "run (each seed's best lr for this target) from step 0 to the target",
    "B_simple_at_target": "McCandlish's B_simple (plug-in, B_S − 1) of the training set at "
                          "the step where that run reaches the target (interpolated in log "
                          "step between power-of-two checkpoints)",
}


def run_predictions(trials: list[dict], metric: str, value: float, *, delta: float = 1.0
                    ) -> dict:
    """``{arch_id: {"run_to_target", "B_simple_at_target"}}`` from the B_S curves of the
    smallest batch size with curves: per seed the trial with the fewest steps to the target,
    its B_S averaged over the checkpoints up to that step, and interpolated at that step
    (log B_S linear in log(1 + step)); then the mean over seeds."""
    by = defaultdict(dict)  # aid -> seed -> (steps, trial)
    m0 = {}
    for t in trials:
        if t.get("B_S_curve") and t["B_S_curve"].get("step"):
            m0[t["arch_id"]] = min(m0.get(t["arch_id"], math.inf), t["batch_size"])
    for t in trials:
        if m0.get(t["arch_id"]) != t["batch_size"]:
            continue
        s = trial_steps(t, metric, value)
        if s is None:
            continue
        cur = by[t["arch_id"]].get(t["seed"])
        if cur is None or s < cur[0]:
            by[t["arch_id"]][t["seed"]] = (s, t)
    out = {}
    for aid, seeds in by.items():
        runs, ats = [], []
        for s, t in seeds.values():
            st = np.asarray(t["B_S_curve"]["step"], np.float64)
            bs = np.asarray([np.nan if v is None else v for v in t["B_S_curve"]["B_S"]])
            ok = np.isfinite(bs) & (bs > 0)
            upto = ok & (st <= s)
            if upto.any():
                runs.append(float(np.mean(bs[upto])))
            if ok.sum() >= 1:
                ats.append(float(np.exp(np.interp(np.log1p(s), np.log1p(st[ok]),
                                                  np.log(bs[ok])))) - 1.0)
        out[aid] = {
            "run_to_target": float(predicted_max_batch(np.mean(runs), delta)) if runs else None,
            "B_simple_at_target": float(np.mean(ats)) if ats else None}
    return out


def predictor_values(rows: list[dict], archs: dict, trials: list[dict], *,
                     delta: float = 1.0) -> None:
    """Add every predictor's value to each net row (in place), for that row's target."""
    cache = {}
    for r in rows:
        key = (r["target_metric"], r["target"])
        if key not in cache:
            cache[key] = run_predictions(trials, *key, delta=delta)
        arch = archs.get(r["arch_id"], {})
        b_init = arch.get("training_loss", {}).get("E_B_S")
        th = arch.get("theory", {})
        run = cache[key].get(r["arch_id"], {})
        r["predicted"] = {
            "theory_init": float(predicted_max_batch(th["B_bar_S"], delta))
            if th.get("covered") else None,
            "mc_init": None if b_init is None else float(predicted_max_batch(b_init, delta)),
            "run_to_target": run.get("run_to_target"),
            "B_simple_at_target": run.get("B_simple_at_target")}
        r["theory_kind"] = th.get("kind")
        r["theory_note"] = None if th.get("covered") else (th.get("reason") or "not covered")


def predictor_table(rows: list[dict], *, smallest_batch: int, n_boot: int = 1000,
                    level: float = 0.9, seed: int = 0) -> list[dict]:
    """Every predictor against the observed critical batch over a set of net rows of ONE
    target (rows from :func:`net_rows` with :func:`predictor_values`).

    Per predictor: ``nets`` (with both values, fit inside the batches tried), ``spearman``
    (predicted vs observed B_crit) with a percentile-bootstrap interval over nets, the ratio
    observed / predicted (``ratio_median``, ``ratio_min``, ``ratio_max``), and
    ``lower_bound_held``: the fraction of nets whose prediction is ≤ the observed largest
    useful batch (Yin et al.'s δ·B_S+1 is a sufficient condition), counted **only over the
    nets where it could fail** (prediction ≥ ``smallest_batch``, the smallest batch tried):
    ``lower_bound_nets`` of them.
    """
    out = []
    for name, what in PREDICTORS.items():
        pairs = [(r["predicted"][name], r["B_crit"], r["observed_max_batch"]) for r in rows
                 if r.get("predicted", {}).get(name) and r.get("B_crit")
                 and not r.get("at_edge")]
        rec = {"predictor": name, "description": what, "nets": len(pairs), "spearman": None,
               "spearman_ci_low": None, "spearman_ci_high": None, "ratio_median": None,
               "ratio_min": None, "ratio_max": None, "lower_bound_held": None,
               "lower_bound_nets": 0, "looseness_median": None}
        if pairs:
            p, b, mb = (np.array(v, np.float64) for v in zip(*[
                (a, c, np.nan if d is None else d) for a, c, d in pairs]))
            ratio = b / p
            rec.update(ratio_median=float(np.median(ratio)), ratio_min=float(ratio.min()),
                       ratio_max=float(ratio.max()))
            can = np.isfinite(mb) & (p >= smallest_batch)
            rec["lower_bound_nets"] = int(can.sum())
            if can.any():
                rec["lower_bound_held"] = float(np.mean(p[can] <= mb[can]))
                rec["looseness_median"] = float(np.median(mb[can] / p[can]))
            if len(pairs) >= 3:
                rec["spearman"] = _nn(spearman(p, b))
                rng = np.random.default_rng(seed)
                boots = []
                for _ in range(max(n_boot, 0)):
                    i = rng.integers(0, len(pairs), len(pairs))
                    v = spearman(p[i], b[i])
                    if np.isfinite(v):
                        boots.append(v)
                if boots:
                    a = (1 - level) / 2
                    rec["spearman_ci_low"] = float(np.quantile(boots, a))
                    rec["spearman_ci_high"] = float(np.quantile(boots, 1 - a))
        out.append(rec)
    return out


def _nn(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def trial_counts(trials: list[dict]) -> dict:
    """{arch_id: {REACHED, UNREACHED, INFEASIBLE, trials}} over every trial of a net."""
    out = defaultdict(lambda: {REACHED: 0, UNREACHED: 0, INFEASIBLE: 0, "trials": 0})
    for t in trials:
        out[t["arch_id"]][t["status"]] += 1
        out[t["arch_id"]]["trials"] += 1
    return dict(out)


# --------------------------------------------------------------------------- the Analysis
@dataclass(eq=False)
class Analysis:
    """Everything one workload folder measures, computed once (:func:`analyse_workload`);
    the report (:mod:`experiments._report`) and the figures (:mod:`experiments._plots`) read
    it and compute nothing of their own.

    ``net_rows``: every net × target × full-batch variant (:func:`net_rows` with the
    predictors); ``rows``: the primary-target main-variant rows, one per net (sorted by depth,
    then width down), with the trial counts and the statistics at initialisation (``E_B_S``,
    ``B_bar_S``, ``theory_B_bar_S``: experiments/README.md, "Vocabulary"); ``table``: the
    studies (:func:`study_table`); ``trends``, ``matched``, ``matched_accuracy``,
    ``predictors``: as in ``analysis.json``; ``verdict`` and ``calibration`` are set by
    :func:`analyse` once the multiple-testing adjustment has run over every row reported.
    """

    out: str
    workload: dict
    archs: dict
    trials: list
    net_rows: list
    rows: list
    table: dict
    families: dict
    trends: list
    matched: list
    matched_accuracy: list
    predictors: list
    studies: list
    seeds: list
    targets: list
    primary: str
    tags: dict
    n_boot: int
    level: float
    verdict: dict | None = None
    calibration: dict | None = None


@dataclass(eq=False)
class SuiteAnalysis:
    """A suite folder's analysis: each workload's :class:`Analysis` (``workloads``: name →
    Analysis, with the suite-wide adjustment), the rows of all of them together, and the
    suite's verdict and calibration."""

    out: str
    suite: dict
    workloads: dict
    missing: list
    references: set
    trends: list
    matched: list
    matched_accuracy: list
    predictors: list
    net_rows: list
    rows: list
    n_boot: int
    level: float
    verdict: dict | None = None
    calibration: dict | None = None
    config: dict = field(default_factory=dict)


def _theory(out, wl, progress):
    """Theory's prediction per net (cached in ``OUT/theory``); "not covered" for every net
    when the training data cannot be loaded again."""
    from ._data import load_data
    from ._plan import specs_of
    from ._predict import cached_predictions

    cfg = wl["config"]
    try:
        ds, _ = load_data(cfg["data"], n=cfg["n"], seed=cfg["data_seed"])
    except ExperimentError as err:
        return {f["arch_id"]: {"covered": False, "reason": f"data unavailable: {err}"}
                for f in wl["family"]}
    return cached_predictions(out, specs_of(wl), ds, wl["loss"], delta=cfg.get("delta", 1.0),
                              progress=progress)


def _tags(out, wl) -> dict:
    cfg = wl["config"]
    return {"workload": os.path.basename(os.path.normpath(out)),
            "data": data_label(cfg["data"]), "loss": wl["loss"], "arch": cfg["arch"],
            "optimizer": cfg.get("optimizer", "sgd"),
            "parametrisation": cfg.get("parametrisation", "standard")}


def _net_row(r: dict, archs: dict, counts: dict) -> dict:
    """A primary-target net row with the net's trial counts and statistics at init."""
    arch = archs.get(r["arch_id"], {})
    c = counts[r["arch_id"]]
    return {**r, "E_B_S": arch.get("training_loss", {}).get("E_B_S"),
            "B_bar_S": arch.get("training_loss", {}).get("B_bar_S"),
            "theory_B_bar_S": arch.get("theory", {}).get("B_bar_S"),
            "trials": c["trials"], "reached": c[REACHED], "unreached": c[UNREACHED],
            "infeasible": c[INFEASIBLE]}


def analyse_workload(out: str, *, n_boot: int | None = None, progress: bool = False,
                     theory: bool = True) -> Analysis:
    """Everything one workload folder measures: net rows per target, trends (unadjusted),
    matched-progress effects and the predictor tables; nothing is written."""
    wl, archs, trials = load_workload_folder(out)
    archs = {aid: init_record(a) for aid, a in archs.items()}
    cfg = wl["config"]
    n_boot = cfg.get("bootstrap", 1000) if n_boot is None else n_boot
    level = cfg.get("level", 0.9)
    delta = cfg.get("delta", 1.0)
    if theory:
        for aid, pred in _theory(out, wl, progress).items():
            archs.setdefault(aid, {})["theory"] = pred
    families = wl.get("families") or {"budget": [f["arch_id"] for f in wl["family"]]}
    seeds = sorted({t["seed"] for t in trials})
    targets = workload_targets(wl)
    primary = target_key(*targets[0])
    tags = _tags(out, wl)
    rows_all = net_rows(trials, targets, n=wl["data"]["n"], level=level,
                        epsilon=cfg.get("epsilon", 1.0))
    predictor_values(rows_all, archs, trials, delta=delta)
    for r in rows_all:
        r["families"] = [f for f, members in families.items() if r["arch_id"] in members]
    counts = trial_counts(trials)
    rows = [_net_row(r, archs, counts) for r in rows_all
            if r["target_key"] == primary and r["main_variant"]]
    rows.sort(key=lambda r: (r["depth"], -(r["width"] or 0)))
    trend_rows = [{**tags, **t} for t in trends(rows_all, families, seeds, level=level,
                                                primary=primary)]
    matched = [{**tags, **m} for m in matched_effects(rows_all, families, seeds, level=level)]
    matched_acc = [{**tags, **m} for m in matched_effects(rows_all, families, seeds,
                                                         metric="accuracy", level=level)]
    m_min = min(t["batch_size"] for t in trials)
    preds = []
    for metric, value in targets:
        sub = [r for r in rows_all if r["target_metric"] == metric and r["target"] == value
               and r["main_variant"]]
        preds += [{**tags, "target_metric": metric, "target": value, **p}
                  for p in predictor_table(sub, smallest_batch=m_min, n_boot=n_boot,
                                           level=level)]
    return Analysis(
        out=out, workload=wl, archs=archs, trials=trials,
        net_rows=[{**tags, "primary_key": primary, **r} for r in rows_all], rows=rows,
        table=study_table(trials), families=families, trends=trend_rows, matched=matched,
        matched_accuracy=matched_acc, predictors=preds, studies=load_studies(out),
        seeds=seeds, targets=targets, primary=primary, tags=tags, n_boot=n_boot,
        level=level)


def adjust_matched(matched: list[dict]) -> None:
    """Holm over the matched-progress rows passed (loss and accuracy together), in place."""
    for m, pa in zip(matched, holm([m["p"] for m in matched])):
        m["p_adjusted"] = pa


def _repeat_rows(repeat: str | None) -> list[dict]:
    """Net rows of a repeat run (a suite folder or one workload), for the calibration."""
    if not repeat:
        return []
    rows = []
    for wdir in workload_folders(repeat):
        rows += analyse_workload(wdir, n_boot=0, theory=False).net_rows
    return rows


def _calibrate(first: list[dict], repeat: list[dict], level: float):
    if not repeat:
        return None
    key = lambda r: (r["workload"], r["arch_id"], r["target_key"], r["full_batch_point"])
    return calibration([{**r, "key": key(r)} for r in first],
                       [{**r, "key": key(r)} for r in repeat], level=level)


def analyse(out: str, *, n_boot: int | None = None, progress: bool = False,
            repeat: str | None = None, reference=()) -> Analysis | SuiteAnalysis:
    """The analysis of a workload folder (an :class:`Analysis`) or of a suite folder, or of
    any folder with ``reference`` workload folders (a :class:`SuiteAnalysis`), adjusted
    (Holm over every trend row and every matched row reported), with its verdict and, given
    a ``repeat`` run, the calibration of its intervals."""
    if not (os.path.exists(os.path.join(out, "suite.json")) or reference):
        a = analyse_workload(out, n_boot=n_boot, progress=progress)
        adjust(a.trends, a.level)
        adjust_matched(a.matched + a.matched_accuracy)
        a.verdict = verdict(a.trends)
        a.calibration = _calibrate(a.net_rows, _repeat_rows(repeat), a.level)
        return a
    suite = read_json(os.path.join(out, "suite.json")) if \
        os.path.exists(os.path.join(out, "suite.json")) else {"workloads": [], "config": {}}
    results, missing = {}, []
    folders = [(name, os.path.join(out, name)) for name in suite["workloads"]]
    folders += [(os.path.basename(os.path.normpath(r)), r) for r in reference]
    for name, wdir in folders:
        if not os.path.exists(os.path.join(wdir, "workload.json")):
            missing.append(name)
            continue
        try:
            results[name] = analyse_workload(wdir, n_boot=n_boot, progress=progress)
        except ExperimentError as err:
            if "no trial records" not in str(err):
                raise
            missing.append(name)
    if not results:
        raise ExperimentError(f"{out}: no workload of the suite has finished a trial yet")
    first = next(iter(results.values()))
    pooled = {k: [x for a in results.values() for x in getattr(a, k)]
              for k in ("trends", "matched", "matched_accuracy", "predictors", "net_rows")}
    adjust(pooled["trends"], first.level)  # Holm over every trend row of the suite
    adjust_matched(pooled["matched"] + pooled["matched_accuracy"])
    for a in results.values():  # each workload's verdict from the suite-wide adjustment
        a.verdict = verdict(a.trends)
    sa = SuiteAnalysis(
        out=out, suite=suite, workloads=results, missing=missing,
        references={os.path.normpath(r) for r in reference}, **pooled,
        rows=[{"workload": n, **r} for n, a in results.items() for r in a.rows],
        n_boot=first.n_boot, level=first.level, config=suite.get("config", {}))
    sa.verdict = verdict(sa.trends)
    sa.calibration = _calibrate(sa.net_rows, _repeat_rows(repeat), sa.level)
    return sa


__all__ = ["fit_critical_batch", "max_useful_batch", "spearman", "study_table",
           "workload_targets", "net_rows", "family_trend", "adjust", "trends",
           "matched_effects", "verdict", "run_predictions", "predictor_values",
           "predictor_table", "trial_counts", "PREDICTORS", "C2_SIGN", "MIN_TREND_NETS",
           "steps_to", "Analysis", "SuiteAnalysis", "analyse_workload", "analyse",
           "adjust_matched"]
