"""DINOv2 checkpoint layouts and their conversion to timm's VisionTransformer keys.

The three layouts a DINOv2 backbone comes in, all brought to the **official** names first and
then to timm's (one path for everything after the renames):

- official (facebookresearch/dinov2 ``models/vision_transformer.py``, the ``dinov2_vit*14*_pretrain.pth``
  backbones): ``cls_token [1, 1, D]``, ``pos_embed [1, 1 + M*M, D]`` (the class token's slot first; a
  37 x 37 grid for the released 518 px weights), ``register_tokens [1, R, D]`` (``_reg4`` models only),
  ``mask_token [1, D]`` (pretraining only), ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv,
  attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`` (ViT-g/14: ``mlp.w12`` packing gate and
  up projections, ``mlp.w3``, the ``swiglufused`` FFN) and ``norm``. The training configs of ViT-L and
  ViT-g use ``block_chunks: 4`` (``blocks.<chunk>.<N>.*``) and the trainer's evaluation checkpoints
  (``teacher_checkpoint.pth``) hold ``{'teacher': {backbone, dino_head, ibot_head}}``; both are accepted,
  the heads dropped.
- transformers (``Dinov2Model`` / ``Dinov2WithRegistersModel``, the ``facebook/dinov2-*`` and
  ``facebook/dinov2-with-registers-*`` Hub repos): ``embeddings.{cls_token, mask_token, register_tokens,
  position_embeddings, patch_embeddings.projection}``, ``encoder.layer.N.{norm1, attention.attention.
  query/key/value, attention.output.dense, layer_scale1.lambda1, norm2, mlp.fc1/fc2 (SwiGLU: mlp.
  weights_in/weights_out), layer_scale2.lambda1}``, ``layernorm``. Hub files carry these v4 names;
  transformers >= 5 state dicts in memory use ``attention.q_proj/k_proj/v_proj/o_proj`` and
  ``mlp.gate_proj/up_proj/down_proj``; both are accepted, as are ``dinov2.`` prefixed classifier files.
- timm (``timm/vit_*_patch14{,_reg4}_dinov2.lvd142m``): official names with ``mask_token`` dropped,
  ``mlp.fc1/fc2`` for the packed SwiGLU, and, for ``_reg4`` models, ``reg_token`` with the class
  token's position folded into ``cls_token`` and a ``pos_embed`` without the class slot.

Position embeddings: mimzoo resamples the table **once, at load**, to the grid the encoder is built
for, exactly as the official ``DinoVisionTransformer.interpolate_pos_encoding`` does at run time:
bicubic with ``scale_factor = (g + 0.1) / M`` and no antialiasing for the models without registers,
bicubic to ``size = g`` with antialiasing for the ``_reg4`` ones (``hub/backbones.py`` builds them with
``interpolate_offset=0.0, interpolate_antialias=True``). At the native grid nothing is resampled. Other
implementations differ off the native grid: transformers' ``Dinov2Model`` resamples to ``size`` without
antialiasing (so it does not match the official models without registers), and timm's loader resamples
with antialiasing (``resample_abs_pos_embed``); mimzoo follows the official code, which the paper's
224 px numbers were measured with.

Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

import math
import re
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

_PATCH = "patch_embed.proj.weight"
_HF_PATCH = "embeddings.patch_embeddings.projection.weight"
_TEACHER = "teacher.backbone."  # the trainer's teacher_checkpoint.pth, flattened by read_checkpoint
_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.")  # blocks.<chunk>.<global index>.* (block_chunks > 0)
_OFFSET = 0.1  # the official interpolate_offset of the models without registers


# ---------------------------------------------------------------------------------------------
# detection (key names only)


def _backbone_keys(keys: KeyShapes) -> set[str]:
    """Key names with a teacher checkpoint's ``teacher.backbone.`` prefix removed."""
    if any(k.startswith(_TEACHER) for k in keys):
        return {k[len(_TEACHER):] for k in keys if k.startswith(_TEACHER)}
    return set(keys)


def detect_official(keys: KeyShapes) -> bool:
    """An official DINOv2 backbone: a ViT with ``mask_token``, or official-only keys (registers, w12, chunks)."""
    names = _backbone_keys(keys)
    if _PATCH not in names or "cls_token" not in names:
        return False
    official_only = ("mask_token" in names or "register_tokens" in names
                     or any(".mlp.w12." in k or _CHUNKED.match(k) for k in names))
    return official_only


