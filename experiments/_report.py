"""``report.md``, ``analysis.csv``, ``analysis.json`` and the figures of a finished sweep.

One workload folder gets its own report; a suite folder (``suite.json``, the C2 study) gets one
report per workload plus a suite report. Every ``analysis.json`` (suite or single workload)
holds what scripts read:

* ``trends``: one object per data, loss, arch, optimizer, parametrisation, family, target
  and full-batch variant: ``target_metric``, ``target``, ``full_batch_point``, ``slope``,
  ``ci_low``, ``ci_high``, ``p``, ``p_adjusted`` (Holm over every row of the file),
  ``q_bh``, ``verdict``, ``primary`` (the pre-declared primary analysis: primary target,
  full-batch point included where tried);
* ``matched``: the width / depth / budget effect on log B_crit at matched training loss
  (``data, loss, arch, optimizer, parametrisation, factor, coef, ci_low, ci_high``, ...);
  ``matched_accuracy``: the same at matched training accuracy;
* ``predictors``: per data, loss, optimizer, parametrisation, target and predictor:
  Spearman ρ with its interval, ratio observed / predicted, ``lower_bound_held`` over the
  ``lower_bound_nets`` where it could fail;
* ``calibration``: ``{nominal, coverage, pairs, ...}`` against a repeat (``--repeat DIR``),
  None without one;
* ``net_rows``: B_crit per net, target and full-batch variant with its intervals.
"""

from __future__ import annotations

import csv
import io
import os
import platform

from ._analysis import PREDICTORS, Analysis, SuiteAnalysis, analyse
from ._fit import target_key
from ._records import INFEASIBLE, UNREACHED, read_json, versions, write_json_atomic, \
    write_text_atomic

CSV_COLUMNS = [
    "arch_id", "arch", "activation", "depth", "width", "params", "target_metric", "target",
    "full_batch_point", "main_variant", "B_crit", "ci_low", "ci_high", "repro_low",
    "repro_high", "se_log",
    "S_min", "rmse_log", "points", "at_edge", "seeds", "observed_max_batch",
    "max_batch_lower_bound", "best_epochs", "pred_theory_init", "pred_mc_init",
    "pred_run_to_target", "pred_B_simple_at_target", "theory_kind", "families",
]
TAGS = ["workload", "data", "loss", "arch", "optimizer", "parametrisation"]
SUITE_COLUMNS = TAGS[:3] + ["optimizer", "parametrisation"] + CSV_COLUMNS
TREND_KEYS = ["data", "loss", "arch", "optimizer", "parametrisation", "family",
              "target_metric", "target", "full_batch_point", "nets", "slope", "ci_low",
              "ci_high", "p", "p_adjusted", "verdict"]
PREDICTOR_KEYS = ["data", "loss", "optimizer", "parametrisation", "target_metric", "target",
                  "predictor", "nets", "spearman", "spearman_ci_low", "spearman_ci_high",
                  "ratio_median", "lower_bound_held", "lower_bound_nets"]


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


def _csv_rows(net_rows_):
    out = []
    for r in net_rows_:
        row = {k: v for k, v in r.items() if k not in ("loo", "predicted")}
        for k, v in r.get("predicted", {}).items():
            row[f"pred_{k}"] = v
        out.append(row)
    return out


def _write_csv(path, rows, columns):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in columns])
    write_text_atomic(path, buf.getvalue())


def write_report(out: str, *, n_boot: int | None = None, command: str | None = None,
                 progress: bool = False, repeat: str | None = None,
                 reference: list | None = None) -> dict:
    """Analyse the sweep (or suite) in ``out`` once (:func:`experiments._analysis.analyse`)
    and write report.md, analysis.csv/json and the figures from that analysis.

    ``repeat``: a second run of (some of) the same workloads under other seeds (and so other
    lr-grid shifts); its nets give the calibration of the intervals. ``reference``: further
    workload folders analysed with the suite (e.g. the axes suite's SGD/standard baseline,
    which is the decisive suite's workload)."""
    from . import _plots  # matplotlib: only when a report is written

    a = analyse(out, n_boot=n_boot, progress=progress, repeat=repeat,
                reference=reference or [])
    if isinstance(a, SuiteAnalysis):
        # each workload's own files, with the suite-wide adjustment (a reference folder
        # belongs to another run: it is read, never written)
        for wa in a.workloads.values():
            if os.path.normpath(wa.out) not in a.references:
                _write_workload(wa, _plots, f"python -m experiments.report {out}")
        os.makedirs(out, exist_ok=True)
        _write_analysis(out, a, extra={"workloads": list(a.workloads),
                                       "missing_workloads": a.missing})
        figs = _plots.suite_figures(a)
        md = _suite_markdown(a, figs, command)
    else:
        figs = _write_workload(a, _plots, command)
        md = None
    if md is not None:
        write_text_atomic(os.path.join(out, "report.md"), md)
    return {"rows": a.rows, "verdict": a.verdict, "figures": figs, "trends": a.trends,
            "predictors": a.predictors, "report": os.path.join(out, "report.md"),
            "calibration": a.calibration, "res": a, "analysis": a}


