"""SimMIM checkpoint layouts and their conversion to timm's ``Beit`` (ViT) and ``SwinTransformer`` keys.

Official checkpoints (microsoft/SimMIM ``models/simmim.py``, saved by ``utils.save_checkpoint`` as
``{'model': SimMIM.state_dict(), ...}``) hold the encoder under ``encoder.`` and the one-layer
prediction head under ``decoder.0.`` (a 1x1 conv to ``stride**2 * 3`` channels, followed by a
parameter-free PixelShuffle). The encoder also carries the learned ``mask_token``. Head and mask
token are pretraining-only and are dropped, as are buffers that timm recomputes
(``relative_position_index``, Swin's shifted-window ``attn_mask``).

ViT (``models/vision_transformer.py``, pretrain config ``USE_APE=False, USE_RPB=False,
USE_SHARED_RPB=True, USE_MEAN_POOLING=False, INIT_VALUES=0.1``): BEiT's encoder -- layer scale
``blocks.N.gamma_1/2``, q/v biases without a k bias, no absolute position embedding, and ONE
relative position bias ``rel_pos_bias.relative_position_bias_table`` shared by every block, plus
the final per-token ``norm``. These are exactly timm ``Beit``'s names when it is built with
``use_shared_rel_pos_bias=True`` (see ``VIT_KWARGS``). Building it shared, rather than copying
the table into every block (what SimMIM's own fine-tuning does), keeps the encoder's parameters
identical to the pretrained ones and lets its state dict round-trip to the official names.

Swin (``models/swin_transformer.py``): the original Swin names, which timm kept, except that the
original downsamples at the END of a stage (``layers.i.downsample`` for i < last) while timm
downsamples at the START of the next one (``layers.{i+1}.downsample``); the index is shifted here.
Per-block relative position tables are resized with timm's ``resize_rel_pos_bias_table`` when the
encoder's window differs from the checkpoint's.

transformers (Swin only: ``SwinForMaskedImageModeling`` / ``SwinModel``, e.g. the Hub's
``microsoft/swin-*-simmim-*`` conversions): separate q/k/v projections, ``layernorm_before/after``,
``swin.`` prefix, ``embeddings.mask_token``. Hub files use transformers v4 names
(``attention.self.query``, ``attention.output.dense``, ``intermediate.dense``, ``output.dense``),
transformers>=5 state dicts the v5 names (``attention.q_proj``, ``attention.o_proj``, ``mlp.fc1``);
both are accepted. HF Swin also downsamples at the end of a stage.

Detection looks at key names only; torch is imported only inside conversions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

# timm Beit kwargs giving SimMIM's pretrained ViT encoder (shared rel-pos bias, no abs pos, layer
# scale 0.1 at init) with the pretrained final norm kept on every token. With global_pool='avg'
# the pooled embedding is the mean of the normalised patch tokens (no new, untrained fc_norm).
VIT_KWARGS: Mapping[str, Any] = {
    "use_abs_pos_emb": False,
    "use_rel_pos_bias": False,
    "use_shared_rel_pos_bias": True,
    "use_fc_norm": False,
    "init_values": 0.1,
}

ENCODER_PREFIX = "encoder."
DECODER_PREFIX = "decoder."  # decoder.0 = 1x1 conv; decoder.1 = PixelShuffle (no parameters)
MASK_TOKEN = "mask_token"
# buffers that older code saved and timm recomputes (non-persistent there)
RECOMPUTED_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")
SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"
TABLE_SUFFIX = "relative_position_bias_table"


# ---------------------------------------------------------------------------------------------
# helpers shared by every layout
# ---------------------------------------------------------------------------------------------


def strip_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """`sd` with `prefix` removed from every key that has it (other keys are kept as they are)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def _unwrap(sd: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `sd` without a DDP `module.` prefix shared by all keys."""
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = strip_prefix(sd, "module.")
    return sd


def _drop_pretraining_extras(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the prediction head, the mask token and buffers timm recomputes."""
    return {
        k: v
        for k, v in sd.items()
        if not k.startswith(DECODER_PREFIX) and k != MASK_TOKEN and not k.endswith(RECOMPUTED_BUFFERS)
    }


def _strip_keys(keys: KeyShapes, prefix: str) -> set[str]:
    return {k[len(prefix):] if k.startswith(prefix) else k for k in keys}


def fit_rel_pos_tables(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Resize relative position tables whose size differs from the encoder's (another window size).

    Tables with another number of heads are left alone: the strict loader reports their shape.
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.endswith(TABLE_SUFFIX)}
    todo = [k for k, v in sd.items() if k in own and tuple(v.shape) != own[k] and v.ndim == 2
            and v.shape[1] == own[k][1]]
    if not todo:
        return sd
    from timm.layers import resize_rel_pos_bias_table

    out = dict(sd)
    for k in todo:
        window = model.get_submodule(k[: -len(TABLE_SUFFIX) - 1]).window_size
        out[k] = resize_rel_pos_bias_table(sd[k], new_window_size=tuple(window), new_bias_shape=own[k])
    return out


# ---------------------------------------------------------------------------------------------
# ViT (BEiT-style): official SimMIM and timm Beit
# ---------------------------------------------------------------------------------------------


def _is_beit_vit(keys: set[str]) -> bool:
    return "cls_token" in keys and "blocks.0.attn.q_bias" in keys and "blocks.0.attn.qkv.weight" in keys


def detect_vit_official(keys: KeyShapes) -> bool:
    """A SimMIM ViT checkpoint: BEiT-style encoder keys under `encoder.`."""
    return f"{ENCODER_PREFIX}cls_token" in keys and _is_beit_vit(_strip_keys(keys, ENCODER_PREFIX))


def detect_vit_timm(keys: KeyShapes) -> bool:
    """timm's Beit keys (mimzoo's own saved encoders): no `encoder.` prefix."""
    return _is_beit_vit(set(keys))


def _refuse_per_block_tables(sd: Mapping[str, Any]) -> None:
    """A fine-tuned SimMIM ViT has one table per block: not the pretrained encoder."""
    if SHARED_TABLE not in sd and any(k.startswith("blocks.") and k.endswith(TABLE_SUFFIX) for k in sd):
        raise WeightsError(
            "checkpoint has one relative position table per block, as SimMIM ViT checkpoints have after "
            "fine-tuning; simmim-vit-* are the pretrained encoders (one shared table): pass a pretraining checkpoint"
        )


def convert_vit(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """SimMIM ViT (official, with `encoder.`/`decoder.`) or timm Beit keys -> timm Beit keys."""
    out = _drop_pretraining_extras(strip_prefix(_unwrap(sd), ENCODER_PREFIX))
    _refuse_per_block_tables(out)
    return fit_rel_pos_tables(out, model)


# ---------------------------------------------------------------------------------------------
# Swin: official SimMIM / original Swin, and timm
# ---------------------------------------------------------------------------------------------

_SWIN_BLOCK = "layers.0.blocks.0.attn.qkv.weight"
_END_OF_STAGE_DOWNSAMPLE = "layers.0.downsample.reduction.weight"  # only the original layout has one in stage 0
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def detect_swin_official(keys: KeyShapes) -> bool:
    """SimMIM Swin checkpoint (`encoder.`-prefixed), or original Swin keys (downsample at stage end)."""
    stripped = _strip_keys(keys, ENCODER_PREFIX)
    prefixed = any(k.startswith(ENCODER_PREFIX + "layers.") for k in keys)
    return _SWIN_BLOCK in stripped and (prefixed or _END_OF_STAGE_DOWNSAMPLE in stripped)


def detect_swin_timm(keys: KeyShapes) -> bool:
    """timm SwinTransformer keys: downsample at the start of stages 1.., no `encoder.` prefix."""
    return _SWIN_BLOCK in keys and _END_OF_STAGE_DOWNSAMPLE not in keys


def _move_downsample_to_next_stage(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Original Swin: `layers.i.downsample` ends stage i; timm: it starts stage i+1."""
    return {_DOWNSAMPLE.sub(lambda m: f"layers.{int(m[1]) + 1}.downsample.", k): v for k, v in sd.items()}


def convert_swin_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """SimMIM (or original) Swin keys -> timm SwinTransformer keys."""
    out = _drop_pretraining_extras(strip_prefix(_unwrap(sd), ENCODER_PREFIX))
    return fit_rel_pos_tables(_move_downsample_to_next_stage(out), model)


def convert_swin_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """timm keys are the encoder's own; only buffers and a stray mask token are dropped."""
    return fit_rel_pos_tables(_drop_pretraining_extras(_unwrap(sd)), model)


# ---------------------------------------------------------------------------------------------
# Swin: HF transformers (SwinForMaskedImageModeling / SwinModel)
# ---------------------------------------------------------------------------------------------

_HF_PATCH = "embeddings.patch_embeddings.projection.weight"
# transformers v4 names (Hub files) -> v5 names (in-memory state dicts)
_HF_V4_TO_V5: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"\.attention\.self\.(query|key|value)\."), lambda m: f".attention.{m[1][0]}_proj."),
    (re.compile(r"\.attention\.self\.relative_position_bias_table$"),
     ".attention.relative_position_bias.relative_position_bias_table"),
    (re.compile(r"\.attention\.output\.dense\."), ".attention.o_proj."),
    (re.compile(r"\.intermediate\.dense\."), ".mlp.fc1."),
    (re.compile(r"\.output\.dense\."), ".mlp.fc2."),
)
# v5 names -> timm names (downsample index and q/k/v fusion handled separately)
_HF_TO_TIMM: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^embeddings\.patch_embeddings\.projection\."), "patch_embed.proj."),
    (re.compile(r"^embeddings\.norm\."), "patch_embed.norm."),
    (re.compile(r"^encoder\.layers\."), "layers."),
    (re.compile(r"^layernorm\."), "norm."),
    (re.compile(r"\.layernorm_before\."), ".norm1."),
    (re.compile(r"\.layernorm_after\."), ".norm2."),
    (re.compile(r"\.attention\.o_proj\."), ".attn.proj."),
    (re.compile(r"\.attention\.relative_position_bias\.relative_position_bias_table$"),
     ".attn.relative_position_bias_table"),
)
_HF_QKV = re.compile(r"^(layers\.\d+\.blocks\.\d+)\.attention\.([qkv])_proj\.(weight|bias)$")
_HF_DROP = ("embeddings.mask_token", "decoder.", "pooler.")


