"""Records of a sweep: the :class:`Workload` type and a trial's ``status`` values, the trial /
study / workload files and their paths, atomic JSON I/O, the folder lock, the compressed
curves file of a collected results folder, and the old key names of files written before the
names were unified (experiments/README.md, "Vocabulary").

Layout under a workload folder (after batch_science: workload / study / trial)::

    OUT/workload.json                     config, data, loss, targets, family, versions
    OUT/config.toml                       the resolved config
    OUT/archs/<arch_id>.json              B_S at initialisation (Monte Carlo over init seeds)
    OUT/theory/<arch_id>.json             theory's B̄_S (cached by the report)
    OUT/trials/<arch_id>/bs<m>/lr<lr>-seed<s>.json   one trial record each (curves included)
    OUT/trials/<arch_id>/bs<m>/study.json the study: learning rates tried, grid extensions
    OUT/trials-curves.jsonl.gz            (a collected results folder) every trial record
    OUT/timing.json                       wall time of each completed sweep invocation

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``),
so a kill leaves each file complete or absent. Nothing here imports jax.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass

from ._errors import ExperimentError

SCHEMA = 1

# a trial's ``status``
REACHED, UNREACHED, INFEASIBLE = "REACHED", "UNREACHED", "INFEASIBLE"


@dataclass(frozen=True, eq=False)
class Workload:
    """One planned workload (:func:`experiments._plan.plan`): what a config resolves to
    before any training.

    Attributes:
        config: the workload's :class:`~experiments._config.SweepConfig`.
        data: the training set (``theory.data.Dataset``: ``x``, ``y``, ``classes``, ``n``).
        task: ``"classification"`` or ``"regression"``.
        loss: ``"cross_entropy"`` or ``"squared"`` (``"auto"`` resolved).
        metric, target: the primary target (trials stop there).
        families: ``{"width" | "depth" | "budget": [NetSpec, ...]}``.
        specs: every net of the families once (shared nets train once).
        batch_sizes: the batch sizes trained (those ≤ n); ``skipped``: the ones above n.
    """

    config: object
    data: object
    task: str
    loss: str
    metric: str
    target: float
    families: dict
    specs: tuple
    batch_sizes: tuple
    skipped: tuple

    @property
    def studies(self) -> int:
        """Studies (net × batch size) the workload holds."""
        return len(self.specs) * len(self.batch_sizes)

    @property
    def y_loss(self):
        """The training labels the loss reads: classes for cross-entropy, else ``y``."""
        return self.data.classes if self.loss == "cross_entropy" else self.data.y


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (tmp file + fsync + ``os.replace``)."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, fsync, then
    ``os.replace`` — after a kill the file is either complete or absent."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _FolderLock:
    """An exclusive, non-blocking lock on ``folder/name`` (``fcntl.flock``): a second sweep
    on the same folder refuses in one line instead of training everything twice. The
    kernel drops the lock when the process ends, however it ends."""

    def __init__(self, folder: str, name: str = ".lock"):
        self.path = os.path.join(folder, name)
        self.fd = None

    def __enter__(self):
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise ExperimentError(f"{os.path.dirname(self.path)}: another sweep is running on "
                                  f"this folder (wait for it, or use another --out)") from None
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        return False


def _remove_stale_tmp(out: str) -> None:
    """Delete half-written ``.tmp-*`` files a killed run left behind (never a finished file)."""
    for folder, _, files in os.walk(out):
        for f in files:
            if f.startswith(".tmp-"):
                os.unlink(os.path.join(folder, f))


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ExperimentError(f"{path}: unreadable JSON ({err})") from None


def trial_path(out: str, aid: str, batch_size: int, lr: float, seed: int) -> str:
    return os.path.join(out, "trials", aid, f"bs{batch_size}", f"lr{lr:g}-seed{seed}.json")


def study_path(out: str, aid: str, batch_size: int) -> str:
    return os.path.join(out, "trials", aid, f"bs{batch_size}", "study.json")


def load_workload_folder(out: str):
    """(workload record, archs records by arch_id, trial records) of a sweep folder; one-line
    errors for missing pieces."""
    if not os.path.isdir(out):
        raise ExperimentError(f"{out}: no such folder")
    wl_path = os.path.join(out, "workload.json")
    if not os.path.exists(wl_path):
        raise ExperimentError(f"{out}: no workload.json (run python -m experiments.sweep "
                              f"--out {out} first)")
    wl = read_json(wl_path)
    if not isinstance(wl, dict) or not all(k in wl for k in ("config", "data", "loss",
                                                             "target_metric", "target")):
        raise ExperimentError(f"{wl_path}: not a workload record of experiments.sweep")
    archs = {}
    adir = os.path.join(out, "archs")
    if os.path.isdir(adir):
        for f in sorted(os.listdir(adir)):
            if f.endswith(".json") and not f.startswith(".tmp-"):
                a = read_json(os.path.join(adir, f))
                archs[a["arch_id"]] = a
    trials = load_trials(out)
    if not trials:
        raise ExperimentError(f"{out}: no trial records under trials/ (the sweep has not "
                              f"finished any trial yet)")
    return wl, archs, trials


def workload_folders(out: str) -> list[str]:
    """The workload folders of a suite folder (those with a ``workload.json``), or ``[out]``."""
    if os.path.exists(os.path.join(out, "suite.json")):
        suite = read_json(os.path.join(out, "suite.json"))
        return [os.path.join(out, w) for w in suite["workloads"]
                if os.path.exists(os.path.join(out, w, "workload.json"))]
    return [out]


def init_record(rec: dict) -> dict:
    """An ``archs/<arch_id>.json`` record under the current key names: files written before
    the names were unified say ``B_S_ratio_of_means`` for ``B_bar_S`` and ``B_S_seed`` for
    ``B_S_per_init`` (experiments/README.md, "Vocabulary")."""
    old = {"B_S_ratio_of_means": "B_bar_S", "B_S_seed": "B_S_per_init"}
    out = dict(rec)
    for part in ("training_loss", "squared_loss"):
        if isinstance(rec.get(part), dict):
            out[part] = {old.get(k, k): v for k, v in rec[part].items()}
    return out


def versions() -> dict:
    """Versions of the libraries and the devices a sweep or report ran with."""
    import jax
    import matplotlib
    import numpy as np
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__,
            "optax": optax.__version__, "numpy": np.__version__,
            "matplotlib": matplotlib.__version__, "platform": platform.platform(),
            "devices": [str(d) for d in jax.local_devices()]}


CURVES_FILE = "trials-curves.jsonl.gz"


def load_trials(out: str) -> list[dict]:
    """Every trial record under ``OUT/trials`` (files written atomically, so all complete),
    or, in a collected results folder without trial files, the records in
    ``OUT/trials-curves.jsonl.gz`` (:func:`write_curves`: the same records, curves
    included)."""
    recs = [r for r in _records(out) if isinstance(r, dict) and "lr" in r]
    path = os.path.join(out, CURVES_FILE)
    if not recs and os.path.exists(path):
        import gzip

        try:
            with gzip.open(path, "rt") as f:
                recs = [json.loads(line) for line in f if line.strip()]
        except (OSError, EOFError, json.JSONDecodeError) as err:
            raise ExperimentError(f"{path}: unreadable ({err})") from None
    for r in recs:
        missing = [k for k in TRIAL_KEYS if k not in r]
        if missing:
            raise ExperimentError(f"{out}: a trial record ({r.get('study', '?')}, lr "
                                  f"{r.get('lr')}, seed {r.get('seed')}) lacks "
                                  f"{', '.join(missing)}")
    return recs


TRIAL_KEYS = ("arch_id", "arch", "activation", "depth", "width", "params", "batch_size", "lr",
              "seed", "status", "steps_to_target", "n")


def write_curves(out: str, dest: str) -> int:
    """Write every trial record of ``out`` (training curves and B_S curves included) as
    gzip-compressed JSON lines to ``dest``, sorted by (net, batch, lr, seed); returns the
    count. Floats keep 7 significant digits (float32 training)."""
    import gzip

    def short(v):
        if isinstance(v, float):
            return float(f"{v:.7g}")
        if isinstance(v, list):
            return [short(x) for x in v]
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        return v

    recs = sorted(load_trials(out), key=lambda r: (r["arch_id"], r["batch_size"], r["lr"],
                                                   r["seed"]))
    tmp = dest + ".tmp"
    with gzip.open(tmp, "wt", compresslevel=9) as f:
        for r in recs:
            f.write(json.dumps(short(r), separators=(",", ":")) + "\n")
    os.replace(tmp, dest)
    return len(recs)


def load_studies(out: str) -> list[dict]:
    """Every ``study.json`` record under ``OUT/trials`` (lrs tried, grid extensions)."""
    return [r for r in _records(out) if "lrs_tried" in r]


def _records(out: str) -> list[dict]:
    root = os.path.join(out, "trials")
    recs = []
    if not os.path.isdir(root):
        return recs
    for folder, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith(".json") and not f.startswith(".tmp-"):
                recs.append(read_json(os.path.join(folder, f)))
    return recs


__all__ = ["Workload", "REACHED", "UNREACHED", "INFEASIBLE", "load_workload_folder",
           "workload_folders", "init_record", "write_json_atomic", "write_text_atomic", "read_json", "trial_path", "study_path",
           "versions", "load_trials", "load_studies", "write_curves", "CURVES_FILE",
           "TRIAL_KEYS", "SCHEMA"]
