"""digit-scenes: offline, deterministic segmentation scenes built from scikit-learn's real digits.

Each scene is a 64x64 RGB canvas (black background) holding 2 to 4 handwritten digits pasted at
seeded random places and scales (each 8x8 glyph upscaled 2x, 3x or 4x with nearest neighbour, so
16 to 32 pixels wide). Later digits are on top (z-order) and occlude earlier ones; a placement that
would cover more than a third of the digits already there is re-drawn.

Labels per pixel: 0 = background, 1..10 = digits 0..9 (``classes = ("background", "0", ..., "9")``),
255 = ignore. A glyph pixel of ink 4..16 (of sklearn's 0..16) is its digit; ink 1..3 (faint stroke
edges, which a person could call either way) is 255; ink 0 is transparent (it shows what lies below).

Splits: 1,000 train scenes from the 1,347 train digits of ``--data digits``' fixed split and 250
test scenes from its 450 test digits, so no test glyph is seen in training (nor, for mae-vit-digits,
in pretraining). Scene ``i`` of a split is a pure function of (split, i): nothing is stored, every
run and every process sees the same pixels.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .segmentation.base import IGNORE, SegSource, SegSplit

CANVAS = 64  # scene side in pixels
SCALES = (2, 3, 4)  # glyph upscale factors: 16, 24 or 32 px digits
DIGITS_PER_SCENE = (2, 4)  # inclusive range
INK, FAINT = 4, 1  # glyph value >= INK: the digit; FAINT..INK-1: ignore; 0: transparent
MAX_COVER = 1 / 3  # a new digit may hide at most this share of the ink already placed
SIZES = {"train": 1000, "test": 250}
SEED = 2026  # scenes are drawn from rng(SEED, split, index)
VERSION = "1"  # bump when the drawing rules change (feature caches key on it)
CLASSES = ("background", *(str(d) for d in range(10)))


class SceneSplit(SegSplit):
    """`size` scenes drawn from the glyphs ``[M, 8, 8]`` (values 0..16) and their digit labels."""

    def __init__(self, name: str, glyphs: Any, digits: Any, size: int, tag: str):
        self.name, self.glyphs, self.digits, self.size, self.tag = name, glyphs, digits, size, tag
        self._split_id = 0 if name == "train" else 1

    def __len__(self) -> int:
        return self.size

    def scene(self, i: int) -> tuple[Any, Any]:
        """(ink ``[64, 64]`` uint8 0..16, labels ``[64, 64]`` uint8) of scene `i`."""
        import numpy as np

        if not 0 <= i < self.size:
            raise IndexError(i)
        rng = np.random.default_rng([SEED, self._split_id, i])
        ink = np.zeros((CANVAS, CANVAS), np.uint8)
        labels = np.zeros((CANVAS, CANVAS), np.uint8)
        for _ in range(int(rng.integers(DIGITS_PER_SCENE[0], DIGITS_PER_SCENE[1] + 1))):
            g = int(rng.integers(len(self.glyphs)))
            s = int(rng.choice(SCALES))
            glyph = np.kron(self.glyphs[g], np.ones((s, s), np.uint8))  # nearest-neighbour upscale
            side = glyph.shape[0]
            for _try in range(10):  # re-draw placements that would bury the digits already there
                y, x = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
                covered = (labels[y:y + side, x:x + side] > 0) & (glyph > 0)
                if covered.sum() <= MAX_COVER * max(1, int((labels > 0).sum())):
                    break
            on = glyph > 0
            ink[y:y + side, x:x + side][on] = glyph[on]
            lab = np.where(glyph >= INK, self.digits[g] + 1, IGNORE).astype(np.uint8)
            labels[y:y + side, x:x + side][on] = lab[on]
        return ink, labels

    def image(self, i: int) -> Any:
        from PIL import Image

        ink, _ = self.scene(i)
        grey = (ink.astype("uint16") * 255 // 16).astype("uint8")  # 0..16 -> 0..255, as --data digits
        return Image.fromarray(grey, "L").convert("RGB")

    def mask(self, i: int) -> Any:
        return self.scene(i)[1]

    def describe(self, i: int) -> str:
        return f"digit-scenes {self.name} scene {i}"

    def fingerprint(self) -> str:
        h = hashlib.blake2b(self.glyphs.tobytes(), digest_size=12)
        h.update(bytes(str(list(self.digits)), "ascii"))
        return f"{self.tag}:v{VERSION}:{self.name}:{self.size}:{h.hexdigest()}"


def open_digit_scenes(spec: str = "digit-scenes") -> SegSource:
    """digit-scenes as a :class:`SegSource` (1,000 train / 250 test scenes, 11 classes).

    >>> src = open_digit_scenes()  # doctest: +SKIP
    >>> src.train.mask(0).shape, src.classes[:3]  # doctest: +SKIP
    ((64, 64), ('background', '0', '1'))
    """
    import numpy as np
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .digits import SPLIT_SEED, TEST_FRACTION

    digits = load_digits()
    glyphs = np.clip(np.rint(digits.images), 0, 16).astype(np.uint8)
    idx_train, idx_test = train_test_split(np.arange(len(glyphs)), test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                                           stratify=digits.target)
    tag = f"digit-scenes(sklearn-{sklearn.__version__})"
    make = lambda name, idx: SceneSplit(name, glyphs[idx], digits.target[idx], SIZES[name], tag)  # noqa: E731
    return SegSource(name="digit-scenes", spec=spec, classes=CLASSES, train=make("train", idx_train),
                     eval=make("test", idx_test))
