"""Every family of the registry against its Monte-Carlo estimator, in one table.

For each family (``theory.FAMILIES``) one net and one data set the family covers: theory's
E[S1], E[S2] vs the independent numpy brute-force Monte Carlo of tests/_bruteforce.py (fixed
seed). The relative error (theory − MC)/MC must reach the family's stated error band
``Family.error`` within Z standard errors: Z·SE for exact families (band (0, 0)), the validated
band of the pair chain for "numerical", the measured band of the NTK limit for "limit". A
family added to the registry without a row here fails ``test_every_family_has_a_row``.
"""

import numpy as np
import pytest

from theory import FAMILIES, RESIDUAL_LIMIT_ERROR, NetSpec, covers, expected_moments, family_of
from theory.data import gaussian, mnist1d

from ._bruteforce import mc_moments

Z = 4.0  # standard errors allowed (fixed seeds; two-sided normal tail 6e-5 per check)
MAX_REL_SE = 0.06  # the Monte Carlo must be this precise for the comparison to mean something


def _mnist(n):
    ds = mnist1d(n)
    return ds.x, ds.y


def _teacher(n, d, c):
    ds = gaussian(n, d, seed=4, labels="teacher", outputs=c, noise=0.3)
    return ds.x, ds.y


# family -> (net, data, Monte Carlo samples); each cell costs < 3 s. The residual-ReLU cell is
# checked against the narrower band measured at K = 16-32 (RESIDUAL_LIMIT_ERROR), where it lies.
BAND = {"relu-residual": RESIDUAL_LIMIT_ERROR}
TABLE = {
    "linear": (NetSpec(depth=4, widths=(6, 6, 6), input_dim=5, outputs=2,
                       gains=(1, 1.5, 0.5, 1)), lambda: _teacher(6, 5, 2), 20000),
    "relu-2": (NetSpec.uniform(2, 8, 40, outputs=10, activation="relu"), lambda: _mnist(6),
               8000),
    "relu-deep-fc": (NetSpec.uniform(4, 16, 40, outputs=10, activation="relu"),
                     lambda: _mnist(8), 4000),
    "relu-residual": (NetSpec.uniform(4, 16, 40, outputs=10, activation="relu",
                                      arch="residual"), lambda: _mnist(8), 4000),
}


def test_every_family_has_a_row():
    assert sorted(TABLE) == sorted(f.name for f in FAMILIES)
    for name, (spec, _, _) in TABLE.items():
        assert family_of(spec).name == name


def _distance_to_band(err, band):
    lo, hi = band
    return max(lo - err, 0.0, err - hi)


# Settings the rows above do not cross, on the family whose method is per layer (pair chain):
# equal widths with unequal gains, and an unequal width profile with non-default gains.
CROSSED = {
    "relu-deep-fc/equal-widths-unequal-gains": (
        NetSpec(depth=4, widths=(16, 16, 16), input_dim=40, outputs=10, activation="relu",
                gains=(1.2, 1.6, 1.0, 0.8)), lambda: _mnist(8), 4000),
    "relu-deep-fc/width-profile-and-gains": (
        NetSpec(depth=4, widths=(24, 12, 20), input_dim=40, outputs=10, activation="relu",
                gains=(1.5, 1.2, 1.4, 1.1)), lambda: _mnist(8), 4000),
}


@pytest.mark.parametrize("name", sorted(TABLE) + sorted(CROSSED))
def test_family_matches_its_monte_carlo(name):
    spec, data, samples = {**TABLE, **CROSSED}[name]
    name = family_of(spec).name
    x, y = data()
    family = family_of(spec)
    r = expected_moments(spec, x, y)
    cov = covers(spec)
    assert (r.kind_S1, r.kind_S2) == (cov.kind_S1, cov.kind_S2)
    m1, se1, m2, se2 = mc_moments(spec, x, y, samples=samples, seed=13, chunk=500)
    assert se1 < MAX_REL_SE * m1 and se2 < MAX_REL_SE * m2
    e1, e2 = float(r.expected_S1) / m1 - 1, float(r.expected_S2) / m2 - 1
    # E[S1] is exact for every family except the residual-ReLU limit
    band = BAND.get(name, family.error)
    assert band[0] >= family.error[0] and band[1] <= family.error[1]
    band1 = band if r.kind_S1 != "exact" else (0.0, 0.0)
    assert _distance_to_band(e1, band1) <= Z * se1 / m1, (e1, se1 / m1, band1)
    assert _distance_to_band(e2, band) <= Z * se2 / m2, (e2, se2 / m2, band)


@pytest.mark.parametrize("spec,loss,data_free,expect", [
    (NetSpec.uniform(3, 8, 4), "squared", True, ("linear", "exact", "exact")),
    (NetSpec.uniform(3, 8, 4, outputs=3), "cross_entropy", False, ("linear", "exact", "exact")),
    (NetSpec.uniform(1, 8, 4, activation="relu"), "squared", True, ("linear", "exact", "exact")),
    (NetSpec.uniform(2, 8, 4, activation="relu"), "squared", False, ("relu-2", "exact", "exact")),
    (NetSpec.uniform(5, 16, 4, activation="relu"), "squared", False,
     ("relu-deep-fc", "exact", "numerical")),
    (NetSpec.uniform(5, 16, 4, activation="relu", arch="residual"), "squared", False,
     ("relu-residual", "limit", "limit")),
])
def test_covers_table(spec, loss, data_free, expect):
    cov = covers(spec, loss, data_free=data_free, softmax="linearised")
    assert cov.covered
    name, k1, k2 = expect
    suffix = "" if loss == "squared" else cov.kind_S1[len(k1):]
    assert (cov.family, cov.kind_S1, cov.kind_S2) == (name, k1 + suffix, k2 + suffix)
    if loss == "cross_entropy":
        assert suffix  # the kind says the loss is not the squared one
        # the default softmax correction is an approximation on top of the linearisation
        g = covers(spec, loss, data_free=data_free)
        assert (g.kind_S1, g.kind_S2) == ("approximation (softmax, Gaussian logits)",) * 2


@pytest.mark.parametrize("spec,loss,data_free,match", [
    (NetSpec.uniform(4, 8, 4, activation="relu"), "squared", True, "data-free"),
    (NetSpec.uniform(3, 8, 4), "cross_entropy", False, "at least 2 outputs"),
    (NetSpec.uniform(3, 8, 4, outputs=3), "hinge", False, "unknown loss"),
    (NetSpec.uniform(2001, 4, 4, activation="relu"), "squared", False, "numerics.check"),
    (NetSpec.uniform(3, 4, 4, activation="relu", gains=(1e200, 1, 1)), "squared", False,
     "float64 range"),
])
def test_not_covered_says_why_without_computing(spec, loss, data_free, match):
    cov = covers(spec, loss, data_free=data_free)
    assert not cov.covered and match in cov.reason and cov.kind_S2 is None
    with pytest.raises(ValueError, match=match.split()[0]):
        if data_free:
            from theory import Invariants
            expected_moments(spec, invariants=Invariants.gaussian_expectation(8, 4, 1))
        else:
            x = np.ones((3, 4))
            y = np.zeros(3, int) if loss == "cross_entropy" else np.zeros((3, spec.outputs))
            expected_moments(spec, x, y, loss=loss)
