"""The DINOv2 plugin: every checkpoint layout reproduces an independent implementation.

Random weights throughout, every tensor distinctive: LayerNorm scales around 1, biases, LayerScale
gammas (0.2-0.8 per channel), class, register and mask tokens and position tables all random, so
no check passes by symmetry. Tokens and the pooled embedding ([CLS] + mean of the patch tokens) are
compared within 1e-4 with:

- transformers' ``Dinov2Model`` (MLP and SwiGLU) and ``Dinov2WithRegistersModel``, from the files
  ``save_pretrained`` writes (v4 Hub names, safetensors) and from their v5 state dicts (a .pth);
- a functional forward written in this file from facebookresearch/dinov2
  ``models/vision_transformer.py`` (``prepare_tokens_with_masks``, ``interpolate_pos_encoding``,
  ``NestedTensorBlock``, ``SwiGLUFFNFused``), fed official-layout state dicts built by hand: plain,
  block-chunked (``blocks.<chunk>.<i>.``) and as the trainer's ``{'teacher': {backbone, heads}}``;
- timm's own DINOv2 models and checkpoint filter (timm layout).

The tiny models are "pretrained" at 112 px (an 8 x 8 grid, like the released 37 x 37 at 518 px) and
the test variants default to 56 px (4 x 4), so loading them resamples the table once, the official way;
that is compared with the official forward interpolating at run time (offset 0.1 without registers,
size + antialias with them, which transformers' Dinov2WithRegistersModel also does).
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import save_file

import mimzoo
from mimzoo.cli.main import cli
from mimzoo.errors import MimzooError, WeightsError

D, HEADS, DEPTH, PATCH, REG = 32, 2, 2, 14, 4
NATIVE = 112  # the tiny checkpoints' own size: an 8 x 8 grid
TOL = 1e-4


# ---------------------------------------------------------------------------------------------
# random, distinctive weights


def _value(name: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("gamma", "lambda1"):  # LayerScale: per-channel, far from 0 and 1
        return 0.2 + 0.6 * torch.rand(shape, generator=g)
    if len(shape) == 1 and leaf == "weight":  # LayerNorm scales around 1
        return 1.0 + 0.2 * torch.randn(shape, generator=g)
    if any(t in name for t in ("cls_token", "register_tokens", "reg_token", "mask_token", "pos_embed",
                               "position_embeddings")):
        return 0.5 * torch.randn(shape, generator=g)
    return 0.15 * torch.randn(shape, generator=g)


def randomise_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(_value(name, tuple(p.shape), g))
    return module.eval()


def official_sd(seed: int, *, registers: bool = False, swiglu: bool = False, grid: int = NATIVE // PATCH) -> dict:
    """A DinoVisionTransformer state dict, key names and shapes as the official code saves them."""
    hidden = (int(4 * D * 2 / 3) + 7) // 8 * 8 if swiglu else 4 * D  # SwiGLUFFNFused / Mlp
    shapes = {"cls_token": (1, 1, D), "pos_embed": (1, 1 + grid * grid, D), "mask_token": (1, D),
              "patch_embed.proj.weight": (D, 3, PATCH, PATCH), "patch_embed.proj.bias": (D,),
              "norm.weight": (D,), "norm.bias": (D,)}
    if registers:
        shapes["register_tokens"] = (1, REG, D)
    for i in range(DEPTH):
        b = f"blocks.{i}."
        shapes.update({f"{b}norm1.weight": (D,), f"{b}norm1.bias": (D,), f"{b}attn.qkv.weight": (3 * D, D),
                       f"{b}attn.qkv.bias": (3 * D,), f"{b}attn.proj.weight": (D, D), f"{b}attn.proj.bias": (D,),
                       f"{b}ls1.gamma": (D,), f"{b}norm2.weight": (D,), f"{b}norm2.bias": (D,), f"{b}ls2.gamma": (D,)})
        if swiglu:
            shapes.update({f"{b}mlp.w12.weight": (2 * hidden, D), f"{b}mlp.w12.bias": (2 * hidden,),
                           f"{b}mlp.w3.weight": (D, hidden), f"{b}mlp.w3.bias": (D,)})
        else:
            shapes.update({f"{b}mlp.fc1.weight": (hidden, D), f"{b}mlp.fc1.bias": (hidden,),
                           f"{b}mlp.fc2.weight": (D, hidden), f"{b}mlp.fc2.bias": (D,)})
    g = torch.Generator().manual_seed(seed)
    return {k: _value(k, s, g) for k, s in shapes.items()}


# ---------------------------------------------------------------------------------------------
# the official forward, written from facebookresearch/dinov2 models/vision_transformer.py


def _official_pos(pos: torch.Tensor, h: int, w: int, offset: float, antialias: bool) -> torch.Tensor:
    """DinoVisionTransformer.interpolate_pos_encoding for an [N, C, h, w] input."""
    n = pos.shape[1] - 1
    h0, w0 = h // PATCH, w // PATCH
    if h0 * w0 == n and h == w:
        return pos
    m = int(math.sqrt(n))
    kwargs = {"scale_factor": ((h0 + offset) / m, (w0 + offset) / m)} if offset else {"size": (h0, w0)}
    patch = F.interpolate(pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2), mode="bicubic",
                          antialias=antialias, **kwargs)
    assert patch.shape[-2:] == (h0, w0)
    return torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], dim=1)


def official_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """x_norm of DinoVisionTransformer.forward_features: [N, 1 + R + L, D]; the hub settings for registers."""
    registers = "register_tokens" in sd
    n, _, h, w = x.shape
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    t = torch.cat([sd["cls_token"].expand(n, -1, -1), t.flatten(2).transpose(1, 2)], dim=1)
    t = t + _official_pos(sd["pos_embed"], h, w, offset=0.0 if registers else 0.1, antialias=registers)
    if registers:
        t = torch.cat([t[:, :1], sd["register_tokens"].expand(n, -1, -1), t[:, 1:]], dim=1)
    for i in range(DEPTH):
        b = f"blocks.{i}."
        y = F.layer_norm(t, (D,), sd[f"{b}norm1.weight"], sd[f"{b}norm1.bias"], eps=1e-6)
        qkv = F.linear(y, sd[f"{b}attn.qkv.weight"], sd[f"{b}attn.qkv.bias"])
        q, k, v = qkv.reshape(n, -1, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q * (D // HEADS) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(n, -1, D)
        t = t + sd[f"{b}ls1.gamma"] * F.linear(y, sd[f"{b}attn.proj.weight"], sd[f"{b}attn.proj.bias"])
        y = F.layer_norm(t, (D,), sd[f"{b}norm2.weight"], sd[f"{b}norm2.bias"], eps=1e-6)
        if f"{b}mlp.w12.weight" in sd:  # SwiGLUFFN: silu(x1) * x2 of w12's two halves, then w3
            x1, x2 = F.linear(y, sd[f"{b}mlp.w12.weight"], sd[f"{b}mlp.w12.bias"]).chunk(2, dim=-1)
            y = F.linear(F.silu(x1) * x2, sd[f"{b}mlp.w3.weight"], sd[f"{b}mlp.w3.bias"])
        else:
            y = F.linear(F.gelu(F.linear(y, sd[f"{b}mlp.fc1.weight"], sd[f"{b}mlp.fc1.bias"])),
                         sd[f"{b}mlp.fc2.weight"], sd[f"{b}mlp.fc2.bias"])
        t = t + sd[f"{b}ls2.gamma"] * y
    return F.layer_norm(t, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)


def linear_input(tokens: torch.Tensor, registers: int) -> torch.Tensor:
    """The official create_linear_input(use_n_blocks=1, use_avgpool=True): [CLS] ++ mean(patches)."""
    return torch.cat([tokens[:, 0], tokens[:, 1 + registers:].mean(dim=1)], dim=-1)


def _images(size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_matches(encoder, reference_tokens: torch.Tensor, x: torch.Tensor, registers: int) -> None:
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(x), encoder(x)
    assert tokens.shape == reference_tokens.shape
    torch.testing.assert_close(tokens, reference_tokens, atol=TOL, rtol=0)
    torch.testing.assert_close(pooled, linear_input(reference_tokens, registers), atol=TOL, rtol=0)
    assert pooled.shape[-1] == encoder.num_features == 2 * encoder.token_dim == 2 * D


# ---------------------------------------------------------------------------------------------
# transformers


def _hf(registers: bool, swiglu: bool, seed: int):
    import transformers

    common = dict(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS, mlp_ratio=4,
                  patch_size=PATCH, image_size=NATIVE, layer_norm_eps=1e-6)
    if registers:
        model = transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(num_register_tokens=REG, **common))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(use_swiglu_ffn=swiglu, **common))
    return randomise_(model, seed)


@pytest.mark.parametrize("variant,registers,swiglu", [
    ("dinov2-vit-test", False, False),
    ("dinov2-vit-test-reg4", True, False),
    ("dinov2-vit-test-swiglu", False, True),
])
def test_transformers_files_match_transformers(tmp_path, variant, registers, swiglu):
    hf = _hf(registers, swiglu, seed=1)
    hf.save_pretrained(tmp_path / "hub")  # v4 names, as on the Hub
    torch.save(hf.state_dict(), tmp_path / "v5.pth")  # v5 names, read safely
    x = _images(NATIVE)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
    for path in (tmp_path / "hub" / "model.safetensors", tmp_path / "v5.pth"):
        enc = mimzoo.load(variant, weights=str(path), img_size=NATIVE).eval()
        assert enc.info.weights.layout == "transformers"
        assert_matches(enc, ref, x, REG if registers else 0)


def test_registers_off_the_native_grid_match_transformers(tmp_path):
    """At the default 56 px the 8 x 8 table is resampled at load (size + antialias, as the official _reg4
    models and transformers' Dinov2WithRegistersModel both interpolate at run time)."""
    hf = _hf(True, False, seed=2)
    hf.save_pretrained(tmp_path)
    x = _images(56)
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
    enc = mimzoo.load("dinov2-vit-test-reg4", weights=str(tmp_path / "model.safetensors")).eval()
    assert enc.model.pos_embed.shape == (1, 16, D)  # resampled once, no class slot (timm's no_embed_class)
    assert_matches(enc, ref, x, REG)


# ---------------------------------------------------------------------------------------------
# official layout


@pytest.mark.parametrize("registers", [False, True])
@pytest.mark.parametrize("size", [NATIVE, 56, 84])
def test_official_backbone_matches_the_official_forward(tmp_path, registers, size):
    """Native grid, and sizes where mimzoo resamples the table at load (56 px is the variant default)."""
    sd = official_sd(3, registers=registers)
    save_file(sd, str(tmp_path / "dinov2.safetensors"))
    name = "dinov2-vit-test-reg4" if registers else "dinov2-vit-test"
    enc = mimzoo.load(name, weights=str(tmp_path / "dinov2.safetensors"), img_size=None if size == 56 else size)
    assert enc.info.weights.layout == "official"
    x = _images(size)
    with torch.no_grad():
        ref = official_forward(sd, x)
    assert_matches(enc.eval(), ref, x, REG if registers else 0)


def test_official_swiglu_chunked_teacher_checkpoint(tmp_path):
    """ViT-g style: w12/w3 SwiGLU, block_chunks (blocks.<chunk>.<i>.*) inside the trainer's
    teacher_checkpoint.pth ({'teacher': {backbone, dino_head}}), read without unpickling code."""
    sd = official_sd(4, swiglu=True)
    # block_chunks=2 over 2 blocks: chunk c holds [Identity] * c + [block c], so block i saves as blocks.i.i.*
    chunked = {re.sub(r"^blocks\.(\d+)\.", r"blocks.\1.\1.", k): v for k, v in sd.items()}
    assert "blocks.1.1.mlp.w12.weight" in chunked
    teacher = {f"backbone.{k}": v for k, v in chunked.items()}
    teacher["dino_head.last_layer.weight"] = torch.randn(8, D)
    torch.save({"teacher": teacher}, tmp_path / "teacher_checkpoint.pth")
    enc = mimzoo.load("dinov2-vit-test-swiglu", weights=str(tmp_path / "teacher_checkpoint.pth"), img_size=NATIVE)
    assert enc.info.weights.layout == "official"
    x = _images(NATIVE)
    assert_matches(enc.eval(), official_forward(sd, x), x, 0)


def test_official_checkpoint_of_another_model_fails_loudly(tmp_path):
    sd = official_sd(5, registers=True)
    save_file(sd, str(tmp_path / "reg.safetensors"))
    with pytest.raises(WeightsError, match="has 4 register tokens; load it with the '-reg4' variant"):
        mimzoo.load("dinov2-vit-test", weights=str(tmp_path / "reg.safetensors"))
    save_file(official_sd(5), str(tmp_path / "plain.safetensors"))
    with pytest.raises(WeightsError, match="has no register tokens"):
        mimzoo.load("dinov2-vit-test-reg4", weights=str(tmp_path / "plain.safetensors"))
    save_file(official_sd(5, swiglu=True), str(tmp_path / "swiglu.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):  # a SwiGLU (ViT-g) file into an MLP model
        mimzoo.load("dinov2-vit-test", weights=str(tmp_path / "swiglu.safetensors"))
    del sd["blocks.1.ls2.gamma"]
    save_file(sd, str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsError, match="missing"):
        mimzoo.load("dinov2-vit-test-reg4", weights=str(tmp_path / "missing.safetensors"))


# ---------------------------------------------------------------------------------------------
# timm layout


@pytest.mark.parametrize("registers", [False, True])
def test_timm_layout_from_timms_own_filter(tmp_path, registers):
    """timm's checkpoint_filter_fn turns an official backbone into a timm file; mimzoo loads that file and
    reproduces the official forward, and timm's own model on the same file."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    sd = official_sd(6, registers=registers)
    arch = "vit_small_patch14_reg4_dinov2" if registers else "vit_small_patch14_dinov2"
    ref_model = timm.create_model(arch, img_size=NATIVE, embed_dim=D, depth=DEPTH, num_heads=HEADS, num_classes=0)
    timm_sd = checkpoint_filter_fn(dict(sd), ref_model)
    ref_model.load_state_dict(timm_sd)
    save_file({k: v.contiguous() for k, v in timm_sd.items()}, str(tmp_path / "model.safetensors"))
    torch.save(timm_sd, tmp_path / "model.pth")
    x = _images(NATIVE)
    with torch.no_grad():
        timm_tokens = ref_model.eval().forward_features(x)
    for file in ("model.safetensors", "model.pth"):
        enc = mimzoo.load("dinov2-vit-test-reg4" if registers else "dinov2-vit-test",
                          weights=str(tmp_path / file), img_size=NATIVE).eval()
        assert enc.info.weights.layout == "timm"
        assert_matches(enc, official_forward(sd, x), x, REG if registers else 0)
        torch.testing.assert_close(enc.forward_features(x).detach(), timm_tokens.detach(), atol=TOL, rtol=0)


# ---------------------------------------------------------------------------------------------
# the encoder contract with token-avg pooling


def test_img_size_must_be_a_multiple_of_14():
    with pytest.raises(MimzooError, match="use 56 or 70"):
        mimzoo.load("dinov2-vit-test", pretrained=False, img_size=60)
    enc = mimzoo.load("dinov2-vit-test-reg4", pretrained=False, img_size=70)
    assert enc.preprocess.input_size == (3, 70, 70) and enc.forward_features(_images(70)).shape == (2, 1 + REG + 25, D)


def test_pooling_through_embed_images_and_a_saved_folder(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    enc = mimzoo.load("dinov2-vit-test-reg4", pretrained=False).eval()
    rng = torch.Generator().manual_seed(1)
    images = [Image.fromarray(torch.randint(0, 255, (64, 80, 3), generator=rng, dtype=torch.uint8).numpy())
              for _ in range(3)]
    emb = enc.embed_images(images)
    x = torch.stack([enc.transform(im) for im in images])
    with torch.no_grad():
        torch.testing.assert_close(emb, linear_input(enc.forward_features(x), REG), atol=TOL, rtol=0)
    assert emb.shape == (3, 2 * D)
    enc.save_pretrained(str(tmp_path / "folder"))
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["global_pool"] == "token" and config["mimzoo"]["pooling"] == "token-avg"  # timm reads the first
    back = mimzoo.load(str(tmp_path / "folder")).eval()
    assert back.num_features == 2 * D
    torch.testing.assert_close(back.embed_images(images), emb, atol=1e-6, rtol=0)


def test_onnx_export_verifies_tokens_and_embedding(tmp_path):
    r = CliRunner().invoke(cli, ["export", "dinov2-vit-test-reg4", "--random-init", "--images", "8", "--tokens",
                                 "-o", str(tmp_path / "onnx"), "--json"])
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    assert meta["outputs"]["embedding"] == ["N", 2 * D] and meta["outputs"]["tokens"] == ["N", 1 + REG + 16, D]
    assert meta["verification"]["images"] == 8
