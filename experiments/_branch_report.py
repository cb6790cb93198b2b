r"""The branched study's analysis (``branch.json``), its report and its figure.

Per run (net × optimizer) and checkpoint, the branches' steps-to-target give
:math:`B_\text{crit}` by McCandlish's fit with the jackknife-over-seeds interval
(:func:`experiments._fit.net_interval`, each seed choosing its own best lr), and the
prediction at the checkpoint gives :math:`B_\text{simple}` with its block-jackknife interval
(:mod:`experiments._branch_predict`). Per optimizer the analysis answers:

* **tracking** (:func:`tracking`): the geometric mean of
  :math:`B_\text{crit}/B_\text{simple}` over the checkpoints, Spearman's rank correlation
  of the two (over every row, and within each run along training, averaged) and the
  within-run elasticity (slope of log B_crit on log B_simple), with intervals from a
  parametric bootstrap over both error sources (B_crit's seeds, the prediction's blocks);
* **loss or width**: the slope of :math:`\log B_\text{crit}` on :math:`\log K` within
  checkpoints of equal loss level (the matched-loss width effect,
  :func:`experiments._fit.slope_with_interval`), next to the sweep study's matched-loss
  width slope when its committed analysis is at hand; and the slope on
  :math:`\log(\text{training loss})` within runs (how the critical batch moves as
  training proceeds).
"""

from __future__ import annotations

import glob
import math
import os

import numpy as np

from ._fit import fixed_effect_slope, net_interval, seed_steps, slope_with_interval
from ._records import read_json, write_json_atomic, write_text_atomic

FIGURE = "branch_critical_batch"
ROW_KEYS = ("arch_id", "width", "depth", "optimizer", "checkpoint_step", "train_loss",
            "B_crit", "ci_low", "ci_high", "B_simple", "B_simple_ci_low", "B_simple_ci_high")
STUDY_RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _seed_steps(studies: list) -> dict:
    """``{m: {seed: fewest steps-to-target over the lrs tried}}`` of one checkpoint (the
    sweep study's rule, :func:`experiments._fit.seed_steps`)."""
    trials = [{**t, "arch_id": "", "batch_size": st["batch_size"], "target_metric": "loss",
               "target": st["target_loss"]} for st in studies for t in st["trials"]]
    return seed_steps(trials, "loss", studies[0]["target_loss"]).get("", {}) if trials else {}


def _se_log(pred: dict, key: str):
    """Standard error of log(prediction) (None when its jackknife ran on the linear scale)."""
    return pred[f"{key}_se"] if pred.get(f"{key}_se_scale") == "log" else None


