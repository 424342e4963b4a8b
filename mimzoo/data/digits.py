"""scikit-learn's digits: 1,797 real 8x8 grey scans of handwritten digits, shipped inside sklearn.

The offline default dataset: no download, ten classes. Images are upscaled to 32x32 RGB PIL
images (nearest neighbour, so every original pixel stays a crisp 4x4 block); the encoder's own
transform then resizes them to its input size. The held-out split is a fixed, stratified 25%.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .base import DataSource, ImageSplit

UPSCALE = 4  # 8x8 -> 32x32
TEST_FRACTION = 0.25  # share of each class held out as the "test" split
SPLIT_SEED = 0  # fixed, so every run and every process sees the same split


class ArraySplit(ImageSplit):
    """Images held in memory as a uint8 array ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB)."""

    def __init__(self, name: str, images: Any, labels: Any, tag: str, upscale: int = 1):
        self.name = name
        self.images = images  # numpy uint8
        self._labels = [int(v) for v in labels]
        self.upscale = upscale
        self.tag = tag  # what these arrays are, for the fingerprint

    def __len__(self) -> int:
        return len(self._labels)

    def label(self, i: int) -> int:
        return self._labels[i]

    def labels(self) -> list[int]:
        return list(self._labels)

    def image(self, i: int) -> Any:
        from PIL import Image

        arr = self.images[i]
        img = Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB")
        if self.upscale != 1:
            img = img.resize((img.width * self.upscale, img.height * self.upscale), Image.NEAREST)
        return img.convert("RGB")

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=12)
        h.update(self.images.tobytes())
        h.update(bytes(str(self._labels), "ascii"))
        return f"{self.tag}:{self.name}:{len(self)}:{h.hexdigest()}"


def open_digits(spec: str = "digits") -> DataSource:
    """scikit-learn's digits as a :class:`DataSource` (train 1,347 / test 450 images, 10 classes).

    >>> src = open_digits()  # doctest: +SKIP
    >>> len(src.train), len(src.eval), src.classes[:3]  # doctest: +SKIP
    (1347, 450, ('0', '1', '2'))
    """
    import numpy as np
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    tag = f"digits(sklearn-{sklearn.__version__})"
    make = lambda name, idx: ArraySplit(name, images[idx], digits.target[idx], tag, UPSCALE)  # noqa: E731
    return DataSource(
        name="digits", spec=spec, classes=tuple(str(c) for c in range(10)),
        train=make("train", idx_train), eval=make("test", idx_test), flip_ok=False, crop_ok=False,
    )
