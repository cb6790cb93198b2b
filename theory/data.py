"""Data sets shared by theory/, numerics/ and experiments/ (numpy only, no jax).

* ``gaussian``: i.i.d. :math:`x_i \\sim \\mathcal N(0, I_d)`. Labels ``"zero"`` (pure network
  term) or ``"teacher"``: :math:`y_i = T x_i / \\sqrt d + \\epsilon_i` with a fixed random teacher
  :math:`T \\in \\mathbb R^{c \\times d}`, :math:`T_{ab} \\sim \\mathcal N(0, 1)`, and label noise
  :math:`\\epsilon \\sim \\mathcal N(0, \\text{noise}^2)` (default 0). ``classes`` for training is
  the arg-max of the teacher output.
* ``mnist1d``: MNIST-1D (Greydanus 2020) made offline by the ``mnist1d`` package's generator with
  its default arguments (40-dim sequences, 10 classes, standardised inputs) and a fixed seed;
  the first ``n`` training examples. Labels for the squared loss are *centred one-hot*:
  :math:`y_i = e_{k_i} - \\tfrac1{10}\\mathbf 1` (c = 10); ``classes`` keeps the integer labels.
* ``load_npz``: a user's file with arrays ``x`` (n×d) and ``y`` (n or n×c), read with
  ``allow_pickle=False``.

Every loader validates: non-empty, finite, matching numbers of rows.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A data set that cannot be used (missing keys, bad shapes, NaN/inf, unreadable file)."""


#: Largest data seed: the MNIST-1D generator seeds numpy's legacy RandomState, which takes
#: 0..2**32 - 1; the Gaussian data use the same range so that a seed means the same everywhere.
MAX_SEED = 2**32 - 1


def check_seed(seed) -> int:
    """The seed as an int in 0..:data:`MAX_SEED`, else :class:`DataError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed <= MAX_SEED:
        raise DataError(f"data seed must be an integer in 0..{MAX_SEED} (2**32 - 1), got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (n×d, float64), regression targets ``y`` (n×c, float64), optional integer
    ``classes`` (n,), and a one-line ``description`` saying where they came from."""

    x: np.ndarray
    y: np.ndarray
    name: str
    description: str
    classes: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def input_dim(self) -> int:
        return self.x.shape[1]

    @property
    def outputs(self) -> int:
        return self.y.shape[1]

    def with_zero_labels(self) -> "Dataset":
        """Same inputs, labels set to 0 (the pure network term)."""
        return Dataset(self.x, np.zeros_like(self.y), self.name,
                       self.description + "; labels set to 0", self.classes)

    def subset(self, n: int) -> "Dataset":
        """The first ``n`` examples."""
        if n <= 0 or n > self.n:
            raise DataError(f"cannot take {n} examples from a data set of {self.n}")
        classes = None if self.classes is None else self.classes[:n]
        return Dataset(self.x[:n], self.y[:n], self.name, self.description, classes)


#: Most classes (c = largest integer label + 1) a classification data set may have: a larger
#: label is almost surely not a class index (each class costs a logit and a one-hot column).
MAX_CLASSES = 100_000


def check_class_count(classes, source: str = "data") -> int:
    """c = largest label + 1 of integer class labels; DataError when c > :data:`MAX_CLASSES`."""
    top = int(np.max(classes)) if np.size(classes) else 0
    if top + 1 > MAX_CLASSES:
        k = len(np.unique(classes))
        raise DataError(f"{source}: class label {top} would make c = {top + 1} classes (one "
                        f"logit and one-hot column each; at most {MAX_CLASSES}); the labels "
                        f"hold {k} distinct values: relabel them 0..{k - 1}")
    return top + 1


