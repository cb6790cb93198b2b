"""Figures of a sweep, drawn from its :class:`~experiments._analysis.Analysis` (nothing is
recomputed here). Every plot function draws on a matplotlib ``ax`` it is given (and returns
it); :func:`workload_figures` and :func:`suite_figures` write a folder's figures as PNG and PDF
through :func:`numerics._plot.save` (the toolkit's one save helper). Uses only long-stable
matplotlib API (``set_xscale("log", base=2)``, no removed keywords)."""

from __future__ import annotations

import os

import numpy as np

from numerics._plot import save

from ._analysis import PREDICTORS

_MARKERS = "osD^v<>ph*"


def _color(i):
    return f"C{int(i) % 10}"


def _legend(ax, size):
    """A legend when something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)


def _identity_axes(ax, vals) -> bool:
    """Log2 axes and the y = x line over the positive ``vals``; False when there are none."""
    vals = [v for v in vals if v and v > 0]
    if not vals:
        return False
    lo, hi = min(vals) / 2, max(vals) * 2
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    return True


def _log_y(ax):
    """Log y axis with readable ticks at 1, 1.5, 2, 3, 5, 7 × 10^k (a base-2 axis over a
    factor of 2–3 would show a single tick)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _label(row_or_trial) -> str:
    return f"L={row_or_trial['depth']}, K={row_or_trial['width']}"


def _members(a, members):
    return set(a.table) if members is None else set(members)


def plot_steps_vs_batch(ax, a, members=None, *, epochs: bool = False):
    """Steps-to-target (or epochs-to-target) vs batch size for every net of ``a`` (an
    :class:`~experiments._analysis.Analysis`; ``members``: only these arch ids), log2 axes:
    best-lr mean (line), per-seed values at the best lr (small dots), the fitted
    S_min(1 + B_crit/m) (dashed) and perfect scaling from the smallest batch (dotted)."""
    keep = _members(a, members)
    table = {aid: v for aid, v in a.table.items() if aid in keep}
    fits = {r["arch_id"]: r for r in a.rows if r["arch_id"] in keep}
    n = a.workload["data"]["n"]
    order = sorted(table, key=lambda a: (fits.get(a, {}).get("depth", 0), a))
    for i, aid in enumerate(order):
        studies = table[aid]
        ms = np.array(sorted(m for m in studies if studies[m]["steps"] is not None), float)
        if ms.size == 0:
            continue
        s = np.array([studies[int(m)]["steps"] for m in ms])
        conv = (ms / n) if epochs else np.ones_like(ms)
        row = fits.get(aid, {"depth": "?", "width": "?"})
        c = _color(i)
        ax.plot(ms, s * conv, marker=_MARKERS[i % len(_MARKERS)], color=c, label=_label(row))
        for m in ms:
            for v in studies[int(m)]["seed_steps"].values():
                ax.plot([m], [v * (m / n if epochs else 1)], ".", color=c, alpha=0.4, ms=4)
        mm = np.geomspace(ms.min(), ms.max(), 100)
        if row.get("B_crit"):
            fit = row["S_min"] * (1 + row["B_crit"] / mm)
            ax.plot(mm, fit * ((mm / n) if epochs else 1), "--", color=c, lw=1)
        perfect = s[0] * ms[0] / mm
        ax.plot(mm, perfect * ((mm / n) if epochs else 1), ":", color=c, lw=1)
    if not ax.lines:
        ax.text(0.5, 0.5, "no study reached the target", ha="center", transform=ax.transAxes)
        return ax
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2 if not epochs else 10)
    ax.set_xlabel("batch size m")
    ax.set_ylabel("epochs to target" if epochs else "steps to target (best lr)")
    ax.set_title(("epochs" if epochs else "steps") + " to target vs batch size "
                 "(dotted: perfect scaling, dashed: fit)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 8)
    return ax


def plot_predicted_vs_observed(ax, rows):
    """Predicted maximum batch δ·E[B_S]+1 (Monte Carlo at initialisation; open triangles:
    δ·B_S+1 averaged along the small-batch run) against the observed critical batch (with
    its jackknife interval) and the largest useful batch (open squares), log axes, with the
    y = x line. ``rows``: an Analysis' ``rows``."""
    vals = []
    for i, r in enumerate(rows):
        c = _color(i)
        p, pr = r["predicted"].get("mc_init"), r["predicted"].get("run_to_target")
        b = r.get("B_crit")
        if p and b:
            lo, hi = r.get("ci_low"), r.get("ci_high")
            yerr = None if lo is None else [[max(b - lo, 0)], [max(hi - b, 0)]]
            ax.errorbar([p], [b], yerr=yerr, fmt="o", color=c, capsize=3,
                        label=f"{_label(r)}: B_crit")
            vals += [p, b] + ([lo, hi] if lo is not None else [])
        if p and r.get("observed_max_batch"):
            ax.plot([p], [r["observed_max_batch"]], "s", color=c, mfc="none",
                    label=f"{_label(r)}: largest useful m")
            vals += [r["observed_max_batch"]]
        if pr and b:
            ax.plot([pr], [b], "^", color=c, mfc="none", label=f"{_label(r)}: B_S along run")
            vals += [pr]
    _identity_axes(ax, vals)
    ax.set_xlabel("predicted max batch  δ·B_S + 1")
    ax.set_ylabel("observed")
    ax.set_title("predicted vs observed critical batch")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 7)
    return ax


