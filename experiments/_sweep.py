"""Sweeps: every (architecture × batch size) study of a workload, written trial by trial
(files and their layout: :mod:`experiments._records`).

Layout under the output folder (after batch_science: workload / study / trial)::

    OUT/workload.json                     config, data, loss, target, family, versions
    OUT/config.toml                       the resolved config (rerun with --config OUT/config.toml)
    OUT/archs/<arch_id>.json              B_S at initialisation (Monte Carlo over init seeds),
                                          theory's B̄_S where theory covers the model
    OUT/trials/<arch_id>/bs<m>/lr<lr>-seed<s>.json   one trial record each
    OUT/trials/<arch_id>/bs<m>/study.json the study: learning rates tried, grid extensions
    OUT/timing.json                       wall time of each completed sweep invocation

A config with a ``[suite]`` (the C2 study) runs one such workload per (data, loss, arch) into
``OUT/<data>-<loss>-<arch>/`` and writes ``OUT/suite.json``; one progress bar (with an ETA)
covers every study of every workload.

Learning rates: every study first tries ``cfg.lrs_for(m, previous)`` (``previous``: the
previous batch size's best lr, or the lr that came nearest when none reached the target with
every seed: most seeds at the target, then lowest final loss); with ``train.lr_extend = N > 0``,
while the best lr (or that nearest one) is the smallest or largest tried,
as many more grid points as the first grid has are tried
beyond that edge (the same number of trials, so the compiled step is reused), at most N times
per side (once only while no lr reaches the target with every seed), and ``study.json`` records each extension and whether the optimum ended
inside the grid (``edge_resolved``: some lr reached the target with every seed and the best is
not the smallest or largest tried). With ``train.step_cap_factor = c > 0`` a study's trials
stop after c × the best mean steps-to-target of the previous batch size
(:meth:`SweepConfig.step_cap`; ``study.json``: ``step_cap``, ``best_steps``).

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so
a kill at any moment leaves each file either complete or absent. Rerunning the same command
skips every study whose ``study.json`` and trial files all exist; a study with some files
missing is rerun (it is deterministic) and only the missing files are written. A folder holding a sweep with a
different workload is refused rather than mixed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import numerics
from theory import batch_size_bound

from ._config import SweepConfig, resolved_target
from ._records import (CURVES_FILE, SCHEMA, _FolderLock, _remove_stale_tmp, load_studies,
                       load_trials, read_json, study_path, trial_path, versions,
                       write_curves, write_json_atomic, write_text_atomic)
from ._data import load_data
from ._errors import ExperimentError
from ._families import (arch_id, family_specs, mup_base_width,
                        mup_lr_multipliers, union_of)
from ._train import INFEASIBLE, REACHED, run_study

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
    if metric == "accuracy" and ds.classes is not None and \
            target <= 1.0 / (int(ds.classes.max()) + 1):
        raise ExperimentError(f"an accuracy target of {target:g} is met by chance with "
                              f"{int(ds.classes.max()) + 1} classes; choose a larger target")
    if metric == "loss" and target <= 0:
        raise ExperimentError(f"a loss target must be > 0 (losses are >= 0), got {target:g}")
    families = family_specs(cfg, input_dim=ds.input_dim, outputs=ds.outputs)
    specs = union_of(families)
    batch_sizes = [m for m in cfg.batch_sizes if m <= ds.n]
    skipped = [m for m in cfg.batch_sizes if m > ds.n]
    if not batch_sizes:
        raise ExperimentError(f"every batch size exceeds the {ds.n} training examples")
    return ds, task, loss, metric, target, families, specs, batch_sizes, skipped


def _workload_record(cfg, ds, task, loss, metric, target, families, specs, batch_sizes,
                     skipped):
    return {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "data": {"name": ds.name, "description": ds.description, "n": ds.n,
                 "input_dim": ds.input_dim, "outputs": ds.outputs, "task": task},
        "loss": loss,
        "target_metric": metric,
        "target": target,
        "optimizer": cfg.optimizer,
        "optimizer_description": (
            "optax.adam (b1 0.9, b2 0.999, eps 1e-8)" if cfg.optimizer == "adam" else
            f"optax.sgd (momentum {cfg.effective_momentum or 'off'})") + ", lr per trial",
        "parametrisation": cfg.parametrisation,
        "mup_base_width": mup_base_width(cfg) if cfg.parametrisation == "mup" else None,
        "targets": [[metric, target]] + [list(t) for t in cfg.targets()],
        "batch_sizes": batch_sizes,
        "skipped_batch_sizes": skipped,
        "family": [{"arch_id": arch_id(s), "arch": s.arch, "activation": s.activation,
                    "depth": s.depth, "width": s.width, "params": s.params,
                    "describe": s.describe()} for s in specs],
        "families": {f: [arch_id(s) for s in v] for f, v in families.items()},
        "budget": cfg.budget,
    }


def _same_workload(old: dict, new: dict) -> list[str]:
    """Names of the settings that differ between a stored and a new workload."""
    diff = [k for k in new["config"] if old.get("config", {}).get(k) != new["config"][k]]
    if old.get("data", {}).get("description") != new["data"]["description"]:
        diff.append("data")
    return diff


# --------------------------------------------------------------------------- init statistics
def init_statistics(spec, x, y_loss, y_sq, loss, samples: int, dtype) -> dict:
    """B_S of the training set at initialisation, over ``samples`` random inits (init ``k`` is
    the one trial seed ``k`` starts from), for the training loss and for the squared loss.
    Theory's B̄_S is computed by the report (:mod:`experiments._predict`)."""
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
    return res


