"""The PIL-image transform an encoder's preprocessing config describes."""

from __future__ import annotations

import math
from typing import Any

from .._deps import require
from ..registry.contract import Preprocess


class ToMode:
    """Convert a PIL image to RGB (or L for 1-channel encoders); a class so workers can pickle it."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, img: Any) -> Any:
        return img if img.mode == self.mode else img.convert(self.mode)

    def __repr__(self) -> str:
        return f"ToMode({self.mode!r})"


def make_transform(pp: Preprocess) -> Any:
    """Resize, center-crop, scale to [0, 1] and normalise a PIL image into a [C, H, W] tensor.

    Follows the usual evaluation protocol: resize the shorter side to `size / crop_pct`, then
    center-crop `size` (crop_mode "center"), or resize both sides and crop (crop_mode "squash").

    >>> t = make_transform(Preprocess())  # doctest: +SKIP
    >>> t(PIL.Image.open("cat.jpg")).shape  # doctest: +SKIP
    torch.Size([3, 224, 224])
    """
    T = require("torchvision.transforms")
    interp = {
        "bicubic": T.InterpolationMode.BICUBIC,
        "bilinear": T.InterpolationMode.BILINEAR,
        "nearest": T.InterpolationMode.NEAREST,
    }[pp.interpolation]
    c, h, w = pp.input_size
    scaled = (math.floor(h / pp.crop_pct), math.floor(w / pp.crop_pct))
    resize_to: int | tuple[int, int] = scaled if (pp.crop_mode == "squash" or h != w) else scaled[0]
    return T.Compose(
        [
            ToMode("L" if c == 1 else "RGB"),
            T.Resize(resize_to, interpolation=interp),
            T.CenterCrop((h, w)),
            T.ToTensor(),
            T.Normalize(mean=pp.mean, std=pp.std),
        ]
    )
