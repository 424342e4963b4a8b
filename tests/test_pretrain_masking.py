"""Masking strategies: ratios, block shapes, determinism."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mimzoo.pretrain.masking import Blockwise, MultiBlock, RandomBlock, RandomPatch, make_mask_generator
from mimzoo.pretrain.recipe import Masking, RecipeError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_patch_fixed_count_and_uniform_positions():
    m = RandomPatch((14, 14), 0.75)(2000, gen())
    assert m.mask.shape == (2000, 196) and m.mask.dtype == torch.bool
    assert (m.mask.sum(1) == 196 - int(196 * 0.25)).all()  # 147 masked, 49 visible in every image
    assert torch.equal(m.visible, ~m.mask)
    freq = m.mask.float().mean(0)  # every position is masked about 75% of the time
    assert (freq - 0.75).abs().max() < 0.05
    # deterministic from the generator's seed; different seeds differ
    assert torch.equal(RandomPatch((14, 14), 0.75)(8, gen(3)).mask, RandomPatch((14, 14), 0.75)(8, gen(3)).mask)
    assert not torch.equal(RandomPatch((14, 14), 0.75)(8, gen(3)).mask, RandomPatch((14, 14), 0.75)(8, gen(4)).mask)


def test_random_patch_from_noise_masks_the_largest_noise():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    assert RandomPatch((2, 2), 0.5).from_noise(noise).mask.tolist() == [[True, False, True, False]]


def test_random_block_masks_whole_units():
    with pytest.raises(RecipeError, match="do not tile"):
        make_mask_generator(Masking("random-block", 0.6, mask_patch_size=48), (14, 14), 16)  # 3x3 units on 14x14
    m = make_mask_generator(Masking("random-block", 0.6, mask_patch_size=32), (12, 12), 16)(500, gen())
    grid = m.mask.view(-1, 6, 2, 6, 2)
    # each 2x2 unit is all masked or all visible
    assert torch.equal(grid.all(dim=(2, 4)), grid.any(dim=(2, 4)))
    assert (grid.all(dim=(2, 4)).sum(dim=(1, 2)) == 36 - int(36 * 0.4)).all()
    assert m.mask.float().mean().item() == pytest.approx(22 / 36)


def test_random_block_on_a_tileable_grid_of_14():
    # the official SimMIM setting: 224 px, 16 px patches, 32 px units -> 7x7 units of 2x2 patches
    g = RandomBlock((14, 14), 0.6, 2)
    m = g(64, gen())
    assert (m.mask.view(64, 7, 2, 7, 2).float().mean(dim=(2, 4)) % 1 == 0).all()
    assert (m.mask.sum(1) == 4 * (49 - int(49 * 0.4))).all()  # 30 units of 4 patches


def test_blockwise_ratio_and_blocks():
    g = Blockwise((14, 14), 0.4, min_block=16)
    m = g(400, gen())
    counts = m.mask.sum(1).float()
    goal = int(0.4 * 196)  # 78, BEiT's 75 is 0.383
    assert counts.max() <= goal  # never more than the budget
    assert counts.mean() > goal - 4  # and close to it
    assert counts.min() >= 16  # at least one block of the minimum size
    rng = random.Random(0)
    for _ in range(300):  # one block at a time: a filled rectangle, area in [min_block, budget], bounded aspect
        mask = torch.zeros(14, 14, dtype=torch.bool)
        added = g._add_block(mask, rng, budget=40)
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert added == int(mask.sum()) == h * w
        assert 0.3 / 1.6 <= h / w <= 1.6 / 0.3  # rounding widens the 0.3..3.3 range a little
        assert 16 * 0.7 <= h * w <= 40


def test_blockwise_is_deterministic():
    a = Blockwise((14, 14), 0.6)(4, gen(7)).mask
    b = Blockwise((14, 14), 0.6)(4, gen(7)).mask
    assert torch.equal(a, b)


def test_multi_block_context_and_targets():
    spec = Masking("multi-block", num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                   context_scale=(0.85, 1.0))
    g = MultiBlock((14, 14), spec)
    for seed in range(20):
        m = g(1, gen(seed))  # one image: no truncation, so every target is a full rectangle
        assert len(m.targets) == 4
        for t in m.targets:
            grid = t.view(14, 14)
            rows, cols = grid.any(1).nonzero().flatten(), grid.any(0).nonzero().flatten()
            h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
            assert int(grid.sum()) == h * w
            assert 0.15 * 196 * 0.7 <= h * w <= 0.2 * 196 * 1.3  # area within the scale range (rounding)
            assert 0.75 / 1.6 <= h / w <= 1.5 * 1.6
            assert not (t & m.visible).any()  # targets are cut out of the context
        assert torch.equal(m.mask, torch.stack(m.targets).any(0))
        assert m.visible.sum() >= 4
    batch = g(16, gen(0))  # a batch: every row holds the same counts
    assert len(set(batch.visible.sum(1).tolist())) == 1
    assert all(len(set(t.sum(1).tolist())) == 1 for t in batch.targets)
    assert batch.count == sum(int(t.sum()) for t in batch.targets)


def test_slices_and_unknown_kind():
    m = RandomPatch((4, 4), 0.5)(6, gen())
    assert torch.equal(m.slice(2, 4).mask, m.mask[2:4])
    with pytest.raises(RecipeError, match="not a multiple of the patch size"):
        make_mask_generator(Masking("random-block", 0.5, mask_patch_size=24), (14, 14), 16)
    assert math.isclose(RandomPatch((14, 14), 0.0)(2, gen()).mask.float().sum().item(), 0.0)
