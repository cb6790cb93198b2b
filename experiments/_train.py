r"""Training: a drop-in optax step that also yields the batch's B_S, and vmapped studies.

:func:`train_step` is the reusable piece. It computes the optimiser gradient from
:func:`numerics.per_example_stats`, whose one backward pass also gives the per-example norms,
so the training batch's

.. math::

    S_1 = \sum_{i\in\text{batch}}\lVert g_i\rVert^2,\quad S_2 = \Big\lVert\sum_{i\in\text{batch}}
    g_i\Big\rVert^2,\quad B_S = m\,S_1/S_2

come at no extra pass. :func:`run_study` trains every (learning rate × seed) trial of one batch
size together: the trials are stacked on a leading axis and one compiled, vmapped step advances
them all (sharded across local devices when there are several).

Protocol details:

* batches of ``m`` indices drawn uniformly *with replacement* from the n training examples
  (the sampling model of the batch-size bound), a fresh draw per step from ``fold_in(key(seed), step)``;
  all learning rates of one seed share the initial weights and the batch sequence;
* the training loss/accuracy on the whole training set is evaluated at log-spaced steps
  (each evaluation step is ``ceil(eval_growth`` × the previous one``)``, at least +1), so
  ``steps_to_target`` is the first evaluation step at which the target holds: exact up to the
  ``eval_growth`` ratio (10% by default);
* a trial whose update produces NaN/inf is frozen and marked ``INFEASIBLE``; one that never
  reaches the target is ``UNREACHED``. ``stop_reason`` says whether the step cap ended it
  (``max_steps``) or the study stopped because its learning-rate choice was settled
  (``dominated``): some lr had reached the target with every seed, with mean M steps, and every
  lr with a trial still running would have a mean of at least ``stop_factor`` × M even if its
  running trials reached the target at once.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import numerics
from theory import batch_size_bound, simple_noise_scale

from ._records import INFEASIBLE, REACHED, UNREACHED


def train_step(spec, opt: optax.GradientTransformation, loss: str = "cross_entropy", *,
               stats: bool = True):
    r"""A jittable optax training step for a :class:`theory.NetSpec` network that also returns
    the gradient statistics of the batch it trained on.

    The update uses the mean gradient :math:`\frac1m\sum_i\nabla\ell_i` taken from the same
    backward pass that gives :math:`S_1, S_2` (:func:`numerics.value_grad_and_diversity`, the
    monitor any JAX model can use; a spec network's layers all take its dense ghost-norm path).

    Args:
        spec: the network.
        opt: any optax transformation (e.g. ``optax.sgd(0.1)``).
        loss: ``"cross_entropy"`` (``y`` = integer classes) or ``"squared"`` (``y`` = targets).
        stats: False gives a plain step (``jax.value_and_grad`` of the batch mean loss) whose
            metrics hold ``loss`` only — what :func:`run_study` uses, since it measures B_S
            on the whole training set at checkpoints instead of per batch.

    Returns:
        ``step(params, opt_state, x, y) -> (params, opt_state, metrics)`` with ``metrics`` a dict
        of scalars: ``loss`` (batch mean), ``S1``, ``S2``, ``batch_size_bound`` (:math:`B_S` of
        the batch) and ``B_simple`` (:math:`B_S - 1`, McCandlish's simple noise scale).

    Example:
        >>> import jax, jax.numpy as jnp, optax, numerics
        >>> from theory import NetSpec
        >>> spec = NetSpec.uniform(2, 16, 4, outputs=3, activation="relu")
        >>> params = numerics.init_params(spec, key=jax.random.key(0))
        >>> opt = optax.sgd(0.1)
        >>> step = jax.jit(train_step(spec, opt, "cross_entropy"))
        >>> x, y = jnp.ones((8, 4)), jnp.zeros(8, dtype=jnp.int32)
        >>> params, state, metrics = step(params, opt.init(params), x, y)
        >>> sorted(metrics)
        ['B_simple', 'S1', 'S2', 'batch_size_bound', 'loss']
    """

    def example_loss(p, xi, yi):
        return _loss_from_output(numerics.apply(spec, p, xi), yi, loss)

    def plain(params, opt_state, x, y):
        value, grads = jax.value_and_grad(
            lambda p: jnp.mean(jax.vmap(example_loss, (None, 0, 0))(p, x, y)))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": value}

    value_grad = numerics.value_grad_and_diversity(example_loss)

    def step(params, opt_state, x, y):
        value, grads, st = value_grad(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": value, "S1": st.S1, "S2": st.S2,
                   "batch_size_bound": st.batch_size_bound, "B_simple": st.B_simple}
        return params, opt_state, metrics

    return step if stats else plain


def make_optimizer(momentum: float = 0.0, optimizer: str = "sgd",
                   lr_multipliers: tuple | None = None) -> optax.GradientTransformation:
    """The training optimiser with its learning rate in the optimiser state
    (``optax.inject_hyperparams``), so trials with different learning rates share one compiled
    step.

    Args:
        momentum: heavy-ball momentum of ``sgd`` / ``momentum`` (0: off).
        optimizer: ``"sgd"``, ``"momentum"`` (``optax.sgd`` with ``momentum``) or ``"adam"``
            (``optax.adam``, default betas and eps).
        lr_multipliers: one factor per layer (μP's per-layer learning rates,
            :func:`experiments._families.mup_lr_multipliers`), applied to the updates; None: 1.
    """
    if optimizer == "adam":
        base = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    else:
        base = optax.inject_hyperparams(optax.sgd)(
            learning_rate=1.0, momentum=momentum if momentum > 0 else None)
    if lr_multipliers is None:
        return base
    return optax.chain(base, _scale_layers(tuple(float(v) for v in lr_multipliers)))


def _scale_layers(mults: tuple) -> optax.GradientTransformation:
    """Multiply the update of layer ``l`` (the ``l``-th leaf) by ``mults[l]``."""

    def update(updates, state, params=None):
        del params
        leaves, tree = jax.tree_util.tree_flatten(updates)
        return jax.tree_util.tree_unflatten(
            tree, [u * jnp.asarray(m, u.dtype) for u, m in zip(leaves, mults)]), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _set_lr(opt_state, lr):
    """The optimiser state with its injected learning rate set to ``lr`` (the state of
    :func:`make_optimizer`: an ``inject_hyperparams`` state, alone or first in a chain)."""
    if hasattr(opt_state, "hyperparams"):
        hp = dict(opt_state.hyperparams)
        hp["learning_rate"] = jnp.asarray(lr, hp["learning_rate"].dtype)
        return opt_state._replace(hyperparams=hp)
    return (_set_lr(opt_state[0], lr),) + tuple(opt_state[1:])


def lr_jitter_factor(seed: int, ratio: float) -> float:
    r"""The per-seed shift of the learning-rate grid (``train.lr_jitter``):
    :math:`r^{u_s - 1/2}` with :math:`u_s = \{s\varphi\}` (golden-ratio fractions, so any
    5 consecutive seeds spread over the grid step :math:`r`). Each seed then explores its
    own grid, and the lr grid's resolution becomes part of the between-seed spread that the
    B_crit intervals measure.

    Example:
        >>> [round(lr_jitter_factor(s, 2 ** 0.5), 3) for s in range(3)]
        [0.841, 1.042, 0.913]
    """
    u = (seed * 0.6180339887498949) % 1.0
    return float(ratio ** (u - 0.5))


class _State(NamedTuple):
    params: list
    opt_state: object
    alive: jax.Array      # False once an update produced NaN/inf (then frozen)
    step: jax.Array
    key: jax.Array


def _tree_where(c, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(c, u, v), a, b)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves]))


@partial(jax.jit, static_argnames=("spec", "opt_key", "dtype"))
def _init_trials(spec, lrs, seeds, opt_key, dtype):
    opt = make_optimizer(*opt_key)

    def one(lr, seed):
        base = jax.random.key(seed)
        params = numerics.init_params(spec, key=jax.random.fold_in(base, 0), dtype=dtype)
        opt_state = _set_lr(opt.init(params), lr)
        return _State(params, opt_state, jnp.array(True), jnp.array(0, jnp.int32),
                      jax.random.fold_in(base, 1))

    return jax.vmap(one)(lrs, seeds)


@jax.jit
def _start_trials(start, lrs, seeds):
    """Trials that all begin at one point ``start = (params, opt_state)`` (a checkpoint of
    another run, its optimiser state included): only the learning rate (set in the state)
    and the seed (the batch order) differ; the step count starts at 0."""
    params, opt_state = start

    def one(lr, seed):
        return _State(params, _set_lr(opt_state, lr), jnp.array(True), jnp.array(0, jnp.int32),
                      jax.random.fold_in(jax.random.key(seed), 1))

    return jax.vmap(one)(lrs, seeds)


@partial(jax.jit, static_argnames=("spec", "loss", "batch_size", "opt_key"))
def _advance(state, k, x, y, *, spec, loss, batch_size, opt_key):
    """Run ``k`` (traced) optimiser steps of every trial."""
    step = train_step(spec, make_optimizer(*opt_key), loss, stats=False)
    n = x.shape[0]

    def one(st):
        idx = jax.random.randint(jax.random.fold_in(st.key, st.step), (batch_size,), 0, n)
        params, opt_state, met = step(st.params, st.opt_state, x[idx], y[idx])
        ok = st.alive & jnp.isfinite(met["loss"]) & _all_finite(params)
        return _State(_tree_where(ok, params, st.params),
                      _tree_where(ok, opt_state, st.opt_state), ok, st.step + 1, st.key)

    return jax.lax.fori_loop(0, k, lambda i, s: jax.vmap(one)(s), state)


def _loss_from_output(f, y, loss):
    if loss == "cross_entropy":
        return jax.nn.logsumexp(f) - f[y]
    r = f - y
    return 0.5 * jnp.sum(r * r)


@partial(jax.jit, static_argnames=("spec", "loss", "classification"))
def _evaluate(params, x, y, classes, *, spec, loss, classification):
    """Per trial: mean training loss and training accuracy (NaN for regression) on the whole
    training set (one forward pass)."""

    def one(p):
        out = jax.vmap(lambda xi: numerics.apply(spec, p, xi))(x)
        losses = jax.vmap(lambda f, t: _loss_from_output(f, t, loss))(out, y)
        if classification:
            acc = jnp.mean((jnp.argmax(out, axis=1) == classes).astype(x.dtype))
        else:
            acc = jnp.array(jnp.nan, x.dtype)
        return jnp.mean(losses), acc

    return jax.vmap(one)(params)


@partial(jax.jit, static_argnames=("spec", "loss"))
def _training_set_moments(params, x, y, *, spec, loss):
    """Per trial: S1, S2 of the whole training set (one backward pass, per-layer trick)."""

    def one(p):
        st = numerics.per_example_stats(spec, p, x, y, loss=loss)
        return st.S1, st.S2

    return jax.vmap(one)(params)


def _training_set_bound(params, x, y, *, spec, loss):
    """Per trial: B_S of the whole training set."""
    s1, s2 = _training_set_moments(params, x, y, spec=spec, loss=loss)
    return batch_size_bound(s1, s2, x.shape[0])


def _moments(params, x, y, spec, loss, n_trials):
    """(S1, S2) of the training set for the first ``n_trials`` trials (the padding dropped),
    shape (2, n_trials), float64. Every trial is computed: one fixed shape, no recompiles."""
    s1, s2 = jax.device_get(_training_set_moments(params, x, y, spec=spec, loss=loss))
    return np.asarray([s1, s2], np.float64)[:, :n_trials]


def _pad_for_devices(pairs: list) -> list:
    """``pairs`` padded with copies of its last entry to a multiple of the local device count
    (when there are several), so that :func:`_shard_trials` can always split the trial axis:
    3 lrs × 3 seeds on 2, 4 or 8 devices. The copies are trained and then ignored."""
    n_dev = len(jax.local_devices())
    return pairs + [pairs[-1]] * ((-len(pairs)) % n_dev if n_dev > 1 else 0)


def _shard_trials(tree):
    """Put the trial axis across local devices when there are several and it divides evenly
    (:func:`_pad_for_devices` makes it)."""
    devices = jax.local_devices()
    n_trials = jax.tree_util.tree_leaves(tree)[0].shape[0]
    if len(devices) < 2 or n_trials % len(devices):
        return tree, 1
    mesh = jax.sharding.Mesh(np.array(devices), ("trials",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("trials"))
    return jax.device_put(tree, sharding), len(devices)


def next_eval_step(t: int, growth: float, max_steps: int) -> int:
    """The evaluation grid: t -> min(max_steps, max(t + 1, ceil(growth · t)))."""
    return min(max_steps, max(t + 1, math.ceil(growth * t - 1e-9)))


def run_study(spec, x, y, classes, *, loss: str, batch_size: int, lrs, seeds, momentum=0.0,
              max_steps: int = 1000, target_metric: str = "accuracy", target: float = 0.9,
              eval_growth: float = 1.1, stop_factor: float = 2.0, dtype=jnp.float32,
              known_best: float | None = None, optimizer: str = "sgd",
              lr_multipliers: tuple | None = None, lr_jitter: float = 1.0,
              known_seed_best: dict | None = None, moments: bool = True,
              start=None) -> list[dict]:
    """Train all (lr × seed) trials of one batch size together; one result dict per trial.

    Args:
        spec: the network; ``x``, ``y``: training inputs and loss targets (integer classes for
            cross-entropy); ``classes``: integer labels for the accuracy, or None (regression).
        loss, batch_size, lrs, seeds, momentum, max_steps: the study.
        target_metric: ``"accuracy"`` (≥ target), ``"loss"`` (≤ target) or
            ``"relative_loss"`` (≤ target × :func:`constant_predictor_loss`).
        optimizer, lr_multipliers: see :func:`make_optimizer`.
        lr_jitter: the lr grid's ratio r when every seed's grid is shifted by its own
            :func:`lr_jitter_factor` (the trial trains at ``lr`` × that factor, recorded as
            ``lr_actual``; ``lr`` stays the grid's nominal value); 1: no shift.
        known_seed_best: {seed: fewest steps-to-target} from earlier runs of this study.
        moments: False skips the training-set B_S passes (``B_S_*`` fields are None).
        start: None (every seed's own random init, ``fold_in(key(seed), 0)``) or
            ``(params, opt_state)`` of :func:`make_optimizer`'s state: every trial starts
            there (a branch from a checkpoint, :mod:`experiments._branch`); step counts and
            batch draws start afresh.

    Returns:
        Per trial (ordered lr-major): ``lr``, ``seed``, ``status`` (REACHED / UNREACHED /
        INFEASIBLE), ``steps_to_target``, ``steps_run``, ``stop_reason``,
        ``diverged_by_step``, ``final_loss``, ``final_accuracy``, ``curve`` (``step``,
        ``loss``, ``accuracy`` at the evaluation steps), ``B_S_curve`` (``step``, ``B_S`` of
        the training set at step 0 and each power of two), ``B_S_init``, ``B_S_run_mean``,
        ``B_S_at_target`` (B_S of the training set at the evaluation
        where the trial first reached the target; None otherwise) and ``B_simple_at_target``
        (McCandlish's simple noise scale there, the plug-in B_S − 1), ``devices`` (how many
        devices the trials were sharded over), ``compile_s`` and ``wall_s`` (shared by the
        study).
    """
    t_start = time.perf_counter()
    pairs = [(float(lr), int(s)) for lr in lrs for s in seeds]
    actual = [lr * lr_jitter_factor(s, lr_jitter) if lr_jitter != 1.0 else lr
              for lr, s in pairs]
    padded = _pad_for_devices(list(zip(actual, [p[1] for p in pairs])))
    lr_arr = jnp.asarray([p[0] for p in padded], dtype)
    seed_arr = jnp.asarray([p[1] for p in padded], jnp.int32)
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y) if loss == "cross_entropy" else jnp.asarray(y, dtype)
    classification = classes is not None
    cls = jnp.asarray(classes if classification else np.zeros(x.shape[0], np.int32), jnp.int32)
    opt_key = (float(momentum), optimizer,
               None if lr_multipliers is None else tuple(float(v) for v in lr_multipliers))
    if start is None:
        state = _init_trials(spec, lr_arr, seed_arr, opt_key, jnp.dtype(dtype))
    else:
        state = _start_trials(start, lr_arr, seed_arr)
    state, n_shards = _shard_trials(state)
    kw = dict(spec=spec, loss=loss, batch_size=int(batch_size), opt_key=opt_key)
    ev = dict(spec=spec, loss=loss, classification=classification)

    n_trials = len(pairs)
    curve = {"step": [], "loss": [], "accuracy": []}
    hit = [None] * n_trials
    at_target = np.full((2, n_trials), np.nan)  # S1, S2 where each trial first hit
    dead_at = [None] * n_trials

    bs_curve = {"step": [], "B_S": []}

    def record(t):
        l, a = jax.device_get(_evaluate(state.params, x, y, cls, **ev))
        curve["step"].append(t)
        curve["loss"].append(np.asarray(l, np.float64))
        curve["accuracy"].append(np.asarray(a, np.float64))
        return np.asarray(l, np.float64), np.asarray(a, np.float64)

    def record_bound(t):
        # B_S of the training set at step 0 and whenever the step count passes a power of 2
        if not moments:
            return
        if bs_curve["step"] and (t.bit_length() == bs_curve["step"][-1].bit_length()):
            return
        b = jax.device_get(_training_set_bound(state.params, x, y, spec=spec, loss=loss))
        bs_curve["step"].append(t)
        bs_curve["B_S"].append(np.asarray(b, np.float64))

    record(0)
    record_bound(0)
    threshold = target * constant_predictor_loss(y, loss) \
        if target_metric == "relative_loss" else None
    compile_s = None
    t, stop_reason = 0, "max_steps"
    while t < max_steps:
        t_next = next_eval_step(t, eval_growth, max_steps)
        t0 = time.perf_counter()
        state = _advance(state, jnp.asarray(t_next - t, jnp.int32), x, y, **kw)
        t = t_next
        l, a = record(t)
        record_bound(t)
        if compile_s is None:
            compile_s = time.perf_counter() - t0
        alive = np.asarray(jax.device_get(state.alive))
        new_hits = np.zeros(n_trials, bool)
        for i in range(n_trials):
            if not alive[i]:
                if dead_at[i] is None:
                    dead_at[i] = t
                continue
            if hit[i] is None:
                if target_metric == "accuracy":
                    ok = a[i] >= target
                elif target_metric == "loss":
                    ok = l[i] <= target
                else:
                    ok = l[i] <= threshold
                if ok:
                    hit[i] = t
                    new_hits[i] = True
        if new_hits.any() and moments:
            at_target[:, new_hits] = _moments(state.params, x, y, spec, loss,
                                              n_trials)[:, new_hits]
        pending = [i for i in range(n_trials) if hit[i] is None and dead_at[i] is None]
        if not pending:
            stop_reason = "all_finished"
            break
        if _settled(pairs, hit, dead_at, t, stop_factor, known_best) and \
                _seeds_settled(pairs, hit, dead_at, t, known_seed_best):
            stop_reason = "dominated"
            break

    wall = time.perf_counter() - t_start
    n = x.shape[0]
    b_at = batch_size_bound(at_target[0], at_target[1], n)
    b_simple_at = simple_noise_scale(at_target[0], at_target[1], n)
    bs_steps = bs_curve["step"]
    bsteps = np.asarray(bs_steps)
    out = []
    for i, (lr, s) in enumerate(pairs):
        if hit[i] is not None:  # reached first; a later divergence stays in diverged_by_step
            status, reason = REACHED, "target reached"
        elif dead_at[i] is not None:
            status, reason = INFEASIBLE, "diverged (NaN/inf)"
        else:
            status, reason = UNREACHED, stop_reason
        end = hit[i] if hit[i] is not None else (dead_at[i] if dead_at[i] is not None else t)
        bcurve = np.array([c[i] for c in bs_curve["B_S"]])
        upto = bsteps <= end
        finite_b = bcurve[upto][np.isfinite(bcurve[upto])] if bcurve.size else bcurve
        out.append({
            "lr": lr, "seed": s, "lr_actual": float(f"{actual[i]:.8g}"), "status": status,
            "steps_to_target": hit[i],
            "steps_run": int(dead_at[i] or t) if hit[i] is None else int(t),
            "stop_reason": reason,
            "diverged_by_step": dead_at[i],
            "final_loss": _num(curve["loss"][-1][i]),
            "final_accuracy": _num(curve["accuracy"][-1][i]),
            "B_S_init": _num(bcurve[0]) if bcurve.size else None,
            "B_S_run_mean": _num(finite_b.mean()) if finite_b.size else None,
            "B_S_at_target": _num(b_at[i]) if hit[i] is not None else None,
            "B_simple_at_target": _num(b_simple_at[i]) if hit[i] is not None else None,
            "curve": {
                "step": [int(v) for v in curve["step"]],
                "loss": [_num(c[i]) for c in curve["loss"]],
                "accuracy": [_num(c[i]) for c in curve["accuracy"]],
            },
            "B_S_curve": {"step": [int(v) for v in bs_steps],
                          "B_S": [_num(v) for v in bcurve]},
            "devices": n_shards,
            "compile_s": round(compile_s or 0.0, 3),
            "wall_s": round(wall, 3),
        })
    return out


def constant_predictor_loss(y, loss: str) -> float:
    r"""Training loss of the best constant prediction, the scale of ``relative_loss`` targets:
    :math:`\tfrac12\,\overline{\lVert y - \bar y\rVert^2}` for the squared loss, the entropy
    of the class frequencies for cross-entropy (``y`` = integer classes).

    Example:
        >>> round(constant_predictor_loss(np.array([0, 1, 0, 1]), "cross_entropy"), 4)
        0.6931
    """
    y = np.asarray(y)
    if loss == "cross_entropy":
        p = np.bincount(y.astype(np.int64)) / y.shape[0]
        p = p[p > 0]
        return float(-np.sum(p * np.log(p)))
    r = y.reshape(y.shape[0], -1).astype(np.float64)
    r = r - r.mean(axis=0)
    return float(0.5 * np.mean(np.sum(r * r, axis=1)))


def _settled(pairs, hit, dead_at, t, factor, known_best=None) -> bool:
    """True once the learning-rate choice can no longer change: some lr has reached the target
    with every seed (best mean M, or ``known_best`` from an earlier study of the same batch
    size if smaller), and every lr with a trial still running has a mean steps-to-target of at
    least ``factor`` × M even if those trials reached it right now."""
    by_lr = {}
    for i, (lr, _) in enumerate(pairs):
        by_lr.setdefault(lr, []).append(i)
    complete = [np.mean([hit[i] for i in idx]) for idx in by_lr.values()
                if all(hit[i] is not None for i in idx)]
    if known_best is not None:
        complete.append(known_best)
    if not complete:
        return False
    best = min(complete)
    for idx in by_lr.values():
        if any(dead_at[i] is not None for i in idx):
            continue  # an lr with a diverged seed can never be chosen
        if all(hit[i] is not None for i in idx):
            continue
        bound = np.mean([hit[i] if hit[i] is not None else t for i in idx])
        if bound < factor * best:
            return False
    return True


def _seeds_settled(pairs, hit, dead_at, t, known=None) -> bool:
    """True once every seed's fewest steps-to-target over the lrs is known: the seed has a
    trial at the target (or ``known[seed]`` from an earlier run of the study) with steps h,
    and each of its trials still running is already at t ≥ h (it can no longer beat h).
    This is what the per-seed lr choice of the analysis needs (:func:`_settled` is the
    grid's rule, on the mean over seeds)."""
    best = dict(known or {})
    for i, (_, s) in enumerate(pairs):
        if hit[i] is not None:
            best[s] = min(best.get(s, math.inf), hit[i])
    for i, (_, s) in enumerate(pairs):
        if hit[i] is None and dead_at[i] is None:
            if s not in best or t < best[s]:
                return False
    return True


def _num(v):
    """JSON-safe float: None for NaN/inf."""
    v = float(v)
    return v if math.isfinite(v) else None


__all__ = ["train_step", "make_optimizer", "lr_jitter_factor", "run_study", "next_eval_step", "constant_predictor_loss",
           "REACHED", "UNREACHED", "INFEASIBLE"]
