"""Image folders in the ImageNet layout: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*.jpg``."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from .base import DataError, DataSource, ImageSplit

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
LAYOUT_HINT = "an image folder needs train/<class>/<image> and val/<class>/<image>"


class FileSplit(ImageSplit):
    """Image files on disk with their labels."""

    def __init__(self, name: str, root: Path, files: list[tuple[str, int]], fingerprint: str):
        self.name = name
        self.root = root
        self.files = files  # (path relative to root, label)
        self._fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.files)

    def label(self, i: int) -> int:
        return self.files[i][1]

    def labels(self) -> list[int]:
        return [lab for _, lab in self.files]

    def path(self, i: int) -> Path:
        return self.root / self.files[i][0]

    def image(self, i: int) -> Any:
        from PIL import Image

        with Image.open(self.path(i)) as img:
            img.load()  # decode now: a truncated file fails here, inside the loader's guard
            return img.convert("RGB")

    def fingerprint(self) -> str:
        return self._fingerprint


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan(root: Path, split: str, classes: list[str]) -> FileSplit:
    split_dir = root / split
    files: list[tuple[str, int]] = []
    h = hashlib.blake2b(digest_size=12)
    ignored = 0
    for label, cls in enumerate(classes):
        cls_dir = split_dir / cls
        if not cls_dir.is_dir():
            continue
        found = 0
        for dirpath, dirnames, names in os.walk(cls_dir, followlinks=True):
            dirnames.sort()
            for name in sorted(names):
                full = Path(dirpath) / name
                if full.suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                    ignored += 1
                    continue
                rel = full.relative_to(split_dir).as_posix()
                st = full.stat()
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                files.append((rel, label))
                found += 1
        if found == 0:
            raise DataError(f"class '{cls}' in {split_dir} has no images; add images or remove the folder")
    if ignored:
        log.warning("ignored %d files without an image suffix in %s", ignored, split_dir)
    return FileSplit(split, split_dir, files, f"folder:{split_dir.resolve()}:{len(files)}:{h.hexdigest()}")


def open_folder(path: str | Path, spec: str) -> DataSource:
    """An ImageNet-style folder: class names from ``train/``'s sub-folders, metrics on ``val/``.

    >>> src = open_folder("~/data/imagenette", "~/data/imagenette")  # doctest: +SKIP
    >>> src.num_classes, len(src.train), len(src.eval)  # doctest: +SKIP
    (10, 9469, 3925)
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"no dataset folder at '{root}'; pass digits, cifar10:PATH, cifar100:PATH or an image folder")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"{root} has no {split}/ folder; {LAYOUT_HINT}")
    classes = _class_dirs(root / "train")
    if not classes:
        raise DataError(f"{root / 'train'} has no class folders; {LAYOUT_HINT}")
    unknown = sorted(set(_class_dirs(root / "val")) - set(classes))
    if unknown:
        raise DataError(f"{root / 'val'} has classes not in train/ ({', '.join(unknown[:5])}); "
                        "give both splits the same class folders")
    train, val = _scan(root, "train", classes), _scan(root, "val", classes)
    if len(val) == 0:
        raise DataError(f"{root / 'val'} has no images; {LAYOUT_HINT}")
    return DataSource(name=root.resolve().name, spec=spec, classes=tuple(classes), train=train, eval=val)
