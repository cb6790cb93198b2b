"""``report.md``, ``analysis.csv``, ``analysis.json`` and the figures of a finished sweep."""

from __future__ import annotations

import csv
import io
import os
import platform

from ._analysis import analyse, study_table, verdict
from ._errors import ExperimentError
from ._sweep import load_trials, read_json, versions, write_json_atomic, write_text_atomic
from ._train import INFEASIBLE, UNREACHED

CSV_COLUMNS = [
    "arch_id", "arch", "activation", "depth", "width", "params",
    "observed_B_crit", "B_crit_lo", "B_crit_hi", "S_min", "fit_points", "fit_edge",
    "observed_max_batch", "max_batch_lower_bound", "best_epochs",
    "predicted_max_batch", "predicted_max_batch_run", "predicted_max_batch_theory",
    "B_S_init", "B_S_init_ratio_of_means", "B_S_run", "theory_B_S_squared", "theory_kind",
    "theory_note", "trials", "reached", "unreached", "infeasible", "lr_at_edge",
]


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


def make_figures(out: str, trials, rows, archs) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import _plots

    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    for name, draw, size in (
        ("steps_vs_batch", lambda ax: _plots.plot_steps_vs_batch(ax, trials, rows), (6.5, 4.5)),
        ("epochs_vs_batch",
         lambda ax: _plots.plot_steps_vs_batch(ax, trials, rows, epochs=True), (6.5, 4.5)),
        ("predicted_vs_observed", lambda ax: _plots.plot_predicted_vs_observed(ax, rows),
         (6.5, 5)),
        ("bs_along_training", lambda ax: _plots.plot_bs_along_training(ax, trials, rows),
         (6.5, 4.5)),
        ("theory_mc_training", lambda ax: _plots.plot_theory_mc_training(ax, rows, archs),
         (6.5, 4.5)),
    ):
        fig, ax = plt.subplots(figsize=size)
        try:
            draw(ax)
            made.append(_plots.save(fig, os.path.join(fig_dir, name))[0])
        finally:
            plt.close(fig)
    return made


def write_report(out: str, *, n_boot: int | None = None, command: str | None = None) -> dict:
    """Analyse the sweep in ``out`` and write report.md, analysis.csv/json and figures."""
    wl, archs, trials = load_sweep(out)
    cfg = wl["config"]
    n_boot = cfg.get("bootstrap", 1000) if n_boot is None else n_boot
    rows = analyse(trials, archs, epsilon=cfg.get("epsilon", 1.0), delta=cfg.get("delta", 1.0),
                   n_boot=n_boot)
    v = verdict(rows)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in CSV_COLUMNS])
    write_text_atomic(os.path.join(out, "analysis.csv"), buf.getvalue())
    write_json_atomic(os.path.join(out, "analysis.json"),
                      {"rows": rows, "verdict": v, "epsilon": cfg.get("epsilon"),
                       "delta": cfg.get("delta"), "bootstrap": n_boot})
    figs = make_figures(out, trials, rows, archs)
    md = _markdown(out, wl, archs, trials, rows, v, figs, command)
    write_text_atomic(os.path.join(out, "report.md"), md)
    return {"rows": rows, "verdict": v, "figures": figs,
            "report": os.path.join(out, "report.md")}


