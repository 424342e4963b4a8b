"""The data2vec plugin: each checkpoint layout loads into the encoder and reproduces an independent implementation.

- transformers (``facebook/data2vec-vision-*``): ``Data2VecVisionModel`` configured as the Hub's
  pretrained-only models (shared relative position bias, mask token, ``use_mean_pooling=False``),
  as a Hub-style ``pytorch_model.bin`` with the index buffer those files carry, and as
  save_pretrained safetensors; compared with transformers' forward (no ``bool_masked_pos``:
  masking off). transformers' default LayerNorm eps is 1e-12 against timm's 1e-6, hence 1e-4.
- official (``data2vec_vision/*/checkpoint-799.pth``): random tensors under the exact key names
  and shapes of ``beit/modeling_cyclical.py`` ``VisionTransformerForCyclicalTraining`` (mask
  token, shared bias with its index buffer, D x D ``lm_head``), saved the way
  ``run_cyclical.py`` saves them (``model`` = student, ``model_ema`` = teacher behind
  ``module.``); compared with timm's ``Beit`` loaded through timm's own BEiT checkpoint filter.

The pooled output is the mean of the final-normalised patch tokens.
"""

from __future__ import annotations

import pytest
import torch

import mimzoo
from mimzoo.errors import WeightsError

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128)
GRID = TINY["img"] // TINY["patch"]
ROWS = (2 * GRID - 1) ** 2 + 3
TOL = 1e-4


def _hf_model(seed: int):
    """A randomised tiny Data2VecVisionModel shaped like the Hub's pretrained-only checkpoints."""
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    cfg = Data2VecVisionConfig(image_size=TINY["img"], patch_size=TINY["patch"], hidden_size=TINY["dim"],
                               num_hidden_layers=TINY["depth"], num_attention_heads=TINY["heads"],
                               intermediate_size=TINY["mlp"], use_mask_token=True,
                               use_absolute_position_embeddings=False, use_relative_position_bias=False,
                               use_shared_relative_position_bias=True, use_mean_pooling=False)
    model = Data2VecVisionModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every parameter random (bias table, layer scales); LayerNorm scales around 1
        for name, p in model.named_parameters():
            scale_one = "layernorm" in name and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale_one else 0.0))
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(5))


def _check(encoder, expected: torch.Tensor, x: torch.Tensor, tol: float = TOL) -> None:
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(x), encoder(x)
    assert tokens.shape == expected.shape == (x.shape[0], 1 + GRID * GRID, TINY["dim"])
    assert (tokens - expected).abs().max().item() < tol
    assert (pooled - expected[:, 1:].mean(dim=1)).abs().max().item() < tol  # mean of the patch tokens


@pytest.mark.parametrize("saved_as", ["pytorch_model.bin", "model.safetensors"])
def test_transformers_layout(tmp_path, images, saved_as):
    hf = _hf_model(seed=1)
    if saved_as == "pytorch_model.bin":  # the Hub file: v4 names plus the (long) index buffer of 2022
        sd = dict(hf.state_dict())
        sd["encoder.relative_position_bias.relative_position_index"] = torch.zeros(GRID**2 + 1, GRID**2 + 1).long()
        assert "embeddings.mask_token" in sd and "layernorm.weight" in sd
        torch.save(sd, tmp_path / saved_as)
    else:
        hf.save_pretrained(tmp_path)
    encoder = mimzoo.load("data2vec-vit-test", weights=tmp_path / saved_as)
    assert encoder.info.weights.layout == "transformers"
    with torch.no_grad():
        ref = hf(pixel_values=images, bool_masked_pos=None).last_hidden_state
    _check(encoder, ref, images)


