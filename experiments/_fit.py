r"""The critical batch of one net and its uncertainty: McCandlish's fit, per-seed steps to any
target read off the training curves, jackknife-over-seeds intervals, trends across nets,
multiple-testing adjustment and calibration against a repeat.

Every interval here treats the **seeds as independent replicates of the whole protocol**:
seed :math:`s` fixes the initial weights, the batch order *and* its own shift of the
learning-rate grid (``train.lr_jitter``), and the learning rate is chosen per seed and batch
size. So the spread over seeds carries seed noise, the fit residuals and the grid's
resolution together, and a leave-one-seed-out jackknife of any statistic :math:`\theta`
(a net's :math:`\log B_\text{crit}`, a family's slope) estimates its standard error:

.. math::

    \widehat{\mathrm{se}}^2 = \frac{s-1}{s}\sum_{j=1}^{s}\big(\theta_{(j)} - \bar\theta_{(\cdot)}\big)^2,
    \qquad \hat\theta \pm t_{s-1,\,(1+\gamma)/2}\,\widehat{\mathrm{se}},

with :math:`\theta_{(j)}` the statistic recomputed without seed :math:`j` (every net at once,
so correlations between nets through shared seeds are kept). The *reproduction interval*
:math:`\hat\theta \pm t_{s-1}\sqrt2\,\widehat{\mathrm{se}}` is where an independent repeat of
the same protocol should land with probability :math:`\gamma` (both estimates carry the
error); :func:`calibration` counts how often repeats do.
"""

from __future__ import annotations

import math

import numpy as np

EDGE_FACTOR = 2.0  # fits below m_min/2 or above 2·m_max are reported as at an edge


# --------------------------------------------------------------------------- the fit
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
        steps: the steps-to-target :math:`S(m)` (positive; others are ignored).

    Returns:
        dict with ``B_crit``, ``S_min``, ``rmse_log``, ``points`` and ``at_edge`` (``"low"``
        when the fit lies above 2× the largest m — no slowdown from perfect scaling is seen,
        so it is only a lower bound —, ``"high"`` when it lies below half the smallest m —
        even the smallest batch is past the critical batch —, else None). Trends leave edge
        fits out.

    Example:
        >>> m = np.array([8, 16, 32, 64, 128, 256, 512])
        >>> fit = fit_critical_batch(m, 100 * (1 + 64 / m))
        >>> round(fit["B_crit"], 3), round(fit["S_min"], 3)
        (64.0, 100.0)
    """
    m = np.asarray(batch_sizes, np.float64)
    s = np.asarray([np.nan if v is None else v for v in steps], np.float64)
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


# --------------------------------------------------------------------------- targets
def target_key(metric: str, value: float) -> str:
    """A target's name, e.g. ``accuracy:0.8`` or ``loss:1.1``."""
    return f"{metric}:{value:g}"


def steps_to(curve: dict, metric: str, value: float):
    """First evaluation step of a training curve at which ``metric`` reaches ``value``
    (accuracy ≥ value, loss ≤ value); None if it never does.

    Example:
        >>> c = {"step": [0, 10, 20], "loss": [2.3, 1.2, 0.9], "accuracy": [0.1, 0.5, 0.7]}
        >>> steps_to(c, "loss", 1.0), steps_to(c, "accuracy", 0.5), steps_to(c, "accuracy", 0.9)
        (20, 10, None)
    """
    for t, v in zip(curve["step"], curve[metric]):
        if v is not None and (v >= value if metric == "accuracy" else v <= value):
            return int(t)
    return None


def trial_steps(trial: dict, metric: str, value: float):
    """Steps-to-target of one trial for any target: the recorded ``steps_to_target`` for its
    own target, else read off its curve (which runs until the trial stopped)."""
    if metric == trial.get("target_metric") and value == trial.get("target"):
        return trial["steps_to_target"] if trial["status"] == "REACHED" else None
    curve = trial.get("curve")
    return None if not curve else steps_to(curve, metric, value)


def seed_steps(trials: list[dict], metric: str, value: float) -> dict:
    """``{arch_id: {batch: {seed: steps}}}``: each seed's fewest steps to the target over the
    learning rates it tried (its own lr choice); seeds that never reached it are absent."""
    out: dict = {}
    for t in trials:
        s = trial_steps(t, metric, value)
        by_m = out.setdefault(t["arch_id"], {}).setdefault(t["batch_size"], {})
        if s is not None and s > 0:
            by_m[t["seed"]] = min(by_m.get(t["seed"], math.inf), s)
    return out