def _write_workload(a: Analysis, _plots, command) -> list[str]:
    """One workload folder's analysis files, figures and report.md; returns the figures."""
    _write_analysis(a.out, a)
    figs = _plots.workload_figures(a)
    write_text_atomic(os.path.join(a.out, "report.md"), _markdown(a, figs, command))
    return figs


def _write_analysis(out, a, extra=None):
    _write_csv(os.path.join(out, "analysis.csv"), _csv_rows(a.net_rows),
               SUITE_COLUMNS if extra else CSV_COLUMNS)
    cfg = a.config if isinstance(a, SuiteAnalysis) else a.workload.get("config", {})
    write_json_atomic(os.path.join(out, "analysis.json"), {
        "trends": a.trends, "matched": a.matched,
        "matched_accuracy": a.matched_accuracy, "predictors": a.predictors,
        "calibration": a.calibration, "verdict": a.verdict, "rows": a.rows,
        "net_rows": a.net_rows, "epsilon": cfg.get("epsilon"), "delta": cfg.get("delta"),
        "bootstrap": a.n_boot, "level": a.level, **(extra or {})})


def _p(v):
    return "–" if v is None else (f"{v:.2g}" if v >= 1e-3 else f"{v:.1e}")


def _ci(lo, hi, fmt="+.3f"):
    return "–" if lo is None else f"[{lo:{fmt}}, {hi:{fmt}}]"


def _trend_table(trends_, with_workload: bool) -> list[str]:
    L = []
    head = "| data | arch | optimizer | param. | " if with_workload else "| "
    L.append(head + "family | target | full batch | nets | slope of log B_crit | "
                    "interval | p | Holm p | verdict on C2 |")
    L.append("|" + "---|" * (13 if with_workload else 9))
    for t in trends_:
        slope = "–" if t["slope"] is None else f"{t['slope']:+.3f} per {t['axis']}"
        pre = (f"| {t['data']} | {t['arch']} | {t['optimizer']} | {t['parametrisation']} | "
               if with_workload else "| ")
        L.append(pre + f"{t['family']} | {t['target_key']} | "
                 f"{'with' if t['full_batch_point'] else 'without'} | "
                 f"{len(t['nets'])}/{len(t['members'])} | {slope} | "
                 f"{_ci(t['ci_low'], t['ci_high'])} | {_p(t['p'])} | "
                 f"{_p(t.get('p_adjusted'))} | **{t['verdict']}** |")
    return L


def _matched_table(matched, with_workload: bool) -> list[str]:
    L = []
    head = "| data | arch | optimizer | param. | " if with_workload else "| "
    L.append(head + "factor | matched on | targets | points | effect on log B_crit | "
                    "interval | p | Holm p |")
    L.append("|" + "---|" * (12 if with_workload else 8))
    for m in matched:
        pre = (f"| {m['data']} | {m['arch']} | {m['optimizer']} | {m['parametrisation']} | "
               if with_workload else "| ")
        coef = "–" if m["coef"] is None else f"{m['coef']:+.3f} per {m['axis']}"
        L.append(pre + f"{m['factor']} | training {m['matched_on']} | "
                 f"{', '.join(t.split(':')[1] for t in m['targets']) or '–'} | {m['points']} | "
                 f"{coef} | {_ci(m['ci_low'], m['ci_high'])} | {_p(m['p'])} | "
                 f"{_p(m.get('p_adjusted'))} |")
    return L


