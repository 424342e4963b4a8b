"""SimMIM checkpoint layouts load into the encoders and reproduce independent implementations.

- Swin, official layout: a checkpoint with the exact key names and shapes of microsoft/SimMIM
  (``encoder.*`` incl. ``mask_token``, ``relative_position_index`` and ``attn_mask`` buffers,
  ``decoder.0.*``) is written by hand from ``models/swin_transformer.py`` / ``models/simmim.py``,
  loaded through ``mimzoo.load``, and compared with transformers' ``SwinModel`` holding the same
  weights (mapped by hand below).
- Swin, transformers layout: a random ``SwinForMaskedImageModeling`` state dict, with transformers
  v5 names (safetensors) and v4 Hub names (pickle), compared with that model's own forward
  (``bool_masked_pos=None``: no masking).
- ViT, official layout: hand-written SimMIM ViT keys (BEiT-style, ``models/vision_transformer.py``)
  compared with transformers' ``BeitModel`` configured the same way (shared relative position
  bias, layer scale, no absolute position embedding, LayerNorm eps 1e-6).
- The official layouts of the full-size variants load strictly (shapes only, on the meta device),
  Swin-L's last stage included (its 6x6 map shrinks the window 12 to 6, and the table with it).
- Broken checkpoints fail with WeightsError.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

import mimzoo
from mimzoo.encoders.build import build_variant
from mimzoo.errors import WeightsError
from mimzoo.weights.convert import convert_and_load
from mimzoo_simmim import METHOD

TOL = 1e-4
SWIN = dict(img=32, patch=2, dim=8, depths=(2, 2, 2), heads=(1, 2, 4), window=4)  # = simmim-swin-test
VIT = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128)  # = simmim-vit-test


# ---------------------------------------------------------------------------------------------
# random tensors in the official key layouts
# ---------------------------------------------------------------------------------------------


def _randomise(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random values for every float tensor; norm scales and layer scales around 1 and 0.1 plus noise."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        t = torch.randn(s, generator=g) * 0.2
        if re.search(r"norm\d?\.weight$", k):
            t = t + 1.0
        elif re.search(r"gamma_\d$", k):
            t = t * 0.5 + 0.1
        elif k.endswith("relative_position_bias_table"):
            t = t * 5  # strong enough to matter in attention
        out[k] = t
    return out


def _window_and_shift(res: int, window: int, block: int) -> tuple[int, int]:
    """Official SwinTransformerBlock: odd blocks shift by window // 2; no shift, window = map when it is small."""
    shift = 0 if block % 2 == 0 else window // 2
    if res <= window:
        return res, 0
    return window, shift


def official_swin_shapes(img: int, patch: int, dim: int, depths, heads, window: int) -> dict[str, tuple[int, ...]]:
    """Float tensors of SimMIM's SwinTransformerForSimMIM + decoder, named as in its state dict."""
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.mask_token": (1, 1, dim),
        "encoder.patch_embed.proj.weight": (dim, 3, patch, patch),
        "encoder.patch_embed.proj.bias": (dim,),
        "encoder.patch_embed.norm.weight": (dim,),
        "encoder.patch_embed.norm.bias": (dim,),
    }
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        d, res = dim * 2**i, img // patch // 2**i
        for j in range(depth):
            ws, _ = _window_and_shift(res, window, j)
            b = f"encoder.layers.{i}.blocks.{j}."
            shapes.update({
                b + "norm1.weight": (d,), b + "norm1.bias": (d,),
                b + "attn.relative_position_bias_table": ((2 * ws - 1) ** 2, nh),
                b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
                b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
            })
        if i < len(depths) - 1:  # PatchMerging at the end of every stage but the last
            b = f"encoder.layers.{i}.downsample."
            shapes.update({b + "reduction.weight": (2 * d, 4 * d), b + "norm.weight": (4 * d,),
                           b + "norm.bias": (4 * d,)})
    nf, stride = dim * 2 ** (len(depths) - 1), patch * 2 ** (len(depths) - 1)
    shapes.update({"encoder.norm.weight": (nf,), "encoder.norm.bias": (nf,),
                   "decoder.0.weight": (stride**2 * 3, nf, 1, 1), "decoder.0.bias": (stride**2 * 3,)})
    return shapes


