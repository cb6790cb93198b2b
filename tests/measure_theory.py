"""Measurements behind README's "What is exact and what is not" (Monte Carlo vs theory).

Not a test module (pytest does not collect it); run from the repository root:

* ``python -m tests.measure_theory ce``: true softmax cross-entropy (numerics Monte Carlo,
  ``loss="cross_entropy"``) vs theory's linearised cross-entropy as the output gain s_L grows.
* ``python -m tests.measure_theory relu``: deep-ReLU E[S2], Monte Carlo vs theory, on a grid of
  widths, depths and data sets (fully connected and residual).

Each row prints the Monte Carlo value ± 1 SE, theory's value and kind, and the relative error
(theory − MC)/MC with its SE.
"""

from __future__ import annotations

import math
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


def ce_rows(samples: int = 2000, n: int = 64, gains=(0.1, 0.3, 1.0, 3.0), seed: int = 0):
    """Rows (data, net, s_L, quantity, MC, SE, theory, kind, rel. error, its SE)."""
    rows = []
    data = datasets(n)
    nets = [NetSpec.uniform(3, 32, 1, outputs=10),
            NetSpec.uniform(2, 64, 1, outputs=10, activation="relu"),
            NetSpec.uniform(4, 64, 1, outputs=10, activation="relu")]
    for name in ("mnist1d", "gaussian"):
        x, _, classes = data[name]
        for base in nets:
            for sL in gains:
                hidden = 2.0 ** 0.5 if base.activation == "relu" else 1.0
                spec = replace(base, input_dim=x.shape[1],
                               gains=(hidden,) * (base.depth - 1) + (sL,))
                th = expected_moments(spec, x, classes, loss="cross_entropy")
                mc = _mc(spec, x, classes, "cross_entropy", samples, seed)
                for q, t, m, s in (("E[S1]", float(th.expected_S1), mc.S1, mc.S1_se),
                                   ("E[S2]", float(th.expected_S2), mc.S2, mc.S2_se),
                                   ("B_S-bar", th.batch_size_bound, mc.batch_size_bound,
                                    mc.batch_size_bound_se)):
                    rel, rel_se = _rel(t, m, s)
                    rows.append((name, f"{base.activation} L={base.depth} K={base.width}", sL,
                                 q, m, s, t, th.kind_S2 if q != "E[S1]" else th.kind_S1,
                                 rel, rel_se))
    return rows


def relu_rows(samples: int = 4000, n: int = 64, widths=(16, 32), depths=(3, 4, 6, 8),
              archs=("fc", "residual"), names=("mnist1d", "gaussian", "correlated"),
              seed: int = 0):
    """Rows (data, arch, K, L, MC E[S2], SE, theory, kind, rel. error, its SE) for L/K ≤ 1/2."""
    rows = []
    data = datasets(n)
    for name in names:
        x, y, _ = data[name]
        for arch in archs:
            for K in widths:
                for L in depths:
                    if L > K / 2:
                        continue
                    spec = NetSpec.uniform(L, K, x.shape[1], outputs=y.shape[1],
                                           activation="relu", arch=arch)
                    th = expected_moments(spec, x, y)
                    mc = _mc(spec, x, y, "squared", samples, seed)
                    rel, rel_se = _rel(float(th.expected_S2), mc.S2, mc.S2_se)
                    old = None
                    if arch == "fc":
                        ap = expected_moments(spec, x, y, deep_relu="approximation")
                        old = _rel(float(ap.expected_S2), mc.S2, mc.S2_se)[0]
                    rows.append((name, arch, K, L, mc.S2, mc.S2_se, float(th.expected_S2),
                                 th.kind_S2, rel, rel_se, old))
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
    return p


@cli.command
def main(argv=None) -> int:
    """Measure and print the table; returns 0."""
    a = build_parser().parse_args(argv)
    archs = tuple(t for t in a.arch.split(",") if t)
    if not archs or set(archs) - {"fc", "residual"}:
        cli.fail(f"--arch: expected fc and/or residual, got {a.arch!r}")
    if a.what == "ce":
        rows = ce_rows(samples=a.samples or 2000, n=a.n)
        print("data | net | s_L | quantity | MC ± SE | theory | kind | (th−MC)/MC ± SE")
        for r in rows:
            print(f"{r[0]} | {r[1]} | {r[2]:g} | {r[3]} | {r[4]:.5g} ± {r[5]:.2g} | {r[6]:.5g} "
                  f"| {r[7]} | {100 * r[8]:+.1f}% ± {100 * r[9]:.1f}%")
    else:
        rows = relu_rows(samples=a.samples or 4000, n=a.n, archs=archs, widths=tuple(a.widths))
        print("data | arch | K | L | MC E[S2] ± SE | theory | kind | (th−MC)/MC ± SE | "
              "approximation's error")
        for r in rows:
            old = "-" if r[10] is None else f"{100 * r[10]:+.1f}%"
            print(f"{r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.5g} ± {r[5]:.2g} | {r[6]:.5g} "
                  f"| {r[7]} | {100 * r[8]:+.1f}% ± {100 * r[9]:.1f}% | {old}", flush=True)
        errs = [abs(r[8]) for r in rows]
        print(f"max |error| {100 * max(errs):.1f}%  (worst: {rows[int(np.argmax(errs))][:4]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    cli.run(main)
