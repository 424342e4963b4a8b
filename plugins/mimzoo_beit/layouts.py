"""BEiT-family checkpoint layouts (BEiT, BEiT v2, data2vec) and their conversion to timm's ``Beit`` keys.

The three methods pretrain the same encoder: a ViT with layer scale (``gamma_1``, ``gamma_2``),
separate q/v biases (no k bias), no absolute position embedding and ONE relative position bias
table shared by every block. mimzoo builds timm's ``Beit`` the same way
(``use_shared_rel_pos_bias=True, use_rel_pos_bias=False, use_abs_pos_emb=False``) instead of
copying the shared table into every block: the encoder then holds exactly the pretrained
parameters, its state dict round-trips to the official key names, and nothing is duplicated.

- official (microsoft/unilm ``beit``/``beit2``, facebookresearch/data2vec_vision): ``{'model': {...}}``
  with ``cls_token, patch_embed.proj, rel_pos_bias.relative_position_bias_table,
  blocks.N.{gamma_1, gamma_2, norm1, attn.qkv.weight, attn.q_bias, attn.v_bias, attn.proj, norm2,
  mlp.fc1, mlp.fc2}, norm`` -- timm's own names -- plus pretraining heads that are not part of
  the encoder and are dropped: ``mask_token`` and ``lm_head`` (all three), BEiT v2's
  patch-aggregation head ``cls_pt_layers`` (and ``cls_pt_norm`` / ``cls_pt_lm_head`` when its
  LM head is not shared). Each plugin names the heads its checkpoints carry, so a BEiT v2 file
  passed to a BEiT variant fails loudly instead of loading quietly. timm's own ``Beit`` state
  dict (and so mimzoo's saved encoders) is this layout without the heads.
- transformers (``BeitForMaskedImageModeling`` e.g. ``microsoft/beit-*-pt22k``, ``BeitModel``,
  ``Data2VecVisionModel`` e.g. ``facebook/data2vec-vision-*``): separate q/k/v projections,
  ``lambda_1/2`` for the layer scales, the shared bias under
  ``encoder.relative_position_bias`` (Hub files, transformers v4 names) or
  ``shared_position_bias`` (transformers>=5 ``BeitModel`` state dicts), the final norm as
  top-level ``layernorm``; optional ``beit.`` / ``data2vec_vision.`` prefix. Both name sets are
  accepted.

``relative_position_index`` buffers (saved by older code) are dropped everywhere: timm
recomputes them. Checkpoints fine-tuned with one bias table per block are refused with a clear
message: mimzoo's BEiT-family variants are the self-supervised encoders. A shared table made for
another input size is resized to the model's window with timm's ``resize_rel_pos_bias_table``.
Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"  # timm (and official) name of the shared bias
INDEX_BUFFER = "relative_position_index"  # non-persistent in timm; saved by unilm and old transformers

# pretraining heads found in the official checkpoints, per method
BEIT_HEADS = ("mask_token", "lm_head.")  # mask token + 8192-way visual-token classifier
BEITV2_HEADS = BEIT_HEADS + ("cls_pt_layers.", "cls_pt_norm.", "cls_pt_lm_head.")  # + patch aggregation
DATA2VEC_HEADS = ("mask_token", "lm_head.")  # mask token + D x D regression head


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def refuse_per_block_bias(sd: dict[str, Any]) -> None:
    """Fail with a clear message on a fine-tuned checkpoint (one relative position table per block)."""
    per_block = any(k.startswith("blocks.") and k.endswith("attn.relative_position_bias_table") for k in sd)
    if per_block and SHARED_TABLE not in sd:
        raise WeightsError(
            "checkpoint has a relative position bias table per block, as BEiT-family checkpoints have after "
            "fine-tuning; these variants are the self-supervised encoders (one shared table): pass a "
            "pretrained-only checkpoint"
        )


def fit_shared_bias(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Resize the shared relative position table to the model's patch grid when they differ."""
    own = getattr(model, "rel_pos_bias", None)
    table = sd.get(SHARED_TABLE)
    if own is None or table is None:
        return sd
    want = tuple(own.relative_position_bias_table.shape)  # [(2Wh-1)(2Ww-1) + 3, heads]
    if tuple(table.shape) == want or table.ndim != 2 or table.shape[1] != want[1]:
        return sd  # equal, or not resizable: the strict loader reports a wrong shape
    from timm.layers import resize_rel_pos_bias_table

    out = dict(sd)
    out[SHARED_TABLE] = resize_rel_pos_bias_table(table, new_window_size=tuple(own.window_size), new_bias_shape=want)
    return out


