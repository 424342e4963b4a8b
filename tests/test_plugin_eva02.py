"""EVA-02 checkpoint layouts load into the encoders and reproduce independent implementations.

- official layout, both layer families (Ti/S: fused qkv + packed SwiGLU ``mlp.w12``; B/L: separate
  q/k/v + SwiGLU ``mlp.w1/w2`` with the sub-LN ``mlp.ffn_ln``): a checkpoint with the exact key
  names of baaivision/EVA ``EVA-02/asuka/modeling_pretrain.py`` (mask token, ``lm_head``, RoPE
  tables at the top and in every block, in the ``{'module': ...}`` container) is loaded through
  mimzoo and compared with
    * a functional EVA-02 forward written below from the official code (patch embed, class token,
      absolute position embedding, 2D RoPE built as ``rope.py``'s VisionRotaryEmbeddingFast on the
      patch tokens of q and k, SwiGLU, final norm), independent of timm, and
    * timm's ``Eva`` built directly with the same tiny config and loaded through timm's own
      ``checkpoint_filter_fn``;
- timm layout: that timm model's state dict as safetensors;
- the official layouts of the four full-size variants load strictly (shapes only, meta device);
- broken checkpoints fail with WeightsError.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import mimzoo
from mimzoo.encoders.build import build_variant
from mimzoo.errors import WeightsError
from mimzoo.weights import read_checkpoint
from mimzoo.weights.convert import convert_and_load
from mimzoo_eva02 import METHOD, TINY_KWARGS

TOL = 1e-4
IMG, PATCH, DIM, DEPTH, HEADS = 32, 4, 32, 2, 2  # = eva02-vit-test
GRID = IMG // PATCH
HIDDEN = int(DIM * 4 * 2 / 3)  # SwiGLU hidden size, mlp_ratio 4 * 2 / 3 as in the official models
EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# official key layout
# ---------------------------------------------------------------------------------------------


def official_shapes(*, fused: bool, dim: int, depth: int, heads: int, patch: int, grid: int, hidden: int,
                    feat: int) -> dict[str, tuple[int, ...]]:
    """Float tensors of VisionTransformerForMaskedImageModeling (EVA-02), named as in its state dict.

    fused=True: Ti/S (xattn, xformers SwiGLU); fused=False: B/L (naiveswiglu, subln).
    RoPE tables use the 3D shape of the RoPE class the released files were saved with.
    """
    hd = dim // heads
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim), "mask_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
        "rope.freqs_cos": (grid, grid, hd), "rope.freqs_sin": (grid, grid, hd),
        "norm.weight": (dim,), "norm.bias": (dim,), "lm_head.weight": (feat, dim), "lm_head.bias": (feat,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
            b + "attn.q_bias": (dim,), b + "attn.v_bias": (dim,),
            b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
            b + "attn.rope.freqs_cos": (grid, grid, hd), b + "attn.rope.freqs_sin": (grid, grid, hd),
            b + "mlp.w3.weight": (dim, hidden), b + "mlp.w3.bias": (dim,),
        })
        if fused:
            shapes.update({b + "attn.qkv.weight": (3 * dim, dim),
                           b + "mlp.w12.weight": (2 * hidden, dim), b + "mlp.w12.bias": (2 * hidden,)})
        else:
            shapes.update({b + f"attn.{p}_proj.weight": (dim, dim) for p in "qkv"})
            shapes.update({b + "mlp.w1.weight": (hidden, dim), b + "mlp.w1.bias": (hidden,),
                           b + "mlp.w2.weight": (hidden, dim), b + "mlp.w2.bias": (hidden,),
                           b + "mlp.ffn_ln.weight": (hidden,), b + "mlp.ffn_ln.bias": (hidden,)})
    return shapes


def official_sd(*, fused: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the tiny official layout; LayerNorm scales around 1, all of them random."""
    shapes = official_shapes(fused=fused, dim=DIM, depth=DEPTH, heads=HEADS, patch=PATCH, grid=GRID, hidden=HIDDEN,
                             feat=48)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, s in shapes.items():
        t = torch.randn(s, generator=g) * 0.2
        sd[k] = t + 1.0 if (k.endswith("norm.weight") or ".norm1.w" in k or ".norm2.w" in k or "ffn_ln.w" in k) else t
    return sd


# ---------------------------------------------------------------------------------------------
# independent reference: EVA-02's forward written from the official code
# ---------------------------------------------------------------------------------------------


