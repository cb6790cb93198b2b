"""The one network specification shared by theory/, numerics/ and experiments/.

Everything that says "depth", "width", "gain" or "residual" in this toolkit means what
:class:`NetSpec` says it means. Nothing here imports jax: the spec is plain, hashable,
frozen configuration, so JAX code passes it as a *static* argument.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, replace
from functools import cached_property
from fractions import Fraction

ACTIVATIONS = ("linear", "relu")
ARCHS = ("fc", "residual")
PARAMETERIZATIONS = ("standard",)
MAX_DEPTH = 100_000  # deepest net accepted (a depth is a tuple of widths: refuse, never hang)


class SpecError(ValueError):
    """A network specification that cannot be built (bad depth, width, gain, ...)."""


@dataclass(frozen=True)
class LayerSpec:
    r"""One weight matrix :math:`W_l` of a :class:`NetSpec`: everything the moment recursions,
    the closed forms and the Monte Carlo need to know about it, read in one place.

    The layer maps its input :math:`a_l` (the data for :math:`l = 1`, else
    :math:`\phi(h_{l-1})`) to :math:`T_l a = \gamma_l\,a + \beta_l W_l a`: a plain layer has
    :math:`\gamma_l = 0, \beta_l = 1`; a residual block :math:`h_l = h_{l-1} + \alpha W_l
    \phi(h_{l-1})` has :math:`\gamma_l = 1` (the skip) and :math:`\beta_l = \alpha`.

    Attributes:
        fan_in: :math:`n_{l-1}`.
        fan_out: :math:`n_l`.
        gain_square: :math:`s_l^2` (entries of :math:`W_l` are :math:`\mathcal N(0,
            s_l^2/n_{l-1})`).
        block: True on a residual block (:math:`\gamma_l^2 = 1`).
        branch_square: :math:`\beta_l^2`: :math:`\alpha^2` on a block, 1 otherwise.
        relu_in: the layer's input went through a ReLU (:math:`l \ge 2` of a ReLU net).
        relu_out: its output goes through a ReLU before the next layer (:math:`l < L`).

    Two layers that compare equal contribute identical transfer matrices; a closed form in the
    depth exists exactly when all hidden layers compare equal (:attr:`NetSpec.hidden_repeats`).
    Fields are plain values, so sympy symbols may stand in for the dimensions and gains (the
    symbolic closed forms build their layers this way).
    """

    fan_in: int
    fan_out: int
    gain_square: Fraction
    block: bool = False
    branch_square: Fraction = Fraction(1)
    relu_in: bool = False
    relu_out: bool = False

    @property
    def skip_square(self):
        r""":math:`\gamma_l^2`: 1 on a residual block, 0 on a plain layer."""
        return 1 if self.block else 0


def _as_fraction(value) -> Fraction:
    """Exact rational from an int, Fraction, decimal string or float (float via its repr)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError) as err:
        raise SpecError(f"not a finite number: {value!r}") from err


def check_depth(depth: int) -> None:
    """Refuse depths above :data:`MAX_DEPTH` in O(1) (before any per-layer tuple is built)."""
    if depth > MAX_DEPTH:
        raise SpecError(f"depth {depth} exceeds the supported maximum of {MAX_DEPTH} weight "
                        f"matrices (for the K -> infinity and L -> infinity limits see the "
                        f"README's verified results)")