def _drop(sd: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """`sd` without keys starting with `prefixes` and without relative position index buffers."""
    return {k: v for k, v in sd.items() if not k.startswith(prefixes) and not k.endswith(INDEX_BUFFER)}


# ---------------------------------------------------------------------------------------------
# official (unilm / data2vec_vision) and timm
# ---------------------------------------------------------------------------------------------


def detect_official(keys: KeyShapes) -> bool:
    """unilm-style BEiT keys (timm's own): q/v biases and the qkv weight of block 0, a class token."""
    return "cls_token" in keys and "blocks.0.attn.qkv.weight" in keys and "blocks.0.attn.q_bias" in keys


def convert_official(sd: dict[str, Any], model: Any, *, heads: tuple[str, ...]) -> dict[str, Any]:
    """Drop the pretraining heads and index buffers; the encoder keys already are timm's."""
    out = _drop(sd, heads)
    refuse_per_block_bias(out)
    return fit_shared_bias(out, model)


def official_layout(heads: tuple[str, ...], description: str) -> CheckpointLayout:
    """The official layout of one BEiT-family method, dropping that method's pretraining `heads`."""
    convert: Callable[[dict[str, Any], Any], dict[str, Any]] = partial(convert_official, heads=heads)
    return CheckpointLayout("official", description, detect_official, convert)


# ---------------------------------------------------------------------------------------------
# HF transformers (BeitModel, BeitForMaskedImageModeling, Data2VecVisionModel)
# ---------------------------------------------------------------------------------------------

_HF_PATCH = "embeddings.patch_embeddings.projection.weight"
_HF_PREFIXES = ("beit.", "data2vec_vision.")  # base-model attribute of the task models
_HF_DROP = ("embeddings.mask_token", "lm_head.")

# transformers v4 names (Hub files, Data2VecVision in memory) -> v5 BeitModel names
_HF_V4_TO_V5: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"^encoder\.relative_position_bias\."), "shared_position_bias."),
    (re.compile(r"^encoder\.layer\."), "layers."),
    (re.compile(r"\.attention\.attention\.relative_position_bias\."), ".relative_position_bias."),
    (re.compile(r"\.attention\.attention\.(query|key|value)\."), lambda m: f".attention.{m[1][0]}_proj."),
    (re.compile(r"\.attention\.output\.dense\."), ".attention.o_proj."),
    (re.compile(r"\.intermediate\.dense\."), ".mlp.fc1."),
    (re.compile(r"\.output\.dense\."), ".mlp.fc2."),
)
# v5 names -> timm Beit names; q/k/v weights are concatenated separately
_HF_TO_TIMM: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^embeddings\.cls_token$"), "cls_token"),
    (re.compile(r"^embeddings\.patch_embeddings\.projection\."), "patch_embed.proj."),
    (re.compile(r"^embeddings\.position_embeddings$"), "pos_embed"),
    (re.compile(r"^shared_position_bias\."), "rel_pos_bias."),
    (re.compile(r"^layernorm\."), "norm."),  # final norm (BeitForMaskedImageModeling keeps it outside `beit.`)
    (re.compile(r"^pooler\.layernorm\."), "fc_norm."),  # mean-pooling norm of fine-tuned models
    (re.compile(r"^layers\.(\d+)\."), r"blocks.\1."),
    (re.compile(r"\.layernorm_before\."), ".norm1."),
    (re.compile(r"\.layernorm_after\."), ".norm2."),
    (re.compile(r"\.lambda_([12])$"), r".gamma_\1"),
    (re.compile(r"\.attention\.o_proj\."), ".attn.proj."),
    (re.compile(r"\.attention\.q_proj\.bias$"), ".attn.q_bias"),
    (re.compile(r"\.attention\.v_proj\.bias$"), ".attn.v_bias"),
    (re.compile(r"\.relative_position_bias\.relative_position_bias_table$"), ".attn.relative_position_bias_table"),
)
_QKV = re.compile(r"^blocks\.(\d+)\.attention\.([qkv])_proj\.weight$")


def detect_transformers(keys: KeyShapes) -> bool:
    """HF BEiT / Data2VecVision keys: HF patch embedding plus BEiT's layer scale (`lambda_1`)."""
    has_patch = any(k.endswith(_HF_PATCH) for k in keys)
    return has_patch and any(k.endswith("lambda_1") for k in keys)


def _strip_hf_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """Remove the `beit.` / `data2vec_vision.` prefix; refuse a checkpoint whose names then collide."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        name = next((k[len(p):] for p in _HF_PREFIXES if k.startswith(p)), k)
        if name in out:
            raise WeightsError(f"checkpoint holds both '{k}' and an unprefixed '{name}' (two final LayerNorms?); "
                               "pass a BEiT checkpoint saved with use_mean_pooling=True or without the task head")
        out[name] = v
    return out


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], Any], ...]) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def _fuse_qkv(sd: dict[str, Any]) -> dict[str, Any]:
    """Concatenate each block's separate q, k, v projection weights into timm's `attn.qkv.weight`."""
    import torch

    parts: dict[int, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = _QKV.match(k)
        if m:
            parts.setdefault(int(m[1]), {})[m[2]] = v
        else:
            out[k] = v
    for i, p in sorted(parts.items()):
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([p["q"], p["k"], p["v"]], dim=0)  # KeyError if one is missing
    return out


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """HF BEiT / Data2VecVision names (v4 Hub files or v5 state dicts) -> timm Beit names."""
    sd = _drop(_strip_hf_prefix(sd), _HF_DROP)
    sd = {_rename(_rename(k, _HF_V4_TO_V5), _HF_TO_TIMM): v for k, v in sd.items()}
    out = _fuse_qkv(sd)  # anything unmapped stays and is reported as unexpected by the strict load
    refuse_per_block_bias(out)
    return fit_shared_bias(out, model)


TRANSFORMERS_LAYOUT = CheckpointLayout(
    "transformers",
    "HF transformers BeitForMaskedImageModeling / BeitModel / Data2VecVisionModel (v4 Hub names or v5 state "
    "dicts); mask token and lm_head dropped",
    detect_transformers,
    convert_transformers,
)

# BEiT's own layouts; BEiT v2 and data2vec build theirs from the pieces above
LAYOUTS = (
    official_layout(
        BEIT_HEADS,
        "microsoft/unilm BEiT checkpoint (beit_*_pt22k.pth: cls_token, blocks.N.gamma_1, shared rel_pos_bias) and "
        "timm's Beit state dict; mask_token and lm_head dropped",
    ),
    TRANSFORMERS_LAYOUT,
)
