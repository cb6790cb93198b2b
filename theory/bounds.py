"""``python -m theory.bounds``: expected gradient diversity of a network at initialisation.

Prints E[S1], E[S2], the expected batch-size bound B̄_S = n·E[S1]/E[S2] (ratio of expectations
over random initial weights, data fixed), B_simple = B̄_S − 1, the predicted maximum batch
δ·B̄_S + 1, the K → ∞ limit and the same-parameter-budget alternatives, each tagged
exact / numerical / approximation / limit (``--loss cross_entropy``: "approximation (softmax,
Gaussian logits)", or with ``--softmax linearised`` the squared-loss kind + " (linearised
softmax)"). ``--json`` prints one object; ``--symbolic`` the closed form.
This module never imports jax; sympy is imported only for ``--symbolic``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

from . import cli
from ._bounds import expected_moments
from ._budget import same_budget_alternatives
from ._result import TheoryResult
from ._invariants import Invariants
from .data import check_class_count
from .cli import Parser, add_data_args, add_network_args, dataset_from_args, fail, spec_from_args

EXAMPLES = (
    "python -m theory.bounds --depth 8 --width 256",
    "python -m theory.bounds --depth 4 --width 64 --activation relu --data mnist1d --json",
    "python -m theory.bounds --widths 64,32,16 --data my.npz --symbolic",
    "python -m theory.bounds --depth 10 --width 32 --data-free --n 512 --input-dim 784",
)


def build_parser() -> Parser:
    p = Parser(prog="python -m theory.bounds",
               description="Expected gradient diversity and batch-size bound at initialisation "
                           "(definitions: README, \"Definitions and conventions\").",
               examples=EXAMPLES)
    add_network_args(p)
    add_data_args(p)
    p.add_argument("--data-free", action="store_true",
                   help="also take the expectation over i.i.d. N(0, I_d) inputs with zero "
                        "labels (linear nets; uses --n and --input-dim)")
    p.add_argument("--loss", default="squared", choices=("squared", "cross_entropy"),
                   help="squared (default) or cross_entropy: softmax cross-entropy with the "
                        "data's integer classes (c = --outputs, else the number of classes), "
                        "with the mean-field softmax correction (--softmax)")
    p.add_argument("--softmax", default="gaussian", choices=("gaussian", "linearised"),
                   help="with --loss cross_entropy: gaussian (default: linearised moments plus "
                        "the softmax correction over Gaussian logits; measured within 2.4%% on "
                        "fc nets at output gain 1, README) or linearised (small-logit "
                        "linearisation only; as good for output gains <= 0.3)")
    p.add_argument("--delta", type=float, default=1.0,
                   help="delta of the predicted maximum batch delta*B_S + 1 (default 1)")
    p.add_argument("--no-same-budget", action="store_true",
                   help="skip the same-parameter-budget table (it evaluates up to 4 more nets: "
                        "slow for ReLU nets on large data)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--symbolic", action="store_true",
                   help="print the closed form in K and L (pretty and LaTeX)")
    return p


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.6g}"


def _alternatives(spec, ds, data_free, loss="squared", labels=None, softmax="gaussian"):
    if data_free:
        return []
    rows = []
    for alt in same_budget_alternatives(spec, ds.x, ds.y if labels is None else labels,
                                        loss=loss, progress=True, softmax=softmax):
        r = alt["result"]
        row = {k: alt[k] for k in ("depth", "width", "params", "within_tolerance")}
        if isinstance(r, TheoryResult):
            row.update(batch_size_bound=r.batch_size_bound, kind=r.kind,
                       wider=alt["width"] > (spec.width or 0))
        else:
            row.update(batch_size_bound=None, kind=None, error=r)
        rows.append(row)
    return rows


def _print_human(result: TheoryResult, ds_desc: str, alts: list, out=None):
    out = sys.stdout if out is None else out
    d = result.to_dict()
    spec = result.spec
    w = out.write
    w("theory.bounds: expected gradient diversity at initialisation\n")
    w(f"conventions: {spec.describe()}; expectations over {result.averaged_over}\n")
    w(f"data: {ds_desc}\n")
    if result.loss == "cross_entropy":
        how = ("linearised at small logits" if "linearised" in result.kind else
               "linearised moments plus the mean-field softmax correction (Gaussian logits)")
        w(f"loss: softmax cross-entropy with integer classes, {how} (replaces the squared "
          f"loss above)\n")
    w(f"parameters: P = {spec.params}\n\n")
    rows = [
        ("E[S1] = E sum_i ||g_i||^2", d["expected_S1_str"], d["kind"]["expected_S1"]),
        ("E[S2] = E ||sum_i g_i||^2", d["expected_S2_str"], d["kind"]["expected_S2"]),
        ("B_S-bar = n E[S1]/E[S2] (ratio of expectations)", _fmt(d["batch_size_bound"]),
         d["kind"]["batch_size_bound"]),
        ("B_simple = B_S-bar - 1 (McCandlish noise scale)", _fmt(d["B_simple"]),
         d["kind"]["batch_size_bound"]),
        (f"predicted max batch delta*B_S-bar + 1 (delta={result.delta:g})",
         _fmt(d["predicted_max_batch"]), d["kind"]["predicted_max_batch"]),
        ("K -> infinity limit of B_S-bar (fixed L)", _fmt(d["limit_batch_size_bound"]),
         "limit" if d["limit_batch_size_bound"] is not None else "-"),
    ]
    width = max(len(r[0]) for r in rows)
    w(f"{'quantity'.ljust(width)}  {'value':>22}  kind\n")
    for name, value, kind in rows:
        w(f"{name.ljust(width)}  {value:>22}  {kind}\n")
    if alts:
        w(f"\nsame parameter budget (P = {spec.params}, uniform widths, default gains):\n")
        w(f"{'depth':>6} {'width':>7} {'params':>10} {'B_S-bar':>12}  kind\n")
        for a in alts:
            flag = "" if a["within_tolerance"] else "  (outside 5% of P)"
            if a.get("batch_size_bound") is None:
                w(f"{a['depth']:>6} {a['width']:>7} {a['params']:>10} {'-':>12}  "
                  f"{a.get('error', '')}{flag}\n")
            else:
                w(f"{a['depth']:>6} {a['width']:>7} {a['params']:>10} "
                  f"{_fmt(a['batch_size_bound']):>12}  {a['kind']}{flag}\n")
        shallower = [a for a in alts if a["depth"] < spec.depth and a.get("batch_size_bound")]
        deeper = [a for a in alts if a["depth"] > spec.depth and a.get("batch_size_bound")]
        here = result.batch_size_bound
        verdicts = []
        if shallower:
            better = all(a["batch_size_bound"] > here for a in shallower)
            verdicts.append("wider-shallower nets have the larger B_S-bar" if better else
                            "a wider-shallower net does NOT have a larger B_S-bar")
        if deeper:
            worse = all(a["batch_size_bound"] < here for a in deeper)
            verdicts.append("narrower-deeper nets have the smaller B_S-bar" if worse else
                            "a narrower-deeper net does NOT have a smaller B_S-bar")
        if verdicts:
            w("verdict at this budget: " + "; ".join(verdicts) + "\n")
    for note in result.notes:
        w(f"note: {note}\n")


@cli.command
def main(argv=None) -> int:
    """Parse the options, print the moments; returns the exit status (0, or 2 after one
    ``error: ...`` line)."""
    return _main(argv)


def _symbolic(spec, data_free: bool, rendered: bool):
    """The closed form for ``--symbolic`` (strings or the rendered text); one-line error if it
    cannot be built."""
    from . import symbolic
    try:
        if rendered:
            return symbolic.render(spec, data_free)
        return symbolic.closed_form_strings(spec, data_free)
    except (ValueError, TypeError, ArithmeticError) as err:
        fail(f"--symbolic: no closed form for this net ({err})")


def _cross_entropy_setup(args, ds):
    """(spec, integer labels) of a cross-entropy net on ``ds`` (one-line errors)."""
    if ds.classes is None:
        fail("--loss cross_entropy needs integer class labels (mnist1d, gaussian, or an .npz "
             "whose y is an integer vector)")
    if args.labels == "zero":
        fail("--loss cross_entropy uses the class labels: drop --labels zero")
    c = args.outputs or max(check_class_count(ds.classes, ds.name), ds.outputs, 2)
    return spec_from_args(args, ds, outputs=c), ds.classes


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not math.isfinite(args.delta) or args.delta <= 0:
        fail(f"--delta must be a positive number, got {args.delta}")
    labels = None
    if args.data_free:
        if args.loss != "squared":
            fail("--data-free covers the squared loss with zero labels: drop --loss")
        if args.data not in (None, "gaussian"):
            fail("--data-free takes the expectation over Gaussian inputs: drop --data")
        n = args.n or 128
        d = args.input_dim or cli.DEFAULT_INPUT_DIM
        spec = spec_from_args(args, None)
        if spec.activation == "relu" and spec.depth >= 2:
            fail("--data-free covers linear nets only (ReLU moments need the data's angles)")
        inv = Invariants.gaussian_expectation(n, d, spec.outputs)
        desc = (f"data-free: expectation over n={n} i.i.d. x ~ N(0, I_{d}) inputs as well, "
                f"labels 0")
        result = replace(expected_moments(spec, invariants=inv, delta=args.delta, data=desc),
                         averaged_over=f"random init and n={n} i.i.d. N(0, I_{d}) inputs with "
                                       f"zero labels (data-free)")
        ds = None
    else:
        ds = dataset_from_args(args)
        if args.loss == "cross_entropy":
            spec, labels = _cross_entropy_setup(args, ds)
        else:
            spec = spec_from_args(args, ds)
        desc = ds.description
        try:
            result = expected_moments(spec, ds.x, ds.y if labels is None else labels,
                                      delta=args.delta, data=desc, loss=args.loss,
                                      progress=True, softmax=args.softmax)
        except MemoryError:
            relu = spec.activation == "relu" and spec.depth >= 2
            fail(f"out of memory evaluating the moments (n = {ds.n}, d = {ds.input_dim}: "
                 + ("the ReLU pair sums need O(n * depth) floats per block, the data "
                    "invariants a min(n, d)^2 matrix" if relu else
                    "the data invariants need a min(n, d)^2 float64 matrix")
                 + "); try a smaller --n")
    alts = [] if args.no_same_budget else _alternatives(spec, ds, args.data_free, args.loss,
                                                        labels, args.softmax)
    if args.json:
        out = result.to_dict()
        out["same_budget"] = alts
        out["conventions"] = spec.describe()
        if args.symbolic:
            out["symbolic"] = _symbolic(spec, args.data_free, rendered=False)
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    _print_human(result, desc, alts)
    if args.symbolic:
        sys.stdout.write("\n" + _symbolic(spec, args.data_free, rendered=True) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    cli.run(main)
