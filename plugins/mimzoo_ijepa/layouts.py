"""I-JEPA checkpoint layouts and their conversion to timm's VisionTransformer keys.

The I-JEPA encoder is a plain ViT without a class token: ``pos_embed`` (a fixed 2-D sin-cos
table, saved as a parameter), ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj,
norm2, mlp.fc1, mlp.fc2}`` and a final ``norm`` (facebookresearch/ijepa
``src/models/vision_transformer.py``). timm's ``vit_*_gap_*`` models (``class_token=False``,
``global_pool='avg'``, ``fc_norm=False``) have exactly these key names and shapes.

- official-target / official-context (facebookresearch/ijepa ``src/train.py``): the training
  checkpoint ``{'encoder', 'predictor', 'target_encoder', 'opt', 'scaler', 'epoch', 'loss',
  'batch_size', 'world_size', 'lr'}``, each state dict with a ``module.`` prefix from DDP (none
  for single-GPU runs). ``read_checkpoint`` flattens it to ``encoder.module.blocks.0...``,
  ``target_encoder.module...``, ``predictor.module...`` and ``opt.state.N...``. The two layouts
  read the same file and differ only in which encoder they keep: the EMA ``target_encoder``,
  which the paper evaluates (appendix A.1), or the context ``encoder``, which timm's and HF's
  conversions load. The predictor, the optimizer state and the other encoder are dropped.
- timm: one encoder state dict on its own, e.g. timm's ``vit_*_gap_*`` state dict or one
  sub-dict of the official checkpoint saved by itself (its shared ``module.`` prefix is removed
  by ``read_checkpoint``). Which encoder it holds is up to whoever saved it.
- transformers (``IJepaModel`` / ``IJepaForImageClassification``; the ``facebook/ijepa_*`` Hub
  repos, which hold the **context** encoder): separate q/k/v projections, an optional ``ijepa.``
  prefix and ``classifier`` / ``pooler`` heads (dropped). Hub files use the v4 names
  (``encoder.layer.N.attention.attention.query``), transformers>=5 state dicts the v5 names
  (``layers.N.attention.q_proj``); both are accepted. The target variants list a ``transformers``
  layout that refuses these files with a pointer to the ``-context`` variant, so that a context
  encoder never loads under a target encoder's name.

Every conversion also refuses a ``pos_embed`` that is not a square grid (a class-token slot):
left to the loader, resampling it would fail with a bare RuntimeError instead of a WeightsError.
Detection looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

import re
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes
from mimzoo.weights.hf_vit import hf_vit_to_timm

# the sub-dicts of an official training checkpoint holding a ViT encoder
TARGET, CONTEXT = "target_encoder", "encoder"
_PATCH = "patch_embed.proj.weight"
_HF_PATCH = "embeddings.patch_embeddings.projection.weight"
# official sub-dict prefixes with or without DDP's "module."
_OFFICIAL_ENCODER_KEY = re.compile(rf"^({TARGET}|{CONTEXT})\.(module\.)?{re.escape(_PATCH)}$")


# ---------------------------------------------------------------------------------------------
# detection (key names only)


def detect_official(keys: KeyShapes) -> bool:
    """An official I-JEPA training checkpoint: an ``encoder`` or ``target_encoder`` sub-dict."""
    return any(_OFFICIAL_ENCODER_KEY.match(k) for k in keys)


def detect_timm(keys: KeyShapes) -> bool:
    """A bare class-token-free ViT state dict in timm / official key names."""
    return _PATCH in keys and "blocks.0.attn.qkv.weight" in keys and "cls_token" not in keys


def detect_transformers(keys: KeyShapes) -> bool:
    """An HF IJepaModel (no prefix) or IJepaForImageClassification (``ijepa.``) state dict.

    ViT / ViTMAE files share the patch-embedding name but carry a class token; they are not I-JEPA.
    """
    for prefix in ("", "ijepa."):
        if f"{prefix}{_HF_PATCH}" in keys and f"{prefix}embeddings.cls_token" not in keys:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# official training checkpoint


def _sub_dicts(sd: dict[str, Any]) -> set[str]:
    """Names of the top-level sub-dicts of a flattened checkpoint (encoder, predictor, opt, ...)."""
    return {k.split(".", 1)[0] for k in sd if "." in k}


def select_encoder(sd: dict[str, Any], which: str) -> dict[str, Any]:
    """The ``which`` sub-dict (``encoder`` or ``target_encoder``) of a flattened official checkpoint.

    Keys lose the sub-dict name and DDP's ``module.`` prefix; every other sub-dict is dropped.
    """
    head = f"{which}."
    sub = {k[len(head):]: v for k, v in sd.items() if k.startswith(head)}
    if not sub:
        other = CONTEXT if which == TARGET else TARGET
        variant = "the '-context' variant" if which == TARGET else "the variant without '-context'"
        raise WeightsError(
            f"this I-JEPA checkpoint has no '{which}' state dict (it holds: {', '.join(sorted(_sub_dicts(sd)))}); "
            f"its '{other}' loads with {variant} of this model"
        )
    if all(k.startswith("module.") for k in sub):
        sub = {k[len("module."):]: v for k, v in sub.items()}
    return sub


def check_patch_grid(sd: dict[str, Any]) -> dict[str, Any]:
    """Refuse a ``pos_embed`` that is not a square patch grid (e.g. one with a class-token slot).

    mimzoo resamples a ``pos_embed`` of another size to the model's grid, which needs a square
    token count; I-JEPA encoders have no class token, so an extra slot means a foreign checkpoint.
    """
    pos = sd.get("pos_embed")
    if pos is not None and pos.ndim == 3:
        tokens = pos.shape[1]
        if round(tokens**0.5) ** 2 != tokens:
            raise WeightsError(
                f"pos_embed holds {tokens} tokens, not a square patch grid; I-JEPA encoders have no class "
                "token, so pass a checkpoint of an I-JEPA (class-token-free) ViT"
            )
    return sd


def convert_official_target(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Keep the EMA target encoder, the one the paper evaluates; drop everything else."""
    return check_patch_grid(select_encoder(sd, TARGET))


