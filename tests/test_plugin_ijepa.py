"""The I-JEPA plugin: each checkpoint layout loads the right encoder and reproduces an independent model.

- official training checkpoint (``{'encoder', 'predictor', 'target_encoder', 'opt', 'scaler', ...}``,
  every state dict under DDP's ``module.``), written out by hand from facebookresearch/ijepa
  ``src/train.py`` and ``src/models/vision_transformer.py``, with different random values in the
  two encoders: the target variants must load ``target_encoder``, the context variants ``encoder``.
  Compared with a functional ViT written from the official key names, with timm's
  VisionTransformer (no class token, average pooling) and, for the context encoder, with timm's
  own I-JEPA checkpoint filter;
- transformers: IJepaModel / IJepaForImageClassification (Hub files with v4 names and v5 state
  dicts), compared with transformers' forward (no ``bool_masked_pos``, so no masking);
- wrong checkpoints (a missing key, a wrong shape, the wrong encoder, a ViT with a class token)
  fail with WeightsError.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mimzoo
from mimzoo.errors import WeightsError
from mimzoo.registry import get_registry
from mimzoo.weights import convert_and_load, read_checkpoint

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128, pred_dim=16, pred_depth=1)
GRID = TINY["img"] // TINY["patch"]
NUM_PATCHES = GRID * GRID
TOL = 1e-5  # same LayerNorm eps (1e-6) and exact GELU everywhere: only float rounding differs
PUBLIC = [v for v in get_registry().method("ijepa").variants if not v.test_only]


# ---------------------------------------------------------------------------------------------
# official checkpoints, by hand


def _block_shapes(prefix: str, d: int, mlp: int) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of one official ``Block`` (norm1, attn.qkv, attn.proj, norm2, mlp)."""
    return {f"{prefix}norm1.weight": (d,), f"{prefix}norm1.bias": (d,),
            f"{prefix}attn.qkv.weight": (3 * d, d), f"{prefix}attn.qkv.bias": (3 * d,),
            f"{prefix}attn.proj.weight": (d, d), f"{prefix}attn.proj.bias": (d,),
            f"{prefix}norm2.weight": (d,), f"{prefix}norm2.bias": (d,),
            f"{prefix}mlp.fc1.weight": (mlp, d), f"{prefix}mlp.fc1.bias": (mlp,),
            f"{prefix}mlp.fc2.weight": (d, mlp), f"{prefix}mlp.fc2.bias": (d,)}


def _randomise(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random values for every tensor, LayerNorm scales around 1, so no check passes by symmetry."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        is_scale = k.endswith("weight") and "norm" in k.rsplit(".", 2)[-2]
        out[k] = torch.randn(s, generator=g) * 0.2 + (1.0 if is_scale else 0.0)
    return out


def official_encoder_sd(seed: int) -> dict[str, torch.Tensor]:
    """An official I-JEPA ``VisionTransformer`` state dict (no class token; pos_embed is saved)."""
    d, p = TINY["dim"], TINY["patch"]
    shapes = {"pos_embed": (1, NUM_PATCHES, d), "patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,)}
    for i in range(TINY["depth"]):
        shapes.update(_block_shapes(f"blocks.{i}.", d, TINY["mlp"]))
    return _randomise(shapes, seed)


def official_predictor_sd(seed: int) -> dict[str, torch.Tensor]:
    """An official ``VisionTransformerPredictor`` state dict (dropped by every layout)."""
    d, pd = TINY["dim"], TINY["pred_dim"]
    shapes = {"predictor_embed.weight": (pd, d), "predictor_embed.bias": (pd,), "mask_token": (1, 1, pd),
              "predictor_pos_embed": (1, NUM_PATCHES, pd), "predictor_norm.weight": (pd,),
              "predictor_norm.bias": (pd,), "predictor_proj.weight": (d, pd), "predictor_proj.bias": (d,)}
    for i in range(TINY["pred_depth"]):
        shapes.update(_block_shapes(f"predictor_blocks.{i}.", pd, 4 * pd))
    return _randomise(shapes, seed)


def official_checkpoint(target: dict, context: dict, *, ddp: bool = True) -> dict:
    """What ``save_checkpoint`` in src/train.py writes (DDP wraps every module: ``module.`` keys)."""
    wrap = (lambda sd: {f"module.{k}": v for k, v in sd.items()}) if ddp else dict
    adam = {i: {"step": torch.tensor(10.0), "exp_avg": torch.randn(4), "exp_avg_sq": torch.rand(4)} for i in range(2)}
    return {
        "encoder": wrap(context),
        "predictor": wrap(official_predictor_sd(seed=5)),
        "target_encoder": wrap(target),
        "opt": {"state": adam, "param_groups": [{"lr": 1e-3, "weight_decay": 0.04, "params": [0, 1]}]},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                   "_growth_tracker": 0},
        "epoch": 300, "loss": 0.123, "batch_size": 128, "world_size": 16, "lr": 1e-3,
    }


# ---------------------------------------------------------------------------------------------
# independent implementations


def reference_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The official VisionTransformer.forward (no masks), written from its key names without timm."""
    d, h = TINY["dim"], TINY["heads"]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=TINY["patch"])
    t = t.flatten(2).transpose(1, 2) + sd["pos_embed"]
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        y = F.layer_norm(t, (d,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps)
        q, k, v = F.linear(y, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).chunk(3, dim=-1)
        q, k, v = (z.unflatten(-1, (h, d // h)).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // h) ** -0.5, dim=-1) @ v
        t = t + F.linear(att.transpose(1, 2).flatten(2), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        y = F.layer_norm(t, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps)
        t = t + F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                         sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    return F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], eps)


def timm_vit() -> torch.nn.Module:
    """timm's VisionTransformer as I-JEPA's: no class token, average pooling, no fc_norm."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=TINY["img"], patch_size=TINY["patch"], embed_dim=TINY["dim"],
                             depth=TINY["depth"], num_heads=TINY["heads"], mlp_ratio=TINY["mlp"] / TINY["dim"],
                             class_token=False, global_pool="avg", fc_norm=False, num_classes=0).eval()


