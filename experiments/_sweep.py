"""Sweeps: every (architecture × batch size) study of a workload, written trial by trial.

Layout under the output folder (after batch_science: workload / study / trial)::

    OUT/workload.json                     config, data, loss, target, family, versions
    OUT/config.toml                       the resolved config (rerun with --config OUT/config.toml)
    OUT/archs/<arch_id>.json              B_S at initialisation (Monte Carlo over init seeds),
                                          theory's B̄_S where theory covers the model
    OUT/trials/<arch_id>/bs<m>/lr<lr>-seed<s>.json   one trial record each
    OUT/timing.json                       wall time of each completed sweep invocation

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so
a kill at any moment leaves each file either complete or absent. Rerunning the same command
skips every study whose trial files all exist; a study with some files missing is rerun (it is
deterministic) and only the missing files are written. A folder holding a sweep with a
different workload is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import numerics
from theory import batch_size_bound

from ._config import SweepConfig, resolved_target
from ._data import load_data
from ._errors import ExperimentError
from ._families import arch_id, budget_family, describe_family
from ._train import run_study

SCHEMA = 1


# --------------------------------------------------------------------------- files
def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (tmp file + fsync + ``os.replace``)."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, fsync, then
    ``os.replace`` — after a kill the file is either complete or absent."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _remove_stale_tmp(out: str) -> None:
    """Delete half-written ``.tmp-*`` files a killed run left behind (never a finished file)."""
    for folder, _, files in os.walk(out):
        for f in files:
            if f.startswith(".tmp-"):
                os.unlink(os.path.join(folder, f))


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ExperimentError(f"{path}: unreadable JSON ({err})") from None


def trial_path(out: str, aid: str, batch_size: int, lr: float, seed: int) -> str:
    return os.path.join(out, "trials", aid, f"bs{batch_size}", f"lr{lr:g}-seed{seed}.json")


def versions() -> dict:
    import matplotlib
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__,
            "optax": optax.__version__, "numpy": np.__version__,
            "matplotlib": matplotlib.__version__, "platform": platform.platform(),
            "devices": [str(d) for d in jax.local_devices()]}


# --------------------------------------------------------------------------- workload
def plan(cfg: SweepConfig):
    """Data, task, loss, target and the architecture family of a config (no training)."""
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
    specs = budget_family(cfg.budget, cfg.depths, input_dim=ds.input_dim, outputs=ds.outputs,
                          activation=cfg.activation, arch=cfg.arch,
                          tolerance=cfg.budget_tolerance)
    batch_sizes = [m for m in cfg.batch_sizes if m <= ds.n]
    skipped = [m for m in cfg.batch_sizes if m > ds.n]
    if not batch_sizes:
        raise ExperimentError(f"every batch size exceeds the {ds.n} training examples")
    return ds, task, loss, metric, target, specs, batch_sizes, skipped


def _workload_record(cfg, ds, task, loss, metric, target, specs, batch_sizes, skipped):
    return {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "data": {"name": ds.name, "description": ds.description, "n": ds.n,
                 "input_dim": ds.input_dim, "outputs": ds.outputs, "task": task},
        "loss": loss,
        "target_metric": metric,
        "target": target,
        "optimizer": f"optax.sgd (momentum {cfg.momentum or 'off'}), lr per trial",
        "batch_sizes": batch_sizes,
        "skipped_batch_sizes": skipped,
        "family": [{"arch_id": arch_id(s), "arch": s.arch, "activation": s.activation,
                    "depth": s.depth, "width": s.width, "params": s.params,
                    "describe": s.describe()} for s in specs],
        "budget": cfg.budget,
    }


def _same_workload(old: dict, new: dict) -> list[str]:
    """Names of the settings that differ between a stored and a new workload."""
    diff = [k for k in new["config"] if old.get("config", {}).get(k) != new["config"][k]]
    if old.get("data", {}).get("description") != new["data"]["description"]:
        diff.append("data")
    return diff


# --------------------------------------------------------------------------- init statistics
def init_statistics(spec, x, y_loss, y_sq, loss, samples: int, dtype, data_desc: str) -> dict:
    """B_S of the training set at initialisation, over ``samples`` random inits (keys 0..),
    for the training loss and for the squared loss, and theory's B̄_S where covered."""
    xs = jnp.asarray(x, dtype)
    res = {}
    for name, lname, yy in (("training_loss", loss, y_loss), ("squared_loss", "squared", y_sq)):
        yj = jnp.asarray(yy) if lname == "cross_entropy" else jnp.asarray(yy, dtype)
        s1, s2 = [], []
        for k in range(samples):
            params = numerics.init_params(spec, key=jax.random.fold_in(jax.random.key(k), 0),
                                          dtype=dtype)
            st = numerics.per_example_stats(spec, params, xs, yj, loss=lname)
            s1.append(float(st.S1))
            s2.append(float(st.S2))
        s1, s2 = np.array(s1), np.array(s2)
        n = x.shape[0]
        ok = s2 > 0
        bs = batch_size_bound(s1[ok], s2[ok], n)
        res[name] = {
            "loss": lname, "samples": samples,
            "E_B_S": float(np.mean(bs)),            # expectation of the ratio (Monte Carlo)
            "B_S_sd": float(np.std(bs, ddof=1)) if bs.size > 1 else None,
            "B_S_ratio_of_means": float(batch_size_bound(s1.mean(), s2.mean(), n)),
            "B_S_seed": [float(v) for v in bs],
        }
    try:
        import theory

        th = theory.expected_moments(spec, np.asarray(x, np.float64),
                                     np.asarray(y_sq, np.float64), delta=1.0,
                                     data=data_desc).to_dict()
        res["theory"] = {"covered": True, "loss": "squared",
                         "batch_size_bound": th["batch_size_bound"],
                         "predicted_max_batch": th["predicted_max_batch"],
                         "kind": th["kind"]["batch_size_bound"], "notes": th["notes"],
                         "limit_batch_size_bound": th["limit_batch_size_bound"]}
    except Exception as err:  # theory does not cover every model: say so, do not fail
        res["theory"] = {"covered": False, "reason": f"{type(err).__name__}: {err}"}
    if loss != "squared":
        res["theory"]["training_loss_covered"] = False
        res["theory"]["training_loss_note"] = (
            f"theory covers the squared loss; training uses {loss}: not covered")
    else:
        res["theory"]["training_loss_covered"] = res["theory"]["covered"]
    return res