def plot_bs_along_training(ax, a):
    """B_S of the training set along training: per net of ``a`` (an Analysis), the best-lr
    trials at the smallest batch size that reached the target (one line per seed)."""
    table, trials, rows = a.table, a.trials, a.rows
    order = sorted(table, key=lambda a: next((r["depth"] for r in rows if r["arch_id"] == a), 0))
    for i, aid in enumerate(order):
        studies = table[aid]
        m = next((m for m in sorted(studies) if studies[m]["best_lr"] is not None), None)
        if m is None:
            continue
        lr = studies[m]["best_lr"]
        c = _color(i)
        first = True
        for t in trials:
            if t["arch_id"] == aid and t["batch_size"] == m and t["lr"] == lr:
                st = np.array(t["B_S_curve"]["step"], float)
                bs = np.array([np.nan if v is None else v for v in t["B_S_curve"]["B_S"]])
                ax.plot(np.maximum(st, 0.5), bs, "-o", ms=3, color=c,
                        label=f"L={t['depth']}, K={t['width']} (m={m}, lr={lr:g})"
                        if first else None)
                first = False
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("step (step 0 drawn at 1/2)")
    ax.set_ylabel("B_S of the training set")
    ax.set_title("gradient diversity bound along training")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 8)
    return ax


def plot_theory_mc_training(ax, rows, archs, loss: str = "squared"):
    """For the parameter-budget family, against depth: theory's B̄_S for the training loss
    (where covered), the Monte Carlo E[B_S] over random inits for the training loss, the
    Monte Carlo B̄_S and E[B_S] for the squared loss on the same data (labelled as a
    reference when the training loss is another one), and the observed critical batch.
    ``rows``: Analysis rows of the family; ``archs``: the Analysis' ``archs``."""
    rows = sorted(rows, key=lambda r: r["depth"])
    d = np.array([r["depth"] for r in rows], float)

    def get(path):
        out = []
        for r in rows:
            v = archs.get(r["arch_id"], {})
            for k in path:
                v = v.get(k, {}) if isinstance(v, dict) else {}
            out.append(v if isinstance(v, (int, float)) else np.nan)
        return np.array(out, float)

    sq = ("squared loss" if loss == "squared" else
          "squared loss on the one-hot targets: a reference, not the training loss")
    series = [
        (get(["theory", "B_bar_S"]), "s-", r"theory $\bar{B}_S$ (training loss)"),
        (get(["training_loss", "E_B_S"]), "^-", "Monte Carlo E[B_S] (training loss)"),
        (get(["squared_loss", "B_bar_S"]), "o--", rf"Monte Carlo $\bar{{B}}_S$ ({sq})"),
        (get(["squared_loss", "E_B_S"]), "o:", f"Monte Carlo E[B_S] ({sq})"),
        (np.array([np.nan if r["B_crit"] is None else r["B_crit"] for r in rows]), "D-",
         "training: observed B_crit"),
    ]
    for i, (v, style, label) in enumerate(series):
        if np.isfinite(v).any():
            ax.plot(d, v, style, label=label, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xticks(d)
    ax.set_xticklabels([f"L={r['depth']}\nK={r['width']}" for r in rows])
    ax.set_xlabel("depth / width at a fixed parameter budget")
    ax.set_ylabel("batch size")
    ax.set_title("theory vs Monte Carlo vs training (same family)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # below the axes: no data point is covered
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
    return ax


def plot_bcrit_trend(ax, rows, members, family: str, trend: dict | None = None):
    """Observed B_crit (with its jackknife interval) of one family's nets against width
    (``family = "width"``, log2 axis) or depth (``"depth"``, ``"budget"``); the fitted
    log-linear trend (dashed) and its slope interval in the legend."""
    by = {r["arch_id"]: r for r in rows}
    pts = [by[a] for a in members if a in by and by[a].get("B_crit")]
    xs = np.array([r["width"] if family == "width" else r["depth"] for r in pts], float)
    edges = False
    for r, x in zip(pts, xs):
        b, lo, hi = r["B_crit"], r.get("ci_low"), r.get("ci_high")
        yerr = None if lo is None else [[max(b - lo, 0)], [max(hi - b, 0)]]
        edge = bool(r.get("at_edge"))
        edges |= edge
        ax.errorbar([x], [b], yerr=yerr, fmt="o", mfc="none" if edge else None, color="C0",
                    capsize=3)
        if r.get("observed_max_batch"):
            ax.plot([x], [r["observed_max_batch"]], "s", color="C1", mfc="none")
    ax.plot([], [], "o", color="C0", label="observed B_crit (jackknife interval)")
    if edges:  # explain open circles only where one is drawn
        ax.plot([], [], "o", color="C0", mfc="none", label="B_crit fitted beyond the batches "
                "tried (not in the trend)")
    ax.plot([], [], "s", color="C1", mfc="none", label="largest useful batch")
    if trend and trend.get("slope") is not None and len(xs) >= 2:
        used = [by[a] for a in trend["nets"] if a in by]
        ux = np.array([r["width"] if family == "width" else r["depth"] for r in used], float)
        uy = np.log([r["B_crit"] for r in used])
        t = np.log(ux) if family == "width" else ux
        mid = uy.mean() - trend["slope"] * t.mean()
        grid = np.linspace(t.min(), t.max(), 50)
        gx = np.exp(grid) if family == "width" else grid
        ci = ("" if trend.get("ci_low") is None else
              f" [{trend['ci_low']:+.2f}, {trend['ci_high']:+.2f}]")
        ax.plot(gx, np.exp(mid + trend["slope"] * grid), "--", color="C0",
                label=f"slope {trend['slope']:+.2f}{ci} per {trend['axis']}: "
                      f"{trend['verdict']}")
    if pts:
        if family == "width":
            ax.set_xscale("log", base=2)
        _log_y(ax)
    else:
        ax.text(0.5, 0.5, "no net of this family has a fitted B_crit", ha="center",
                transform=ax.transAxes)
    ax.set_xlabel({"width": "width K", "depth": "depth L",
                   "budget": "depth L (fixed parameter budget)"}[family])
    ax.set_ylabel("batch size")
    ax.set_title(f"{family} family: observed critical batch")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 7)
    return ax


def plot_bcrit_vs_progress(ax, net_rows, members, metric: str = "loss"):
    """B_crit (with its jackknife interval; open markers: fit beyond the batches tried)
    against the training-``metric`` target at which it is measured, one line per net of a
    family: does the critical batch depend on the stage of training alone, or on the net?"""
    drawn = False
    for i, aid in enumerate(members):
        rs = sorted([r for r in net_rows if r["arch_id"] == aid and r["main_variant"]
                     and r["target_metric"] == metric and r["B_crit"]],
                    key=lambda r: r["target"])
        if not rs:
            continue
        x = np.array([r["target"] for r in rs], float)
        y = np.array([r["B_crit"] for r in rs], float)
        c = _color(i)
        ax.plot(x, y, "-", color=c, label=_label(rs[0]))
        for r in rs:
            lo, hi = r.get("ci_low"), r.get("ci_high")
            yerr = None if lo is None else [[max(r["B_crit"] - lo, 0)],
                                            [max(hi - r["B_crit"], 0)]]
            ax.errorbar([r["target"]], [r["B_crit"]], yerr=yerr, fmt="o", color=c,
                        mfc="none" if r["at_edge"] else c, capsize=2, ms=4)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, f"no {metric} target with a fitted B_crit", ha="center",
                transform=ax.transAxes)
        return ax
    _log_y(ax)
    if metric == "loss":
        ax.invert_xaxis()  # training progresses to the right
    ax.set_xlabel(f"training {metric} at which B_crit is measured"
                  + (" (falls to the right)" if metric == "loss" else ""))
    ax.set_ylabel("critical batch B_crit")
    ax.set_title(f"B_crit along training ({metric} targets)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 7)
    return ax


def plot_predictor(ax, rows, name: str):
    """Predictor ``name`` (a key of :data:`experiments._analysis.PREDICTORS`) against the
    observed B_crit (circles, with interval) and the largest useful batch (open squares) for
    every net row, log-log, with y = x."""
    vals = []
    for r in rows:
        p, b = r["predicted"].get(name), r.get("B_crit")
        if not p or not b or r.get("at_edge"):
            continue
        lo, hi = r.get("ci_low"), r.get("ci_high")
        yerr = None if lo is None else [[max(b - lo, 0)], [max(hi - b, 0)]]
        c = "C0" if r.get("arch") == "fc" else "C3"
        ax.errorbar([p], [b], yerr=yerr, fmt="o", color=c, capsize=2, ms=4)
        if r.get("observed_max_batch"):
            ax.plot([p], [r["observed_max_batch"]], "s", color=c, mfc="none", ms=4)
            vals.append(r["observed_max_batch"])
        vals += [p, b]
    ax.plot([], [], "o", color="C0", label="fc: B_crit")
    ax.plot([], [], "o", color="C3", label="residual: B_crit")
    ax.plot([], [], "s", color="k", mfc="none", label="largest useful batch")
    if not _identity_axes(ax, vals):
        ax.text(0.5, 0.5, "no net has this prediction\n(not covered)", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel(f"predicted: {name}")
    ax.set_ylabel("observed")
    ax.set_title(name)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, 7)
    return ax


# --------------------------------------------------------------------------- files
def figure(fig_dir, name, draw, size=(6.5, 4.5), ncols: int = 1, title: str = ""):
    """Draw one figure (``draw(ax)``, or ``draw(axes)`` for ``ncols > 1``) with the Agg
    backend and save it as PNG and PDF (:func:`numerics._plot.save`); returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, ncols, figsize=size)
    try:
        draw(ax)
        if title:
            fig.suptitle(title)
        return save(fig, os.path.join(fig_dir, name))[0]
    finally:
        plt.close(fig)


def workload_figures(a) -> list[str]:
    """The figures of one workload folder (``a``: its Analysis) under ``a.out/figures``."""
    fig_dir = os.path.join(a.out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    prim = [t for t in a.trends if t["primary"]]
    for fam, members in a.families.items():
        suffix = "" if len(a.families) == 1 else f"_{fam}"
        made.append(figure(fig_dir, f"steps_vs_batch{suffix}",
                           lambda ax: plot_steps_vs_batch(ax, a, members)))
        made.append(figure(fig_dir, f"epochs_vs_batch{suffix}",
                           lambda ax: plot_steps_vs_batch(ax, a, members, epochs=True)))
        trend = next((t for t in prim if t["family"] == fam), None)
        made.append(figure(fig_dir, f"bcrit_vs_{'width' if fam == 'width' else 'depth'}"
                           + ("" if fam != "budget" else "_budget"),
                           lambda ax: plot_bcrit_trend(ax, a.rows, members, fam, trend)))
        made.append(figure(fig_dir, f"bcrit_vs_progress{suffix}",
                           lambda axes: [plot_bcrit_vs_progress(ax, a.net_rows, members, metric)
                                         for ax, metric in zip(axes, ("loss", "accuracy"))],
                           (11, 4.2), ncols=2, title=f"{fam} family: critical batch "
                           "along training (jackknife interval)"))
    made.append(figure(fig_dir, "predicted_vs_observed",
                       lambda ax: plot_predicted_vs_observed(ax, a.rows), (6.5, 5)))
    made.append(figure(fig_dir, "bs_along_training", lambda ax: plot_bs_along_training(ax, a)))
    budget = [r for r in a.rows if r["arch_id"] in a.families.get("budget", [])]
    if budget:
        made.append(figure(fig_dir, "theory_mc_training",
                           lambda ax: plot_theory_mc_training(ax, budget, a.archs,
                                                              a.workload["loss"])))
    return made


def suite_figures(sa) -> list[str]:
    """The suite's figures (``sa``: its SuiteAnalysis): every predictor against the observed
    critical batch at the primary target, one figure per data × loss × optimizer ×
    parametrisation."""
    fig_dir = os.path.join(sa.out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    groups = {}
    for r in sa.net_rows:
        if r["main_variant"] and r["target_key"] == r["primary_key"]:
            groups.setdefault((r["data"], r["loss"], r["optimizer"], r["parametrisation"]),
                              []).append(r)
    for (data, loss, opt, par), rows in groups.items():
        def draw(axes, rows=rows):
            for ax, name in zip(axes, PREDICTORS):
                plot_predictor(ax, rows, name)

        tag = f"{data}-{loss}" + ("" if (opt, par) == ("sgd", "standard") else f"-{opt}-{par}")
        made.append(figure(fig_dir, f"predictors_{tag}", draw,
                           (4.2 * len(PREDICTORS), 4.2), ncols=len(PREDICTORS),
                           title=f"{tag}: predicted vs observed at the primary target"))
    return made


__all__ = ["plot_bcrit_vs_progress", "plot_steps_vs_batch", "plot_predicted_vs_observed",
           "plot_bs_along_training", "plot_theory_mc_training", "plot_bcrit_trend",
           "plot_predictor", "figure", "workload_figures", "suite_figures", "save"]