def _hf_config():
    from transformers import IJepaConfig

    return IJepaConfig(image_size=TINY["img"], patch_size=TINY["patch"], hidden_size=TINY["dim"],
                       num_hidden_layers=TINY["depth"], num_attention_heads=TINY["heads"],
                       intermediate_size=TINY["mlp"], layer_norm_eps=1e-6)


def _randomise_module(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = "layernorm" in name and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale else 0.0))


# ---------------------------------------------------------------------------------------------
# fixtures and checks


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def encoders():
    """Distinct random target and context encoders, as in a real checkpoint (EMA != online)."""
    return {"target": official_encoder_sd(seed=1), "context": official_encoder_sd(seed=2)}


@pytest.fixture
def full_ckpt(tmp_path, encoders):
    path = tmp_path / "IN1K-vit.t.4-300e.pth.tar"
    torch.save(official_checkpoint(encoders["target"], encoders["context"]), path)
    return path


def _tiny_encoder():
    return mimzoo.load("ijepa-vit-test", pretrained=False)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _check_forward(encoder, expected_tokens: torch.Tensor, x: torch.Tensor) -> None:
    """Tokens match, and the pooled output is their mean (the paper's average pooling)."""
    with torch.no_grad():
        tokens = encoder.forward_features(x)
        pooled = encoder(x)
    assert tokens.shape == expected_tokens.shape == (x.shape[0], NUM_PATCHES, TINY["dim"])
    assert _max_diff(tokens, expected_tokens) < TOL
    assert _max_diff(pooled, expected_tokens.mean(dim=1)) < TOL


