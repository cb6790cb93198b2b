"""``report.md``, ``analysis.csv``, ``analysis.json`` and the figures of a finished sweep.

One workload folder gets its own report; a suite folder (``suite.json``, the C2 study) gets one
report per workload plus a suite report whose ``analysis.json`` holds the two lists scripts
read: ``trends`` (one object per data, loss, arch, family: ``slope``, ``ci_low``, ``ci_high``,
``verdict``) and ``predictors`` (one per data, loss, predictor: ``spearman`` with its interval,
``ratio_median``, ``lower_bound_held``). A single workload's ``analysis.json`` has the same two
lists.
"""

from __future__ import annotations

import csv
import io
import os
import platform

from ._analysis import (PREDICTORS, analyse, family_trend, predictor_table, study_table,
                        verdict)
from ._config import data_label
from ._errors import ExperimentError
from ._sweep import (load_studies, load_trials, read_json, versions, write_json_atomic,
                     write_text_atomic)
from ._train import INFEASIBLE, UNREACHED

CSV_COLUMNS = [
    "arch_id", "arch", "activation", "depth", "width", "params",
    "observed_B_crit", "B_crit_lo", "B_crit_hi", "S_min", "fit_points", "fit_edge",
    "observed_max_batch", "max_batch_lower_bound", "best_epochs",
    "predicted_max_batch", "predicted_max_batch_run", "predicted_max_batch_theory",
    "B_S_init", "B_S_init_ratio_of_means", "B_S_run", "B_simple_at_target", "theory_B_S",
    "theory_kind", "theory_note", "families", "trials", "reached", "unreached", "infeasible",
    "lr_at_edge",
]
SUITE_COLUMNS = ["workload", "data", "loss"] + CSV_COLUMNS
TREND_KEYS = ["data", "loss", "arch", "family", "nets", "slope", "ci_low", "ci_high", "verdict"]
PREDICTOR_KEYS = ["data", "loss", "predictor", "nets", "spearman", "spearman_ci_low",
                  "spearman_ci_high", "ratio_median", "lower_bound_held"]


def _fmt(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "–"
    return str(v)


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, list):
        return " ".join(map(str, v))
    return v


def load_sweep(out: str):
    """(workload, archs, trials) of a sweep folder; one-line errors for missing pieces."""
    if not os.path.isdir(out):
        raise ExperimentError(f"{out}: no such folder")
    wl_path = os.path.join(out, "workload.json")
    if not os.path.exists(wl_path):
        raise ExperimentError(f"{out}: no workload.json (run python -m experiments.sweep "
                              f"--out {out} first)")
    wl = read_json(wl_path)
    archs = {}
    adir = os.path.join(out, "archs")
    if os.path.isdir(adir):
        for f in sorted(os.listdir(adir)):
            if f.endswith(".json") and not f.startswith(".tmp-"):
                a = read_json(os.path.join(adir, f))
                archs[a["arch_id"]] = a
    trials = load_trials(out)
    if not trials:
        raise ExperimentError(f"{out}: no trial records under trials/ (the sweep has not "
                              f"finished any trial yet)")
    return wl, archs, trials