# --------------------------------------------------------------------------- sweep
def run_sweep(cfg: SweepConfig, out: str, *, progress: bool = True, log=None,
              command: str | None = None, workloads=None, jobs: int = 1) -> dict:
    """Run (or resume) every study of ``cfg`` into ``out``; returns a small summary dict.

    A suite config runs each of its workloads into ``out/<name>`` under one progress bar;
    ``workloads`` restricts it to those names, and ``jobs > 1`` runs that many workloads at
    once, each in its own ``python -m experiments.sweep --workloads NAME`` process (one
    progress bar over all of them). ``dtype = "float64"`` runs inside :func:`numerics.x64`
    (the one precision switch), float32 otherwise."""
    names = [n for n, _ in cfg.workloads()]
    if workloads is not None:
        unknown = [w for w in workloads if w not in names]
        if unknown or not cfg.is_suite:
            raise ExperimentError(f"--workloads: unknown workload(s) {', '.join(unknown)} "
                                  f"(this config has: {', '.join(names) or 'no suite'})")
    if jobs < 1:
        raise ExperimentError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 and cfg.is_suite:
        return _run_parallel(cfg, out, workloads or names, jobs, progress=progress, log=log,
                             command=command)
    if cfg.dtype == "float64":
        with numerics.x64():
            return _run_all(cfg, out, progress=progress, log=log, command=command,
                            only=workloads)
    return _run_all(cfg, out, progress=progress, log=log, command=command, only=workloads)


def _suite_record(cfg, out, names, command, log):
    rec = {"schema": SCHEMA, "config": cfg.to_dict(), "workloads": names, "command": command}
    spath = os.path.join(out, "suite.json")
    if os.path.exists(spath):
        old = read_json(spath)
        if old.get("config") != json.loads(json.dumps(rec["config"])):
            # each workload folder still refuses a different workload, so a changed suite
            # (a data set added, one workload's settings changed) reuses exactly the
            # workloads whose own settings are unchanged
            log(f"{out}: the suite's config changed; workloads whose own settings are "
                f"unchanged are resumed, a changed one is refused")
        elif old.get("command"):
            rec["command"] = old["command"]  # a --workloads worker keeps the parent's command
    write_json_atomic(spath, rec)
    write_text_atomic(os.path.join(out, "config.toml"), cfg.to_toml())


