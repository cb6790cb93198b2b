"""Sweep configuration: a frozen dataclass read from TOML (``tomllib``) plus CLI overrides.

A config file has up to six tables; every key is optional and defaults to the quick study
(``experiments/configs/quick.toml`` spells the defaults out). Unknown tables or keys and values
of the wrong type are rejected with a one-line :class:`ExperimentError`.

.. code-block:: toml

    [suite]     # data, losses, archs: lists; one workload per combination (optional)
    [data]      # name = "mnist1d" | "digits" | "gaussian" | a path (.npz, MNIST IDX, CIFAR-10)
    [model]     # arch, activation, depths + budget (the parameter-budget family), tolerance
    [families]  # width_depth + widths (width family), depth_width + depths (depth family)
    [train]     # loss, batch_sizes, lrs, lr_extend, seeds, max_steps, target_metric, target...
    [analysis]  # epsilon, delta, bootstrap, level

Vocabulary (Shallue et al.): a *workload* is (data set, loss, architecture family, optimiser);
a *study* is every trial of one network at one batch size; a *trial* is one (lr, seed) run. A
config with a ``[suite]`` table describes several workloads (the C2 study); without one, a
single workload.

Schema and validation only: how the ``train.lr*`` and ``step_cap_factor`` keys drive the
learning-rate search is :mod:`experiments._lr_search`; what a config resolves to (data,
loss, target, nets) is :mod:`experiments._plan`.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass

from ._errors import ExperimentError

LOSSES = ("auto", "cross_entropy", "squared")
TARGET_METRICS = ("auto", "accuracy", "loss", "relative_loss")
DTYPES = ("float32", "float64")
LR_SCALINGS = ("none", "sqrt", "linear")
LR_CENTERS = ("scaled", "previous_best")
OPTIMIZERS = ("sgd", "momentum", "adam")
MAX_SEEDS = 1000          # a study holds every (lr x seed) trial in memory at once
MAX_BUDGET = 10 ** 9      # parameters
MAX_WIDTH = 100_000
PARAMETRISATIONS = ("standard", "mup")
TARGET_PREFIXES = ("accuracy", "loss")


@dataclass(frozen=True)
class SweepConfig:
    """Everything that decides a sweep's results (the workload and the study grid).

    Attributes are grouped by TOML table (``data.*``, ``model.*``, ``train.*``,
    ``analysis.*``); see ``experiments/configs/quick.toml`` for each one's meaning.
    """

    # [suite] (empty: one workload, the [data]/[model]/[train] values below)
    suite_data: tuple[str, ...] = ()
    suite_losses: tuple[str, ...] = ()
    suite_archs: tuple[str, ...] = ()
    suite_exclude: tuple[str, ...] = ()
    suite_optimizers: tuple[str, ...] = ()
    suite_parametrisations: tuple[str, ...] = ()
    # [suite."DATA"] / [suite."DATA/LOSS"] sub-tables: ((selector, attribute, value), ...)
    suite_overrides: tuple = ()
    # [data]
    data: str = "mnist1d"
    n: int = 2000
    data_seed: int = 42
    init_samples: int = 16
    # [model]
    arch: str = "fc"
    activation: str = "relu"
    depths: tuple[int, ...] = (2, 4, 8)
    budget: int = 10000  # 0: no parameter-budget family
    budget_tolerance: float = 0.05
    # [families] (0: family absent). The parameter-budget family is [model] depths + budget.
    width_family_depth: int = 0
    width_family_widths: tuple[int, ...] = ()
    depth_family_width: int = 0
    depth_family_depths: tuple[int, ...] = ()
    # [train]
    loss: str = "auto"
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    lrs: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
    lr_scaling: str = "sqrt"
    lr_reference_batch: int = 64
    lr_center: str = "scaled"
    lr_extend: int = 0
    seeds: int = 2
    seed_start: int = 0  # seeds seed_start .. seed_start + seeds - 1 (a repeat uses others)
    lr_jitter: bool = False  # each seed's lr grid shifted by its own fraction of a grid step
    optimizer: str = "sgd"
    parametrisation: str = "standard"
    mup_base_width: int = 0  # muP: the width at which muP equals the standard param.
    momentum: float = 0.0
    max_steps: int = 20000
    target_metric: str = "auto"
    target: float = 0.8  # 0 means: the metric's default (see ``resolved_target``)
    extra_targets: tuple[str, ...] = ()  # "accuracy:0.6", "loss:1.1": read off the curves
    eval_growth: float = 1.1
    stop_factor: float = 1.25
    step_cap_factor: float = 0.0  # 0: off; else a study stops at this x the last best steps
    dtype: str = "float32"
    # [analysis]
    epsilon: float = 1.0
    delta: float = 1.0
    bootstrap: int = 1000
    level: float = 0.9

    def __post_init__(self):
        _validate(self)

    def replace(self, **changes) -> "SweepConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def workloads(self) -> list[tuple[str, "SweepConfig"]]:
        """``[(name, config)]``: one per (data, loss, arch) of ``[suite]`` except those named
        in ``suite.exclude`` (``"DATA"``, ``"DATA/LOSS"`` or ``"DATA/LOSS/ARCH"``); values in a
        ``[suite."DATA"]`` or ``[suite."DATA/LOSS"]`` table override the defaults for those
        workloads. A config without a suite is one workload named ``""`` (the output folder
        itself).

        Example:
            >>> c = SweepConfig(suite_data=("mnist1d",), suite_losses=("cross_entropy",
            ...                 "squared"), suite_archs=("residual",), depths=(3, 4))
            >>> [name for name, _ in c.workloads()]
            ['mnist1d-cross_entropy-residual', 'mnist1d-squared-residual']
        """
        if not self.is_suite:
            return [("", self)]
        out = []
        for data in self.suite_data or (self.data,):
            for loss in self.suite_losses or (self.loss,):
                for arch in self.suite_archs or (self.arch,):
                    for opt in self.suite_optimizers or (self.optimizer,):
                        for par in self.suite_parametrisations or (self.parametrisation,):
                            d = data_label(data)
                            name = f"{d}-{loss}-{arch}"
                            if self.suite_optimizers or self.suite_parametrisations:
                                name += f"-{opt}-{par}"
                            tokens = {d, loss, arch, opt, par}
                            # a selector matches when each of its '/' parts names this
                            # workload's data, loss, arch, optimizer or parametrisation
                            if any(set(e.split("/")) <= tokens for e in self.suite_exclude):
                                continue
                            changes = {a: v for sel, a, v in self.suite_overrides
                                       if set(sel.split("/")) <= tokens}
                            out.append((name, self.replace(
                                suite_data=(), suite_losses=(), suite_archs=(),
                                suite_optimizers=(), suite_parametrisations=(),
                                suite_overrides=(), suite_exclude=(), data=data, loss=loss,
                                arch=arch, optimizer=opt, parametrisation=par, **changes)))
        return out

    @property
    def is_suite(self) -> bool:
        return bool(self.suite_data or self.suite_losses or self.suite_archs
                    or self.suite_optimizers or self.suite_parametrisations)

    @property
    def effective_momentum(self) -> float:
        """Heavy-ball momentum in force: ``momentum`` for ``sgd`` (0 = plain SGD), ``momentum``
        or 0.9 when it is 0 for ``momentum``, unused (0) for ``adam``."""
        if self.optimizer == "momentum":
            return self.momentum or 0.9
        return self.momentum if self.optimizer == "sgd" else 0.0

    def targets(self) -> list[tuple[str, float]]:
        """Every target the analysis reads off the training curves: the primary one
        (``target_metric``, ``target``; trials stop there) then ``extra_targets``."""
        out = []
        for t in self.extra_targets:
            metric, _, value = t.partition(":")
            out.append((metric, float(value)))
        return out

    def to_toml(self) -> str:
        """The config as a TOML file that :func:`load_config` reads back unchanged."""
        lines = []
        for table, names in SECTIONS.items():
            lines.append(f"[{table}]")
            for key, attr in names.items():
                value = getattr(self, attr)
                if value == ():  # an absent list (no suite / no family): the default
                    continue
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
            if table == "suite":
                for sel in dict.fromkeys(sel for sel, _, _ in self.suite_overrides):
                    lines.append(f'[suite."{sel}"]')
                    for s_, attr, value in self.suite_overrides:
                        if s_ == sel:
                            lines.append(f'"{_ATTR_KEY[attr]}" = {_toml_value(value)}')
                    lines.append("")
        return "\n".join(lines)


def data_label(name: str) -> str:
    """A folder-safe name for a data set: ``mnist1d``, or a file's base name without suffix."""
    import os

    base = os.path.basename(os.path.normpath(name))
    stem = base.split(".")[0] or "data"
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in stem)


