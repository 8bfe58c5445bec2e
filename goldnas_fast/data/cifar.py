"""Loading CIFAR-10 from the official python batches, from ``.npz`` files, or from the embedded sample.

Data: CIFAR-10 (A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report,
Univ. of Toronto, 2009; https://www.cs.toronto.edu/~kriz/cifar.html): 50,000 training and 10,000 test
32x32 RGB images in 10 classes.

Layout returned by :func:`load_cifar10`: images are **numpy uint8, NHWC** ``(N, 32, 32, 3)`` (rows,
columns, R/G/B, values 0..255, not normalised), labels numpy **int64** ``(N,)`` in ``0..9``. NHWC
numpy is what every on-disk format holds, so loading copies nothing it does not have to;
:class:`~goldnas_fast.data.loader.DeviceLoader` converts to a uint8 NCHW tensor on the device.

Accepted ``path`` values:

* ``None``: the embedded sample ``goldnas_fast/resources/cifar10_sample.npz`` (training images 0..511
  and test images 0..255 in official order; see ``goldnas_fast/data/_make_sample.py``).
* A directory holding the official python batches ``data_batch_1`` .. ``data_batch_5`` (all five
  required) and ``test_batch`` (optional), or a directory holding such a ``cifar-10-batches-py/``
  folder. Each batch is a **pickle** (a dict with ``b'data'``: ``(N, 3072)`` uint8, rows of R, G, B
  planes, and ``b'labels'``: N ints). Pickles can run code on load, so they are read with a restricted
  unpickler that resolves only the few numpy/codec names an array pickle needs and refuses every other
  global.
* A directory of npz shards ``cifar10_train_<k>.npz`` (concatenated in numeric order of ``k``) plus
  optional ``cifar10_test_<k>.npz``, each with ``images`` ``(N, 32, 32, 3)`` uint8 and ``labels``
  ``(N,)``.
* One ``.npz`` file with ``train_images``/``train_labels`` and optionally ``test_images``/``test_labels``
  (like ``cifar10_tiny.npz``); or with ``images``/``labels``, which fill the **test** split if the file
  name contains ``test`` and the **training** split otherwise.

npz files are read with ``allow_pickle=False``. Missing files raise :class:`FileNotFoundError`,
malformed content :class:`ValueError`; both name the path and what was expected.
"""
from __future__ import annotations

import dataclasses
import importlib
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CIFAR10_CLASSES", "CifarArrays", "load_cifar10", "sample_path"]

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
_OFFICIAL_TRAIN = tuple(f"data_batch_{k}" for k in range(1, 6))
_OFFICIAL_TEST = "test_batch"
_OFFICIAL_SUBDIR = "cifar-10-batches-py"
_SHARD_RE = re.compile(r"^cifar10_(train|test)_(\w+)\.npz$")


def sample_path() -> Path:
    """Path of the embedded sample ``goldnas_fast/resources/cifar10_sample.npz``."""
    return Path(__file__).resolve().parents[1] / "resources" / "cifar10_sample.npz"


