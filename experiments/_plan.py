"""Planning: a config resolved to its :class:`~experiments._records.Workload` (data, loss,
target, families, batch sizes) and the ``workload.json`` record — no training, no jax.

A suite config plans one workload per entry of :meth:`SweepConfig.workloads`.
"""

from __future__ import annotations

from ._config import SweepConfig, resolved_target
from ._data import load_data
from ._errors import ExperimentError
from ._families import arch_id, family_specs, mup_base_width, union_of
from ._records import SCHEMA, Workload


def plan(cfg: SweepConfig) -> Workload:
    """Data, task, loss, target and the architecture families of a config (no training)."""
    ds, task = load_data(cfg.data, n=cfg.n, seed=cfg.data_seed)
    loss = cfg.loss
    if loss == "auto":
        loss = "cross_entropy" if task == "classification" else "squared"
    if loss == "cross_entropy" and ds.classes is None:
        raise ExperimentError(f"{cfg.data}: cross-entropy needs integer class labels")
    metric = cfg.target_metric
    if metric == "auto":
        metric = "accuracy" if task == "classification" else "relative_loss"
    if metric == "accuracy" and task != "classification":
        raise ExperimentError(f"{cfg.data}: an accuracy target needs class labels "
                              f"(use target_metric 'loss' or 'relative_loss')")
    target = resolved_target(metric, cfg.target)
    if metric == "accuracy" and ds.classes is not None and \
            target <= 1.0 / (int(ds.classes.max()) + 1):
        raise ExperimentError(f"an accuracy target of {target:g} is met by chance with "
                              f"{int(ds.classes.max()) + 1} classes; choose a larger target")
    if metric == "loss" and target <= 0:
        raise ExperimentError(f"a loss target must be > 0 (losses are >= 0), got {target:g}")
    families = family_specs(cfg, input_dim=ds.input_dim, outputs=ds.outputs)
    batch_sizes = tuple(m for m in cfg.batch_sizes if m <= ds.n)
    skipped = tuple(m for m in cfg.batch_sizes if m > ds.n)
    if not batch_sizes:
        raise ExperimentError(f"every batch size exceeds the {ds.n} training examples")
    return Workload(config=cfg, data=ds, task=task, loss=loss, metric=metric, target=target,
                    families=families, specs=tuple(union_of(families)),
                    batch_sizes=batch_sizes, skipped=skipped)


def workload_record(w: Workload) -> dict:
    """The ``workload.json`` record of a planned workload (without versions and command)."""
    cfg, ds = w.config, w.data
    return {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "data": {"name": ds.name, "description": ds.description, "n": ds.n,
                 "input_dim": ds.input_dim, "outputs": ds.outputs, "task": w.task},
        "loss": w.loss,
        "target_metric": w.metric,
        "target": w.target,
        "optimizer": cfg.optimizer,
        "optimizer_description": (
            "optax.adam (b1 0.9, b2 0.999, eps 1e-8)" if cfg.optimizer == "adam" else
            f"optax.sgd (momentum {cfg.effective_momentum or 'off'})") + ", lr per trial",
        "parametrisation": cfg.parametrisation,
        "mup_base_width": mup_base_width(cfg) if cfg.parametrisation == "mup" else None,
        "targets": [[w.metric, w.target]] + [list(t) for t in cfg.targets()],
        "batch_sizes": list(w.batch_sizes),
        "skipped_batch_sizes": list(w.skipped),
        "family": [{"arch_id": arch_id(s), "arch": s.arch, "activation": s.activation,
                    "depth": s.depth, "width": s.width, "params": s.params,
                    "describe": s.describe(), "spec": s.to_dict()} for s in w.specs],
        "families": {f: [arch_id(s) for s in v] for f, v in w.families.items()},
        "budget": cfg.budget,
    }


def changed_settings(old: dict, new: dict) -> list[str]:
    """Names of the settings that differ between a stored and a new workload record."""
    diff = [k for k in new["config"] if old.get("config", {}).get(k) != new["config"][k]]
    if old.get("data", {}).get("description") != new["data"]["description"]:
        diff.append("data")
    return diff


def config_of(wl: dict) -> SweepConfig:
    """The :class:`SweepConfig` stored in a ``workload.json`` record."""
    return SweepConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in wl["config"].items()})


def specs_of(wl: dict) -> list:
    """A stored workload's nets, rebuilt from its config (one source: the families, μP gains
    included)."""
    d = wl["data"]
    return union_of(family_specs(config_of(wl), input_dim=d["input_dim"],
                                 outputs=d["outputs"]))


__all__ = ["plan", "workload_record", "changed_settings", "config_of", "specs_of"]
