"""Running a sweep: every (net × batch size) study of each planned workload, serially or in
parallel processes (one per workload), the trials of a study sharded over local devices by
:func:`experiments._train.run_study`; resume, the folder lock, progress and wall times.

Planning is :mod:`experiments._plan`, one study's learning-rate search
:mod:`experiments._lr_search`, the files and their layout :mod:`experiments._records`.

A config with a ``[suite]`` (the C2 study) runs one workload per (data, loss, arch[,
optimizer, parametrisation]) into ``OUT/<name>/`` and writes ``OUT/suite.json``; one progress
bar (with an ETA) covers every study of every workload.

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so
a kill at any moment leaves each file either complete or absent. Rerunning the same command
skips every study whose ``study.json`` and trial files all exist; a study with some files
missing is rerun (it is deterministic) and only the missing files are written. A folder
holding a sweep with a different workload is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import numerics

from ._config import SweepConfig
from ._errors import ExperimentError
from ._families import arch_id, mup_base_width, mup_lr_multipliers
from ._lr_search import search_study, step_cap
from ._plan import changed_settings, plan, workload_record
from ._records import (SCHEMA, Workload, _FolderLock, _remove_stale_tmp, read_json,
                       study_path, trial_path, versions, write_json_atomic, write_text_atomic)

INIT_KEY = 0  # the Monte Carlo at initialisation draws net i from fold_in(key(INIT_KEY), i)


# --------------------------------------------------------------------------- init statistics
def init_statistics(spec, x, y_loss, y_sq, loss, samples: int) -> dict:
    """B_S of the training set at initialisation for the training loss and for the squared
    loss: :func:`numerics.mc_moments` over ``samples`` random inits (net i from
    ``fold_in(key(INIT_KEY), i)``, the same nets for both losses), at numerics' default
    precision (float64 inside :func:`numerics.x64`). Keys (experiments/README.md,
    "Vocabulary"): ``E_B_S`` (E[B_S], the mean over inits) with ``E_B_S_se``, ``B_S_sd`` (its
    spread over inits), ``B_bar_S`` (n E[S1]/E[S2]) with ``B_bar_S_se`` (delta method) and
    ``B_S_per_init``. Theory's B̄_S is computed by the report (:mod:`experiments._predict`)."""
    res = {}
    for name, lname, yy in (("training_loss", loss, y_loss), ("squared_loss", "squared", y_sq)):
        mc = numerics.mc_moments(spec, x, yy, key=jax.random.key(INIT_KEY), samples=samples,
                                 loss=lname)
        bs = mc.B_S_samples
        res[name] = {
            "loss": lname, "samples": samples, "key": INIT_KEY,
            "E_B_S": float(mc.mean_B_S), "E_B_S_se": float(mc.mean_B_S_se),
            "B_S_sd": float(np.std(bs, ddof=1)) if bs.size > 1 else None,
            "B_bar_S": float(mc.batch_size_bound),
            "B_bar_S_se": float(mc.batch_size_bound_se),
            "B_S_per_init": [float(v) for v in bs],
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
    works = {name: plan(wcfg) for name, wcfg in cfg.workloads() if name in names}
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
    total = sum(w.studies for w in works.values())
    # largest training set first (longest-processing-time order: the long workloads start
    # while the short ones fill the other slots); ties keep the config's order
    queue = sorted(works, key=lambda name: -works[name].data.n)
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
    works = [(name, plan(wcfg)) for name, wcfg in cfg.workloads()
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
    total = sum(w.studies for _, w in works)
    bar = _progress(total, progress, initial=min(total, sum(
        _finished_studies(os.path.join(out, name) if name else out) for name, _ in works)))
    n_run = n_done = 0
    try:
        for name, w in works:
            r, d = _run_workload(w, os.path.join(out, name) if name else out,
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


def _run_workload(w: Workload, out, *, bar, log, command):
    ds = w.data
    log(f"workload {os.path.basename(os.path.normpath(out))}: {ds.description}")
    log(f"task: {w.task}, loss: {w.loss}, target: training {w.metric} "
        f"{'>=' if w.metric == 'accuracy' else '<='} {w.target:g}")
    for fam, members in w.families.items():
        log(f"{fam} family: {', '.join(arch_id(s) for s in members)}")
    if w.skipped:
        log(f"skipping batch sizes larger than n={ds.n}: {list(w.skipped)}")
    os.makedirs(out, exist_ok=True)
    with _FolderLock(out):
        return _run_workload_locked(w, out, bar=bar, log=log, command=command)


def _run_workload_locked(w: Workload, out, *, bar, log, command):
    cfg, ds = w.config, w.data
    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    _remove_stale_tmp(out)  # only under the lock: never another live run's temporary file
    wl = workload_record(w)
    wl_path = os.path.join(out, "workload.json")
    if os.path.exists(wl_path):
        old = read_json(wl_path)
        if not isinstance(old, dict) or not isinstance(old.get("config"), dict):
            raise ExperimentError(f"{wl_path}: not a workload record (use another --out, or "
                                  f"remove the file)")
        diff = changed_settings(old, wl)
        if diff:
            raise ExperimentError(f"{out} holds a sweep of a different workload (differs in: "
                                  f"{', '.join(diff)}); use another --out")
    wl["versions"] = versions()
    wl["command"] = command
    write_json_atomic(wl_path, wl)
    write_text_atomic(os.path.join(out, "config.toml"), cfg.to_toml())

    seeds = list(range(cfg.seed_start, cfg.seed_start + cfg.seeds))
    mults = None
    n_done = n_run = 0
    for spec in w.specs:
        aid = arch_id(spec)
        apath = os.path.join(out, "archs", f"{aid}.json")
        if not os.path.exists(apath):
            bar.set_postfix_str(f"{aid}: B_S at init")
            stats = init_statistics(spec, ds.x, w.y_loss, ds.y, w.loss, cfg.init_samples)
            record = {"arch_id": aid, "arch": spec.arch, "activation": spec.activation,
                      "depth": spec.depth, "width": spec.width, "params": spec.params,
                      "n": ds.n, "describe": spec.describe(), "spec": spec.to_dict(),
                      **stats}
            write_json_atomic(apath, record)
        if cfg.parametrisation == "mup":
            mults = mup_lr_multipliers(spec, cfg.optimizer, mup_base_width(cfg))
        previous = previous_steps = None
        for m in w.batch_sizes:
            bar.set_postfix_str(f"{os.path.basename(os.path.normpath(out))} {aid} batch {m}")
            st = _finished_study(out, aid, m, seeds)
            if st is not None:
                n_done += len(st["lrs_tried"]) * len(seeds)  # in the bar's ``initial``
            else:
                counts = [0, 0]

                def save(results, m=m, counts=counts):
                    r, d = _write_trials(out, w, spec, m, results)
                    counts[0], counts[1] = counts[0] + r, counts[1] + d

                # B_S along the run only where a predictor reads it: the smallest batch
                st = search_study(w, spec, m, seeds, previous=previous,
                                  cap=step_cap(cfg, previous_steps), dtype=dtype,
                                  moments=m == w.batch_sizes[0], lr_multipliers=mults,
                                  save=save)
                write_json_atomic(study_path(out, aid, m), st)
                n_run, n_done = n_run + counts[0], n_done + counts[1]
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
    if not isinstance(st, dict) or not isinstance(st.get("lrs_tried"), list):
        return None  # an incomplete or foreign record: the study is run again
    paths = [trial_path(out, aid, m, lr, s) for lr in st["lrs_tried"] for s in seeds]
    return st if all(os.path.exists(p) for p in paths) else None


def _finished_studies(out: str) -> int:
    """Studies of a workload folder with a ``study.json`` (for the progress bar)."""
    return sum(1 for _d, _, fs in os.walk(os.path.join(out, "trials")) for f in fs
               if f == "study.json")


def _write_trials(out, w: Workload, spec, m, results):
    """Write each trial record not yet on disk; returns (written, already there)."""
    cfg = w.config
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
            "spec": spec.to_dict(),
            "batch_size": m, "lr": r["lr"], "seed": r["seed"],
            "status": r["status"], "steps_to_target": steps,
            "epochs_to_target": None if steps is None else steps * m / w.data.n,
            "n": w.data.n, "loss": w.loss, "target_metric": w.metric, "target": w.target,
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


__all__ = ["run_sweep", "init_statistics", "INIT_KEY"]
