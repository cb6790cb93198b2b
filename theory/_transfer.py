r"""Exact finite-width sums over the layers: the transfer layers of each layer of a
:class:`~theory.NetSpec` and the closed form (O(1) in the depth) or the explicit recursion.

* linear-activation nets (fully connected and residual): :math:`E[S_1]` and :math:`E[S_2]`
  (:mod:`theory._linear`);
* fully connected ReLU nets: the single-input chain, :math:`E[S_1]` (:mod:`theory._relu_chain`).

Which summation applies is :attr:`NetSpec.hidden_repeats` (the one rule); numbers are mpmath
at :data:`DPS` significant digits.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath

from . import _linear, _relu_chain
from ._chain import Layer, chain_sum, chain_terms, uniform_sum
from ._invariants import Invariants
from ._spec import LayerSpec, NetSpec

DPS = 50  # significant digits of the mpmath evaluation (arbitrary exponent range: no overflow)


def mp(value):
    if isinstance(value, Fraction):
        return mpmath.mpf(value.numerator) / value.denominator
    return mpmath.mpf(value)


def transfer_args(layer: LayerSpec, conv) -> tuple:
    """(n_in, n_out, s^2, gamma^2, beta^2, p_in, p_out) of one layer, converted by ``conv``:
    the arguments of the transfer layers of :mod:`theory._linear` and :mod:`theory._relu_chain`
    (p = 1/2, the fraction of active units, after a ReLU; 1 otherwise). The symbolic closed
    forms call this with sympy values."""
    half, one = Fraction(1, 2), Fraction(1)
    values = (layer.fan_in, layer.fan_out, layer.gain_square, layer.skip_square,
              layer.branch_square, half if layer.relu_in else one,
              half if layer.relu_out else one)
    # ints become Fractions first: int / int would be a float in rational arithmetic
    return tuple(conv(Fraction(v) if isinstance(v, int) else v) for v in values)


def layer_args(spec: NetSpec, conv, layers=None):
    """:func:`transfer_args` of the layers l (1-based, all by default) of ``spec``."""
    ls = range(1, spec.depth + 1) if layers is None else layers
    return [transfer_args(spec.layer(l), conv) for l in ls]


def linear_layers(spec: NetSpec, conv=mp, layers=None) -> tuple[list[Layer], list[Layer]]:
    """(network, label) transfer layers of a linear-activation net (fc or residual)."""
    args = layer_args(spec, conv, layers)
    net = [_linear.network_layer(a[0], a[1], a[2], a[3], a[4]) for a in args]
    lab = [_linear.label_layer(a[0], a[1], a[2], a[3], a[4]) for a in args]
    return net, lab


def relu_chain_layers(spec: NetSpec, conv=mp, layers=None) -> tuple[list[Layer], list[Layer]]:
    """(network, label) single-input transfer layers of a fully connected net."""
    args = layer_args(spec, conv, layers)
    c = conv(Fraction(spec.outputs))
    net = [_relu_chain.network_layer(a[0], a[1], a[2], a[5], a[6]) for a in args]
    lab = [_relu_chain.label_layer(a[0], a[1], a[2], a[5], a[6], c) for a in args]
    return net, lab


def _summation(spec: NetSpec, closed_form: bool = True):
    """(layers to build, how to sum them): (first, one hidden, last) and the O(1)-in-depth
    closed form when the hidden layers are one layer repeated (:attr:`NetSpec.hidden_repeats`,
    at least once), else all layers and the explicit recursion."""
    repeats = spec.hidden_repeats
    if closed_form and repeats is not None and repeats >= 1:
        return (1, 2, spec.depth), lambda layers, top, bottom: uniform_sum(
            *layers, spec.depth, top, bottom)
    return None, chain_sum


def linear_exact(spec: NetSpec, inv: Invariants, closed_form: bool = True):
    """Exact (network, label) parts of E[S1] and E[S2] for linear-activation nets."""
    which, total = _summation(spec, closed_form)
    net, lab = linear_layers(spec, layers=which)
    top = _linear.network_top(mp(Fraction(spec.outputs)))
    X4, X2, F, Yd, Yo = (mp(v) for v in (inv.X4, inv.X2, inv.F, inv.Yd, inv.Yo))
    return {
        "S1_net": total(net, top, (X4, X4)),
        "S2_net": total(net, top, (X2, F)),
        "S1_label": total(lab, _linear.LABEL_TOP, (Yd,)),
        "S2_label": total(lab, _linear.LABEL_TOP, (Yo,)),
    }


def relu_s1_terms(spec: NetSpec, inv: Invariants):
    """Exact per-layer single-input S1 terms (network, label) of a fully connected net."""
    net, lab = relu_chain_layers(spec)
    c = mp(Fraction(spec.outputs))
    tn = chain_terms(net, _relu_chain.network_top(c), (mp(inv.X4),))
    tl = chain_terms(lab, _relu_chain.LABEL_TOP, (mp(inv.Yd),))
    return tn, tl


def relu_s1_exact(spec: NetSpec, inv: Invariants, closed_form: bool = True):
    """Exact E[S1] (network, label) of a fully connected net by the single-input chain."""
    which, total = _summation(spec, closed_form)
    net, lab = relu_chain_layers(spec, layers=which)
    c = mp(Fraction(spec.outputs))
    return (total(net, _relu_chain.network_top(c), (mp(inv.X4),)),
            total(lab, _relu_chain.LABEL_TOP, (mp(inv.Yd),)))
