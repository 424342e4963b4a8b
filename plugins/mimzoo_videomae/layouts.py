"""VideoMAE checkpoint layouts and their conversion to :class:`mimzoo.encoders.video.VideoViT` keys.

- official (MCG-NJU/VideoMAE, OpenGVLab/VideoMAEv2 ``.pth``; the ``model``/``module`` wrapper is removed
  by the safe reader): pretraining checkpoints hold the encoder under ``encoder.`` plus
  ``encoder_to_decoder``, ``mask_token`` and ``decoder.*`` (dropped); fine-tuned ones hold the encoder
  unprefixed plus ``fc_norm`` and a classifier ``head`` (dropped). Attention has ``qkv.weight`` without a
  bias and separate ``q_bias`` / ``v_bias``: they become ``qkv.bias = [q_bias, 0, v_bias]``.
- transformers (``VideoMAEModel`` / ``VideoMAEForPreTraining`` / ``VideoMAEForVideoClassification``,
  e.g. ``MCG-NJU/videomae-base``): ``videomae.`` prefix (optional),
  ``embeddings.patch_embeddings.projection``, ``encoder.layer.N.attention.attention.{query,key,value}``
  (older files: ``q_bias`` / ``v_bias`` beside bias-free ``query`` / ``value``),
  ``attention.output.dense``, ``intermediate.dense``, ``output.dense``, ``layernorm_before/after``,
  ``layernorm`` (final norm) or ``fc_norm``; ``classifier``, ``decoder.*``, ``encoder_to_decoder`` and
  ``mask_token`` are dropped.

Position tables are fixed sin-cos in every layout and not stored (a ``pos_embed`` entry, which a
checkpoint with learnable positions would carry, is refused: the encoder has fixed ones). Detection
looks at key names only; torch is imported only to convert.
"""

from __future__ import annotations

from typing import Any

from mimzoo.errors import WeightsError
from mimzoo.registry import CheckpointLayout
from mimzoo.registry.contract import KeyShapes

_DROP_OFFICIAL = ("decoder.", "encoder_to_decoder.", "mask_token", "head.")
_DROP_HF = ("decoder.", "encoder_to_decoder.", "mask_token", "classifier.")
_HF_PATCH = "embeddings.patch_embeddings.projection.weight"


def detect_official(keys: KeyShapes) -> bool:
    return any(k in keys for k in ("patch_embed.proj.weight", "encoder.patch_embed.proj.weight")) and any(
        k.endswith("blocks.0.attn.qkv.weight") for k in keys)


def detect_transformers(keys: KeyShapes) -> bool:
    return _HF_PATCH in keys or f"videomae.{_HF_PATCH}" in keys


def _refuse_learned_positions(sd: dict[str, Any]) -> None:
    if "pos_embed" in sd:
        raise WeightsError("this checkpoint has learned position embeddings (pos_embed); mimzoo's video ViT uses "
                           "VideoMAE's fixed sin-cos table: pass a checkpoint trained with fixed positions")


