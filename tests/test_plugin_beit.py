"""The BEiT plugin: each checkpoint layout loads into the encoder and reproduces an independent implementation.

- official (microsoft/unilm ``beit_*_pt22k.pth``): random tensors under the exact key names and
  shapes of unilm's ``VisionTransformerForMaskedImageModeling`` (mask token, shared bias with its
  index buffer, LM head), compared with a functional BEiT forward written below from unilm's
  ``modeling_finetune.py`` and with timm's ``Beit`` loaded through timm's own checkpoint filter;
- transformers: ``BeitForMaskedImageModeling`` (the ``microsoft/beit-*-pt22k`` Hub class) and
  ``BeitModel`` with a shared relative position bias, as Hub files (v4 names, safetensors, with
  the index buffer old Hub files carry) and as transformers>=5 state dicts (v5 names), compared
  with transformers' forward with masking off (``bool_masked_pos=None``). transformers' default
  LayerNorm eps is 1e-12 and unilm's/timm's 1e-6, hence the 1e-4 tolerance.

The pooled output is the mean of the final-normalised patch tokens (see the plugin docstring).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import mimzoo
from mimzoo.errors import WeightsError

TINY = dict(img=32, patch=4, dim=32, depth=2, heads=2, mlp=128, vocab=16)
GRID = TINY["img"] // TINY["patch"]
TABLE_ROWS = (2 * GRID - 1) ** 2 + 3  # relative distances + cls->token, token->cls, cls->cls
TOL = 1e-4


def _official_shapes() -> dict[str, tuple[int, ...]]:
    """unilm beit/modeling_pretrain.py VisionTransformerForMaskedImageModeling, shared rel-pos bias, no abs pos."""
    d, p, h, mlp = TINY["dim"], TINY["patch"], TINY["heads"], TINY["mlp"]
    shapes = {"cls_token": (1, 1, d), "mask_token": (1, 1, d), "patch_embed.proj.weight": (d, 3, p, p),
              "patch_embed.proj.bias": (d,), "rel_pos_bias.relative_position_bias_table": (TABLE_ROWS, h),
              "norm.weight": (d,), "norm.bias": (d,), "lm_head.weight": (TINY["vocab"], d),
              "lm_head.bias": (TINY["vocab"],)}
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        shapes.update({b + "gamma_1": (d,), b + "gamma_2": (d,), b + "norm1.weight": (d,), b + "norm1.bias": (d,),
                       b + "attn.qkv.weight": (3 * d, d), b + "attn.q_bias": (d,), b + "attn.v_bias": (d,),
                       b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,), b + "norm2.weight": (d,),
                       b + "norm2.bias": (d,), b + "mlp.fc1.weight": (mlp, d), b + "mlp.fc1.bias": (mlp,),
                       b + "mlp.fc2.weight": (d, mlp), b + "mlp.fc2.bias": (d,)})
    return shapes


def official_index(grid: int) -> torch.Tensor:
    """unilm's relative_position_index: pairwise patch offsets, then 3 extra ids for the class token."""
    coords = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (grid - 1)  # [N, N, 2], offsets >= 0
    n, rows = grid * grid, (2 * grid - 1) ** 2 + 3
    index = torch.zeros(n + 1, n + 1, dtype=torch.long)
    index[1:, 1:] = rel[..., 0] * (2 * grid - 1) + rel[..., 1]
    index[0, :], index[:, 0], index[0, 0] = rows - 3, rows - 2, rows - 1
    return index


def official_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the official layout; norms and layer scales around 1, so none is trivial."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in _official_shapes().items():
        offset = 1.0 if k.endswith(("norm1.weight", "norm2.weight", "norm.weight", "gamma_1", "gamma_2")) else 0.0
        sd[k] = torch.randn(shape, generator=g) * 0.2 + offset
    sd["rel_pos_bias.relative_position_index"] = official_index(GRID)  # a buffer the unilm files carry
    return sd