def detect_timm(keys: KeyShapes) -> bool:
    """A timm DINOv2 ViT: class token and layer scale, no mask token."""
    return (_PATCH in keys and "cls_token" in keys and "blocks.0.ls1.gamma" in keys
            and "mask_token" not in keys and "register_tokens" not in keys)


def detect_transformers(keys: KeyShapes) -> bool:
    """An HF Dinov2Model / Dinov2WithRegistersModel (no prefix) or a classifier (``dinov2.``) state dict."""
    return any(f"{prefix}{_HF_PATCH}" in keys and f"{prefix}encoder.layer.0.layer_scale1.lambda1" in keys
               for prefix in ("", "dinov2."))


# ---------------------------------------------------------------------------------------------
# position embeddings, the official way


def resample_pos_official(pos: Any, grid: tuple[int, int], prefix: int, registers: bool) -> Any:
    """``pos [1, prefix + M*M, D]`` on the model's patch `grid` (rows, cols), as the official model
    interpolates it at run time (see the module docstring); unchanged at the native grid."""
    import torch
    import torch.nn.functional as F

    n, dim = pos.shape[1] - prefix, pos.shape[2]
    side = math.isqrt(n)
    if side * side != n:
        raise WeightsError(f"pos_embed {tuple(pos.shape)} is not a square patch grid plus {prefix} prefix token(s); "
                           "pass a DINOv2 checkpoint of this model")
    if (side, side) == tuple(grid):
        return pos
    table = pos[:, prefix:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, M, M]
    if registers:  # interpolate_offset=0.0, interpolate_antialias=True
        out = F.interpolate(table, size=tuple(grid), mode="bicubic", antialias=True)
    else:  # interpolate_offset=0.1: the scale factor, not the size, sets the sampling positions
        scale = ((grid[0] + _OFFSET) / side, (grid[1] + _OFFSET) / side)
        out = F.interpolate(table, scale_factor=scale, mode="bicubic", antialias=False)
    if tuple(out.shape[-2:]) != tuple(grid):
        raise WeightsError(f"resampling pos_embed from {side}x{side} gave {tuple(out.shape[-2:])}, not {tuple(grid)}")
    out = out.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos.dtype)
    return torch.cat([pos[:, :prefix], out], dim=1)


def _check_registers(sd: dict[str, Any], model: Any) -> None:
    """Refuse, in one line naming the right variant, registers loaded into a model without them (or the reverse)."""
    theirs = int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0
    ours = int(getattr(model, "num_reg_tokens", 0) or 0)
    if theirs and not ours:
        raise WeightsError(f"this DINOv2 checkpoint has {theirs} register tokens; load it with the '-reg{theirs}' "
                           "variant of this model (e.g. dinov2-vit-b14-reg4)")
    if ours and not theirs:
        raise WeightsError("this DINOv2 checkpoint has no register tokens; load it with the variant without "
                           f"'-reg{ours}' (e.g. dinov2-vit-b14)")


