"""Builders for the eval tests: CIFAR files in the official layout, image folders, a fixed tiny encoder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def cifar_batch(n: int, label_key: str, num_classes: int, seed: int) -> dict[bytes, object]:
    """A batch dict as the official files hold it (bytes keys, uint8 rows R-plane/G-plane/B-plane)."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key.encode(): [int(v) for v in rng.integers(0, num_classes, size=n)],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar(root: Path, kind: str, per_batch: int = 6, protocol: int = 2) -> Path:
    """A complete small CIFAR-10 or CIFAR-100 folder in the official python layout; returns the folder."""
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = {f"data_batch_{i}": ("labels", 10, i) for i in range(1, 6)} | {"test_batch": ("labels", 10, 9)}
        meta = ("batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
    else:
        folder = root / "cifar-100-python"
        files = {"train": ("fine_labels", 100, 1), "test": ("fine_labels", 100, 2)}
        meta = ("meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                         b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    folder.mkdir(parents=True)
    for name, (key, classes, seed) in files.items():
        (folder / name).write_bytes(pickle.dumps(cifar_batch(per_batch, key, classes, seed), protocol=protocol))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=protocol))
    return folder


def write_folder(root: Path, classes: dict[str, int], split: str = "train", size: int = 12) -> Path:
    """`count` real PNG images per class under root/split/<class>/ (a distinct solid colour per class)."""
    for c, (name, count) in enumerate(classes.items()):
        d = root / split / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (size, size), (40 * c % 256, 10 * i % 256, 200)).save(d / f"{i}.png")
    return root
