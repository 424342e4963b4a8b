"""Masking strategies: which patches of an ``h x w`` grid the encoder does not see.

Every generator is called with a batch size and a seeded ``torch.Generator`` and returns a
:class:`MaskBatch` of boolean ``[N, L]`` tensors (``L = h * w``, raster order, True = masked).
Masks are generated on the CPU from explicit generators, so a run is reproducible from
``(seed, step)`` alone: the trainer draws the masks of the whole global batch on every process
and each process takes its slice (1 process and N processes see identical masks).

- :class:`RandomPatch`: i.i.d. patches, a fixed count per image (MAE).
- :class:`RandomBlock`: i.i.d. square units of several patches (SimMIM's mask-patch size, FCMAE).
- :class:`Blockwise`: rectangles of random area and aspect grown until the ratio (BEiT, data2vec, MaskFeat).
- :class:`MultiBlock`: a large context block and several target blocks cut out of it (I-JEPA).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from .recipe import Masking, RecipeError


@dataclass(frozen=True)
class MaskBatch:
    """Masks of one batch."""

    mask: torch.Tensor  # bool [N, L]: positions whose target is predicted
    visible: torch.Tensor  # bool [N, L]: positions a visible-only encoder sees (~mask unless multi-block)
    targets: tuple[torch.Tensor, ...] = ()  # multi-block: one bool [N, L] per target block

    def slice(self, start: int, stop: int) -> MaskBatch:
        """Rows ``start:stop`` (a process's or a micro-batch's share of the global batch)."""
        return MaskBatch(self.mask[start:stop], self.visible[start:stop], tuple(t[start:stop] for t in self.targets))

    def to(self, device: torch.device | str) -> MaskBatch:
        return MaskBatch(self.mask.to(device), self.visible.to(device), tuple(t.to(device) for t in self.targets))

    @property
    def count(self) -> int:
        """Predicted positions in the batch (the loss's denominator)."""
        if self.targets:
            return int(sum(int(t.sum()) for t in self.targets))
        return int(self.mask.sum())


class MaskGenerator:
    """Base class: ``generator(n, gen) -> MaskBatch`` for an ``(h, w)`` grid of patches."""

    def __init__(self, grid: tuple[int, int]):
        self.grid = (int(grid[0]), int(grid[1]))
        self.length = self.grid[0] * self.grid[1]

    def __call__(self, n: int, gen: torch.Generator) -> MaskBatch:
        raise NotImplementedError

    def _batch(self, mask: torch.Tensor) -> MaskBatch:
        return MaskBatch(mask, ~mask)


def _keep_count(length: int, ratio: float) -> int:
    """Visible positions for a masking ratio, the MAE way: ``int(L * (1 - ratio))``."""
    return int(length * (1 - ratio))


class RandomPatch(MaskGenerator):
    """MAE: a uniformly random subset of ``L - int(L * (1 - ratio))`` patches per image."""

    def __init__(self, grid: tuple[int, int], ratio: float):
        super().__init__(grid)
        self.ratio = ratio

    def __call__(self, n: int, gen: torch.Generator) -> MaskBatch:
        return self.from_noise(torch.rand(n, self.length, generator=gen))

    def from_noise(self, noise: torch.Tensor) -> MaskBatch:
        """Masks from per-patch noise ``[N, L]``: the patches with the largest noise are masked.

        This is MAE's argsort rule, so the same ``noise`` gives the same mask as the official code
        and ``transformers.ViTMAEForPreTraining(noise=...)``.
        """
        rank = noise.argsort(dim=1).argsort(dim=1)  # [N, L] position of each patch in the sorted noise
        return self._batch(rank >= _keep_count(self.length, self.ratio))


class RandomBlock(MaskGenerator):
    """SimMIM / FCMAE: random square units of ``unit x unit`` patches, a fixed count per image."""

    def __init__(self, grid: tuple[int, int], ratio: float, unit: int):
        super().__init__(grid)
        if unit < 1 or grid[0] % unit or grid[1] % unit:
            raise RecipeError(f"mask units of {unit} patches do not tile the {grid[0]}x{grid[1]} grid; "
                              "set masking.mask_patch_size to a divisor of the image size that the patch size divides")
        self.ratio, self.unit = ratio, unit
        self.units = (grid[0] // unit, grid[1] // unit)

    def __call__(self, n: int, gen: torch.Generator) -> MaskBatch:
        uh, uw = self.units
        noise = torch.rand(n, uh * uw, generator=gen)
        rank = noise.argsort(dim=1).argsort(dim=1)
        units = (rank >= _keep_count(uh * uw, self.ratio)).view(n, uh, uw)  # [N, uh, uw]
        mask = units.repeat_interleave(self.unit, 1).repeat_interleave(self.unit, 2)  # [N, h, w]
        return self._batch(mask.reshape(n, self.length))


class Blockwise(MaskGenerator):
    """BEiT's blockwise masking: rectangles of random area and aspect until ``int(ratio * L)`` patches.

    Each rectangle has an area drawn in ``[min_block, budget]`` (budget = patches still to mask,
    capped by ``max_block``) and a log-uniform aspect ratio; a rectangle that adds nothing new or
    overshoots the budget is redrawn (10 tries), so images get at most ``int(ratio * L)`` patches.
    iBOT's variant: ``unmasked_share`` of the images stay whole and the others draw their ratio in
    ``ratio +- ratio_var`` (iBOT: half the views unmasked, the rest 0.3 +- 0.2).
    """

    def __init__(self, grid: tuple[int, int], ratio: float, min_block: int = 16, max_block: int | None = None,
                 aspect: tuple[float, float] = (0.3, 1 / 0.3), ratio_var: float = 0.0, unmasked_share: float = 0.0):
        super().__init__(grid)
        self.ratio, self.ratio_var, self.unmasked_share = ratio, ratio_var, unmasked_share
        self.goal = int(ratio * self.length)
        self.min_block, self.max_block = min_block, max_block
        self.log_aspect = (math.log(aspect[0]), math.log(aspect[1]))

    def __call__(self, n: int, gen: torch.Generator) -> MaskBatch:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        rng = random.Random(seed)
        return self._batch(torch.stack([self._one(rng) for _ in range(n)]).view(n, self.length))

    def _goal(self, rng: random.Random) -> int:
        """Patches to mask in one image (draws nothing from `rng` unless iBOT's per-image ratio is on)."""
        if self.unmasked_share and rng.random() < self.unmasked_share:
            return 0
        if self.ratio_var:
            return int(rng.uniform(self.ratio - self.ratio_var, self.ratio + self.ratio_var) * self.length)
        return self.goal

    def _one(self, rng: random.Random) -> torch.Tensor:
        h, w = self.grid
        mask = torch.zeros(h, w, dtype=torch.bool)
        count, goal = 0, self._goal(rng)
        while count < goal:
            added = self._add_block(mask, rng, min(goal - count, self.max_block or goal))
            if added == 0:
                break
            count += added
        return mask

    def _add_block(self, mask: torch.Tensor, rng: random.Random, budget: int) -> int:
        h, w = self.grid
        for _ in range(10):
            area = rng.uniform(self.min_block, budget)
            aspect = math.exp(rng.uniform(*self.log_aspect))
            bh, bw = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if not (0 < bh < h and 0 < bw < w):
                continue
            top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
            window = mask[top : top + bh, left : left + bw]
            new = bh * bw - int(window.sum())
            if 0 < new <= budget:
                window.fill_(True)
                return new
        return 0


class MultiBlock(MaskGenerator):
    """I-JEPA's multi-block masking: a context block plus ``num_targets`` target blocks.

    One target size and one context size are drawn per batch (as the official collator does);
    positions are drawn per image. Target blocks are removed from the context. Rows are then cut
    to the smallest count in the batch (keeping raster order) so each target and the context
    hold the same number of patches in every image.
    """

    def __init__(self, grid: tuple[int, int], spec: Masking):
        super().__init__(grid)
        self.spec = spec

    def __call__(self, n: int, gen: torch.Generator) -> MaskBatch:
        s = self.spec
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=gen)))
        tsize = self._block_size(rng, s.target_scale, s.target_aspect)
        csize = self._block_size(rng, s.context_scale, (1.0, 1.0))
        targets, contexts = [], []
        for _ in range(n):
            blocks, context = self._one(rng, tsize, csize)
            targets.append(blocks)
            contexts.append(context)
        tmasks = tuple(_equal_rows(torch.stack([t[i] for t in targets])) for i in range(s.num_targets))
        visible = _equal_rows(torch.stack(contexts))
        union = torch.stack(tmasks).any(dim=0)
        return MaskBatch(union, visible, tmasks)

    def _block_size(self, rng: random.Random, scale: tuple[float, float],
                    aspect: tuple[float, float]) -> tuple[int, int]:
        h, w = self.grid
        area = rng.uniform(*scale) * self.length
        ratio = rng.uniform(*aspect)
        bh, bw = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        return max(1, min(bh, h)), max(1, min(bw, w))

    def _one(self, rng: random.Random, tsize: tuple[int, int],
             csize: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        for _ in range(20):
            blocks = [self._rect(rng, tsize) for _ in range(self.spec.num_targets)]
            context = self._rect(rng, csize) & ~torch.stack(blocks).any(dim=0)
            if int(context.sum()) >= self.spec.min_keep:
                return blocks, context
        raise RecipeError(f"multi-block masking keeps fewer than {self.spec.min_keep} context patches on a "
                          f"{self.grid[0]}x{self.grid[1]} grid; lower masking.target_scale or num_targets")

    def _rect(self, rng: random.Random, size: tuple[int, int]) -> torch.Tensor:
        (h, w), (bh, bw) = self.grid, size
        top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[top : top + bh, left : left + bw] = True
        return mask.view(-1)


def _equal_rows(mask: torch.Tensor) -> torch.Tensor:
    """Keep the first ``k`` True entries of every row, ``k`` = the smallest row count."""
    k = int(mask.sum(dim=1).min())
    return mask & (mask.cumsum(dim=1) <= k)


def make_mask_generator(spec: Masking, grid: tuple[int, int], patch_size: int) -> MaskGenerator:
    """The generator a recipe's masking asks for.

    Args:
        spec: the recipe's :class:`~mimzoo.pretrain.recipe.Masking`.
        grid: ``(h, w)`` patches of the encoder's input.
        patch_size: pixels per patch side (to turn ``mask_patch_size`` into patches).

    >>> gen = make_mask_generator(Masking("random-patch", 0.75), (14, 14), 16)  # doctest: +SKIP
    >>> gen(8, torch.Generator().manual_seed(0)).mask.float().mean()  # doctest: +SKIP
    tensor(0.7551)
    """
    if spec.kind == "random-patch":
        return RandomPatch(grid, spec.ratio)
    if spec.kind == "random-block":
        size = spec.mask_patch_size or patch_size
        if size % patch_size:
            raise RecipeError(f"masking.mask_patch_size {size} is not a multiple of the patch size {patch_size}")
        return RandomBlock(grid, spec.ratio, size // patch_size)
    if spec.kind == "blockwise":
        return Blockwise(grid, spec.ratio, spec.min_block, spec.max_block, spec.aspect, spec.ratio_var,
                         spec.unmasked_share)
    if spec.kind == "multi-block":
        return MultiBlock(grid, spec)
    raise RecipeError(f"unknown masking '{spec.kind}'")