def rows_of(out: str, level: float = 0.9) -> list[dict]:
    """One row per run × checkpoint of a branched study folder (module doc)."""
    rows = []
    for rpath in sorted(glob.glob(os.path.join(out, "reference", "*.json"))):
        ref = read_json(rpath)
        key = os.path.basename(rpath)[:-5]
        for k, ck in enumerate(ref["checkpoints"]):
            studies = [read_json(p) for p in
                       glob.glob(os.path.join(out, "studies", key, f"c{k}-m*.json"))]
            ppath = os.path.join(out, "predict", f"{key}-c{k}.json")
            if not studies or not os.path.exists(ppath):
                continue
            seeds = sorted({t["seed"] for st in studies for t in st["trials"]})
            by_m = _seed_steps(studies)
            fit = net_interval(by_m, seeds, level=level)
            pred = read_json(ppath)
            p = pred[pred["prediction"]]
            e = pred["euclidean"]
            row = {
                "arch_id": ref["arch_id"], "width": ref["width"], "depth": ref["depth"],
                "params": ref["params"], "optimizer": ref["optimizer"], "checkpoint": k,
                "checkpoint_step": ck["step"], "checkpoint_level": ck["level"],
                "train_loss": ck["loss"], "train_accuracy": ck.get("accuracy"),
                "target_loss": studies[0]["target_loss"],
                "B_crit": fit["B_crit"], "ci_low": fit["ci_low"], "ci_high": fit["ci_high"],
                "se_log": fit["se_log"], "at_edge": fit["at_edge"], "S_min": fit["S_min"],
                "rmse_log": fit["rmse_log"], "points": fit["points"], "seeds": seeds,
                "loo_log_B_crit": {str(s): v for s, v in fit["loo"].items()},
                "B_simple": p["B_simple"], "B_simple_ci_low": p["B_simple_ci_low"],
                "B_simple_ci_high": p["B_simple_ci_high"], "B_simple_metric": p["metric"],
                "B_simple_se_log": _se_log(p, "B_simple"),
                "B_simple_unbiased": p["B_simple_unbiased"],
                "B_simple_unbiased_ci_low": p["B_simple_unbiased_ci_low"],
                "B_simple_unbiased_ci_high": p["B_simple_unbiased_ci_high"],
                "B_simple_layers": p["layers"],
                "B_simple_euclidean": e["B_simple"],
                "B_simple_euclidean_ci_low": e["B_simple_ci_low"],
                "B_simple_euclidean_ci_high": e["B_simple_ci_high"],
                "B_simple_euclidean_se_log": _se_log(e, "B_simple"),
                "prediction_n": p["n"], "prediction_blocks": p["blocks"],
                "steps": {str(m): {str(s): v for s, v in d.items()}
                          for m, d in sorted(by_m.items())},
                "best_lr": {str(st["batch_size"]): st["best_lr"] for st in studies},
                "edge_resolved": all(st["edge_resolved"] for st in studies),
            }
            row["ratio"] = (row["B_crit"] / row["B_simple"]
                            if row["B_crit"] and row["B_simple"] and row["B_simple"] > 0
                            else None)
            rows.append(row)
    return rows


def _spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    r = spearmanr(a, b).statistic
    return float(r) if math.isfinite(r) else None


def _usable(r, key="B_simple") -> bool:
    return r["B_crit"] is not None and not r["at_edge"] and r.get(key) is not None \
        and r[key] > 0


def _tracking_stats(log_b, log_p, runs) -> dict:
    """Ratio, rank correlations and within-run elasticity of one set of (log B_crit, log
    prediction) pairs; ``runs``: each pair's run (within-run statistics)."""
    log_b, log_p = np.asarray(log_b), np.asarray(log_p)
    out = {"log_ratio": float(np.mean(log_b - log_p)),
           "spearman_all": _spearman(list(log_b), list(log_p))}
    within, groups = [], {}
    for i, r in enumerate(runs):
        groups.setdefault(r, []).append(i)
    for idx in groups.values():
        v = _spearman(list(log_b[idx]), list(log_p[idx]))
        if v is not None:
            within.append(v)
    out["spearman_within_runs"] = float(np.mean(within)) if within else None
    out["elasticity_within_runs"] = fixed_effect_slope(
        [(list(log_p[idx]), list(log_b[idx])) for idx in groups.values()])
    return out


