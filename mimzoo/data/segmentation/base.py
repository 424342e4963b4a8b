"""What every segmentation spec opens into: a source with splits of (image, per-pixel label mask) pairs.

A mask is a ``uint8`` array ``[H, W]`` the size of its image: ``0..K-1`` are the classes of
``SegSource.classes`` and :data:`IGNORE` (255) marks pixels that count nowhere (VOC's void
boundary, ADE20K's "other", digit-scenes' faint strokes). Splits are plain data that pickle
cheaply; decoding is the only step that may fail on a bad file, and a mask whose labels or size do
not fit raises :class:`~mimzoo.data.base.DataError` (a data error, not a skipped file).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import DataError

IGNORE = 255  # label of pixels that are neither trained on nor measured


class SegSplit:
    """One split: ``len(split)``, ``split.image(i)`` (PIL RGB), ``split.mask(i)`` (uint8 ``[H, W]``)."""

    name: str = ""  # "train", "val" or "test"

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, i: int) -> Any:
        raise NotImplementedError

    def mask(self, i: int) -> Any:
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """Where item `i` comes from, for error messages."""
        return f"{self.name} item {i}"

    def fingerprint(self) -> str:
        """A short string that changes when the split's content changes (for feature caches)."""
        raise NotImplementedError


class SegSubset(SegSplit):
    """The items of `base` at `indices`."""

    def __init__(self, base: SegSplit, indices: list[int]):
        self.base, self.indices, self.name = base, list(indices), base.name

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> Any:
        return self.base.image(self.indices[i])

    def mask(self, i: int) -> Any:
        return self.base.mask(self.indices[i])

    def describe(self, i: int) -> str:
        return self.base.describe(self.indices[i])

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(repr(self.indices).encode(), digest_size=8).hexdigest()
        return f"{self.base.fingerprint()}|subset:{len(self.indices)}:{digest}"


@dataclass(frozen=True)
class SegSource:
    """An opened segmentation spec."""

    name: str  # public name for records and cards: "digit-scenes", "ade20k", "voc2012" or the folder's name
    spec: str  # the spec as the user wrote it
    classes: tuple[str, ...]  # class names; label i is classes[i] (IGNORE is not a class)
    train: SegSplit  # the split the head is trained on
    eval: SegSplit  # the split mIoU is measured on

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def seg_subset(split: SegSplit, n: int | None, seed: int = 0) -> SegSplit:
    """At most `n` items of `split`, picked by a seeded shuffle, in index order."""
    if n is None or n >= len(split):
        return split
    if n <= 0:
        raise DataError(f"subset size must be positive, got {n}")
    import numpy as np

    picked = np.random.default_rng(seed).permutation(len(split))[:n]
    return SegSubset(split, sorted(int(i) for i in picked))


# A mask decoder turns the label PNG's raw values into labels; it raises DataError on unknown values.
MaskMap = Callable[[Any, str], Any]


class FileSegSplit(SegSplit):
    """Image files and label PNGs on disk, paired by the reader that scanned them."""

    def __init__(self, name: str, root: Path, pairs: list[tuple[str, str]], to_labels: MaskMap):
        self.name = name
        self.root = root
        self.pairs = pairs  # (image path, mask path), relative to root
        self.to_labels = to_labels  # raw mask values -> labels (a module-level function: workers pickle it)
        h = hashlib.blake2b(digest_size=12)
        for img, msk in pairs:
            for rel in (img, msk):
                st = os.stat(root / rel)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        labels = getattr(to_labels, "__name__", "")
        self._fingerprint = f"seg:{root.resolve()}:{name}:{len(pairs)}:{h.hexdigest()}:{labels}"

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, i: int) -> Any:
        from PIL import Image

        with Image.open(self.root / self.pairs[i][0]) as img:
            img.load()
            return img.convert("RGB")

    def mask(self, i: int) -> Any:
        import numpy as np
        from PIL import Image

        path = self.root / self.pairs[i][1]
        with Image.open(path) as m:
            m.load()
            if m.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"mask {path} is a {m.mode} image; label masks must be index PNGs (mode P or L) "
                                "holding one class number per pixel")
            raw = np.asarray(m)
        return self.to_labels(raw, str(path))

    def describe(self, i: int) -> str:
        return str(self.root / self.pairs[i][0])

    def fingerprint(self) -> str:
        return self._fingerprint


def check_labels(labels: Any, num_classes: int, where: str, fix: str) -> Any:
    """`labels` as uint8, refusing values that are neither a class (< num_classes) nor IGNORE."""
    import numpy as np

    bad = np.unique(labels[(labels >= num_classes) & (labels != IGNORE)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5])
        raise DataError(f"mask {where} has labels {shown} outside 0..{num_classes - 1} (and {IGNORE} = ignore); {fix}")
    return labels.astype(np.uint8)


def pair_by_stem(images: Path, masks: Path, mask_suffix: str = ".png") -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) pairs of two folders matched by file stem, and the image stems without a mask."""
    from ..folder import IMAGE_SUFFIXES

    found = {p.stem: p for p in sorted(masks.iterdir())
             if p.suffix.lower() == mask_suffix and not p.name.startswith(".")}
    pairs, missing = [], []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        if p.stem in found:
            pairs.append((p, found[p.stem]))
        else:
            missing.append(p.stem)
    return pairs, missing


def paired_files(root: Path, images: Path, masks: Path, hint: str, mask_word: str = "mask") -> list[tuple[str, str]]:
    """(image, mask) paths relative to `root`, matched by stem; one-line errors for a missing folder, an image
    without its mask PNG, or no images at all (`hint` says what the layout should be)."""
    for folder in (images, masks):
        if not folder.is_dir():
            raise DataError(f"{root} has no {folder.relative_to(root)}/ folder; {hint}")
    pairs, missing = pair_by_stem(images, masks)
    if missing:
        raise DataError(f"{len(missing)} images in {images} have no {mask_word} (first: {missing[0]}); "
                        f"put <stem>.png for each into {masks}")
    if not pairs:
        raise DataError(f"{images} has no images; {hint}")
    return [(i.relative_to(root).as_posix(), m.relative_to(root).as_posix()) for i, m in pairs]