@dataclass(frozen=True)
class NetSpec:
    r"""A fully connected or residual network with linear or ReLU activations.

    Conventions (README, "Definitions and conventions"):

    * ``depth`` :math:`L` is the number of weight matrices. ``depth=1`` is the linear model
      :math:`f(x) = W_1 x`; ``depth=2`` has one hidden layer; ``widths`` lists the
      :math:`L-1` hidden widths :math:`n_1, \dots, n_{L-1}`, with :math:`n_0 = d` (``input_dim``)
      and :math:`n_L = c` (``outputs``).
    * Fully connected (``arch="fc"``): :math:`h_1 = W_1 x`, :math:`h_{l+1} = W_{l+1}\phi(h_l)`,
      :math:`f = h_L`, :math:`\phi` the identity (``"linear"``) or ReLU with
      :math:`\mathrm{relu}'(0) = 0`. No biases.
    * Residual (``arch="residual"``, needs equal hidden widths and :math:`L \ge 3`):
      :math:`h_1 = W_1 x`, then for :math:`l = 2, \dots, L-1` the blocks
      :math:`h_l = h_{l-1} + \alpha W_l \phi(h_{l-1})`, and :math:`f = W_L \phi(h_{L-1})`.
      The branch scale defaults to :math:`\alpha = 1/\sqrt{L-2}` (one over the square root of
      the number of blocks). For :math:`L \le 2` there are no blocks and ``"residual"`` is
      rejected (use ``"fc"``).
    * Standard (fan-in) parameterisation: entries of :math:`W_l` are i.i.d.
      :math:`\mathcal N(0, s_l^2 / n_{l-1})`. Default gains: :math:`s_l = 1` for linear nets;
      for ReLU nets :math:`s_l^2 = 2` (He) for every layer whose output goes through a ReLU
      (:math:`l < L`) and :math:`s_L = 1`. ``gains`` overrides :math:`s_l` per layer.
    * The loss is :math:`f_i = \tfrac12 \lVert f(x_i) - y_i \rVert^2`.

    Example:
        >>> spec = NetSpec(depth=3, widths=(8, 8), input_dim=4, activation="relu")
        >>> spec.layer_dims
        ((4, 8), (8, 8), (8, 1))
        >>> spec.params
        104
        >>> [str(g) for g in spec.gain_squares]
        ['2', '2', '1']
    """

    depth: int
    widths: tuple[int, ...]
    input_dim: int
    outputs: int = 1
    activation: str = "linear"
    arch: str = "fc"
    gains: tuple | None = None
    alpha: float | None = None
    parameterization: str = "standard"
    _gain_squares: tuple[Fraction, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("depth", "input_dim", "outputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")
        check_depth(self.depth)
        widths = self.widths
        if isinstance(widths, int):
            widths = (widths,) * (self.depth - 1)
        widths = tuple(widths)
        object.__setattr__(self, "widths", widths)
        for w in set(widths):
            if isinstance(w, bool) or not isinstance(w, int) or w <= 0:
                raise SpecError(f"width must be a positive integer, got {w!r}")
        if len(widths) != self.depth - 1:
            raise SpecError(
                f"depth {self.depth} needs {self.depth - 1} hidden widths, got {len(widths)}"
            )
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"unknown activation {self.activation!r} (choose from {ACTIVATIONS})")
        if self.arch not in ARCHS:
            raise SpecError(f"unknown arch {self.arch!r} (choose from {ARCHS})")
        if self.parameterization not in PARAMETERIZATIONS:
            raise SpecError(
                f"unknown parameterization {self.parameterization!r} "
                f"(supported: {PARAMETERIZATIONS})"
            )
        if self.arch == "residual":
            if self.depth < 3:
                raise SpecError("a residual net needs depth >= 3 (depth counts weight matrices)")
            if len(set(widths)) != 1:
                raise SpecError("a residual net needs equal hidden widths")
        if self.alpha is not None:
            if self.arch != "residual":
                raise SpecError("alpha (branch scale) applies to residual nets only")
            if not (isinstance(self.alpha, (int, float, Fraction)) and math.isfinite(self.alpha)):
                raise SpecError(f"alpha must be a finite number, got {self.alpha!r}")
        if self.gains is None:
            hidden = Fraction(2) if self.activation == "relu" else Fraction(1)
            squares = (hidden,) * (self.depth - 1) + (Fraction(1),)
        else:
            gains = tuple(self.gains)
            object.__setattr__(self, "gains", gains)
            if len(gains) != self.depth:
                raise SpecError(f"need {self.depth} gains (one per layer), got {len(gains)}")
            squares = []
            for g in gains:
                fg = _as_fraction(g)
                if fg <= 0:
                    raise SpecError(f"gains must be positive, got {g!r}")
                squares.append(fg * fg)
            squares = tuple(squares)
            # exact values: gains 1.5 and "3/2" are the same net (equal, same hash)
            object.__setattr__(self, "gains", tuple(_as_fraction(g) for g in gains))
        object.__setattr__(self, "_gain_squares", squares)
        if self.alpha is not None:
            object.__setattr__(self, "alpha", _as_fraction(self.alpha))

    # ------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """The constructor fields as JSON values (exact numbers as strings such as "3/2");
        :meth:`from_dict` inverts it: ``NetSpec.from_dict(s.to_dict()) == s``.

        Example:
            >>> s = NetSpec(depth=3, widths=(8, 4), input_dim=5, gains=(1, 1.5, 0.5))
            >>> s.to_dict()["gains"]
            ['1', '3/2', '1/2']
            >>> NetSpec.from_dict(s.to_dict()) == s
            True
        """
        return {"depth": self.depth, "widths": list(self.widths), "input_dim": self.input_dim,
                "outputs": self.outputs, "activation": self.activation, "arch": self.arch,
                "gains": None if self.gains is None else [str(g) for g in self.gains],
                "alpha": None if self.alpha is None else str(self.alpha),
                "parameterization": self.parameterization}

    @classmethod
    def from_dict(cls, data: dict) -> "NetSpec":
        """The spec of :meth:`to_dict` (extra keys, e.g. derived ones, are refused with a
        :class:`SpecError` naming them; missing optional keys take their defaults)."""
        if not isinstance(data, dict):
            raise SpecError(f"a network spec must be a JSON object, got {type(data).__name__}")
        fields = ("depth", "widths", "input_dim", "outputs", "activation", "arch", "gains",
                  "alpha", "parameterization")
        extra = sorted(set(data) - set(fields))
        if extra:
            raise SpecError(f"unknown network spec keys {extra} (expected {list(fields)})")
        missing = [k for k in ("depth", "widths", "input_dim") if k not in data]
        if missing:
            raise SpecError(f"network spec lacks {missing}")
        kw = dict(data)
        if not isinstance(kw["widths"], (list, tuple)):
            raise SpecError(f"widths must be a list of integers, got {kw['widths']!r}")
        kw["widths"] = tuple(kw["widths"])
        if kw.get("gains") is not None:
            kw["gains"] = tuple(_as_fraction(g) for g in kw["gains"])
        if kw.get("alpha") is not None:
            kw["alpha"] = _as_fraction(kw["alpha"])
        return cls(**kw)

    # ------------------------------------------------------------------ derived
    @classmethod
    def uniform(cls, depth: int, width: int, input_dim: int, **kwargs) -> "NetSpec":
        """All hidden layers of the same width ``width`` (the usual :math:`K`)."""
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise SpecError(f"width must be a positive integer, got {width!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
            raise SpecError(f"depth must be a positive integer, got {depth!r}")
        check_depth(depth)
        return cls(depth=depth, widths=(width,) * (depth - 1), input_dim=input_dim, **kwargs)

    def reshaped(self, depth: int, width: int) -> "NetSpec":
        """The same family at another depth with uniform hidden width ``width``.

        Per-layer gains do not carry over to another depth: the default gains apply.
        """
        return replace(self, depth=depth, widths=(width,) * (depth - 1), gains=None)

    @cached_property
    def dims(self) -> tuple[int, ...]:
        """:math:`(n_0, n_1, \\dots, n_L) = (d, \\text{widths}, c)`."""
        return (self.input_dim, *self.widths, self.outputs)

    @cached_property
    def layer_dims(self) -> tuple[tuple[int, int], ...]:
        """(fan-in, fan-out) of each weight matrix :math:`W_l`, l = 1..L."""
        d = self.dims
        return tuple(zip(d[:-1], d[1:]))

    def layer_dim(self, l: int) -> tuple[int, int]:
        """(fan-in, fan-out) of :math:`W_l` (1-based), without building the whole list."""
        d = self.dims
        return d[l - 1], d[l]

    @cached_property
    def params(self) -> int:
        """Parameter count :math:`P = \\sum_l n_{l-1} n_l` (no biases)."""
        d = self.dims
        return sum(map(operator.mul, d[:-1], d[1:]))

    @property
    def gain_squares(self) -> tuple[Fraction, ...]:
        """Exact :math:`s_l^2`, l = 1..L."""
        return self._gain_squares

    @cached_property
    def is_uniform(self) -> bool:
        """True when every hidden layer has the same width (gains may differ: whether a closed
        form in the depth applies is :attr:`hidden_repeats`)."""
        return len(set(self.widths)) <= 1

    def layer(self, l: int) -> LayerSpec:
        """:class:`LayerSpec` of :math:`W_l` (1-based), without building the whole list."""
        if not 1 <= l <= self.depth:
            raise IndexError(f"layer {l} of a depth-{self.depth} net (layers are 1..depth)")
        relu = self.activation == "relu"
        block = self.arch == "residual" and 2 <= l <= self.depth - 1
        n_in, n_out = self.layer_dim(l)
        return LayerSpec(fan_in=n_in, fan_out=n_out, gain_square=self._gain_squares[l - 1],
                         block=block,
                         branch_square=self.alpha_square if block else Fraction(1),
                         relu_in=relu and l >= 2, relu_out=relu and l < self.depth)

    @cached_property
    def layers(self) -> tuple[LayerSpec, ...]:
        r"""One :class:`LayerSpec` per weight matrix, :math:`W_1, \dots, W_L`."""
        return tuple(self.layer(l) for l in range(1, self.depth + 1))

    @cached_property
    def hidden_repeats(self) -> int | None:
        r"""How many times the one hidden layer repeats, :math:`m = L - 2`, when the hidden
        layers :math:`W_2, \dots, W_{L-1}` are all the same layer (equal widths, equal gains,
        equal branch scales: :class:`LayerSpec` equality); None otherwise and for depth 1.

        This is THE rule for when a closed form in the depth applies (the layers are then
        (first, hidden × m, last); m = 0 at depth 2). Every sum over layers that uses the
        closed form, numeric or symbolic, asks this property.

        Cost O(L) without building :attr:`layers`: a hidden layer's flags (block, branch scale,
        activations) are the same for every l in 2..L-1 by construction (:meth:`layer`), so
        the hidden LayerSpecs compare equal exactly when their widths and gains do.
        """
        if self.depth < 2:
            return None
        w, g = self.widths, self._gain_squares[1:-1]
        if w.count(w[0]) != len(w) or (g and g.count(g[0]) != len(g)):
            return None
        return self.depth - 2

    @property
    def width(self) -> int | None:
        """The common hidden width :math:`K`, or None for a non-uniform profile or depth 1."""
        return self.widths[0] if (self.widths and self.is_uniform) else None

    @property
    def branch_scale(self):
        """Residual branch scale :math:`\\alpha` as a float (None for fully connected nets);
        the exact square is :attr:`alpha_square`."""
        if self.arch != "residual":
            return None
        if self.alpha is not None:
            return float(self.alpha)
        return 1.0 / math.sqrt(self.depth - 2)

    @property
    def alpha_square(self) -> Fraction | None:
        """Exact :math:`\\alpha^2` (default :math:`1/(L-2)`); None for fully connected nets."""
        if self.arch != "residual":
            return None
        if self.alpha is None:
            return Fraction(1, self.depth - 2)
        a = _as_fraction(self.alpha)
        return a * a

    def describe(self) -> str:
        """One line stating the conventions in force."""
        gains = ",".join(str(g) for g in self.gain_squares)
        res = ""
        if self.arch == "residual":
            res = f", residual blocks 2..{self.depth - 1} with alpha^2={self.alpha_square}"
        return (
            f"{self.arch} {self.activation} net, depth L={self.depth} weight matrices, "
            f"dims {'-'.join(map(str, self.dims))}{res}; standard fan-in init "
            f"W_l ~ N(0, s_l^2/n_(l-1)) with s_l^2=[{gains}]; no biases; "
            f"loss 1/2||f(x)-y||^2"
        )