def _run_parallel(cfg, out, names, jobs, *, progress, log, command):
    """Run workloads in up to ``jobs`` child processes; the parent draws the progress bar by
    counting finished studies (``study.json`` files) and records the wall time."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    works = {name: (wcfg, plan(wcfg)) for name, wcfg in cfg.workloads() if name in names}
    os.makedirs(out, exist_ok=True)
    with _FolderLock(out, ".suite.lock"):
        return _run_parallel_locked(cfg, out, works, jobs, progress=progress, log=log,
                                    command=command, t0=t0)


def _run_parallel_locked(cfg, out, works, jobs, *, progress, log, command, t0):
    import shlex
    import subprocess
    import tempfile as _tf

    _suite_record(cfg, out, [n for n, _ in cfg.workloads()], command, log)
    cfg_file = os.path.join(out, "config.toml")
    total = sum(len(p[6]) * len(p[7]) for _, p in works.values())
    # largest training set first (longest-processing-time order: the long workloads start
    # while the short ones fill the other slots); ties keep the config's order
    queue = sorted(works, key=lambda name: -works[name][1][0].n)
    running = {}
    failed = []

    def finished_studies():
        return sum(_finished_studies(os.path.join(out, name)) for name in works)

    bar = _progress(total, progress, initial=min(finished_studies(), total))

    try:
        while queue or running:
            while queue and len(running) < jobs:
                name = queue.pop(0)
                err = _tf.TemporaryFile(mode="w+")
                cmd = [sys.executable, "-m", "experiments.sweep", "--config", cfg_file,
                       "--out", out, "--workloads", name, "--no-progress"]
                running[name] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err),
                                 err)
                log(f"started workload {name}: {' '.join(shlex.quote(c) for c in cmd)}")
            time.sleep(1.0)
            for name, (proc, err) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    if proc.returncode < 0:
                        failed.append(f"{name}: stopped by signal {-proc.returncode} (its "
                                      "finished studies are kept; rerun to resume)")
                    elif proc.returncode != 0:
                        err.seek(0)
                        lines = [ln for ln in err.read().splitlines() if ln.strip()]
                        failed.append(f"{name}: {lines[-1] if lines else proc.returncode}")
                    err.close()
            bar.n = min(finished_studies(), total)
            bar.refresh()
    except KeyboardInterrupt:
        for proc, _ in running.values():
            proc.terminate()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    _record_time(out, {"trials_run": None, "trials_resumed": None,
                       "seconds": round(elapsed, 1), "jobs": jobs, "workloads": list(works)})
    if failed:
        raise ExperimentError("workload(s) failed: " + "; ".join(failed))
    log(f"sweep: {len(works)} workloads in {jobs} processes, {elapsed:.1f} s; results in {out}")
    return {"trials_run": None, "trials_resumed": None, "seconds": elapsed, "out": out}


def _record_time(out, entry):
    tpath = os.path.join(out, "timing.json")
    runs = read_json(tpath)["runs"] if os.path.exists(tpath) else []
    runs.append({**entry, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "devices": [str(d) for d in jax.local_devices()]})
    write_json_atomic(tpath, {"runs": runs})


def _run_all(cfg, out, *, progress, log, command, only=None):
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    works = [(name, wcfg, plan(wcfg)) for name, wcfg in cfg.workloads()
             if only is None or name in only]
    os.makedirs(out, exist_ok=True)
    if only is None:  # a --workloads child runs under its parent's suite lock
        with _FolderLock(out, ".suite.lock"):
            return _run_all_locked(cfg, out, works, progress=progress, log=log,
                                   command=command, only=only, t0=t0)
    return _run_all_locked(cfg, out, works, progress=progress, log=log, command=command,
                           only=only, t0=t0)


def _run_all_locked(cfg, out, works, *, progress, log, command, only, t0):
    if cfg.is_suite:
        _suite_record(cfg, out, [n for n, _ in cfg.workloads()], command, log)
    total = sum(len(p[6]) * len(p[7]) for _, _, p in works)
    bar = _progress(total, progress, initial=min(total, sum(
        _finished_studies(os.path.join(out, name) if name else out) for name, _, _ in works)))
    n_run = n_done = 0
    try:
        for name, wcfg, planned in works:
            r, d = _run_workload(wcfg, os.path.join(out, name) if name else out, planned,
                                 bar=bar, log=log, command=command)
            n_run, n_done = n_run + r, n_done + d
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    log(f"sweep: {n_run} trials run, {n_done} already on disk (resumed), "
        f"{elapsed:.1f} s; results in {out}")
    entry = {"trials_run": n_run, "trials_resumed": n_done, "seconds": round(elapsed, 1)}
    if only is not None:
        entry["workloads"] = list(only)
        for name in only:  # a worker of a parallel run: the workload's own wall time
            _record_time(os.path.join(out, name), entry)
    else:
        _record_time(out, entry)
    return {"trials_run": n_run, "trials_resumed": n_done, "seconds": elapsed, "out": out}


def _run_workload(cfg, out, planned, *, bar, log, command):
    ds, task, loss, metric, target, families, specs, batch_sizes, skipped = planned
    log(f"workload {os.path.basename(os.path.normpath(out))}: {ds.description}")
    log(f"task: {task}, loss: {loss}, target: training {metric} "
        f"{'>=' if metric == 'accuracy' else '<='} {target:g}")
    for fam, members in families.items():
        log(f"{fam} family: {', '.join(arch_id(s) for s in members)}")
    if skipped:
        log(f"skipping batch sizes larger than n={ds.n}: {skipped}")
    os.makedirs(out, exist_ok=True)
    with _FolderLock(out):
        return _run_workload_locked(cfg, out, planned, ds=ds, task=task, loss=loss,
                                    metric=metric, target=target, families=families,
                                    specs=specs, batch_sizes=batch_sizes, skipped=skipped,
                                    bar=bar, log=log, command=command)


def _run_workload_locked(cfg, out, planned, *, ds, task, loss, metric, target, families,
                         specs, batch_sizes, skipped, bar, log, command):
    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    _remove_stale_tmp(out)  # only under the lock: never another live run's temporary file
    wl = _workload_record(cfg, ds, task, loss, metric, target, families, specs, batch_sizes,
                          skipped)
    wl_path = os.path.join(out, "workload.json")
    if os.path.exists(wl_path):
        old = read_json(wl_path)
        if not isinstance(old, dict) or not isinstance(old.get("config"), dict):
            raise ExperimentError(f"{wl_path}: not a workload record (use another --out, or "
                                  f"remove the file)")
        diff = _same_workload(old, wl)
        if diff:
            raise ExperimentError(f"{out} holds a sweep of a different workload (differs in: "
                                  f"{', '.join(diff)}); use another --out")
    wl["versions"] = versions()
    wl["command"] = command
    write_json_atomic(wl_path, wl)
    write_text_atomic(os.path.join(out, "config.toml"), cfg.to_toml())

    y_loss = ds.classes if loss == "cross_entropy" else ds.y
    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.seeds))
    n_done = n_run = 0
    for spec in specs:
        aid = arch_id(spec)
        apath = os.path.join(out, "archs", f"{aid}.json")
        if not os.path.exists(apath):
            bar.set_postfix_str(f"{aid}: B_S at init")
            stats = init_statistics(spec, ds.x, y_loss, ds.y, loss, cfg.init_samples, dtype)
            record = {"arch_id": aid, "arch": spec.arch, "activation": spec.activation,
                      "depth": spec.depth, "width": spec.width, "params": spec.params,
                      "n": ds.n, "describe": spec.describe(), **stats}
            write_json_atomic(apath, record)
        previous = previous_steps = None
        for m in batch_sizes:
            bar.set_postfix_str(f"{os.path.basename(os.path.normpath(out))} {aid} batch {m}")
            spath = study_path(out, aid, m)
            st = _finished_study(out, aid, m, seeds)
            if st is not None:
                n_done += len(st["lrs_tried"]) * len(seeds)  # in the bar's ``initial``
            else:
                # B_S along the run only where a predictor reads it: the smallest batch
                st, r, d = _run_study_extended(cfg, out, spec, ds, task, y_loss, loss, metric,
                                               target, m, seeds, previous, dtype,
                                               cfg.step_cap(previous_steps),
                                               moments=m == batch_sizes[0])
                write_json_atomic(spath, st)
                n_run, n_done = n_run + r, n_done + d
                bar.update(1)
            # the next batch size's grid centre and step cap come from this study
            if st.get("anchor_lr"):
                previous = (m, st["anchor_lr"])
            previous_steps = st.get("best_steps") or previous_steps
    return n_run, n_done


def _finished_study(out, aid, m, seeds):
    """The study record of batch ``m`` when it and every trial it lists are on disk, else
    None (the study is then run; it is deterministic, so only missing files get written)."""
    spath = study_path(out, aid, m)
    if not os.path.exists(spath):
        return None
    st = read_json(spath)
    paths = [trial_path(out, aid, m, lr, s) for lr in st["lrs_tried"] for s in seeds]
    return st if all(os.path.exists(p) for p in paths) else None


def _finished_studies(out: str) -> int:
    """Studies of a workload folder with a ``study.json`` (for the progress bar)."""
    return sum(1 for _d, _, fs in os.walk(os.path.join(out, "trials")) for f in fs
               if f == "study.json")


def lr_summary(results) -> dict:
    """Per lr of a study's trial results: ``{lr: (all seeds reached, mean steps or None,
    any seed diverged)}``."""
    by = {}
    for r in results:
        by.setdefault(r["lr"], []).append(r)
    out = {}
    for lr, rs in by.items():
        ok = all(r["status"] == REACHED for r in rs)
        out[lr] = (ok, float(np.mean([r["steps_to_target"] for r in rs])) if ok else None,
                   any(r["status"] == INFEASIBLE for r in rs))
    return out


def edge_direction(results) -> str | None:
    """Where a study's learning-rate grid should grow: ``"up"`` when the best lr (smallest mean
    steps-to-target with every seed reaching it) is the largest tried, ``"down"`` when it is
    the smallest, None when the optimum is inside. When no lr reached the target with every
    seed, the lr with the most seeds that reached it, and among those the one whose seeds end
    with the lowest mean training loss (diverged seeds count as infinite), plays the best lr's
    part (:func:`_leading_lr`): too large an lr can also stall a net (dead ReLUs, chance
    accuracy, a squared loss that collapses to a constant), so "nothing reached" alone says
    nothing about the direction, while an lr that got some seeds there is the nearest to
    the optimum.

    Example:
        >>> mk = lambda lr, st, loss=1.0: {"lr": lr, "status": st, "final_loss": loss,
        ...     "steps_to_target": 100 / lr if st == "REACHED" else None}
        >>> edge_direction([mk(0.1, "REACHED"), mk(0.2, "REACHED")])
        'up'
        >>> edge_direction([mk(0.1, "REACHED"), mk(0.2, "REACHED"), mk(0.4, "INFEASIBLE")])
        >>> edge_direction([mk(0.1, "UNREACHED", 0.3), mk(0.2, "UNREACHED", 0.9)])
        'down'
        >>> edge_direction([mk(1.3, "REACHED"), mk(1.3, "INFEASIBLE"), mk(1.9, "UNREACHED", 2.3),
        ...                 mk(2.7, "UNREACHED", 2.4)])  # 1.3 got a seed there: grow down
        'down'
    """
    lrs = sorted({r["lr"] for r in results})
    best = _leading_lr(results)
    if best is None:
        return "down"  # everything diverged
    if len(lrs) > 1 and best == lrs[-1]:
        return "up"
    if len(lrs) > 1 and best == lrs[0]:
        return "down"
    return None


def _best_lr(results):
    """(best lr, its mean steps-to-target) among the lrs whose every seed reached the target
    (smallest mean, ties to the smaller lr); (None, None) when there is none."""
    done = {lr: v[1] for lr, v in lr_summary(results).items() if v[0]}
    if not done:
        return None, None
    best = min(done, key=lambda lr: (done[lr], lr))
    return best, done[best]


def _leading_lr(results):
    """The best lr (:func:`_best_lr`), else the one that came nearest: most seeds at the
    target, then the lowest mean final training loss (diverged seeds count as infinite).
    None when no seed reached the target and every trial diverged."""
    best, _ = _best_lr(results)
    if best is not None:
        return best
    reached, final = {}, {}
    for r in results:
        v = r.get("final_loss")
        reached[r["lr"]] = reached.get(r["lr"], 0) + (r["status"] == REACHED)
        final.setdefault(r["lr"], []).append(math.inf if v is None else float(v))
    key = {lr: (-reached[lr], float(np.mean(v)), lr) for lr, v in final.items()}
    lead = min(key, key=key.get)
    return lead if reached[lead] or math.isfinite(key[lead][1]) else None


def _seed_best(results) -> dict:
    """{seed: fewest steps-to-target over the lrs tried} of a study's results so far."""
    best = {}
    for r in results:
        if r["status"] == REACHED:
            best[r["seed"]] = min(best.get(r["seed"], math.inf), r["steps_to_target"])
    return best