# TOML table -> {toml key: dataclass attribute}
SECTIONS = {
    "suite": {"data": "suite_data", "losses": "suite_losses", "archs": "suite_archs",
              "optimizers": "suite_optimizers", "parametrisations": "suite_parametrisations",
              "exclude": "suite_exclude"},
    "data": {"name": "data", "n": "n", "seed": "data_seed", "init_samples": "init_samples"},
    "model": {"arch": "arch", "activation": "activation", "depths": "depths",
              "budget": "budget", "budget_tolerance": "budget_tolerance"},
    "families": {"width_depth": "width_family_depth", "widths": "width_family_widths",
                 "depth_width": "depth_family_width", "depths": "depth_family_depths"},
    "train": {"loss": "loss", "batch_sizes": "batch_sizes", "lrs": "lrs",
              "lr_scaling": "lr_scaling", "lr_reference_batch": "lr_reference_batch",
              "lr_center": "lr_center", "lr_extend": "lr_extend", "seeds": "seeds",
              "seed_start": "seed_start", "lr_jitter": "lr_jitter", "optimizer": "optimizer",
              "parametrisation": "parametrisation", "mup_base_width": "mup_base_width",
              "momentum": "momentum", "extra_targets": "extra_targets", "max_steps": "max_steps",
              "target_metric": "target_metric", "target": "target",
              "eval_growth": "eval_growth", "stop_factor": "stop_factor",
              "step_cap_factor": "step_cap_factor", "dtype": "dtype"},
    "analysis": {"epsilon": "epsilon", "delta": "delta", "bootstrap": "bootstrap",
                 "level": "level"},
}

