"""`TaskModel`: a backbone and its trained head as one module, the thing a task export holds.

Outputs (a tuple, in the order of ``output_names``, so ONNX / OpenVINO / TensorRT name them):

- classification: ``logits`` ``[N, K]`` (plus ``probs`` ``[N, K]``, the softmax, with ``probs=True``);
- segmentation: ``logits`` ``[N, K, H, W]`` at the input resolution and ``mask`` ``[N, H, W]``, the
  per-pixel argmax (int64 by default; ``mask_dtype=torch.int32`` for TensorRT, whose ArgMax/TopK
  outputs are int32).

``predict(x)`` returns the same outputs as a dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .spec import HeadSpec


class TaskModel(nn.Module):
    """``encoder`` -> what the head consumes -> ``head`` -> logits (and mask / probs)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, spec: HeadSpec, *, probs: bool = False,
                 mask_dtype: torch.dtype = torch.int64):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.spec = spec
        self.probs = probs and spec.task == "classification"
        self.mask_dtype = mask_dtype
        self.prefix = int(getattr(encoder.model, "num_prefix_tokens", 0)) if spec.consumes == "patch-grid" else 0
        self._transform: Any = None

    @property
    def output_names(self) -> tuple[str, ...]:
        if self.spec.task == "segmentation":
            return ("logits", "mask")
        return ("logits", "probs") if self.probs else ("logits",)

    @property
    def preprocess(self) -> Any:
        """The backbone's preprocessing; segmentation resizes the whole image to the input size (no crop,
        as the seg probe trains), so the mask covers the whole image."""
        pp = self.encoder.preprocess
        if self.spec.task == "segmentation":
            from dataclasses import replace

            return replace(pp, crop_mode="squash", crop_pct=1.0)
        return pp

    @property
    def info(self) -> Any:
        return self.encoder.info

    @property
    def transform(self) -> Any:
        """The image transform of :attr:`preprocess` (PIL -> normalised ``[C, H, W]``)."""
        if self.spec.task != "segmentation":
            return self.encoder.transform
        if self._transform is None:
            from ..encoders.transforms import make_transform

            self._transform = make_transform(self.preprocess)
        return self._transform

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head consumes: the pooled embedding ``[N, D]`` or the patch grid ``[N, D, h, w]``."""
        if self.spec.consumes == "pooled":
            return self.encoder(x)
        tokens = self.encoder.forward_features(x)[:, self.prefix:]  # [N, h*w, D], row-major
        h, w = patch_grid(self.encoder, x.shape[-2], x.shape[-1], tokens.shape[1])
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)  # [N, D, h, w]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.head(self.features(x))  # [N, K] or [N, K, h', w']
        if self.spec.task == "segmentation":
            if tuple(logits.shape[-2:]) != tuple(x.shape[-2:]):
                logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return logits, logits.argmax(1).to(self.mask_dtype)  # [N, K, H, W], [N, H, W]
        if self.probs:
            return logits, logits.softmax(-1)
        return (logits,)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.output_names, self(x)))


def patch_grid(encoder: nn.Module, height: int, width: int, tokens: int) -> tuple[int, int]:
    """(h, w) of the patch-token grid for an input of `height` x `width` holding `tokens` patch tokens."""
    size = getattr(getattr(encoder.model, "patch_embed", None), "patch_size", None)
    if size is not None:
        ph, pw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if (height // ph) * (width // pw) == tokens:
            return height // ph, width // pw
    h = max(1, round(math.sqrt(tokens * height / width)))  # feature maps: keep the input's aspect ratio
    if tokens % h:
        raise ValueError(f"cannot lay {tokens} tokens out as a grid for a {height}x{width} input")
    return h, tokens // h
