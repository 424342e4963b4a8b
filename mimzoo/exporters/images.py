"""Real images for verification and INT8 calibration: scikit-learn's digits or an image folder.

``"digits"`` needs nothing downloaded: 1,797 real 8x8 grey scans shipped inside scikit-learn,
upscaled 4x (nearest, every pixel a crisp block) to 32x32 RGB; the encoder's own transform then
resizes them. A folder is either ImageNet-style (one sub-folder per class: labelled, so the k-NN
check runs) or flat (unlabelled: numeric checks only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import ExportError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
DIGITS_UPSCALE = 4  # 8x8 -> 32x32, as mimzoo's evaluation data does
VIDEO_SPECS = ("moving-digits", "video-folder:")  # --data specs of clips, for video encoders


@dataclass(frozen=True)
class ImageSet:
    """A small set of real images, loaded in memory."""

    name: str  # "digits", "none" or the folder it was read from (reported as verification.data)
    images: tuple[Any, ...]  # RGB PIL images; for video data, clips (each a list of RGB PIL frames)
    labels: tuple[int, ...] | None  # class index per image; None when the source has no classes

    def __len__(self) -> int:
        return len(self.images)

    def split(self, n: int) -> tuple[ImageSet, ImageSet]:
        """The first `n` images and the rest, as two disjoint sets (verification vs calibration)."""
        head = ImageSet(self.name, self.images[:n], self.labels[:n] if self.labels else None)
        tail = ImageSet(self.name, self.images[n:], self.labels[n:] if self.labels else None)
        return head, tail


def load_images(data: str | Path | None, limit: int, *, seed: int = 0) -> ImageSet:
    """Up to `limit` images from `data` ("digits", an image folder, or None/"none" for no images).

    The subset is drawn with a fixed `seed`, so every run of an export sees the same images.

    >>> s = load_images("digits", 64)  # doctest: +SKIP
    >>> len(s), s.images[0].size, s.labels[:3]  # doctest: +SKIP
    (64, (32, 32), (4, 9, 1))
    """
    if data is None or str(data).lower() == "none" or limit <= 0:
        return ImageSet("none", (), None)
    if str(data).lower() == "digits":
        return _digits(limit, seed)
    if str(data).startswith(VIDEO_SPECS):
        return load_clips(str(data), limit, seed=seed)
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise ExportError(f"--data '{data}' is neither 'digits' nor an image folder; pass one of them (or 'none')")
    return _folder(folder, limit, seed)


def _subset(n: int, limit: int, seed: int) -> list[int]:
    """`limit` indices in a seeded random order; a smaller limit gives a prefix of a larger one, so the
    images an export was verified on are the first ones `mimzoo verify` draws again."""
    import numpy as np

    return np.random.default_rng(seed).permutation(n)[:limit].tolist()


def _digits(limit: int, seed: int) -> ImageSet:
    import numpy as np
    from PIL import Image

    from .._deps import require

    digits = require("sklearn.datasets").load_digits()
    pick = _subset(len(digits.images), limit, seed)
    arrays = np.clip(digits.images[pick] * (255.0 / 16.0), 0, 255).round().astype(np.uint8)  # [N, 8, 8]
    size = 8 * DIGITS_UPSCALE
    images = tuple(Image.fromarray(a, "L").resize((size, size), Image.NEAREST).convert("RGB") for a in arrays)
    return ImageSet("digits", images, tuple(int(digits.target[i]) for i in pick))


def load_clips(spec: str, limit: int, *, seed: int = 0, split: str = "eval") -> ImageSet:
    """Up to `limit` clips (each a list of RGB PIL frames, all of them: the encoder's transform samples its
    own) from the `split` ("eval" or "train") of a mimzoo video dataset (``moving-digits``,
    ``video-folder:PATH``), for video encoders. Verification reads the eval split; INT8 calibration the
    train split, so the two never share a clip however small the eval split is (moving-digits: 300)."""
    from ..data import open_dataset
    from ..errors import MimzooError

    try:
        source = open_dataset(spec)
    except MimzooError as e:
        raise ExportError(f"--data {spec}: {e}") from e
    part = source.eval if split == "eval" else source.train
    pick = _subset(len(part), limit, seed)
    return ImageSet(spec, tuple(part.image(i) for i in pick), tuple(int(part.label(i)) for i in pick))


def _folder(folder: Path, limit: int, seed: int) -> ImageSet:
    from PIL import Image

    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        files = [(f, i) for i, c in enumerate(classes) for f in sorted(c.rglob("*")) if _is_image(f)]
    else:
        files = [(f, -1) for f in sorted(folder.iterdir()) if _is_image(f)]
    if not files:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; pass a folder of images or 'digits'")
    picked = [files[i] for i in _subset(len(files), limit, seed)]
    images = []
    for path, _ in picked:
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        except OSError as e:
            raise ExportError(f"cannot read image {path} ({e}); remove it from {folder}") from e
    labels = tuple(label for _, label in picked) if classes else None
    return ImageSet(str(folder), tuple(images), labels)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
