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

from theory import NetSpec, SpecError
from theory import width_for_budget as _theory_width

from ._errors import ExperimentError


def _spec(depth, width, input_dim, outputs, activation, arch) -> NetSpec:
    return NetSpec.uniform(depth, width, input_dim, outputs=outputs, activation=activation,
                           arch=arch)


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
    out = {}
    try:
        if cfg.width_family_widths:
            out["width"] = [_spec(cfg.width_family_depth, K, input_dim, outputs, **kw)
                            for K in cfg.width_family_widths]
        if cfg.depth_family_depths:
            out["depth"] = [_spec(L, cfg.depth_family_width, input_dim, outputs, **kw)
                            for L in cfg.depth_family_depths]
    except SpecError as err:
        raise ExperimentError(f"families: {err}") from None
    out["budget"] = budget_family(cfg.budget, cfg.depths, input_dim=input_dim, outputs=outputs,
                                  tolerance=cfg.budget_tolerance, **kw)
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


__all__ = ["spec_for_budget", "budget_family", "family_specs", "union_of", "arch_id",
           "describe_family", "FAMILIES"]
