"""From a split to batches of tensors: a torch Dataset, the batch orders, a DataLoader with workers.

Batches are formed by index *before* they are spread over processes, so a batch holds the
same images whether one process or eight run (features come out identical under torchrun).
Training batches come from a seeded permutation per epoch and every image's augmentation is
seeded by (seed, epoch, index): a run resumed mid-epoch sees exactly the batches it would have.
Images that fail to decode are dropped from their batch and reported, never a crash mid-run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .base import ImageSplit

# errors a broken image file raises inside PIL (SyntaxError: some truncated PNG/GIF headers)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


def default_workers() -> int:
    """Loader processes per training/extraction process: up to 4, fewer on small machines."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class Batch:
    """What the loader yields."""

    images: torch.Tensor | None  # [B, C, H, W]; None when every image of the batch failed to decode
    labels: torch.Tensor  # [B] int64, of the decoded images only
    index: torch.Tensor  # [B] int64 positions in the split, of the decoded images only
    skipped: tuple[tuple[int, str], ...]  # (index, reason) of images that could not be decoded


class ImageDataset(torch.utils.data.Dataset):
    """``dataset[i]`` or ``dataset[(i, seed)]`` -> (tensor or None, label, index, error or "")."""

    def __init__(self, split: ImageSplit, transform: Any):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int, int, str]:
        i, seed = (key, None) if isinstance(key, int) else key
        label = self.split.label(i)
        try:
            img = self.split.image(i)
        except DECODE_ERRORS as e:
            return None, label, i, f"{type(e).__name__}: {e}"
        if seed is None:
            return self.transform(img), label, i, ""
        with torch.random.fork_rng(devices=[]):  # seeded augmentation that leaves the caller's RNG alone
            torch.manual_seed(seed)
            return self.transform(img), label, i, ""


def collate(items: Sequence[tuple[Any, int, int, str]]) -> Batch:
    """Stack the decoded images of a batch; remember the ones that failed."""
    good = [it for it in items if it[0] is not None]
    return Batch(
        images=torch.stack([it[0] for it in good]) if good else None,
        labels=torch.tensor([it[1] for it in good], dtype=torch.long),
        index=torch.tensor([it[2] for it in good], dtype=torch.long),
        skipped=tuple((it[2], it[3]) for it in items if it[0] is None),
    )


def eval_batches(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Consecutive batches of ``range(n)``, dealt round-robin to the processes (batch b -> rank b % world)."""
    all_batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    return all_batches[rank::world]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one image in one epoch (independent of process, worker and resume)."""
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729) % (2**63 - 1)


def steps_per_epoch(n: int, global_batch: int) -> int:
    """Training steps in one epoch (the last incomplete batch is dropped, as in MAE)."""
    return n // global_batch


def train_batches(n: int, global_batch: int, epoch: int, *, seed: int, rank: int = 0, world: int = 1,
                  start: int = 0) -> list[list[tuple[int, int]]]:
    """This process's share of each global batch of `epoch`, from step `start` on, as (index, aug seed) keys.

    The permutation depends only on (seed, epoch); a global batch is split into `world` equal slices.
    """
    g = torch.Generator().manual_seed(seed * 10_007 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per_rank = global_batch // world
    out = []
    for step in range(start, steps_per_epoch(n, global_batch)):
        chunk = perm[step * global_batch : (step + 1) * global_batch][rank * per_rank : (rank + 1) * per_rank]
        out.append([(i, sample_seed(seed, epoch, i)) for i in chunk])
    return out


def make_loader(dataset: ImageDataset, batches: list[list[Any]], *, workers: int | None = None,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader yielding :class:`Batch` for the given index batches, decoding in `workers` processes."""
    workers = default_workers() if workers is None else workers
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
        prefetch_factor=4 if workers else None, multiprocessing_context=_worker_context(workers),
        # its own generator: a loader must not draw from the global RNG that drop path uses (exact resume)
        generator=torch.Generator().manual_seed(0),
    )


def _worker_context(workers: int) -> str | None:
    """How loader workers start: forked as usual, but from a fork server under torch.distributed, whose
    background threads (gloo's) may hold locks at fork time: a worker forked then can hang for good (seen
    once in CI: both ranks stuck after the first split's features, 0 CPU)."""
    import torch.distributed as dist

    if workers and dist.is_available() and dist.is_initialized():
        return "forkserver"
    return None


def train_transform(preprocess: Any, *, flip: bool, scale: tuple[float, float] = (0.35, 1.0)) -> Any:
    """Random-resized-crop (+ horizontal flip when it keeps the class), then the encoder's normalisation.

    The crop keeps at least 35% of the image by default: fine-tuning on small datasets suffers from
    ImageNet's 8%. Example: ``train_transform(encoder.preprocess, flip=source.flip_ok)``.
    """
    from torchvision import transforms as T

    from ..encoders.transforms import ToMode

    interp = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
              "nearest": T.InterpolationMode.NEAREST}[preprocess.interpolation]
    c, h, w = preprocess.input_size
    steps: list[Any] = [ToMode("L" if c == 1 else "RGB"), T.RandomResizedCrop((h, w), scale=scale, interpolation=interp)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(mean=preprocess.mean, std=preprocess.std)]
    return T.Compose(steps)
