"""Sweep configuration: a frozen dataclass read from TOML (``tomllib``) plus CLI overrides.

A config file has four tables; every key is optional and defaults to the quick study
(``experiments/configs/quick.toml`` spells the defaults out). Unknown tables or keys and values
of the wrong type are rejected with a one-line :class:`ExperimentError`.

.. code-block:: toml

    [data]      # name = "mnist1d" | "gaussian" | a path (.npz, MNIST IDX, CIFAR-10 batches)
    [model]     # arch, activation, depths, budget, budget_tolerance
    [train]     # loss, batch_sizes, lrs, seeds, momentum, max_steps, target_metric, target, ...
    [analysis]  # epsilon, delta, bootstrap
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


@dataclass(frozen=True)
class SweepConfig:
    """Everything that decides a sweep's results (the workload and the study grid).

    Attributes are grouped by TOML table (``data.*``, ``model.*``, ``train.*``,
    ``analysis.*``); see ``experiments/configs/quick.toml`` for each one's meaning.
    """

    # [data]
    data: str = "mnist1d"
    n: int = 2000
    data_seed: int = 42
    init_samples: int = 16
    # [model]
    arch: str = "fc"
    activation: str = "relu"
    depths: tuple[int, ...] = (2, 4, 8)
    budget: int = 10000
    budget_tolerance: float = 0.05
    # [train]
    loss: str = "auto"
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    lrs: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
    lr_scaling: str = "sqrt"
    lr_reference_batch: int = 64
    seeds: int = 2
    momentum: float = 0.0
    max_steps: int = 20000
    target_metric: str = "auto"
    target: float = 0.8  # 0 means: the metric's default (see ``resolved_target``)
    eval_growth: float = 1.1
    stop_factor: float = 1.25
    dtype: str = "float32"
    # [analysis]
    epsilon: float = 1.0
    delta: float = 1.0
    bootstrap: int = 1000

    def __post_init__(self):
        _validate(self)

    def replace(self, **changes) -> "SweepConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def lrs_for(self, batch_size: int) -> tuple[float, ...]:
        """The learning-rate grid tried at ``batch_size``: ``lrs`` × (m / lr_reference_batch)^p
        with p = 0 (``none``), 1/2 (``sqrt``) or 1 (``linear``)."""
        p = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}[self.lr_scaling]
        f = (batch_size / self.lr_reference_batch) ** p
        return tuple(float(f"{lr * f:.6g}") for lr in self.lrs)

    def to_toml(self) -> str:
        """The config as a TOML file that :func:`load_config` reads back unchanged."""
        lines = []
        for table, names in SECTIONS.items():
            lines.append(f"[{table}]")
            for key, attr in names.items():
                lines.append(f"{key} = {_toml_value(getattr(self, attr))}")
            lines.append("")
        return "\n".join(lines)


# TOML table -> {toml key: dataclass attribute}
SECTIONS = {
    "data": {"name": "data", "n": "n", "seed": "data_seed", "init_samples": "init_samples"},
    "model": {"arch": "arch", "activation": "activation", "depths": "depths",
              "budget": "budget", "budget_tolerance": "budget_tolerance"},
    "train": {"loss": "loss", "batch_sizes": "batch_sizes", "lrs": "lrs",
              "lr_scaling": "lr_scaling", "lr_reference_batch": "lr_reference_batch",
              "seeds": "seeds",
              "momentum": "momentum", "max_steps": "max_steps",
              "target_metric": "target_metric", "target": "target",
              "eval_growth": "eval_growth", "stop_factor": "stop_factor", "dtype": "dtype"},
    "analysis": {"epsilon": "epsilon", "delta": "delta", "bootstrap": "bootstrap"},
}

_TYPES = {f.name: f.type for f in dataclasses.fields(SweepConfig)}


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

    if c.arch not in ("fc", "residual"):
        bad(f"model.arch must be 'fc' or 'residual', got {c.arch!r}")
    if c.activation not in ("linear", "relu"):
        bad(f"model.activation must be 'linear' or 'relu', got {c.activation!r}")
    if c.loss not in LOSSES:
        bad(f"train.loss must be one of {', '.join(LOSSES)}, got {c.loss!r}")
    if c.target_metric not in TARGET_METRICS:
        bad(f"train.target_metric must be one of {', '.join(TARGET_METRICS)}, "
            f"got {c.target_metric!r}")
    if c.dtype not in DTYPES:
        bad(f"train.dtype must be one of {', '.join(DTYPES)}, got {c.dtype!r}")
    if c.n < 0:
        bad(f"data.n must be >= 0 (0 = all rows of a file), got {c.n}")
    if c.init_samples < 2:
        bad(f"data.init_samples must be >= 2, got {c.init_samples}")
    if c.lr_scaling not in LR_SCALINGS:
        bad(f"train.lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {c.lr_scaling!r}")
    if c.lr_reference_batch <= 0:
        bad(f"train.lr_reference_batch must be positive, got {c.lr_reference_batch}")
    if any(d <= 0 for d in c.depths) or len(set(c.depths)) != len(c.depths):
        bad(f"model.depths must be distinct positive integers, got {list(c.depths)}")
    if c.arch == "residual" and min(c.depths) < 3:
        bad("model.arch 'residual' needs every depth >= 3 (depth counts weight matrices)")
    if c.budget <= 0:
        bad(f"model.budget must be positive, got {c.budget}")
    if not 0 < c.budget_tolerance < 1:
        bad(f"model.budget_tolerance must be in (0, 1), got {c.budget_tolerance}")
    if any(m <= 0 for m in c.batch_sizes) or len(set(c.batch_sizes)) != len(c.batch_sizes):
        bad(f"train.batch_sizes must be distinct positive integers, got {list(c.batch_sizes)}")
    if any(not (math.isfinite(lr) and lr > 0) for lr in c.lrs) or len(set(c.lrs)) != len(c.lrs):
        bad(f"train.lrs must be distinct positive numbers, got {list(c.lrs)}")
    if c.seeds <= 0:
        bad(f"train.seeds (a count) must be positive, got {c.seeds}")
    if not 0 <= c.momentum < 1:
        bad(f"train.momentum must be in [0, 1), got {c.momentum}")
    if c.max_steps <= 0:
        bad(f"train.max_steps must be positive, got {c.max_steps}")
    if not math.isfinite(c.target) or c.target < 0:
        bad(f"train.target must be a finite number >= 0 (0 = default), got {c.target}")
    if c.target_metric == "accuracy" and c.target > 1:
        bad(f"an accuracy target must be in (0, 1], got {c.target}")
    if not c.eval_growth > 1:
        bad(f"train.eval_growth must be > 1, got {c.eval_growth}")
    if not c.stop_factor >= 1:
        bad(f"train.stop_factor must be >= 1, got {c.stop_factor}")
    if not c.epsilon > 0:
        bad(f"analysis.epsilon must be > 0, got {c.epsilon}")
    if not c.delta > 0:
        bad(f"analysis.delta must be > 0, got {c.delta}")
    if c.bootstrap < 0:
        bad(f"analysis.bootstrap must be >= 0, got {c.bootstrap}")


def config_from_dict(raw: dict, source: str = "config") -> SweepConfig:
    """Build a :class:`SweepConfig` from parsed TOML tables, rejecting unknown keys."""
    values = {}
    for table, content in raw.items():
        if table not in SECTIONS:
            raise ExperimentError(f"{source}: unknown table [{table}] "
                                  f"(known: {', '.join(SECTIONS)})")
        if not isinstance(content, dict):
            raise ExperimentError(f"{source}: {table} must be a table")
        for key, value in content.items():
            if key not in SECTIONS[table]:
                raise ExperimentError(f"{source}: unknown key {table}.{key} "
                                      f"(known: {', '.join(SECTIONS[table])})")
            attr = SECTIONS[table][key]
            values[attr] = _check_type(attr, value, f"{source}: {table}.{key}")
    return SweepConfig(**values)


def load_config(path: str | None) -> SweepConfig:
    """Read a TOML config; ``None`` gives the quick-study defaults."""
    if path is None:
        return SweepConfig()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML ({err})") from None
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read ({err.strerror})") from None
    return config_from_dict(raw, source=path)


def resolved_target(metric: str, target: float) -> float:
    """The target value in force: ``target`` if set, else the metric's documented default
    (accuracy 0.9 of the training set; relative_loss 0.1: the training loss at most a tenth
    of the best constant predictor's, see :func:`experiments._train.constant_predictor_loss`)."""
    if target > 0:
        return target
    if metric == "accuracy":
        return 0.9
    if metric == "relative_loss":
        return 0.1
    raise ExperimentError("train.target_metric 'loss' needs an explicit train.target > 0")


__all__ = ["SweepConfig", "load_config", "config_from_dict", "resolved_target", "SECTIONS"]
