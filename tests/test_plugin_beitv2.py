"""The BEiT v2 plugin: the official checkpoint layout loads strictly and reproduces timm's Beit.

BEiT v2 has no transformers implementation; its official layout is written out by hand from
microsoft/unilm ``beit2/modeling_pretrain.py`` (``VisionTransformerForMaskedImageModelingCLS``
built by ``run_beitv2_pretraining.py``: shared relative position bias, no absolute position
embedding, mask token, LM head, and the patch-aggregation head ``cls_pt_layers`` -- plus
``cls_pt_norm`` / ``cls_pt_lm_head`` when ``--shared_lm_head False``). The reference is timm's
``Beit`` loaded through timm's own BEiT checkpoint filter, heads removed by hand. The pooled
output is the [CLS] token after the final norm.
"""

from __future__ import annotations

import pytest
import torch

import mimzoo
from mimzoo.errors import WeightsError

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128, vocab=16, head_layers=2)
GRID = TINY["img"] // TINY["patch"]
TOL = 1e-5  # same float ops in the same order: only the key mapping is under test


def _block_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    """One unilm Block with layer scale and q/v biases (no per-block bias table)."""
    d, mlp = TINY["dim"], TINY["mlp"]
    names = {"gamma_1": (d,), "gamma_2": (d,), "norm1.weight": (d,), "norm1.bias": (d,),
             "attn.qkv.weight": (3 * d, d), "attn.q_bias": (d,), "attn.v_bias": (d,), "attn.proj.weight": (d, d),
             "attn.proj.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,), "mlp.fc1.weight": (mlp, d),
             "mlp.fc1.bias": (mlp,), "mlp.fc2.weight": (d, mlp), "mlp.fc2.bias": (d,)}
    return {prefix + k: s for k, s in names.items()}


def official_sd(seed: int = 0, shared_lm_head: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors under the exact key names and shapes of a beitv2_*_pt1k.pth 'model' entry."""
    d, p, h, v = TINY["dim"], TINY["patch"], TINY["heads"], TINY["vocab"]
    shapes = {"cls_token": (1, 1, d), "mask_token": (1, 1, d), "patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,), "rel_pos_bias.relative_position_bias_table": ((2 * GRID - 1) ** 2 + 3, h),
              "norm.weight": (d,), "norm.bias": (d,), "lm_head.weight": (v, d), "lm_head.bias": (v,)}
    for i in range(TINY["depth"]):
        shapes.update(_block_shapes(f"blocks.{i}."))
    for i in range(TINY["head_layers"]):  # patch aggregation: [CLS] + early patch tokens through 2 more blocks
        shapes.update(_block_shapes(f"cls_pt_layers.{i}."))
    if not shared_lm_head:
        shapes.update({"cls_pt_norm.weight": (d,), "cls_pt_norm.bias": (d,), "cls_pt_lm_head.weight": (v, d),
                       "cls_pt_lm_head.bias": (v,)})
    g = torch.Generator().manual_seed(seed)
    around_one = ("norm1.weight", "norm2.weight", "norm.weight", "gamma_1", "gamma_2")  # so none is trivial
    sd = {k: torch.randn(s, generator=g) * 0.2 + (1.0 if k.endswith(around_one) else 0.0) for k, s in shapes.items()}
    n, rows = GRID * GRID + 1, shapes["rel_pos_bias.relative_position_bias_table"][0]
    sd["rel_pos_bias.relative_position_index"] = torch.randint(0, rows, (n, n))  # saved buffer, recomputed on load
    return sd


def timm_reference_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    import timm
    from timm.models.beit import checkpoint_filter_fn

    m = timm.create_model("beitv2_base_patch16_224", num_classes=0, img_size=TINY["img"], patch_size=TINY["patch"],
                          embed_dim=TINY["dim"], depth=TINY["depth"], num_heads=TINY["heads"], use_abs_pos_emb=False,
                          use_rel_pos_bias=False, use_shared_rel_pos_bias=True, global_pool="token")
    heads = ("mask_token", "lm_head.", "cls_pt_")
    m.load_state_dict(checkpoint_filter_fn({k: v for k, v in sd.items() if not k.startswith(heads)}, m), strict=True)
    with torch.no_grad():
        return m.eval().forward_features(x)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("container", ["model", "module"])  # utils.save_model's entry; some files keep 'module'
@pytest.mark.parametrize("shared_lm_head", [True, False])
def test_official_layout(tmp_path, images, container, shared_lm_head):
    sd = official_sd(shared_lm_head=shared_lm_head)
    torch.save({container: sd, "epoch": 1599}, tmp_path / "beitv2_tiny_pt1k.pth")
    encoder = mimzoo.load("beitv2-vit-test", weights=tmp_path / "beitv2_tiny_pt1k.pth")
    assert encoder.info.weights.layout == "official"
    ref = timm_reference_tokens(sd, images)
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(images), encoder(images)
    assert tokens.shape == ref.shape == (3, 1 + GRID * GRID, TINY["dim"])
    assert (tokens - ref).abs().max().item() < TOL
    assert (pooled - ref[:, 0]).abs().max().item() < TOL  # pooling = [CLS] after the final norm
    assert torch.equal(encoder.model.blocks[1].gamma_2, sd["blocks.1.gamma_2"])


def test_missing_key_fails_loudly(tmp_path):
    sd = official_sd()
    del sd["rel_pos_bias.relative_position_bias_table"]
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing \(rel_pos_bias.relative_position_bias_table\)"):
        mimzoo.load("beitv2-vit-test", weights=tmp_path / "bad.pth")


def test_wrong_shape_fails_loudly(tmp_path):
    sd = official_sd()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(64, TINY["dim"])
    torch.save({"model": sd}, tmp_path / "bad.pth")
    expected = r"1 with wrong shapes \(blocks.0.mlp.fc1.weight \(64, 32\) vs \(128, 32\)\)"
    with pytest.raises(WeightsError, match=expected):
        mimzoo.load("beitv2-vit-test", weights=tmp_path / "bad.pth")


def test_unknown_layout_is_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="match none of the layouts 'beitv2-vit-test' knows"):
        mimzoo.load("beitv2-vit-test", weights=tmp_path / "resnet.pth")