def tracking(rows: list, level: float = 0.9, key: str = "B_simple", draws: int = 2000,
             seed: int = 0) -> dict:
    r"""Does the prediction ``key`` track B_crit over ``rows`` (one optimizer)?

    Statistics: the geometric mean of :math:`B_\text{crit}/B_\text{simple}`; Spearman's
    ρ over every row and within each run along training (averaged over runs); and the
    within-run elasticity, the slope of :math:`\log B_\text{crit}` on
    :math:`\log B_\text{simple}` with one intercept per run (1: the critical batch moves in
    proportion to the noise scale; 0: not at all).

    Intervals: a parametric bootstrap over both error sources: each draw moves every
    row's :math:`\log B_\text{crit}` by its jackknife-over-seeds standard error times a
    Student-t variate (seeds − 1 degrees of freedom) and its :math:`\log B_\text{simple}`
    by its block-jackknife standard error times a t variate (blocks − 1 degrees of
    freedom), independently; the interval is the draws' central ``level`` quantiles."""
    use = [r for r in rows if _usable(r, key)]
    out = {"rows": len(use), "rows_left_out": len(rows) - len(use), "prediction": key,
           "draws": draws, "interval": "parametric bootstrap (t errors of B_crit and of "
                                       "the prediction)"}
    names = ("ratio", "spearman_all", "spearman_within_runs", "elasticity_within_runs")
    if len(use) < 2:
        out.update({n: {"value": None, "ci_low": None, "ci_high": None} for n in names})
        out["prediction_inside_ci"] = f"0/{len(use)}"
        return out
    log_b = np.array([math.log(r["B_crit"]) for r in use])
    log_p = np.array([math.log(r[key]) for r in use])
    runs = [r["arch_id"] for r in use]
    full = _tracking_stats(log_b, log_p, runs)
    se_b = np.array([r["se_log"] or 0.0 for r in use])
    dof_b = np.array([max(len(r["seeds"]) - 1, 1) for r in use])
    se_p = np.array([r.get(key + "_se_log") or 0.0 for r in use])
    dof_p = np.array([max((r.get("prediction_blocks") or 2) - 1, 1) for r in use])
    rng = np.random.default_rng(seed)
    boot = {n: [] for n in full}
    for _ in range(draws):
        st = _tracking_stats(log_b + se_b * rng.standard_t(dof_b),
                             log_p + se_p * rng.standard_t(dof_p), runs)
        for n, v in st.items():
            if v is not None:
                boot[n].append(v)
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2

    def res(name, value, transform=lambda v: v):
        b = boot[name]
        ci = (None, None) if len(b) < draws / 2 else \
            tuple(transform(float(v)) for v in np.quantile(b, [lo_q, hi_q]))
        return {"value": None if value is None else transform(value), "ci_low": ci[0],
                "ci_high": ci[1]}

    out["ratio"] = res("log_ratio", full["log_ratio"], math.exp)
    out["ratio"]["scale"] = "geometric mean of B_crit / prediction"
    for n in names[1:]:
        out[n] = res(n, full[n])
    inside = [r for r in use if r["ci_low"] is not None
              and r["ci_low"] <= r[key] <= r["ci_high"]]
    out["prediction_inside_ci"] = f"{len(inside)}/{len(use)}"
    return out


def width_and_loss(rows: list, level: float = 0.9) -> dict:
    """Matched-loss width slope (groups: checkpoint levels) and the loss slope (groups:
    runs) of log B_crit, with jackknife-over-seeds intervals."""
    use = [r for r in rows if r["B_crit"] is not None and not r["at_edge"]]
    seeds = sorted(set.intersection(*[set(r["seeds"]) for r in use])) if use else []

    def point(r, x):
        return (x, math.log(r["B_crit"]),
                {s: r["loo_log_B_crit"].get(str(s)) for s in seeds})

    by_level, by_run = {}, {}
    for r in use:
        by_level.setdefault(r["checkpoint_level"], []).append(point(r, math.log(r["width"])))
        by_run.setdefault(r["arch_id"], []).append(point(r, math.log(r["train_loss"])))
    return {"width_slope_matched_loss": slope_with_interval(list(by_level.values()), seeds,
                                                            level=level),
            "loss_slope_within_runs": slope_with_interval(list(by_run.values()), seeds,
                                                          level=level)}


def study_matched_width(optimizer: str) -> dict | None:
    """The sweep study's matched-training-loss width slope on MNIST-1D fc (standard
    parametrisation) for ``optimizer``, from its committed analysis, or None."""
    for name in ("c2", "axes"):
        path = os.path.join(STUDY_RESULTS, name, "analysis.json")
        if not os.path.exists(path):
            continue
        for m in read_json(path).get("matched", []):
            if m.get("data") == "mnist1d" and m.get("arch") == "fc" and \
                    m.get("factor") == "width" and m.get("matched_on") == "loss" and \
                    m.get("optimizer") == optimizer and \
                    m.get("parametrisation") == "standard":
                return {"coef": m["coef"], "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                        "source": f"experiments/results/{name}/analysis.json",
                        "workload": m["workload"]}
    return None