# --------------------------------------------------------------------------- sweep
def run_sweep(cfg: SweepConfig, out: str, *, progress: bool = True, log=None,
              command: str | None = None) -> dict:
    """Run (or resume) every study of ``cfg`` into ``out``; returns a small summary dict.

    ``dtype = "float64"`` runs the whole sweep inside :func:`numerics.x64` (the one precision
    switch), float32 otherwise."""
    if cfg.dtype == "float64":
        with numerics.x64():
            return _run_sweep(cfg, out, progress=progress, log=log, command=command)
    return _run_sweep(cfg, out, progress=progress, log=log, command=command)


def _run_sweep(cfg, out, *, progress, log, command):
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    ds, task, loss, metric, target, specs, batch_sizes, skipped = plan(cfg)
    log(f"data: {ds.description}")
    log(f"task: {task}, loss: {loss}, target: training {metric} "
        f"{'>=' if metric == 'accuracy' else '<='} {target:g}")
    log(describe_family(specs, cfg.budget))
    if skipped:
        log(f"skipping batch sizes larger than n={ds.n}: {skipped}")
    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32

    os.makedirs(out, exist_ok=True)
    _remove_stale_tmp(out)
    wl = _workload_record(cfg, ds, task, loss, metric, target, specs, batch_sizes, skipped)
    wl_path = os.path.join(out, "workload.json")
    if os.path.exists(wl_path):
        diff = _same_workload(read_json(wl_path), wl)
        if diff:
            raise ExperimentError(f"{out} holds a sweep of a different workload (differs in: "
                                  f"{', '.join(diff)}); use another --out")
    wl["versions"] = versions()
    wl["command"] = command
    write_json_atomic(wl_path, wl)
    write_text_atomic(os.path.join(out, "config.toml"), cfg.to_toml())

    y_loss = ds.classes if loss == "cross_entropy" else ds.y
    seeds = list(range(cfg.seeds))
    n_done = n_run = 0
    studies = [(s, m) for s in specs for m in batch_sizes]
    bar = _progress(len(studies), progress)
    try:
        for spec in specs:
            aid = arch_id(spec)
            apath = os.path.join(out, "archs", f"{aid}.json")
            if not os.path.exists(apath):
                bar.set_postfix_str(f"{aid}: B_S at init, theory")
                stats = init_statistics(spec, ds.x, y_loss, ds.y, loss, cfg.init_samples,
                                        dtype, ds.description)
                record = {"arch_id": aid, "arch": spec.arch, "activation": spec.activation,
                          "depth": spec.depth, "width": spec.width, "params": spec.params,
                          "n": ds.n, "describe": spec.describe(), **stats}
                write_json_atomic(apath, record)
            for m in batch_sizes:
                lrs = cfg.lrs_for(m)
                paths = {(lr, s): trial_path(out, aid, m, lr, s) for lr in lrs for s in seeds}
                missing = [k for k, p in paths.items() if not os.path.exists(p)]
                bar.set_postfix_str(f"{aid} batch {m}")
                if not missing:
                    n_done += len(paths)
                    bar.update(1)
                    continue
                results = run_study(
                    spec, ds.x, y_loss, ds.classes if task == "classification" else None,
                    loss=loss, batch_size=m, lrs=lrs, seeds=seeds, momentum=cfg.momentum,
                    max_steps=cfg.max_steps, target_metric=metric, target=target,
                    eval_growth=cfg.eval_growth, stop_factor=cfg.stop_factor, dtype=dtype)
                for r in results:
                    key = (r["lr"], r["seed"])
                    if key not in missing:
                        continue
                    steps = r["steps_to_target"]
                    rec = {
                        "schema": SCHEMA,
                        "workload": os.path.basename(os.path.normpath(out)),
                        "study": f"{aid}/bs{m}",
                        "arch_id": aid, "arch": spec.arch, "activation": spec.activation,
                        "depth": spec.depth, "width": spec.width, "params": spec.params,
                        "batch_size": m, "lr": r["lr"], "seed": r["seed"],
                        "status": r["status"], "steps_to_target": steps,
                        "epochs_to_target": None if steps is None else steps * m / ds.n,
                        "n": ds.n, "loss": loss, "target_metric": metric, "target": target,
                        "momentum": cfg.momentum, "dtype": cfg.dtype,
                        **{k: v for k, v in r.items()
                           if k not in ("lr", "seed", "status", "steps_to_target")},
                    }
                    write_json_atomic(paths[key], rec)
                    n_run += 1
                n_done += len(paths) - len(missing)
                bar.update(1)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    log(f"sweep: {n_run} trials run, {n_done} already on disk (resumed), "
        f"{elapsed:.1f} s; results in {out}")
    tpath = os.path.join(out, "timing.json")
    runs = read_json(tpath)["runs"] if os.path.exists(tpath) else []
    runs.append({"trials_run": n_run, "trials_resumed": n_done, "seconds": round(elapsed, 1),
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json_atomic(tpath, {"runs": runs})
    return {"trials_run": n_run, "trials_resumed": n_done, "seconds": elapsed, "out": out}


def _progress(total, enabled):
    from tqdm import tqdm

    return tqdm(total=total, unit="study", desc="sweep", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def load_trials(out: str) -> list[dict]:
    """Every trial record under ``OUT/trials`` (files written atomically, so all complete)."""
    root = os.path.join(out, "trials")
    recs = []
    if not os.path.isdir(root):
        return recs
    for folder, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith(".json") and not f.startswith(".tmp-"):
                recs.append(read_json(os.path.join(folder, f)))
    return recs


__all__ = ["run_sweep", "plan", "load_trials", "write_json_atomic", "trial_path",
           "init_statistics", "versions"]
