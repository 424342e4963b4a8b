"""FCMAE / ConvNeXt V2 checkpoint layouts and their conversion to timm's ``ConvNeXt`` keys.

- official (facebookresearch/ConvNeXt-V2, the released ``pt_only/convnextv2_*_1k_224_fcmae.pt``):
  ``{'model': {...}}`` with the dense ConvNeXt V2 names: ``downsample_layers.0.{0,1}`` (stem conv
  and LayerNorm), ``downsample_layers.N.{0,1}`` (LayerNorm and 2x2 conv), ``stages.S.B.{dwconv,
  norm, pwconv1, grn.gamma, grn.beta, pwconv2}`` with GRN parameters shaped ``[1, 1, 1, C]`` (any
  shape holding C values is accepted). The pretraining encoder has no final norm, so these files
  have no ``norm`` (see "final norm" below). The files were converted by the authors from JAX and
  are already dense: they need none of the MinkowskiEngine remapping below (ConvNeXt-V2 issues #47
  and #65 list their keys). A dense FCMAE state dict with the ``encoder.`` prefix and the decoder
  (``proj``, ``mask_token``, ``decoder.*``, ``pred``) is accepted too; the decoder is dropped.
- minkowski (what the official ``main_pretrain.py`` writes when it trains FCMAE with
  MinkowskiEngine): the FCMAE model state dict, ``encoder.``-prefixed, with sparse-layer names and
  shapes: ``*.kernel`` ``[k*k, C_in, C_out]`` (convolutions) or ``[k*k, C]`` (depthwise),
  ``*.ln.*`` (MinkowskiLayerNorm), ``*.linear.*`` (MinkowskiLinear), biases and GRN parameters
  shaped ``[1, C]``, plus the decoder. The kernels are laid out as the official
  ``utils.remap_checkpoint_keys`` (used by ``main_finetune.py``) reads them: flat kernel offset
  ``w * k + h`` for the weight at row ``h``, column ``w``.
- timm (``timm/convnextv2_*.fcmae`` on the Hub, and the encoder's own state dict): timm's names
  (``stem``, ``stages.S.downsample``, ``stages.S.blocks.B.{conv_dw, norm, mlp.fc1, mlp.grn,
  mlp.fc2}``, ``head.norm``). The smaller timm models (atto to nano) use 1x1 convolutions for the
  MLP, so ``fc1``/``fc2`` weights are ``[C_out, C_in, 1, 1]`` there and ``[C_out, C_in]`` in the
  larger ones; weights are reshaped to the encoder's shapes whichever way they come.
- transformers (``ConvNextV2Model`` / ``ConvNextV2ForImageClassification``): ``embeddings.*``,
  ``encoder.stages.S.{downsampling_layer, layers.B.*}``, the final ``layernorm``, optional
  ``convnextv2.`` prefix; GRN as ``grn.weight/bias`` (current names) or ``grn.gamma/beta`` (old).
  transformers hosts fine-tuned ConvNeXt V2 weights only; the layout is here for parity checks.

Final norm: timm's ConvNeXt pools, then applies ``head.norm`` (a LayerNorm), as the official
``ConvNeXtV2.forward_features`` does with ``norm``. FCMAE's encoder stops at the last stage, so
its checkpoints carry no such norm, and the official fine-tuning starts the classifier's norm
from ``nn.LayerNorm``'s identity affine (weight 1, bias 0). mimzoo does the same, explicitly: a
checkpoint without a final norm gets ``head.norm`` = (ones, zeros), and ``encoder(x)`` is the
parameter-free LayerNorm of the globally averaged last feature map -- exactly what the official
fine-tuning's classifier sees at its first step. A checkpoint that has the norm keeps its own.

A classifier (``head``/``classifier``) is not part of the encoder: it is left in, so a fine-tuned
checkpoint fails the strict load instead of passing for an FCMAE one. Detection looks at key
names only; torch is imported only to convert.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

log = logging.getLogger(__name__)

# FCMAE's pretraining parts beside the encoder (models/fcmae.py): 1x1 projection, mask token,
# decoder blocks and the pixel predictor. All are top-level names.
FCMAE_HEADS = ("mask_token", "proj.", "decoder.", "pred.")
ENCODER_PREFIX = "encoder."  # FCMAE.encoder, the SparseConvNeXtV2
HF_PREFIX = "convnextv2."  # ConvNextV2ForImageClassification wraps ConvNextV2Model
HEAD_NORM = ("head.norm.weight", "head.norm.bias")

# official dense names -> timm names, applied in order ("head" before "norm": norm -> head.norm)
_OFFICIAL_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^downsample_layers\.0\.", "stem."),
        (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
        (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
        (r"\.dwconv\.", ".conv_dw."),
        (r"\.pwconv([12])\.", r".mlp.fc\1."),
        (r"\.grn\.gamma$", ".mlp.grn.weight"),
        (r"\.grn\.beta$", ".mlp.grn.bias"),
        (r"^head\.", "head.fc."),
        (r"^norm\.", "head.norm."),
    )
)
# transformers names (prefix removed) -> timm names, applied in order
_HF_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^embeddings\.patch_embeddings\.", "stem.0."),
        (r"^embeddings\.layernorm\.", "stem.1."),
        (r"^encoder\.stages\.(\d+)\.downsampling_layer\.", r"stages.\1.downsample."),
        (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.blocks.\2."),
        (r"\.dwconv\.", ".conv_dw."),
        (r"\.layernorm\.", ".norm."),
        (r"\.pwconv([12])\.", r".mlp.fc\1."),
        (r"\.grn\.(weight|gamma)$", ".mlp.grn.weight"),
        (r"\.grn\.(bias|beta)$", ".mlp.grn.bias"),
        (r"^classifier\.", "head.fc."),
        (r"^layernorm\.", "head.norm."),
    )
)
_MINKOWSKI_WRAPPER = re.compile(r"\.(ln|linear)\.")  # MinkowskiLayerNorm.ln, MinkowskiLinear.linear


def _rename(key: str, rules: Iterable[tuple[re.Pattern[str], str]]) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def _encoder_keys(keys: Iterable[str]) -> set[str]:
    """Key names with FCMAE's ``encoder.`` prefix removed (a no-op for encoder-only files)."""
    return {k[len(ENCODER_PREFIX):] if k.startswith(ENCODER_PREFIX) else k for k in keys}