def analyse(out: str, level: float = 0.9) -> dict:
    """``branch.json``'s content: the rows and, per optimizer, the answers."""
    rows = rows_of(out, level)
    summary = {}
    for opt in sorted({r["optimizer"] for r in rows}):
        rs = [r for r in rows if r["optimizer"] == opt]
        summary[opt] = {"tracking": tracking(rs, level), **width_and_loss(rs, level),
                        "study_matched_width": study_matched_width(opt)}
        if opt == "adam":  # the plain noise scale next to Adam's own
            summary[opt]["tracking_euclidean"] = tracking(rs, level, "B_simple_euclidean")
    return {"rows": rows, "summary": summary, "level": level}


def compare_repeat(first: dict, repeat: dict, level: float = 0.9) -> dict:
    r"""An independent repeat (another reference run: ``branch.reference_seed``) against the
    first analysis: per checkpoint (matched by net, optimizer and checkpoint level), is the
    repeat's B_crit inside the first's reproduction interval
    :math:`\hat\theta \pm t\sqrt2\,\widehat{se}` (where an exact interval puts it with
    probability ``level`` if reference runs did not matter)? Per optimizer, the answers of
    both side by side."""
    from ._fit import t_quantile

    key = lambda r: (r["arch_id"], r["optimizer"], r["checkpoint_level"])
    rep = {key(r): r for r in repeat["rows"]}
    pairs = inside = 0
    for r in first["rows"]:
        q = rep.get(key(r))
        if q is None or r["se_log"] is None or r["B_crit"] is None or q["B_crit"] is None \
                or r["at_edge"] or q["at_edge"]:
            continue
        half = t_quantile(level, len(r["seeds"]) - 1) * math.sqrt(2) * r["se_log"]
        pairs += 1
        inside += abs(math.log(q["B_crit"] / r["B_crit"])) <= half
    out = {"pairs": pairs, "inside_reproduction_interval": inside, "nominal": level,
           "summary": {}}
    for opt, s in first["summary"].items():
        t = repeat["summary"].get(opt)
        if t is None:
            continue
        out["summary"][opt] = {
            name: {"first": pick(s), "repeat": pick(t)} for name, pick in (
                ("ratio", lambda x: x["tracking"]["ratio"]),
                ("elasticity_within_runs",
                 lambda x: x["tracking"]["elasticity_within_runs"]),
                ("width_slope_matched_loss", lambda x: x["width_slope_matched_loss"]),
                ("loss_slope_within_runs", lambda x: x["loss_slope_within_runs"]))}
    return out


# --------------------------------------------------------------------------- figure
def plot_branch(ax, rows, optimizer: str):
    """B_crit (solid, with intervals) and the noise-scale prediction (dashed) against the
    training loss, one colour per width."""
    rs = [r for r in rows if r["optimizer"] == optimizer]
    widths = sorted({r["width"] for r in rs})
    colors = {w: f"C{i}" for i, w in enumerate(widths)}
    for wd in widths:
        pts = sorted((r for r in rs if r["width"] == wd), key=lambda r: -r["train_loss"])
        meas = [r for r in pts if r["B_crit"] is not None]
        if meas:
            x = [r["train_loss"] for r in meas]
            y = [r["B_crit"] for r in meas]
            lo = [r["B_crit"] - (r["ci_low"] or r["B_crit"]) for r in meas]
            hi = [(r["ci_high"] or r["B_crit"]) - r["B_crit"] for r in meas]
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", color=colors[wd], capsize=3,
                        label=f"K={wd} measured B_crit")
            edge = [r for r in meas if r["at_edge"]]
            if edge:
                ax.plot([r["train_loss"] for r in edge], [r["B_crit"] for r in edge], "x",
                        color="k", ms=9)
        x = [r["train_loss"] for r in pts]
        y = [r["B_simple"] for r in pts]
        lo = [v - (r["B_simple_ci_low"] or v) for v, r in zip(y, pts)]
        hi = [(r["B_simple_ci_high"] or v) - v for v, r in zip(y, pts)]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="s--", color=colors[wd], mfc="none",
                    capsize=2, alpha=0.7, label=f"K={wd} predicted B_simple")
    from matplotlib.ticker import FormatStrFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.invert_xaxis()
    metric = "Adam metric" if optimizer == "adam" else "Euclidean"
    ax.set_xlabel("training loss at the checkpoint (training proceeds →)")
    ax.set_ylabel("critical batch")
    ax.set_title(f"{optimizer.upper()}: measured B_crit vs noise scale ({metric})")
    ax.legend(fontsize=7)