def _predictor_lines(preds, with_data: bool) -> list[str]:
    L = []
    head = "| data | arch | optimizer | param. | " if with_data else "| "
    L.append(head + "target | predictor | nets | Spearman ρ vs B_crit [interval] | "
             "observed B_crit / predicted: median [min, max] | predicted ≤ largest useful "
             "batch (nets where it could fail) |")
    L.append("|" + "---|" * (9 if with_data else 5))
    for p in preds:
        rho = "–" if p["spearman"] is None else (
            f"{p['spearman']:+.2f}" + ("" if p["spearman_ci_low"] is None else
                                        f" [{p['spearman_ci_low']:+.2f}, "
                                        f"{p['spearman_ci_high']:+.2f}]"))
        ratio = "–" if p["ratio_median"] is None else (
            f"{p['ratio_median']:.3g} [{p['ratio_min']:.3g}, {p['ratio_max']:.3g}]")
        held = ("– (0)" if p["lower_bound_held"] is None else
                f"{p['lower_bound_held']:.0%} ({p['lower_bound_nets']})")
        pre = (f"| {p['data']} | {p['arch']} | {p['optimizer']} | {p['parametrisation']} | "
               if with_data else "| ")
        L.append(pre + f"{p['target_metric']}:{p['target']:g} | {p['predictor']} | "
                 f"{p['nets']} | {rho} | {ratio} | {held} |")
    L.append("")
    L.append("Predictors: " + "; ".join(f"**{k}**: {d}" for k, d in PREDICTORS.items())
             + ". Nets whose fitted B_crit lies beyond the batches tried are left out; the "
               "lower-bound frequency counts only nets whose prediction is at least the "
               "smallest batch tried (below it the check cannot fail).")
    return L


def _calibration_lines(cal) -> list[str]:
    if not cal:
        return ["No repeat was given (`--repeat DIR`): the intervals are not calibrated here."]
    cov = "–" if cal["coverage"] is None else f"{cal['coverage']:.2f}"
    ci = "–" if cal["ci_coverage"] is None else f"{cal['ci_coverage']:.2f}"
    return [f"Calibration against an independent repeat (other seeds, so other lr-grid "
            f"shifts and batch orders): of {cal['pairs']} (net, target, full-batch variant) "
            f"pairs over {cal['nets']} nets, **{cov}** of the repeats fall inside the first "
            f"run's {cal['nominal']:.0%} reproduction interval (right intervals give about "
            f"{cal['nominal']:.2f}); {ci} fall inside its {cal['nominal']:.0%} confidence "
            f"interval (for exact intervals that is only about {cal['ci_expected']:.2f}, since "
            f"the repeat is noisy too). Pairs share nets across targets, so they are not "
            f"independent: the net count is the effective sample size's upper end."]


SECTION_NOTES = ("Every interval is a jackknife over seeds (leave one seed out, Student t with "
                 "seeds − 1 degrees of freedom). Each seed is an independent replicate of the "
                 "whole protocol — initial weights, batch order and its own shift of the "
                 "learning-rate grid, with the lr chosen per seed — so the intervals carry seed "
                 "noise, the fit residuals and the lr grid's resolution. Holm's adjustment runs "
                 "over every trend row of the file (every family × target × full-batch variant"
                 "); a verdict needs Holm p < 1 − level. Steps-to-target are quantised by the "
                 "evaluation grid (10% apart); targets other than the primary one are read off "
                 "curves of runs whose learning-rate grid was tuned for the primary target.")


def _suite_markdown(res: SuiteAnalysis, figs, command):
    out, suite, v, cal, missing = res.out, res.suite, res.verdict, res.calibration, res.missing
    L = [f"# Width, depth and the largest useful batch — suite "
         f"{os.path.basename(os.path.normpath(out))}", ""]
    L += ["## Verdict on C2 (primary analysis)", "", v["text"], ""]
    prim = [t for t in res.trends if t["primary"]]
    L += _trend_table(prim, True)
    L += ["", "C2 predicts a positive slope against log K (width family) and a negative one "
          "against L (depth family, and along the fixed-budget family, where K shrinks as L "
          "grows). " + SECTION_NOTES, ""]
    L += ["## Matched progress: the width and depth effect at equal training loss", ""]
    L += _matched_table(res.matched, True)
    L += ["", "Each row is the common slope of log B_crit within each training-loss target "
          "(each target its own intercept): if B_crit depended on the loss reached alone, "
          "these would be 0. Holm's adjustment runs over the matched rows (loss and accuracy "
          "together). The same at matched training accuracy:", ""]
    L += _matched_table(res.matched_accuracy, True)
    L += ["", "## Calibration of the intervals", ""] + _calibration_lines(cal) + [""]
    L += ["## Every trend (each target, with and without the full-batch point)", "",
          "<details><summary>table</summary>", ""]
    L += _trend_table(res.trends, True)
    L += ["", "</details>", ""]
    L += ["## Predictors of the critical batch, per target", "",
          "<details><summary>table</summary>", ""]
    L += _predictor_lines(res.predictors, True)
    L += ["", "</details>", "", "## Workloads", ""]
    for name, r in res.workloads.items():
        rel = os.path.relpath(os.path.join(r.out, "report.md"), out)
        L.append(f"- [{name}]({rel}): {len(r.rows)} nets, {len(r.seeds)} seeds, "
                 f"targets {', '.join(target_key(*t) for t in r.targets)}")
    if missing:
        L.append(f"- not finished (no trial yet): {', '.join(missing)}")
    L += ["", "## Figures", ""]
    for f in figs:
        stem = os.path.splitext(os.path.basename(f))[0]
        L += [f"![{stem}](figures/{stem}.png)", "", f"*{stem}: each predictor against the "
              f"observed critical batch (circles, jackknife interval) and the largest useful "
              f"batch (squares) at the primary target; y = x.* ([PDF](figures/{stem}.pdf))",
              ""]
    L += _reproduce(out, suite.get("command"), command)
    return "\n".join(L)