# ---------------------------------------------------------------------------------------------
# detection (key names only)
# ---------------------------------------------------------------------------------------------


def detect_minkowski(keys: KeyShapes) -> bool:
    """An FCMAE training checkpoint with MinkowskiEngine's sparse-layer names (``*.kernel``)."""
    names = _encoder_keys(keys)
    sparse = any(k.startswith("stages.") and k.endswith(".kernel") for k in names)
    return "downsample_layers.0.0.weight" in names and sparse


def detect_official(keys: KeyShapes) -> bool:
    """The official dense ConvNeXt V2 names (the released pt_only files)."""
    names = _encoder_keys(keys)
    return "downsample_layers.0.0.weight" in names and "stages.0.0.dwconv.weight" in names


def detect_timm(keys: KeyShapes) -> bool:
    return "stem.0.weight" in keys and "stages.0.blocks.0.conv_dw.weight" in keys


def detect_transformers(keys: KeyShapes) -> bool:
    key = "encoder.stages.0.layers.0.dwconv.weight"
    return key in keys or HF_PREFIX + key in keys


# ---------------------------------------------------------------------------------------------
# shared steps
# ---------------------------------------------------------------------------------------------


def _drop_fcmae_heads(sd: dict[str, Any]) -> dict[str, Any]:
    """The encoder of an FCMAE state dict: decoder side dropped, ``encoder.`` prefix removed."""
    out = {}
    for k, v in sd.items():
        if k.startswith(FCMAE_HEADS):
            continue
        out[k[len(ENCODER_PREFIX):] if k.startswith(ENCODER_PREFIX) else k] = v
    return out