def official_sd(seed: int) -> dict[str, torch.Tensor]:
    """Random tensors under the exact key names and shapes of a data2vec_vision student state dict."""
    d, p, h, mlp = TINY["dim"], TINY["patch"], TINY["heads"], TINY["mlp"]
    shapes = {"cls_token": (1, 1, d), "mask_token": (1, 1, d), "patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,), "rel_pos_bias.relative_position_bias_table": (ROWS, h),
              "norm.weight": (d,), "norm.bias": (d,), "lm_head.weight": (d, d), "lm_head.bias": (d,)}
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        shapes.update({b + "gamma_1": (d,), b + "gamma_2": (d,), b + "norm1.weight": (d,), b + "norm1.bias": (d,),
                       b + "attn.qkv.weight": (3 * d, d), b + "attn.q_bias": (d,), b + "attn.v_bias": (d,),
                       b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,), b + "norm2.weight": (d,),
                       b + "norm2.bias": (d,), b + "mlp.fc1.weight": (mlp, d), b + "mlp.fc1.bias": (mlp,),
                       b + "mlp.fc2.weight": (d, mlp), b + "mlp.fc2.bias": (d,)})
    g = torch.Generator().manual_seed(seed)
    around_one = ("norm1.weight", "norm2.weight", "norm.weight", "gamma_1", "gamma_2")
    sd = {k: torch.randn(s, generator=g) * 0.2 + (1.0 if k.endswith(around_one) else 0.0) for k, s in shapes.items()}
    sd["rel_pos_bias.relative_position_index"] = torch.randint(0, ROWS, (GRID**2 + 1, GRID**2 + 1))
    return sd


def timm_reference_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    import timm
    from timm.models.beit import checkpoint_filter_fn

    m = timm.create_model("beit_base_patch16_224", num_classes=0, img_size=TINY["img"], patch_size=TINY["patch"],
                          embed_dim=TINY["dim"], depth=TINY["depth"], num_heads=TINY["heads"], use_abs_pos_emb=False,
                          use_rel_pos_bias=False, use_shared_rel_pos_bias=True, global_pool="token")
    encoder_sd = {k: v for k, v in sd.items() if not k.startswith(("mask_token", "lm_head."))}
    m.load_state_dict(checkpoint_filter_fn({"model": encoder_sd}, m), strict=True)
    with torch.no_grad():
        return m.eval().forward_features(x)


def test_official_layout_loads_the_student(tmp_path, images):
    student, teacher = official_sd(seed=2), official_sd(seed=3)
    ckpt = {"model": student, "model_ema": {f"module.{k}": v for k, v in teacher.items()}, "epoch": 799}
    torch.save(ckpt, tmp_path / "checkpoint-799.pth")
    encoder = mimzoo.load("data2vec-vit-test", weights=tmp_path / "checkpoint-799.pth")
    assert encoder.info.weights.layout == "official"
    _check(encoder, timm_reference_tokens(student, images), images, tol=1e-5)


def test_missing_and_wrong_shaped_keys_fail_loudly(tmp_path):
    sd = official_sd(seed=2)
    del sd["blocks.1.attn.v_bias"]
    sd["rel_pos_bias.relative_position_bias_table"] = torch.zeros(ROWS, 3)  # three heads instead of two
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing \(blocks.1.attn.v_bias\).*1 with wrong shapes "
                       r"\(rel_pos_bias.relative_position_bias_table \(228, 3\) vs \(228, 2\)\)"):
        mimzoo.load("data2vec-vit-test", weights=tmp_path / "bad.pth")


def test_fine_tuned_transformers_checkpoint_is_refused(tmp_path):
    """data2vec-vision-*-ft1k files: one bias table per layer and a classifier; not a pretrained encoder."""
    from transformers import Data2VecVisionConfig, Data2VecVisionForImageClassification

    cfg = Data2VecVisionConfig(image_size=TINY["img"], patch_size=TINY["patch"], hidden_size=TINY["dim"],
                               num_hidden_layers=TINY["depth"], num_attention_heads=TINY["heads"],
                               intermediate_size=TINY["mlp"], use_relative_position_bias=True, num_labels=3)
    torch.save(Data2VecVisionForImageClassification(cfg).state_dict(), tmp_path / "ft1k.bin")
    with pytest.raises(WeightsError, match="per block"):
        mimzoo.load("data2vec-vit-test", weights=tmp_path / "ft1k.bin")
