r"""Parameter-budget families: trade width against depth at a fixed parameter count.

For a budget :math:`P`, a depth :math:`L` (weight matrices), input dim :math:`d` and output dim
:math:`c`, the hidden width :math:`K` of a uniform net solves

.. math::

    P(K) = dK + (L-2)K^2 + Kc \quad (L \ge 2), \qquad P = dc \quad (L = 1),

with :math:`K` from :func:`theory.width_for_budget` (the integer width whose count is closest to
:math:`P`); a family member is accepted only when :math:`|P(K) - P|/P \le` the tolerance (5% by
default). The count itself comes from :attr:`theory.NetSpec.params`.

Example:
    >>> fam = budget_family(10000, (2, 4, 8), input_dim=40, outputs=10)
    >>> [(s.depth, s.width, s.params) for s in fam]
    [(2, 200, 10000), (4, 59, 9912), (8, 37, 10064)]
"""

from __future__ import annotations

import math

from theory import NetSpec, SpecError
from theory import width_for_budget as _theory_width

from ._errors import ExperimentError


def _spec(depth, width, input_dim, outputs, activation, arch, mup_base: int = 0) -> NetSpec:
    spec = NetSpec.uniform(depth, width, input_dim, outputs=outputs, activation=activation,
                           arch=arch)
    if mup_base and depth >= 2:
        spec = mup_spec(spec, mup_base)
    return spec


def mup_spec(spec: NetSpec, base_width: int) -> NetSpec:
    r"""The net's μP initialisation (Yang et al., Tensor Programs V, table 3, with fan-in
    init): every layer keeps its standard gain except the output layer, whose variance
    :math:`s_L^2/K` becomes :math:`s_L^2 K_0/K^2` — gain :math:`s_L\sqrt{K_0/K}` — so that
    at the base width :math:`K_0` μP and the standard parametrisation coincide. The
    learning-rate side of μP is :func:`mup_lr_multipliers`."""
    k = spec.widths[-1]
    gains = [math.sqrt(float(g2)) for g2 in spec.gain_squares]
    gains[-1] *= math.sqrt(base_width / k)
    return NetSpec.uniform(spec.depth, spec.width, spec.input_dim, outputs=spec.outputs,
                           activation=spec.activation, arch=spec.arch,
                           gains=tuple(gains))


def mup_lr_multipliers(spec: NetSpec, optimizer: str, base_width: int) -> tuple[float, ...]:
    r"""Per-layer learning-rate multipliers of μP relative to the base width :math:`K_0`
    (Tensor Programs V, table 3; :math:`K` the hidden width):

    ========== ================= ==================== ====================
    optimizer  input :math:`W_1`  hidden :math:`W_l`   output :math:`W_L`
    ========== ================= ==================== ====================
    sgd, momentum :math:`K/K_0`   1                    :math:`K_0/K`
    adam       1                  :math:`K_0/K`        :math:`K_0/K`
    ========== ================= ==================== ====================

    Example:
        >>> s = NetSpec.uniform(3, 96, 40, outputs=10, activation="relu")
        >>> mup_lr_multipliers(s, "sgd", 48), mup_lr_multipliers(s, "adam", 48)
        ((2.0, 1.0, 0.5), (1.0, 0.5, 0.5))
    """
    r = spec.widths[-1] / base_width
    if optimizer == "adam":
        return (1.0,) + (1.0 / r,) * (spec.depth - 1)
    return (r,) + (1.0,) * (spec.depth - 2) + (1.0 / r,)


def mup_base_width(cfg) -> int:
    """The width at which μP equals the standard parametrisation: ``train.mup_base_width``,
    else the depth family's width, else the smallest width of the width family."""
    return (cfg.mup_base_width or cfg.depth_family_width
            or min(cfg.width_family_widths or (64,)))


def spec_for_budget(budget: int, depth: int, *, input_dim: int, outputs: int,
                     activation: str = "relu", arch: str = "fc",
                     tolerance: float = 0.05) -> NetSpec:
    """The uniform-width :class:`theory.NetSpec` of ``depth`` whose parameter count is closest
    to ``budget``; :class:`ExperimentError` if it misses by more than ``tolerance``."""
    try:
        if depth == 1:  # the linear model W_1 x: no width to choose
            spec = NetSpec(depth=1, widths=(), input_dim=input_dim, outputs=outputs,
                           activation=activation, arch=arch)
        else:
            spec = _spec(depth, _theory_width(budget, input_dim, outputs, depth), input_dim,
                         outputs, activation, arch)
    except SpecError as err:
        raise ExperimentError(f"depth {depth}: {err}") from None
    if abs(spec.params - budget) > tolerance * budget:
        raise ExperimentError(
            f"budget {budget} cannot be met within {tolerance:.0%} at depth {depth} "
            f"(closest: width {spec.width or '-'}, {spec.params} params); "
            f"change --budget or --depths")
    return spec