def _figure(fig_dir, name, draw, size=(6.5, 4.5), ncols: int = 1, title: str = ""):
    """Draw one figure (``draw(ax)``, or ``draw(axes)`` for ``ncols > 1``) with the Agg
    backend and save it as PNG and PDF; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import _plots

    fig, ax = plt.subplots(1, ncols, figsize=size)
    try:
        draw(ax)
        if title:
            fig.suptitle(title)
        return _plots.save(fig, os.path.join(fig_dir, name))[0]
    finally:
        plt.close(fig)


def make_figures(out: str, res: dict) -> list[str]:
    """The figures of one workload (``res`` from :func:`analyse_workload`)."""
    from . import _plots

    trials, rows, archs = res["trials"], res["rows"], res["archs"]
    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    for fam, members in res["families"].items():
        ts = [t for t in trials if t["arch_id"] in members]
        rs = [r for r in rows if r["arch_id"] in members]
        suffix = "" if len(res["families"]) == 1 else f"_{fam}"
        made.append(_figure(fig_dir, f"steps_vs_batch{suffix}",
                            lambda ax: _plots.plot_steps_vs_batch(ax, ts, rs)))
        made.append(_figure(fig_dir, f"epochs_vs_batch{suffix}",
                            lambda ax: _plots.plot_steps_vs_batch(ax, ts, rs, epochs=True)))
        trend = next((t for t in res["trends"] if t["family"] == fam), None)
        made.append(_figure(fig_dir, f"bcrit_vs_{'width' if fam == 'width' else 'depth'}"
                            + ("" if fam != "budget" else "_budget"),
                            lambda ax: _plots.plot_bcrit_trend(ax, rows, members, fam, trend)))
    made.append(_figure(fig_dir, "predicted_vs_observed",
                        lambda ax: _plots.plot_predicted_vs_observed(ax, rows), (6.5, 5)))
    made.append(_figure(fig_dir, "bs_along_training",
                        lambda ax: _plots.plot_bs_along_training(ax, trials, rows)))
    budget = [r for r in rows if r["arch_id"] in res["families"].get("budget", [])]
    made.append(_figure(fig_dir, "theory_mc_training",
                        lambda ax: _plots.plot_theory_mc_training(ax, budget, archs)))
    return made


def _specs_of(wl):
    from theory import NetSpec

    d = wl["data"]
    return [NetSpec.uniform(f["depth"], f["width"], d["input_dim"], outputs=d["outputs"],
                            activation=f["activation"], arch=f["arch"])
            if f["depth"] >= 2 else
            NetSpec(depth=1, widths=(), input_dim=d["input_dim"], outputs=d["outputs"],
                    activation=f["activation"], arch=f["arch"]) for f in wl["family"]]


def _theory(out, wl, progress):
    """Theory's prediction per net (cached in ``OUT/theory``); "not covered" for every net
    when the training data cannot be loaded again."""
    from ._data import load_data
    from ._predict import cached_predictions

    cfg = wl["config"]
    try:
        ds, _ = load_data(cfg["data"], n=cfg["n"], seed=cfg["data_seed"])
    except ExperimentError as err:
        return {f["arch_id"]: {"covered": False, "reason": f"data unavailable: {err}"}
                for f in wl["family"]}
    return cached_predictions(out, _specs_of(wl), ds, wl["loss"], delta=cfg.get("delta", 1.0),
                              progress=progress)


def analyse_workload(out: str, *, n_boot: int | None = None, progress: bool = False) -> dict:
    """Rows per net, family trends and predictor table of one workload folder."""
    wl, archs, trials = load_sweep(out)
    cfg = wl["config"]
    n_boot = cfg.get("bootstrap", 1000) if n_boot is None else n_boot
    level = cfg.get("level", 0.9)
    for aid, pred in _theory(out, wl, progress).items():
        archs.setdefault(aid, {})["theory"] = pred
    rows = analyse(trials, archs, epsilon=cfg.get("epsilon", 1.0), delta=cfg.get("delta", 1.0),
                   n_boot=n_boot, level=level)
    families = wl.get("families") or {"budget": [f["arch_id"] for f in wl["family"]]}
    for r in rows:
        r["families"] = [f for f, members in families.items() if r["arch_id"] in members]
    table = study_table(trials)
    by = {r["arch_id"]: r for r in rows}
    data, loss = data_label(cfg["data"]), wl["loss"]
    trends = []
    for fam, members in families.items():
        t = family_trend(table, fam, [by[a] for a in members if a in by], n_boot=n_boot,
                         level=level)
        trends.append({"data": data, "loss": loss, "arch": cfg["arch"], **t})
    preds = [{"data": data, "loss": loss, **p}
             for p in predictor_table(rows, n_boot=n_boot, level=level)]
    return {"workload": wl, "archs": archs, "trials": trials, "rows": rows, "table": table,
            "families": families, "trends": trends, "predictors": preds, "n_boot": n_boot,
            "level": level, "studies": load_studies(out)}


def _write_csv(path, rows, columns):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in columns])
    write_text_atomic(path, buf.getvalue())


def write_report(out: str, *, n_boot: int | None = None, command: str | None = None,
                 progress: bool = False) -> dict:
    """Analyse the sweep (or suite) in ``out``; write report.md, analysis.csv/json, figures."""
    if os.path.exists(os.path.join(out, "suite.json")):
        return _write_suite_report(out, n_boot=n_boot, command=command, progress=progress)
    res = analyse_workload(out, n_boot=n_boot, progress=progress)
    rows = res["rows"]
    v = verdict(res["trends"])
    _write_csv(os.path.join(out, "analysis.csv"), rows, CSV_COLUMNS)
    write_json_atomic(os.path.join(out, "analysis.json"), {
        "rows": rows, "trends": res["trends"], "predictors": res["predictors"], "verdict": v,
        "epsilon": res["workload"]["config"].get("epsilon"),
        "delta": res["workload"]["config"].get("delta"), "bootstrap": res["n_boot"],
        "level": res["level"]})
    figs = make_figures(out, res)
    md = _markdown(out, res, v, figs, command)
    write_text_atomic(os.path.join(out, "report.md"), md)
    return {"rows": rows, "verdict": v, "figures": figs, "trends": res["trends"],
            "predictors": res["predictors"], "report": os.path.join(out, "report.md")}


def _write_suite_report(out, *, n_boot, command, progress):
    suite = read_json(os.path.join(out, "suite.json"))
    results, missing = {}, []
    for name in suite["workloads"]:
        wdir = os.path.join(out, name)
        if not os.path.exists(os.path.join(wdir, "workload.json")):
            missing.append(name)
            continue
        try:
            res = write_report(wdir, n_boot=n_boot, progress=progress,
                               command=f"python -m experiments.report {wdir}")
        except ExperimentError as err:
            if "no trial records" not in str(err):
                raise
            missing.append(name)
            continue
        results[name] = res
    if not results:
        raise ExperimentError(f"{out}: no workload of the suite has finished a trial yet")
    trends = [t for r in results.values() for t in r["trends"]]
    all_rows = []
    for name, r in results.items():
        wl = read_json(os.path.join(out, name, "workload.json"))
        for row in r["rows"]:
            all_rows.append({"workload": name, "data": data_label(wl["config"]["data"]),
                             "loss": wl["loss"], **row})
    cfg = suite["config"]
    nb = cfg.get("bootstrap", 1000) if n_boot is None else n_boot
    level = cfg.get("level", 0.9)
    predictors = []
    groups = {}
    for row in all_rows:
        groups.setdefault((row["data"], row["loss"]), []).append(row)
    for (data, loss), rows in groups.items():
        predictors += [{"data": data, "loss": loss, **p}
                       for p in predictor_table(rows, n_boot=nb, level=level)]
    v = verdict(trends)
    _write_csv(os.path.join(out, "analysis.csv"), all_rows, SUITE_COLUMNS)
    write_json_atomic(os.path.join(out, "analysis.json"), {
        "trends": trends, "predictors": predictors, "verdict": v, "rows": all_rows,
        "workloads": list(results), "missing_workloads": missing, "bootstrap": nb,
        "level": level, "epsilon": cfg.get("epsilon"), "delta": cfg.get("delta")})
    figs = _suite_figures(out, groups)
    md = _suite_markdown(out, suite, results, trends, predictors, v, figs, missing, command)
    write_text_atomic(os.path.join(out, "report.md"), md)
    return {"rows": all_rows, "verdict": v, "figures": figs, "trends": trends,
            "predictors": predictors, "report": os.path.join(out, "report.md")}


def _suite_figures(out, groups):
    from . import _plots

    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    for (data, loss), rows in groups.items():
        def draw(axes, rows=rows):
            for ax, (name, (key, _)) in zip(axes, PREDICTORS.items()):
                _plots.plot_predictor(ax, rows, key, name)

        made.append(_figure(fig_dir, f"predictors_{data}-{loss}", draw,
                            (4.2 * len(PREDICTORS), 4.2), ncols=len(PREDICTORS),
                            title=f"{data}, {loss}: predicted vs observed (every net)"))
    return made


def _trend_table(trends, with_workload: bool) -> list[str]:
    L = []
    head = "| data | loss | arch | " if with_workload else "| "
    L.append(head + "family | nets | slope of log B_crit | interval | verdict on C2 | why |")
    L.append("|" + "---|" * (9 if with_workload else 6))
    for t in trends:
        ci = ("–" if t["ci_low"] is None else f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]")
        slope = "–" if t["slope"] is None else f"{t['slope']:+.3f} per {t['axis']}"
        pre = f"| {t['data']} | {t['loss']} | {t['arch']} | " if with_workload else "| "
        L.append(pre + f"{t['family']} | {len(t['nets'])}/{len(t['members'])} | {slope} | "
                 f"{ci} | **{t['verdict']}** | {t.get('reason', '')} |")
    return L


def _predictor_lines(preds, with_data: bool) -> list[str]:
    L = []
    head = "| data | loss | " if with_data else "| "
    L.append(head + "predictor | nets | Spearman ρ vs B_crit [interval] | observed B_crit / "
             "predicted: median [min, max] | predicted ≤ largest useful batch | largest useful "
             "/ predicted (median) |")
    L.append("|" + "---|" * (8 if with_data else 6))
    for p in preds:
        rho = "–" if p["spearman"] is None else (
            f"{p['spearman']:+.2f}" + ("" if p["spearman_ci_low"] is None else
                                        f" [{p['spearman_ci_low']:+.2f}, "
                                        f"{p['spearman_ci_high']:+.2f}]"))
        ratio = "–" if p["ratio_median"] is None else (
            f"{p['ratio_median']:.3g} [{p['ratio_min']:.3g}, {p['ratio_max']:.3g}]")
        held = "–" if p["lower_bound_held"] is None else f"{p['lower_bound_held']:.0%}"
        pre = f"| {p['data']} | {p['loss']} | " if with_data else "| "
        L.append(pre + f"{p['predictor']} | {p['nets']} | {rho} | {ratio} | {held} | "
                 f"{_fmt(p['looseness_median'])} |")
    L.append("")
    L.append("Predictors: " + "; ".join(f"**{k}**: {d}" for k, (_, d) in PREDICTORS.items())
             + ". Nets whose fitted B_crit lies beyond the batches tried are left out.")
    return L


def _suite_markdown(out, suite, results, trends, predictors, v, figs, missing, command):
    L = [f"# Width, depth and the largest useful batch — suite "
         f"{os.path.basename(os.path.normpath(out))}", ""]
    L += ["## Verdict on C2 per data set, loss, architecture and family", ""]
    L.append(v["text"])
    L.append("")
    L += _trend_table(trends, True)
    L += ["", "C2 predicts a positive slope against log K (width family) and a negative one "
          "against L (depth family, and along the fixed-budget family, where K shrinks as L "
          "grows). Intervals: percentile bootstrap over seeds (each net's seeds resampled, lr "
          "choice and fit redone), level " + f"{suite['config'].get('level', 0.9):.0%}" +
          "; they cover seed-to-seed noise only, not the 10% quantisation of steps-to-target "
          "by the evaluation grid or the choice of target.", ""]
    L += ["## Predictors of the critical batch (every net of a data set and loss)", ""]
    L += _predictor_lines(predictors, True)
    L += ["", "## Workloads", ""]
    for name, r in results.items():
        L.append(f"- [{name}]({name}/report.md): {len(r['rows'])} nets")
    if missing:
        L.append(f"- not finished (no trial yet): {', '.join(missing)}")
    L += ["", "## Figures", ""]
    for f in figs:
        stem = os.path.splitext(os.path.basename(f))[0]
        L += [f"![{stem}](figures/{stem}.png)", "", f"*{stem}: each predictor against the "
              f"observed critical batch (circles, bootstrap interval) and the largest useful "
              f"batch (squares); y = x.* ([PDF](figures/{stem}.pdf))", ""]
    L += _reproduce(out, suite.get("command"), command)
    return "\n".join(L)


def _markdown(out, res, v, figs, command) -> str:
    wl, archs, trials, rows = res["workload"], res["archs"], res["trials"], res["rows"]
    cfg, data = wl["config"], wl["data"]
    metric, target = wl["target_metric"], wl["target"]
    rel = {"accuracy": ">=", "loss": "<=",
           "relative_loss": "<= best constant predictor's loss ×"}[metric]
    L = []
    L.append(f"# Width, depth and the largest useful batch — {os.path.basename(os.path.normpath(out))}")
    L.append("")
    L.append("## Verdict")
    L.append("")
    L.append(v["text"])
    L.append("")
    L += _trend_table(res["trends"], False)
    L.append("")
    L.append("## Workload")
    L.append("")
    L.append(f"- data: {data['description']} ({data['task']})")
    L.append(f"- loss: {wl['loss']}; optimiser: {wl['optimizer']}; dtype {cfg['dtype']}")
    L.append(f"- target: training {metric} {rel} {target:g}, checked on the whole training set "
             f"at log-spaced steps (ratio {cfg['eval_growth']}: steps-to-target is exact to "
             f"that ratio)")
    grid = (f"first grid per batch size: {cfg['lrs']} "
            + (f"centred on the previous batch size's best lr moved by rule "
               f"'{cfg['lr_scaling']}'" if cfg.get("lr_center") == "previous_best" else
               f"at batch {cfg['lr_reference_batch']}, scaled by rule '{cfg['lr_scaling']}'")
            + (f", extended by two grid points beyond an edge optimum up to "
               f"{cfg['lr_extend']} times per side" if cfg.get("lr_extend") else ""))
    L.append(f"- batch sizes {wl['batch_sizes']}"
             + (f" (skipped, larger than n: {wl['skipped_batch_sizes']})"
                if wl["skipped_batch_sizes"] else "")
             + f"; learning rates: {grid}; seeds {list(range(cfg['seeds']))}; step cap "
               f"{cfg['max_steps']}")
    L.append("- batches drawn uniformly with replacement; all (lr × seed) trials of one batch "
             "size trained together in one compiled, vmapped step")
    L.append(f"- ε = {cfg['epsilon']} (largest useful batch: epochs within (1+ε)× the best), "
             f"δ = {cfg['delta']} (predicted max batch δ·B_S + 1), bootstrap resamples "
             f"{res['n_boot']} over seeds ({res['level']:.0%} percentile intervals)")
    L.append("")
    L.append("Families (a net in two families is trained once):")
    L.append("")
    for fam, members in res["families"].items():
        L.append(f"- **{fam}**: " + ", ".join(members))
    L.append("")
    L.append("| arch | depth L | width K | params | families |")
    L.append("|---|---:|---:|---:|---|")
    for r in rows:
        L.append(f"| {r['arch_id']} | {r['depth']} | {r['width']} | {r['params']} | "
                 f"{', '.join(r['families'])} |")
    L.append("")
    L.append("## Predicted vs observed")
    L.append("")
    L.append(f"| arch | observed B_crit [{res['level']:.0%} CI] | largest useful batch | "
             "δ·E[B_S]+1 (init, Monte Carlo) | along run | B_simple at target | theory "
             "δ·B̄_S+1 (kind) | trials (reached / unreached / infeasible) |")
    L.append("|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        ci = (f" [{_fmt(r['B_crit_lo'])}, {_fmt(r['B_crit_hi'])}]"
              if r["B_crit_lo"] is not None else "")
        edge = {"low": " (beyond the batches tried)", "high": " (below the batches tried)"}.get(
            r["fit_edge"], "")
        th = (f"{_fmt(r['predicted_max_batch_theory'])} ({r['theory_kind']})"
              if r["predicted_max_batch_theory"] is not None
              else f"not covered ({r['theory_note']})")
        L.append(f"| {r['arch_id']} | {_fmt(r['observed_B_crit'])}{ci}{edge} | "
                 f"{_fmt(r['observed_max_batch'])}{'+' if r['max_batch_lower_bound'] else ''} | "
                 f"{_fmt(r['predicted_max_batch'])} | {_fmt(r['predicted_max_batch_run'])} | "
                 f"{_fmt(r['B_simple_at_target'])} | {th} | {r['trials']} ({r['reached']} / "
                 f"{r['unreached']} / {r['infeasible']}) |")
    L.append("")
    L += _predictor_lines(res["predictors"], False)
    L.append("")
    L.append("B_S here is the batch-size bound n·S1/S2 of the whole training set for the "
             "training loss: at initialisation it is the Monte Carlo mean E[B_S] over "
             f"{_first(archs, ['training_loss', 'samples'])} random inits; 'along run' averages "
             "it over the power-of-two checkpoints of the best-lr trials at the smallest batch "
             "size that reached the target, up to the target; 'B_simple at target' is "
             "McCandlish's simple noise scale (plug-in, B_S − 1) of the training set where "
             "those trials first reached the target. Theory's B̄_S (ratio of expectations over "
             "random inits) is for the training loss where theory covers it (its kind: exact, "
             "approximation or limit).")
    notes = [r for r in rows if r["lr_at_edge"]]
    if notes:
        L.append("")
        L.append("Best learning rate still at the edge of the grid tried (after any "
                 "extension; treat those steps as upper bounds): "
                 + "; ".join(f"{r['arch_id']} at batch {_fmt(r['lr_at_edge'])}" for r in notes)
                 + ".")
    ext = [st for st in res["studies"] if st.get("extensions")]
    studies = [st for by_m in res["table"].values() for st in by_m.values()]
    if res["studies"]:
        L.append("")
        L.append(f"Learning-rate grid extensions: {len(ext)} of {len(res['studies'])} studies "
                 f"extended their grid (each extension is recorded in its `study.json`). "
                 f"After extension, {sum(st['lr_at_edge'] for st in studies)} studies have their "
                 f"best lr at an edge of the grid tried and "
                 f"{sum(st['best_lr'] is None for st in studies)} have no lr that reached the "
                 f"target with every seed.")
    L.append("")
    L.append("## Studies (best learning rate per batch size)")
    L.append("")
    table = res["table"]
    L.append("| arch | batch | best lr | lrs tried | steps to target | epochs | reached | "
             "unreached | infeasible |")
    L.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for m, st in sorted(table[r["arch_id"]].items()):
            L.append(f"| {r['arch_id']} | {m} | {_fmt(st['best_lr'])} | "
                     f"{', '.join(f'{x:g}' for x in st['lrs'])} | {_fmt(st['steps'])} | "
                     f"{_fmt(st['epochs'])} | {st['REACHED']} | {st['UNREACHED']} | "
                     f"{st['INFEASIBLE']} |")
    bad = [t for t in trials if t["status"] in (INFEASIBLE, UNREACHED)]
    L.append("")
    L.append(f"Infeasible (diverged, NaN/inf) trials: "
             f"{sum(t['status'] == INFEASIBLE for t in trials)}; unreached trials: "
             f"{sum(t['status'] == UNREACHED for t in trials)} of {len(trials)}. "
             "Every one is kept in the trial records with its `status` and `stop_reason`.")
    never = [r["arch_id"] for r in rows if r["reached"] == 0]
    if never:
        L.append("")
        L.append(f"Never reached the target at any batch size or learning rate: "
                 f"{', '.join(never)} (the target may be beyond what these nets fit within "
                 f"{cfg['max_steps']} steps).")
    if bad:
        L.append("")
        L.append("<details><summary>infeasible and unreached trials</summary>")
        L.append("")
        for t in sorted(bad, key=lambda t: (t["depth"], t["width"], t["batch_size"], t["lr"],
                                            t["seed"])):
            L.append(f"- {t['arch_id']} batch {t['batch_size']} lr {t['lr']:g} seed "
                     f"{t['seed']}: {t['status']} ({t['stop_reason']}, "
                     f"{t['steps_run']} steps)")
        L.append("")
        L.append("</details>")
    L.append("")
    L.append("## Figures")
    L.append("")
    captions = {
        "steps_vs_batch": "Steps to target vs batch size (log2 axes); dotted: perfect scaling "
                          "from the smallest batch; dashed: fitted S_min(1 + B_crit/m).",
        "epochs_vs_batch": "Epochs to target vs batch size.",
        "bcrit_vs_width": "Observed B_crit vs width (width family) with the fitted trend.",
        "bcrit_vs_depth": "Observed B_crit vs depth (depth family) with the fitted trend.",
        "bcrit_vs_depth_budget": "Observed B_crit vs depth at a fixed parameter budget.",
        "predicted_vs_observed": "Predicted maximum batch δ·B_S+1 vs observed critical batch "
                                 "(with bootstrap interval) and largest useful batch; y = x.",
        "bs_along_training": "B_S of the training set along the best small-batch runs.",
        "theory_mc_training": "Theory vs Monte Carlo vs training for the parameter-budget "
                              "family.",
    }
    for f in figs:
        stem = os.path.splitext(os.path.basename(f))[0]
        base = next((k for k in sorted(captions, key=len, reverse=True)
                     if stem.startswith(k)), stem)
        fam = stem[len(base) + 1:] if stem != base and base.endswith("batch") else ""
        L.append(f"![{stem}](figures/{stem}.png)")
        L.append("")
        L.append(f"*{(fam + ' family: ') if fam else ''}{captions.get(base, stem)}* "
                 f"([PDF](figures/{stem}.pdf))")
        L.append("")
    L.append("## Files")
    L.append("")
    L.append("- `trials/<arch>/bs<m>/lr<lr>-seed<s>.json`: one record per trial; "
             "`trials/<arch>/bs<m>/study.json`: the learning rates tried; "
             "`archs/<arch>.json`: B_S at initialisation; `theory/<arch>.json`: theory's "
             "prediction (cached); `analysis.csv` / `analysis.json`: the tables above; "
             "`workload.json`, `config.toml`: the exact workload.")
    L.append("")
    L += _reproduce(out, wl.get("command"), command)
    sv, rv = wl.get("versions", {}), versions()
    L.append(f"Sweep ran with Python {sv.get('python')}, jax {sv.get('jax')}, optax "
             f"{sv.get('optax')}, numpy {sv.get('numpy')} on {sv.get('platform')} "
             f"({', '.join(sv.get('devices', []))}); report made with matplotlib "
             f"{rv['matplotlib']}, Python {platform.python_version()}.")
    L.append("")
    return "\n".join(L)


def _reproduce(out, sweep_command, command) -> list[str]:
    """The Reproduce section: the sweep's recorded command, the report command, wall times."""
    L = ["## Reproduce", "", "```"]
    if sweep_command:
        L.append(sweep_command.strip())
    L += [(command or f"python -m experiments.report {out}").strip(), "```", ""]
    tpath = os.path.join(out, "timing.json")
    if os.path.exists(tpath):
        parts = []
        for r in read_json(tpath)["runs"]:
            if r.get("jobs"):
                what = f"{r['jobs']} processes: {', '.join(r.get('workloads', []))}"
            else:
                what = f"{r['trials_run']} trials run, {r['trials_resumed']} resumed"
            parts.append(f"{r['seconds']:.0f} s ({what}; finished {r.get('finished', '?')})")
        L += ["Sweep wall time of each invocation (compilation included): "
              + "; ".join(parts) + ".", ""]
    return L


def _first(archs, path):
    for a in archs.values():
        v = a
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            return v
    return "?"


__all__ = ["write_report", "load_sweep", "analyse_workload", "CSV_COLUMNS", "TREND_KEYS",
           "PREDICTOR_KEYS"]