def _loaded_from(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return own.keys() == sd.keys() and all(torch.equal(own[k], sd[k]) for k in sd)


# ---------------------------------------------------------------------------------------------
# official layout: which encoder


def test_official_checkpoint_loads_the_target_encoder(full_ckpt, encoders, images):
    encoder = mimzoo.load("ijepa-vit-test", pretrained=False, weights=full_ckpt)
    assert encoder.info.weights.layout == "official-target"
    assert _loaded_from(encoder.model, encoders["target"])
    assert not _loaded_from(encoder.model, encoders["context"])
    with torch.no_grad():
        ref = reference_tokens(encoders["target"], images)
        timm_ref = timm_vit()
        timm_ref.load_state_dict(encoders["target"], strict=True)
        assert _max_diff(ref, timm_ref.forward_features(images)) < TOL  # the two references agree
        assert _max_diff(ref.mean(dim=1), timm_ref(images)) < TOL
    _check_forward(encoder, ref, images)


@pytest.mark.parametrize("variant", PUBLIC, ids=lambda v: v.name)
def test_each_public_variant_picks_its_encoder(full_ckpt, encoders, variant):
    """Target variants keep target_encoder, '-context' variants keep encoder, from the same file."""
    which = "context" if variant.name.endswith("-context") else "target"
    enc = _tiny_encoder()
    report = convert_and_load(enc.model, read_checkpoint(full_ckpt), variant.layouts, source="ckpt", owner=variant.name)
    assert report.layout == f"official-{which}"
    assert _loaded_from(enc.model, encoders[which])
    # the default weight source reads the right encoder too
    default = variant.weight_source()
    assert default.layout == ("transformers" if which == "context" else "official-target")
    official = variant.weight_source("official")
    assert official.layout == f"official-{which}" and official.url.endswith(".pth.tar")


def test_context_encoder_matches_timms_own_ijepa_loading(full_ckpt, images):
    """timm's checkpoint filter loads I-JEPA files through checkpoint['encoder']: the context variants agree."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    raw = torch.load(full_ckpt, weights_only=True)
    timm_ref = timm_vit()
    timm_ref.load_state_dict(checkpoint_filter_fn(raw, timm_ref), strict=True)
    enc = _tiny_encoder()
    layouts = get_registry().model("ijepa-vit-h14-context").variant.layouts
    convert_and_load(enc.model, read_checkpoint(full_ckpt), layouts, source="ckpt", owner="context")
    with torch.no_grad():
        expected = timm_ref.forward_features(images)
    _check_forward(enc, expected, images)


def test_single_gpu_checkpoint_without_module_prefix(tmp_path, encoders):
    path = tmp_path / "jepa-latest.pth.tar"
    torch.save(official_checkpoint(encoders["target"], encoders["context"], ddp=False), path)
    encoder = mimzoo.load("ijepa-vit-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "official-target"
    assert _loaded_from(encoder.model, encoders["target"])


def test_one_encoder_saved_alone_loads_in_timm_layout(tmp_path, full_ckpt, encoders):
    """torch.save(checkpoint['target_encoder']): the shared 'module.' prefix goes, the keys are timm's."""
    raw = torch.load(full_ckpt, weights_only=True)
    torch.save(raw["target_encoder"], tmp_path / "target_encoder.pth")
    encoder = mimzoo.load("ijepa-vit-test", pretrained=False, weights=tmp_path / "target_encoder.pth")
    assert encoder.info.weights.layout == "timm"
    assert _loaded_from(encoder.model, encoders["target"])


def test_checkpoint_at_another_img_size_is_interpolated(full_ckpt, encoders):
    encoder = mimzoo.load("ijepa-vit-test", pretrained=False, weights=full_ckpt, img_size=64)
    assert encoder.model.pos_embed.shape == (1, 16 * 16, TINY["dim"])  # no class-token slot
    with torch.no_grad():
        tokens = encoder.forward_features(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 256, TINY["dim"]) and torch.isfinite(tokens).all()


# ---------------------------------------------------------------------------------------------
# transformers layout


@pytest.mark.parametrize("cls_name", ["IJepaModel", "IJepaForImageClassification"])
@pytest.mark.parametrize("saved_as", ["hub-files", "state-dict"])
def test_transformers_layout(tmp_path, images, cls_name, saved_as):
    """Hub files (save_pretrained: v4 names, safetensors) and transformers>=5 state dicts (v5 names)."""
    import transformers

    hf = getattr(transformers, cls_name)(_hf_config()).eval()
    _randomise_module(hf, seed=11)
    if saved_as == "hub-files":
        hf.save_pretrained(tmp_path)
        path = tmp_path / "model.safetensors"
    else:
        path = tmp_path / "pytorch_model.bin"
        torch.save(hf.state_dict(), path)
    encoder = mimzoo.load("ijepa-vit-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "transformers"
    base = hf.ijepa if cls_name == "IJepaForImageClassification" else hf
    with torch.no_grad():
        out = base(pixel_values=images, bool_masked_pos=None)  # no mask tokens anywhere
    _check_forward(encoder, out.last_hidden_state, images)


def test_target_variants_refuse_hf_files_with_a_pointer_to_the_context_variant(tmp_path):
    import transformers

    torch.save(transformers.IJepaModel(_hf_config()).state_dict(), tmp_path / "ijepa.bin")
    layouts = get_registry().model("ijepa-vit-h14").variant.layouts
    with pytest.raises(WeightsError, match="context encoder.*'-context' variant"):
        convert_and_load(_tiny_encoder().model, read_checkpoint(tmp_path / "ijepa.bin"), layouts,
                         source="hf", owner="ijepa-vit-h14")


def test_truncated_transformers_checkpoint_fails_loudly(tmp_path):
    import transformers

    sd = transformers.IJepaModel(_hf_config()).state_dict()
    del sd["layers.1.attention.k_proj.weight"]
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(WeightsError, match="transformers.*does not convert"):
        mimzoo.load("ijepa-vit-test", pretrained=False, weights=tmp_path / "partial.bin")


# ---------------------------------------------------------------------------------------------
# wrong checkpoints fail loudly


def test_missing_key_fails_loudly(tmp_path, encoders):
    target = dict(encoders["target"])
    del target["blocks.1.mlp.fc2.bias"]
    torch.save(official_checkpoint(target, encoders["context"]), tmp_path / "bad.pth.tar")
    with pytest.raises(WeightsError, match=r"official-target layout.*1 missing \(blocks.1.mlp.fc2.bias\)"):
        mimzoo.load("ijepa-vit-test", pretrained=False, weights=tmp_path / "bad.pth.tar")


def test_wrong_shape_fails_loudly(tmp_path, encoders):
    target = dict(encoders["target"])
    target["blocks.0.mlp.fc1.weight"] = torch.zeros(64, TINY["dim"])
    torch.save(official_checkpoint(target, encoders["context"]), tmp_path / "bad.pth.tar")
    wrong = r"1 with wrong shapes \(blocks.0.mlp.fc1.weight \(64, 32\) vs \(128, 32\)\)"
    with pytest.raises(WeightsError, match=wrong):
        mimzoo.load("ijepa-vit-test", pretrained=False, weights=tmp_path / "bad.pth.tar")


def test_pos_embed_with_a_class_token_slot_fails_loudly(tmp_path, encoders):
    target = dict(encoders["target"], pos_embed=torch.zeros(1, NUM_PATCHES + 1, TINY["dim"]))
    torch.save(official_checkpoint(target, encoders["context"]), tmp_path / "bad.pth.tar")
    with pytest.raises(WeightsError, match="pos_embed holds 65 tokens, not a square patch grid"):
        mimzoo.load("ijepa-vit-test", pretrained=False, weights=tmp_path / "bad.pth.tar")


@pytest.mark.parametrize("variant, kept", [("ijepa-vit-h14", "encoder"), ("ijepa-vit-h14-context", "target_encoder")])
def test_checkpoint_without_the_wanted_encoder_names_the_other_variant(tmp_path, encoders, variant, kept):
    raw = official_checkpoint(encoders["target"], encoders["context"])
    dropped = "target_encoder" if kept == "encoder" else "encoder"
    del raw[dropped]
    torch.save(raw, tmp_path / "partial.pth.tar")
    layouts = get_registry().model(variant).variant.layouts
    with pytest.raises(WeightsError, match=rf"no '{dropped}' state dict.*its '{kept}' loads with"):
        convert_and_load(_tiny_encoder().model, read_checkpoint(tmp_path / "partial.pth.tar"), layouts,
                         source="partial", owner=variant)


def test_vit_with_a_class_token_is_refused(tmp_path, encoders):
    sd = dict(encoders["target"], cls_token=torch.zeros(1, 1, TINY["dim"]))
    torch.save(sd, tmp_path / "mae.pth")
    with pytest.raises(WeightsError, match="match none of the layouts 'ijepa-vit-test' knows"):
        mimzoo.load("ijepa-vit-test", pretrained=False, weights=tmp_path / "mae.pth")


# ---------------------------------------------------------------------------------------------
# metadata


def test_variants_pair_up_and_carry_the_papers_numbers():
    names = {v.name for v in PUBLIC}
    assert names == {f"ijepa-vit-{a}{s}" for a in ("h14", "h16-448", "g16") for s in ("", "-context")}
    by_name = {v.name: v for v in PUBLIC}
    assert by_name["ijepa-vit-h14"].reference.linear_top1 == 79.3
    assert by_name["ijepa-vit-h16-448"].reference.linear_top1 == 81.1
    assert by_name["ijepa-vit-g16"].reference.linear_top1 is None  # no ImageNet-1K number in the paper
    for v in PUBLIC:
        assert v.pooling == "avg" and v.reference.finetune_top1 is None
        twin = by_name[v.name.removesuffix("-context")]
        assert (v.arch, v.preprocess, v.params_m) == (twin.arch, twin.preprocess, twin.params_m)
        if v.name.endswith("-context"):
            assert v.reference.linear_top1 is None  # the paper's numbers describe the target encoder
            assert v.weights[0].repo_id.startswith("facebook/ijepa_vit")
            assert v.weight_source("official").url == twin.weight_source("official").url
    h448 = by_name["ijepa-vit-h16-448"].preprocess
    assert h448.input_size == (3, 448, 448) and h448.crop_pct == 1.0