def write_figure(out: str, rows: list) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from numerics._plot import save

    opts = sorted({r["optimizer"] for r in rows})
    fig, axes = plt.subplots(1, max(len(opts), 1), figsize=(6 * max(len(opts), 1), 4.5),
                             squeeze=False)
    for ax, opt in zip(axes[0], opts):
        plot_branch(ax, rows, opt)
    paths = save(fig, os.path.join(out, FIGURE))
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- report
def _f(v, d=3):
    return "–" if v is None else f"{v:.{d}g}"


def _ci(d, k=("ci_low", "ci_high")):
    return f"[{_f(d.get(k[0]))}, {_f(d.get(k[1]))}]"


def _excludes(d, value) -> bool:
    """True when ``d``'s interval lies entirely on one side of ``value``."""
    return d["ci_low"] is not None and (d["ci_low"] > value or d["ci_high"] < value)


def _verdict_tracking(t) -> str:
    r, el = t["ratio"], t["elasticity_within_runs"]
    if r["value"] is None:
        return "not measurable (fewer than 2 fitted checkpoints)"
    if not _excludes(r, 1):
        size = "consistent with B_crit in size" if r["ci_low"] is not None else \
            "of undetermined size relative to B_crit"
    elif r["ci_high"] < 1:
        size = f"larger than B_crit (by {1 / r['value']:.3g}×)"
    else:
        size = f"smaller than B_crit (by {r['value']:.3g}×)"
    if el["value"] is None or el["ci_low"] is None:
        trend = "whether it follows B_crit along training is undetermined"
    elif el["ci_low"] > 0 and el["ci_high"] < 1:
        trend = "it follows B_crit along training only partly (0 < elasticity < 1)"
    elif el["ci_low"] > 0:
        trend = "it follows B_crit along training (elasticity > 0, 1 not excluded)" \
            if el["ci_low"] <= 1 <= el["ci_high"] else "it follows B_crit along training"
    elif el["ci_high"] < 0:
        trend = "it moves against B_crit along training"
    else:
        trend = "its moves along training are not resolved to follow B_crit's"
    return f"the noise scale is {size}; {trend}"


def _verdict_width(ws) -> str:
    if ws["slope"] is None or ws["ci_low"] is None:
        return "undetermined"
    if _excludes(ws, 0):
        return ("width matters at equal loss: B_crit " +
                ("falls" if ws["ci_high"] < 0 else "rises") + " with width")
    return "no width effect resolved: B_crit looks like a function of the loss alone"


def _tracking_line(t, label) -> str:
    def stat(name, digits=2):
        return f"{_f(t[name]['value'], digits)} {_ci(t[name])}"

    return (f"* **Tracking** ({label}): {_verdict_tracking(t)}. B_crit / B_simple = "
            f"{stat('ratio', 3)} (geometric mean over {t['rows']} checkpoints; "
            f"{t['rows_left_out']} left out: no fit or at an edge); elasticity within runs "
            f"{stat('elasticity_within_runs')}; Spearman ρ along training within runs "
            f"{stat('spearman_within_runs')}, over all checkpoints {stat('spearman_all')}; "
            f"B_simple inside B_crit's interval at {t['prediction_inside_ci']} checkpoints.")


