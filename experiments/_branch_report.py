r"""The branched study's analysis (``branch.json``), its report and its figure.

Per run (net × optimizer) and checkpoint, the branches' steps-to-target give
:math:`B_\text{crit}` by McCandlish's fit with the jackknife-over-seeds interval
(:func:`experiments._fit.net_interval`, each seed choosing its own best lr), and the
prediction at the checkpoint gives :math:`B_\text{simple}` with its block-jackknife interval
(:mod:`experiments._branch_predict`). Per optimizer the analysis answers:

* **tracking**: the geometric mean of :math:`B_\text{crit}/B_\text{simple}` over the
  checkpoints, and Spearman's rank correlation of the two (over every row, and within each
  run along training, averaged), each with a jackknife-over-seeds interval (the seeds are
  the replicates of the branches; the prediction's own error, its block interval, is much
  smaller and reported per row);
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

from ._fit import jackknife, net_interval, slope_with_interval, t_quantile
from ._records import read_json, write_json_atomic, write_text_atomic

FIGURE = "branch_critical_batch"
ROW_KEYS = ("arch_id", "width", "depth", "optimizer", "checkpoint_step", "train_loss",
            "B_crit", "ci_low", "ci_high", "B_simple", "B_simple_ci_low", "B_simple_ci_high")
STUDY_RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _seed_steps(studies: list) -> dict:
    """``{m: {seed: fewest steps-to-target over the lrs tried}}`` of one checkpoint."""
    by = {}
    for st in studies:
        d = by.setdefault(st["batch_size"], {})
        for t in st["trials"]:
            if t["status"] == "REACHED" and t["steps_to_target"]:
                d[t["seed"]] = min(d.get(t["seed"], math.inf), t["steps_to_target"])
    return by


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
                "B_simple_unbiased": p["B_simple_unbiased"],
                "B_simple_unbiased_ci_low": p["B_simple_unbiased_ci_low"],
                "B_simple_unbiased_ci_high": p["B_simple_unbiased_ci_high"],
                "B_simple_layers": p["layers"],
                "B_simple_euclidean": e["B_simple"],
                "B_simple_euclidean_ci_low": e["B_simple_ci_low"],
                "B_simple_euclidean_ci_high": e["B_simple_ci_high"],
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

    if len(a) < 3:
        return None
    r = spearmanr(a, b).statistic
    return float(r) if math.isfinite(r) else None


def _usable(r) -> bool:
    return r["B_crit"] is not None and not r["at_edge"] and r["B_simple"] is not None \
        and r["B_simple"] > 0


def _with_interval(full, loo, level, seeds) -> dict:
    se = jackknife(full, loo) if full is not None else None
    out = {"value": full, "se": se, "ci_low": None, "ci_high": None, "seeds": len(seeds)}
    if se is not None and len(seeds) >= 2:
        q = t_quantile(level, len(seeds) - 1)
        out.update(ci_low=full - q * se, ci_high=full + q * se)
    return out


def tracking(rows: list, level: float = 0.9) -> dict:
    """Ratio and rank correlation of B_crit and the prediction over ``rows`` (one
    optimizer), with jackknife-over-seeds intervals (module doc)."""
    use = [r for r in rows if _usable(r)]
    seeds = sorted(set.intersection(*[set(r["seeds"]) for r in use])) if use else []

    def theta(vals):  # vals: log B_crit per row (None: missing)
        ok = [(v, r) for v, r in zip(vals, use) if v is not None]
        if not ok:
            return None, None, None
        lr = [v - math.log(r["B_simple"]) for v, r in ok]
        mean = float(np.mean(lr))
        rho = _spearman([v for v, _ in ok], [math.log(r["B_simple"]) for _, r in ok])
        runs = {}
        for v, r in ok:
            runs.setdefault(r["arch_id"], []).append((v, math.log(r["B_simple"])))
        within = [_spearman([a for a, _ in p], [b for _, b in p]) for p in runs.values()]
        within = [w for w in within if w is not None]
        return mean, rho, (float(np.mean(within)) if within else None)

    full = theta([math.log(r["B_crit"]) for r in use])
    loo = [theta([r["loo_log_B_crit"].get(str(s)) for r in use]) for s in seeds]
    ratio = _with_interval(full[0], [v[0] for v in loo], level, seeds)
    for k in ("value", "ci_low", "ci_high"):
        if ratio[k] is not None:
            ratio[k] = math.exp(ratio[k])
    ratio["scale"] = "geometric mean of B_crit / B_simple (interval from log scale)"
    z = lambda r: None if r is None else math.atanh(max(min(r, 0.999999), -0.999999))
    out = {"rows": len(use), "rows_left_out": len(rows) - len(use), "ratio": ratio}
    for i, name in ((1, "spearman_all"), (2, "spearman_within_runs")):
        res = _with_interval(z(full[i]), [z(v[i]) for v in loo], level, seeds)
        for k in ("value", "ci_low", "ci_high"):
            if res[k] is not None:
                res[k] = math.tanh(res[k])
        res["scale"] = "Spearman rho (interval from Fisher z)"
        out[name] = res
    inside = [r for r in use if r["ci_low"] is not None
              and r["ci_low"] <= r["B_simple"] <= r["ci_high"]]
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
    return {"rows": rows, "summary": summary, "level": level}


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
        ax.plot(x, [r["B_simple"] for r in pts], "s--", color=colors[wd], mfc="none",
                label=f"K={wd} predicted B_simple")
    ax.set_xscale("log")
    ax.set_yscale("log")
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


def _verdict_tracking(t) -> str:
    r = t["ratio"]
    if r["value"] is None:
        return "not measurable (no fitted checkpoint)"
    rho = t["spearman_within_runs"]
    if r["ci_low"] is not None and r["ci_low"] <= 1 <= r["ci_high"]:
        level = "B_simple is consistent with B_crit in size"
    elif r["ci_high"] is not None and r["ci_high"] < 1:
        level = f"B_simple overpredicts B_crit (by {1 / r['value']:.3g}×)"
    elif r["ci_low"] is not None and r["ci_low"] > 1:
        level = f"B_simple underpredicts B_crit (by {r['value']:.3g}×)"
    else:
        level = "the size ratio is undetermined"
    if rho["ci_low"] is not None and rho["ci_low"] > 0:
        trend = "and its rank order along training tracks B_crit's"
    elif rho["ci_high"] is not None and rho["ci_high"] < 0:
        trend = "and its rank order along training runs against B_crit's"
    else:
        trend = "and whether it tracks B_crit's ups and downs along training is undetermined"
    return f"{level}, {trend}"


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
        t = s["tracking"]
        ws, ls = s["width_slope_matched_loss"], s["loss_slope_within_runs"]
        study = s["study_matched_width"]
        lines += [f"### {opt.upper()} (prediction in the "
                  f"{'Adam' if opt == 'adam' else 'Euclidean'} metric)", "",
                  f"* **Tracking**: {_verdict_tracking(t)}. B_crit / B_simple = "
                  f"{_f(t['ratio']['value'])} {_ci(t['ratio'])} (geometric mean over "
                  f"{t['rows']} checkpoints; {t['rows_left_out']} left out: no fit or at an "
                  f"edge); Spearman ρ along training within runs "
                  f"{_f(t['spearman_within_runs']['value'], 2)} "
                  f"{_ci(t['spearman_within_runs'])}, over all checkpoints "
                  f"{_f(t['spearman_all']['value'], 2)} {_ci(t['spearman_all'])}; "
                  f"B_simple inside B_crit's interval at {t['prediction_inside_ci']} "
                  f"checkpoints.",
                  f"* **Loss or width**: at matched training loss, log B_crit changes by "
                  f"{_f(ws['slope'])} {_ci(ws)} per log K "
                  f"({'width matters' if ws['ci_low'] is not None and (ws['ci_low'] > 0 or ws['ci_high'] < 0) else 'no width effect resolved: B_crit looks like a function of the loss alone' if ws['ci_low'] is not None else 'undetermined'}); "
                  f"along training, per log of the training loss: {_f(ls['slope'])} "
                  f"{_ci(ls)}."]
        if study:
            agree = (study["ci_low"] <= (ws["ci_high"] or -math.inf) and
                     (ws["ci_low"] or math.inf) <= study["ci_high"])
            lines.append(f"* The sweep study's matched-loss width slope ({study['workload']},"
                         f" `{study['source']}`): {_f(study['coef'])} {_ci(study)}: "
                         f"{'the intervals overlap' if agree else 'the intervals do not overlap'}.")
        lines.append("")
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
    lines += ["", "B_crit: McCandlish's fit of steps-to-target vs batch size over the "
              "branches of one checkpoint (jackknife over seeds); B_simple: plug-in simple "
              "noise scale of the training set at the checkpoint, exact for the training "
              "distribution, interval = training-set sampling error (delete-a-block "
              "jackknife); for Adam in Adam's metric diag(1/(√v̂ + ε)). An edge fit "
              "(beyond 2× the batches tried) is drawn with a × and left out of the answers.",
              ""]
    return "\n".join(lines)


def write_branch_report(out: str, cfg=None, level: float = 0.9) -> dict:
    """Write ``branch.json``, ``report.md`` and the figure of a branched study folder."""
    from ._errors import ExperimentError

    if not os.path.isdir(out):
        raise ExperimentError(f"{out}: no such folder")
    res = analyse(out, level)
    if not res["rows"]:
        raise ExperimentError(f"{out}: no finished checkpoint to analyse")
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


__all__ = ["rows_of", "tracking", "width_and_loss", "analyse", "plot_branch",
           "write_figure", "report_text", "write_branch_report", "ROW_KEYS", "FIGURE"]
