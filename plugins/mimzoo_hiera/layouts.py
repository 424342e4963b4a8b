"""Hiera checkpoint layouts and their conversion to timm's ``Hiera`` keys.

- official (facebookresearch/hiera ``mae_hiera_*_224.pth``, the ``mae_in1k`` checkpoints):
  ``{'model_state': {...}}`` holding a ``MaskedAutoencoderHiera``: the encoder under timm's own
  names (``patch_embed.proj``, ``pos_embed``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2,
  mlp.fc1, mlp.fc2, proj}``), its ``encoder_norm``, and the pretraining parts that are not
  part of the encoder and are dropped: ``multi_scale_fusion_heads.*``, ``mask_token``,
  ``decoder_embed``, ``decoder_pos_embed``, ``decoder_blocks.*``, ``decoder_norm``,
  ``decoder_pred``. ``encoder_norm`` becomes the pooled embedding's ``head.norm``, as in timm's
  ``.mae`` weights. A classification ``Hiera`` file (``norm`` + ``head.projection``) converts
  too; its classifier is left in so that a fine-tuned checkpoint fails the strict load.
- timm (``timm/hiera_*_224.mae`` on the Hub, and the encoder's own state dict): the names
  above with ``head.norm``.
- transformers (``HieraForPreTraining`` e.g. ``facebook/hiera-*-224-mae-hf``, ``HieraModel``):
  ``hiera.``-prefixed (task models) or bare (``HieraModel``) ``embeddings.*`` and
  ``encoder.stages.S.layers.L.{layernorm_before, attn.qkv, attn.proj, layernorm_after, mlp.fc1,
  mlp.fc2, proj}`` (blocks numbered per stage), the norm as ``encoder_norm`` (pretraining) or
  ``pooler.layernorm`` (``HieraModel``); ``multiscale_fusion.*`` and ``decoder.*`` are dropped.

A checkpoint made at another input size has its position embedding (one per token of the
``img / 4`` grid) resampled to the encoder's grid. Detection looks at key names only; torch is
imported only to convert.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

log = logging.getLogger(__name__)

# MaskedAutoencoderHiera (hiera/hiera_mae.py) beside the encoder: fusion heads, mask token, decoder
MAE_HEADS = ("multi_scale_fusion_heads.", "mask_token", "decoder_")
HF_PREFIX = "hiera."  # HieraForPreTraining / HieraForImageClassification wrap a HieraModel
HF_HEADS = ("multiscale_fusion.", "decoder.")  # HieraForPreTraining beside the encoder
_HF_PATCH = "embeddings.patch_embeddings.projection.weight"
_HF_LAYER = re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)$")
_HF_LAYER_RENAMES = {"layernorm_before.": "norm1.", "layernorm_after.": "norm2."}  # the rest keep their names
_RENAMES = {  # top-level renames, HF and official -> timm
    "embeddings.patch_embeddings.projection.": "patch_embed.proj.",
    "embeddings.position_embeddings": "pos_embed",
    "encoder_norm.": "head.norm.",  # MAE checkpoints (official and HF)
    "pooler.layernorm.": "head.norm.",  # HieraModel
    "norm.": "head.norm.",  # official classification Hiera
    "head.projection.": "head.fc.",  # official classifier: kept, so the strict load refuses it
    "classifier.": "head.fc.",  # HF classifier: likewise
}


def _rename_prefix(key: str) -> str:
    for old, new in _RENAMES.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


# ---------------------------------------------------------------------------------------------
# detection (key names only)
# ---------------------------------------------------------------------------------------------


def _is_native(keys: KeyShapes) -> bool:
    """Hiera's own names (official code and timm share them for the encoder)."""
    return "patch_embed.proj.weight" in keys and "pos_embed" in keys and "blocks.0.attn.qkv.weight" in keys


def detect_official(keys: KeyShapes) -> bool:
    """Official names: an MAE checkpoint (encoder_norm, decoder) or a classification Hiera (norm)."""
    official_only = ("encoder_norm.weight" in keys or "norm.weight" in keys
                     or any(k.startswith(MAE_HEADS) for k in keys))
    return _is_native(keys) and official_only


def detect_timm(keys: KeyShapes) -> bool:
    return _is_native(keys) and not detect_official(keys)


def detect_transformers(keys: KeyShapes) -> bool:
    return _HF_PATCH in keys or HF_PREFIX + _HF_PATCH in keys


# ---------------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------------


def fit_pos_embed(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Resample a square token-grid position embedding to the encoder's grid when they differ."""
    pe, own = sd.get("pos_embed"), getattr(model, "pos_embed", None)
    if pe is None or own is None or pe.ndim != 3 or tuple(pe.shape) == tuple(own.shape):
        return sd
    side = math.isqrt(pe.shape[1])
    if side * side != pe.shape[1] or pe.shape[2] != own.shape[2]:
        return sd  # not a square grid of the same width: the strict loader reports the shape
    from timm.layers import resample_abs_pos_embed

    grid = list(model.tokens_spatial_shape)
    log.info("resampling Hiera pos_embed from a %dx%d to a %dx%d token grid", side, side, *grid)
    return {**sd, "pos_embed": resample_abs_pos_embed(pe, new_size=grid, old_size=[side, side], num_prefix_tokens=0)}


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Drop the MAE decoder side; the encoder norm becomes ``head.norm``."""
    out = {_rename_prefix(k): v for k, v in sd.items() if not k.startswith(MAE_HEADS)}
    return fit_pos_embed(out, model)


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    return fit_pos_embed(dict(sd), model)


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """HieraModel / HieraForPreTraining names -> timm names, blocks renumbered across stages."""
    sd = {(k[len(HF_PREFIX):] if k.startswith(HF_PREFIX) else k): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(HF_HEADS)}
    layers = [(int(m[1]), int(m[2])) for m in map(_HF_LAYER.match, sd) if m]
    depths = [1 + max((li for si, li in layers if si == s), default=-1) for s in range(1 + max(s for s, _ in layers))]
    first_block = [sum(depths[:s]) for s in range(len(depths))]  # global index of each stage's first layer
    out = {}
    for k, v in sd.items():
        m = _HF_LAYER.match(k)
        if m is None:
            out[_rename_prefix(k)] = v
            continue
        rest = m[3]
        for old, new in _HF_LAYER_RENAMES.items():
            rest = rest.replace(old, new)
        out[f"blocks.{first_block[int(m[1])] + int(m[2])}.{rest}"] = v
    return fit_pos_embed(out, model)


LAYOUTS = (
    CheckpointLayout(
        "official",
        "facebookresearch/hiera {'model_state'} checkpoint (mae_hiera_*_224.pth); fusion heads, mask token and "
        "decoder dropped; its MAE encoder_norm becomes head.norm, the norm of the pooled embedding (timm's and "
        "transformers' convention; official hiera.py leaves that norm at its init when it builds Hiera from MAE "
        "weights, so its pooled output differs while forward_features tokens are the same)",
        detect_official,
        convert_official,
    ),
    CheckpointLayout(
        "timm",
        "timm Hiera keys: timm/hiera_*_224.mae on the Hub and mimzoo's own encoders",
        detect_timm,
        convert_timm,
    ),
    CheckpointLayout(
        "transformers",
        "HF transformers HieraForPreTraining (facebook/hiera-*-224-mae-hf) or HieraModel; fusion heads and decoder "
        "dropped",
        detect_transformers,
        convert_transformers,
    ),
)
