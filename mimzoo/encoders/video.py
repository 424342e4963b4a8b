"""Video encoders: a ViT over space-time tubes (VideoMAE, VideoMAE V2) and the clip transform.

Facts the rest of mimzoo relies on:

- **Architecture name** :data:`VIDEO_ARCH` (``"video_vit"``): :func:`mimzoo.encoders.build.build_timm`
  builds :class:`VideoViT` for it, so zoo variants, model folders (``config.json``'s ``architecture``)
  and ``mimzoo pretrain --arch`` all go through the usual path. Its ``model_args``: ``img_size``,
  ``patch_size``, ``num_frames``, ``tubelet_size``, ``embed_dim``, ``depth``, ``num_heads``,
  ``mlp_ratio``, ``fc_norm`` (see :class:`VideoViT`).
- **Input** ``[N, C, T, H, W]`` (channels before time, like PyTorchVideo and the official VideoMAE;
  transformers' ``VideoMAEModel`` takes ``[N, T, C, H, W]``). ``forward_features`` returns tokens
  ``[N, L, D]`` with ``L = T/t * H/p * W/p`` in (time, row, column) order and no class token;
  ``forward`` returns their mean ``[N, D]`` (VideoMAE's fine-tuning pools the mean of the tokens).
- **Module names** (the state dict of a model folder): ``patch_embed.proj`` (Conv3d, kernel and stride
  ``(t, p, p)``), ``blocks.N`` (timm ``Block``: ``norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2``),
  ``norm`` and ``fc_norm`` (one of them is a LayerNorm, see below). The position table is a fixed
  1-D sin-cos table over the flat token index, a non-persistent buffer (``pos_embed``): it is in no file.
- **Preprocess**: ``Preprocess.num_frames`` is T, ``Preprocess.frame_stride`` the sampling stride of a
  clip; :class:`ClipTransform` (``encoder.transform``) turns a list of PIL frames or a ``[T, H, W, C]``
  uint8 array into the normalised ``[C, T, H, W]`` tensor.
- **Pretraining model**: :mod:`mimzoo.pretrain.models.videomae` (recipe ``videomae``: tube masking 90 %,
  per-tube normalised pixels, MSE on the masked tubes); ``build_objective(find_recipe("videomae"),
  encoder)`` builds it around a video encoder.

Why timm's ``Block`` rather than an own block: it is the block VideoMAE itself uses (its
``modeling_pretrain.py`` is timm's ViT block with q/v biases), and the rest of mimzoo (attention
switching, FSDP wrapping, the decoders) already knows it. The one difference is the attention bias:
VideoMAE learns ``q_bias`` and ``v_bias`` and no key bias; timm's ``qkv.bias`` holds
``[q_bias, 0, v_bias]``. A key bias adds ``q . b_k`` to every logit of a query's row, which softmax
ignores, so its gradient is exactly zero and it stays zero in training: the two are the same model.

Final norm and pooling: the official model (``use_mean_pooling``) has either a final ``norm`` on the
tokens (pretraining checkpoints: the encoder that fed the decoder) or, when fine-tuned, no final norm
and an ``fc_norm`` on the mean of the tokens. Pretrained (not fine-tuned) weights hold no ``fc_norm``,
so their variants pool the plain mean of the final-norm tokens (``fc_norm=False``); fine-tuned
checkpoints (VideoMAE V2's distilled ViT-S/B) build with ``fc_norm=True`` and pool ``fc_norm(mean)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

VIDEO_ARCH = "video_vit"  # the architecture name build_timm builds a VideoViT for


def sincos_table(length: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed position table ``[1, length, dim]``: 1-D sin-cos over the flat token index.

    Column ``j`` of row ``pos`` is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of ``pos / 10000^(2*(j//2)/dim)``,
    computed in float64 like the official numpy code, then cast to float32. A clip with fewer frames uses
    the first rows, which is exactly the table VideoMAE builds for that length.
    """
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().unsqueeze(0)