_TYPES = {f.name: f.type for f in dataclasses.fields(SweepConfig)}
# dataclass attribute -> "table.key" (the spelling of a [suite."DATA"] override)
_ATTR_KEY = {attr: f"{t}.{k}" for t, names in SECTIONS.items() if t != "suite"
             for k, attr in names.items()}


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _check_type(attr: str, value, where: str):
    """Coerce a TOML value to the field's type, or raise a one-line error naming it."""
    kind = _TYPES[attr]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ExperimentError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ExperimentError(f"{where}: expected a string, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExperimentError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExperimentError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not value or any(not isinstance(v, str)
                                                           for v in value):
            raise ExperimentError(f"{where}: expected a non-empty list of strings, got {value!r}")
        return tuple(value)
    if kind == "tuple[int, ...]":
        if not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise ExperimentError(f"{where}: expected a non-empty list of integers, got {value!r}")
        return tuple(value)
    if kind == "tuple[float, ...]":
        if not isinstance(value, list) or not value or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise ExperimentError(f"{where}: expected a non-empty list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    raise AssertionError(kind)  # pragma: no cover


def _validate(c: SweepConfig):
    def bad(msg):
        raise ExperimentError(msg)

    for a in c.suite_archs or (c.arch,):
        if a not in ("fc", "residual"):
            bad(f"model.arch must be 'fc' or 'residual', got {a!r}")
    for lo in c.suite_losses:
        if lo not in LOSSES:
            bad(f"suite.losses: each must be one of {', '.join(LOSSES)}, got {lo!r}")
    for o in c.suite_optimizers or (c.optimizer,):
        if o not in OPTIMIZERS:
            bad(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {o!r}")
    for par in c.suite_parametrisations or (c.parametrisation,):
        if par not in PARAMETRISATIONS:
            bad(f"train.parametrisation must be one of {', '.join(PARAMETRISATIONS)}, "
                f"got {par!r}")
    if c.mup_base_width < 0:
        bad(f"train.mup_base_width must be >= 0 (0: the depth family's width), "
            f"got {c.mup_base_width}")
    if c.seed_start < 0:
        bad(f"train.seed_start must be >= 0, got {c.seed_start}")
    for t in c.extra_targets:
        metric, sep, value = t.partition(":")
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not sep or metric not in TARGET_PREFIXES or not math.isfinite(v) or v <= 0 or \
                (metric == "accuracy" and v > 1):
            bad(f"train.extra_targets: each must be 'accuracy:A' (0 < A <= 1) or 'loss:V' "
                f"(V > 0), got {t!r}")
    for name in ("suite_data", "suite_losses", "suite_archs", "suite_optimizers",
                 "suite_parametrisations"):
        v = getattr(c, name)
        if len(set(v)) != len(v):
            bad(f"suite.{name[6:]} lists a value twice: {list(v)}")
    archs = c.suite_archs or (c.arch,)
    if c.is_suite and not c.workloads():
        bad("suite.exclude leaves no workload to run")
    if c.activation not in ("linear", "relu"):
        bad(f"model.activation must be 'linear' or 'relu', got {c.activation!r}")
    for attr, choices in (("loss", LOSSES), ("target_metric", TARGET_METRICS),
                          ("dtype", DTYPES), ("lr_scaling", LR_SCALINGS),
                          ("lr_center", LR_CENTERS)):
        if getattr(c, attr) not in choices:
            bad(f"train.{attr} must be one of {', '.join(choices)}, "
                f"got {getattr(c, attr)!r}")
    if c.n < 0:
        bad(f"data.n must be >= 0 (0 = all rows of a file), got {c.n}")
    if c.init_samples < 2:
        bad(f"data.init_samples must be >= 2, got {c.init_samples}")
    if c.lr_reference_batch <= 0:
        bad(f"train.lr_reference_batch must be positive, got {c.lr_reference_batch}")
    if any(d <= 0 for d in c.depths) or len(set(c.depths)) != len(c.depths):
        bad(f"model.depths must be distinct positive integers, got {list(c.depths)}")
    family_depths = list(c.depths) + list(c.depth_family_depths) + (
        [c.width_family_depth] if c.width_family_depth else [])
    if "residual" in archs and min(family_depths) < 3:
        bad("model.arch 'residual' needs every depth >= 3 (depth counts weight matrices)")
    for fam, anchor, members, what in (
            ("width", c.width_family_depth, c.width_family_widths, "widths"),
            ("depth", c.depth_family_width, c.depth_family_depths, "depths")):
        if anchor < 0 or (anchor == 0) != (not members):
            bad(f"families: the {fam} family needs both {fam}_{'depth' if fam == 'width' else 'width'}"
                f" > 0 and a list of {what} (or neither)")
        if members and (len(members) < 2 or len(set(members)) != len(members)
                        or min(members) <= 0):
            bad(f"families.{what}: a {fam} family needs at least 2 distinct positive "
                f"{what}, got {list(members)}")
    if c.lr_extend < 0:
        bad(f"train.lr_extend must be >= 0, got {c.lr_extend}")
    if c.lr_extend or c.lr_center == "previous_best":
        lrs = sorted(c.lrs)
        ratios = [b / a for a, b in zip(lrs, lrs[1:])]
        if len(lrs) < 2 or max(ratios) / min(ratios) > 1.02:
            bad(f"train.lr_extend / lr_center 'previous_best' need a geometric lr grid "
                f"(constant ratio within 2%, >= 2 values), got {list(c.lrs)}")
    if not 0.5 <= c.level < 1:
        bad(f"analysis.level must be in [0.5, 1), got {c.level}")
    if c.budget < 0:
        bad(f"model.budget must be positive (0: no budget family), got {c.budget}")
    if not 0 < c.budget_tolerance < 1:
        bad(f"model.budget_tolerance must be in (0, 1), got {c.budget_tolerance}")
    if any(m <= 0 for m in c.batch_sizes) or len(set(c.batch_sizes)) != len(c.batch_sizes):
        bad(f"train.batch_sizes must be distinct positive integers, got {list(c.batch_sizes)}")
    if any(not (math.isfinite(lr) and lr > 0) for lr in c.lrs) or len(set(c.lrs)) != len(c.lrs):
        bad(f"train.lrs must be distinct positive numbers, got {list(c.lrs)}")
    if not 0 < c.seeds <= MAX_SEEDS:
        bad(f"train.seeds (a count) must be in 1..{MAX_SEEDS}, got {c.seeds}")
    if c.budget > MAX_BUDGET:
        bad(f"model.budget {c.budget} is above {MAX_BUDGET:.0e} parameters: not a net this "
            f"toolkit trains on a CPU or one GPU")
    widths = list(c.width_family_widths) + [c.depth_family_width, c.mup_base_width]
    if max(widths) > MAX_WIDTH:
        bad(f"families: widths above {MAX_WIDTH} are refused, got {max(widths)}")
    if not 0 <= c.momentum < 1:
        bad(f"train.momentum must be in [0, 1), got {c.momentum}")
    if c.max_steps <= 0:
        bad(f"train.max_steps must be positive, got {c.max_steps}")
    if not math.isfinite(c.target) or c.target < 0:
        bad(f"train.target must be a finite number >= 0 (0 = default), got {c.target}")
    if c.target_metric == "accuracy" and c.target > 1:
        bad(f"an accuracy target must be in (0, 1], got {c.target}: no net can reach it")
    if not c.eval_growth > 1:
        bad(f"train.eval_growth must be > 1, got {c.eval_growth}")
    if not c.stop_factor >= 1:
        bad(f"train.stop_factor must be >= 1, got {c.stop_factor}")
    if not (c.step_cap_factor == 0 or c.step_cap_factor >= 1):
        bad(f"train.step_cap_factor must be 0 (off) or >= 1, got {c.step_cap_factor}")
    if not c.epsilon > 0:
        bad(f"analysis.epsilon must be > 0, got {c.epsilon}")
    if not c.delta > 0:
        bad(f"analysis.delta must be > 0, got {c.delta}")
    if c.bootstrap < 0:
        bad(f"analysis.bootstrap must be >= 0, got {c.bootstrap}")


def config_from_dict(raw: dict, source: str = "config") -> SweepConfig:
    """Build a :class:`SweepConfig` from parsed TOML tables, rejecting unknown keys."""
    values = {}
    overrides = []
    for table, content in raw.items():
        if table not in SECTIONS:
            raise ExperimentError(f"{source}: unknown table [{table}] "
                                  f"(known: {', '.join(SECTIONS)})")
        if not isinstance(content, dict):
            raise ExperimentError(f"{source}: {table} must be a table")
        for key, value in content.items():
            if table == "suite" and isinstance(value, dict):  # [suite."DATA[/LOSS]"]
                for dotted, v in value.items():
                    attr = {k: a for a, k in _ATTR_KEY.items()}.get(dotted)
                    if attr is None or attr in ("data", "loss", "arch", "optimizer",
                                                "parametrisation"):
                        raise ExperimentError(
                            f"{source}: suite.{key}: unknown override {dotted!r} (use "
                            f"'table.key', e.g. 'train.target'; data/loss/arch come from "
                            f"[suite])")
                    overrides.append((key, attr,
                                      _check_type(attr, v, f"{source}: suite.{key}.{dotted}")))
                continue
            if key not in SECTIONS[table]:
                raise ExperimentError(f"{source}: unknown key {table}.{key} "
                                      f"(known: {', '.join(SECTIONS[table])})")
            attr = SECTIONS[table][key]
            values[attr] = _check_type(attr, value, f"{source}: {table}.{key}")
    if overrides:
        values["suite_overrides"] = tuple(overrides)
    cfg = SweepConfig(**values)
    cfg.workloads()  # builds (so validates) every workload with its overrides
    return cfg


def read_toml(path: str) -> dict:
    """A TOML file's tables, or one :class:`ExperimentError` line saying why not."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML ({err})") from None
    except UnicodeDecodeError as err:  # TOML is UTF-8 text
        raise ExperimentError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at "
                              f"offset {err.start}); TOML files must be UTF-8") from None
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read ({err.strerror})") from None
    return raw


def load_config(path: str | None) -> SweepConfig:
    """Read a TOML config; ``None`` gives the quick-study defaults."""
    if path is None:
        return SweepConfig()
    return config_from_dict(read_toml(path), source=path)


def resolved_target(metric: str, target: float) -> float:
    """The target value in force: ``target`` if set, else the metric's documented default
    (accuracy 0.9 of the training set; relative_loss 0.1: the training loss at most a tenth
    of the best constant predictor's, see :func:`experiments._train.constant_predictor_loss`)."""
    if metric == "accuracy" and target > 1:  # train.target_metric "auto" resolved to accuracy
        raise ExperimentError(f"an accuracy target must be in (0, 1], got {target}: no net can "
                              f"reach it (the data are a classification task, so the target "
                              f"metric is accuracy)")
    if target > 0:
        return target
    if metric == "accuracy":
        return 0.9
    if metric == "relative_loss":
        return 0.1
    raise ExperimentError("train.target_metric 'loss' needs an explicit train.target > 0")


__all__ = ["SweepConfig", "load_config", "read_toml", "config_from_dict", "resolved_target", "SECTIONS",
           "data_label"]
