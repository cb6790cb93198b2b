r"""Closed forms in the width :math:`K` and depth :math:`L` (sympy), limits and propositions.

The expressions come from the same transfer layers as the numbers (:mod:`theory._linear`,
:mod:`theory._relu_chain`, :func:`theory._chain.uniform_sum`), built with sympy symbols instead
of numbers — no formula is typed twice. Symbols carry assumptions (positive integers for
:math:`K, L, n, d, c`; nonnegative data invariants).

Example:
    >>> cf = closed_form("linear", "fc")
    >>> sorted(str(s) for s in cf["B"].free_symbols)
    ['F', 'K', 'L', 'X2', 'X4', 'Y_d', 'Y_o', 'c', 'd', 'n']
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import sympy as sp

from . import _linear, _relu_chain
from ._chain import chain_sum, uniform_sum
from ._transfer import transfer_args
from ._kernels import two_layer_pair_terms
from ._spec import NetSpec

K, L, n, d, c = sp.symbols("K L n d c", positive=True, integer=True)
X4, X2, F = sp.symbols("X4 X2 F", nonnegative=True)
Yd, Yo = sp.symbols("Y_d Y_o", nonnegative=True)
INVARIANTS = {
    "X4": "sum_i |x_i|^4", "X2": "(sum_i |x_i|^2)^2", "F": "sum_ij (x_i.x_j)^2",
    "Y_d": "sum_i |y_i|^2 |x_i|^2", "Y_o": "sum_ij (y_i.y_j)(x_i.x_j)",
}
GAUSSIAN_INPUTS = {X4: n * d * (d + 2), X2: n * d * (d + 2) + n * (n - 1) * d ** 2,
                   F: n * d * (d + 2) + n * (n - 1) * d, Yd: 0, Yo: 0}
"""Expectations of the invariants over i.i.d. N(0, I_d) inputs with zero labels."""


def _q(v) -> sp.Expr:
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    return sp.sympify(v)


def _gains(activation: str, gain_squares=None):
    """(s_1^2, s_hidden^2, s_L^2) as exact sympy numbers (the default gains if None)."""
    if gain_squares is None:
        h = sp.Integer(2) if activation == "relu" else sp.Integer(1)
        return h, h, sp.Integer(1)
    return tuple(_q(g) for g in gain_squares)


def _layer_triples(activation, arch, gains, alpha2):
    """Symbolic (n_in, n_out, s2, g2, b2, p_in, p_out) of the first, a hidden and the last
    layer of the family (d → K, K → K repeated L − 2 times, K → c): the LayerSpecs of a
    depth-3 net of that family (so which layer is a block, and where the ReLUs sit, is read
    from the spec, not re-derived), with symbolic dimensions, gains and branch scale."""
    template = NetSpec(depth=3, widths=(1, 1), input_dim=1, activation=activation, arch=arch)
    first, hidden, last = template.layers
    layers = (replace(first, fan_in=d, fan_out=K, gain_square=gains[0]),
              replace(hidden, fan_in=K, fan_out=K, gain_square=gains[1],
                      branch_square=alpha2 if hidden.block else sp.Integer(1)),
              replace(last, fan_in=K, fan_out=c, gain_square=gains[2]))
    return tuple(transfer_args(layer, _q) for layer in layers)


def closed_form(activation: str = "linear", arch: str = "fc", gain_squares=None,
                alpha2=None) -> dict:
    r"""E[S1], E[S2] and :math:`\bar B_S = nE[S_1]/E[S_2]` for equal hidden widths K, depth L.

    Valid for :math:`L \ge 2` (``arch="residual"``: :math:`L \ge 3`, default
    :math:`\alpha^2 = 1/(L-2)`). ``gain_squares`` = (first, hidden, last) :math:`s^2`.
    Deep ReLU (:math:`L \ge 3`): only E[S1] has a closed form (E[S2] is the pair chain,
    evaluated numerically), so ``S2``/``B`` are None; depth 2 ReLU: see
    :func:`two_layer_relu`.

    Returns a dict with keys S1, S2, B (sympy expressions or None), kind, valid.
    """
    gains = _gains(activation, gain_squares)
    if arch == "residual":
        alpha2 = 1 / (L - 2) if alpha2 is None else _q(alpha2)
    layers = _layer_triples(activation, arch, gains, alpha2)
    if activation == "linear":
        net = [_linear.network_layer(*a[:5]) for a in layers]
        lab = [_linear.label_layer(*a[:5]) for a in layers]
        top = _linear.network_top(c)
        S1 = uniform_sum(*net, L, top, (X4, X4)) + uniform_sum(*lab, L, _linear.LABEL_TOP,
                                                              (Yd,))
        S2 = uniform_sum(*net, L, top, (X2, F)) + uniform_sum(*lab, L, _linear.LABEL_TOP,
                                                             (Yo,))
        return {"S1": S1, "S2": S2, "B": n * S1 / S2, "kind": "exact",
                "valid": "L >= 3" if arch == "residual" else "L >= 2"}
    if arch == "residual":
        return {"S1": None, "S2": None, "B": None, "kind": "limit",
                "valid": "no closed form: residual ReLU is evaluated in the infinite-width limit"}
    net = [_relu_chain.network_layer(a[0], a[1], a[2], a[5], a[6]) for a in layers]
    lab = [_relu_chain.label_layer(a[0], a[1], a[2], a[5], a[6], c) for a in layers]
    S1 = (uniform_sum(*net, L, _relu_chain.network_top(c), (X4,))
          + uniform_sum(*lab, L, _relu_chain.LABEL_TOP, (Yd,)))
    return {"S1": S1, "S2": None, "B": None,
            "kind": "exact (S1); S2 numerical (pair chain), no closed form",
            "valid": "L >= 2"}


def two_layer_relu(gain_squares=None) -> dict:
    r"""Depth-2 ReLU: exact :math:`E\langle g_i, g_j\rangle` for one pair as a polynomial in K.

    ``m0, m2, m4`` are the arc-cosine moments of the pair's layer-1 pre-activations
    (:mod:`theory._kernels`), ``g = x_i·x_j``, ``yy = y_i·y_j``; E[S2] sums it over all pairs,
    E[S1] over i = j.
    """
    m0, m2, m4, g, yy = sp.symbols("m0 m2 m4 g yy", real=True)
    s1, _, s2 = _gains("relu", gain_squares)
    parts = two_layer_pair_terms(m0, m2, m4, g, yy, K, c, s2 / K)
    return {"pair_term": sp.expand(sum(parts)), "kind": "exact", "valid": "L = 2",
            "note": f"m0, m2, m4 for the pre-activation kernel ({s1}/d) x_i.x_j"}


def data_free_bound(activation="linear", arch="fc", gain_squares=None) -> sp.Expr:
    """:math:`\\bar B_S` with the invariants replaced by their expectations over i.i.d.
    Gaussian inputs (zero labels): a closed form in n, d, K, L (and c)."""
    cf = closed_form(activation, arch, gain_squares)
    if cf["S2"] is None:
        raise ValueError("the data-free closed form covers linear nets")
    S1 = cf["S1"].subs(GAUSSIAN_INPUTS)
    S2 = cf["S2"].subs(GAUSSIAN_INPUTS)
    return n * S1 / S2


def width_limit(expr: sp.Expr) -> sp.Expr:
    """:math:`\\lim_{K\\to\\infty}` at fixed L (sympy ``limit``)."""
    return sp.limit(expr, K, sp.oo)


def spec_gain_triple(spec: NetSpec):
    """(first, hidden, last) gain squares of a spec, or None for the defaults; raises
    ValueError unless the hidden layers are one layer repeated (no closed form in L then:
    :attr:`NetSpec.hidden_repeats`)."""
    if spec.hidden_repeats is None:
        raise ValueError("no closed form in L: the hidden layers differ (widths or gains)")
    if spec.gains is None:
        return None
    g = spec.gain_squares
    return (g[0], g[1] if len(g) > 2 else g[0], g[-1])


def depth_one(gain_square=None) -> dict:
    """Depth 1 (the linear model W x, no width): E[S1], E[S2], B̄_S from the same layer."""
    s2 = sp.Integer(1) if gain_square is None else _q(gain_square)
    args = (d, c, s2, sp.Integer(0), sp.Integer(1))
    net, lab = [_linear.network_layer(*args)], [_linear.label_layer(*args)]
    top = _linear.network_top(c)
    S1 = chain_sum(net, top, (X4, X4)) + chain_sum(lab, _linear.LABEL_TOP, (Yd,))
    S2 = chain_sum(net, top, (X2, F)) + chain_sum(lab, _linear.LABEL_TOP, (Yo,))
    return {"S1": S1, "S2": S2, "B": n * S1 / S2, "kind": "exact", "valid": "L = 1"}


def readable(expr: sp.Expr) -> sp.Expr:
    r"""The same expression, shorter: each power :math:`b^{L-k}` is written as
    :math:`b^{L-2}\,b^{2-k}`, the expression is collected over the distinct powers
    :math:`b^{L-2}` and each coefficient is factored (the default fc net's E[S1] drops from
    ~1 900 to ~200 characters). Expressions whose power bases depend on L (residual nets,
    :math:`\alpha^2 = 1/(L-2)`) are returned unchanged, as collecting them blows up.

    Example:
        >>> e = ((K + 2) / K) ** (L - 3) * (K + 2) / K + ((K + 2) / K) ** (L - 2)
        >>> readable(e)
        2*((K + 2)/K)**(L - 2)
    """
    powers = [p for p in expr.atoms(sp.Pow) if p.exp.has(L)]
    if any(p.base.has(L) for p in powers):
        return expr
    names = {}

    def rewrite(p):
        base = sp.cancel(p.base)
        if base not in names:
            names[base] = sp.Dummy(positive=True)
        return names[base] * base ** sp.expand(p.exp - (L - 2))

    e = sp.expand(expr.replace(lambda z: z.is_Pow and z.exp.has(L), rewrite))
    terms = sp.collect(e, list(names.values()), evaluate=False)
    out = sum(sp.factor(sp.cancel(coef)) * mono for mono, coef in terms.items())
    return out.subs({v: b ** (L - 2) for b, v in names.items()})


def closed_form_strings(spec: NetSpec, data_free: bool = False) -> dict:
    """String forms (``str`` that ``sympify`` parses back, and LaTeX) of the closed form that
    covers ``spec``; ``data_free`` substitutes the Gaussian-input expectations."""
    out = {"symbols": {"K": "hidden width", "L": "depth (number of weight matrices)",
                       "n": "examples", "d": "input dim", "c": "outputs", **INVARIANTS}}
    if spec.activation == "relu" and spec.depth == 2 and spec.arch == "fc" and not data_free:
        tl = two_layer_relu(spec_gain_triple(spec))
        out.update(kind="exact", valid="L = 2", pair_term=str(tl["pair_term"]),
                   pair_term_latex=sp.latex(tl["pair_term"]), note=tl["note"])
        return out
    if spec.depth == 1:
        cf = depth_one(spec.gain_squares[0] if spec.gains is not None else None)
    elif spec.hidden_repeats is None:
        what = "widths" if not spec.is_uniform else "gains"
        out.update(kind="none", valid="hidden layers that are one layer repeated (equal "
                                      "widths, gains and branch scales)",
                   note=f"no closed form in K and L: the hidden layers have different {what}; "
                        f"the numbers above come from the explicit recursion over the layers "
                        f"(their kinds as printed)")
        return out
    else:
        cf = closed_form(spec.activation, spec.arch, spec_gain_triple(spec),
                         None if spec.alpha is None else spec.alpha_square)
    cf = dict(cf, **{k: readable(cf[k]) for k in ("S1", "S2") if cf[k] is not None})
    if cf["S2"] is not None:
        cf["B"] = n * cf["S1"] / cf["S2"]
    if data_free and cf["S2"] is not None:
        cf = dict(cf, S1=readable(cf["S1"].subs(GAUSSIAN_INPUTS)),
                  S2=readable(cf["S2"].subs(GAUSSIAN_INPUTS)))
        cf["B"] = n * cf["S1"] / cf["S2"]
        out["note"] = "data-free: invariants replaced by their expectations over N(0, I_d) inputs"
    for key in ("S1", "S2", "B"):
        if cf[key] is not None:
            out[key] = str(cf[key])
            out[key + "_latex"] = sp.latex(cf[key])
    out.update(kind=cf["kind"], valid=cf["valid"])
    return out


def render(spec: NetSpec, data_free: bool = False) -> str:
    """Human-readable closed form (pretty and LaTeX) for ``--symbolic``."""
    s = closed_form_strings(spec, data_free)
    lines = [f"closed form ({s['kind']}; valid for {s['valid']}); symbols: "
             + ", ".join(f"{k} = {v}" for k, v in s["symbols"].items())]
    if "pair_term" in s:
        expr = sp.sympify(s["pair_term"])
        lines += ["E<g_i, g_j> (sum over pairs for E[S2], i = j for E[S1]) =",
                  sp.pretty(expr, use_unicode=False), "LaTeX: " + s["pair_term_latex"],
                  s["note"]]
        return "\n".join(lines)
    for key in ("S1", "S2", "B"):
        if key in s:
            label = {"S1": "E[S1]", "S2": "E[S2]", "B": "B_S-bar = n E[S1]/E[S2]"}[key]
            lines += [f"{label} =", sp.pretty(sp.sympify(s[key]), use_unicode=False),
                      f"LaTeX: {s[key + '_latex']}", ""]
    if "S2" not in s and s["kind"] != "none":
        lines.append("E[S2]: no closed form (" + s["kind"] + ")")
    if "note" in s:
        lines.append("note: " + s["note"])
    return "\n".join(lines)
