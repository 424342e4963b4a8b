"""HF transformers ViT-family state dicts (ViTMAE, IJepa, ViT) -> timm VisionTransformer keys.

transformers renamed ViT internals in v5, while files on the Hub keep the v4 names:

    v4 (Hub files, save_pretrained)                  v5 (state_dict() in memory)
    encoder.layer.N.attention.attention.query         layers.N.attention.q_proj
    encoder.layer.N.attention.output.dense            layers.N.attention.o_proj
    encoder.layer.N.intermediate.dense                layers.N.mlp.fc1
    encoder.layer.N.output.dense                      layers.N.mlp.fc2

Both are accepted: keys are first brought to v5 names, then mapped to timm's, with q, k and v
concatenated into timm's single qkv projection. Plugins strip their own prefixes (``vit.``,
``ijepa.``) and heads before calling :func:`hf_vit_to_timm`.
"""

from __future__ import annotations

import re
from typing import Any

_V4_TO_V5: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"^encoder\.layer\."), "layers."),
    (re.compile(r"\.attention\.attention\.(query|key|value)\."), lambda m: f".attention.{m[1][0]}_proj."),
    (re.compile(r"\.attention\.output\.dense\."), ".attention.o_proj."),
    (re.compile(r"\.intermediate\.dense\."), ".mlp.fc1."),
    (re.compile(r"\.output\.dense\."), ".mlp.fc2."),
)
# v5 layer parts -> timm block parts, the 1:1 renames
_LAYER_RENAMES = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_GLOBAL_RENAMES = {
    "embeddings.cls_token": "cls_token",  # absent in models without a class token (I-JEPA)
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def hf_v5_name(key: str) -> str:
    """A transformers ViT key in v5 naming, whichever naming it came in."""
    for pattern, repl in _V4_TO_V5:
        key = pattern.sub(repl, key)
    return key


def hf_vit_to_timm(sd: dict[str, Any]) -> dict[str, Any]:
    """A prefix-free HF ViT encoder state dict (v4 or v5 names) in timm VisionTransformer keys.

    Keys it does not know are passed through unchanged, so the strict loader reports them.
    """
    import torch

    sd = {hf_v5_name(k): v for k, v in sd.items()}
    out = {timm: sd.pop(hf) for hf, timm in _GLOBAL_RENAMES.items() if hf in sd}
    depth = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("layers.")), default=-1)
    for i in range(depth):
        src, dst = f"layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{dst}attn.qkv.{part}"] = torch.cat([sd.pop(f"{src}attention.{p}_proj.{part}") for p in "qkv"])
            for hf_name, timm_name in _LAYER_RENAMES.items():
                out[f"{dst}{timm_name}.{part}"] = sd.pop(f"{src}{hf_name}.{part}")
    out.update(sd)
    return out
