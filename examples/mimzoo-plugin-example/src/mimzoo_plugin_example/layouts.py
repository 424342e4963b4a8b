"""The tutorial's checkpoint layouts: PySlowFast MaskFeat checkpoints -> timm VisionTransformer keys.

A plugin converts foreign checkpoints in exactly one place: a :class:`CheckpointLayout` per key
layout, each a pure-Python ``detect(keys -> shapes)`` and a ``convert(state_dict, model)``.
mimzoo reads the file safely, detects the layout from its keys, converts, and loads the result
strictly (any missing, unexpected or mis-shaped tensor fails the load with a report).

- official: PySlowFast's ``MaskMViT`` pretraining state dict in ViT mode (mimzoo's reader removes
  the ``model_state`` wrapper of ``.pyth`` files). ``MaskMViT`` deletes the encoder's final
  ``norm`` and keeps the same LayerNorm as the first layer of its HOG prediction head
  (``pred_head.transforms.0.0``), followed by the linear HOG predictor
  (``pred_head.projections.0``); it also holds ``mask_token`` and the HOG filters (``hogs.0.*``).
- timm: the encoder's own keys (what ``mimzoo publish`` and model folders hold).

This is the short version, for reading. mimzoo's own ``maskfeat`` plugin
(``plugins/mimzoo_maskfeat/layouts.py``) is the canonical converter: it also accepts split
q/k/v projections and a 1-frame Conv3d stem, and refuses fine-tuned and multi-depth checkpoints.
"""

from __future__ import annotations

from typing import Any

from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

HEAD_NORM = "pred_head.transforms.0.0."  # the final encoder norm, kept in the prediction head
DROPPED = ("pred_head.projections.", "mask_token", "hogs.")  # pretraining-only parts


def detect_official(keys: KeyShapes) -> bool:
    """PySlowFast MaskMViT: ViT blocks plus the prediction head that holds the final norm."""
    return f"{HEAD_NORM}weight" in keys and "blocks.0.attn.qkv.weight" in keys


def detect_timm(keys: KeyShapes) -> bool:
    """timm's VisionTransformer keys, with the final norm in place."""
    return "norm.weight" in keys and "blocks.0.attn.qkv.weight" in keys and "cls_token" in keys


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """MaskMViT (ViT mode) -> timm ViT: drop the HOG head, move the head's norm to `norm`."""
    out = {k: v for k, v in sd.items() if not k.startswith(DROPPED)}
    return {("norm." + k[len(HEAD_NORM):] if k.startswith(HEAD_NORM) else k): v for k, v in out.items()}


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """timm keys are the encoder's own."""
    return dict(sd)


LAYOUTS = (
    CheckpointLayout(
        "official",
        "PySlowFast MaskMViT pretraining checkpoint in ViT mode (in1k_VIT_*_MaskFeat_PT_*.pyth); "
        "HOG head, mask token and HOG filters dropped, the head's LayerNorm becomes the final norm",
        detect_official,
        convert_official,
    ),
    CheckpointLayout(
        "timm",
        "timm VisionTransformer keys (the encoder's own; mimzoo model folders)",
        detect_timm,
        convert_timm,
    ),
)
