"""What every dataset spec opens into: a source with named splits of (image, label) pairs.

A split is plain data that pickles cheaply (DataLoader workers get a copy): it can tell its
length, a label, and decode one image into a PIL image. Decoding is the only step that may
fail on a bad file; the loader counts those failures as skips instead of crashing mid-run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import MimzooError

TRAIN = "train"
EVAL = "eval"  # the held-out split of a source: "val" for folders, "test" for digits and CIFAR


class DataError(MimzooError):
    """A dataset spec cannot be opened or a split is unusable."""


class UnsafeDataError(DataError):
    """A data file tries to do more than hold data (e.g. a pickle that would run code)."""


class ImageSplit:
    """One split of a dataset: ``len(split)``, ``split.label(i)``, ``split.image(i)`` (PIL)."""

    name: str = ""  # the split's name in records: "train", "val" or "test"

    def __len__(self) -> int:
        raise NotImplementedError

    def label(self, i: int) -> int:
        raise NotImplementedError

    def labels(self) -> list[int]:
        """All labels, in index order."""
        return [self.label(i) for i in range(len(self))]

    def image(self, i: int) -> Any:
        """Decode image `i` into a PIL image; raises (OSError, ValueError, ...) on an unreadable file."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short string that changes when the split's content changes (for feature caches)."""
        raise NotImplementedError


class SubsetSplit(ImageSplit):
    """The images of `base` at `indices` (a subset for quick runs)."""

    def __init__(self, base: ImageSplit, indices: list[int]):
        self.base = base
        self.indices = list(indices)
        self.name = base.name

    def __len__(self) -> int:
        return len(self.indices)

    def label(self, i: int) -> int:
        return self.base.label(self.indices[i])

    def image(self, i: int) -> Any:
        return self.base.image(self.indices[i])

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(json.dumps(self.indices).encode(), digest_size=8).hexdigest()
        return f"{self.base.fingerprint()}|subset:{len(self.indices)}:{digest}"


@dataclass(frozen=True)
class DataSource:
    """An opened dataset spec."""

    name: str  # public name for records and cards: "digits", "cifar10", "cifar100" or the folder's name
    spec: str  # the spec as the user wrote it
    classes: tuple[str, ...]  # class names; label i is classes[i]
    train: ImageSplit  # the split heads are trained on (and k-NN's memory bank)
    eval: ImageSplit  # the split metrics are measured on
    flip_ok: bool = True  # whether a horizontal flip keeps an image's class (not for digits)
    crop_ok: bool = True  # whether random crops keep the class (not for 8x8 digits: a crop cuts the glyph)
    video: bool = False  # whether an item is a clip (a list of PIL frames, see ClipSplit) rather than one image

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, which: str) -> ImageSplit:
        """The ``"train"`` or ``"eval"`` split."""
        if which == TRAIN:
            return self.train
        if which == EVAL:
            return self.eval
        raise DataError(f"unknown split '{which}'; use 'train' or 'eval'")


class ClipSplit(ImageSplit):
    """A split of video clips: ``split.image(i)`` is a list of PIL frames, sampled by :meth:`sampled`.

    Sampling is a model's business (its ``Preprocess.num_frames`` and ``frame_stride``): evaluation binds
    them with ``split.sampled(n, stride)``, which takes ``n`` frames ``stride`` apart from the middle of
    each clip (center sampling, deterministic; the same frames as ``mimzoo.encoders.video.clip_indices``).
    A clip shorter than the ``(n - 1) * stride + 1`` frames that needs is refused (a ``ValueError`` naming
    it, which the loader reports as a skip) rather than padded with repeats of its last frame, as the
    encoder's own transform would pad a short list. Unbound (``num_frames`` None), every frame is returned.
    """

    num_frames: int | None = None  # frames per sampled clip (None: all)
    frame_stride: int = 1  # step between sampled frames

    def frame_count(self, i: int) -> int | None:
        """Frames in clip `i` when known without decoding (None otherwise)."""
        return None

    def sampled(self, num_frames: int | None, frame_stride: int = 1) -> ClipSplit:
        """The same clips, each sampled to `num_frames` frames `frame_stride` apart (center sampling)."""
        import copy

        if num_frames is not None and (num_frames < 1 or frame_stride < 1):
            raise DataError(f"num_frames {num_frames} and frame_stride {frame_stride} must be at least 1")
        out = copy.copy(self)
        out.num_frames, out.frame_stride = num_frames, frame_stride
        return out

    def pick(self, total: int, what: str) -> list[int]:
        """The frame indices of a `total`-frame clip this split samples (``what`` names it in errors)."""
        if self.num_frames is None:
            return list(range(total))
        span = (self.num_frames - 1) * self.frame_stride + 1
        if total < span:
            raise ValueError(f"{what} has {total} frames; {self.num_frames} frames at stride {self.frame_stride} "
                             f"need {span}: use longer clips or a model with fewer frames")
        start = (total - span) // 2  # the frames encoders.video.clip_indices picks
        return list(range(start, start + span, self.frame_stride))

    def sampling_tag(self) -> str:
        """The sampling, for fingerprints: ``frames:all`` or ``frames:16x2``."""
        return "frames:all" if self.num_frames is None else f"frames:{self.num_frames}x{self.frame_stride}"


def subset(split: ImageSplit, n: int | None, seed: int = 0) -> ImageSplit:
    """At most `n` images of `split`, picked by a seeded shuffle (so every class shows up), in index order.

    >>> len(subset(source.train, 300))  # doctest: +SKIP
    300
    """
    if n is None or n >= len(split):
        return split
    if n <= 0:
        raise DataError(f"subset size must be positive, got {n}")
    import numpy as np

    picked = np.random.default_rng(seed).permutation(len(split))[:n]
    return SubsetSplit(split, sorted(int(i) for i in picked))
