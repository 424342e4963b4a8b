"""Segmentation probe heads: BatchNorm + 1x1 convolution over frozen patch-token grids (DINOv2's BNHead).

:class:`LinearSegHead` ``(in_channels, num_classes)``:

- ``forward(maps)``: ``maps`` is one patch grid ``[N, D, h, w]`` or a list of grids
  ``[N, C_i, h_i, w_i]`` (finest first); every grid is resized bilinearly to the first one's size,
  the grids are concatenated on channels, batch-normalised and mapped by a 1x1 convolution to
  logits ``[N, num_classes, h, w]`` at the grid's resolution;
- :func:`upsample` then takes the logits to the mask / input resolution (bilinear,
  ``align_corners=False``): the probe trains and is measured there, and
  :class:`mimzoo.tasks.TaskModel` does the same when it wraps a saved head.

The ``linear`` head reads one grid: the patch tokens of ``forward_features`` (prefix tokens
dropped; feature maps of convnets / Swin as they are) laid out on the patch grid. The
``multiscale`` head reads the last ``min(4, stages)`` outputs of timm's ``forward_intermediates``
(all stages of a hierarchical encoder such as Swin, Hiera or ConvNeXt; the last four blocks of a
ViT, as DINOv2's "+ms" head), each normalised where timm can (``norm=True``).

Export-friendly: shapes follow the input (no data-dependent Python branches), and the only
resampling is bilinear ``interpolate`` to a size read off a tensor, which ONNX ``Resize`` expresses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import MimzooError

HEADS = ("linear", "multiscale")
MAX_SCALES = 4  # the multiscale head reads at most this many stages / blocks


class LinearSegHead(nn.Module):
    """BN + 1x1 conv over one or several patch grids -> per-patch class logits."""

    def __init__(self, in_channels: int | list[int] | tuple[int, ...], num_classes: int):
        super().__init__()
        self.in_channels = [int(in_channels)] if isinstance(in_channels, int) else [int(c) for c in in_channels]
        self.num_classes = int(num_classes)
        self.bn = nn.BatchNorm2d(sum(self.in_channels))
        self.conv = nn.Conv2d(sum(self.in_channels), self.num_classes, kernel_size=1)

    def forward(self, maps: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(maps, torch.Tensor):
            maps = [maps]
        size = maps[0].shape[-2:]
        x = torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                   for m in maps[1:]], dim=1)  # [N, sum C_i, h, w]
        return self.conv(self.bn(x))  # [N, K, h, w]


def upsample(logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Logits ``[N, K, h, w]`` -> ``[N, K, H, W]`` (bilinear, as DINOv2 and TaskModel)."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def grid_maps(encoder: Any, x: torch.Tensor, head: str) -> list[torch.Tensor]:
    """What a head of kind `head` reads for images `x`: a list of ``[N, C, h, w]`` grids (finest first)."""
    if head == "linear":
        from ...tasks.model import patch_grid

        tokens = encoder.forward_features(x)  # [N, L, D], prefix tokens first; maps already flattened row-major
        tokens = tokens[:, int(getattr(encoder.model, "num_prefix_tokens", 0)):]
        h, w = patch_grid(encoder, x.shape[-2], x.shape[-1], tokens.shape[1])
        return [tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)]
    model = encoder.model
    if not hasattr(model, "forward_intermediates"):
        raise MimzooError(f"{encoder.info.arch} has no forward_intermediates in this timm; use --set seg_head=linear")
    n = min(MAX_SCALES, len(getattr(model, "feature_info", []) or [None]))
    try:
        maps = model.forward_intermediates(x, indices=n, norm=True, intermediates_only=True, output_fmt="NCHW")
    except AssertionError:  # timm's Hiera: "normalization of features not supported"
        maps = model.forward_intermediates(x, indices=n, norm=False, intermediates_only=True, output_fmt="NCHW")
    return sorted(maps, key=lambda m: -m.shape[-1] * m.shape[-2])  # finest first (stable for equal sizes)


class SegmentationModel(nn.Module):
    """A frozen encoder and a trained head as one module: images ``[N, 3, H, W]`` -> logits ``[N, K, H, W]``.

    Works for both heads (the multiscale one needs the intermediate stages, which
    :class:`mimzoo.tasks.TaskModel` does not read).
    """

    def __init__(self, encoder: nn.Module, head: LinearSegHead, kind: str = "linear"):
        super().__init__()
        self.encoder, self.head, self.kind = encoder, head, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample(self.head(grid_maps(self.encoder, x, self.kind)), x.shape[-2:])


def build_task_head(spec: Any) -> LinearSegHead:
    """An untrained seg-linear head for a :class:`mimzoo.tasks.HeadSpec` (what ``load_head`` fills).

    Reads ``spec.num_features`` (D of the patch grid) and ``spec.num_classes``; a saved head's
    ``head_args`` say ``{"seg_head": "linear"}`` (the multiscale head is not saved).
    """
    from ...tasks.spec import HeadFolderError

    kind = dict(getattr(spec, "head_args", {}) or {}).get("seg_head", "linear")
    if kind != "linear":
        raise HeadFolderError(f"head.json: seg-linear folders hold the linear head, not '{kind}'; save it again")
    return LinearSegHead(int(spec.num_features), int(spec.num_classes))