def convert_official_context(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Keep the context encoder (what timm and HF transformers load); drop everything else."""
    return check_patch_grid(select_encoder(sd, CONTEXT))


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Already the encoder's own key names."""
    return check_patch_grid(dict(sd))


def refuse_transformers_as_target(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """HF I-JEPA files hold the context encoder; loading one as the target encoder would mislabel it."""
    raise WeightsError(
        "this is an HF transformers IJepaModel file; the facebook/ijepa_* ones hold the context encoder, "
        "so load it with the '-context' variant of this model (a target encoder saved from the official "
        "checkpoint loads here in the official or timm layout)"
    )


# ---------------------------------------------------------------------------------------------
# HF transformers

# heads and training-only tensors of the HF classes that are not part of the encoder
_HF_DROP = ("classifier.", "pooler.", "embeddings.mask_token")


def _hf_encoder_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """The encoder tensors in v5 names: ``ijepa.`` prefix removed, heads dropped."""
    if any(k.startswith(f"ijepa.{_HF_PATCH}") for k in sd):
        sd = {k[len("ijepa."):]: v for k, v in sd.items() if k.startswith("ijepa.")}
    return {k: v for k, v in sd.items() if not k.startswith(_HF_DROP)}


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """IJepaModel names (v4 Hub files or v5 state dicts) -> timm names; q, k, v concatenated into qkv."""
    return check_patch_grid(hf_vit_to_timm(_hf_encoder_keys(sd)))


# ---------------------------------------------------------------------------------------------
# the layouts; the target and context variants list different ones (see __init__)

OFFICIAL_TARGET = CheckpointLayout(
    "official-target",
    "facebookresearch/ijepa training checkpoint (IN*-vit.*.pth.tar); keeps the EMA target_encoder the "
    "paper evaluates, drops the context encoder, predictor and optimizer state",
    detect_official,
    convert_official_target,
)
OFFICIAL_CONTEXT = CheckpointLayout(
    "official-context",
    "facebookresearch/ijepa training checkpoint (IN*-vit.*.pth.tar); keeps the context encoder (what timm "
    "and HF load), drops the target encoder, predictor and optimizer state",
    detect_official,
    convert_official_context,
)
TIMM = CheckpointLayout(
    "timm",
    "one class-token-free ViT state dict: timm vit_*_gap_* keys, or one encoder sub-dict of the official "
    "checkpoint saved on its own",
    detect_timm,
    convert_timm,
)
TRANSFORMERS = CheckpointLayout(
    "transformers",
    "HF transformers IJepaModel / IJepaForImageClassification, v4 Hub names or v5 state dict "
    "(facebook/ijepa_* hold the context encoder)",
    detect_transformers,
    convert_transformers,
)

# listed by the target variants so that an HF file gets a pointer to the context variant, not a
# silent context encoder under the target encoder's name
TRANSFORMERS_REFUSED = CheckpointLayout(
    "transformers",
    "HF transformers IJepaModel files are refused here: facebook/ijepa_* hold the context encoder, "
    "which loads with the '-context' variant",
    detect_transformers,
    refuse_transformers_as_target,
)

TARGET_LAYOUTS = (OFFICIAL_TARGET, TIMM, TRANSFORMERS_REFUSED)
CONTEXT_LAYOUTS = (OFFICIAL_CONTEXT, TIMM, TRANSFORMERS)
# the tiny test variant: the target variants' official layout, plus the HF layout so that the
# conversion can be checked against transformers' IJepaModel
TEST_LAYOUTS = (OFFICIAL_TARGET, TIMM, TRANSFORMERS)