def reference_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """BEiT's encoder forward (no masking) written from unilm's modeling_finetune.py, independent of timm."""
    d, h = TINY["dim"], TINY["heads"]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=TINY["patch"])
    t = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), t.flatten(2).transpose(1, 2)], dim=1)  # [B, N+1, d]
    n = t.shape[1]
    bias = sd["rel_pos_bias.relative_position_bias_table"][official_index(GRID).view(-1)].view(n, n, h).permute(2, 0, 1)
    for i in range(TINY["depth"]):
        b = f"blocks.{i}."
        y = F.layer_norm(t, (d,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps)
        qkv_bias = torch.cat([sd[b + "attn.q_bias"], torch.zeros(d), sd[b + "attn.v_bias"]])
        qkv = F.linear(y, sd[b + "attn.qkv.weight"], qkv_bias).view(x.shape[0], n, 3, h, d // h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, N+1, d/h]
        att = torch.softmax(q * (d // h) ** -0.5 @ k.transpose(-2, -1) + bias, dim=-1) @ v  # [B, h, N+1, d/h]
        att = att.transpose(1, 2).reshape(x.shape[0], n, d)
        y = F.linear(att, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        t = t + sd[b + "gamma_1"] * y
        y = F.layer_norm(t, (d,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps)
        y = F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                     sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        t = t + sd[b + "gamma_2"] * y
    return F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], eps)


def timm_reference_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """timm's Beit with a shared bias, loaded through timm's own BEiT checkpoint filter (heads removed by hand)."""
    import timm
    from timm.models.beit import checkpoint_filter_fn

    m = timm.create_model("beit_base_patch16_224", num_classes=0, img_size=TINY["img"], patch_size=TINY["patch"],
                          embed_dim=TINY["dim"], depth=TINY["depth"], num_heads=TINY["heads"], use_abs_pos_emb=False,
                          use_rel_pos_bias=False, use_shared_rel_pos_bias=True, global_pool="token")
    encoder_sd = {k: v for k, v in sd.items() if k not in ("mask_token", "lm_head.weight", "lm_head.bias")}
    m.load_state_dict(checkpoint_filter_fn({"model": encoder_sd}, m), strict=True)
    with torch.no_grad():
        return m.eval().forward_features(x)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, TINY["img"], TINY["img"], generator=torch.Generator().manual_seed(7))


def _check(encoder, expected: torch.Tensor, x: torch.Tensor) -> None:
    """Tokens and the mean-of-patch-tokens pooling match the reference."""
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(x), encoder(x)
    assert tokens.shape == expected.shape == (x.shape[0], 1 + GRID * GRID, TINY["dim"])
    assert (tokens - expected).abs().max().item() < TOL
    assert (pooled - expected[:, 1:].mean(dim=1)).abs().max().item() < TOL


def test_official_layout(tmp_path, images):
    sd = official_sd()
    torch.save({"model": sd, "epoch": 149}, tmp_path / "beit_tiny_patch4_32_pt22k.pth")  # the unilm container
    encoder = mimzoo.load("beit-vit-test", weights=tmp_path / "beit_tiny_patch4_32_pt22k.pth")
    assert encoder.info.weights.layout == "official"
    with torch.no_grad():
        ref = reference_tokens(sd, images)
    assert (ref - timm_reference_tokens(sd, images)).abs().max().item() < 1e-5  # the two references agree
    _check(encoder, ref, images)


def _hf_config(**extra):
    from transformers import BeitConfig

    return BeitConfig(image_size=TINY["img"], patch_size=TINY["patch"], hidden_size=TINY["dim"],
                      num_hidden_layers=TINY["depth"], num_attention_heads=TINY["heads"],
                      intermediate_size=TINY["mlp"], vocab_size=TINY["vocab"], use_mask_token=True,
                      use_absolute_position_embeddings=False, use_relative_position_bias=False,
                      use_shared_relative_position_bias=True, layer_scale_init_value=0.1, **extra)


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random values for every parameter (bias table and layer scales too); LayerNorm scales around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale_one = "layernorm" in name and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if scale_one else 0.0))


def _save_hub_file(model, folder) -> str:
    """save_pretrained's safetensors (v4 names), plus the index buffer the 2021 Hub files still carry."""
    model.save_pretrained(folder)
    path = folder / "model.safetensors"
    sd = load_file(str(path))
    prefix = "beit." if any(k.startswith("beit.") for k in sd) else ""
    sd[f"{prefix}encoder.relative_position_bias.relative_position_index"] = official_index(GRID)
    save_file(sd, str(path))
    return str(path)


@pytest.mark.parametrize("cls_name", ["BeitForMaskedImageModeling", "BeitModel"])
@pytest.mark.parametrize("saved_as", ["hub-file", "state-dict"])
def test_transformers_layout(tmp_path, images, cls_name, saved_as):
    import transformers

    # the pt22k Hub models are BeitForMaskedImageModeling(use_mean_pooling=True): their final norm is the
    # task model's `layernorm`; a BeitModel keeps it inside only with use_mean_pooling=False
    hf = getattr(transformers, cls_name)(_hf_config(use_mean_pooling=cls_name != "BeitModel")).eval()
    _randomise(hf, seed=11)
    if saved_as == "hub-file":
        path = _save_hub_file(hf, tmp_path)
    else:
        path = tmp_path / "pytorch_model.bin"
        torch.save(hf.state_dict(), path)
    encoder = mimzoo.load("beit-vit-test", weights=path)
    assert encoder.info.weights.layout == "transformers"
    with torch.no_grad():  # bool_masked_pos=None: no mask token in the reference
        if cls_name == "BeitModel":
            ref = hf(pixel_values=images).last_hidden_state
        else:
            ref = hf.layernorm(hf.beit(pixel_values=images, bool_masked_pos=None).last_hidden_state)
    _check(encoder, ref, images)


def test_converted_encoder_loads_back_through_the_official_layout(tmp_path):
    """An encoder converted from a Hub file, saved with its own (official-layout) keys, loads back unchanged."""
    import transformers

    hf = transformers.BeitForMaskedImageModeling(_hf_config()).eval()
    _randomise(hf, seed=5)
    from_hf = mimzoo.load("beit-vit-test", weights=_save_hub_file(hf, tmp_path))
    torch.save({"model": dict(from_hf.model.state_dict())}, tmp_path / "timm.pth")
    again = mimzoo.load("beit-vit-test", weights=tmp_path / "timm.pth")
    for k, v in from_hf.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


@pytest.mark.filterwarnings("ignore:.*(searchsorted|non-tuple sequence).*:UserWarning")  # inside timm's interpolation
def test_checkpoint_for_another_input_size_resizes_the_shared_bias(tmp_path, images):
    sd = official_sd()
    torch.save({"model": sd}, tmp_path / "ckpt.pth")
    encoder = mimzoo.load("beit-vit-test", weights=tmp_path / "ckpt.pth", img_size=48)
    table = encoder.model.rel_pos_bias.relative_position_bias_table
    assert table.shape == ((2 * 12 - 1) ** 2 + 3, TINY["heads"])
    # the three class-token entries are carried over unchanged; the patch offsets are interpolated
    assert torch.equal(table[-3:], sd["rel_pos_bias.relative_position_bias_table"][-3:])
    with torch.no_grad():
        tokens = encoder.forward_features(torch.randn(2, 3, 48, 48))
    assert tokens.shape == (2, 1 + 12 * 12, TINY["dim"]) and torch.isfinite(tokens).all()


def test_fine_tuned_checkpoint_is_refused(tmp_path):
    sd = official_sd()
    table = sd.pop("rel_pos_bias.relative_position_bias_table")
    for i in range(TINY["depth"]):  # what unilm fine-tuning makes of the shared table
        sd[f"blocks.{i}.attn.relative_position_bias_table"] = table.clone()
    torch.save({"model": sd}, tmp_path / "ft.pth")
    with pytest.raises(WeightsError, match="per block.*pass a pretrained-only checkpoint"):
        mimzoo.load("beit-vit-test", weights=tmp_path / "ft.pth")


def test_beitv2_checkpoint_is_not_taken_for_a_beit_one(tmp_path):
    sd = official_sd()
    sd["cls_pt_layers.0.norm1.weight"] = torch.ones(TINY["dim"])  # BEiT v2's patch-aggregation head
    torch.save({"model": sd}, tmp_path / "v2.pth")
    with pytest.raises(WeightsError, match=r"1 unexpected \(cls_pt_layers.0.norm1.weight\)"):
        mimzoo.load("beit-vit-test", weights=tmp_path / "v2.pth")


def test_wrong_shape_and_missing_key_fail_loudly(tmp_path):
    sd = official_sd()
    sd["blocks.1.attn.q_bias"] = torch.zeros(16)
    del sd["blocks.0.gamma_2"]
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing \(blocks.0.gamma_2\).*blocks.1.attn.q_bias \(16,\) vs \(32,\)"):
        mimzoo.load("beit-vit-test", weights=tmp_path / "bad.pth")


def test_truncated_transformers_checkpoint_fails_loudly(tmp_path):
    import transformers

    sd = transformers.BeitForMaskedImageModeling(_hf_config()).state_dict()
    del sd["beit.layers.1.attention.k_proj.weight"]
    torch.save(sd, tmp_path / "partial.bin")
    with pytest.raises(WeightsError, match="transformers.*does not convert"):
        mimzoo.load("beit-vit-test", weights=tmp_path / "partial.bin")
