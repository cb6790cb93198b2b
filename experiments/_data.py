r"""Training data for sweeps: the shared sets of :mod:`theory.data` plus image-file loaders.

``--data`` accepts

* ``mnist1d`` (default): :func:`theory.data.mnist1d`, generated offline with a fixed seed;
  a classification task (cross-entropy by default).
* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes, shipped
  inside the package: no download), pixels 0..16 scaled to [0, 1] and standardised; needs the
  optional extra ``pip install 'widthdepth[digits]'`` (scikit-learn).
* ``gaussian``: the teacher–student set :func:`theory.data.gaussian` with
  ``d = 32`` inputs :math:`x \sim \mathcal N(0, I_{32})`, one output
  :math:`y = T x/\sqrt{32} + \epsilon`, :math:`T \sim \mathcal N(0,1)^{1\times 32}`,
  noise :math:`\epsilon \sim \mathcal N(0, 0.1^2)`; a regression task (squared loss).
* a ``.npz`` file with arrays ``x`` (n×d) and ``y`` (n, or n×c): read by
  :func:`theory.data.load_npz` (never unpickles). Integer 1-D ``y`` is a classification task,
  anything else regression.
* MNIST IDX files: a ``*-images-idx3-ubyte[.gz]`` file (its ``*-labels-idx1-ubyte[.gz]``
  partner is found next to it) or a folder holding ``train-images-idx3-ubyte[.gz]``.
* CIFAR-10 "python version" batches: one batch file (``data_batch_1``, ``test_batch``) or the
  ``cifar-10-batches-py`` folder (``data_batch_1`` … ``data_batch_5``). They are pickles, read by
  :func:`restricted_load`, which rebuilds only dicts, lists, tuples, strings, bytes, numbers and
  numpy arrays from raw bytes, and refuses every other global (so a malicious file cannot run
  code).

Image pixels are scaled to [0, 1], flattened and standardised with one global mean and standard
deviation. Classification labels are stored as centred one-hot rows :math:`e_k - \tfrac1c`
(the convention of :mod:`theory.data`) with the integer labels in ``classes``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct

import numpy as np

from theory.data import Dataset, DataError, gaussian, load_npz, mnist1d

from ._errors import ExperimentError

GAUSSIAN_D = 32
MNIST1D_TRAIN = 4000  # the training split of MNIST-1D's standard 5,000-example set
BUILTIN_DATA = ("mnist1d", "digits", "gaussian")
GAUSSIAN_NOISE = 0.1


# --------------------------------------------------------------------------- restricted pickle
def _safe_dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align, copy)
    if dt.hasobject:
        raise pickle.UnpicklingError("refusing an object-dtype array")
    return dt


def _safe_reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("refusing to rebuild a non-ndarray")
    return np.ndarray.__new__(np.ndarray, shape, np.dtype(np.uint8))


def _safe_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("refusing an object-dtype array")
    if not isinstance(buf, (bytes, bytearray)):
        raise pickle.UnpicklingError("arrays must be rebuilt from bytes")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order).copy()


def _latin1_bytes(text, encoding="latin1"):
    """Protocol-2 pickles spell bytes as ``_codecs.encode(str, "latin1")``; allow only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose only globals are the numpy array/dtype rebuilders in ``_ALLOWED``."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} (only plain containers, bytes, "
                f"numbers and numpy arrays are accepted)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def _check_plain(obj, depth=0):
    """After loading: only plain containers, str/bytes, numbers and non-object arrays."""
    if depth > 50:
        raise pickle.UnpicklingError("nesting too deep")
    if isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("refusing an object-dtype array")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, depth + 1)
        return
    raise pickle.UnpicklingError(f"refusing an object of type {type(obj).__name__}")


