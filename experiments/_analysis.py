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

_GOLDEN = (math.sqrt(5) - 1) / 2


# --------------------------------------------------------------------------- fit
def _sse(logB, m, logS):
    pred = np.log1p(np.exp(logB) / m)
    log_smin = np.mean(logS - pred)
    r = logS - log_smin - pred
    return float(r @ r), float(np.exp(log_smin))


def fit_critical_batch(batch_sizes, steps) -> dict:
    r"""Least-squares fit of :math:`\log S(m) = \log S_\min + \log(1 + B_\text{crit}/m)`.

    Args:
        batch_sizes: the m values (at least 3 distinct ones: two parameters are fitted, and
            two points would fit exactly whatever the data).
        steps: the steps-to-target :math:`S(m)` (positive).

    Returns:
        dict with ``B_crit``, ``S_min``, ``rmse_log`` and ``at_edge`` (``"low"`` when the data
        show no slowdown from perfect scaling even at the largest m' — the fit is then only a
        lower bound — , ``"high"`` when even the smallest batch is past the critical batch,
        else None).

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
    errs = [_sse(g, m, logS)[0] for g in grid]
    i = int(np.argmin(errs))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    for _ in range(80):  # golden-section refinement on [a, b]
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        if _sse(c, m, logS)[0] < _sse(d, m, logS)[0]:
            b = d
        else:
            a = c
    logB = 0.5 * (a + b)
    sse, smin = _sse(logB, m, logS)
    edge = None
    if logB > math.log(m.max() * 100):
        edge = "low"  # perfect scaling throughout: B_crit beyond the batches tried
    elif logB < math.log(m.min() / 100):
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


def bootstrap_fit(studies: dict, n_boot: int = 1000, *, seed: int = 0, level: float = 0.9):
    """Percentile interval of B_crit resampling seeds with replacement (lr choice redone).

    Returns ``(lo, hi, n_valid)``; None bounds when fewer than 3 batch sizes can be fitted in
    most resamples. With s seeds there are only C(2s-1, s) distinct resamples (3 for 2 seeds),
    so the interval is coarse; it is reported as such.
    """
    if n_boot <= 0:
        return None, None, 0
    seeds = sorted({s for st in studies.values() for v in st["steps_by_lr_seed"].values()
                    for s in v})
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        pick = list(rng.choice(seeds, size=len(seeds), replace=True))
        ms, ss = [], []
        for m, st in studies.items():
            _, s = _best_lr(st["steps_by_lr_seed"], pick)
            if s is not None:
                ms.append(m)
                ss.append(s)
        f = fit_critical_batch(ms, ss)
        if f["B_crit"] is not None:
            vals.append(f["B_crit"])
    if len(vals) < n_boot / 2:
        return None, None, len(vals)
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)), len(vals)


def analyse(trials: list[dict], archs: dict, *, epsilon: float = 1.0, delta: float = 1.0,
            n_boot: int = 1000) -> list[dict]:
    """One row per architecture: observed B_crit (with bootstrap interval), observed max useful
    batch, predicted max batch (init, along the run, theory) and the counts of trial states."""
    table = study_table(trials)
    rows = []
    for aid, studies in table.items():
        t0 = next(t for t in trials if t["arch_id"] == aid)
        ms = sorted(studies)
        steps = [studies[m]["steps"] for m in ms]
        fit = fit_critical_batch(ms, [np.nan if s is None else s for s in steps])
        lo, hi, _ = bootstrap_fit(studies, n_boot)
        mub = max_useful_batch(ms, [np.nan if studies[m]["epochs"] is None
                                    else studies[m]["epochs"] for m in ms], epsilon)
        arch = archs.get(aid, {})
        init = arch.get("training_loss", {})
        b_init = init.get("E_B_S")
        # B_S averaged along the best run at the smallest batch size that reached the target
        b_run = None
        for m in ms:
            st = studies[m]
            if st["best_lr"] is None:
                continue
            runs = [t.get("B_S_run_mean") for t in trials if t["arch_id"] == aid
                    and t["batch_size"] == m and t["lr"] == st["best_lr"]
                    and t.get("B_S_run_mean") is not None]
            if runs:
                b_run = float(np.mean(runs))
                break
        th = arch.get("theory", {})
        theory_pred = None
        if th.get("covered") and th.get("training_loss_covered"):
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
            "theory_B_S_squared": th.get("batch_size_bound"),
            "theory_kind": th.get("kind"),
            "predicted_max_batch_theory": theory_pred,
            "theory_note": (None if theory_pred is not None else
                            th.get("training_loss_note") or th.get("reason") or "not covered"),
            "trials": sum(studies[m][REACHED] + studies[m][UNREACHED] + studies[m][INFEASIBLE]
                          for m in ms),
            "reached": sum(studies[m][REACHED] for m in ms),
            "unreached": sum(studies[m][UNREACHED] for m in ms),
            "infeasible": sum(studies[m][INFEASIBLE] for m in ms),
            "lr_at_edge": [m for m in ms if studies[m]["lr_at_edge"]],
        })
    rows.sort(key=lambda r: (r["depth"], -(r["width"] or 0)))
    return rows


def verdict(rows: list[dict]) -> dict:
    """Plain-words verdict on claim C2 for this workload, and the prediction check.

    C2 says: at a fixed parameter budget, wider (hence shallower) nets train with larger
    batches without slowing down, unlike deeper ones. It is *supported* when the observed
    critical batch and the largest useful batch both rise with width (Spearman > 0) and the
    widest net's bootstrap interval lies above the narrowest's; *not supported* when neither
    measure rises with width; otherwise (mixed evidence, or overlapping intervals)
    *inconclusive*.
    """
    fitted = [r for r in rows if r["observed_B_crit"] is not None and r["width"]]
    if len(fitted) < 2:
        return {"C2": "inconclusive", "text": "Fewer than two architectures gave a fitted "
                "critical batch, so the width ordering cannot be judged.",
                "rho_width_Bcrit": None, "rho_width_maxbatch": None,
                "rho_pred_obs_Bcrit": None, "rho_pred_obs_maxbatch": None}
    w = [r["width"] for r in fitted]
    bc = [r["observed_B_crit"] for r in fitted]
    mb = [np.nan if r["observed_max_batch"] is None else r["observed_max_batch"] for r in fitted]
    pred = [np.nan if r["predicted_max_batch"] is None else r["predicted_max_batch"]
            for r in fitted]
    rho_b, rho_m = spearman(w, bc), spearman(w, mb)
    rho_pb, rho_pm = spearman(pred, bc), spearman(pred, mb)
    wide = max(fitted, key=lambda r: r["width"])
    narrow = min(fitted, key=lambda r: r["width"])
    separated = (wide["B_crit_lo"] is not None and narrow["B_crit_hi"] is not None
                 and wide["B_crit_lo"] > narrow["B_crit_hi"])
    if rho_b > 0 and (rho_m > 0 or np.isnan(rho_m)) and separated:
        c2 = "supported"
    elif not rho_b > 0 and not rho_m > 0:
        c2 = "not supported"
    else:
        c2 = "inconclusive"
    desc = "; ".join(f"depth {r['depth']} / width {r['width']}: B_crit ≈ "
                     f"{r['observed_B_crit']:.3g}" + (
                         f" [{r['B_crit_lo']:.3g}, {r['B_crit_hi']:.3g}]"
                         if r["B_crit_lo"] is not None else "")
                     + f", largest useful batch {r['observed_max_batch']}"
                     + ("+" if r["max_batch_lower_bound"] else "")
                     for r in fitted)
    trend = {True: "rises", False: "falls"}
    text = (f"Claim C2 is **{c2}** for this workload. Observed: {desc}. Across the "
            f"{len(fitted)} nets of one parameter budget the critical batch "
            f"{'shows no trend' if np.isnan(rho_b) or rho_b == 0 else trend[rho_b > 0]} with "
            f"width (Spearman ρ = {_fmt(rho_b)}) and the largest useful batch "
            f"{'shows no trend' if np.isnan(rho_m) or rho_m == 0 else trend[rho_m > 0]} with "
            f"width (ρ = {_fmt(rho_m)})")
    if c2 != "supported" and rho_b > 0:
        text += ("; the direction agrees with C2 but the bootstrap intervals of the widest and "
                 "narrowest nets overlap" if not separated else "")
    text += (f". Gradient diversity's prediction δ·B_S+1 at initialisation ranks the nets "
             f"with Spearman ρ = {_fmt(rho_pb)} against the observed critical batch and "
             f"ρ = {_fmt(rho_pm)} against the largest useful batch. With {len(fitted)} "
             f"architectures a rank correlation can only take a few values and is not "
             f"statistically meaningful on its own.")
    return {"C2": c2, "text": text, "rho_width_Bcrit": _nn(rho_b),
            "rho_width_maxbatch": _nn(rho_m), "rho_pred_obs_Bcrit": _nn(rho_pb),
            "rho_pred_obs_maxbatch": _nn(rho_pm)}


def _nn(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.2f}"


__all__ = ["fit_critical_batch", "max_useful_batch", "spearman", "study_table",
           "bootstrap_fit", "analyse", "verdict"]
