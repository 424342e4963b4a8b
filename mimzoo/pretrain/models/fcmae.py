"""ConvNeXt V2's FCMAE with dense masked convolution.

The official encoder is sparse (MinkowskiEngine): masked units simply do not exist. Here the
timm ConvNeXt runs densely and the masked units are zeroed wherever a sparse encoder would not
have computed anything: after the stem and each downsample, after every depthwise convolution,
before every Global Response Norm (so its spatial norm sees only visible units), and at every
block output. Convolutions then read zeros at masked positions, which is what a sparse
convolution reads there. Mask units are one encoder output cell (32 px for ConvNeXt), so the
stride-2/4 stems and downsamples never mix masked and visible inputs.

The decoder is the official one: 1x1 projection, mask tokens at masked cells, ConvNeXt V2
block(s), 1x1 prediction of each cell's ``32 x 32 x 3`` pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..recipe import RecipeError


def _masker(keep: torch.Tensor, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multiply a feature map by ``keep [N, 1, h, w]`` resampled to its size."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        size = x.shape[1:3] if channels_last else x.shape[2:4]
        k = F.interpolate(keep, size=tuple(size), mode="nearest").to(x.dtype)
        return x * (k.permute(0, 2, 3, 1) if channels_last else k)

    return apply


@contextlib.contextmanager
def dense_masking(model: nn.Module, keep: torch.Tensor) -> Iterator[None]:
    """While active, the timm ConvNeXt ``model`` behaves as a sparse encoder of the visible units."""
    if not hasattr(model, "stages") or not hasattr(model, "stem"):
        raise RecipeError(f"decoder.kind=fcmae needs a timm ConvNeXt encoder, not {type(model).__name__}")
    nchw, nhwc = _masker(keep, False), _masker(keep, True)
    handles = [model.stem.register_forward_hook(lambda _m, _i, o: nchw(o))]
    for stage in model.stages:
        handles.append(stage.downsample.register_forward_hook(lambda _m, _i, o: nchw(o)))
        for block in stage.blocks:
            handles.append(block.conv_dw.register_forward_hook(lambda _m, _i, o: nchw(o)))
            grn = getattr(block.mlp, "grn", None)
            if grn is not None:
                mask_in = nchw if block.use_conv_mlp else nhwc
                handles.append(grn.register_forward_pre_hook(lambda _m, args, f=mask_in: (f(args[0]),)))
            handles.append(block.register_forward_hook(lambda _m, _i, o: nchw(o)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def forward_dense_masked(model: nn.Module, images: torch.Tensor, mask: torch.Tensor,
                         grid: tuple[int, int]) -> torch.Tensor:
    """Feature map ``[N, C, h, w]`` of the visible units (``mask [N, h*w]``, True = masked)."""
    keep = (~mask).view(mask.shape[0], 1, *grid).to(images.dtype)
    with dense_masking(model, keep):
        return model.forward_features(images)  # the patchify stem never mixes units: masking its output suffices


class FCMAEDecoder(nn.Module):
    """``decoder(features [N, C, h, w], mask [N, h*w]) -> [N, h*w, out_dim]``."""

    def __init__(self, enc_dim: int, out_dim: int, *, dim: int = 512, depth: int = 1):
        super().__init__()
        from timm.models.convnext import ConvNeXtBlock

        self.proj = nn.Conv2d(enc_dim, dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.decoder = nn.Sequential(*[ConvNeXtBlock(dim, use_grn=True, ls_init_value=None) for _ in range(depth)])
        self.pred = nn.Conv2d(dim, out_dim, kernel_size=1)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.proj(feats)  # [N, dim, h, w]
        n, _, h, w = x.shape
        m = mask.view(n, 1, h, w).to(x.dtype)
        x = x * (1.0 - m) + self.mask_token.to(x.dtype) * m
        x = self.pred(self.decoder(x))  # [N, out, h, w]
        return x.flatten(2).transpose(1, 2)  # [N, L, out]


def total_stride(model: nn.Module) -> int:
    info: Any = getattr(model, "feature_info", None)
    if not info:
        raise RecipeError(f"{type(model).__name__} has no feature_info; cannot tell its output stride")
    return int(info[-1]["reduction"])