def check_xy(x, y, source: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise to float64 ``x`` (n×d) and ``y`` (n×c)."""
    for name, a in (("x", x), ("y", y)):
        if np.iscomplexobj(a):
            raise DataError(f"{source}: {name} is complex ({np.asarray(a).dtype}); the "
                            f"toolkit takes real data: save the real part, or the real and "
                            f"imaginary parts as separate features")
    try:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: x and y must be numeric arrays ({err})") from None
    if x.ndim != 2:
        raise DataError(f"{source}: x must be 2-D (n×d), got shape {x.shape}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise DataError(f"{source}: y must be 1-D (n) or 2-D (n×c), got shape {y.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{source}: empty data, x has shape {x.shape}")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{source}: x has {x.shape[0]} rows but y has {y.shape[0]}")
    if y.shape[1] == 0:
        raise DataError(f"{source}: y has no columns")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{source}: x contains NaN or inf")
    if not np.all(np.isfinite(y)):
        raise DataError(f"{source}: y contains NaN or inf")
    return x, y


def gaussian(n: int = 64, d: int = 16, *, seed: int = 0, labels: str = "zero",
             outputs: int = 1, noise: float = 0.0) -> Dataset:
    """I.i.d. standard Gaussian inputs with zero or random-teacher labels (see module doc)."""
    if n <= 0 or d <= 0 or outputs <= 0:
        raise DataError(f"gaussian data needs positive n, d, outputs; got n={n}, d={d}, "
                        f"outputs={outputs}")
    if labels not in ("zero", "teacher"):
        raise DataError(f"unknown gaussian labels {labels!r} (choose 'zero' or 'teacher')")
    rng = np.random.default_rng(check_seed(seed))
    x = rng.standard_normal((n, d))
    teacher = rng.standard_normal((outputs, d))
    out = x @ teacher.T / np.sqrt(d)
    classes = np.argmax(out, axis=1) if outputs > 1 else (out[:, 0] > 0).astype(np.int64)
    if labels == "zero":
        y = np.zeros((n, outputs))
        desc = f"gaussian: n={n} i.i.d. x ~ N(0, I_{d}), labels y = 0 (seed {seed})"
    else:
        y = out + noise * rng.standard_normal((n, outputs))
        desc = (f"gaussian: n={n} i.i.d. x ~ N(0, I_{d}), teacher labels y = T x/sqrt(d)"
                f" + N(0,{noise}^2), T ~ N(0,1)^({outputs}x{d}) (seed {seed})")
    return Dataset(x, y, "gaussian", desc, classes)


def mnist1d(n: int = 512, *, seed: int = 42, split: str = "train") -> Dataset:
    """MNIST-1D generated offline (no download): first ``n`` examples of the split."""
    try:
        import mnist1d as _  # noqa: F401
    except ImportError as err:  # pragma: no cover - dependency is declared
        raise DataError(f"the mnist1d package is not installed ({err})") from None
    if n <= 0:
        raise DataError(f"mnist1d needs n > 0, got {n}")
    seed = check_seed(seed)
    # The generator draws train+test from one pool, 80% train; ask for just enough.
    per_split = n if split == "train" else n * 4
    num = max(1000, int(np.ceil(per_split / 0.8 / 10)) * 10 + 10)
    raw = _mnist1d_raw(num, seed)
    key = "x" if split == "train" else "x_test"
    ykey = "y" if split == "train" else "y_test"
    xs, ks = raw[key].copy(), raw[ykey].copy()
    if xs.shape[0] < n:
        raise DataError(f"mnist1d generator gave {xs.shape[0]} {split} examples, need {n}")
    xs, ks = xs[:n], ks[:n]
    y = np.eye(10)[ks] - 0.1
    desc = (f"mnist1d: n={n} {split} examples, d=40, generated offline (seed {seed}), "
            f"labels centred one-hot e_k - 1/10 (c=10)")
    return Dataset(xs, y, "mnist1d", desc, ks)


@functools.lru_cache(maxsize=8)
def _mnist1d_raw(num_samples: int, seed: int) -> dict:
    """The generator's output (deterministic in its arguments, so cached per process)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=False)
    args.seed = seed
    args.num_samples = num_samples
    state = np.random.get_state()  # the generator seeds numpy's global RNG: restore it after
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(state)
    out = {k: np.asarray(raw[k], np.float64 if k.startswith("x") else np.int64)
           for k in ("x", "x_test", "y", "y_test")}
    for v in out.values():
        v.setflags(write=False)
    return out


def load_npz(path: str) -> Dataset:
    """A user's ``.npz`` with arrays ``x`` (n×d) and ``y`` (n or n×c); never unpickles."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise DataError(f"{path}: cannot open ({err.strerror})") from None
    if magic != b"PK\x03\x04":
        raise DataError(f"{path}: not an .npz archive (zip); pickled files are never loaded")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)} "
                                f"(found: {', '.join(sorted(keys)) or 'none'})")
            x, y = f["x"], f["y"]
    except DataError:
        raise
    except ValueError as err:
        raise DataError(f"{path}: cannot read without unpickling ({err})") from None
    except Exception as err:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise DataError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") \
            from None
    classes = None
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        classes = y.astype(np.int64)
    x, y = check_xy(x, y, source=path)
    desc = f"{os.path.basename(path)}: n={x.shape[0]}, d={x.shape[1]}, c={y.shape[1]}"
    return Dataset(x, y, "npz", desc, classes)


def resolve(name_or_path: str | None, *, n: int = 64, d: int = 16, seed: int = 0,
            labels: str | None = None, outputs: int = 1) -> Dataset:
    """``None``/``"gaussian"`` → :func:`gaussian`, ``"mnist1d"`` → :func:`mnist1d`,
    anything else is read as an ``.npz`` path. ``labels="zero"`` zeroes the labels of any set."""
    if name_or_path in (None, "gaussian"):
        ds = gaussian(n, d, seed=seed, labels=labels or "zero", outputs=outputs)
    elif name_or_path == "mnist1d":
        ds = mnist1d(n, seed=42 if seed == 0 else seed)
        if labels == "zero":
            ds = ds.with_zero_labels()
        elif labels not in (None, "data", "teacher"):
            raise DataError(f"unknown labels {labels!r} for mnist1d (use 'zero' or 'data')")
    else:
        ds = load_npz(name_or_path)
        if labels == "zero":
            ds = ds.with_zero_labels()
    return ds