def restricted_load(data: bytes, source: str = "pickle"):
    """Unpickle ``data`` accepting only dict/list/tuple/str/bytes/int/float and numpy arrays
    rebuilt from raw bytes; anything else raises :class:`ExperimentError` before it is built.

    Example:
        >>> import pickle
        >>> restricted_load(pickle.dumps({"a": [1, 2.5, b"x"]}))
        {'a': [1, 2.5, b'x']}
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
        _check_plain(obj)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, struct.error) as err:
        raise ExperimentError(f"{source}: unsafe or unreadable pickle ({err})") from None
    return obj


# --------------------------------------------------------------------------- image files
def _read_maybe_gz(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read ({err.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ExperimentError(f"{path}: broken gzip file ({err})") from None
    return raw


def read_idx(path: str) -> np.ndarray:
    """An IDX array (unsigned-byte data, the MNIST format), gzip or plain."""
    raw = _read_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ExperimentError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code != 0x08:
        raise ExperimentError(f"{path}: IDX data type 0x{code:02x} unsupported (need 0x08, "
                              f"unsigned bytes)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ExperimentError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ExperimentError(f"{path}: IDX header says {size} bytes of data, file has "
                              f"{len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _labels_partner(images: str) -> str:
    folder, name = os.path.split(images)
    stem = name[:-3] if name.endswith(".gz") else name
    for cand in (stem.replace("images-idx3", "labels-idx1"),
                 stem.replace("images.idx3", "labels.idx1")):
        for ext in ("", ".gz"):
            p = os.path.join(folder, cand + ext)
            if cand != stem and os.path.exists(p):
                return p
    raise ExperimentError(f"{images}: no matching *-labels-idx1-ubyte[.gz] file next to it")


def load_mnist_idx(images: str) -> Dataset:
    """MNIST-format images + labels (IDX files)."""
    labels_path = _labels_partner(images)
    imgs, labels = read_idx(images), read_idx(labels_path)
    if imgs.ndim < 2:
        raise ExperimentError(f"{images}: expected an image array, got shape {imgs.shape}")
    if labels.ndim != 1 or labels.shape[0] != imgs.shape[0]:
        raise ExperimentError(f"{labels_path}: {labels.shape} labels for {imgs.shape[0]} images")
    x = imgs.reshape(imgs.shape[0], -1)
    return _classification(x, labels.astype(np.int64), "mnist-idx",
                           f"{os.path.basename(images)}: n={x.shape[0]} images "
                           f"{'x'.join(map(str, imgs.shape[1:]))}")


def _cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ExperimentError(f"{path}: cannot read ({err.strerror})") from None
    obj = restricted_load(raw, source=path)
    if not isinstance(obj, dict):
        raise ExperimentError(f"{path}: a CIFAR batch must be a dict, got {type(obj).__name__}")
    get = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in get or ("labels" not in get and "fine_labels" not in get):
        raise ExperimentError(f"{path}: CIFAR batch lacks 'data' or 'labels'")
    data = get["data"]
    labels = np.asarray(get.get("labels", get.get("fine_labels")))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.dtype != np.uint8:
        raise ExperimentError(f"{path}: CIFAR 'data' must be a uint8 n×3072 array")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or \
            not np.issubdtype(labels.dtype, np.integer):
        raise ExperimentError(f"{path}: CIFAR 'labels' must be {data.shape[0]} integers")
    return data, labels.astype(np.int64)


def load_cifar(path: str) -> Dataset:
    """One CIFAR-10 python batch file, or a folder of ``data_batch_*`` files."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.startswith("data_batch_"))
        if not files:
            raise ExperimentError(f"{path}: no data_batch_* files in this folder")
        parts = [_cifar_batch(os.path.join(path, f)) for f in files]
        data = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    else:
        data, labels = _cifar_batch(path)
    return _classification(data, labels, "cifar10",
                           f"{os.path.basename(os.path.normpath(path))}: n={data.shape[0]} "
                           f"CIFAR images {data.shape[1]} values")


def load_digits(n: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1,797 images; the first ``n`` if ``n > 0``), read
    from the installed package."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ExperimentError("data 'digits' needs scikit-learn: pip install "
                              "'widthdepth[digits]' (or scikit-learn)") from None
    raw = _load()
    n = raw.data.shape[0] if n <= 0 else min(n, raw.data.shape[0])
    return _classification(np.asarray(raw.data)[:n], np.asarray(raw.target, np.int64)[:n],
                           "digits", f"digits: n={n} scikit-learn 8x8 handwritten digits "
                           f"(64 pixels)", scale=16.0)