def _fit_pos_embed(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Resample a timm-layout ``pos_embed`` to `model`'s grid the official way (after checking the registers)."""
    _check_registers(sd, model)
    pos, grid = sd.get("pos_embed"), getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if pos is None or grid is None or pos.ndim != 3:
        return sd
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    registers = int(getattr(model, "num_reg_tokens", 0) or 0) > 0
    return {**sd, "pos_embed": resample_pos_official(pos, tuple(grid), prefix, registers)}


# ---------------------------------------------------------------------------------------------
# official -> timm


def _official_backbone(sd: dict[str, Any]) -> dict[str, Any]:
    """The backbone of an official file: ``teacher.backbone.`` removed (heads dropped), chunks undone."""
    if any(k.startswith(_TEACHER) for k in sd):
        sd = {k[len(_TEACHER):]: v for k, v in sd.items() if k.startswith(_TEACHER)}
    return {_CHUNKED.sub(r"blocks.\1.", k): v for k, v in sd.items()}


def official_to_timm(sd: dict[str, Any]) -> dict[str, Any]:
    """Official DINOv2 names -> timm's: mask token dropped, SwiGLU renamed, registers split off."""
    sd = dict(sd)
    sd.pop("mask_token", None)  # pretraining only: inference never masks
    out: dict[str, Any] = {}
    if "register_tokens" in sd:  # timm's _reg4 models: no_embed_class, the class position folded in
        pos = sd.pop("pos_embed")
        out["reg_token"] = sd.pop("register_tokens")
        out["cls_token"] = sd.pop("cls_token") + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    for k, v in sd.items():
        out[k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = v
    return out


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """An official backbone (bare, chunked, or a trainer's teacher checkpoint) -> the encoder's keys."""
    return _fit_pos_embed(official_to_timm(_official_backbone(sd)), model)


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Already timm's names; only the position table is fitted to the encoder's grid."""
    return _fit_pos_embed(dict(sd), model)


# ---------------------------------------------------------------------------------------------
# HF transformers -> official

_HF_GLOBAL = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
# per-layer renames, v4 (Hub files) and v5 (in-memory) names -> official block parts; q, k, v and the
# SwiGLU gate/up pair get temporary names and are concatenated afterwards
_HF_LAYER_RENAMES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"^encoder\.layer\.(\d+)\."), r"blocks.\1."),
    (re.compile(r"\.attention\.attention\.(query|key|value)\."), lambda m: f".attn.{m[1][0]}."),
    (re.compile(r"\.attention\.([qkv])_proj\."), r".attn.\1."),
    (re.compile(r"\.attention\.(output\.dense|o_proj)\."), ".attn.proj."),
    (re.compile(r"\.layer_scale([12])\.lambda1$"), r".ls\1.gamma"),
    (re.compile(r"\.mlp\.weights_in\."), ".mlp.w12."),
    (re.compile(r"\.mlp\.(weights_out|down_proj)\."), ".mlp.w3."),
    (re.compile(r"\.mlp\.(gate|up)_proj\."), r".mlp.\1."),
)
# parts concatenated along dim 0: official qkv = [q; k; v], official w12 = [gate; up] (SwiGLU chunk(2))
_CONCAT = (("attn.qkv", ("attn.q", "attn.k", "attn.v")), ("mlp.w12", ("mlp.gate", "mlp.up")))


def _hf_layer_name(key: str) -> str:
    for pattern, repl in _HF_LAYER_RENAMES:
        key = pattern.sub(repl, key)
    return key


def transformers_to_official(sd: dict[str, Any]) -> dict[str, Any]:
    """A Dinov2Model / Dinov2WithRegistersModel state dict (v4 or v5 names) in official names.

    Keys it does not know are passed through unchanged, so the strict loader reports them.
    """
    import torch

    if any(k.startswith(f"dinov2.{_HF_PATCH}") for k in sd):  # Dinov2ForImageClassification: drop the head
        sd = {k[len("dinov2."):]: v for k, v in sd.items() if k.startswith("dinov2.")}
    out = {_HF_GLOBAL.get(k, _hf_layer_name(k)): v for k, v in sd.items()}
    blocks = {k.split(".")[1] for k in out if k.startswith("blocks.")}
    for i in blocks:
        for kind in ("weight", "bias"):
            for target, parts in _CONCAT:
                names = [f"blocks.{i}.{p}.{kind}" for p in parts]
                if all(n in out for n in names):
                    out[f"blocks.{i}.{target}.{kind}"] = torch.cat([out.pop(n) for n in names])
    return out


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """HF transformers names -> official -> the encoder's keys."""
    return _fit_pos_embed(official_to_timm(transformers_to_official(dict(sd))), model)


# ---------------------------------------------------------------------------------------------
# the layouts, in detection order (official before timm: only the official one has mask/register tokens)

OFFICIAL = CheckpointLayout(
    "official",
    "facebookresearch/dinov2 backbone (dinov2_vit*14*_pretrain.pth; also block-chunked and trainer "
    "teacher_checkpoint.pth files); mask token and heads dropped, position table resampled the official way",
    detect_official,
    convert_official,
)
TRANSFORMERS = CheckpointLayout(
    "transformers",
    "HF transformers Dinov2Model / Dinov2WithRegistersModel (facebook/dinov2-*, facebook/dinov2-with-registers-*; "
    "v4 Hub names or v5 state dicts; dinov2.-prefixed classifier files with the head dropped)",
    detect_transformers,
    convert_transformers,
)
TIMM = CheckpointLayout(
    "timm",
    "timm vit_*_patch14{,_reg4}_dinov2 state dict (timm/*.lvd142m Hub files): registers as reg_token, "
    "the class position folded into cls_token",
    detect_timm,
    convert_timm,
)
LAYOUTS = (OFFICIAL, TRANSFORMERS, TIMM)
