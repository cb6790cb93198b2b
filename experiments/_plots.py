"""Figures of a sweep. Every plot function draws on a matplotlib ``ax`` it is given (and
returns it); :func:`save` writes a figure as PNG and PDF. Uses only long-stable matplotlib API
(``set_xscale("log", base=2)``, no removed keywords)."""

from __future__ import annotations

import numpy as np

from ._analysis import study_table

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


def plot_steps_vs_batch(ax, trials, rows, *, epochs: bool = False):
    """Steps-to-target (or epochs-to-target) vs batch size for every architecture, log2 axes:
    best-lr mean (line), per-seed values at the best lr (small dots), the fitted
    S_min(1 + B_crit/m) (dashed) and perfect scaling from the smallest batch (dotted)."""
    table = study_table(trials)
    fits = {r["arch_id"]: r for r in rows}
    n = trials[0]["n"] if trials else 1
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
        if row.get("observed_B_crit"):
            fit = row["S_min"] * (1 + row["observed_B_crit"] / mm)
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
    """Predicted maximum batch δ·B_S+1 (B_S at initialisation; open markers: averaged along the
    small-batch run) against the observed critical batch (with bootstrap interval) and the
    largest useful batch, log axes, with the y = x line."""
    vals = []
    for i, r in enumerate(rows):
        c = _color(i)
        p, pr = r.get("predicted_max_batch"), r.get("predicted_max_batch_run")
        b = r.get("observed_B_crit")
        if p and b:
            lo, hi = r.get("B_crit_lo"), r.get("B_crit_hi")
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


def plot_bs_along_training(ax, trials, rows):
    """B_S of the training set along training: per architecture, the best-lr trials at the
    smallest batch size that reached the target (one line per seed)."""
    table = study_table(trials)
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


def plot_theory_mc_training(ax, rows, archs):
    """For the parameter-budget family, against depth: theory's B̄_S (squared loss, where
    covered), Monte Carlo B̄_S and E[B_S] over random inits (squared loss, the same data), the
    Monte Carlo E[B_S] for the training loss, and the observed critical batch."""
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

    series = [
        (get(["theory", "batch_size_bound"]), "s-", r"theory $\bar{B}_S$ (training loss)"),
        (get(["squared_loss", "B_S_ratio_of_means"]), "o--", r"Monte Carlo $\bar{B}_S$ (squared loss)"),
        (get(["squared_loss", "E_B_S"]), "o:", "Monte Carlo E[B_S] (squared loss)"),
        (get(["training_loss", "E_B_S"]), "^-", "Monte Carlo E[B_S] (training loss)"),
        (np.array([np.nan if r["observed_B_crit"] is None else r["observed_B_crit"]
                   for r in rows]), "D-", "training: observed B_crit"),
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
    _legend(ax, 7)
    return ax


def plot_bcrit_trend(ax, rows, members, family: str, trend: dict | None = None):
    """Observed B_crit (with its bootstrap interval) of one family's nets against width
    (``family = "width"``, log2 axis) or depth (``"depth"``, ``"budget"``); the fitted
    log-linear trend (dashed) and its slope interval in the legend."""
    by = {r["arch_id"]: r for r in rows}
    pts = [by[a] for a in members if a in by and by[a].get("observed_B_crit")]
    xs = np.array([r["width"] if family == "width" else r["depth"] for r in pts], float)
    for r, x in zip(pts, xs):
        b, lo, hi = r["observed_B_crit"], r.get("B_crit_lo"), r.get("B_crit_hi")
        yerr = None if lo is None else [[max(b - lo, 0)], [max(hi - b, 0)]]
        edge = bool(r.get("fit_edge"))
        ax.errorbar([x], [b], yerr=yerr, fmt="o", mfc="none" if edge else None, color="C0",
                    capsize=3)
        if r.get("observed_max_batch"):
            ax.plot([x], [r["observed_max_batch"]], "s", color="C1", mfc="none")
    ax.plot([], [], "o", color="C0", label="observed B_crit (open: at an edge)")
    ax.plot([], [], "s", color="C1", mfc="none", label="largest useful batch")
    if trend and trend.get("slope") is not None and len(xs) >= 2:
        used = [by[a] for a in trend["nets"] if a in by]
        ux = np.array([r["width"] if family == "width" else r["depth"] for r in used], float)
        uy = np.log([r["observed_B_crit"] for r in used])
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


def plot_predictor(ax, rows, key: str, name: str):
    """One predictor against the observed B_crit (circles, with interval) and the largest
    useful batch (open squares) for every net, log-log, with y = x."""
    vals = []
    for r in rows:
        p, b = r.get(key), r.get("observed_B_crit")
        if not p or not b or r.get("fit_edge"):
            continue
        lo, hi = r.get("B_crit_lo"), r.get("B_crit_hi")
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


def save(fig, path_stem: str) -> list[str]:
    """Write ``path_stem.png`` and ``path_stem.pdf``; returns the two paths."""
    paths = []
    for ext in ("png", "pdf"):
        p = f"{path_stem}.{ext}"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        paths.append(p)
    return paths


__all__ = ["plot_bcrit_vs_progress", "plot_steps_vs_batch", "plot_predicted_vs_observed", "plot_bs_along_training",
           "plot_theory_mc_training", "plot_bcrit_trend", "plot_predictor", "save"]
