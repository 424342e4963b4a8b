"""ADE20K scene parsing (the MIT SceneParsing benchmark, ``ADEChallengeData2016``), the split DINOv2 and MAE report.

Layout (the official zip, unchanged)::

    ADEChallengeData2016/
        images/training/ADE_train_00000001.jpg      annotations/training/ADE_train_00000001.png
        images/validation/ADE_val_00000001.jpg      annotations/validation/ADE_val_00000001.png
        objectInfo150.txt                           (optional: class names)

Annotation PNGs hold 0 = "other" and 1..150 = the 150 classes. mimzoo follows the standard
``reduce_zero_label`` protocol (mmsegmentation, DINOv2, MAE): 0 becomes 255 (ignored), and
1..150 become labels 0..149. mIoU is over those 150 classes, on ``validation`` (2,000 images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import DataError
from .base import IGNORE, FileSegSplit, SegSource, check_labels, paired_files

NUM_CLASSES = 150
HINT = ("ade20k:PATH needs ADEChallengeData2016/ with images/{training,validation}/ and "
        "annotations/{training,validation}/")


def ade_labels(raw: Any, where: str) -> Any:
    """0 ("other") -> 255 (ignore); 1..150 -> 0..149."""
    import numpy as np

    raw = check_labels(raw, NUM_CLASSES + 1, where, "ADE20K annotations hold 0..150; is this the 150-class "
                       "SceneParsing release (ADEChallengeData2016)?")
    if (raw == IGNORE).any():
        raise DataError(f"mask {where} has label {IGNORE}; ADE20K annotations hold 0..150 (0 = other)")
    return np.where(raw == 0, IGNORE, raw.astype(np.int32) - 1).astype(np.uint8)


def _root(path: Path) -> Path:
    for cand in (path, path / "ADEChallengeData2016"):
        if (cand / "images").is_dir() or (cand / "annotations").is_dir():
            return cand
    raise DataError(f"no images/ or annotations/ folder in {path}; {HINT}")


def _names(root: Path) -> tuple[str, ...]:
    info = root / "objectInfo150.txt"
    if info.is_file():  # "Idx  Ratio  Train  Val  Name" rows, tab-separated; names may list synonyms ("wall")
        rows = [r.split("\t") for r in info.read_text(encoding="utf-8", errors="replace").splitlines()[1:] if r.strip()]
        names = [r[-1].split(";")[0].strip() for r in rows if len(r) >= 5]
        if len(names) == NUM_CLASSES:
            return tuple(names)
    return tuple(f"class{i}" for i in range(1, NUM_CLASSES + 1))


def _split(root: Path, which: str, name: str) -> FileSegSplit:
    rel = paired_files(root, root / "images" / which, root / "annotations" / which, HINT, "annotation PNG")
    return FileSegSplit(name, root, rel, ade_labels)


def open_ade20k(path: str, spec: str) -> SegSource:
    """ADE20K from its official folder (``ADEChallengeData2016`` or the folder holding it).

    >>> src = open_ade20k("~/data/ADEChallengeData2016", "ade20k:~/data/ADEChallengeData2016")  # doctest: +SKIP
    >>> src.num_classes, len(src.train), len(src.eval)  # doctest: +SKIP
    (150, 20210, 2000)
    """
    root = _root(Path(path).expanduser())
    return SegSource(name="ade20k", spec=spec, classes=_names(root), train=_split(root, "training", "train"),
                     eval=_split(root, "validation", "val"))
