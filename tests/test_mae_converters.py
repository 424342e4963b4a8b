"""Each MAE checkpoint layout loads into the encoder and reproduces an independent implementation.

- official, with and without the decoder keys: compared with timm's VisionTransformer loaded
  through timm's own checkpoint filter, and with a from-scratch functional ViT written below
  straight from the official key names;
- timm: the same, saved as safetensors;
- transformers: ViTMAEModel / ViTMAEForPreTraining state dicts, compared with transformers'
  forward with masking neutralised (mask_ratio 0, noise sorted so the patch order is kept).
  transformers uses LayerNorm eps 1e-12 and timm 1e-6, which is why the tolerance is 1e-4.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import mimzoo
from mimzoo.errors import WeightsError

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128)
GRID = TINY["img"] // TINY["patch"]
DEC_DIM, DEC_DEPTH = 16, 1
TOL = 1e-4


def _randomise(sd: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random values for every tensor, LayerNorm scales included, so no check passes by symmetry."""
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) * 0.2 + (1.0 if k.endswith("norm.weight") or ".norm1.weight" in k
                or ".norm2.weight" in k else 0.0)) for k, v in sd.items()}


def official_encoder_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the official MAE encoder key names and shapes (models_mae.py)."""
    d, p, L, mlp = TINY["dim"], TINY["patch"], GRID * GRID, TINY["mlp"]
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, L + 1, d),
              "patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,),
              "norm.weight": (d,), "norm.bias": (d,)}
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                       b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                       b + "norm2.weight": (d,), b + "norm2.bias": (d,), b + "mlp.fc1.weight": (mlp, d),
                       b + "mlp.fc1.bias": (mlp,), b + "mlp.fc2.weight": (d, mlp), b + "mlp.fc2.bias": (d,)})
    return _randomise({k: torch.empty(s) for k, s in shapes.items()}, seed)


def official_decoder_sd(seed: int = 1) -> dict[str, torch.Tensor]:
    """The decoder keys a mae_visualize_*.pth checkpoint adds."""
    d, dd, L, p = TINY["dim"], DEC_DIM, GRID * GRID, TINY["patch"]
    shapes = {"mask_token": (1, 1, dd), "decoder_embed.weight": (dd, d), "decoder_embed.bias": (dd,),
              "decoder_pos_embed": (1, L + 1, dd), "decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,),
              "decoder_pred.weight": (p * p * 3, dd), "decoder_pred.bias": (p * p * 3,)}
    for i in range(DEC_DEPTH):
        b = f"decoder_blocks.{i}."
        shapes.update({b + "norm1.weight": (dd,), b + "attn.qkv.weight": (3 * dd, dd), b + "mlp.fc1.weight": (4 * dd, dd)})
    return _randomise({k: torch.empty(s) for k, s in shapes.items()}, seed)


def reference_vit_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The MAE encoder forward (no masking) written from the official key names, independent of timm."""
    d, h = TINY["dim"], TINY["heads"]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=TINY["patch"])
    t = t.flatten(2).transpose(1, 2) + sd["pos_embed"][:, 1:]
    cls = sd["cls_token"] + sd["pos_embed"][:, :1]
    t = torch.cat([cls.expand(x.shape[0], -1, -1), t], dim=1)
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        y = F.layer_norm(t, (d,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps)
        q, k, v = F.linear(y, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).chunk(3, dim=-1)
        q, k, v = (z.unflatten(-1, (h, d // h)).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-2, -1) / (d // h) ** 0.5, dim=-1) @ v
        t = t + F.linear(att.transpose(1, 2).flatten(2), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        y = F.layer_norm(t, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps)
        y = F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                     sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        t = t + y
    return F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], eps)


def timm_reference(encoder_sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    m = timm.create_model("vit_tiny_patch16_224", num_classes=0, global_pool="token", img_size=TINY["img"],
                          patch_size=TINY["patch"], embed_dim=TINY["dim"], depth=TINY["depth"], num_heads=TINY["heads"])
    m.load_state_dict(checkpoint_filter_fn({"model": encoder_sd}, m), strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(7))


def _check(encoder, expected_tokens: torch.Tensor, x: torch.Tensor) -> None:
    with torch.no_grad():
        tokens = encoder.forward_features(x)
        pooled = encoder(x)
    assert tokens.shape == expected_tokens.shape == (x.shape[0], 1 + GRID * GRID, TINY["dim"])
    assert (tokens - expected_tokens).abs().max().item() < TOL
    assert (pooled - expected_tokens[:, 0]).abs().max().item() < TOL  # pooling = class token after norm


@pytest.mark.parametrize("with_decoder", [False, True], ids=["encoder-only", "with-decoder"])
def test_official_layout(tmp_path, images, with_decoder):
    enc_sd = official_encoder_sd()
    sd = {**enc_sd, **(official_decoder_sd() if with_decoder else {})}
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": sd}, path)  # the official container
    encoder = mimzoo.load("mae-vit-test", weights=path)
    assert encoder.info.weights.layout == ("official" if with_decoder else "timm")
    with torch.no_grad():
        ref = reference_vit_tokens(enc_sd, images)
        timm_tokens = timm_reference(enc_sd).forward_features(images)
    assert (ref - timm_tokens).abs().max().item() < TOL  # the two references agree
    _check(encoder, ref, images)


def test_timm_layout_safetensors(tmp_path, images):
    enc_sd = official_encoder_sd(seed=3)
    ref_model = timm_reference(enc_sd)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref_model.state_dict().items()}, str(path))
    encoder = mimzoo.load("mae-vit-test", weights=path)
    assert encoder.info.weights.layout == "timm"
    with torch.no_grad():
        _check(encoder, ref_model.forward_features(images), images)


def _hf_config(**extra):
    from transformers import ViTMAEConfig

    return ViTMAEConfig(image_size=TINY["img"], patch_size=TINY["patch"], hidden_size=TINY["dim"],
                        num_hidden_layers=TINY["depth"], num_attention_heads=TINY["heads"],
                        intermediate_size=TINY["mlp"], mask_ratio=0.0, decoder_hidden_size=DEC_DIM,
                        decoder_num_hidden_layers=DEC_DEPTH, decoder_num_attention_heads=2,
                        decoder_intermediate_size=4 * DEC_DIM, **extra)


def _randomise_module(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "layernorm" in name and name.endswith("weight") else 0.0))


@pytest.mark.parametrize("cls_name", ["ViTMAEModel", "ViTMAEForPreTraining"])
@pytest.mark.parametrize("saved_as", ["hub-files", "state-dict"])
def test_transformers_layout(tmp_path, images, cls_name, saved_as):
    """Hub files (save_pretrained: v4 key names, safetensors) and transformers>=5 state dicts (v5 names)."""
    import transformers

    hf = getattr(transformers, cls_name)(_hf_config()).eval()
    _randomise_module(hf, seed=11)
    if saved_as == "hub-files":
        hf.save_pretrained(tmp_path)
        path = tmp_path / "model.safetensors"
    else:
        path = tmp_path / "pytorch_model.bin"
        torch.save(hf.state_dict(), path)
    encoder = mimzoo.load("mae-vit-test", weights=path)
    assert encoder.info.weights.layout == "transformers"
    base = hf.vit if cls_name == "ViTMAEForPreTraining" else hf
    noise = torch.arange(GRID * GRID, dtype=torch.float32).expand(images.shape[0], -1)  # keep patch order
    with torch.no_grad():
        out = base(pixel_values=images, noise=noise)
    assert out.mask.sum().item() == 0  # masking really is off in the reference
    _check(encoder, out.last_hidden_state, images)


def test_wrong_shapes_fail_loudly(tmp_path):
    sd = official_encoder_sd()
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(64, TINY["dim"])
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 with wrong shapes \(blocks.1.mlp.fc1.weight \(64, 32\) vs \(128, 32\)\)"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "bad.pth")


def test_missing_and_unexpected_keys_fail_loudly(tmp_path):
    sd = official_encoder_sd()
    del sd["blocks.0.attn.proj.bias"]
    sd["blocks.0.attn.extra"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing \(blocks.0.attn.proj.bias\); 1 unexpected \(blocks.0.attn.extra\)"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "bad.pth")


def test_truncated_transformers_checkpoint_fails_loudly(tmp_path):
    import transformers

    sd = transformers.ViTMAEModel(_hf_config()).state_dict()
    del sd["layers.1.attention.k_proj.weight"]
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(WeightsError, match="transformers.*does not convert"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "partial.bin")


def test_unknown_layout_is_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="match none of the layouts 'mae-vit-test' knows"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "resnet.pth")


def test_checkpoint_at_another_img_size_is_interpolated(tmp_path, images):
    sd = official_encoder_sd()
    torch.save({"model": sd}, tmp_path / "ckpt.pth")
    encoder = mimzoo.load("mae-vit-test", weights=tmp_path / "ckpt.pth", img_size=64)
    assert encoder.model.pos_embed.shape == (1, 1 + 16 * 16, TINY["dim"])
    assert encoder.preprocess.input_size == (3, 64, 64)
    with torch.no_grad():
        tokens = encoder.forward_features(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 257, TINY["dim"]) and torch.isfinite(tokens).all()
    # the class-token position embedding is carried over unchanged
    assert torch.equal(encoder.model.pos_embed[:, 0], sd["pos_embed"][:, 0])


def test_non_square_pos_embed_cannot_be_interpolated(tmp_path):
    sd = official_encoder_sd()
    sd["pos_embed"] = torch.zeros(1, 1 + 60, TINY["dim"])  # 60 patches: no square grid
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(WeightsError, match="not a square patch grid plus 1 prefix token"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "odd.pth")
