r"""The critical batch along training, measured directly by branching (Merrill et al. 2025)
and predicted by the gradient-noise scale at the same checkpoint.

Vocabulary (experiments/README.md): a **reference run** trains one net at a small batch and
saves **checkpoints** (parameters *and* optimiser state) when its training loss first falls
to each level of ``branch.checkpoint_losses``; a **branch** is a study
(:func:`experiments._lr_search.search_study`: every lr × seed, the lr grid √2 apart and
extended at an edge optimum) that restarts from a checkpoint at batch size m and counts the
steps until the training loss is ``(1 − reduction)`` × the checkpoint's loss. Per
checkpoint, McCandlish's fit of steps vs m gives :math:`B_\text{crit}(t)` with the
jackknife-over-seeds interval of the study (:func:`experiments._fit.net_interval`: seeds fix
the batch order and each seed's shift of the lr grid).

The **prediction** at the same checkpoint is McCandlish's simple noise scale of the training
set, from per-example gradient norms (:func:`numerics.gradient_diversity`), in the metric the
optimiser uses: Euclidean for SGD, Adam's second-moment metric
:math:`P = \operatorname{diag}(1/(\sqrt{\hat v} + \epsilon))` for Adam
(:func:`experiments._branch_predict.predict`).

Branches continue the reference run's optimiser: the checkpoint's state (Adam's moments and
step count) is kept, only the learning rate and the batch size change. A branch's batches
are drawn with replacement, like every trial of the toolkit.

Files (``OUT/``, every one written atomically; a rerun skips what is on disk):

* ``branch_config.toml``: the config in force; ``reference/<net>-<opt>.json`` (the
  reference curve and each checkpoint's step and loss) and ``.npz`` (the checkpoints'
  arrays, no pickle);
* ``studies/<net>-<opt>/c<k>-m<m>.json``: one branch study with its trials;
* ``predict/<net>-<opt>-c<k>.json``: the noise scales at checkpoint k;
* ``branch.json``, ``report.md``, ``branch_critical_batch.png`` / ``.pdf``: the analysis.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import numpy as np

from ._config import SweepConfig, config_from_dict, read_toml
from ._errors import ExperimentError
from ._families import arch_id, family_specs
from ._records import Workload, read_json, write_json_atomic, write_text_atomic

BRANCH_KEYS = ("optimizers", "reference_batch", "reference_seed", "reference_lr",
               "reference_max_steps", "reference_eval_growth", "checkpoint_losses",
               "reduction", "prediction_blocks")


@dataclasses.dataclass(frozen=True)
class BranchConfig:
    """A branched study: the sweep config (data, model, the branches' lr search and seeds)
    and the ``[branch]`` table.

    Attributes:
        sweep: the :class:`SweepConfig` of ``[data]``, ``[model]``, ``[families]`` (the
            width family: ``widths`` at ``width_depth``) and ``[train]`` (the branches'
            batch sizes, lr grid rules, seeds, step cap, ``dtype``).
        optimizers: ``("sgd", "adam")`` or a subset.
        reference_batch, reference_seed: the reference run's batch size and seed.
        reference_lr: ``{optimizer: lr}`` of the reference run; each branch's first lr
            grid at the reference batch is this lr × {1/√2, 1, √2}.
        reference_max_steps: cap of the reference run (a level not reached is reported).
        reference_eval_growth: the reference run evaluates the training loss at steps
            this factor apart (a checkpoint is the first evaluation at or below its level).
        checkpoint_losses: the training-loss levels of the checkpoints, decreasing.
        reduction: a branch's target is ``(1 − reduction)`` × its checkpoint's loss.
        prediction_blocks: the training set is cut into this many blocks for the noise
            scale's delete-a-block jackknife interval.
    """

    sweep: SweepConfig
    optimizers: tuple = ("sgd", "adam")
    reference_batch: int = 8
    reference_seed: int = 0
    reference_lr: tuple = (("sgd", 0.06), ("adam", 0.001))
    reference_max_steps: int = 20000
    reference_eval_growth: float = 1.02
    checkpoint_losses: tuple = (2.0, 1.6, 1.3, 1.0)
    reduction: float = 0.1
    prediction_blocks: int = 16

    def lr(self, optimizer: str) -> float:
        return dict(self.reference_lr)[optimizer]

    def for_optimizer(self, optimizer: str) -> SweepConfig:
        """The branches' sweep config for one optimizer (its first lr grid centred on the
        reference lr at the reference batch)."""
        r = 2 ** 0.5
        lr = self.lr(optimizer)
        return self.sweep.replace(optimizer=optimizer, lrs=(lr / r, lr, lr * r),
                                  lr_reference_batch=self.reference_batch,
                                  target_metric="loss", target=1.0)

    def to_toml(self) -> str:
        branch = ["[branch]",
                  f"optimizers = {_toml_list(self.optimizers)}",
                  f"reference_batch = {self.reference_batch}",
                  f"reference_seed = {self.reference_seed}",
                  "reference_lr = {" + ", ".join(f"{k} = {v!r}" for k, v in self.reference_lr)
                  + "}",
                  f"reference_max_steps = {self.reference_max_steps}",
                  f"reference_eval_growth = {self.reference_eval_growth!r}",
                  f"checkpoint_losses = {_toml_list(self.checkpoint_losses)}",
                  f"reduction = {self.reduction!r}",
                  f"prediction_blocks = {self.prediction_blocks}", ""]
        return self.sweep.to_toml() + "\n" + "\n".join(branch)


def _toml_list(v) -> str:
    return "[" + ", ".join(f'"{x}"' if isinstance(x, str) else repr(x) for x in v) + "]"


def branch_config_from_dict(raw: dict, source: str = "config") -> BranchConfig:
    """Build and check a :class:`BranchConfig` from parsed TOML (unknown keys refused)."""
    raw = dict(raw)
    table = raw.pop("branch", {})
    if not isinstance(table, dict):
        raise ExperimentError(f"{source}: branch must be a table")
    for key in table:
        if key not in BRANCH_KEYS:
            raise ExperimentError(f"{source}: unknown key branch.{key} "
                                  f"(known: {', '.join(BRANCH_KEYS)})")
    raw.setdefault("model", {}).setdefault("budget", 0)
    sweep = config_from_dict(raw, source)
    if sweep.is_suite:
        raise ExperimentError(f"{source}: a branched study takes no [suite]")
    if not sweep.width_family_widths or not sweep.width_family_depth:
        raise ExperimentError(f"{source}: set families.widths and families.width_depth "
                              f"(the nets whose critical batch is followed)")
    kw = {}
    for key, value in table.items():
        where = f"{source}: branch.{key}"
        if key == "optimizers":
            if not isinstance(value, list) or not value or \
                    any(v not in ("sgd", "adam") for v in value) or len(set(value)) != len(value):
                raise ExperimentError(f"{where}: expected distinct names among 'sgd', 'adam', "
                                      f"got {value!r}")
            kw[key] = tuple(value)
        elif key == "reference_lr":
            if not isinstance(value, dict) or any(
                    not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0
                    or not math.isfinite(v) for v in value.values()):
                raise ExperimentError(f"{where}: expected a table of positive learning rates, "
                                      f"e.g. {{sgd = 0.06, adam = 0.001}}, got {value!r}")
            kw[key] = tuple(sorted((str(k), float(v)) for k, v in value.items()))
        elif key == "checkpoint_losses":
            if not isinstance(value, list) or not value or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                    or not math.isfinite(v) for v in value) or \
                    any(a <= b for a, b in zip(value, value[1:])):
                raise ExperimentError(f"{where}: expected positive losses in decreasing order, "
                                      f"got {value!r}")
            kw[key] = tuple(float(v) for v in value)
        elif key in ("reduction", "reference_eval_growth"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ExperimentError(f"{where}: expected a number, got {value!r}")
            kw[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ExperimentError(f"{where}: expected an integer, got {value!r}")
            kw[key] = value
    cfg = BranchConfig(sweep=sweep, **kw)
    _validate(cfg, source)
    return cfg


def _validate(c: BranchConfig, source: str) -> None:
    def bad(msg):
        raise ExperimentError(f"{source}: {msg}")

    missing = [o for o in c.optimizers if o not in dict(c.reference_lr)]
    if missing:
        bad(f"branch.reference_lr has no learning rate for {', '.join(missing)}")
    if not 0 < c.reduction < 1:
        bad(f"branch.reduction must be in (0, 1), got {c.reduction}")
    if c.reference_batch < 1:
        bad(f"branch.reference_batch must be >= 1, got {c.reference_batch}")
    if c.reference_seed < 0:
        bad(f"branch.reference_seed must be >= 0, got {c.reference_seed}")
    if c.reference_max_steps < 1:
        bad(f"branch.reference_max_steps must be >= 1, got {c.reference_max_steps}")
    if not c.reference_eval_growth > 1:
        bad(f"branch.reference_eval_growth must be > 1, got {c.reference_eval_growth}")
    if c.prediction_blocks < 2:
        bad(f"branch.prediction_blocks must be >= 2 (a jackknife), got {c.prediction_blocks}")
    if len(c.sweep.batch_sizes) < 3:
        bad("train.batch_sizes needs at least 3 sizes (McCandlish's fit has 2 parameters)")
    if c.sweep.seeds < 2:
        bad(f"train.seeds must be >= 2 (the intervals are a jackknife over seeds), "
            f"got {c.sweep.seeds}")


def load_branch_config(path: str) -> BranchConfig:
    """Read a branched study's TOML config (``experiments/configs/branch.toml``)."""
    return branch_config_from_dict(read_toml(path), source=path)