def pooled_steps(by_m: dict, seeds, *, exclude=()) -> tuple[list, list]:
    """(batch sizes, steps): per batch size the geometric mean over ``seeds`` of their
    steps-to-target, when at least half of those seeds reached it (else the batch size is
    left out); batch sizes in ``exclude`` are left out."""
    ms, ss = [], []
    need = math.ceil(len(seeds) / 2)
    for m in sorted(by_m):
        if m in exclude:
            continue
        vals = [by_m[m][s] for s in seeds if s in by_m[m]]
        if vals and len(vals) >= need:
            ms.append(m)
            ss.append(float(np.exp(np.mean(np.log(vals)))))
    return ms, ss


# --------------------------------------------------------------------------- intervals
def t_quantile(level: float, dof: int) -> float:
    """Two-sided Student-t quantile :math:`t_{dof,(1+level)/2}`.

    Example:
        >>> round(t_quantile(0.9, 4), 3)
        2.132
    """
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, dof))


def t_pvalue(stat: float, dof: int) -> float:
    """Two-sided p-value of a t statistic."""
    from scipy.stats import t

    return float(2 * t.sf(abs(stat), dof))


def jackknife(theta_full: float, theta_loo) -> float | None:
    """Jackknife standard error from the leave-one-out values (None if any is missing)."""
    v = [x for x in theta_loo]
    if len(v) < 2 or any(x is None or not math.isfinite(x) for x in v):
        return None
    v = np.asarray(v, np.float64)
    s = v.size
    return float(math.sqrt((s - 1) / s * np.sum((v - v.mean()) ** 2)))


def log_bcrit(by_m: dict, seeds, *, exclude=()) -> tuple[float | None, dict]:
    """log B_crit of the pooled steps of ``seeds`` and the fit (None when not fitted)."""
    f = fit_critical_batch(*pooled_steps(by_m, seeds, exclude=exclude))
    return (None if f["B_crit"] is None else math.log(f["B_crit"])), f


def net_interval(by_m: dict, seeds, *, level: float = 0.9, exclude=()) -> dict:
    """B_crit of one net at one target with its jackknife-over-seeds interval.

    Returns ``B_crit``, ``ci_low``, ``ci_high`` (level ``level``), ``repro_low``,
    ``repro_high`` (the reproduction interval), ``se_log`` (standard error of log B_crit),
    ``loo`` ({seed: log B_crit without that seed}), the fit's ``S_min``, ``rmse_log``,
    ``at_edge``, ``points`` and ``seeds``.
    """
    seeds = list(seeds)
    theta, fit = log_bcrit(by_m, seeds, exclude=exclude)
    loo = {}
    for j in seeds:
        loo[j] = log_bcrit(by_m, [s for s in seeds if s != j], exclude=exclude)[0]
    se = jackknife(theta, list(loo.values())) if theta is not None else None
    out = {"B_crit": fit["B_crit"], "S_min": fit["S_min"], "rmse_log": fit["rmse_log"],
           "at_edge": fit["at_edge"], "points": fit["points"], "seeds": len(seeds),
           "se_log": se, "ci_low": None, "ci_high": None, "repro_low": None,
           "repro_high": None, "loo": loo}
    if se is not None and len(seeds) >= 2:
        q = t_quantile(level, len(seeds) - 1)
        out.update(ci_low=math.exp(theta - q * se), ci_high=math.exp(theta + q * se),
                   repro_low=math.exp(theta - q * math.sqrt(2) * se),
                   repro_high=math.exp(theta + q * math.sqrt(2) * se))
    return out


