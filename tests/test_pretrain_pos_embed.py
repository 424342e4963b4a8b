"""The fixed 2-D sin-cos position table: official MAE's layout, and loaded tables are kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mimzoo
from mimzoo.pretrain import find_recipe
from mimzoo.pretrain.models import build_objective
from mimzoo.pretrain.models.vit import sincos_2d


def official_mae_table(dim: int, h: int, w: int, cls_token: bool) -> np.ndarray:
    """A straight numpy transcription of MAE's definition (util/pos_embed.py): the grid is
    ``meshgrid(w, h)`` ("w goes first"); half the channels encode grid[0] (the column), half grid[1]
    (the row); each half is [sin(pos * omega), cos(pos * omega)] with omega = 1 / 10000^(k / (D/2))."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), axis=0)
    emb = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return emb


@pytest.mark.parametrize("dim,grid,prefix", [(16, (4, 4), 1), (32, (14, 14), 1), (8, (2, 3), 0), (12, (3, 2), 1)])
def test_sincos_table_matches_official_mae(dim, grid, prefix):
    want = official_mae_table(dim, *grid, cls_token=bool(prefix))
    got = sincos_2d(dim, grid, prefix)[0].double().numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    # the column is in the first half: moving one patch right changes the first half only
    step = got[prefix + 1] - got[prefix]
    assert np.abs(step[: dim // 2]).max() > 0.1 and np.abs(step[dim // 2:]).max() == 0


def _distinctive_checkpoint(tmp_path):
    enc = mimzoo.load("mae-vit-test", pretrained=False)
    sd = {k: v.clone() for k, v in enc.model.state_dict().items()}
    sd["pos_embed"] = torch.randn(sd["pos_embed"].shape, generator=torch.Generator().manual_seed(7))
    path = tmp_path / "pretrained.pth"
    torch.save({"model": sd}, path)
    return path, sd["pos_embed"]


def test_build_objective_keeps_a_loaded_table(tmp_path):
    path, table = _distinctive_checkpoint(tmp_path)
    enc = mimzoo.load("mae-vit-test", weights=str(path))
    assert torch.equal(enc.model.pos_embed.detach(), table)
    build_objective(find_recipe("mae"), enc)  # continuing pretraining from loaded weights
    assert torch.equal(enc.model.pos_embed.detach(), table)


def test_build_objective_gives_a_fresh_encoder_the_official_table():
    enc = mimzoo.load("mae-vit-test", pretrained=False)
    obj = build_objective(find_recipe("mae"), enc)
    pos = enc.model.pos_embed.detach()[0].double().numpy()
    side = int(round((pos.shape[0] - 1) ** 0.5))
    np.testing.assert_allclose(pos, official_mae_table(pos.shape[1], side, side, cls_token=True), atol=1e-6)
    dec = obj.decoder.decoder_pos_embed.detach()[0].double().numpy()
    np.testing.assert_allclose(dec, official_mae_table(dec.shape[1], side, side, cls_token=True), atol=1e-6)


def test_bundled_digits_model_keeps_its_own_tables():
    """mae-vit-digits was pretrained with the earlier (row-first) fixed tables; they are read from its files,
    so its embeddings and reconstructions do not depend on sincos_2d."""
    from pathlib import Path

    from safetensors.torch import load_file

    from mimzoo.pretrain.reconstruct import _objective

    assets = Path(mimzoo.__file__).parent / "assets" / "mae-vit-digits"
    enc = mimzoo.load("mae-vit-digits")
    stored = load_file(str(assets / "model.safetensors"))["pos_embed"]
    assert torch.equal(enc.model.pos_embed.detach(), stored)
    obj = _objective(enc, assets / "pretrain.safetensors", None)
    assert torch.equal(enc.model.pos_embed.detach(), stored)
    dec = load_file(str(assets / "pretrain.safetensors"))["decoder.decoder_pos_embed"]
    assert torch.equal(obj.decoder.decoder_pos_embed.detach(), dec)
