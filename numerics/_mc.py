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

Estimators (SPEC §2, §4), over N networks with per-network :math:`S_1, S_2`:

* :math:`\widehat{E S_1}, \widehat{E S_2}` with standard errors :math:`\mathrm{sd}/\sqrt N`;
* the ratio of means :math:`\bar B_S = n\,\overline{S_1}/\overline{S_2}` with the delta-method
  standard error
  :math:`\frac{n}{\sqrt N}\sqrt{\frac{V_{11}}{\mu_2^2} - \frac{2\mu_1V_{12}}{\mu_2^3}
  + \frac{\mu_1^2V_{22}}{\mu_2^4}}`;
* the mean of the ratio :math:`E[B_S]` with :math:`\mathrm{sd}/\sqrt N` and quantiles (the
  distribution is heavy-tailed: compare with the optional percentile bootstrap).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._network import init_params
from ._precision import default_dtype
from ._stats import _stats, prepare_xy

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Memory bound of the per-network activations of one vmapped chunk (bytes).
CHUNK_BYTES = 1 << 27
#: lax.map steps per compiled call (per device).
STEPS_PER_CALL = 4


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
    block; ``bootstrap``: percentile intervals when requested, else None.
    """

    n: int
    samples: int
    S1_samples: np.ndarray = field(repr=False)
    S2_samples: np.ndarray = field(repr=False)
    S1_layer_samples: np.ndarray = field(repr=False)
    S2_layer_samples: np.ndarray = field(repr=False)
    running: dict = field(default_factory=dict, repr=False)
    bootstrap: dict | None = field(default=None, repr=False)

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
        return float(self.n * self.S1 / self.S2)

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
        ok = self.S2_samples > 0
        return self.n * self.S1_samples[ok] / self.S2_samples[ok]

    @property
    def mean_B_S(self) -> float:
        b = self.B_S_samples
        return float(b.mean()) if b.size else float("nan")

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
        }
        if self.bootstrap is not None:
            out["mc_bootstrap"] = self.bootstrap
        return out


def _bootstrap(s1, s2, n, resamples, seed):
    rng = np.random.default_rng(seed)
    N = s1.shape[0]
    idx = rng.integers(0, N, size=(resamples, N))
    a, b = s1[idx], s2[idx]
    ratio_of_means = n * a.mean(axis=1) / b.mean(axis=1)
    ok = b > 0
    mean_ratio = (n * np.where(ok, a, 0) / np.where(ok, b, 1)).sum(axis=1) / ok.sum(axis=1)
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


def mc_moments(spec, x, y, *, key, samples: int, chunk: int | None = None,
               loss: str = "squared", devices: int | None = None, bootstrap: int = 0,
               bootstrap_seed: int = 0, progress: bool = False) -> MCResult:
    r"""Monte Carlo estimates of :math:`E[S_1], E[S_2], \bar B_S, E[B_S]` at initialisation.

    Args:
        spec: the network (:class:`theory.NetSpec`).
        x, y: data as for :func:`numerics.per_example_stats` (cast to the default dtype).
        key: PRNG key; network ``i`` uses ``jax.random.fold_in(key, i)``.
        samples: number of random networks N.
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
        >>> res.samples, res.S1 > 0, res.S1_se > 0
        (64, True, True)
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    dtype = default_dtype()
    x, y = prepare_xy(spec, x, y, loss, dtype)
    n = int(x.shape[0])
    n_dev = len(jax.local_devices()) if devices is None else int(devices)
    if not 1 <= n_dev <= len(jax.local_devices()):
        raise ValueError(f"devices must be in 1..{len(jax.local_devices())}, got {devices}")
    chunk = default_chunk(spec, n, dtype) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    fn, net_sharding, rep = _block_fn(spec, loss, chunk, n_dev)
    block = n_dev * chunk * STEPS_PER_CALL
    x, y, key = jax.device_put(x, rep), jax.device_put(y, rep), jax.device_put(key, rep)
    calls = -(-samples // block)
    # Several hosts (jax.distributed): process p computes blocks p, p + P, p + 2P, ... on its
    # local devices; the blocks are then all-gathered, so every process returns the same result
    # as a single process with the same key. One process: all blocks, nothing gathered.
    procs, me = jax.process_count(), jax.process_index()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=samples, desc="random networks", unit="net")
    local = []
    try:
        for c in range(me, calls, procs):
            idx = jax.device_put(np.arange(c * block, (c + 1) * block, dtype=np.int32),
                                 net_sharding)
            local.append([np.asarray(a, dtype=np.float64) for a in fn(key, idx, x, y)])
            if bar is not None:
                bar.update(min(block, samples - c * block) * procs)
    finally:
        if bar is not None:
            bar.close()
    blocks = local if procs == 1 else _gather_blocks(local, calls, procs, fn, key, x, y,
                                                     net_sharding, block)
    pieces = []
    running = {"samples": [], "S1": [], "S2": [], "batch_size_bound": [], "mean_B_S": []}
    done = 0
    for out in blocks:
        take = min(block, samples - done)
        pieces.append([a[:take] for a in out])
        done += take
        s1 = np.concatenate([p[0] for p in pieces])
        s2 = np.concatenate([p[1] for p in pieces])
        running["samples"].append(done)
        running["S1"].append(float(s1.mean()))
        running["S2"].append(float(s2.mean()))
        running["batch_size_bound"].append(float(n * s1.mean() / s2.mean()))
        ok = s2 > 0
        running["mean_B_S"].append(float((n * s1[ok] / s2[ok]).mean()) if ok.any()
                                   else float("nan"))
    S1, S2, L1, L2 = (np.concatenate([p[k] for p in pieces]) for k in range(4))
    boot = _bootstrap(S1, S2, n, int(bootstrap), bootstrap_seed) if bootstrap else None
    return MCResult(n, samples, S1, S2, L1, L2, running, boot)