def official_swin_buffers(img: int, patch: int, depths, window: int) -> dict[str, tuple[int, ...]]:
    """The persistent buffers SimMIM's Swin saves: relative_position_index always, attn_mask when shifted."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, depth in enumerate(depths):
        res = img // patch // 2**i
        for j in range(depth):
            ws, shift = _window_and_shift(res, window, j)
            b = f"encoder.layers.{i}.blocks.{j}."
            shapes[b + "attn.relative_position_index"] = (ws * ws, ws * ws)
            if shift:
                shapes[b + "attn_mask"] = ((res // ws) ** 2, ws * ws, ws * ws)
    return shapes


def official_swin_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    c = SWIN
    sd = _randomise(official_swin_shapes(c["img"], c["patch"], c["dim"], c["depths"], c["heads"], c["window"]), seed)
    for k, s in official_swin_buffers(c["img"], c["patch"], c["depths"], c["window"]).items():
        sd[k] = torch.zeros(s, dtype=torch.long if k.endswith("index") else torch.float32)
    return sd


def official_vit_shapes(img: int, patch: int, dim: int, depth: int, heads: int, mlp: int) -> dict[str, tuple[int, ...]]:
    """Float tensors of SimMIM's VisionTransformerForSimMIM (pretrain config) + decoder."""
    g = img // patch
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.cls_token": (1, 1, dim), "encoder.mask_token": (1, 1, dim),
        "encoder.patch_embed.proj.weight": (dim, 3, patch, patch), "encoder.patch_embed.proj.bias": (dim,),
        "encoder.rel_pos_bias.relative_position_bias_table": ((2 * g - 1) ** 2 + 3, heads),
        "encoder.norm.weight": (dim,), "encoder.norm.bias": (dim,),
        "decoder.0.weight": (patch**2 * 3, dim, 1, 1), "decoder.0.bias": (patch**2 * 3,),
    }
    for i in range(depth):
        b = f"encoder.blocks.{i}."
        shapes.update({
            b + "gamma_1": (dim,), b + "gamma_2": (dim,), b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
            b + "attn.qkv.weight": (3 * dim, dim), b + "attn.q_bias": (dim,), b + "attn.v_bias": (dim,),
            b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
            b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
            b + "mlp.fc1.weight": (mlp, dim), b + "mlp.fc1.bias": (mlp,),
            b + "mlp.fc2.weight": (dim, mlp), b + "mlp.fc2.bias": (dim,),
        })
    return shapes


