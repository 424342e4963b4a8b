"""MAE checkpoint layouts and their conversion to timm's VisionTransformer keys.

- official (facebookresearch/mae): ``{'model': {...}}`` with the encoder in timm's own key names
  (``cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
  mlp.fc2}, norm``). The ``mae_visualize_*`` files also hold the decoder (``mask_token,
  decoder_embed, decoder_pos_embed, decoder_blocks.N, decoder_norm, decoder_pred``), which
  is stripped here: left in, timm's ViT filter would mistake ``mask_token`` for a DINOv2 file.
- timm (``timm/vit_*_224.mae`` on the Hub): the encoder keys above. The official
  encoder-only ``mae_pretrain_*.pth`` files are key-for-key identical to it once unwrapped.
- transformers (``ViTMAEModel`` / ``ViTMAEForPreTraining``, e.g. ``facebook/vit-mae-base``):
  separate q/k/v projections, optional ``vit.`` prefix and ``decoder.`` keys; Hub files use the
  v4 names (``encoder.layer.N.attention.attention.query``), transformers>=5 state dicts the v5
  names (``layers.N.attention.q_proj``). Both are accepted.

Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

from typing import Any

from mimzoo.registry import CheckpointLayout
from mimzoo.weights.hf_vit import hf_vit_to_timm
from mimzoo.registry.contract import KeyShapes

DECODER_KEYS = ("mask_token", "decoder_embed.", "decoder_pos_embed", "decoder_blocks.", "decoder_norm.", "decoder_pred.")
_HF_PATCH = "embeddings.patch_embeddings.projection.weight"


def _is_timm_vit(keys: KeyShapes) -> bool:
    return "cls_token" in keys and "blocks.0.attn.qkv.weight" in keys and "patch_embed.proj.weight" in keys


def detect_official(keys: KeyShapes) -> bool:
    """The official layout with its decoder (visualize checkpoints)."""
    return _is_timm_vit(keys) and any(k.startswith(DECODER_KEYS) for k in keys)


def detect_timm(keys: KeyShapes) -> bool:
    """timm's ViT layout, which the official encoder-only files share."""
    return _is_timm_vit(keys) and not any(k.startswith(DECODER_KEYS) for k in keys)


def detect_transformers(keys: KeyShapes) -> bool:
    return _HF_PATCH in keys or f"vit.{_HF_PATCH}" in keys


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Drop the decoder; the encoder keys already are timm's."""
    return {k: v for k, v in sd.items() if not k.startswith(DECODER_KEYS)}


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    return dict(sd)


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """ViTMAE names (v4 Hub files or v5 state dicts) -> timm names; the decoder is dropped."""
    if any(k.startswith("vit.") for k in sd):
        sd = {k[len("vit."):]: v for k, v in sd.items() if k.startswith("vit.")}
    return hf_vit_to_timm({k: v for k, v in sd.items() if not k.startswith("decoder.")})


LAYOUTS = (
    CheckpointLayout(
        "official",
        "facebookresearch/mae checkpoint with the decoder (mae_visualize_*.pth); the decoder is dropped",
        detect_official,
        convert_official,
    ),
    CheckpointLayout(
        "timm",
        "timm ViT keys: timm/vit_*_224.mae on the Hub, and the official encoder-only mae_pretrain_*.pth",
        detect_timm,
        convert_timm,
    ),
    CheckpointLayout(
        "transformers",
        "HF transformers ViTMAEModel / ViTMAEForPreTraining, v4 Hub names or v5 state dict (facebook/vit-mae-*)",
        detect_transformers,
        convert_transformers,
    ),
)