def _qkv_bias(q_bias: Any, v_bias: Any) -> Any:
    import torch

    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def convert_official(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """Official keys -> VideoViT keys: ``encoder.`` prefix and decoder/head dropped, q/v biases merged."""
    if any(k.startswith("encoder.") for k in sd):  # a pretraining checkpoint
        sd = {k[len("encoder."):] if k.startswith("encoder.") else k: v for k, v in sd.items()}
    out = {k: v for k, v in sd.items() if not k.startswith(_DROP_OFFICIAL)}
    _refuse_learned_positions(out)
    for key in [k for k in out if k.endswith(".attn.q_bias")]:
        base = key[: -len("q_bias")]
        out[f"{base}qkv.bias"] = _qkv_bias(out.pop(key), out.pop(f"{base}v_bias"))
    return out


_HF_LAYER = {
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}


def convert_transformers(sd: dict[str, Any], model: Any) -> dict[str, Any]:
    """transformers' VideoMAE names -> VideoViT keys (query/key/value fused, q/v biases merged)."""
    if any(k.startswith("videomae.") for k in sd):
        sd = {k[len("videomae."):]: v for k, v in sd.items() if k.startswith("videomae.")} | {
            k: v for k, v in sd.items() if k.startswith("fc_norm.")}
    src = {k: v for k, v in sd.items() if not k.startswith(_DROP_HF)}
    out: dict[str, Any] = {}
    for part in ("weight", "bias"):
        out[f"patch_embed.proj.{part}"] = src.pop(f"embeddings.patch_embeddings.projection.{part}")
    out.update(_hf_layers(src, "encoder.layer.", "blocks."))
    for hf, own in (("layernorm", "norm"), ("fc_norm", "fc_norm")):
        for part in ("weight", "bias"):
            if f"{hf}.{part}" in src:
                out[f"{own}.{part}"] = src.pop(f"{hf}.{part}")
    out.update(src)  # leftovers surface as unexpected keys in the strict load
    return out


def _hf_layers(src: dict[str, Any], prefix: str, own_prefix: str) -> dict[str, Any]:
    """transformers ``VideoMAELayer`` keys under ``prefix`` (popped from `src`) -> timm Block keys."""
    import torch

    out: dict[str, Any] = {}
    depth = 1 + max((int(k[len(prefix):].split(".")[0]) for k in src if k.startswith(prefix)), default=-1)
    for i in range(depth):
        s, d = f"{prefix}{i}.", f"{own_prefix}{i}."
        att = f"{s}attention.attention."
        out[f"{d}attn.qkv.weight"] = torch.cat([src.pop(f"{att}{n}.weight") for n in ("query", "key", "value")])
        q_bias = src.pop(f"{att}q_bias", None)
        if q_bias is None:
            q_bias = src.pop(f"{att}query.bias")
        v_bias = src.pop(f"{att}v_bias", None)
        if v_bias is None:
            v_bias = src.pop(f"{att}value.bias")
        out[f"{d}attn.qkv.bias"] = _qkv_bias(q_bias, v_bias)
        for hf, own in _HF_LAYER.items():
            for part in ("weight", "bias"):
                out[f"{d}{own}.{part}"] = src.pop(f"{s}{hf}.{part}")
    return out


def pretraining_from_transformers(sd: dict[str, Any]) -> dict[str, Any]:
    """A ``VideoMAEForPreTraining`` state dict -> the state dict of mimzoo's VideoMAE objective
    (:mod:`mimzoo.pretrain.models.videomae`: ``encoder.*``, ``encoder_to_decoder``, ``mask_token``,
    ``decoder.blocks.N``, ``decoder.norm``, ``decoder.head``); leftovers stay, for the strict load to name."""
    out = {f"encoder.{k}": v for k, v in convert_transformers(sd, None).items()
           if not k.startswith(("decoder.", "encoder_to_decoder.", "mask_token"))}
    src = {k: v for k, v in sd.items() if k.startswith(("decoder.", "encoder_to_decoder.", "mask_token"))}
    out.update(_hf_layers(src, "decoder.decoder_layers.", "decoder.blocks."))
    out.update(src)  # encoder_to_decoder, mask_token, decoder.norm, decoder.head keep their names
    return out


def pretraining_from_official(sd: dict[str, Any]) -> dict[str, Any]:
    """An official pretraining checkpoint (``encoder.*``, ``decoder.*``, q/v biases) -> the objective's keys."""
    _refuse_learned_positions({k.removeprefix("encoder."): v for k, v in sd.items()})
    out = dict(sd)
    for key in [k for k in out if k.endswith(".attn.q_bias")]:
        base = key[: -len("q_bias")]
        out[f"{base}qkv.bias"] = _qkv_bias(out.pop(key), out.pop(f"{base}v_bias"))
    return out


LAYOUTS = (
    CheckpointLayout(
        "official",
        "MCG-NJU/VideoMAE or OpenGVLab/VideoMAEv2 .pth (pretraining: encoder.*; fine-tuned: fc_norm + head)",
        detect_official,
        convert_official,
    ),
    CheckpointLayout(
        "transformers",
        "HF transformers VideoMAEModel / VideoMAEForPreTraining / VideoMAEForVideoClassification (MCG-NJU/videomae-*)",
        detect_transformers,
        convert_transformers,
    ),
)