@dataclasses.dataclass(frozen=True, eq=False)
class CifarArrays:
    """CIFAR-10 arrays: images uint8 NHWC ``(N, 32, 32, 3)``, labels int64 ``(N,)`` in ``0..9``.

    Attributes:
        train_images, train_labels: the training split (may be empty for a test-only file).
        test_images, test_labels: the test split (may be empty).
        source: where the arrays came from (path and format), for logs and run records.
        label_names: class names, index = label.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    label_names: tuple[str, ...] = CIFAR10_CLASSES

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_labels.shape[0])

    def __repr__(self) -> str:
        return f"CifarArrays(train={self.num_train}, test={self.num_test}, source={self.source!r})"


# ------------------------------------------------------------------------------------------ validation
def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, *IMAGE_SHAPE), np.uint8), np.zeros((0,), np.int64)


def _check(images: Any, labels: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validates one (images, labels) pair; returns (uint8 NHWC, int64)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 (0..255), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{where}: images must have shape (N, 32, 32, 3) (NHWC), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels (lengths differ)")
    labels = labels.astype(np.int64, copy=False)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{where}: labels must lie in 0..{NUM_CLASSES - 1}, "
                         f"found range {labels.min()}..{labels.max()}")
    return np.ascontiguousarray(images), labels


def _limit(images: np.ndarray, labels: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (images, labels) if n is None else (images[:n], labels[:n])


def _check_limit(value: int | None, name: str) -> None:
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
        raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")


# ------------------------------------------------------------------------------------------ pickles
def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1').
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1", errors)


def _numpy_attr(module: str, name: str) -> Callable[..., Any]:
    # numpy >= 2 moved numpy.core to numpy._core; old pickles (the official ones) name numpy.core.
    for mod in (module.replace("numpy.core", "numpy._core", 1), module):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals an array pickle needs; anything else is refused."""

    _NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"),
              ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
              ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._NUMPY:
            return _numpy_attr(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official python batch -> (uint8 NHWC, int64)."""
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR-10 python batch (truncated or corrupt pickle: "
                         f"{type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict with b'data' and b'labels', got {type(d).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path}: expected keys b'data' and b'labels', found {sorted(map(str, d))}")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return _check(images, np.asarray(d["labels"]), str(path))


def _load_official(root: Path, max_train: int | None, max_test: int | None) -> CifarArrays:
    missing = [n for n in _OFFICIAL_TRAIN if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: official CIFAR-10 python batches incomplete, missing {missing} "
                                f"(expected data_batch_1..data_batch_5 and optionally test_batch)")
    xs, ys, n = [], [], 0
    for name in _OFFICIAL_TRAIN:
        if max_train is not None and n >= max_train:
            break
        x, y = _read_batch(root / name)
        xs.append(x)
        ys.append(y)
        n += len(y)
    train = _limit(np.concatenate(xs), np.concatenate(ys), max_train) if xs else _empty()
    test = _empty()
    if (root / _OFFICIAL_TEST).is_file() and max_test != 0:
        test = _limit(*_read_batch(root / _OFFICIAL_TEST), max_test)
    return CifarArrays(*train, *test, source=f"{root} (official python batches)")


# ------------------------------------------------------------------------------------------ npz
def _open_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None


def _label_names(d: dict[str, np.ndarray]) -> tuple[str, ...]:
    names = d.get("label_names")
    if names is None or names.shape != (NUM_CLASSES,):
        return CIFAR10_CLASSES
    return tuple(str(s) for s in names)


def _load_npz_file(path: Path, max_train: int | None, max_test: int | None) -> CifarArrays:
    d = _open_npz(path)
    train, test = _empty(), _empty()
    if "train_images" in d or "train_labels" in d:
        for key in ("train_images", "train_labels"):
            if key not in d:
                raise ValueError(f"{path}: has train_* arrays but no {key!r} (keys: {sorted(d)})")
        train = _limit(*_check(d["train_images"], d["train_labels"], f"{path}[train_*]"), max_train)
        if ("test_images" in d) != ("test_labels" in d):
            raise ValueError(f"{path}: test_images and test_labels must come together (keys: {sorted(d)})")
        if "test_images" in d:
            test = _limit(*_check(d["test_images"], d["test_labels"], f"{path}[test_*]"), max_test)
        kind = "npz train/test"
    elif "images" in d and "labels" in d:
        pair = _check(d["images"], d["labels"], str(path))
        is_test = "test" in path.name.lower()
        if is_test:
            test = _limit(*pair, max_test)
        else:
            train = _limit(*pair, max_train)
        kind = "npz images/labels as " + ("test" if is_test else "train")
    else:
        raise ValueError(f"{path}: expected arrays 'images' and 'labels', or 'train_images', 'train_labels' "
                         f"(+ optional 'test_images', 'test_labels'); found {sorted(d)}")
    return CifarArrays(*train, *test, source=f"{path} ({kind})", label_names=_label_names(d))


def _shard_key(path: Path) -> tuple[int, str]:
    suffix = _SHARD_RE.match(path.name).group(2)  # type: ignore[union-attr]
    return (int(suffix), "") if suffix.isdigit() else (1 << 62, suffix)


def _load_shards(files: list[Path], max_n: int | None) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    xs, ys, n, used = [], [], 0, []
    for f in sorted(files, key=_shard_key):
        if max_n is not None and n >= max_n:
            break
        used.append(f.name)
        d = _open_npz(f)
        if "images" not in d or "labels" not in d:
            raise ValueError(f"{f}: a shard must hold 'images' (N, 32, 32, 3) uint8 and 'labels' (N,); "
                             f"found {sorted(d)}")
        x, y = _check(d["images"], d["labels"], str(f))
        xs.append(x)
        ys.append(y)
        n += len(y)
    if not xs:
        return _empty(), ""
    return _limit(np.concatenate(xs), np.concatenate(ys), max_n), ",".join(used)


def _load_dir(root: Path, max_train: int | None, max_test: int | None) -> CifarArrays:
    if (root / _OFFICIAL_TRAIN[0]).exists() or (root / _OFFICIAL_TEST).exists():
        return _load_official(root, max_train, max_test)
    if (root / _OFFICIAL_SUBDIR).is_dir():
        return _load_official(root / _OFFICIAL_SUBDIR, max_train, max_test)
    shards: dict[str, list[Path]] = {"train": [], "test": []}
    for f in root.iterdir():
        m = _SHARD_RE.match(f.name)
        if m and f.is_file():
            shards[m.group(1)].append(f)
    if not shards["train"]:
        raise FileNotFoundError(
            f"{root}: no CIFAR-10 data found; expected the official python batches (data_batch_1..5, "
            f"test_batch, or a {_OFFICIAL_SUBDIR}/ folder) or npz shards cifar10_train_<k>.npz "
            f"(+ optional cifar10_test_<k>.npz)")
    train, train_names = _load_shards(shards["train"], max_train)
    test, test_names = _load_shards(shards["test"], max_test) if max_test != 0 else (_empty(), "")
    src = f"{root} (npz shards: {train_names}" + (f"; {test_names}" if test_names else "") + ")"
    return CifarArrays(*train, *test, source=src)


# ------------------------------------------------------------------------------------------ entry point
def load_cifar10(path: str | Path | None = None, *, max_train: int | None = None,
                 max_test: int | None = None) -> CifarArrays:
    """Loads CIFAR-10 (see the module docstring for the accepted formats).

    Args:
        path: a directory (official python batches or npz shards), one ``.npz`` file, or ``None`` for
            the embedded sample (512 training + 256 test images).
        max_train: keep only the first ``max_train`` training images (official order); shards past
            that count are not read, which saves time and memory on small machines.
        max_test: the same for the test split (0 skips it).

    Returns:
        :class:`CifarArrays` with uint8 NHWC images and int64 labels; the test split may be empty.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no recognised CIFAR-10 files.
        ValueError: a file is truncated/corrupt or holds arrays of the wrong shape, dtype or range.
    """
    _check_limit(max_train, "max_train")
    _check_limit(max_test, "max_test")
    if path is None:
        p = sample_path()
        if not p.is_file():
            raise FileNotFoundError(f"embedded CIFAR-10 sample missing at {p} "
                                    f"(regenerate it with goldnas_fast/data/_make_sample.py)")
        arrays = _load_npz_file(p, max_train, max_test)
        return dataclasses.replace(arrays, source=f"embedded sample {p.name} (CIFAR-10 train[0:{arrays.num_train}], "
                                                  f"test[0:{arrays.num_test}])")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"CIFAR-10 data path {p} does not exist (expected a directory with the "
                                f"official python batches or cifar10_train_<k>.npz shards, or one .npz file)")
    if p.is_dir():
        return _load_dir(p, max_train, max_test)
    if p.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise ValueError(f"{p}: archives are not read directly; extract it and pass the "
                         f"{_OFFICIAL_SUBDIR}/ directory")
    if p.suffix == ".npz":
        return _load_npz_file(p, max_train, max_test)
    if p.name in _OFFICIAL_TRAIN or p.name == _OFFICIAL_TEST:
        raise ValueError(f"{p}: pass the directory holding all official batches, not one batch file")
    raise ValueError(f"{p}: unrecognised CIFAR-10 file; expected a .npz file or a directory")
