"""Recipes, targets, losses and the objectives they compose, on tiny real encoders."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import mimzoo
from mimzoo.pretrain import find_recipe, with_overrides
from mimzoo.pretrain.losses import masked_loss, per_position
from mimzoo.pretrain.models import build_objective
from mimzoo.pretrain.models.fcmae import forward_dense_masked
from mimzoo.pretrain.recipe import Decoder, Loss, Masking, Recipe, RecipeError, Target, recipe_from_dict
from mimzoo.pretrain.targets import HOGTarget, MeanColorTokenizer, patchify, unpatchify

RECIPES = ("mae", "simmim", "data2vec", "ijepa", "fcmae", "eva02", "maskfeat")
TINY_DECODER = {"decoder.dim": 16, "decoder.depth": 1, "decoder.heads": 2}


def tiny(name: str = "mae-vit-test"):
    torch.manual_seed(0)
    return mimzoo.load(name, pretrained=False)


def step(recipe: Recipe, encoder, n: int = 4, seed: int = 0) -> tuple[float, object]:
    obj = build_objective(recipe, encoder).train()
    size = encoder.preprocess.input_size[1]
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    masks = obj.masking(n, torch.Generator().manual_seed(seed))
    loss = obj(x, masks)
    loss.backward()
    grads = [p.grad for p in obj.encoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:3]) and math.isfinite(loss.item())
    return loss.item(), obj


@pytest.mark.parametrize("method", RECIPES)
def test_every_recipe_is_found_and_serialises(method):
    recipe = find_recipe(method)
    assert recipe.method == method and recipe.arch
    back = recipe_from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert back == recipe
    assert dataclasses.is_dataclass(recipe) and recipe.__dataclass_params__.frozen


def test_recipe_taxonomy_agrees_with_the_plugin():
    for method in ("mae", "simmim", "data2vec", "ijepa", "fcmae", "eva02"):
        tax, recipe = mimzoo.get_registry().method(method).taxonomy, find_recipe(method)
        assert (recipe.masking.kind, recipe.target.kind, recipe.loss.kind) == (tax.masking, tax.target, tax.objective)
        if tax.mask_ratio is not None:
            assert recipe.masking.ratio == pytest.approx(tax.mask_ratio)


def test_overrides_and_errors():
    r = with_overrides(find_recipe("mae"), {"masking.ratio": "0.6", "target.kind": "hog", "optim.betas": "[0.9, 0.99]"})
    assert (r.masking.ratio, r.target.kind, r.optim.betas) == (0.6, "hog", (0.9, 0.99))
    with pytest.raises(RecipeError, match="unknown recipe field 'masking.rate'; fields here: .*ratio"):
        with_overrides(r, {"masking.rate": 1})
    with pytest.raises(RecipeError, match="loss.kind 'l3' is not one of mse, l1"):
        with_overrides(r, {"loss.kind": "l3"})
    with pytest.raises(RecipeError, match="needs target.teacher"):
        with_overrides(r, {"target.kind": "teacher-features"})
    with pytest.raises(RecipeError, match="method 'nope' has no pretraining recipe; methods with one: .*maskfeat"):
        find_recipe("nope")


@pytest.mark.parametrize("method,arch", [("mae", "mae-vit-test"), ("simmim", "mae-vit-test"),
                                         ("maskfeat", "mae-vit-test"), ("data2vec", "mae-vit-test"),
                                         ("ijepa", "ijepa-vit-test"), ("fcmae", "fcmae-convnextv2-test")])
def test_recipe_trains_on_a_tiny_encoder(method, arch):
    over = {**TINY_DECODER, "masking.min_block": 4} if method != "fcmae" else {"decoder.dim": 16}
    if method == "data2vec":
        over["target.layers"] = 2
    recipe = with_overrides(find_recipe(method), {k: v for k, v in over.items() if _applies(method, k)})
    encoder = tiny(arch)
    loss, obj = step(recipe, encoder)
    if method in ("data2vec", "ijepa"):  # the EMA teacher moves towards the student after a step
        teacher = obj.target.teacher
        before = [p.clone() for p in teacher.parameters()]
        with torch.no_grad():
            for p in obj.encoder.parameters():
                p.add_(1.0)
        obj.after_step(0.0)
        m = recipe.target.ema[0]
        moved = next(iter(teacher.parameters())) - before[0]
        torch.testing.assert_close(moved, torch.full_like(moved, 1.0 - m), rtol=1e-3, atol=1e-6)


def _applies(method: str, key: str) -> bool:
    if key.startswith("decoder.") and method in ("simmim", "maskfeat", "data2vec"):
        return False
    return not (key == "masking.min_block" and method in ("mae", "ijepa"))


def test_beit_style_discrete_tokens_and_eva_style_teacher(tmp_path):
    tok = Recipe("beit", masking=Masking("blockwise", 0.4, min_block=4),
                 target=Target("discrete-tokens", teacher="mean-color"),
                 loss=Loss("cross-entropy"), decoder=Decoder("mask-token"))
    loss, obj = step(tok, tiny())
    assert obj.target.dim == 64 and obj.head.out_features == 64
    assert loss == pytest.approx(math.log(64), rel=0.2)  # near-uniform logits at init
    teacher = tiny()  # any model mimzoo.load accepts: here a saved folder
    mimzoo.save_pretrained(teacher, tmp_path / "teacher")
    eva = with_overrides(find_recipe("eva02"), {"target.teacher": str(tmp_path / "teacher"), "masking.min_block": 4})
    loss, obj = step(eva, tiny("eva02-vit-test"))
    assert -1.0 <= loss <= 1.0 and obj.target.dim == 32


def test_fcmae_dense_masking_behaves_like_a_sparse_encoder():
    """Visible-unit features must not depend on what is under the masked units."""
    encoder = tiny("fcmae-convnextv2-test").model.eval()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.tensor([[True, False, False, True], [False, True, True, False]])  # 2x2 units of 32 px
    y = x.clone()
    for n in range(2):
        for u in mask[n].nonzero().flatten().tolist():
            r, c = divmod(u, 2)
            y[n, :, r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = torch.randn(3, 32, 32) * 5
    with torch.no_grad():
        a, b = forward_dense_masked(encoder, x, mask, (2, 2)), forward_dense_masked(encoder, y, mask, (2, 2))
    keep = (~mask).view(2, 1, 2, 2).float()
    torch.testing.assert_close(a * keep, b * keep)
    assert (a * (1 - keep)).abs().max() == 0  # masked cells stay empty
    assert not encoder.stem._forward_hooks  # the hooks are gone afterwards


def test_hog_sees_edges_and_pixels_round_trip():
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:] = 1.0  # a vertical edge: horizontal gradient, orientation bin 0
    hog = HOGTarget(patch=8, channels=3, bins=9, cell=8)(x)
    assert hog.shape == (1, 4, 27)
    edge = hog[0, 1].view(3, 9)  # top-right patch holds the edge at its left border
    assert (edge.argmax(dim=1) == 0).all() and torch.allclose(edge.norm(dim=1), torch.ones(3))
    img = torch.randn(2, 3, 8, 12)
    assert torch.equal(unpatchify(patchify(img, 4), 4, (2, 3)), img)
    ids = MeanColorTokenizer(patch_size=4)(torch.randn(2, 3, 8, 8))
    assert ids.shape == (2, 4) and ids.max() < 64


def test_losses():
    p, t = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    assert per_position(p, t, Loss("mse")).tolist() == [[0.5, 2.0]]
    assert per_position(p, t, Loss("l1")).tolist() == [[0.5, 1.0]]
    assert per_position(p, t, Loss("smooth-l1", beta=2.0)).tolist() == [[0.125, 0.5]]
    assert per_position(p, p, Loss("negative-cosine")).tolist() == [[-1.0, -1.0]]
    ce = per_position(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]), Loss("cross-entropy"))
    torch.testing.assert_close(ce, torch.full((1, 2), math.log(4)))
    v, m = torch.tensor([[1.0, 3.0, 5.0]]), torch.tensor([[True, False, True]])
    assert masked_loss(v, m).item() == 3.0 and masked_loss(v, m, denom=4).item() == 1.5