def _classification(pixels: np.ndarray, labels: np.ndarray, name: str, desc: str,
                    scale: float = 255.0) -> Dataset:
    x = pixels.astype(np.float64) / scale
    std = x.std()
    x = (x - x.mean()) / (std if std > 0 else 1.0)
    if labels.min() < 0:
        raise ExperimentError(f"{desc.split(':')[0]}: negative class labels")
    c = _class_count(labels, desc)
    y = np.eye(c)[labels] - 1.0 / c
    return Dataset(x, y, name, desc + f", {c} classes, pixels/{scale:g} standardised", labels)


def _class_count(labels, desc: str) -> int:
    from theory.data import DataError, check_class_count

    try:
        return check_class_count(labels, desc.split(":")[0])
    except DataError as err:
        raise ExperimentError(str(err)) from None


# --------------------------------------------------------------------------- resolution
def _one_hot(ds: Dataset) -> Dataset:
    k = ds.classes
    if k.min() < 0:
        raise ExperimentError(f"{ds.description.split(':')[0]}: negative class labels")
    c = _class_count(k, ds.description)
    return Dataset(ds.x, np.eye(c)[k] - 1.0 / c, ds.name,
                   ds.description + f", {c} classes (integer labels, centred one-hot)", k)


def _looks_like_cifar(path: str) -> bool:
    base = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        return any(f.startswith("data_batch_") for f in os.listdir(path))
    return base.startswith(("data_batch_", "test_batch"))


def load_data(name: str, *, n: int = 0, seed: int = 42) -> tuple[Dataset, str]:
    """The training set named by ``name`` (see module doc) and its task,
    ``"classification"`` or ``"regression"``. ``n > 0`` keeps the first ``n`` examples."""
    try:
        if name == "mnist1d":  # n = 0: the whole standard training split (4,000 examples)
            return mnist1d(n or MNIST1D_TRAIN, seed=seed), "classification"
        if name == "digits":
            return load_digits(n), "classification"
        if name == "gaussian":
            return gaussian(n or 2000, GAUSSIAN_D, seed=seed, labels="teacher", outputs=1,
                            noise=GAUSSIAN_NOISE), "regression"
        if not os.path.exists(name):
            raise ExperimentError(f"{name}: unknown data set: no such file or folder (and not "
                                  f"one of {', '.join(BUILTIN_DATA)})")
        if os.path.isdir(name):
            imgs = [f for f in os.listdir(name) if f.startswith("train-images")
                    and "idx3" in f]
            if imgs:
                ds = load_mnist_idx(os.path.join(name, sorted(imgs)[0]))
            elif _looks_like_cifar(name):
                ds = load_cifar(name)
            else:
                raise ExperimentError(f"{name}: folder holds neither MNIST IDX "
                                      f"(train-images-idx3-ubyte) nor CIFAR-10 data_batch_* files")
        elif name.endswith(".npz"):
            ds = load_npz(name)
            if ds.classes is not None:  # integer labels: a classification task
                ds = _one_hot(ds)
        elif "idx3" in os.path.basename(name):
            ds = load_mnist_idx(name)
        elif _looks_like_cifar(name):
            ds = load_cifar(name)
        else:
            raise ExperimentError(f"{name}: unknown data file type (use .npz, MNIST "
                                  f"*-idx3-ubyte[.gz] or CIFAR-10 data_batch_*)")
    except DataError as err:
        raise ExperimentError(str(err)) from None
    if n and ds.n > n:
        ds = ds.subset(n)
    task = "classification" if ds.classes is not None and ds.name != "gaussian" else "regression"
    return ds, task


__all__ = ["load_data", "load_digits", "restricted_load", "read_idx", "load_mnist_idx",
           "load_cifar", "BUILTIN_DATA", "MNIST1D_TRAIN",
           "GAUSSIAN_D", "GAUSSIAN_NOISE"]