def budget_family(budget: int, depths, *, input_dim: int, outputs: int,
                  activation: str = "relu", arch: str = "fc",
                  tolerance: float = 0.05) -> list[NetSpec]:
    """One :func:`spec_for_budget` net per depth, in the order given."""
    return [spec_for_budget(budget, L, input_dim=input_dim, outputs=outputs,
                             activation=activation, arch=arch, tolerance=tolerance)
            for L in depths]


FAMILIES = ("width", "depth", "budget")


def family_specs(cfg, *, input_dim: int, outputs: int) -> dict[str, list[NetSpec]]:
    """The families of a workload config (:class:`experiments.SweepConfig`):

    * ``width``: depth ``families.width_depth``, every width in ``families.widths``;
    * ``depth``: width ``families.depth_width``, every depth in ``families.depths``;
    * ``budget``: ``model.depths`` at the parameter budget ``model.budget``
      (:func:`budget_family`).

    Families that are not configured are absent; nets shared by two families (same depth and
    width) are the same :class:`theory.NetSpec`, trained once.

    Example:
        >>> from experiments import SweepConfig
        >>> cfg = SweepConfig(depths=(3, 4), budget=3000, width_family_depth=3,
        ...                   width_family_widths=(16, 32))
        >>> fams = family_specs(cfg, input_dim=40, outputs=10)
        >>> {f: [arch_id(s) for s in v] for f, v in fams.items()}
        {'width': ['fc-relu-L3-K16', 'fc-relu-L3-K32'], 'budget': ['fc-relu-L3-K35', 'fc-relu-L4-K28']}
    """
    kw = dict(activation=cfg.activation, arch=cfg.arch)
    base = mup_base_width(cfg) if cfg.parametrisation == "mup" else 0
    out = {}
    try:
        if cfg.width_family_widths:
            out["width"] = [_spec(cfg.width_family_depth, K, input_dim, outputs, **kw,
                                  mup_base=base) for K in cfg.width_family_widths]
        if cfg.depth_family_depths:
            out["depth"] = [_spec(L, cfg.depth_family_width, input_dim, outputs, **kw,
                                  mup_base=base) for L in cfg.depth_family_depths]
    except SpecError as err:
        raise ExperimentError(f"families: {err}") from None
    if cfg.budget:
        fam = budget_family(cfg.budget, cfg.depths, input_dim=input_dim, outputs=outputs,
                            tolerance=cfg.budget_tolerance, **kw)
        out["budget"] = [mup_spec(s, base) if base and s.depth >= 2 else s for s in fam]
    if not out:
        raise ExperimentError("no family to train: set model.budget > 0 or a width/depth "
                              "family")
    return out


def union_of(families: dict) -> list[NetSpec]:
    """Every distinct net of the families, in first-seen order."""
    seen = {}
    for specs in families.values():
        for s in specs:
            seen.setdefault(arch_id(s), s)
    return list(seen.values())


def arch_id(spec: NetSpec) -> str:
    """Short stable name, e.g. ``fc-relu-L4-K60``."""
    return f"{spec.arch}-{spec.activation}-L{spec.depth}-K{spec.width or 0}"


def describe_family(specs, budget: int) -> str:
    """The printed family table: depth, width, params and the deviation from the budget."""
    lines = [f"parameter-budget family, budget P = {budget}:"]
    for s in specs:
        dev = (s.params - budget) / budget
        lines.append(f"  {arch_id(s):<22} depth {s.depth:>2}  width {s.width or 0:>5}  "
                     f"params {s.params:>8}  ({dev:+.1%} of budget)")
    return "\n".join(lines)


__all__ = ["mup_spec", "mup_lr_multipliers", "mup_base_width", "spec_for_budget", "budget_family", "family_specs", "union_of", "arch_id",
           "describe_family", "FAMILIES"]
