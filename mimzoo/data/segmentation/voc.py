"""PASCAL VOC 2012 semantic segmentation (``VOCdevkit/VOC2012``): 21 classes, background included.

Layout (the official tar, unchanged)::

    VOCdevkit/VOC2012/
        JPEGImages/2007_000032.jpg
        SegmentationClass/2007_000032.png            palette PNGs: index 0..20 per pixel, 255 = void
        ImageSets/Segmentation/train.txt, val.txt    one image id per line

The palette index is the label (0 = background, 1..20 the objects); 255 (the void boundary
around objects) is ignored. Trained on ``train`` (1,464 images), measured on ``val`` (1,449).
SegmentationClassAug (SBD's extra 10,582) is not read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import DataError
from .base import FileSegSplit, SegSource, check_labels

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
HINT = ("voc:PATH needs VOCdevkit/VOC2012/ (or that folder) with JPEGImages/, SegmentationClass/ and "
        "ImageSets/Segmentation/{train,val}.txt")


def voc_labels(raw: Any, where: str) -> Any:
    """Palette indices are the labels; 255 stays 'ignore'; anything else past 20 is refused."""
    return check_labels(raw, len(CLASSES), where, "VOC masks hold 0..20 and 255 (void); point voc: at VOC2012")


def _root(path: Path) -> Path:
    for cand in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() or (cand / "SegmentationClass").is_dir():
            return cand
    raise DataError(f"no JPEGImages/ or SegmentationClass/ in {path}; {HINT}")


def _split(root: Path, which: str) -> FileSegSplit:
    for need in ("JPEGImages", "SegmentationClass", f"ImageSets/Segmentation/{which}.txt"):
        if not (root / need).exists():
            raise DataError(f"{root} has no {need}; {HINT}")
    ids = [s.strip() for s in (root / f"ImageSets/Segmentation/{which}.txt").read_text().splitlines() if s.strip()]
    if not ids:
        raise DataError(f"{root}/ImageSets/Segmentation/{which}.txt lists no images; {HINT}")
    pairs = [(f"JPEGImages/{i}.jpg", f"SegmentationClass/{i}.png") for i in ids]
    for img, msk in pairs:
        for rel in (img, msk):
            if not (root / rel).is_file():
                raise DataError(f"{which}.txt lists {Path(rel).stem} but {root / rel} does not exist; "
                                "restore the file or remove the id from the list")
    return FileSegSplit("train" if which == "train" else "val", root, pairs, voc_labels)


def open_voc(path: str, spec: str) -> SegSource:
    """VOC 2012 segmentation from ``VOCdevkit``, ``VOCdevkit/VOC2012`` or the folder holding ``VOCdevkit``.

    >>> open_voc("~/data/VOCdevkit", "voc:~/data/VOCdevkit").num_classes  # doctest: +SKIP
    21
    """
    root = _root(Path(path).expanduser())
    return SegSource(name="voc2012", spec=spec, classes=CLASSES, train=_split(root, "train"), eval=_split(root, "val"))
