"""Unlabelled images for pretraining, with augmentation that depends only on (seed, epoch, index).

Specs:

- ``digits``: scikit-learn's handwritten digits, the training split only (the same stratified 75%
  that ``mimzoo eval --data digits`` trains its heads on, so its test split stays unseen), each
  8x8 image upscaled 4x with nearest neighbour to a 32x32 RGB image;
- ``PATH`` or ``folder:PATH``: every image file under a folder (recursively; labels are ignored);
- ``moving-digits[:...]`` / ``video-folder:PATH``: clips ``[C, T, H, W]`` for video models (the train
  split; see :mod:`mimzoo.data.moving_digits`): each sample takes the encoder's ``num_frames`` frames
  ``frame_stride`` apart from a random start (seeded like the crop), one crop box for every frame.

Every sample is augmented with its own ``torch.Generator`` seeded from ``(seed, epoch, index)``,
so an image looks the same whichever process, worker or resumed run loads it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import MimzooError
from ..registry.contract import Preprocess
from .recipe import Augment

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED, DIGITS_UPSCALE = 0.25, 0, 4  # the eval split of mimzoo.data.digits


class PretrainDataError(MimzooError):
    """A pretraining data spec cannot be opened."""


class ImageSource:
    """Images ``[C, H, W]`` float in [0, 1], before augmentation."""

    name = ""
    interpolation = "bilinear"  # resampling used by the random resized crop
    flip_ok = True  # horizontal flips keep the meaning

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, i: int) -> torch.Tensor:
        raise NotImplementedError


class DigitsSource(ImageSource):
    """scikit-learn digits (training split), 32x32 RGB, crisp 4x4 blocks per original pixel."""

    name, interpolation, flip_ok = "digits", "nearest", False

    def __init__(self, split: str = "train"):
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        idx_train, idx_test = train_test_split(np.arange(len(digits.images)), test_size=DIGITS_TEST_FRACTION,
                                               random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
        idx = idx_train if split == "train" else idx_test
        grey = np.clip(np.rint(digits.images[idx] * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # like mimzoo.data
        x = torch.from_numpy(grey).float().div_(255.0).unsqueeze(1)  # [N, 1, 8, 8]
        x = x.repeat_interleave(DIGITS_UPSCALE, 2).repeat_interleave(DIGITS_UPSCALE, 3)
        self.images = x.expand(-1, 3, -1, -1).contiguous()  # [N, 3, 32, 32]
        self.labels = torch.from_numpy(digits.target[idx]).long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def image(self, i: int) -> torch.Tensor:
        return self.images[i]


class FolderSource(ImageSource):
    """Every image under a folder, sorted by path."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise PretrainDataError(f"no folder at '{self.root}'; pass --data digits or a folder of images")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise PretrainDataError(f"'{self.root}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        with Image.open(self.files[i]) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


class ClipSource(ImageSource):
    """The train split of a video dataset spec: ``image(i)`` is every frame of clip i, ``[C, T, H, W]`` in [0, 1]."""

    def __init__(self, spec: str):
        from ..data import DataError, open_dataset

        try:
            src = open_dataset(spec)
        except DataError as e:
            raise PretrainDataError(str(e)) from e
        self.split, self.name = src.train, src.name
        self.flip_ok = src.flip_ok
        self.interpolation = "bilinear"

    def __len__(self) -> int:
        return len(self.split)

    def image(self, i: int) -> torch.Tensor:
        import numpy as np

        frames = np.stack([np.asarray(f, dtype=np.uint8) for f in self.split.image(i)])  # [T, H, W, 3]
        return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(255.0)


