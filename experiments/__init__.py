"""experiments/: training sweeps that test whether gradient diversity predicts the largest
useful batch, for wide vs deep networks of one parameter budget (README: "Experiments").

Thin re-exports; each concept lives in one private module:

* :func:`train_step` — a drop-in optax step whose metrics include the batch's S1, S2, B_S;
* :func:`run_study` — all (lr × seed) trials of one batch size in one vmapped, compiled step;
* :func:`run_sweep` / ``python -m experiments.sweep`` — every study of a workload, resumable;
* :func:`net_rows`, :func:`fit_critical_batch`, :func:`net_interval` — B_crit per net and
  target with a jackknife-over-seeds interval;
* :func:`trends`, :func:`adjust`, :func:`matched_effects`, :func:`verdict`,
  :func:`predictor_table` — C2 per family and target (slope of log B_crit, Holm-adjusted),
  at matched training loss, and every predictor against what training shows;
* :func:`calibration`, :func:`holm`, :func:`benjamini_hochberg` — the statistics;
* :func:`write_report` / ``python -m experiments.report`` — report.md, analysis.csv, figures;
* ``python -m experiments.reproduce`` — the quick study end to end.
"""

from ._errors import ExperimentError
from ._config import SweepConfig, load_config, config_from_dict
from ._data import (load_data, load_digits, restricted_load, read_idx, load_mnist_idx,
                    load_cifar)
from ._families import (budget_family, family_specs, spec_for_budget, arch_id,
                        describe_family)
from ._train import (train_step, make_optimizer, run_study, REACHED, UNREACHED,
                     INFEASIBLE)
from ._sweep import run_sweep, load_trials, edge_direction
from ._fit import (net_interval, slope_with_interval, calibration, holm, benjamini_hochberg,
                   seed_steps, steps_to)
from ._analysis import (fit_critical_batch, max_useful_batch, spearman, study_table,
                        net_rows, trends, adjust, matched_effects, verdict, family_trend,
                        predictor_table)
from ._plots import (plot_steps_vs_batch, plot_predicted_vs_observed, plot_bs_along_training,
                     plot_theory_mc_training, plot_bcrit_trend, plot_predictor)
from ._report import write_report

__all__ = [
    "ExperimentError", "SweepConfig", "load_config", "config_from_dict", "load_data",
    "load_digits", "restricted_load", "read_idx", "load_mnist_idx", "load_cifar",
    "budget_family", "family_specs", "spec_for_budget", "arch_id", "describe_family",
    "train_step", "make_optimizer", "run_study", "REACHED", "UNREACHED", "INFEASIBLE",
    "run_sweep", "load_trials", "edge_direction", "fit_critical_batch", "max_useful_batch",
    "spearman", "study_table", "net_interval", "slope_with_interval", "calibration", "holm",
    "benjamini_hochberg", "seed_steps", "steps_to", "net_rows", "trends", "adjust",
    "matched_effects", "verdict", "family_trend",
    "predictor_table", "plot_steps_vs_batch", "plot_predicted_vs_observed",
    "plot_bs_along_training", "plot_theory_mc_training", "plot_bcrit_trend",
    "plot_predictor", "write_report",
]
