"""experiments/: training sweeps that test whether gradient diversity predicts the largest
useful batch, for wide vs deep networks of one parameter budget (README: "Experiments").

Thin re-exports; each concept lives in one private module:

* :func:`train_step` — a drop-in optax step whose metrics include the batch's S1, S2, B_S;
* :func:`run_study` — all (lr × seed) trials of one batch size in one vmapped, compiled step;
* :func:`plan` — a config resolved to its :class:`Workload` (data, loss, target, families);
* :func:`run_sweep` / ``python -m experiments.sweep`` — every study of a workload, resumable,
  each study's lr grid searched by the one rule of :func:`best_lr` / :func:`edge_direction`;
* :func:`net_rows`, :func:`fit_critical_batch`, :func:`net_interval` — B_crit per net and
  target with a jackknife-over-seeds interval;
* :func:`trends`, :func:`adjust`, :func:`matched_effects`, :func:`verdict`,
  :func:`predictor_table` — C2 per family and target (slope of log B_crit, Holm-adjusted),
  at matched training loss, and every predictor against what training shows;
* :func:`calibration`, :func:`holm`, :func:`benjamini_hochberg` — the statistics;
* :func:`analyse` — one :class:`Analysis` (or :class:`SuiteAnalysis`) per folder, computed
  once, that the report and the figures read;
* :func:`write_report` / ``python -m experiments.report`` — report.md, analysis.csv, figures;
* ``python -m experiments.reproduce`` — the quick study end to end;
* :func:`run_branches`, :func:`block_noise_scale`, :func:`write_branch_report` /
  ``python -m experiments.branch`` — the critical batch along training, measured by branching
  from checkpoints and predicted by the noise scale there.
"""

import importlib

from ._errors import ExperimentError

# name -> private module; imported on first use (PEP 562), so ``--help`` and argument errors
# of the CLIs answer without importing jax
_LAZY = {
    "SweepConfig": "_config", "load_config": "_config", "config_from_dict": "_config",
    "load_data": "_data", "load_digits": "_data", "restricted_load": "_data",
    "read_idx": "_data", "load_mnist_idx": "_data", "load_cifar": "_data",
    "budget_family": "_families", "family_specs": "_families", "spec_for_budget": "_families",
    "arch_id": "_families", "describe_family": "_families",
    "train_step": "_train", "make_optimizer": "_train", "run_study": "_train",
    "REACHED": "_records", "UNREACHED": "_records", "INFEASIBLE": "_records",
    "Workload": "_records", "plan": "_plan", "best_lr": "_lr_search",
    "run_sweep": "_run", "load_trials": "_records", "edge_direction": "_lr_search",
    "net_interval": "_fit", "slope_with_interval": "_fit", "calibration": "_fit",
    "holm": "_fit", "benjamini_hochberg": "_fit", "seed_steps": "_fit", "steps_to": "_fit",
    "fit_critical_batch": "_analysis", "max_useful_batch": "_analysis",
    "spearman": "_analysis", "study_table": "_analysis", "net_rows": "_analysis",
    "trends": "_analysis", "adjust": "_analysis", "matched_effects": "_analysis",
    "verdict": "_analysis", "family_trend": "_analysis", "predictor_table": "_analysis",
    "Analysis": "_analysis", "SuiteAnalysis": "_analysis", "analyse": "_analysis",
    "plot_steps_vs_batch": "_plots", "plot_predicted_vs_observed": "_plots",
    "plot_bs_along_training": "_plots", "plot_theory_mc_training": "_plots",
    "plot_bcrit_trend": "_plots", "plot_predictor": "_plots",
    "plot_bcrit_vs_progress": "_plots", "write_report": "_report",
    "BranchConfig": "_branch", "load_branch_config": "_branch", "run_branches": "_branch",
    "block_noise_scale": "_branch_predict", "write_branch_report": "_branch_report",
    "plot_branch": "_branch_report",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "ExperimentError", "SweepConfig", "load_config", "config_from_dict", "load_data",
    "load_digits", "restricted_load", "read_idx", "load_mnist_idx", "load_cifar",
    "budget_family", "family_specs", "spec_for_budget", "arch_id", "describe_family",
    "train_step", "make_optimizer", "run_study", "REACHED", "UNREACHED", "INFEASIBLE",
    "Workload", "plan", "best_lr", "Analysis", "SuiteAnalysis", "analyse",
    "run_sweep", "load_trials", "edge_direction", "fit_critical_batch", "max_useful_batch",
    "spearman", "study_table", "net_interval", "slope_with_interval", "calibration", "holm",
    "benjamini_hochberg", "seed_steps", "steps_to", "net_rows", "trends", "adjust",
    "matched_effects", "verdict", "family_trend",
    "predictor_table", "plot_steps_vs_batch", "plot_predicted_vs_observed",
    "plot_bs_along_training", "plot_theory_mc_training", "plot_bcrit_trend",
    "plot_predictor", "plot_bcrit_vs_progress", "write_report", "BranchConfig",
    "load_branch_config", "run_branches", "block_noise_scale", "write_branch_report",
    "plot_branch",
]
