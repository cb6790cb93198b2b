"""Measurements behind README's "What is exact and what is not" (Monte Carlo vs theory).

Not a test module (pytest does not collect it); run from the repository root:

* ``python -m tests.measure_theory ce``: true softmax cross-entropy (numerics Monte Carlo,
  ``loss="cross_entropy"``) vs theory's cross-entropy, both methods (``softmax="gaussian"``, the
  default, and ``"linearised"``), as the output gain s_L grows; ``--extra`` adds a wider deep
  ReLU (K = 128, L = 4) and a residual linear net at s_L = 1 (``--samples 8000`` for the
  README's s_L = 1 rows).
* ``python -m tests.measure_theory relu``: deep-ReLU E[S2], Monte Carlo vs theory, on a grid of
  widths, depths and data sets (fully connected and residual).

Each row prints the Monte Carlo value ± 1 SE, theory's value and kind, and the relative error
(theory − MC)/MC with its SE.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from theory import NetSpec, cli, expected_moments
from theory.data import gaussian, mnist1d


def _correlated(n, d, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(d)
    return 0.8 * base + 0.6 * rng.standard_normal((n, d)) * np.linspace(0.2, 2.0, d)


def datasets(n: int):
    """name -> (x, regression targets y, integer classes): three different data sets."""
    m = mnist1d(n)
    g = gaussian(n, 32, seed=3, labels="teacher", outputs=10)
    xc = _correlated(n, 24, seed=5)
    rng = np.random.default_rng(6)
    yc = rng.uniform(-1, 1, (n, 10))
    return {"mnist1d": (m.x, m.y, m.classes),
            "gaussian": (g.x, g.y, g.classes),
            "correlated": (xc, yc, np.argmax(yc, axis=1))}


def _mc(spec, x, y, loss, samples, seed):
    import jax

    import numerics

    with numerics.x64():
        return numerics.mc_moments(spec, x, y, key=jax.random.key(seed), samples=samples,
                                   loss=loss)


def _rel(th, mc, se):
    return (th - mc) / mc, se / mc


def ce_rows(samples: int = 2000, n: int = 64, gains=(0.1, 0.3, 1.0, 3.0), seed: int = 0,
            methods=("gaussian", "linearised"), extra: bool = False):
    """Rows (data, net, s_L, quantity, MC, SE, theory, kind, rel. error, its SE, method)."""
    rows = []
    data = datasets(n)
    nets = [(NetSpec.uniform(3, 32, 1, outputs=10), gains),
            (NetSpec.uniform(2, 64, 1, outputs=10, activation="relu"), gains),
            (NetSpec.uniform(4, 64, 1, outputs=10, activation="relu"), gains)]
    if extra:
        nets += [(NetSpec.uniform(4, 128, 1, outputs=10, activation="relu"), (1.0,)),
                 (NetSpec.uniform(4, 32, 1, outputs=10, arch="residual"), (1.0,))]
    for name in ("mnist1d", "gaussian"):
        x, _, classes = data[name]
        for base, sls in nets:
            for sL in sls:
                hidden = 2.0 ** 0.5 if base.activation == "relu" else 1.0
                spec = replace(base, input_dim=x.shape[1],
                               gains=(hidden,) * (base.depth - 1) + (sL,))
                mc = _mc(spec, x, classes, "cross_entropy", samples, seed)
                for method in methods:
                    th = expected_moments(spec, x, classes, loss="cross_entropy",
                                          softmax=method)
                    for q, t, m, s in (("E[S1]", float(th.expected_S1), mc.S1, mc.S1_se),
                                       ("E[S2]", float(th.expected_S2), mc.S2, mc.S2_se),
                                       ("B_S-bar", th.batch_size_bound, mc.batch_size_bound,
                                        mc.batch_size_bound_se)):
                        rel, rel_se = _rel(t, m, s)
                        rows.append((name, f"{base.arch} {base.activation} L={base.depth} "
                                     f"K={base.width}", sL, q, m, s, t,
                                     th.kind_S2 if q != "E[S1]" else th.kind_S1, rel, rel_se,
                                     method))
    return rows


def control_variate_S2(mc, spec, x, y):
    """(E[S2], SE) from the Monte Carlo nets with each net's per-layer S1 terms as control
    variates: their expectations are theory's exact E[S1] terms (tested against Monte Carlo),
    E[S2] ≈ mean(S2) − β·(mean(S1_l) − E[S1_l]) with β by least squares, the SE from the
    residuals. On deep ReLU nets S2 and the S1 terms share the heavy tail of the forward norms,
    so this cuts the SE several-fold; where that tail is too heavy for the sample (log S2 with
    a standard deviation of 2 or more) neither SE is trustworthy."""
    import mpmath

    from theory import Invariants
    from theory._transfer import DPS, relu_s1_terms

    with mpmath.workdps(DPS):
        tn, tl = relu_s1_terms(spec, Invariants.of(x, y))
    exact = np.array([float(a + b) for a, b in zip(tn, tl)])
    S2 = np.asarray(mc.S2_samples, float)
    Z = np.asarray(mc.S1_layer_samples, float) - exact
    Zc, Yc = Z - Z.mean(0), S2 - S2.mean()
    beta = np.linalg.lstsq(Zc, Yc, rcond=None)[0]
    resid = Yc - Zc @ beta
    return (float(S2.mean() - Z.mean(0) @ beta),
            float(resid.std(ddof=Z.shape[1] + 1) / np.sqrt(S2.size)))


def relu_rows(samples: int = 4000, n: int = 64, widths=(16, 32), depths=(3, 4, 6, 8),
              archs=("fc", "residual"), names=("mnist1d", "gaussian", "correlated"),
              seed: int = 0, cells=None):
    """Rows (data, arch, K, L, MC E[S2], SE, theory, kind, rel. error, its SE, nets, and for
    fc nets the control-variate estimate (E[S2], SE) or None) for L/K ≤ 1/2 on the grid
    widths × depths, or on ``cells`` ((K, L) pairs, any L/K)."""
    rows = []
    data = datasets(n)
    for name in names:
        x, y, _ = data[name]
        for arch in archs:
            grid = cells if cells is not None else [(K, L) for K in widths for L in depths
                                                    if L <= K / 2]
            for K, L in grid:
                spec = NetSpec.uniform(L, K, x.shape[1], outputs=y.shape[1],
                                       activation="relu", arch=arch)
                th = expected_moments(spec, x, y)
                mc = _mc(spec, x, y, "squared", samples, seed)
                rel, rel_se = _rel(float(th.expected_S2), mc.S2, mc.S2_se)
                cv = control_variate_S2(mc, spec, x, y) if arch == "fc" else None
                rows.append((name, arch, K, L, mc.S2, mc.S2_se, float(th.expected_S2),
                             th.kind_S2, rel, rel_se, mc.samples, cv))
    return rows


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m tests.measure_theory",
                   description="Monte Carlo vs theory: the measurements behind README's \"What "
                               "is exact and what is not\" (minutes to hours of CPU).",
                   examples=["python -m tests.measure_theory ce --samples 2000",
                             "python -m tests.measure_theory relu --arch fc --widths 16,32",
                             "python -m tests.measure_theory relu --arch residual --n 32"])
    p.add_argument("what", choices=("ce", "relu"),
                   help="ce: true softmax cross-entropy vs theory's linearised one as the "
                        "output gain s_L grows; relu: deep-ReLU E[S2] on a grid of widths, "
                        "depths (3..8) and three data sets")
    p.add_argument("--samples", type=cli.positive_int, default=None,
                   help="random networks per cell (default: ce 2000, relu 4000)")
    p.add_argument("--n", type=cli.positive_int, default=64,
                   help="examples per data set (default 64)")
    p.add_argument("--arch", default="fc,residual",
                   help="relu: comma-separated families, fc and/or residual (default both)")
    p.add_argument("--widths", type=cli.int_list, default=(16, 32),
                   help="relu: comma-separated hidden widths K (default 16,32)")
    p.add_argument("--data", default="mnist1d,gaussian,correlated",
                   help="relu: comma-separated data sets (default mnist1d,gaussian,correlated)")
    p.add_argument("--cells", default=None,
                   help="relu: K:L pairs, e.g. 64:7,256:8 (any L/K; replaces --widths)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the nets (default 0)")
    p.add_argument("--gains", type=cli.float_list, default=(0.1, 0.3, 1.0, 3.0),
                   help="ce: output gains s_L (default 0.1,0.3,1,3)")
    p.add_argument("--extra", action="store_true", help="ce: also K = 128 and a residual net")
    return p


@cli.command
def main(argv=None) -> int:
    """Measure and print the table; returns 0."""
    a = build_parser().parse_args(argv)
    archs = tuple(t for t in a.arch.split(",") if t)
    if not archs or set(archs) - {"fc", "residual"}:
        cli.fail(f"--arch: expected fc and/or residual, got {a.arch!r}")
    if a.what == "ce":
        rows = ce_rows(samples=a.samples or 2000, n=a.n, extra=a.extra, gains=tuple(a.gains))
        print("data | net | s_L | quantity | MC ± SE | theory | kind | (th−MC)/MC ± SE")
        for r in rows:
            print(f"{r[0]} | {r[1]} | {r[2]:g} | {r[3]} | {r[4]:.5g} ± {r[5]:.2g} | {r[6]:.5g} "
                  f"| {r[7]} | {100 * r[8]:+.1f}% ± {100 * r[9]:.1f}%", flush=True)
    else:
        try:
            cells = None if a.cells is None else [tuple(int(v) for v in c.split(":"))
                                                  for c in a.cells.split(",")]
        except ValueError:
            cli.fail(f"--cells: expected K:L pairs such as 64:7,256:8, got {a.cells!r}")
        rows = relu_rows(samples=a.samples or 4000, n=a.n, archs=archs, widths=tuple(a.widths),
                         names=tuple(a.data.split(",")), seed=a.seed, cells=cells)
        print("data | arch | K | L | MC E[S2] ± SE (nets) | theory | kind | (th−MC)/MC ± SE | "
              "with control variates: MC ± SE, (th−MC)/MC ± SE")
        for r in rows:
            cv = "-" if r[11] is None else (
                f"{r[11][0]:.5g} ± {r[11][1]:.2g}, {100 * (r[6] / r[11][0] - 1):+.1f}% ± "
                f"{100 * r[11][1] / r[11][0]:.1f}%")
            print(f"{r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.5g} ± {r[5]:.2g} ({r[10]}) | "
                  f"{r[6]:.5g} | {r[7]} | {100 * r[8]:+.1f}% ± {100 * r[9]:.1f}% | {cv}",
                  flush=True)
        errs = [abs(r[8]) for r in rows]
        print(f"max |error| {100 * max(errs):.1f}%  (worst: {rows[int(np.argmax(errs))][:4]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    cli.run(main)