# --------------------------------------------------------------------------- planning
def plan_branches(cfg: BranchConfig) -> Workload:
    """The data and the width family (no training); the workload's target is a placeholder
    that every branch replaces by its own."""
    from ._plan import plan

    w = plan(cfg.for_optimizer(cfg.optimizers[0]))
    if w.loss != "cross_entropy" and w.task == "classification":
        raise ExperimentError("a branched study of a classification task uses cross-entropy")
    fam = family_specs(cfg.sweep, input_dim=w.data.input_dim, outputs=w.data.outputs)["width"]
    if cfg.reference_batch > w.data.n:
        raise ExperimentError(f"branch.reference_batch {cfg.reference_batch} exceeds the "
                              f"{w.data.n} training examples")
    return dataclasses.replace(w, families={"width": fam}, specs=tuple(fam))


def run_key(spec, optimizer: str) -> str:
    """``<arch_id>-<optimizer>``: one reference run and its branches."""
    return f"{arch_id(spec)}-{optimizer}"


# --------------------------------------------------------------------------- reference run
def _template(spec, optimizer: str, dtype):
    """(params, opt_state) of one fresh trial: the structure a checkpoint is read into."""
    import jax
    import jax.numpy as jnp

    from ._train import _init_trials

    opt_key = (0.0, optimizer, None)
    st = _init_trials(spec, jnp.asarray([1.0], dtype), jnp.asarray([0], jnp.int32), opt_key,
                      jnp.dtype(dtype))
    return jax.tree_util.tree_map(lambda a: a[0], (st.params, st.opt_state))