def _markdown(out, wl, archs, trials, rows, v, figs, command) -> str:
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
    L.append("## Workload")
    L.append("")
    L.append(f"- data: {data['description']} ({data['task']})")
    L.append(f"- loss: {wl['loss']}; optimiser: {wl['optimizer']}; dtype {cfg['dtype']}")
    L.append(f"- target: training {metric} {rel} {target:g}, checked on the whole training set "
             f"at log-spaced steps (ratio {cfg['eval_growth']}: steps-to-target is exact to "
             f"that ratio)")
    L.append(f"- batch sizes {wl['batch_sizes']}"
             + (f" (skipped, larger than n: {wl['skipped_batch_sizes']})"
                if wl["skipped_batch_sizes"] else "")
             + f"; learning-rate grid {cfg['lrs']} at batch {cfg['lr_reference_batch']}, "
               f"scaled with batch size by rule '{cfg['lr_scaling']}'; seeds "
               f"{list(range(cfg['seeds']))}; step cap {cfg['max_steps']}")
    L.append("- batches drawn uniformly with replacement; all (lr × seed) trials of one batch "
             "size trained together in one compiled, vmapped step")
    L.append(f"- ε = {cfg['epsilon']} (largest useful batch: epochs within (1+ε)× the best), "
             f"δ = {cfg['delta']} (predicted max batch δ·B_S + 1), bootstrap resamples "
             f"{cfg['bootstrap']} over seeds (90% percentile interval)")
    L.append("")
    L.append(f"Parameter-budget family (budget P = {wl['budget']}, tolerance "
             f"{cfg['budget_tolerance']:.0%}):")
    L.append("")
    L.append("| arch | depth L | width K | params | vs budget |")
    L.append("|---|---:|---:|---:|---:|")
    for f in wl["family"]:
        L.append(f"| {f['arch_id']} | {f['depth']} | {f['width']} | {f['params']} | "
                 f"{(f['params'] - wl['budget']) / wl['budget']:+.1%} |")
    L.append("")
    L.append("## Predicted vs observed")
    L.append("")
    L.append("| arch | observed B_crit [90% CI] | largest useful batch | predicted δ·B_S+1 "
             "(init) | predicted (along run) | theory δ·B̄_S+1 | trials (reached / "
             "unreached / infeasible) |")
    L.append("|---|---|---:|---:|---:|---|---|")
    for r in rows:
        ci = (f" [{_fmt(r['B_crit_lo'])}, {_fmt(r['B_crit_hi'])}]"
              if r["B_crit_lo"] is not None else "")
        edge = {"low": " (beyond the batches tried)", "high": " (below the batches tried)"}.get(
            r["fit_edge"], "")
        th = (_fmt(r["predicted_max_batch_theory"]) if r["predicted_max_batch_theory"]
              is not None else "not covered")
        L.append(f"| {r['arch_id']} | {_fmt(r['observed_B_crit'])}{ci}{edge} | "
                 f"{_fmt(r['observed_max_batch'])}{'+' if r['max_batch_lower_bound'] else ''} | "
                 f"{_fmt(r['predicted_max_batch'])} | {_fmt(r['predicted_max_batch_run'])} | "
                 f"{th} | {r['trials']} ({r['reached']} / {r['unreached']} / "
                 f"{r['infeasible']}) |")
    L.append("")
    L.append(f"Spearman rank correlations across architectures: width vs observed B_crit "
             f"{_fmt(v['rho_width_Bcrit'], 2)}, width vs largest useful batch "
             f"{_fmt(v['rho_width_maxbatch'], 2)}, predicted (init) vs observed B_crit "
             f"{_fmt(v['rho_pred_obs_Bcrit'], 2)}, predicted vs largest useful batch "
             f"{_fmt(v['rho_pred_obs_maxbatch'], 2)}.")
    L.append("")
    L.append("B_S here is the batch-size bound n·S1/S2 of the whole training set for the "
             "training loss: at initialisation it is the Monte Carlo mean E[B_S] over "
             f"{_first(archs, ['training_loss', 'samples'])} random inits; 'along run' averages "
             "it over the log-spaced checkpoints of the best-lr trials at the smallest batch "
             "size that reached the target. Theory's B̄_S (ratio of expectations) is for the "
             "squared loss; it predicts the training run only when training uses that loss "
             "(otherwise 'not covered', and the theory/Monte Carlo comparison is in the last "
             "figure).")
    notes = [r for r in rows if r["lr_at_edge"]]
    if notes:
        L.append("")
        L.append("Best learning rate at the edge of its grid (the optimum may lie outside; "
                 "treat those steps as upper bounds): "
                 + "; ".join(f"{r['arch_id']} at batch {_fmt(r['lr_at_edge'])}" for r in notes)
                 + ".")
    L.append("")
    L.append("## Studies (best learning rate per batch size)")
    L.append("")
    table = study_table(trials)
    L.append("| arch | batch | best lr | steps to target | epochs | reached | unreached | "
             "infeasible |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for m, st in sorted(table[r["arch_id"]].items()):
            L.append(f"| {r['arch_id']} | {m} | {_fmt(st['best_lr'])} | {_fmt(st['steps'])} | "
                     f"{_fmt(st['epochs'])} | {st['REACHED']} | {st['UNREACHED']} | "
                     f"{st['INFEASIBLE']} |")
    bad = [t for t in trials if t["status"] in (INFEASIBLE, UNREACHED)]
    L.append("")
    L.append(f"Infeasible (diverged, NaN/inf) trials: "
             f"{sum(t['status'] == INFEASIBLE for t in trials)}; unreached trials: "
             f"{sum(t['status'] == UNREACHED for t in trials)} of {len(trials)}. "
             "Every one is kept in the trial records with its `status` and `stop_reason`.")
    if bad:
        L.append("")
        L.append("<details><summary>infeasible and unreached trials</summary>")
        L.append("")
        for t in sorted(bad, key=lambda t: (t["depth"], t["batch_size"], t["lr"], t["seed"])):
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
        "predicted_vs_observed": "Predicted maximum batch δ·B_S+1 vs observed critical batch "
                                 "(with bootstrap interval) and largest useful batch; y = x.",
        "bs_along_training": "B_S of the training set along the best small-batch runs.",
        "theory_mc_training": "Theory vs Monte Carlo vs training for the parameter-budget "
                              "family.",
    }
    for f in figs:
        stem = os.path.splitext(os.path.basename(f))[0]
        L.append(f"![{stem}](figures/{stem}.png)")
        L.append("")
        L.append(f"*{captions.get(stem, stem)}* ([PDF](figures/{stem}.pdf))")
        L.append("")
    L.append("## Files")
    L.append("")
    L.append("- `trials/<arch>/bs<m>/lr<lr>-seed<s>.json`: one record per trial; "
             "`archs/<arch>.json`: B_S at initialisation and theory; `analysis.csv` / "
             "`analysis.json`: the table above; `workload.json`, `config.toml`: the exact "
             "workload.")
    L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("```")
    if wl.get("command"):
        L.append(wl["command"].strip())
    L.append((command or f"python -m experiments.report {out}").strip())
    L.append("```")
    L.append("")
    tpath = os.path.join(out, "timing.json")
    if os.path.exists(tpath):
        runs = read_json(tpath)["runs"]
        L.append("Sweep wall time (compilation included): " + "; ".join(
            f"{r['seconds']:.0f} s ({r['trials_run']} trials run, {r['trials_resumed']} "
            f"resumed)" for r in runs) + ".")
        L.append("")
    sv, rv = wl.get("versions", {}), versions()
    L.append(f"Sweep ran with Python {sv.get('python')}, jax {sv.get('jax')}, optax "
             f"{sv.get('optax')}, numpy {sv.get('numpy')} on {sv.get('platform')} "
             f"({', '.join(sv.get('devices', []))}); report made with matplotlib "
             f"{rv['matplotlib']}, Python {platform.python_version()}.")
    L.append("")
    return "\n".join(L)


def _first(archs, path):
    for a in archs.values():
        v = a
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            return v
    return "?"


__all__ = ["write_report", "load_sweep", "CSV_COLUMNS"]
