"""CIFAR-10 / CIFAR-100 from the official "python version" files, read without trusting pickle.

The official batches (``cifar-10-batches-py/data_batch_1`` ..., ``cifar-100-python/train``) are
Python pickles. A pickle can name any importable callable and run it while loading, so these
files are read with an unpickler that resolves only what such a batch needs: numpy array
reconstruction (``_reconstruct``, ``ndarray``, ``dtype``), ``_codecs.encode`` (how Python 3
pickles bytes at protocol 2) and a few plain builtins. Anything else is refused as unsafe
before it can be called, and the loaded object is then checked to be exactly a CIFAR batch.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

from .base import DataError, DataSource, UnsafeDataError
from .digits import ArraySplit

# layout of each dataset: folder name inside PATH, train files, test file, meta file, label key, names key
_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names"),
}
_MAX_BYTES = 512 * 2**20  # no official batch is near this; refuse before reading a huge file
_SIDE = 32


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    plain = {"dict": dict, "list": list, "bytes": bytes, "str": str, "int": int}
    allowed: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("builtins", "__builtin__"):
        allowed.update({(module, k): v for k, v in plain.items()})
    return allowed


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    def __init__(self, stream: Any, where: str):
        super().__init__(stream, encoding="bytes")  # Python 2 str -> bytes, as the official reader does
        self.where = where
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise UnsafeDataError(
                f"{self.where} asks to run {module}.{name} while loading; a CIFAR batch holds only arrays and "
                "labels: this file is not an official CIFAR batch, delete it and download the dataset again"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeDataError(f"{self.where} uses persistent ids; it is not an official CIFAR batch, download it again")


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR python batch as a dict with str keys, loaded without running any code from the file.

    >>> read_batch(Path("cifar-10-batches-py/test_batch"))["data"].shape  # doctest: +SKIP
    (10000, 3072)
    """
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise DataError(f"{path} is {size} bytes, larger than any CIFAR batch; point at the official files")
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{path} is missing; the CIFAR folder must hold the official python batches") from e
    try:
        obj = _DataOnlyUnpickler(io.BytesIO(raw), str(path)).load()
    except UnsafeDataError:
        raise
    except Exception as e:  # truncated or not a pickle at all: pickle raises many types
        raise DataError(f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}); download it again") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; download it again")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _images_and_labels(path: Path, label_key: str) -> tuple[Any, list[int]]:
    import numpy as np

    batch = read_batch(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE**2:
        raise DataError(f"{path} has no uint8 'data' array of shape [N, 3072]; it is not a CIFAR batch")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(isinstance(v, int) for v in labels):
        raise DataError(f"{path} has no '{label_key}' list matching its {len(data)} images; is it the other CIFAR?")
    # rows hold the red plane, then green, then blue: [N, 3, 32, 32] -> [N, 32, 32, 3]
    return data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1).copy(), labels


def _class_names(path: Path, key: str) -> tuple[str, ...]:
    names = read_batch(path).get(key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{path} has no '{key}' list; it is not the CIFAR meta file")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _folder(kind: str, path: Path) -> Path:
    inner = _LAYOUTS[kind][0]
    for candidate in (path, path / inner):
        if (candidate / _LAYOUTS[kind][2]).is_file():
            return candidate
    raise DataError(f"no {kind} python batches in {path} (looked for {_LAYOUTS[kind][2]} there and in {inner}/); "
                    f"extract the official '{inner}' archive and pass {kind}:FOLDER")


def open_cifar(kind: str, path: str | Path, spec: str) -> DataSource:
    """CIFAR-10 (``kind="cifar10"``) or CIFAR-100 (``"cifar100"``, fine labels) from the official files.

    Args:
        kind: "cifar10" or "cifar100".
        path: the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or the folder holding it.
        spec: the spec as written by the user, kept on the source.

    >>> src = open_cifar("cifar10", "~/data/cifar-10-batches-py", "cifar10:~/data")  # doctest: +SKIP
    """
    import numpy as np

    folder = _folder(kind, Path(path).expanduser())
    _, train_files, test_file, meta_file, label_key, names_key = _LAYOUTS[kind]
    classes = _class_names(folder / meta_file, names_key)
    parts = [_images_and_labels(folder / f, label_key) for f in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = [v for p in parts for v in p[1]]
    test_x, test_y = _images_and_labels(folder / test_file, label_key)
    bad = [v for v in (*train_y, *test_y) if not 0 <= v < len(classes)]
    if bad:
        raise DataError(f"{folder} has label {bad[0]} but {len(classes)} class names; the files are mixed up")
    return DataSource(
        name=kind, spec=spec, classes=classes, flip_ok=True,
        train=ArraySplit("train", train_x, train_y, kind), eval=ArraySplit("test", test_x, test_y, kind),
    )
