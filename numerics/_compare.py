"""Monte Carlo vs theory for one network and one data set (the engine of ``numerics.check``)."""

from __future__ import annotations

import math
import time

import jax

from ._mc import mc_moments
from ._precision import default_dtype

#: theory quantities compared with their Monte Carlo estimates: (theory key, mc key).
PAIRS = (("expected_S1", "S1"), ("expected_S2", "S2"), ("batch_size_bound", "batch_size_bound"))


def _z(estimate, se, target):
    if target is None or se is None or not math.isfinite(se) or se == 0:
        return None
    return (estimate - target) / se


def compare(spec, x, y, *, key, samples, rel_se=None, max_seconds=None, chunk=None, delta=1.0,
            bootstrap=0, progress=False, data_description="") -> dict:
    """Monte Carlo estimates, theory (when ``theory.expected_moments`` covers the net) and the
    z-scores ``(mc - theory)/se`` in one flat dict (JSON-ready)."""
    start = time.perf_counter()
    mc = mc_moments(spec, x, y, key=key, samples=samples, rel_se=rel_se,
                    max_seconds=max_seconds, chunk=chunk, bootstrap=bootstrap, progress=progress)
    out = {"dtype": jax.numpy.dtype(default_dtype()).name,
           "devices": len(jax.local_devices()), "backend": jax.default_backend(),
           "conventions": spec.describe(), "data": data_description}
    out.update(mc.to_dict())
    out["mc_seconds"] = time.perf_counter() - start
    out["mc_B_S_definitions"] = {
        "mc_batch_size_bound": "ratio of means n*mean(S1)/mean(S2), delta-method SE",
        "mc_mean_B_S": "mean over networks of n*S1/S2 (E[B_S]), SE = sd/sqrt(N)"}
    th = None
    try:
        import theory
        th = theory.expected_moments(spec, x, y, delta=delta, data=data_description)
    except (ImportError, AttributeError):
        out["theory_error"] = "theory.expected_moments is not available"
    except ValueError as err:
        out["theory_error"] = str(err)
    if th is not None:
        out.update(th.to_dict())
        se = {"S1": mc.S1_se, "S2": mc.S2_se, "batch_size_bound": mc.batch_size_bound_se}
        for tkey, mkey in PAIRS:
            out[f"z_{mkey}"] = _z(getattr(mc, mkey), se[mkey], out[tkey])
    else:
        out.update({"spec": spec.to_dict(), "params": spec.params, "n": int(x.shape[0]),
                    "depth": spec.depth, "widths": list(spec.widths),
                    "activation": spec.activation, "arch": spec.arch,
                    "outputs": spec.outputs})
    return out
