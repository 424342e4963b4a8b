"""iBOT checkpoint layouts and their conversion to timm's VisionTransformer keys.

The iBOT ViT (bytedance/ibot ``models/vision_transformer.py``) is DINO's ViT: ``cls_token``,
``pos_embed`` (class slot first), ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj,
norm2, mlp.fc1, mlp.fc2}`` and a final ``norm``, qkv with bias, LayerNorm eps 1e-6, no layer
scale: exactly timm's ``vit_*_patch16_224`` key names and shapes. The student alone also holds
``masked_embed``, the learned token that replaces masked patches; the teacher never has one.

- official: the released files of bytedance/ibot, read by ``read_checkpoint`` as
  - ``checkpoint_teacher.pth`` (``{'state_dict': teacher backbone}``, written by
    ``extract_backbone_weights.py``): plain ViT keys, the default source;
  - ``checkpoint.pth``, the full training checkpoint (``main_ibot.py``: ``student``, ``teacher``,
    ``optimizer``, ``ibot_loss`` centres, ``epoch``, ``args``, ``fp16_scaler``). Its ``student``
    keys carry DDP's ``module.backbone.`` prefix, the ``teacher`` ones ``backbone.`` (or
    ``module.backbone.`` when the teacher was DDP-wrapped); both include the projection head
    (``head.*``). This layout keeps the **teacher**, the encoder the paper evaluates, and drops
    the student, both heads, the optimiser state and the centres.
  A backbone file holding ``masked_embed`` is a student (``extract_backbone_weights.py
  --checkpoint_key student``): refused, with a pointer to the teacher files.
- timm: a timm ``VisionTransformer`` state dict, as a user who converted the weights by hand
  would save it (timm has no iBOT weights); a classifier ``head.weight`` / ``head.bias`` from a
  model built with classes is dropped (iBOT's encoders are not fine-tuned).

Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

import re
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

_PATCH = "patch_embed.proj.weight"
_VIT_KEYS = (_PATCH, "cls_token", "blocks.0.attn.qkv.weight")
# a full training checkpoint, flattened: student.module.backbone.* / teacher.(module.)backbone.*
_FULL_KEY = re.compile(rf"^(student|teacher)\.(module\.)?backbone\.{re.escape(_PATCH)}$")
_BACKBONE_PREFIX = re.compile(r"^(module\.)?backbone\.")
_HEAD = ("head.",)  # iBOT's projection head (mlp, last_layer[2]) in a backbone file saved --with_head
_CLASSIFIER = ("head.weight", "head.bias")  # a timm model built with num_classes > 0


def detect_official(keys: KeyShapes) -> bool:
    """A full iBOT training checkpoint, or a backbone file with iBOT's own extras (masked_embed, head)."""
    if any(_FULL_KEY.match(k) for k in keys):
        return True
    plain = {_BACKBONE_PREFIX.sub("", k) for k in keys}
    extras = "masked_embed" in plain or any(k.startswith("head.last_layer") or k.startswith("head.mlp") for k in plain)
    return all(k in plain for k in _VIT_KEYS) and extras


def detect_timm(keys: KeyShapes) -> bool:
    """A class-token ViT state dict in timm's key names (an official teacher backbone file is one too)."""
    return all(k in keys for k in _VIT_KEYS)


def _sub_dicts(sd: dict[str, Any]) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in sd if "." in k})


def select_teacher(sd: dict[str, Any]) -> dict[str, Any]:
    """The teacher backbone of a flattened full checkpoint (``teacher.(module.)backbone.*``), prefixes removed."""
    sub = {k[len("teacher."):]: v for k, v in sd.items() if k.startswith("teacher.")}
    backbone = {_BACKBONE_PREFIX.sub("", k): v for k, v in sub.items() if _BACKBONE_PREFIX.match(k)}
    if not backbone:
        raise WeightsError(
            f"this iBOT checkpoint has no teacher backbone (it holds: {', '.join(_sub_dicts(sd))}); the zoo's iBOT "
            "encoders are the teacher the paper evaluates: pass checkpoint_teacher.pth or the full checkpoint.pth"
        )
    return backbone


def _backbone_file(sd: dict[str, Any]) -> dict[str, Any]:
    """A backbone-only file: ``backbone.`` prefixes removed, the projection head dropped, students refused."""
    plain = {_BACKBONE_PREFIX.sub("", k): v for k, v in sd.items()}
    if "masked_embed" in plain:
        raise WeightsError(
            "this iBOT backbone holds masked_embed, so it is a student (extract_backbone_weights.py --checkpoint_key "
            "student); the zoo's iBOT encoders are the teacher the paper evaluates: pass checkpoint_teacher.pth or "
            "the full checkpoint.pth"
        )
    return {k: v for k, v in plain.items() if not k.startswith(_HEAD)}


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """The teacher backbone of a full checkpoint, or a teacher backbone file; heads and the rest dropped."""
    if any(_FULL_KEY.match(k) for k in sd):
        return select_teacher(sd)
    return _backbone_file(sd)


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Already the encoder's key names; a timm classifier head is dropped."""
    return {k: v for k, v in sd.items() if k not in _CLASSIFIER}


OFFICIAL = CheckpointLayout(
    "official",
    "bytedance/ibot release: checkpoint_teacher.pth (teacher backbone) or the full checkpoint.pth "
    "(student + teacher + heads + optimiser), from which the teacher is kept; student backbones are refused",
    detect_official,
    convert_official,
)
TIMM = CheckpointLayout(
    "timm",
    "a timm VisionTransformer state dict (timm has no iBOT weights: a hand conversion), classifier head dropped",
    detect_timm,
    convert_timm,
)
LAYOUTS = (OFFICIAL, TIMM)