def save_checkpoints(path: str, states: list) -> None:
    """Write checkpoints ``[(params, opt_state), ...]`` to one ``.npz`` (arrays only),
    atomically."""
    import jax

    arrays = {}
    for k, st in enumerate(states):
        for i, leaf in enumerate(jax.tree_util.tree_leaves(st)):
            arrays[f"c{k}_{i}"] = np.asarray(jax.device_get(leaf))
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_checkpoints(path: str, template, count: int) -> list:
    """The ``count`` checkpoints of ``path`` in the structure of ``template``."""
    import jax
    import jax.numpy as jnp

    leaves, tree = jax.tree_util.tree_flatten(template)
    try:
        with np.load(path, allow_pickle=False) as f:
            out = []
            for k in range(count):
                vals = [f[f"c{k}_{i}"] for i in range(len(leaves))]
                for v, t in zip(vals, leaves):
                    if v.shape != t.shape:
                        raise ExperimentError(f"{path}: checkpoint {k} does not fit this net "
                                              f"(array {v.shape} for {t.shape})")
                out.append(jax.tree_util.tree_unflatten(
                    tree, [jnp.asarray(v, t.dtype) for v, t in zip(vals, leaves)]))
    except (OSError, KeyError, ValueError) as err:
        raise ExperimentError(f"{path}: unreadable checkpoint file ({err}); delete it to "
                              f"rerun the reference run") from None
    return out