def official_vit_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    c = VIT
    sd = _randomise(official_vit_shapes(c["img"], c["patch"], c["dim"], c["depth"], c["heads"], c["mlp"]), seed)
    n = (c["img"] // c["patch"]) ** 2 + 1
    sd["encoder.rel_pos_bias.relative_position_index"] = torch.zeros(n, n, dtype=torch.long)
    return sd


# ---------------------------------------------------------------------------------------------
# independent references: transformers SwinModel / BeitModel
# ---------------------------------------------------------------------------------------------


def hf_swin():
    from transformers import SwinConfig, SwinForMaskedImageModeling

    c = SWIN
    cfg = SwinConfig(image_size=c["img"], patch_size=c["patch"], embed_dim=c["dim"], depths=list(c["depths"]),
                     num_heads=list(c["heads"]), window_size=c["window"], encoder_stride=c["patch"] * 4)
    return SwinForMaskedImageModeling(cfg).eval()


def official_swin_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SimMIM Swin keys -> transformers v5 SwinForMaskedImageModeling keys (both downsample at stage end)."""
    out = {}
    for k, v in sd.items():
        if k.endswith(("relative_position_index", "attn_mask")):
            continue
        if k.startswith("decoder."):
            out[k] = v
            continue
        k = k.removeprefix("encoder.")
        if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias"):
            base, kind = k.rsplit(".attn.qkv.", 1)
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                out[f"swin.encoder.{base}.attention.{name}_proj.{kind}"] = part
            continue
        for old, new in (("mask_token", "embeddings.mask_token"),
                         ("patch_embed.proj.", "embeddings.patch_embeddings.projection."),
                         ("patch_embed.norm.", "embeddings.norm."), ("norm1.", "layernorm_before."),
                         ("norm2.", "layernorm_after."), ("attn.proj.", "attention.o_proj."),
                         ("attn.relative_position_bias_table",
                          "attention.relative_position_bias.relative_position_bias_table")):
            k = k.replace(old, new)
        k = re.sub(r"^norm\.", "layernorm.", k)
        out["swin." + (k if not k.startswith("layers.") else "encoder." + k)] = v
    return out


def hf_v5_to_v4(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers>=5 Swin names -> the v4 names Hub files use (with their relative_position_index buffers)."""
    long = {"q": "query", "k": "key", "v": "value"}
    rules = ((r"\.attention\.([qkv])_proj\.", lambda m: f".attention.self.{long[m[1]]}."),
             (r"\.attention\.relative_position_bias\.relative_position_bias_table",
              ".attention.self.relative_position_bias_table"),
             (r"\.attention\.o_proj\.", ".attention.output.dense."), (r"\.mlp\.fc1\.", ".intermediate.dense."),
             (r"\.mlp\.fc2\.", ".output.dense."))
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
        if k.endswith("relative_position_bias_table"):  # v4 saved the index buffer too
            ws2 = ((int(v.shape[0] ** 0.5) + 1) // 2) ** 2
            out[k.replace("_bias_table", "_index")] = torch.zeros(ws2, ws2, dtype=torch.long)
    return out


def hf_beit(sd_official: dict[str, torch.Tensor]):
    """transformers BeitModel configured as SimMIM's pretrained ViT, holding `sd_official`'s weights."""
    from transformers import BeitConfig, BeitModel

    c = VIT
    cfg = BeitConfig(image_size=c["img"], patch_size=c["patch"], hidden_size=c["dim"], num_hidden_layers=c["depth"],
                     num_attention_heads=c["heads"], intermediate_size=c["mlp"], use_absolute_position_embeddings=False,
                     use_relative_position_bias=False, use_shared_relative_position_bias=True,
                     layer_scale_init_value=0.1, use_mean_pooling=False, layer_norm_eps=1e-6, use_mask_token=False)
    model = BeitModel(cfg, add_pooling_layer=False).eval()
    sd = {}
    for k, v in sd_official.items():
        k = k.removeprefix("encoder.")
        if k in ("mask_token", "rel_pos_bias.relative_position_index") or k.startswith("decoder."):
            continue
        m = re.match(r"blocks\.(\d+)\.(.+)$", k)
        if m is None:
            k = {"cls_token": "embeddings.cls_token", "rel_pos_bias.relative_position_bias_table":
                 "shared_position_bias.relative_position_bias_table"}.get(k, k)
            k = k.replace("patch_embed.proj.", "embeddings.patch_embeddings.projection.").replace("norm.", "layernorm.")
            sd[k] = v
            continue
        pre, rest = f"layers.{m[1]}.", m[2]
        if rest == "attn.qkv.weight":
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                sd[f"{pre}attention.{name}_proj.weight"] = part
            continue
        rest = {"gamma_1": "lambda_1", "gamma_2": "lambda_2", "attn.q_bias": "attention.q_proj.bias",
                "attn.v_bias": "attention.v_proj.bias"}.get(rest, rest)
        rest = rest.replace("norm1.", "layernorm_before.").replace("norm2.", "layernorm_after.").replace(
            "attn.proj.", "attention.o_proj.")
        sd[pre + rest] = v
    model.load_state_dict(sd, strict=True)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def _randomise_module(model: torch.nn.Module, seed: int) -> None:
    with torch.no_grad():
        for k, v in _randomise({n: tuple(p.shape) for n, p in model.named_parameters()}, seed).items():
            model.get_parameter(k).copy_(v)


def _check_swin(encoder, ref_tokens: torch.Tensor, x: torch.Tensor) -> float:
    """Tokens (timm's NHWC map, flattened row-major by the encoder) and the pooled mean match
    transformers' last hidden state."""
    with torch.no_grad():
        tokens = encoder.forward_features(x)
        pooled = encoder(x)
    assert tokens.ndim == 3 and tokens.shape == ref_tokens.shape
    diff = max((tokens - ref_tokens).abs().max().item(), (pooled - ref_tokens.mean(1)).abs().max().item())
    assert diff < TOL
    return diff


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------


def test_swin_official_layout_matches_transformers(tmp_path, images):
    sd = official_swin_sd()
    path = tmp_path / "simmim_pretrain__swin_tiny.pth"
    torch.save({"model": sd, "epoch": 99}, path)  # the official container
    encoder = mimzoo.load("simmim-swin-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "official"
    ref = hf_swin()
    ref.load_state_dict(official_swin_to_hf(sd), strict=True)
    with torch.no_grad():
        ref_tokens = ref.swin(images).last_hidden_state
    _check_swin(encoder, ref_tokens, images)


@pytest.mark.parametrize("names", ["v5", "v4"])
def test_swin_transformers_layout(tmp_path, images, names):
    ref = hf_swin()
    _randomise_module(ref, seed=3)
    sd = dict(ref.state_dict())
    if names == "v5":
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / "pytorch_model.bin"
        torch.save(hf_v5_to_v4(sd), path)
    encoder = mimzoo.load("simmim-swin-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "transformers"
    with torch.no_grad():
        ref_tokens = ref.swin(images, bool_masked_pos=None).last_hidden_state
    _check_swin(encoder, ref_tokens, images)


def test_vit_official_layout_matches_transformers_beit(tmp_path, images):
    sd = official_vit_sd()
    path = tmp_path / "simmim_pretrain__vit_tiny.pth"
    torch.save({"model": sd}, path)
    encoder = mimzoo.load("simmim-vit-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "official"
    with torch.no_grad():
        ref_tokens = hf_beit(sd)(images).last_hidden_state
        tokens, pooled = encoder.forward_features(images), encoder(images)
    assert tokens.shape == ref_tokens.shape == (2, 1 + (VIT["img"] // VIT["patch"]) ** 2, VIT["dim"])
    assert (tokens - ref_tokens).abs().max().item() < TOL
    # pooling: mean of the normalised patch tokens (the class token excluded)
    assert (pooled - ref_tokens[:, 1:].mean(1)).abs().max().item() < TOL


def test_vit_timm_layout_round_trip(tmp_path, images):
    """mimzoo's converted weights (timm Beit keys, safetensors) reload to the same encoder."""
    first = mimzoo.load("simmim-vit-test", pretrained=False, weights=_save_official_vit(tmp_path))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in first.model.state_dict().items()}, str(path))
    second = mimzoo.load("simmim-vit-test", pretrained=False, weights=path)
    assert second.info.weights.layout == "timm"
    with torch.no_grad():
        assert torch.equal(first(images), second(images))


def _save_official_vit(tmp_path) -> str:
    path = tmp_path / "official_vit.pth"
    torch.save({"model": official_vit_sd(seed=5)}, path)
    return str(path)


@pytest.mark.parametrize(
    "name, shapes",
    [
        ("simmim-swin-b", official_swin_shapes(192, 4, 128, (2, 2, 18, 2), (4, 8, 16, 32), 6)),
        ("simmim-swin-l", official_swin_shapes(192, 4, 192, (2, 2, 18, 2), (6, 12, 24, 48), 12)),
        ("simmim-vit-b", official_vit_shapes(224, 16, 768, 12, 12, 3072)),
    ],
    ids=["swin-b", "swin-l", "vit-b"],
)
def test_full_size_official_layouts_load_strictly(name, shapes):
    variant = METHOD.variant(name)
    with torch.device("meta"):
        encoder = build_variant(METHOD, variant)
        sd = {k: torch.empty(s) for k, s in shapes.items()}
    report = convert_and_load(encoder.model, sd, variant.layouts, source="official", owner=name)
    assert report.layout == "official"
    assert report.tensors == len(shapes) - 3  # all but the mask token and the decoder conv


def test_swin_l_last_stage_window_shrinks_to_its_map():
    shapes = official_swin_shapes(192, 4, 192, (2, 2, 18, 2), (6, 12, 24, 48), 12)
    assert shapes["encoder.layers.3.blocks.0.attn.relative_position_bias_table"] == (11 * 11, 48)
    assert shapes["encoder.layers.2.blocks.0.attn.relative_position_bias_table"] == (23 * 23, 24)


@pytest.mark.parametrize("break_it", ["missing", "shape"])
def test_broken_official_swin_fails(tmp_path, break_it):
    sd = official_swin_sd()
    if break_it == "missing":
        del sd["encoder.layers.1.blocks.0.mlp.fc1.weight"]
    else:
        sd["encoder.norm.weight"] = torch.ones(3)
    path = tmp_path / "broken.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match="missing" if break_it == "missing" else "wrong shape"):
        mimzoo.load("simmim-swin-test", pretrained=False, weights=path)


def test_broken_official_vit_fails(tmp_path):
    sd = official_vit_sd()
    sd["encoder.rel_pos_bias.relative_position_bias_table"] = torch.zeros(10, 3)  # other head count
    path = tmp_path / "broken.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match="wrong shape"):
        mimzoo.load("simmim-vit-test", pretrained=False, weights=path)


def test_fine_tuned_vit_is_refused(tmp_path):
    """A fine-tuned SimMIM ViT (one table per block) is not the pretrained encoder."""
    sd = official_vit_sd()
    table = sd.pop("encoder.rel_pos_bias.relative_position_bias_table")
    for i in range(VIT["depth"]):
        sd[f"encoder.blocks.{i}.attn.relative_position_bias_table"] = table.clone()
    path = tmp_path / "finetuned.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsError, match="pretraining checkpoint"):
        mimzoo.load("simmim-vit-test", pretrained=False, weights=path)


def test_swin_window_resized_when_it_differs(images):
    """A table for another window is resized, as when a 192-px table meets a larger window."""
    variant = METHOD.variant("simmim-swin-test")
    src = build_variant(METHOD, variant).model
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    sd[key] = torch.randn(5 * 5, 1)  # a window-3 table
    dst = build_variant(METHOD, variant).model
    report = convert_and_load(dst, sd, variant.layouts, source="resized", owner="simmim-swin-test")
    assert report.layout == "timm"
    assert tuple(dst.state_dict()[key].shape) == (7 * 7, 1)
