"""Your own segmentation data: ``seg-folder:PATH`` with images and label masks matched by file stem.

Either one pool, split here (a fixed, seeded 75/25)::

    PATH/images/cat1.jpg   PATH/masks/cat1.png   [PATH/classes.txt]

or your own split::

    PATH/train/images/  PATH/train/masks/  PATH/val/images/  PATH/val/masks/  [PATH/classes.txt]

Masks are index PNGs: palette (mode P) or greyscale (mode L), one class number per pixel, 255 =
ignore. ``classes.txt`` names the classes, line i naming label i; without it the classes are
``0..max`` of the labels found in the masks (every mask is read once when the folder opens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import DataError
from .base import IGNORE, FileSegSplit, SegSource, check_labels, paired_files

HINT = "seg-folder:PATH needs images/ and masks/ (or train/ and val/ each holding both), masks as index PNGs"
TEST_FRACTION = 0.25
SPLIT_SEED = 0


class FolderLabels:
    """Checks a folder's masks against its class count (a class, so DataLoader workers can pickle it)."""

    __name__ = "folder_labels"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, raw: Any, where: str) -> Any:
        return check_labels(raw, self.num_classes, where, "name every label in classes.txt (line i = label i) or "
                            f"fix the mask; {IGNORE} marks pixels to ignore")


def _pairs(root: Path, images: Path, masks: Path) -> list[tuple[str, str]]:
    return paired_files(root, images, masks, HINT)


def _classes(root: Path, all_pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    listed = root / "classes.txt"
    if listed.is_file():
        names = [s.strip() for s in listed.read_text(encoding="utf-8").splitlines() if s.strip()]
        if not names:
            raise DataError(f"{listed} names no classes; write one class name per line (line i = label i)")
        return tuple(names)
    import numpy as np
    from PIL import Image

    top = -1
    for _, rel in all_pairs:
        with Image.open(root / rel) as m:
            values = np.unique(np.asarray(m))
        values = values[values != IGNORE]
        top = max(top, int(values.max()) if values.size else -1)
    if top < 0:
        raise DataError(f"the masks in {root} hold no labels (only {IGNORE} = ignore); check the masks")
    return tuple(str(i) for i in range(top + 1))


def open_seg_folder(path: str, spec: str) -> SegSource:
    """A folder of images and index-PNG masks (see the module docstring for both layouts).

    >>> open_seg_folder("~/data/leaves", "seg-folder:~/data/leaves").classes  # doctest: +SKIP
    ('background', 'leaf', 'spot')
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"no folder at '{root}'; {HINT}")
    if (root / "train").is_dir() or (root / "val").is_dir():
        train = _pairs(root, root / "train" / "images", root / "train" / "masks")
        val = _pairs(root, root / "val" / "images", root / "val" / "masks")
    else:
        pool = _pairs(root, root / "images", root / "masks")
        if len(pool) < 2:
            raise DataError(f"{root} holds {len(pool)} image; a train/test split needs at least 2")
        import numpy as np

        order = np.random.default_rng(SPLIT_SEED).permutation(len(pool))
        n_test = max(1, round(len(pool) * TEST_FRACTION))
        val = [pool[i] for i in sorted(order[:n_test])]
        train = [pool[i] for i in sorted(order[n_test:])]
    classes = _classes(root, train + val)
    labels = FolderLabels(len(classes))
    return SegSource(name=root.resolve().name, spec=spec, classes=classes,
                     train=FileSegSplit("train", root, train, labels), eval=FileSegSplit("val", root, val, labels))
