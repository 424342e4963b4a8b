"""Frozen patch-token grids and label masks of a segmentation split, extracted once and cached.

Images are resized to the encoder's input size without cropping (a crop would cut the masks'
borders off); masks are resized to the same size with nearest neighbour, so labels stay labels.
mIoU is therefore measured at the encoder's input resolution. The cache is the one the other
probes use (:mod:`mimzoo.eval.cache`): one safetensors file per (weights, data, preprocessing,
head kind), keyed and checksummed, grids stored in fp16.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ...data.base import DataError
from ...data.loader import DECODE_ERRORS, eval_batches
from .. import cache
from .heads import grid_maps

log = logging.getLogger(__name__)
FORMAT = "seg-grid-1"  # bump when what a seg cache file holds changes


@dataclass
class SegFeatures:
    """Grids and masks of the decoded items of one split, in index order."""

    maps: list[torch.Tensor]  # each [N, C_i, h_i, w_i] fp16, finest first
    masks: torch.Tensor  # [N, H, W] uint8 labels at the input size (255 = ignore)
    index: torch.Tensor  # [N] int64 positions in the split
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (index, reason) of undecodable items
    cache_status: str = "off"
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.index.shape[0])


class SegDataset(torch.utils.data.Dataset):
    """``dataset[i]`` -> (image tensor or None, mask tensor or None, i, problem): problem is "" or
    ("decode", reason) for an unreadable file (skipped) or ("data", message) for a mask that does not fit."""

    def __init__(self, split: Any, preprocess: Any):
        self.split, self.preprocess = split, preprocess
        self._tf: Any = None

    def __len__(self) -> int:
        return len(self.split)

    def transform(self) -> Any:
        if self._tf is None:
            from torchvision import transforms as T

            from ...encoders.transforms import ToMode

            pp = self.preprocess
            interp = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
                      "nearest": T.InterpolationMode.NEAREST}[pp.interpolation]
            c, h, w = pp.input_size
            self._tf = T.Compose([ToMode("L" if c == 1 else "RGB"), T.Resize((h, w), interpolation=interp),
                                  T.ToTensor(), T.Normalize(mean=pp.mean, std=pp.std)])
        return self._tf

    def __getitem__(self, i: int) -> tuple[Any, Any, int, tuple[str, str] | None]:
        import numpy as np
        from PIL import Image

        try:
            img, mask = self.split.image(i), self.split.mask(i)
        except DataError as e:
            return None, None, i, ("data", str(e))
        except DECODE_ERRORS as e:
            return None, None, i, ("decode", f"{type(e).__name__}: {e}")
        if (img.height, img.width) != tuple(mask.shape):
            return None, None, i, ("data", f"{self.split.describe(i)} is {img.width}x{img.height} but its mask is "
                                           f"{mask.shape[1]}x{mask.shape[0]}; give each image a mask of its own size")
        _, h, w = self.preprocess.input_size
        small = np.asarray(Image.fromarray(np.ascontiguousarray(mask), "L").resize((w, h), Image.NEAREST))
        return self.transform()(img), torch.from_numpy(small.copy()), i, None


def _collate(items: list) -> list:
    return items


def seg_feature_key(encoder: Any, split: Any, head: str) -> dict[str, Any]:
    from ..features import feature_key

    return {**feature_key(encoder, split), "seg": {"format": FORMAT, "head": head}}


def extract_seg_features(encoder: Any, split: Any, *, head: str, config: Any, label: str,
                         progress: Callable[[str, int, int], None] | None = None) -> SegFeatures:
    """The grids a `head` reads and the masks of every item of `split`, from the cache when valid.

    Args:
        encoder: a mimzoo encoder, on its device.
        split: a segmentation split (``open_segmentation("digit-scenes").train``).
        head: "linear" or "multiscale" (which grids to keep).
        config: an :class:`~mimzoo.eval.features.ExtractConfig` (batch size, workers, cache).
        label: readable prefix of the cache file name.
        progress: ``progress(stage, done, total)`` after each batch.
    """
    if not config.cache:
        return _extract(encoder, split, head, config, progress)
    key = seg_feature_key(encoder, split, head)
    path = cache.cache_path(cache.cache_root(config.cache_dir) / "features", label, key)
    names = ["masks", "index", "num_maps"]
    found, info, status = cache.load(path, key, names)
    if found is not None:
        n = int(found["num_maps"].item())
        maps, _, _ = cache.load(path, key, [f"map{i}" for i in range(n)])
        if maps is not None:
            return SegFeatures([maps[f"map{i}"] for i in range(n)], found["masks"], found["index"],
                               [tuple(s) for s in info.get("skipped", [])], "hit")
    feats = _extract(encoder, split, head, config, progress)
    feats.cache_status = status
    tensors = {"masks": feats.masks, "index": feats.index, "num_maps": torch.tensor(len(feats.maps))}
    tensors.update({f"map{i}": m for i, m in enumerate(feats.maps)})
    cache.save(path, key, tensors, {"skipped": feats.skipped[:1000], "n_skipped": len(feats.skipped)})
    return feats


def _extract(encoder: Any, split: Any, head: str, config: Any, progress: Any) -> SegFeatures:
    from ...data.loader import default_workers

    p = next(encoder.parameters())
    workers = default_workers() if config.workers is None else config.workers
    loader = torch.utils.data.DataLoader(SegDataset(split, encoder.preprocess),
                                         batch_sampler=eval_batches(len(split), config.batch_size),
                                         num_workers=workers, collate_fn=_collate)
    maps: list[list[torch.Tensor]] = []
    masks, index, skipped = [], [], []
    start, done = time.perf_counter(), 0
    was_training = encoder.training
    encoder.eval()
    with torch.inference_mode():
        for items in loader:
            for img, _, i, problem in items:
                if problem and problem[0] == "data":
                    raise DataError(problem[1])
                if problem:
                    skipped.append((i, problem[1]))
            good = [it for it in items if it[3] is None]
            if good:
                x = torch.stack([it[0] for it in good]).to(p.device, p.dtype)
                for j, m in enumerate(grid_maps(encoder, x, head)):
                    if j == len(maps):
                        maps.append([])
                    maps[j].append(m.to("cpu", torch.float16))
                masks.append(torch.stack([it[1] for it in good]))
                index.append(torch.tensor([it[2] for it in good], dtype=torch.long))
            done += len(items)
            if progress:
                progress(f"extract {split.name}", done, len(split))
    encoder.train(was_training)
    if not index:
        first = f"; first: {skipped[0][1]}" if skipped else ""
        raise DataError(f"none of the {len(split)} images of {split.name} could be decoded{first}; check the files")
    if skipped:
        log.warning("%d images of %s could not be decoded and were skipped (first: %s)", len(skipped), split.name,
                    skipped[0][1])
    return SegFeatures([torch.cat(m) for m in maps], torch.cat(masks), torch.cat(index), skipped,
                       seconds=time.perf_counter() - start)