def reference_run(cfg: BranchConfig, w: Workload, spec, optimizer: str):
    """Train the reference run and return (record, checkpoints).

    One trial at ``reference_batch`` and ``reference_lr`` from seed ``reference_seed``'s
    init; the training loss on the whole set is evaluated at steps ``reference_eval_growth``
    apart, and a checkpoint is taken at the first evaluation whose loss is at or below
    each level. The run stops at the last level or at ``reference_max_steps``."""
    import jax
    import jax.numpy as jnp

    from ._train import _advance, _evaluate, _init_trials, next_eval_step

    sw = cfg.sweep
    dtype = jnp.dtype(sw.dtype)
    opt_key = (0.0, optimizer, None)
    x = jnp.asarray(w.data.x, dtype)
    y = jnp.asarray(w.y_loss) if w.loss == "cross_entropy" else jnp.asarray(w.y_loss, dtype)
    cls = jnp.asarray(w.data.classes if w.data.classes is not None
                      else np.zeros(w.data.n, np.int32), jnp.int32)
    classification = w.task == "classification"
    state = _init_trials(spec, jnp.asarray([cfg.lr(optimizer)], dtype),
                         jnp.asarray([cfg.reference_seed], jnp.int32), opt_key, dtype)
    ev = dict(spec=spec, loss=w.loss, classification=classification)
    kw = dict(spec=spec, loss=w.loss, batch_size=cfg.reference_batch, opt_key=opt_key)
    t0 = time.perf_counter()
    curve = {"step": [], "loss": [], "accuracy": []}
    levels = list(cfg.checkpoint_losses)
    found, states = [], []

    def record(t):
        loss, acc = (float(v[0]) for v in jax.device_get(_evaluate(state.params, x, y, cls,
                                                                     **ev)))
        curve["step"].append(t)
        curve["loss"].append(loss)
        curve["accuracy"].append(acc if math.isfinite(acc) else None)
        while len(found) < len(levels) and math.isfinite(loss) and loss <= levels[len(found)]:
            found.append({"level": levels[len(found)], "step": t, "loss": loss,
                          "accuracy": acc if math.isfinite(acc) else None})
            states.append(jax.tree_util.tree_map(lambda a: a[0],
                                                 (state.params, state.opt_state)))
        return loss

    t = 0
    loss = record(0)
    while t < cfg.reference_max_steps and len(found) < len(levels) and math.isfinite(loss):
        t_next = next_eval_step(t, cfg.reference_eval_growth, cfg.reference_max_steps)
        state = _advance(state, jnp.asarray(t_next - t, jnp.int32), x, y, **kw)
        t = t_next
        loss = record(t)
    rec = {"arch_id": arch_id(spec), "width": spec.width, "depth": spec.depth,
           "params": spec.params, "optimizer": optimizer, "batch_size": cfg.reference_batch,
           "lr": cfg.lr(optimizer), "seed": cfg.reference_seed, "steps_run": t,
           "checkpoints": found,
           "missing_levels": levels[len(found):],
           "diverged": not math.isfinite(loss), "curve": curve,
           "wall_s": round(time.perf_counter() - t0, 3)}
    return rec, states


# --------------------------------------------------------------------------- branches
def branch_study(cfg: BranchConfig, w: Workload, spec, optimizer: str, start, loss0: float,
                 m: int, previous, previous_steps) -> dict:
    """One branch: every lr × seed at batch ``m`` from checkpoint ``start`` until the
    training loss is (1 − reduction) × ``loss0``; returns the study record with its trials
    (curves dropped: the steps-to-target is what the fit reads)."""
    import jax.numpy as jnp

    from ._lr_search import search_study, step_cap

    scfg = cfg.for_optimizer(optimizer)
    target = (1 - cfg.reduction) * loss0
    wb = dataclasses.replace(w, config=scfg, metric="loss", target=target)
    seeds = list(range(scfg.seed_start, scfg.seed_start + scfg.seeds))
    trials = []
    st = search_study(wb, spec, m, seeds, previous=previous,
                      cap=step_cap(scfg, previous_steps), dtype=jnp.dtype(scfg.dtype),
                      moments=False, lr_multipliers=None, save=trials.extend, start=start)
    keep = ("lr", "seed", "lr_actual", "status", "steps_to_target", "steps_run",
            "stop_reason", "diverged_by_step", "final_loss", "compile_s", "wall_s")
    st["target_loss"] = target
    st["trials"] = [{k: t[k] for k in keep} for t in trials]
    return st


