"""MaskFeat checkpoint layouts and their conversion to timm's VisionTransformer keys.

- official: PySlowFast's ``MaskMViT`` pretraining state dict in ViT mode, the
  ``in1k_VIT_{B,L}_MaskFeat_PT_epoch_01600.pyth`` files. ``save_checkpoint``
  (``slowfast/utils/checkpoint.py``) writes ``{'epoch', 'model_state', 'optimizer_state', 'cfg'
  (the YAML text), 'scaler_state'?}``; mimzoo's safe reader unwraps ``model_state``. Key names read
  from PySlowFast's source (``slowfast/models/video_model_builder.py`` ``MViT``,
  ``masked.py`` ``MaskMViT``, ``attention.py``, ``head_helper.py`` ``MSSeparateHead``,
  ``stem_helper.py`` ``PatchEmbed``; configs ``configs/masked_ssl/in1k_VIT_*_MaskFeat_PT.yaml``),
  not from a downloaded file:

  * encoder: ``patch_embed.proj`` (a Conv2d with ``PATCH_2D``), ``cls_token``, ``pos_embed``
    ``[1, 1 + L, D]``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``: with
    no pooling strides, no relative positions and no residual pooling (the defaults these configs
    keep) an MViT block is exactly a pre-norm ViT block, LayerNorm eps 1e-6, exact GELU;
  * ``MaskMViT`` deletes the encoder's final ``norm`` and its classifier ``head``; the same
    LayerNorm is the first layer of its HOG prediction head, ``pred_head.transforms.0.0``,
    followed by the linear HOG predictor ``pred_head.projections.0`` (3 channels x 9 bins x 2x2
    cells = 108 outputs per patch); it also holds ``mask_token`` and the HOG filters
    (``hogs.0.weight_x/y`` buffers). The head's LayerNorm becomes ``norm``; the rest is dropped.
  * ``MVIT.SEPARATE_QKV`` / ``POOL_FIRST`` give three ``attn.q/k/v`` projections instead of
    ``attn.qkv``; both are accepted. A 1-frame Conv3d stem ``[D, 3, 1, p, p]`` is squeezed.
- timm: the encoder's own keys (what ``mimzoo publish`` and model folders hold).

Refused with a one-line reason: PySlowFast checkpoints that predict from several depths
(``MASK.PRETRAIN_DEPTH`` with more than one entry: several head norms, none of them the final
one) and fine-tuned PySlowFast classifiers (``head.projection``: not the pretrained encoder).

Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

import re
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

HEAD_NORM = "pred_head.transforms.0.0."  # the final encoder norm, kept as the prediction head's first layer
DROPPED = ("pred_head.projections.", "mask_token", "hogs.")  # pretraining-only parts
FINETUNED_HEAD = "head.projection.weight"  # PySlowFast TransformerBasicHead: a fine-tuned classifier
_SPLIT_QKV = re.compile(r"^(blocks\.\d+\.attn)\.([qkv])\.(weight|bias)$")
_MORE_HEADS = re.compile(r"^pred_head\.transforms\.[1-9]\d*\.")


def detect_official(keys: KeyShapes) -> bool:
    """PySlowFast MaskMViT in ViT mode: ViT blocks plus the prediction head that holds the final norm."""
    return f"{HEAD_NORM}weight" in keys and "blocks.0.norm1.weight" in keys and "cls_token" in keys


def detect_timm(keys: KeyShapes) -> bool:
    """timm's VisionTransformer keys (or a PySlowFast fine-tuned ViT, refused by the conversion)."""
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


def _refuse_finetuned(sd: dict[str, Any]) -> None:
    if FINETUNED_HEAD in sd:
        raise WeightsError(
            "checkpoint is a fine-tuned PySlowFast classifier (head.projection), not a MaskFeat pretraining "
            "checkpoint; maskfeat-vit-* are the pretrained encoders: pass in1k_VIT_*_MaskFeat_PT_epoch_01600.pyth"
        )


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """MaskMViT (ViT mode) -> timm ViT: drop the HOG head, move the head's norm to `norm`."""
    extra = sorted({k.split(".")[2] for k in sd if _MORE_HEADS.match(k)})
    if extra:
        raise WeightsError(
            f"checkpoint predicts from {1 + len(extra)} depths (pred_head.transforms.{extra[0]}), so no head norm is "
            "the encoder's final one; pass a MaskFeat checkpoint trained with one MASK.PRETRAIN_DEPTH (the last block)"
        )
    out = {k: v for k, v in sd.items() if not k.startswith(DROPPED)}
    _refuse_finetuned(out)
    out = {("norm." + k[len(HEAD_NORM):] if k.startswith(HEAD_NORM) else k): v for k, v in out.items()}
    proj = out.get("patch_embed.proj.weight")
    if proj is not None and proj.ndim == 5 and proj.shape[2] == 1:  # a 1-frame Conv3d stem: [D, 3, 1, p, p]
        out["patch_embed.proj.weight"] = proj.squeeze(2)
    return _fuse_qkv(out)


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """timm keys are the encoder's own; a fine-tuned PySlowFast ViT (same names plus its classifier) is refused."""
    _refuse_finetuned(sd)
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