def detect_swin_transformers(keys: KeyShapes) -> bool:
    """HF Swin keys: HF patch embedding plus HF block names under `encoder.layers.`."""
    return any(k.endswith(_HF_PATCH) for k in keys) and any(".layernorm_before." in k for k in keys)


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], Any], ...]) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def _fuse_qkv(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Concatenate each block's q, k, v projections (weight and bias) into timm's `attn.qkv`."""
    import torch

    parts: dict[tuple[str, str], dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = _HF_QKV.match(k)
        if m:
            parts.setdefault((m[1], m[3]), {})[m[2]] = v
        else:
            out[k] = v
    for (block, kind), p in sorted(parts.items()):
        missing = [n for n in "qkv" if n not in p]
        if missing:
            raise WeightsError(f"checkpoint lacks the {'/'.join(missing)} projection {kind} of {block}; "
                               "pass a complete HF Swin checkpoint")
        out[f"{block}.attn.qkv.{kind}"] = torch.cat([p["q"], p["k"], p["v"]], dim=0)
    return out


def convert_swin_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """HF SwinForMaskedImageModeling / SwinModel (v4 or v5 names) -> timm SwinTransformer keys."""
    sd = strip_prefix(_unwrap(sd), "swin.")
    sd = {k: v for k, v in sd.items() if not k.startswith(_HF_DROP) and not k.endswith(RECOMPUTED_BUFFERS)}
    sd = {_rename(_rename(k, _HF_V4_TO_V5), _HF_TO_TIMM): v for k, v in sd.items()}
    out = _move_downsample_to_next_stage(_fuse_qkv(sd))  # leftovers are reported by the strict load
    return fit_rel_pos_tables(out, model)


VIT_LAYOUTS = (
    CheckpointLayout(
        "official",
        "microsoft/SimMIM ViT pretraining checkpoint ({'model': {encoder.*, decoder.0.*}}); "
        "mask token and decoder dropped",
        detect_vit_official,
        convert_vit,
    ),
    CheckpointLayout(
        "timm",
        "timm Beit keys with one shared relative position bias (mimzoo's converted simmim-vit-* weights)",
        detect_vit_timm,
        convert_vit,
    ),
)

SWIN_LAYOUTS = (
    CheckpointLayout(
        "official",
        "microsoft/SimMIM Swin pretraining checkpoint ({'model': {encoder.*, decoder.0.*}}) or original Swin keys; "
        "mask token and decoder dropped, downsample moved to the next stage",
        detect_swin_official,
        convert_swin_official,
    ),
    CheckpointLayout(
        "timm",
        "timm SwinTransformer keys (mimzoo's converted simmim-swin-* weights)",
        detect_swin_timm,
        convert_swin_timm,
    ),
    CheckpointLayout(
        "transformers",
        "HF transformers SwinForMaskedImageModeling / SwinModel (v4 Hub names or v5 state dict); "
        "mask token and decoder dropped",
        detect_swin_transformers,
        convert_swin_transformers,
    ),
)