def rope_tables(grid: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """VisionRotaryEmbeddingFast(dim=head_dim // 2, pt_seq_len=grid): cos/sin [grid*grid, head_dim]."""
    half = head_dim // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    per_axis = torch.outer(torch.arange(grid).float(), freqs).repeat_interleave(2, dim=-1)  # [grid, half]
    rows = per_axis[:, None, :].expand(grid, grid, half)  # first half of head_dim: row position
    cols = per_axis[None, :, :].expand(grid, grid, half)  # second half: column position
    table = torch.cat([rows, cols], dim=-1).reshape(grid * grid, head_dim)
    return table.cos(), table.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """rope.py rotate_half: interleaved pairs (x1, x2) -> (-x2, x1)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def reference_tokens(sd: dict[str, torch.Tensor], x: torch.Tensor, *, fused: bool) -> torch.Tensor:
    """Tokens before the final norm, computed as the official EVA-02 encoder does (no masking)."""
    hd = DIM // HEADS
    cos, sin = rope_tables(GRID, hd)
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), t], dim=1) + sd["pos_embed"]
    for i in range(DEPTH):
        b = f"blocks.{i}."
        y = F.layer_norm(t, (DIM,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], EPS)
        if fused:  # one qkv projection, zero k bias
            bias = torch.cat([sd[b + "attn.q_bias"], torch.zeros(DIM), sd[b + "attn.v_bias"]])
            q, k, v = F.linear(y, sd[b + "attn.qkv.weight"], bias).chunk(3, dim=-1)
        else:
            q = F.linear(y, sd[b + "attn.q_proj.weight"], sd[b + "attn.q_bias"])
            k = F.linear(y, sd[b + "attn.k_proj.weight"])
            v = F.linear(y, sd[b + "attn.v_proj.weight"], sd[b + "attn.v_bias"])
        q, k, v = (z.unflatten(-1, (HEADS, hd)).transpose(1, 2) for z in (q, k, v))
        q, k = (torch.cat([z[:, :, :1], z[:, :, 1:] * cos + rotate_half(z[:, :, 1:]) * sin], dim=2) for z in (q, k))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1) @ v
        t = t + F.linear(att.transpose(1, 2).flatten(2), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        y = F.layer_norm(t, (DIM,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], EPS)
        if fused:  # xformers SwiGLU: packed w12, gate first
            gate, val = F.linear(y, sd[b + "mlp.w12.weight"], sd[b + "mlp.w12.bias"]).chunk(2, dim=-1)
            h = F.silu(gate) * val
        else:  # SwiGLU with sub-LN
            h = F.silu(F.linear(y, sd[b + "mlp.w1.weight"], sd[b + "mlp.w1.bias"])) * F.linear(
                y, sd[b + "mlp.w2.weight"], sd[b + "mlp.w2.bias"])
            h = F.layer_norm(h, (HIDDEN,), sd[b + "mlp.ffn_ln.weight"], sd[b + "mlp.ffn_ln.bias"], EPS)
        t = t + F.linear(h, sd[b + "mlp.w3.weight"], sd[b + "mlp.w3.bias"])
    return t


def reference_pooled(sd: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """timm's EVA-02 MIM pooling: the pretrained final norm applied to the mean patch token."""
    return F.layer_norm(tokens[:, 1:].mean(1), (DIM,), sd["norm.weight"], sd["norm.bias"], EPS)


def timm_reference(sd: dict[str, torch.Tensor], arch: str) -> torch.nn.Module:
    """timm's Eva with the tiny config, loaded through timm's own EVA checkpoint filter."""
    import timm
    from timm.models.eva import checkpoint_filter_fn

    model = timm.create_model(arch, num_classes=0, global_pool="avg", **TINY_KWARGS)
    model.load_state_dict(checkpoint_filter_fn({"module": sd}, model), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

FAMILIES = {"b-l": ("eva02_base_patch14_224", False), "ti-s": ("eva02_tiny_patch14_224", True)}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))


def _tiny_encoder(arch: str):
    """The tiny variant, or the same config in the Ti/S layer layout."""
    variant = METHOD.variant("eva02-vit-test")
    return replace(variant, arch=arch), build_variant(METHOD, replace(variant, arch=arch))


