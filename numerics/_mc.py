r"""Monte Carlo over random networks of a :class:`theory.NetSpec` at fixed data.

Network ``i`` is ``init_params(spec, key=jax.random.fold_in(key, i))``, whatever the chunking
or the number of devices, so results depend only on ``(key, samples)``.

One compiled call handles a fixed *block* of networks: the block is sharded across the local
devices (``jax.shard_map`` over a 1-D mesh), and on each device ``lax.map`` walks through it
``chunk`` networks at a time (vmapped), so memory stays O(chunk · n · Σ widths). The block
size does not depend on ``samples`` and the key is a traced argument, so a new seed or a new
sample count reuses the same executable. Under ``jax.distributed`` (several hosts) each process
computes every P-th block on its own devices and the blocks are all-gathered: every process
returns the single-process result (tested with two CPU processes on loopback).

Estimators (README, "Definitions and conventions"), over N networks with per-network
:math:`S_1, S_2`:

* :math:`\widehat{E S_1}, \widehat{E S_2}` with standard errors :math:`\mathrm{sd}/\sqrt N`;
* the ratio of means :math:`\bar B_S = n\,\overline{S_1}/\overline{S_2}` with the delta-method
  standard error
  :math:`\frac{n}{\sqrt N}\sqrt{\frac{V_{11}}{\mu_2^2} - \frac{2\mu_1V_{12}}{\mu_2^3}
  + \frac{\mu_1^2V_{22}}{\mu_2^4}}`;
* the mean of the ratio :math:`E[B_S]` with :math:`\mathrm{sd}/\sqrt N` and quantiles (the
  distribution is heavy-tailed: compare with the optional percentile bootstrap).

To a stated precision (``rel_se=``): blocks are drawn until the relative standard errors
:math:`\mathrm{se}(\overline{S_k})/\overline{S_k}` of both :math:`E[S_1]` and :math:`E[S_2]`
are below the target (checked after each block once :data:`MIN_SAMPLES_FOR_SE` networks are
in), or ``samples`` (then the cap) or ``max_seconds`` is reached; ``stop_reason`` says which.
Networks are still ``fold_in(key, i)``, so the result is the first N networks of the
fixed-count run with the same key.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from theory import batch_size_bound as _batch_size_bound

from ._network import init_params
from ._precision import default_dtype
from ._stats import _stats, prepare_xy

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Memory bound of the per-network activations of one vmapped chunk (bytes).
CHUNK_BYTES = 1 << 27
#: lax.map steps per compiled call (per device).
STEPS_PER_CALL = 4
#: Networks drawn before a relative standard error is trusted as a stopping rule (a heavy
#: tail makes the SE itself noisy at small N).
MIN_SAMPLES_FOR_SE = 256
#: Default cap on the number of networks of a ``rel_se`` run.
MAX_SAMPLES = 1_000_000
STOP_REASONS = ("samples", "rel_se", "max_samples", "max_seconds")


def default_chunk(spec, n: int, dtype) -> int:
    """Networks per vmapped chunk: activations and signals of a chunk under 128 MiB, ≤ 32."""
    per_net = 2 * n * sum(spec.dims) * jnp.dtype(dtype).itemsize
    per_net += spec.params * jnp.dtype(dtype).itemsize * 2  # weights and summed gradient
    return int(max(1, min(32, CHUNK_BYTES // per_net)))


@functools.lru_cache(maxsize=64)
def _block_fn(spec, loss, chunk, n_devices):
    """Jitted ``(key, idx, x, y) -> per-network stats`` for a block of network indices."""
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("nets",))

    def one(key, x, y, i):
        params = init_params(spec, key=jax.random.fold_in(key, i), dtype=x.dtype)
        st = _stats(spec, params, x, y, loss)
        return st.S1, st.S2, st.S1_layers, st.S2_layers

    def local(key, idx, x, y):
        return jax.lax.map(lambda i: one(key, x, y, i), idx, batch_size=chunk)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("nets"), P(), P()),
                            out_specs=P("nets"))
    return jax.jit(sharded), NamedSharding(mesh, P("nets")), NamedSharding(mesh, P())


def _delta_se(s1, s2, n):
    N = s1.shape[0]
    if N < 2:
        return float("nan")
    m1, m2 = s1.mean(), s2.mean()
    cov = np.cov(np.stack([s1, s2]), ddof=1)
    var = cov[0, 0] / m2**2 - 2 * m1 * cov[0, 1] / m2**3 + m1**2 * cov[1, 1] / m2**4
    return float(n * math.sqrt(max(var, 0.0) / N))


def _se(a):
    return float(a.std(ddof=1) / math.sqrt(a.shape[0])) if a.shape[0] > 1 else float("nan")


@dataclass(frozen=True)
class MCResult:
    r"""Monte Carlo estimates over ``samples`` random networks (float64 numpy on the host).

    Per-network arrays: ``S1_samples``, ``S2_samples`` (N,), ``S1_layer_samples``,
    ``S2_layer_samples`` (N, L). Summaries: ``S1``, ``S1_se``, ``S2``, ``S2_se``,
    ``batch_size_bound`` (ratio of means :math:`\bar B_S = nE[S_1]/E[S_2]`) with
    ``batch_size_bound_se`` (delta method), ``mean_B_S`` (:math:`E[B_S]`, mean of the ratio)
    with ``mean_B_S_se`` and ``B_S_quantiles``; ``running``: the estimates after each compiled
    block; ``bootstrap``: percentile intervals when requested, else None; ``stop_reason``:
    ``"samples"`` (the fixed count was drawn), ``"rel_se"`` (the target ``target_rel_se`` was
    met), ``"max_samples"`` or ``"max_seconds"`` (a cap stopped it first); ``S1_rel_se``,
    ``S2_rel_se``: the relative standard errors reached.
    """

    n: int
    samples: int
    S1_samples: np.ndarray = field(repr=False)
    S2_samples: np.ndarray = field(repr=False)
    S1_layer_samples: np.ndarray = field(repr=False)
    S2_layer_samples: np.ndarray = field(repr=False)
    running: dict = field(default_factory=dict, repr=False)
    bootstrap: dict | None = field(default=None, repr=False)
    stop_reason: str = "samples"
    target_rel_se: float | None = None
    seconds: float | None = None

    @property
    def S1_rel_se(self) -> float:
        return self.S1_se / abs(self.S1) if self.S1 else float("nan")

    @property
    def S2_rel_se(self) -> float:
        return self.S2_se / abs(self.S2) if self.S2 else float("nan")

    @property
    def S1(self) -> float:
        return float(self.S1_samples.mean())

    @property
    def S2(self) -> float:
        return float(self.S2_samples.mean())

    @property
    def S1_se(self) -> float:
        return _se(self.S1_samples)

    @property
    def S2_se(self) -> float:
        return _se(self.S2_samples)

    @property
    def S1_layers(self) -> np.ndarray:
        return self.S1_layer_samples.mean(axis=0)

    @property
    def S2_layers(self) -> np.ndarray:
        return self.S2_layer_samples.mean(axis=0)

    @property
    def batch_size_bound(self) -> float:
        return float(_batch_size_bound(self.S1, self.S2, self.n))

    @property
    def batch_size_bound_se(self) -> float:
        return _delta_se(self.S1_samples, self.S2_samples, self.n)

    @property
    def degenerate(self) -> int:
        """Networks with :math:`S_2 = 0` (e.g. a dead ReLU layer): B_S undefined, left out of
        ``mean_B_S`` and the quantiles (they still count in the means of S1 and S2)."""
        return int(np.sum(~(self.S2_samples > 0)))

    @property
    def B_S_samples(self) -> np.ndarray:
        """Per-network :math:`B_S = nS_1/S_2` of the non-degenerate networks."""
        return _B_S_samples(self.S1_samples, self.S2_samples, self.n)

    @property
    def mean_B_S(self) -> float:
        return _mean_B_S(self.S1_samples, self.S2_samples, self.n)

    @property
    def mean_B_S_se(self) -> float:
        return _se(self.B_S_samples)

    @property
    def B_S_quantiles(self) -> dict:
        b = self.B_S_samples
        vals = np.quantile(b, QUANTILES) if b.size else [float("nan")] * len(QUANTILES)
        return {q: float(v) for q, v in zip(QUANTILES, vals)}

    def to_dict(self) -> dict:
        """Flat JSON-ready summary with ``mc_`` keys."""
        out = {
            "mc_samples": self.samples,
            "mc_S1": self.S1, "mc_S1_se": self.S1_se,
            "mc_S2": self.S2, "mc_S2_se": self.S2_se,
            "mc_batch_size_bound": self.batch_size_bound,
            "mc_batch_size_bound_se": self.batch_size_bound_se,
            "mc_mean_B_S": self.mean_B_S, "mc_mean_B_S_se": self.mean_B_S_se,
            "mc_degenerate": self.degenerate,
            "mc_B_S_quantiles": {str(q): v for q, v in self.B_S_quantiles.items()},
            "mc_S1_layers": self.S1_layers.tolist(),
            "mc_S2_layers": self.S2_layers.tolist(),
            "mc_stop_reason": self.stop_reason,
            "mc_target_rel_se": self.target_rel_se,
            "mc_S1_rel_se": self.S1_rel_se, "mc_S2_rel_se": self.S2_rel_se,
        }
        if self.bootstrap is not None:
            out["mc_bootstrap"] = self.bootstrap
        return out


def _B_S_samples(s1, s2, n):
    ok = s2 > 0
    return _batch_size_bound(s1[ok], s2[ok], n)


def _mean_B_S(s1, s2, n) -> float:
    """Mean over the non-degenerate networks (S2 > 0) of their B_S; NaN when there is none."""
    b = _B_S_samples(s1, s2, n)
    return float(b.mean()) if b.size else float("nan")


def _bootstrap(s1, s2, n, resamples, seed):
    rng = np.random.default_rng(seed)
    N = s1.shape[0]
    idx = rng.integers(0, N, size=(resamples, N))
    a, b = s1[idx], s2[idx]
    ratio_of_means = _batch_size_bound(a.mean(axis=1), b.mean(axis=1), n)
    ok = b > 0
    mean_ratio = _batch_size_bound(np.where(ok, a, 0), np.where(ok, b, 1), n
                                            ).sum(axis=1) / ok.sum(axis=1)
    ci = lambda v: [float(q) for q in np.quantile(v, (0.025, 0.975))]
    return {"resamples": resamples, "seed": seed, "level": 0.95,
            "batch_size_bound_ci": ci(ratio_of_means), "mean_B_S_ci": ci(mean_ratio)}


def _gather_blocks(local, calls, procs, fn, key, x, y, net_sharding, block):
    """All-gather every process's blocks and return them in global block order."""
    from jax.experimental import multihost_utils

    per = -(-calls // procs)
    shapes = jax.eval_shape(fn, key, jax.device_put(np.zeros(block, np.int32), net_sharding),
                            x, y)
    stacked = []
    for k, shp in enumerate(shapes):
        rows = [o[k] for o in local]
        rows += [np.zeros(shp.shape, np.float64)] * (per - len(rows))
        stacked.append(np.stack(rows))
    gathered = [np.asarray(multihost_utils.process_allgather(a)) for a in stacked]
    return [[g[c % procs][c // procs] for g in gathered] for c in range(calls)]


def _rel_se(a):
    m = abs(float(a.mean()))
    return _se(a) / m if m > 0 else float("inf")


def _check_positive(name, value, kind=int):
    ok = (not isinstance(value, bool) and isinstance(value, (int, np.integer, float))
          and (kind is float or isinstance(value, (int, np.integer))) and value > 0
          and math.isfinite(value))
    if not ok:
        what = "integer" if kind is int else "number"
        raise ValueError(f"{name} must be a positive {what}, got {value!r}")


def mc_moments(spec, x, y, *, key, samples: int | None = None, rel_se: float | None = None,
               max_seconds: float | None = None, chunk: int | None = None,
               loss: str = "squared", devices: int | None = None, bootstrap: int = 0,
               bootstrap_seed: int = 0, progress: bool = False) -> MCResult:
    r"""Monte Carlo estimates of :math:`E[S_1], E[S_2], \bar B_S, E[B_S]` at initialisation.

    Args:
        spec: the network (:class:`theory.NetSpec`).
        x, y: data as for :func:`numerics.per_example_stats` (cast to the default dtype).
        key: PRNG key; network ``i`` uses ``jax.random.fold_in(key, i)``.
        samples: number of random networks N; with ``rel_se``, the cap on N (default
            :data:`MAX_SAMPLES`).
        rel_se: target relative standard error of both :math:`E[S_1]` and :math:`E[S_2]`:
            draw compiled blocks until both are below it (or a cap is hit).
        max_seconds: wall-clock cap (seconds); checked after each compiled block.
        chunk: networks vmapped together on a device (memory ∝ chunk); default by memory.
        loss: ``"squared"`` or ``"cross_entropy"``.
        devices: number of local devices to shard over (default: all).
        bootstrap: number of percentile-bootstrap resamples (0: none).
        bootstrap_seed: numpy seed of the bootstrap.
        progress: show a tqdm progress bar.

    Example:
        >>> import jax, numpy as np
        >>> from theory import NetSpec
        >>> spec = NetSpec(depth=2, widths=(8,), input_dim=3)
        >>> x = np.eye(3); y = np.zeros((3, 1))
        >>> res = mc_moments(spec, x, y, key=jax.random.key(0), samples=64)
        >>> res.samples, res.S1 > 0, res.S1_se > 0, res.stop_reason
        (64, True, True, 'samples')
        >>> res = mc_moments(spec, x, y, key=jax.random.key(0), rel_se=0.05)
        >>> res.stop_reason, res.S1_rel_se < 0.05 and res.S2_rel_se < 0.05
        ('rel_se', True)
    """
    if rel_se is None and samples is None:
        raise ValueError("give samples (a fixed count) or rel_se (a target precision)")
    if samples is not None:
        _check_positive("samples", samples)
        if samples < 2:
            raise ValueError(f"samples must be at least 2 (a standard error needs two "
                             f"networks), got {samples}")
    if rel_se is not None:
        _check_positive("rel_se", rel_se, float)
    if max_seconds is not None:
        _check_positive("max_seconds", max_seconds, float)
    cap = int(samples) if samples is not None else MAX_SAMPLES
    dtype = default_dtype()
    x, y = prepare_xy(spec, x, y, loss, dtype)
    xmax = float(jnp.max(jnp.abs(x)))
    n = int(x.shape[0])
    n_dev = len(jax.local_devices()) if devices is None else int(devices)
    if not 1 <= n_dev <= len(jax.local_devices()):
        raise ValueError(f"devices must be in 1..{len(jax.local_devices())}, got {devices}")
    chunk = default_chunk(spec, n, dtype) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    _check_memory(spec, n, dtype)
    fn, net_sharding, rep = _block_fn(spec, loss, chunk, n_dev)
    block = n_dev * chunk * STEPS_PER_CALL
    x, y, key = jax.device_put(x, rep), jax.device_put(y, rep), jax.device_put(key, rep)
    calls = -(-cap // block)
    # Several hosts (jax.distributed): in each round process p computes block round·P + p on
    # its local devices; the round's blocks are then all-gathered, so every process sees the
    # same networks as a single process with the same key and takes the same stopping
    # decision (the clock of process 0 decides max_seconds). One process: nothing gathered.
    procs, me = jax.process_count(), jax.process_index()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cap if rel_se is None else None, desc="random networks", unit="net")
    start = time.perf_counter()
    pieces = []
    running = {"samples": [], "S1": [], "S2": [], "batch_size_bound": [], "mean_B_S": []}
    done, stop = 0, "samples" if rel_se is None else "max_samples"
    try:
        for c0 in range(0, calls, procs):
            ids = range(c0, min(c0 + procs, calls))
            local = []
            for c in ids:
                if c % procs == me:
                    idx = jax.device_put(np.arange(c * block, (c + 1) * block, dtype=np.int32),
                                         net_sharding)
                    local.append([np.asarray(a, dtype=np.float64) for a in fn(key, idx, x, y)])
            blocks = local if procs == 1 else _gather_blocks(local, len(ids), procs, fn, key,
                                                             x, y, net_sharding, block)
            for out in blocks:
                take = min(block, cap - done)
                pieces.append([a[:take] for a in out])
                done += take
                s1 = np.concatenate([p[0] for p in pieces])
                s2 = np.concatenate([p[1] for p in pieces])
                _check_sums(s1, s2, xmax, dtype)
                running["samples"].append(done)
                running["S1"].append(float(s1.mean()))
                running["S2"].append(float(s2.mean()))
                running["batch_size_bound"].append(
                    float(_batch_size_bound(s1.mean(), s2.mean(), n)))
                running["mean_B_S"].append(_mean_B_S(s1, s2, n))
            if bar is not None:
                bar.update(sum(min(block, cap - c * block) for c in ids))
            if done >= cap:
                break
            if (rel_se is not None and done >= MIN_SAMPLES_FOR_SE
                    and max(_rel_se(s1), _rel_se(s2)) < rel_se):
                stop = "rel_se"
                break
            if max_seconds is not None and _elapsed_over(start, max_seconds, procs):
                stop = "max_seconds"
                break
    finally:
        if bar is not None:
            bar.close()
    S1, S2, L1, L2 = (np.concatenate([p[k] for p in pieces]) for k in range(4))
    boot = _bootstrap(S1, S2, n, int(bootstrap), bootstrap_seed) if bootstrap else None
    return MCResult(n, int(S1.shape[0]), S1, S2, L1, L2, running, boot, stop,
                    None if rel_se is None else float(rel_se), time.perf_counter() - start)


def device_memory() -> int:
    """Bytes of memory of the first local device (host RAM for the CPU backend)."""
    stats = None
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        pass
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_memory(spec, n: int, dtype) -> None:
    """Refuse (ValueError), before compiling, a network whose weights, or whose activations on
    the n examples, do not fit the device even once."""
    item = jax.numpy.dtype(dtype).itemsize
    weights = spec.params * item
    acts = n * (spec.input_dim + sum(spec.widths) + spec.outputs) * item
    have = device_memory()
    if weights + acts > have:
        raise ValueError(f"one network does not fit in memory: P = {spec.params} parameters "
                         f"({weights / 2**30:.3g} GiB of {jax.numpy.dtype(dtype).name}) and "
                         f"activations on n = {n} examples ({acts / 2**30:.3g} GiB), device "
                         f"memory {have / 2**30:.3g} GiB; use a smaller width, depth or n")


def _check_sums(S1, S2, xmax: float, dtype) -> None:
    """Refuse (ValueError) sums that overflowed or underflowed the working precision, instead
    of returning inf, nan or 0 as an estimate."""
    name = jnp.dtype(dtype).name
    hint = ("rescale x and y (B_S does not change when x and y are scaled together)"
            + ("" if name == "float64" else " or use float64 (numerics.x64, --x64)"))
    if not (np.all(np.isfinite(S1)) and np.all(np.isfinite(S2))):
        raise ValueError(f"the per-example gradient norms overflow {name} (largest |x| entry "
                         f"{xmax:.3g}); {hint}")
    if not np.any(S1 > 0):
        if xmax == 0:
            raise ValueError("every input row is zero: all gradients vanish at every "
                             "initialisation, so B_S = n*S1/S2 = 0/0 is undefined")
        # S1 ~ |x|^4: all-zero sums from data this small are underflow (from larger data,
        # e.g. ReLU nets with every unit dead on every example, they are the right answer)
        if xmax ** 4 < float(jnp.finfo(dtype).tiny) * 1e6:
            raise ValueError(f"every per-example gradient is 0 in {name} (largest |x| entry "
                             f"{xmax:.3g}: the gradients underflow); {hint}")


def _elapsed_over(start, max_seconds, procs):
    over = time.perf_counter() - start > max_seconds
    if procs == 1:
        return over
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.array(over)))