def _run_study_extended(cfg, out, spec, ds, task, y_loss, loss, metric, target, m, seeds,
                        previous, dtype, cap, moments=True):
    """One study (every lr × seed at batch ``m``, at most ``cap`` steps each: see
    :meth:`SweepConfig.step_cap`), its grid extended at the edges; writes each missing trial
    file as soon as its run returns. Returns (study record, run, resumed)."""
    aid = arch_id(spec)
    t0 = time.perf_counter()
    lrs = list(cfg.lrs_for(m, previous))
    results, extensions = [], []
    n_run = n_done = 0
    ups = downs = 0
    batch = lrs
    mults = (mup_lr_multipliers(spec, cfg.optimizer, mup_base_width(cfg))
             if cfg.parametrisation == "mup" else None)
    while True:
        _, known = _best_lr(results)
        res = run_study(
            spec, ds.x, y_loss, ds.classes if task == "classification" else None,
            loss=loss, batch_size=m, lrs=batch, seeds=seeds, momentum=cfg.effective_momentum,
            max_steps=cap, target_metric=metric, target=target,
            eval_growth=cfg.eval_growth, stop_factor=cfg.stop_factor, dtype=dtype,
            known_best=known, optimizer=cfg.optimizer, lr_multipliers=mults,
            lr_jitter=cfg.lr_ratio if cfg.lr_jitter else 1.0,
            known_seed_best=_seed_best(results), moments=moments)
        r, d = _write_trials(out, spec, ds, m, res, cfg, loss, metric, target)
        n_run, n_done = n_run + r, n_done + d
        results += res
        direction = edge_direction(results)
        if direction is None or not cfg.lr_extend:
            break
        if extensions and not any(v[0] for v in lr_summary(results).values()):
            break  # no lr reached the target with every seed even after extending: the
            # target is likely beyond this net at this batch size; more lrs would only
            # burn max_steps each
        if (direction == "up" and ups >= cfg.lr_extend) or \
                (direction == "down" and downs >= cfg.lr_extend):
            break
        tried = sorted({r_["lr"] for r_ in results})
        q, k = cfg.lr_ratio, len(lrs)
        if direction == "up":
            ups += 1
            batch = [float(f"{tried[-1] * q ** j:.6g}") for j in range(1, k + 1)]
        else:
            downs += 1
            batch = [float(f"{tried[0] / q ** j:.6g}") for j in range(k, 0, -1)]
        extensions.append({"direction": direction, "lrs": batch})
    best, best_steps = _best_lr(results)
    record = {"schema": SCHEMA, "arch_id": aid, "batch_size": m, "lrs_initial": lrs,
              "lrs_tried": sorted({r_["lr"] for r_ in results}), "extensions": extensions,
              "best_lr": best, "best_steps": best_steps, "step_cap": cap,
              "anchor_lr": _leading_lr(results),
              "edge_resolved": best is not None and edge_direction(results) is None,
              "wall_s": round(time.perf_counter() - t0, 3)}
    return record, n_run, n_done


def _write_trials(out, spec, ds, m, results, cfg, loss, metric, target):
    aid = arch_id(spec)
    n_run = n_done = 0
    for r in results:
        path = trial_path(out, aid, m, r["lr"], r["seed"])
        if os.path.exists(path):
            n_done += 1
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
            "momentum": cfg.effective_momentum, "optimizer": cfg.optimizer,
            "parametrisation": cfg.parametrisation, "dtype": cfg.dtype,
            **{k: v for k, v in r.items() if k not in ("lr", "seed", "status", "steps_to_target")},
        }
        write_json_atomic(path, rec)
        n_run += 1
    return n_run, n_done


def _progress(total, enabled, initial=0):
    """One bar over every study; ``initial`` studies already on disk do not count towards
    the rate, so the ETA is the remaining studies at the current pace."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="study", desc="sweep",
                disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


__all__ = ["run_sweep", "plan", "init_statistics", "edge_direction", "lr_summary",
           # re-exported from ._records
           "load_trials", "load_studies", "write_json_atomic", "trial_path", "study_path",
           "versions", "write_curves", "CURVES_FILE"]