class TubeEmbed(nn.Module):
    """``[N, C, T, H, W]`` -> ``[N, T/t * H/p * W/p, D]``: one token per ``t x p x p`` tube (Conv3d)."""

    def __init__(self, img_size: int | tuple[int, int], patch_size: int, num_frames: int, tubelet_size: int,
                 in_chans: int, embed_dim: int):
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size, self.patch_size, self.tubelet_size = (int(h), int(w)), int(patch_size), int(tubelet_size)
        self.grid_size = (num_frames // tubelet_size, int(h) // patch_size, int(w) // patch_size)  # (T', h, w)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, D, T', h, w] -> [N, L, D]


class VideoViT(nn.Module):
    """VideoMAE's ViT on tubes: tube embedding + fixed sin-cos table + timm Blocks + norm; mean pooling.

    Args:
        img_size: frame side (or (H, W)) the position table is built for.
        patch_size: spatial patch side ``p``.
        num_frames: frames per clip ``T`` the position table is built for (shorter clips use its first rows).
        tubelet_size: frames per tube ``t``.
        embed_dim, depth, num_heads, mlp_ratio: the usual ViT sizes.
        fc_norm: False (pretrained checkpoints): final LayerNorm on the tokens, pooled = their mean;
            True (fine-tuned checkpoints): no final norm, pooled = LayerNorm of the mean.
        init_values: layer-scale init (VideoMAE V2's giant models), None for none.
        num_classes, global_pool: what timm's builders pass; only 0 and "avg" are meaningful here.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, num_frames: int = 16,
                 tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, fc_norm: bool = False, init_values: float | None = None,
                 norm_eps: float = 1e-6, drop_path_rate: float = 0.0, num_classes: int = 0, global_pool: str = "avg"):
        super().__init__()
        from timm.models.vision_transformer import Block

        if num_classes:
            raise ValueError("video_vit is headless: build it with num_classes=0")
        if global_pool not in ("avg", ""):
            raise ValueError(f"video_vit pools the mean of its tokens; global_pool '{global_pool}' is not supported, use 'avg'")
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet_size {tubelet_size}")
        self.num_features = self.embed_dim = embed_dim
        self.num_frames, self.num_prefix_tokens, self.global_pool = int(num_frames), 0, "avg"
        self.num_classes = 0  # headless (timm's save_for_hf reads it)
        self.patch_embed = TubeEmbed(img_size, patch_size, num_frames, tubelet_size, in_chans, embed_dim)
        self.register_buffer("pos_embed", sincos_table(self.patch_embed.num_patches, embed_dim), persistent=False)
        norm = partial(nn.LayerNorm, eps=norm_eps)  # VideoMAE's norm_layer
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, as timm's ViT
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, init_values=init_values,
                                            drop_path=rates[i], norm_layer=norm) for i in range(depth)])
        self.norm = nn.Identity() if fc_norm else norm(embed_dim)
        self.fc_norm = norm(embed_dim) if fc_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """VideoMAE's init: xavier-uniform linears with zero bias, unit norms (the tube conv keeps torch's)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tube tokens plus their positions ``[N, L, D]``."""
        x = self.patch_embed(x)  # [N, L, D]
        length = x.shape[1]
        if not torch.jit.is_tracing() and length > self.pos_embed.shape[1]:
            raise ValueError(f"a clip of {length} tubes is longer than the {self.pos_embed.shape[1]} this encoder "
                             f"was built for; pass at most {self.num_frames} frames")
        return x + self.pos_embed[:, :length].to(x.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[N, L, D]`` after the final norm (identity for fine-tuned, fc_norm checkpoints)."""
        return self.norm(self.blocks(self.embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The pooled embedding ``[N, D]``: mean of the tokens (then fc_norm when the model has one)."""
        return self.fc_norm(x.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int = 0, global_pool: str | None = None) -> None:
        if num_classes:
            raise ValueError("video_vit is headless; put a head on top of encoder(x) instead")


def build_video_vit(**kwargs: Any) -> VideoViT:
    """:class:`VideoViT` from timm-style constructor kwargs (what build_timm passes)."""
    kwargs.pop("pretrained", None)
    return VideoViT(**kwargs)


# -- frames -----------------------------------------------------------------------------------------


def clip_indices(total: int, num_frames: int, stride: int = 1) -> list[int]:
    """The frame indices of the centred clip: ``num_frames`` frames ``stride`` apart from ``total`` frames.

    The same center sampling as ``mimzoo.data``'s clip splits (start ``(total - span) // 2`` with
    ``span = (num_frames - 1) * stride + 1``). A source shorter than ``span`` repeats its last frame
    (VideoMAE's loaders clamp the same way), so every clip has exactly ``num_frames`` frames.

    >>> clip_indices(64, 16, 4)[:3], clip_indices(64, 16, 4)[-1]
    ([1, 5, 9], 61)
    >>> clip_indices(40, 8, 2)
    [12, 14, 16, 18, 20, 22, 24, 26]
    >>> clip_indices(3, 4, 2)
    [0, 2, 2, 2]
    """
    if total < 1:
        raise ValueError("a clip needs at least one frame; pass a video with frames")
    span = (num_frames - 1) * stride + 1
    start = max(0, (total - span) // 2)
    return [min(start + i * stride, total - 1) for i in range(num_frames)]


class ClipTransform:
    """A list of PIL frames, or a ``[T, H, W, C]`` uint8 array/tensor -> the normalised ``[C, T, H, W]`` clip.

    Each frame goes through the image transform of the same :class:`~mimzoo.registry.contract.Preprocess`
    (resize the shorter side to ``size / crop_pct``, center crop, scale to [0, 1], normalise). A source
    of exactly ``num_frames`` frames is used as it is; a longer one gives its centred clip of
    ``num_frames`` frames every ``frame_stride`` frames (:func:`clip_indices`); a shorter one repeats its
    last frame. A class, so DataLoader workers can pickle it.
    """

    def __init__(self, preprocess: Any):
        from .transforms import make_transform

        if preprocess.num_frames is None:
            raise ValueError("ClipTransform needs a video Preprocess (num_frames set)")
        self.preprocess = preprocess
        self.frame = make_transform(preprocess)

    def __call__(self, frames: Any) -> torch.Tensor:
        pils = _as_pil_frames(frames)
        pp = self.preprocess
        if len(pils) != pp.num_frames:
            pils = [pils[i] for i in clip_indices(len(pils), pp.num_frames, pp.frame_stride)]
        return torch.stack([self.frame(im) for im in pils], dim=1)  # [C, T, H, W]

    def __repr__(self) -> str:
        pp = self.preprocess
        return f"ClipTransform(num_frames={pp.num_frames}, frame_stride={pp.frame_stride}, frame={self.frame!r})"


def _as_pil_frames(frames: Any) -> list[Any]:
    from PIL import Image

    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if hasattr(frames, "ndim") and hasattr(frames, "dtype"):  # a numpy array
        import numpy as np

        if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] not in (1, 3):
            raise ValueError(f"a clip array must be uint8 [T, H, W, C] with C 1 or 3, got {frames.dtype} "
                             f"{tuple(frames.shape)}; pass frames as uint8 [T, H, W, C] or a list of PIL images")
        return [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    if isinstance(frames, Sequence) and frames and all(isinstance(f, Image.Image) for f in frames):
        return list(frames)
    raise ValueError(f"a clip is a list of PIL images or a uint8 [T, H, W, C] array, not {type(frames).__name__}; "
                     "pass one of those")


def num_tokens(preprocess: Any, patch_size: int, tubelet_size: int) -> int:
    """Tokens of one clip, ``T/t * H/p * W/p``."""
    _, h, w = preprocess.input_size
    return preprocess.num_frames // tubelet_size * math.prod((h // patch_size, w // patch_size))