def _ols_slope(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def fixed_effect_slope(groups) -> float | None:
    r"""Common slope of y on x across groups, each group with its own intercept:
    :math:`\sum_g\sum_i (x_{gi}-\bar x_g)(y_{gi}-\bar y_g) / \sum_g\sum_i (x_{gi}-\bar x_g)^2`.
    ``groups``: a list of (x list, y list); groups with fewer than 2 points add nothing.

    Example:
        >>> fixed_effect_slope([([0, 1], [5, 7]), ([0, 1, 2], [0, 2, 4])])
        2.0
    """
    num = den = 0.0
    for x, y in groups:
        if len(x) < 2:
            continue
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        xc = x - x.mean()
        num += float(xc @ (y - y.mean()))
        den += float(xc @ xc)
    return num / den if den > 0 else None


def slope_with_interval(points, seeds, *, level: float = 0.9) -> dict:
    """Slope of log B_crit against x over groups of nets, with a jackknife interval.

    Args:
        points: list of groups; each group a list of ``(x, theta, loo)`` with ``theta`` the
            net's log B_crit and ``loo`` its {seed: leave-one-out log B_crit}. One group is
            one target (a family's slope at that target); several groups give the common
            within-target slope (:func:`fixed_effect_slope`: the effect at matched targets).
        seeds: the seeds (replicates) shared by every net.

    Returns:
        ``slope``, ``se``, ``ci_low``, ``ci_high``, ``t``, ``p`` (two-sided, Student t with
        seeds − 1 degrees of freedom), ``dof``, ``nets`` (points used).
    """
    seeds = list(seeds)
    groups = [[p for p in g if p[1] is not None] for g in points]
    full = fixed_effect_slope([([p[0] for p in g], [p[1] for p in g]) for g in groups])
    out = {"slope": full, "se": None, "ci_low": None, "ci_high": None, "t": None, "p": None,
           "dof": len(seeds) - 1, "nets": sum(len(g) for g in groups if len(g) >= 2)}
    if full is None or len(seeds) < 2:
        return out
    loo = []
    for j in seeds:
        v = fixed_effect_slope([([p[0] for p in g], [p[2].get(j) for p in g]) for g in groups
                                if all(p[2].get(j) is not None for p in g)])
        loo.append(v)
    se = jackknife(full, loo)
    if se is None:
        return out
    q = t_quantile(level, len(seeds) - 1)
    out.update(se=se, ci_low=full - q * se, ci_high=full + q * se)
    if se > 0:
        out["t"] = full / se
        out["p"] = t_pvalue(full / se, len(seeds) - 1)
    else:
        out["t"], out["p"] = math.copysign(math.inf, full), 0.0
    return out


# --------------------------------------------------------------------------- many tests
def holm(pvalues) -> list:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence);
    None entries stay None and do not count as tests.

    Example:
        >>> holm([0.01, 0.04, None, 0.03])
        [0.03, 0.06, None, 0.06]
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    k = len(order)
    out = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * pvalues[i]))
        out[i] = round(running, 15)
    return out


def benjamini_hochberg(pvalues) -> list:
    """Benjamini–Hochberg adjusted p-values (q-values; false-discovery-rate control);
    None entries stay None.

    Example:
        >>> benjamini_hochberg([0.01, 0.04, None, 0.03])
        [0.03, 0.04, None, 0.04]
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i], reverse=True)
    k = len(order)
    out = [None] * len(pvalues)
    running = 1.0
    for r, i in enumerate(order):
        rank = k - r
        running = min(running, pvalues[i] * k / rank)
        out[i] = round(running, 15)
    return out


# --------------------------------------------------------------------------- calibration
def calibration(first: list[dict], repeat: list[dict], *, level: float = 0.9) -> dict:
    """How often an independent repeat lands inside the first measurement's intervals.

    ``first`` and ``repeat``: per-net rows with a ``key`` (what identifies the same net and
    target), ``B_crit``, ``repro_low``/``repro_high`` and ``ci_low``/``ci_high``. A pair
    counts when the first has an interval and both have a B_crit fitted inside the batches
    tried.

    Returns ``{nominal, coverage, pairs, nets, ci_coverage, ci_expected}``: ``coverage`` is
    the fraction of repeats inside the first's reproduction interval (right intervals give
    ≈ ``nominal``); ``ci_coverage`` the fraction inside its confidence interval, which even
    for exact intervals is only ``ci_expected`` (both measurements are noisy: for a normal
    estimate with a known error, :math:`2\\Phi(z/\\sqrt2) - 1`, e.g. 0.75 at 90%).
    """
    rep = {r["key"]: r for r in repeat}
    pairs = inside = inside_ci = 0
    nets = set()
    for r in first:
        q = rep.get(r["key"])
        if q is None or r.get("repro_low") is None or r.get("at_edge") or q.get("at_edge") \
                or r.get("B_crit") is None or q.get("B_crit") is None:
            continue
        pairs += 1
        nets.add(r["key"][:2] if isinstance(r["key"], tuple) else r["key"])
        inside += r["repro_low"] <= q["B_crit"] <= r["repro_high"]
        inside_ci += r["ci_low"] <= q["B_crit"] <= r["ci_high"]
    from scipy.stats import norm

    z = norm.ppf((1 + level) / 2)
    return {"nominal": level, "coverage": inside / pairs if pairs else None, "pairs": pairs,
            "nets": len(nets), "ci_coverage": inside_ci / pairs if pairs else None,
            "ci_expected": float(2 * norm.cdf(z / math.sqrt(2)) - 1)}


__all__ = ["fit_critical_batch", "target_key", "steps_to", "trial_steps", "seed_steps",
           "pooled_steps", "t_quantile", "t_pvalue", "jackknife", "log_bcrit", "net_interval",
           "fixed_effect_slope", "slope_with_interval", "holm", "benjamini_hochberg",
           "calibration", "EDGE_FACTOR"]