def _compare(encoder, sd, x, *, fused: bool, arch: str) -> float:
    with torch.no_grad():
        tokens, pooled = encoder.forward_features(x), encoder(x)
        ref_tokens = reference_tokens(sd, x, fused=fused)
        ref_pooled = reference_pooled(sd, ref_tokens)
        timm_model = timm_reference(sd, arch)
        timm_tokens = timm_model.forward_features(x)
        timm_pooled = timm_model.forward_head(timm_tokens)
    assert tokens.shape == ref_tokens.shape == (x.shape[0], 1 + GRID * GRID, DIM)
    diffs = [(tokens - ref_tokens).abs().max().item(), (pooled - ref_pooled).abs().max().item(),
             (tokens - timm_tokens).abs().max().item(), (pooled - timm_pooled).abs().max().item()]
    assert max(diffs) < TOL, diffs
    return max(diffs)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_official_layout_matches_references(tmp_path, images, family):
    arch, fused = FAMILIES[family]
    sd = official_sd(fused=fused)
    path = tmp_path / "eva02_pt_p14.pt"
    torch.save({"module": sd}, path)  # the released files' container
    if family == "b-l":
        encoder = mimzoo.load("eva02-vit-test", pretrained=False, weights=path)
        assert encoder.info.weights.layout == "official"
    else:
        variant, encoder = _tiny_encoder(arch)
        report = convert_and_load(encoder.model, read_checkpoint(path), variant.layouts, source=str(path), owner="ti-s")
        assert report.layout == "official"
    _compare(encoder.eval(), sd, images, fused=fused, arch=arch)


def test_official_ti_s_with_unpacked_swiglu(images):
    """SwiGLU saved as separate w1 (gate) / w2 is packed into timm's fc1 for Ti/S."""
    arch, fused = FAMILIES["ti-s"]
    sd = official_sd(fused=True, seed=2)
    unpacked = dict(sd)
    for i in range(DEPTH):
        for kind in ("weight", "bias"):
            gate, val = unpacked.pop(f"blocks.{i}.mlp.w12.{kind}").chunk(2, dim=0)
            unpacked[f"blocks.{i}.mlp.w1.{kind}"], unpacked[f"blocks.{i}.mlp.w2.{kind}"] = gate, val
    variant, encoder = _tiny_encoder(arch)
    convert_and_load(encoder.model, unpacked, variant.layouts, source="unpacked", owner="ti-s")
    _compare(encoder.eval(), sd, images, fused=fused, arch=arch)


def test_timm_layout(tmp_path, images):
    sd = official_sd(fused=False, seed=4)
    ref = timm_reference(sd, FAMILIES["b-l"][0])
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    encoder = mimzoo.load("eva02-vit-test", pretrained=False, weights=path)
    assert encoder.info.weights.layout == "timm"
    _compare(encoder, sd, images, fused=False, arch=FAMILIES["b-l"][0])


FULL = {  # dim, depth, heads, fused (Ti/S) -- the official model definitions
    "eva02-vit-t": (192, 12, 3, True),
    "eva02-vit-s": (384, 12, 6, True),
    "eva02-vit-b": (768, 12, 12, False),
    "eva02-vit-l": (1024, 24, 16, False),
}


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_official_layouts_load_strictly(name):
    dim, depth, heads, fused = FULL[name]
    shapes = official_shapes(fused=fused, dim=dim, depth=depth, heads=heads, patch=14, grid=16,
                             hidden=int(dim * 4 * 2 / 3), feat=1024)
    variant = METHOD.variant(name)
    with torch.device("meta"):
        encoder = build_variant(METHOD, variant)
        sd = {k: torch.empty(s) for k, s in shapes.items()}
    report = convert_and_load(encoder.model, sd, variant.layouts, source="official", owner=name)
    assert report.layout == "official"
    dropped = 1 + 2 + 2 + 2 * depth  # mask token, lm_head, RoPE tables at the top and per block
    assert report.tensors == len(shapes) - dropped


@pytest.mark.parametrize("break_it", ["missing", "shape"])
def test_broken_official_checkpoint_fails(tmp_path, break_it):
    sd = official_sd(fused=False)
    if break_it == "missing":
        del sd["blocks.1.mlp.ffn_ln.weight"]
    else:
        sd["pos_embed"] = torch.zeros(1, 65, DIM + 1)
    path = tmp_path / "broken.pt"
    torch.save({"module": sd}, path)
    with pytest.raises(WeightsError, match="missing" if break_it == "missing" else "wrong shape"):
        mimzoo.load("eva02-vit-test", pretrained=False, weights=path)


def test_half_of_a_packed_swiglu_fails():
    sd = official_sd(fused=True)
    gate, _ = sd.pop("blocks.0.mlp.w12.weight").chunk(2, dim=0)
    sd["blocks.0.mlp.w1.weight"] = gate
    variant, encoder = _tiny_encoder(FAMILIES["ti-s"][0])
    with pytest.raises(WeightsError, match="w1/w2"):
        convert_and_load(encoder.model, sd, variant.layouts, source="half", owner="ti-s")