def run_branches(cfg: BranchConfig, out: str, *, command: str = "",
                 progress: bool = True) -> dict:
    """Run (or resume) every reference run, branch study and prediction of a config into
    ``out``; returns ``{"studies_run": ..., "studies_done": ..., "wall_s": ...}``."""
    import jax.numpy as jnp
    from tqdm import tqdm

    from ._branch_predict import predict
    from ._records import versions

    t0 = time.perf_counter()
    w = plan_branches(cfg)  # bad data or settings are refused before anything is written
    os.makedirs(out, exist_ok=True)
    cfg_path = os.path.join(out, "branch_config.toml")
    text = cfg.to_toml()
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            if f.read() != text:
                raise ExperimentError(f"{out} holds a branched study with another config; "
                                      f"use another --out")
    write_text_atomic(cfg_path, text)
    meta_path = os.path.join(out, "run.json")
    meta = read_json(meta_path) if os.path.exists(meta_path) else {"invocations": []}
    meta["invocations"].append({"command": command, "versions": versions(),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json_atomic(meta_path, meta)

    sw = cfg.sweep
    dtype = jnp.dtype(sw.dtype)
    runs = [(spec, opt) for opt in cfg.optimizers for spec in w.specs]
    total = len(runs) * len(cfg.checkpoint_losses) * len(w.batch_sizes)
    bar = tqdm(total=total, unit="study", desc="branch", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    n_run = n_done = 0
    for spec, opt in runs:
        key = run_key(spec, opt)
        rpath = os.path.join(out, "reference", key + ".json")
        cpath = os.path.join(out, "reference", key + ".npz")
        template = _template(spec, opt, dtype)
        if os.path.exists(rpath) and os.path.exists(cpath):
            ref = read_json(rpath)
            states = load_checkpoints(cpath, template, len(ref["checkpoints"]))
        else:
            bar.set_postfix_str(f"{key}: reference run")
            ref, states = reference_run(cfg, w, spec, opt)
            os.makedirs(os.path.dirname(rpath), exist_ok=True)
            save_checkpoints(cpath, states)
            write_json_atomic(rpath, ref)
        bar.total -= len(w.batch_sizes) * (len(cfg.checkpoint_losses) - len(states))
        for k, (ck, start) in enumerate(zip(ref["checkpoints"], states)):
            ppath = os.path.join(out, "predict", f"{key}-c{k}.json")
            if not os.path.exists(ppath):
                bar.set_postfix_str(f"{key} c{k}: noise scale")
                pred = predict(spec, start, w, opt, blocks=cfg.prediction_blocks)
                write_json_atomic(ppath, {"run": key, "checkpoint": k, **ck, **pred})
            previous = previous_steps = None
            for m in w.batch_sizes:
                spath = os.path.join(out, "studies", key, f"c{k}-m{m}.json")
                if os.path.exists(spath):
                    st = read_json(spath)
                    n_done += 1
                else:
                    bar.set_postfix_str(f"{key} c{k} batch {m}")
                    st = branch_study(cfg, w, spec, opt, start, ck["loss"], m, previous,
                                      previous_steps)
                    st.update(run=key, checkpoint=k, checkpoint_step=ck["step"],
                              checkpoint_loss=ck["loss"])
                    write_json_atomic(spath, st)
                    n_run += 1
                    bar.update(1)
                if st.get("anchor_lr"):
                    previous = (m, st["anchor_lr"])
                previous_steps = st.get("best_steps") or previous_steps
    bar.close()
    wall = time.perf_counter() - t0
    meta["invocations"][-1]["wall_s"] = round(wall, 1)
    meta["invocations"][-1]["studies_run"] = n_run
    write_json_atomic(meta_path, meta)
    return {"studies_run": n_run, "studies_done": n_done, "wall_s": wall}


__all__ = ["BranchConfig", "branch_config_from_dict", "load_branch_config", "plan_branches",
           "reference_run", "branch_study", "run_branches", "save_checkpoints",
           "load_checkpoints", "run_key"]