def open_source(spec: str) -> ImageSource:
    """``"digits"``, ``"folder:PATH"`` or ``PATH``; ``moving-digits[:...]`` or ``video-folder:PATH`` for clips."""
    if not isinstance(spec, str) or not spec.strip():
        raise PretrainDataError("empty --data; pass digits or a folder of images")
    spec = spec.strip()
    if spec == "digits":
        return DigitsSource("train")
    if spec.partition(":")[0] in ("moving-digits", "video-folder"):
        return ClipSource(spec)
    return FolderSource(spec.removeprefix("folder:"))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample: a fixed mix of the run seed, epoch and index."""
    return (seed * 1_000_003 + epoch * 998_244_353 + index * 2_654_435_761) % (2**63 - 1)


class Augmenter:
    """Random resized crop (+ optional flip) to the encoder's input size, then normalisation.

    With several views (``augment.global_crops > 1`` or ``local_crops``: iBOT/DINO's multi-crop),
    :meth:`views` gives the global views ``[G, C, H, W]``, or ``([G, C, H, W], [V, C, h, w])`` with
    local ones (side ``augment.local_size``, default 96/224 of the input in whole ``patch`` units).
    """

    def __init__(self, preprocess: Preprocess, augment: Augment, source: ImageSource, patch: int = 1):
        self.size = tuple(preprocess.input_size[1:])
        self.channels = preprocess.input_size[0]
        self.mean = torch.tensor(preprocess.mean).view(-1, 1, 1)
        self.std = torch.tensor(preprocess.std).view(-1, 1, 1)
        self.scale, self.flip = augment.crop_scale, augment.hflip and source.flip_ok
        self.mode = source.interpolation
        self.frames = (getattr(preprocess, "num_frames", None), getattr(preprocess, "frame_stride", 1) or 1)
        self.global_crops, self.local_crops = augment.global_crops, augment.local_crops
        self.local_scale = augment.local_crop_scale
        side = augment.local_size or max(patch, round(self.size[0] * 96 / 224 / patch) * patch)
        self.local_size = (side, side)
        self.multi_view = self.global_crops > 1 or self.local_crops > 0

    def views(self, img: torch.Tensor, gen: torch.Generator) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The global views ``[G, C, H, W]``, plus the local ones ``[V, C, h, w]`` when there are any."""
        glob = torch.stack([self(img, gen) for _ in range(self.global_crops)])
        if not self.local_crops:
            return glob
        return glob, torch.stack([self(img, gen, self.local_size, self.local_scale) for _ in range(self.local_crops)])

    def __call__(self, img: torch.Tensor, gen: torch.Generator, size: tuple[int, int] | None = None,
                 scale: tuple[float, float] | None = None) -> torch.Tensor:
        """``[C, H, W]`` -> ``[C, h, w]``; a clip ``[C, T, H, W]`` -> ``[C, num_frames, h, w]``."""
        clip = img.ndim == 4
        if clip:
            img = self._frames(img, gen).transpose(0, 1)  # [T', C, H, W]: frames as a batch, one crop for all
        top, left, h, w = self._crop_box(img.shape[-2], img.shape[-1], gen, scale or self.scale)
        x = img[..., top : top + h, left : left + w]
        x = x if clip else x.unsqueeze(0)
        kwargs = {} if self.mode == "nearest" else {"align_corners": False, "antialias": True}
        x = F.interpolate(x, size=size or self.size, mode=self.mode, **kwargs).clamp_(0.0, 1.0)
        if self.flip and torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        if x.shape[1] != self.channels:
            x = x[:, : self.channels] if self.channels < x.shape[1] else x.expand(-1, self.channels, -1, -1)
        x = (x - self.mean) / self.std
        return x.transpose(0, 1) if clip else x.squeeze(0)

    def _frames(self, clip: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """`num_frames` frames `frame_stride` apart from a seeded random start (all frames without num_frames)."""
        n, stride = self.frames
        if n is None:
            return clip
        span, total = (n - 1) * stride + 1, clip.shape[1]
        if total < span:
            raise PretrainDataError(f"a clip has {total} frames; {n} frames at stride {stride} need {span}: "
                                    f"use longer clips (moving-digits:frames={span})")
        start = int(torch.randint(0, total - span + 1, (1,), generator=gen))
        return clip[:, start : start + span : stride]

    def _crop_box(self, height: int, width: int, gen: torch.Generator,
                  scale: tuple[float, float]) -> tuple[int, int, int, int]:
        """An area share in ``scale`` and aspect ratio in [3/4, 4/3] (log-uniform); 10 tries, then the full image."""
        area = height * width
        for _ in range(10):
            u = torch.rand(3, generator=gen).tolist()
            target = area * (scale[0] + u[0] * (scale[1] - scale[0]))
            ratio = math.exp(math.log(3 / 4) + u[1] * (math.log(4 / 3) - math.log(3 / 4)))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
                left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
                return top, left, h, w
        return 0, 0, height, width


class PretrainDataset(torch.utils.data.Dataset):
    """``dataset[(index, seed)]`` -> an augmented, normalised image ``[C, H, W]`` (its views, multi-crop)."""

    def __init__(self, source: ImageSource, augmenter: Augmenter):
        self.source, self.augment = source, augmenter

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        gen = torch.Generator().manual_seed(seed)
        if getattr(self.augment, "multi_view", False):
            return self.augment.views(self.source.image(index), gen)
        return self.augment(self.source.image(index), gen)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of one epoch (the same on every process)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_919 + epoch))


class StepPlan:
    """Which samples each micro-batch of this process loads, from a start step on.

    Step ``g`` of epoch ``e = g // steps_per_epoch`` takes the next ``global_batch`` samples of the
    epoch's order; process ``rank`` takes its contiguous share, split into ``accum`` micro-batches.
    Iterating yields lists of ``(index, seed)`` keys, one list per micro-batch.
    """

    def __init__(self, n: int, global_batch: int, world: int, rank: int, accum: int, seed: int, start: int, total: int):
        if global_batch % (world * accum):
            raise PretrainDataError(f"batch size {global_batch} is not divisible by processes x accumulation "
                                    f"({world} x {accum}); pick a multiple of {world * accum}")
        if global_batch > n:
            raise PretrainDataError(f"batch size {global_batch} exceeds the {n} images of the data; lower --batch-size")
        self.n, self.batch, self.world, self.rank, self.accum = n, global_batch, world, rank, accum
        self.seed, self.start, self.total = seed, start, total
        self.steps_per_epoch = n // global_batch
        self.micro = global_batch // (world * accum)

    def step_keys(self, step: int) -> list[list[tuple[int, int]]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.n, self.seed, epoch)[k * self.batch : (k + 1) * self.batch].tolist()
        share = order[self.rank * self.micro * self.accum : (self.rank + 1) * self.micro * self.accum]
        keys = [(i, sample_seed(self.seed, epoch, i)) for i in share]
        return [keys[j * self.micro : (j + 1) * self.micro] for j in range(self.accum)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield from self.step_keys(step)

    def __len__(self) -> int:
        return (self.total - self.start) * self.accum


def make_loader(dataset: PretrainDataset, plan: StepPlan, workers: int = 0) -> Any:
    """A DataLoader yielding this process's micro-batches ``[micro, C, H, W]`` in plan order."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=plan, num_workers=workers,
                                       persistent_workers=False, pin_memory=torch.cuda.is_available())


def load_images(dataset: PretrainDataset, keys: Sequence[tuple[int, int]]) -> torch.Tensor:
    """One batch without a DataLoader (pictures, tests)."""
    return torch.stack([dataset[k] for k in keys])
