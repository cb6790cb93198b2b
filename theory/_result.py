"""The result type of :func:`theory.expected_moments`: expected moments, their kinds, and the
batch-size bound they give."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath

from ._diversity import batch_size_bound, predicted_max_batch
from ._spec import NetSpec

#: Kinds of a number, strongest first; a bound has the weakest kind of its two moments.
KIND_ORDER = ("exact", "numerical", "approximation", "limit")


def weakest(*kinds: str) -> str:
    """The weakest of ``kinds`` by their first word (a qualifier such as " (linearised
    softmax)" is kept): the kind of a number computed from numbers of these kinds."""
    return max(kinds, key=lambda k: KIND_ORDER.index(k.split()[0]))


def bound_of(parts: dict, n: int) -> float:
    """B̄_S of the parts (network + label) of E[S1] and E[S2] over n examples."""
    return float(batch_size_bound(parts["S1_net"] + parts["S1_label"],
                                  parts["S2_net"] + parts["S2_label"], n))


def _to_float(v) -> float | None:
    """float of an mpf, or None when it overflows float64 (the ``*_str`` keys keep it)."""
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class TheoryResult:
    """Expected moments at initialisation for one net and one data set, each with its kind."""

    spec: NetSpec
    n: int
    data: str
    expected_S1: mpmath.mpf
    expected_S2: mpmath.mpf
    kind_S1: str
    kind_S2: str
    parts: dict
    limit_batch_size_bound: float | None
    delta: float = 1.0
    notes: tuple = field(default_factory=tuple)
    loss: str = "squared"
    #: what the expectations average over (the data-free mode also averages over the inputs)
    averaged_over: str = "random init, data fixed"

    @property
    def kind(self) -> str:
        """Kind of the bound: the weakest of the kinds of E[S1] and E[S2] (a qualifier such as
        " (linearised softmax)" is kept)."""
        return weakest(self.kind_S1, self.kind_S2)

    @property
    def batch_size_bound(self) -> float:
        """:math:`\\bar B_S = n E[S_1]/E[S_2]` (ratio of expectations)."""
        return float(batch_size_bound(self.expected_S1, self.expected_S2, self.n))

    @property
    def predicted_max_batch(self) -> float:
        return float(predicted_max_batch(self.batch_size_bound, self.delta))

    def to_dict(self) -> dict:
        spec = self.spec
        return {
            "expected_S1": _to_float(self.expected_S1),
            "expected_S2": _to_float(self.expected_S2),
            "expected_S1_str": mpmath.nstr(self.expected_S1, 17),
            "expected_S2_str": mpmath.nstr(self.expected_S2, 17),
            "batch_size_bound": self.batch_size_bound,
            "B_simple": self.batch_size_bound - 1.0,
            "predicted_max_batch": self.predicted_max_batch,
            "delta": self.delta,
            "loss": self.loss,
            "kind": {"expected_S1": self.kind_S1, "expected_S2": self.kind_S2,
                     "batch_size_bound": self.kind, "predicted_max_batch": self.kind},
            "limit_batch_size_bound": self.limit_batch_size_bound,
            "parts": {k: _to_float(v) for k, v in self.parts.items()},
            "spec": spec.to_dict(),
            "params": spec.params,
            "n": self.n,
            "input_dim": spec.input_dim,
            "depth": spec.depth,
            "widths": list(spec.widths),
            "activation": spec.activation,
            "arch": spec.arch,
            "outputs": spec.outputs,
            "gain_squares": [str(g) for g in spec.gain_squares],
            "alpha_square": None if spec.alpha_square is None else str(spec.alpha_square),
            "parameterization": spec.parameterization,
            "bound_definition": f"ratio of expectations n*E[S1]/E[S2] over {self.averaged_over}",
            "data": self.data,
            "notes": list(self.notes),
        }