def _markdown(res: Analysis, figs, command) -> str:
    out, v, cal = res.out, res.verdict, res.calibration
    wl, trials, rows = res.workload, res.trials, res.rows
    cfg, data = wl["config"], wl["data"]
    metric, target = wl["target_metric"], wl["target"]
    rel = {"accuracy": ">=", "loss": "<=",
           "relative_loss": "<= best constant predictor's loss ×"}[metric]
    L = [f"# Width, depth and the largest useful batch — "
         f"{os.path.basename(os.path.normpath(out))}", ""]
    L += ["## Verdict (primary analysis)", "", v["text"], ""]
    L += _trend_table([t for t in res.trends if t["primary"]], False)
    L += ["", SECTION_NOTES]
    if len(res.seeds) < 3:
        L += ["", f"**{len(res.seeds)} seed(s): the intervals have "
              f"{max(len(res.seeds) - 1, 0)} degree(s) of freedom and are not reliable** "
              "(a jackknife from two leave-one-out fits can be very wide or spuriously "
              "narrow); use at least 3 seeds, 5 to decide (`--seeds`)."]
    L += ["", "## Matched progress", ""]
    L += _matched_table(res.matched, False)
    L += [""] + _matched_table(res.matched_accuracy, False)
    if cal is not None:
        L += ["", "## Calibration", ""] + _calibration_lines(cal)
    L += ["", "## Workload", ""]
    L.append(f"- data: {data['description']} ({data['task']})")
    L.append(f"- loss: {wl['loss']}; optimiser: "
             f"{wl.get('optimizer_description', wl['optimizer'])}; parametrisation "
             f"{cfg.get('parametrisation', 'standard')}"
             + (f" (base width {wl.get('mup_base_width')})" if wl.get("mup_base_width")
                else "") + f"; dtype {cfg['dtype']}")
    L.append(f"- primary target: training {metric} {rel} {target:g} (trials stop there); "
             f"every target: {', '.join(target_key(*t) for t in res.targets)}, checked on "
             f"the whole training set at log-spaced steps (ratio {cfg['eval_growth']})")
    L.append(f"- batch sizes {wl['batch_sizes']}; seeds {res.seeds} (lr grid shifted per "
             f"seed: {'yes' if cfg.get('lr_jitter') else 'no'}); first lr grid {cfg['lrs']}, "
             f"then centred on the previous batch size's best moved by rule "
             f"'{cfg['lr_scaling']}', extended beyond an edge optimum up to "
             f"{cfg.get('lr_extend', 0)} times per side; step cap {cfg['max_steps']}")
    L.append(f"- ε = {cfg['epsilon']} (largest useful batch: epochs within (1+ε)× the best), "
             f"δ = {cfg['delta']} (predicted max batch δ·B_S + 1)")
    L.append("")
    for fam, members in res.families.items():
        L.append(f"- **{fam}** family: " + ", ".join(members))
    L += ["", "## Critical batch per net (primary target)", ""]
    L.append(f"| arch | params | B_crit [{res.level:.0%} CI] | reproduction interval | "
             "without the full-batch point | largest useful batch | δ·E[B_S]+1 (init, MC) | "
             "along run to target | B_simple at target | theory δ·B̄_S+1 (kind) | "
             "trials (reached / unreached / infeasible) |")
    L.append("|---|---:|---|---|---|---:|---:|---:|---:|---|---|")
    no_full = {r["arch_id"]: r for r in res.net_rows
               if r["target_key"] == res.primary and not r["main_variant"]}
    for r in rows:
        edge = {"low": " (beyond the batches tried)", "high": " (below the batches tried)"
                }.get(r["at_edge"], "")
        nf = no_full.get(r["arch_id"])
        nf_s = "–" if nf is None else (f"{_fmt(nf['B_crit'])} {_ci(nf['ci_low'], nf['ci_high'], '.3g')}"
                                       + (" (edge)" if nf["at_edge"] else ""))
        pred = r["predicted"]
        th = (f"{_fmt(pred['theory_init'])} ({r['theory_kind']})"
              if pred["theory_init"] is not None
              else f"not covered ({r['theory_note']})")
        L.append(f"| {r['arch_id']} | {r['params']} | {_fmt(r['B_crit'])} "
                 f"{_ci(r['ci_low'], r['ci_high'], '.3g')}{edge} | "
                 f"{_ci(r['repro_low'], r['repro_high'], '.3g')} | {nf_s} | "
                 f"{_fmt(r['observed_max_batch'])}{'+' if r['max_batch_lower_bound'] else ''} | "
                 f"{_fmt(pred['mc_init'])} | {_fmt(pred['run_to_target'])} | "
                 f"{_fmt(pred['B_simple_at_target'])} | {th} | {r['trials']} ({r['reached']} / "
                 f"{r['unreached']} / {r['infeasible']}) |")
    L += ["", "## Critical batch per net and target (full-batch point included where tried)",
          ""]
    tks = [target_key(*t) for t in res.targets]
    L.append("| arch | " + " | ".join(tks) + " |")
    L.append("|---|" + "---|" * len(tks))
    by = {(r["arch_id"], r["target_key"]): r for r in res.net_rows if r["main_variant"]}
    for r in rows:
        cells = []
        for tk in tks:
            q = by.get((r["arch_id"], tk))
            cells.append("–" if q is None or q["B_crit"] is None else
                         f"{q['B_crit']:.3g}" + (" (edge)" if q["at_edge"] else
                                                 f" {_ci(q['ci_low'], q['ci_high'], '.3g')}"))
        L.append(f"| {r['arch_id']} | " + " | ".join(cells) + " |")
    L += ["", "## Predictors", ""]
    L += _predictor_lines(res.predictors, False)
    L += ["", "## Studies (best nominal learning rate per batch size, mean over seeds)", ""]
    table = res.table
    L.append("| arch | batch | best lr | lrs tried | steps to target | epochs | reached | "
             "unreached | infeasible |")
    L.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for m, st in sorted(table[r["arch_id"]].items()):
            L.append(f"| {r['arch_id']} | {m} | {_fmt(st['best_lr'])} | "
                     f"{', '.join(f'{x:g}' for x in st['lrs'])} | {_fmt(st['steps'])} | "
                     f"{_fmt(st['epochs'])} | {st['REACHED']} | {st['UNREACHED']} | "
                     f"{st['INFEASIBLE']} |")
    L.append("")
    L.append(f"Infeasible (diverged, NaN/inf) trials: "
             f"{sum(t['status'] == INFEASIBLE for t in trials)}; unreached trials: "
             f"{sum(t['status'] == UNREACHED for t in trials)} of {len(trials)}. "
             "Every one is kept in the trial records with its `status` and `stop_reason`.")
    bad = [t for t in trials if t["status"] in (INFEASIBLE, UNREACHED)]
    if bad:
        L += ["", "<details><summary>infeasible and unreached trials</summary>", ""]
        for t in sorted(bad, key=lambda t: (t["depth"], t["width"], t["batch_size"], t["lr"],
                                            t["seed"])):
            L.append(f"- {t['arch_id']} batch {t['batch_size']} lr {t['lr']:g} seed "
                     f"{t['seed']}: {t['status']} ({t['stop_reason']}, "
                     f"{t['steps_run']} steps)")
        L += ["", "</details>"]
    L += ["", "## Figures", ""]
    for f in figs:
        stem = os.path.splitext(os.path.basename(f))[0]
        L += [f"![{stem}](figures/{stem}.png)", "", f"*{stem}* ([PDF](figures/{stem}.pdf))", ""]
    L += ["## Files", "",
          "- `trials/<arch>/bs<m>/lr<lr>-seed<s>.json`: one record per trial (its training "
          "curve included); `trials/<arch>/bs<m>/study.json`: the learning rates tried; "
          "`archs/<arch>.json`: B_S at initialisation; `theory/<arch>.json`: theory's "
          "prediction (cached); `analysis.csv` / `analysis.json`: the tables above.", ""]
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


__all__ = ["write_report", "CSV_COLUMNS", "TREND_KEYS",
           "PREDICTOR_KEYS"]