def _repeat_lines(rep: dict, name: str) -> list:
    lines = [f"## Repeat with another reference run (`{name}`)", "",
             f"The repeat's B_crit lies inside the first run's {rep['nominal']:.0%} "
             f"reproduction interval at {rep['inside_reproduction_interval']} of "
             f"{rep['pairs']} checkpoints (expected about {rep['nominal']:.0%} if the "
             f"reference run did not matter: the intervals cover the branches' seeds only).",
             "", "| optimizer | quantity | first run | repeat |", "|---|---|---|---|"]
    for opt, d in rep["summary"].items():
        for q, v in d.items():
            a, b = v["first"], v["repeat"]
            val = lambda x: _f(x.get("value", x.get("slope")))
            lines.append(f"| {opt} | {q} | {val(a)} {_ci(a)} | {val(b)} {_ci(b)} |")
    return lines + [""]


def report_text(res: dict, cfg=None, *, command: str | None = None, timing=None) -> str:
    lines = ["# Branched critical batch along training vs the noise scale", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    if timing:
        lines += [timing, ""]
    if cfg is not None:
        sw = cfg.sweep
        lines += [
            f"Data: {sw.data} (n = {res['rows'][0]['prediction_n'] if res['rows'] else '?'}),"
            f" fc ReLU nets of depth {sw.width_family_depth}, widths "
            f"{', '.join(map(str, sw.width_family_widths))}, cross-entropy. Reference run: "
            f"batch {cfg.reference_batch}, seed {cfg.reference_seed}, lr "
            f"{', '.join(f'{k} {v:g}' for k, v in cfg.reference_lr)}; checkpoints at training "
            f"loss {', '.join(f'{v:g}' for v in cfg.checkpoint_losses)}. Branches: batch "
            f"{', '.join(map(str, sw.batch_sizes))}, {sw.seeds} seeds, lr tuned per batch size "
            f"and seed (√2 grid, extended at an edge), target = {1 - cfg.reduction:g} × the "
            f"checkpoint's training loss, step cap {sw.max_steps}. Intervals at "
            f"{res['level']:.0%}.", ""]
    lines += ["## Answers, per optimizer", ""]
    for opt, s in res["summary"].items():
        ws, ls = s["width_slope_matched_loss"], s["loss_slope_within_runs"]
        metric = "Adam's metric" if opt == "adam" else "Euclidean"
        lines += [f"### {opt.upper()}", "", _tracking_line(s["tracking"], metric)]
        if "tracking_euclidean" in s:
            lines.append(_tracking_line(s["tracking_euclidean"],
                                        "the plain Euclidean noise scale, for comparison"))
        lines += [f"* **Loss or width**: {_verdict_width(ws)}. At matched training loss "
                  f"log B_crit changes by {_f(ws['slope'])} {_ci(ws)} per log K; along "
                  f"training, by {_f(ls['slope'])} {_ci(ls)} per log of the training loss "
                  f"(negative: B_crit grows as the loss falls)."]
        study = s["study_matched_width"]
        if study:
            overlap = ws["ci_low"] is not None and study["ci_low"] <= ws["ci_high"] and \
                ws["ci_low"] <= study["ci_high"]
            lines.append(f"* The sweep study's matched-loss width slope ({study['workload']},"
                         f" `{study['source']}`): {_f(study['coef'])} {_ci(study)}; the "
                         f"intervals {'overlap' if overlap else 'do not overlap'}.")
        lines.append("")
    if res.get("repeat"):
        lines += _repeat_lines(res["repeat"], res["repeat_folder"])
    lines += ["## Rows", "",
              "| net | opt | ckpt step | train loss | B_crit [CI] | B_simple [CI] | "
              "B_simple unbiased | ratio | S_min | fit rmse (log) | edge |",
              "|---|---|--:|--:|---|---|--:|--:|--:|--:|---|"]
    for r in res["rows"]:
        lines.append(
            f"| {r['arch_id']} | {r['optimizer']} | {r['checkpoint_step']} | "
            f"{r['train_loss']:.3f} | {_f(r['B_crit'])} {_ci(r)} | {_f(r['B_simple'])} "
            f"{_ci(r, ('B_simple_ci_low', 'B_simple_ci_high'))} | "
            f"{_f(r['B_simple_unbiased'])} | {_f(r['ratio'])} | {_f(r['S_min'])} | "
            f"{_f(r['rmse_log'], 2)} | {r['at_edge'] or ''} |")
    layers = sorted({k for r in res["rows"] for k in (r.get("B_simple_layers") or {})})
    if layers:
        lines += ["", "Per layer (the prediction's metric; a layer's S1 and S2 alone):", "",
                  "| net | opt | train loss | " + " | ".join(f"B_simple {k}" for k in layers)
                  + " |", "|---|---|--:|" + "--:|" * len(layers)]
        for r in res["rows"]:
            lay = r.get("B_simple_layers") or {}
            lines.append(f"| {r['arch_id']} | {r['optimizer']} | {r['train_loss']:.3f} | "
                         + " | ".join(_f(lay.get(k)) for k in layers) + " |")
    lines += ["", "B_crit: McCandlish's fit of steps-to-target vs batch size over the "
              "branches of one checkpoint (jackknife over seeds); B_simple: plug-in simple "
              "noise scale of the training set at the checkpoint, exact for the training "
              "distribution, interval = training-set sampling error (delete-a-block "
              "jackknife); for Adam in Adam's metric diag(1/(√v̂ + ε)). An edge fit "
              "(beyond 2× the batches tried) is drawn with a × and left out of the answers. "
              "Each net has one reference run (one init): the intervals cover the branches' "
              "seeds, the fit and the prediction's sampling error, not the spread over "
              "reference runs.", ""]
    return "\n".join(lines)


def write_branch_report(out: str, level: float = 0.9, repeat: str | None = None) -> dict:
    """Write ``branch.json``, ``report.md`` and the figure of a branched study folder (its
    settings read from the folder's own ``branch_config.toml``)."""
    from ._branch import load_branch_config
    from ._errors import ExperimentError

    if not os.path.isdir(out):
        raise ExperimentError(f"{out}: no such folder")
    cfg_path = os.path.join(out, "branch_config.toml")
    if not os.path.exists(cfg_path):
        raise ExperimentError(f"{out}: not a branched study folder (no branch_config.toml)")
    cfg = load_branch_config(cfg_path)
    res = analyse(out, level)
    if not res["rows"]:
        raise ExperimentError(f"{out}: no finished checkpoint to analyse")
    if repeat is not None:
        if not os.path.exists(os.path.join(repeat, "branch_config.toml")):
            raise ExperimentError(f"{repeat}: not a branched study folder "
                                  f"(no branch_config.toml)")
        res["repeat"] = compare_repeat(res, analyse(repeat, level), level)
        res["repeat_folder"] = os.path.basename(os.path.normpath(repeat))
    meta_path = os.path.join(out, "run.json")
    command = timing = None
    if os.path.exists(meta_path):
        inv = read_json(meta_path)["invocations"]
        if inv:
            command = inv[0]["command"]
            walls = [i.get("wall_s") for i in inv if i.get("wall_s") is not None]
            if walls:
                timing = (f"Wall time: {sum(walls) / 60:.1f} min over {len(walls)} "
                          f"invocation(s) (`run.json`).")
    write_json_atomic(os.path.join(out, "branch.json"), res)
    figs = write_figure(out, res["rows"])
    path = os.path.join(out, "report.md")
    write_text_atomic(path, report_text(res, cfg, command=command, timing=timing))
    summary = []
    for opt, s in res["summary"].items():
        t = s["tracking"]
        summary.append(f"{opt}: B_crit/B_simple {_f(t['ratio']['value'])} {_ci(t['ratio'])}, "
                       f"Spearman within runs {_f(t['spearman_within_runs']['value'], 2)} "
                       f"{_ci(t['spearman_within_runs'])}, matched-loss width slope "
                       f"{_f(s['width_slope_matched_loss']['slope'])} "
                       f"{_ci(s['width_slope_matched_loss'])}")
    return {"report": path, "figures": figs, "summary": summary, "rows": len(res["rows"])}


__all__ = ["rows_of", "tracking", "width_and_loss", "analyse", "compare_repeat", "plot_branch",
           "write_figure", "report_text", "write_branch_report", "ROW_KEYS", "FIGURE"]