def _squeezed(shape: Iterable[int]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _fit_shapes(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Reshape tensors that differ from the encoder's only by size-1 dimensions.

    Covers GRN ``[1, 1, 1, C]`` / ``[1, C]`` vs ``[C]``, Linear ``[O, I]`` vs 1x1 conv ``[O, I, 1, 1]``
    and MinkowskiEngine's ``[1, C]`` biases. Anything else (a transposed matrix, a wrong width) is
    left as it is for the strict loader to report.
    """
    own = model.state_dict()
    out = {}
    for k, v in sd.items():
        target = own.get(k)
        differs = target is not None and tuple(v.shape) != tuple(target.shape)
        if differs and _squeezed(v.shape) == _squeezed(target.shape):
            v = v.reshape(target.shape)
        out[k] = v
    return out


def _identity_head_norm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Give a checkpoint without a final norm the identity-affine ``head.norm`` (see the module doc)."""
    import torch

    own = model.state_dict()
    if HEAD_NORM[0] not in own or any(k in sd for k in HEAD_NORM):
        return sd  # no such norm in the encoder, or the checkpoint brings its own (or half of it)
    log.info("checkpoint has no final norm (FCMAE encoder): head.norm set to identity affine (weight 1, bias 0)")
    weight, bias = own[HEAD_NORM[0]], own[HEAD_NORM[1]]
    return {**sd, HEAD_NORM[0]: torch.ones(weight.shape, dtype=weight.dtype),
            HEAD_NORM[1]: torch.zeros(bias.shape, dtype=bias.dtype)}


def _finish(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    return _identity_head_norm(_fit_shapes(sd, model), model)


# ---------------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------------


def dense_kernel(kernel: Any, key: str) -> Any:
    """A MinkowskiEngine 2-D kernel as a ``Conv2d`` weight.

    ``[k*k, C_in, C_out]`` becomes ``[C_out, C_in, k, k]`` and a depthwise ``[k*k, C]`` becomes
    ``[C, 1, k, k]``; the flat offset ``w * k + h`` holds the weight at row ``h``, column ``w``,
    the layout the official ``remap_checkpoint_keys`` assumes.
    """
    k = math.isqrt(kernel.shape[0])
    if kernel.ndim not in (2, 3) or k * k != kernel.shape[0]:
        raise WeightsError(
            f"{key} has shape {tuple(kernel.shape)}, not a square 2-D MinkowskiEngine kernel [k*k, ...]; "
            "pass an FCMAE checkpoint of a 2-D ConvNeXt V2"
        )
    grid = kernel.reshape(k, k, *kernel.shape[1:])  # [w, h, C_in, C_out] or [w, h, C]
    if kernel.ndim == 3:
        return grid.permute(3, 2, 1, 0).contiguous()
    return grid.permute(2, 1, 0).unsqueeze(1).contiguous()


def minkowski_to_dense(sd: dict[str, Any]) -> dict[str, Any]:
    """MinkowskiEngine names and kernels -> the official dense names (what remap_checkpoint_keys does)."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".kernel"):
            out[k[: -len("kernel")] + "weight"] = dense_kernel(v, k)
        else:
            out[_MINKOWSKI_WRAPPER.sub(".", k)] = v  # [1, C] biases are reshaped by _fit_shapes
    return out


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Official dense names -> timm names; decoder dropped, final norm filled in when absent."""
    return _finish({_rename(k, _OFFICIAL_RULES): v for k, v in _drop_fcmae_heads(sd).items()}, model)


def convert_minkowski(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """A MinkowskiEngine FCMAE training checkpoint: densified, then read as the official layout."""
    return convert_official(minkowski_to_dense(_drop_fcmae_heads(sd)), model)


def convert_timm(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    return _finish(dict(sd), model)


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """ConvNextV2Model names (optionally ``convnextv2.``-prefixed) -> timm names."""
    if any(k.startswith(HF_PREFIX) for k in sd):
        sd = {(k[len(HF_PREFIX):] if k.startswith(HF_PREFIX) else k): v for k, v in sd.items()}
    return _finish({_rename(k, _HF_RULES): v for k, v in sd.items()}, model)


LAYOUTS = (
    CheckpointLayout(
        "minkowski",
        "FCMAE training checkpoint of the official main_pretrain.py (MinkowskiEngine kernels, encoder. prefix, "
        "decoder)",
        detect_minkowski,
        convert_minkowski,
    ),
    CheckpointLayout(
        "official",
        "facebookresearch/ConvNeXt-V2 dense keys: the released pt_only/convnextv2_*_fcmae.pt (decoder dropped if "
        "present)",
        detect_official,
        convert_official,
    ),
    CheckpointLayout(
        "timm",
        "timm ConvNeXt keys: timm/convnextv2_*.fcmae on the Hub and mimzoo's own encoders",
        detect_timm,
        convert_timm,
    ),
    CheckpointLayout(
        "transformers",
        "HF transformers ConvNextV2Model / ConvNextV2ForImageClassification (parity checks; HF hosts fine-tuned "
        "weights only)",
        detect_transformers,
        convert_transformers,
    ),
)
