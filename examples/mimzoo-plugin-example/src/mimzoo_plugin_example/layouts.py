"""MaskFeat checkpoint layouts and their conversion to timm's VisionTransformer keys.

A plugin converts foreign checkpoints in exactly one place: a :class:`CheckpointLayout` per key
layout, each a pure-Python ``detect(keys -> shapes)`` and a ``convert(state_dict, model)``.
mimzoo detects the layout of a file from its keys, converts it, and loads the result strictly
(any missing, unexpected or mis-shaped tensor fails the load with a report).

- official: PySlowFast's ``MaskMViT`` pretraining state dict in ViT mode (the
  ``in1k_VIT_*_MaskFeat_PT_epoch_01600.pyth`` files; their ``model_state`` entry is unwrapped by
  mimzoo's reader). Written from PySlowFast's source (``slowfast/models/masked.py``,
  ``head_helper.py``, ``attention.py``), not from a downloaded file: ``MaskMViT`` deletes the
  encoder's final ``norm`` and keeps the same LayerNorm as the first layer of its prediction head
  (``pred_head.transforms.0.0``), followed by a linear HOG predictor
  (``pred_head.projections.0``); it also holds ``mask_token`` and the HOG filters
  (``hogs.0.weight_x/y`` buffers). Depending on the PySlowFast version a block's attention holds
  one ``attn.qkv`` or three ``attn.q/k/v`` projections; both are accepted.
- timm: the encoder's own keys (what ``mimzoo publish`` and ``save_folder`` write).

Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

import re
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

HEAD_NORM = "pred_head.transforms.0.0."  # the final encoder norm, kept in the prediction head
DROPPED = ("pred_head.projections.", "mask_token", "hogs.")  # pretraining-only parts
_SPLIT_QKV = re.compile(r"^(blocks\.\d+\.attn)\.([qkv])\.(weight|bias)$")


def detect_official(keys: KeyShapes) -> bool:
    """PySlowFast MaskMViT: ViT blocks plus the prediction head that holds the final norm."""
    return f"{HEAD_NORM}weight" in keys and "blocks.0.norm1.weight" in keys


def detect_timm(keys: KeyShapes) -> bool:
    """timm's VisionTransformer keys, with the final norm in place."""
    return "norm.weight" in keys and "blocks.0.attn.qkv.weight" in keys and "cls_token" in keys


def _fuse_qkv(sd: dict[str, Any]) -> dict[str, Any]:
    """Concatenate separate q, k, v projections of each block into timm's `attn.qkv`."""
    import torch

    parts: dict[tuple[str, str], dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = _SPLIT_QKV.match(k)
        if m:
            parts.setdefault((m[1], m[3]), {})[m[2]] = v
        else:
            out[k] = v
    for (attn, kind), p in sorted(parts.items()):
        if set(p) != {"q", "k", "v"}:
            raise WeightsError(f"checkpoint has only the {'/'.join(sorted(p))} projection {kind} of {attn}; "
                               "pass a complete MaskFeat checkpoint")
        out[f"{attn}.qkv.{kind}"] = torch.cat([p["q"], p["k"], p["v"]], dim=0)  # [3D, D] or [3D]
    return out


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """MaskMViT (ViT mode) -> timm ViT: drop the HOG head, move the head's norm to `norm`."""
    out = {k: v for k, v in sd.items() if not k.startswith(DROPPED)}
    out = {("norm." + k[len(HEAD_NORM):] if k.startswith(HEAD_NORM) else k): v for k, v in out.items()}
    proj = out.get("patch_embed.proj.weight")
    if proj is not None and proj.ndim == 5 and proj.shape[2] == 1:  # a 1-frame Conv3d stem: [D, 3, 1, p, p]
        out["patch_embed.proj.weight"] = proj.squeeze(2)
    return _fuse_qkv(out)


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
