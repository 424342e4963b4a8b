"""EVA-02 checkpoint layouts and their conversion to timm's ``Eva`` keys.

- official (baaivision/EVA ``EVA-02/asuka/modeling_pretrain.py``; the raw MIM checkpoints
  ``Yuxin-CV/EVA-02`` ``eva02/pt/eva02_{Ti,S,B,L}_pt_*_p14.pt``, stored as ``{'module': {...}}``):
  ``cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1, attn.*, norm2, mlp.*}, norm`` plus the
  pretraining-only ``mask_token`` and ``lm_head`` (the regressor onto EVA-CLIP features), and the
  RoPE tables ``rope.freqs_cos/sin`` saved once at the top and once per block
  (``blocks.N.attn.rope.*``; their shape depends on the RoPE class used when saving, see
  baaivision/EVA issue #56). The two model families name their layers differently:

  * Ti / S (``xattn, swiglu``): fused ``attn.qkv.weight`` with ``attn.q_bias``/``attn.v_bias`` (no
    k bias), xformers' packed SwiGLU ``mlp.w12`` (gate first) and ``mlp.w3``;
  * B / L (``naiveswiglu, subln``): ``attn.{q,k,v}_proj.weight`` with ``attn.q_bias``/``attn.v_bias``,
    SwiGLU ``mlp.w1`` (gate), ``mlp.w2``, the sub-LN ``mlp.ffn_ln`` and ``mlp.w3``.

  Conversion: ``mask_token``, ``lm_head`` and every RoPE table are dropped (timm recomputes RoPE);
  ``mlp.w12 -> mlp.fc1``, ``mlp.w1 -> mlp.fc1_g``, ``mlp.w2 -> mlp.fc1_x``, ``mlp.ffn_ln -> mlp.norm``,
  ``mlp.w3 -> mlp.fc2``; separate-projection biases ``attn.q_bias -> attn.q_proj.bias``,
  ``attn.v_bias -> attn.v_proj.bias``. The pretrained final per-token ``norm`` becomes ``fc_norm``
  when the encoder pools with 'avg' (timm's EVA-02 MIM models), so the pooled embedding is the
  pretrained norm applied to the mean of the patch tokens, and ``forward_features`` returns the
  tokens before it -- what timm's own EVA-02 MIM weights give (methods.md pitfall 3).
- timm (``timm/eva02_*_patch14_224.mim_in22k`` on the Hub): the encoder's own keys (timm already
  converted the official files in the way described above).

Detection looks at key names only; torch is imported only inside conversions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

PRETRAINING_ONLY = ("mask_token", "lm_head.")
# official MLP names -> timm names (w1 / w2 are handled separately: they depend on the encoder)
_MLP_RENAMES = (
    (re.compile(r"\.mlp\.w12\."), ".mlp.fc1."),
    (re.compile(r"\.mlp\.w3\."), ".mlp.fc2."),
    (re.compile(r"\.mlp\.ffn_ln\."), ".mlp.norm."),
    (re.compile(r"\.attn\.inner_attn_ln\."), ".attn.norm."),  # sub-LN inside attention (not in EVA-02 Ti..L)
)
_SPLIT_GLU = re.compile(r"^(blocks\.\d+\.mlp)\.w([12])\.(weight|bias)$")
_QV_BIAS = re.compile(r"^(blocks\.\d+\.attn)\.([qv])_bias$")


def _is_rope_table(key: str) -> bool:
    """RoPE sin/cos tables: fixed functions of the grid, saved by the official code, recomputed by timm."""
    return key.startswith("rope.") or ".rope." in key


def _unwrap(sd: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `sd` without a DDP `module.` prefix shared by all keys."""
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def detect_official(keys: KeyShapes) -> bool:
    """Official EVA-02 names: SwiGLU weights `mlp.w*`, or the pretraining head / mask token."""
    has_vit = "cls_token" in keys and "patch_embed.proj.weight" in keys
    official = "lm_head.weight" in keys or "mask_token" in keys or any(".mlp.w3." in k for k in keys)
    return has_vit and official


def detect_timm(keys: KeyShapes) -> bool:
    """timm's Eva names (the Hub's timm/eva02_*.mim_in22k and mimzoo's saved encoders)."""
    return "cls_token" in keys and "blocks.0.mlp.fc2.weight" in keys and not detect_official(keys)


def _move_final_norm(sd: dict[str, Any], own: set[str]) -> dict[str, Any]:
    """The pretrained per-token `norm` becomes `fc_norm` when the encoder pools through fc_norm."""
    if "norm.weight" in sd and "norm.weight" not in own and "fc_norm.weight" in own:
        return {("fc_" + k if k.startswith("norm.") else k): v for k, v in sd.items()}
    return sd


def _convert_glu(sd: dict[str, Any], own: set[str]) -> dict[str, Any]:
    """Official separate SwiGLU inputs `mlp.w1` (gate) / `mlp.w2`: timm's fc1_g / fc1_x, or one packed fc1."""
    import torch

    parts: dict[tuple[str, str], dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = _SPLIT_GLU.match(k)
        if m is None:
            out[k] = v
        elif f"{m[1]}.fc1_g.{m[3]}" in own:
            out[f"{m[1]}.fc1_{'g' if m[2] == '1' else 'x'}.{m[3]}"] = v
        else:
            parts.setdefault((m[1], m[3]), {})[m[2]] = v
    for (mlp, kind), p in sorted(parts.items()):
        if set(p) != {"1", "2"}:
            raise WeightsError(f"checkpoint has only one of {mlp}.w1/w2.{kind}; pass a complete EVA-02 checkpoint")
        out[f"{mlp}.fc1.{kind}"] = torch.cat([p["1"], p["2"]], dim=0)  # gate first, as timm's GluMlp expects
    return out


def _convert_qv_bias(sd: dict[str, Any], own: set[str]) -> dict[str, Any]:
    """q/v biases: kept as `attn.q_bias`/`v_bias` (fused qkv) or moved into `attn.q_proj`/`v_proj`."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = _QV_BIAS.match(k)
        if m is not None and f"{m[1]}.{m[2]}_proj.bias" in own:
            k = f"{m[1]}.{m[2]}_proj.bias"
        out[k] = v
    return out


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Official EVA-02 MIM checkpoint -> timm Eva keys for `model` (Ti/S or B/L layer names)."""
    own = set(model.state_dict())
    out = {k: v for k, v in _unwrap(sd).items() if not k.startswith(PRETRAINING_ONLY) and not _is_rope_table(k)}
    renamed: dict[str, Any] = {}
    for k, v in out.items():
        for pattern, repl in _MLP_RENAMES:
            k = pattern.sub(repl, k)
        renamed[k] = v
    out = _convert_qv_bias(_convert_glu(renamed, own), own)
    return _move_final_norm(out, own)  # anything left over is reported by the strict load


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """timm keys are the encoder's own; RoPE tables some exports keep are dropped."""
    return {k: v for k, v in _unwrap(sd).items() if not _is_rope_table(k)}


LAYOUTS = (
    CheckpointLayout(
        "official",
        "baaivision/EVA EVA-02 MIM checkpoint (Yuxin-CV/EVA-02 eva02/pt/*.pt); mask_token, lm_head and RoPE "
        "tables dropped, norm -> fc_norm",
        detect_official,
        convert_official,
    ),
    CheckpointLayout(
        "timm",
        "timm Eva keys: timm/eva02_*_patch14_224.mim_in22k on the Hub and mimzoo's saved encoders",
        detect_timm,
        convert_timm,
    ),
)
