"""The encoder every mimzoo API hands out and consumes.

One contract for heads, export and the Hub:

- ``encoder(x)`` -> ``[N, D]`` pooled embedding (no masking: masking is a pretraining concern);
- ``encoder.forward_features(x)`` -> ``[N, L, D]`` tokens, prefix tokens first for ViTs; the
  final feature map of convnets and of Swin-like models is flattened row-major into tokens too,
  so probes and exporters see one shape;
- ``encoder.num_features`` -> ``D``, the pooled width; ``encoder.token_dim`` the width of a token,
  the same ``D`` except for "token-avg" pooling ([CLS] + mean of the patch tokens, DINOv2's linear
  probe), whose embedding is ``2 * token_dim`` wide;
- ``encoder.preprocess`` (a :class:`~mimzoo.registry.contract.Preprocess`) and
  ``encoder.transform`` (a ready transform for PIL images).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..registry.contract import Preprocess
from ..weights.convert import LoadReport
from .transforms import make_transform


@dataclass(frozen=True)
class EncoderInfo:
    """Where an encoder comes from; saved into `config.json` and used for provenance."""

    name: str  # zoo name ("mae-vit-b"), or the folder / Hub repo it was loaded from
    arch: str  # timm architecture
    model_args: dict[str, Any]  # timm constructor kwargs that rebuild it (beyond num_classes/global_pool)
    pooling: str  # timm global_pool
    method: str | None = None  # method plugin name, when known
    variant: str | None = None  # zoo variant name, when known
    license: str | None = None  # license of the weights, when known
    weights: LoadReport | None = None  # what was loaded into it
    extra: dict[str, Any] = field(default_factory=dict)  # plugin metadata carried to config.json


class Encoder(nn.Module):
    """A MIM backbone: a headless timm model plus its preprocessing and provenance."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, info: EncoderInfo):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.info = info
        self._transform: Any = None
        # timm marks channels-last feature maps (Swin) with output_fmt="NHWC"; convnets are NCHW
        self._channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"

    @property
    def num_features(self) -> int:
        """Width of the pooled embedding ``encoder(x)``: the token width, or twice it for "token-avg"."""
        return self.token_dim * (2 if getattr(self.model, "token_avg", False) else 1)

    @property
    def token_dim(self) -> int:
        """Width of each token of :meth:`forward_features` (equal to :attr:`num_features` unless the pooling
        concatenates two of them, as "token-avg" does)."""
        return int(self.model.num_features)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def transform(self) -> Any:
        """Transform turning a PIL image into the normalised ``[C, H, W]`` tensor this encoder expects; for a
        video encoder (``preprocess.num_frames`` set), a list of PIL frames or a ``[T, H, W, C]`` uint8 array
        into the ``[C, T, H, W]`` clip (see :class:`~mimzoo.encoders.video.ClipTransform`)."""
        if self._transform is None:
            if self.preprocess.is_video:
                from .video import ClipTransform

                self._transform = ClipTransform(self.preprocess)
            else:
                self._transform = make_transform(self.preprocess)
        return self._transform

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[N, L, D]`` after the final norm (prefix tokens first; feature maps flattened)."""
        return self._as_tokens(self.model.forward_features(x))

    def _as_tokens(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != 4:
            return f
        if self._channels_last:
            return f.flatten(1, 2)  # [N, H, W, C] -> [N, H*W, C]
        return f.flatten(2).transpose(1, 2)  # [N, C, H, W] -> [N, H*W, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``[N, D]``."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    @torch.inference_mode()
    def embed_images(self, images: list[Any], batch_size: int = 32) -> torch.Tensor:
        """Pooled embeddings of PIL images (of clips, for a video encoder), preprocessed with :attr:`transform`."""
        p = next(self.parameters())
        out = []
        for i in range(0, len(images), batch_size):
            batch = torch.stack([self.transform(im) for im in images[i : i + batch_size]])
            out.append(self(batch.to(device=p.device, dtype=p.dtype)))
        return torch.cat(out) if out else torch.empty(0, self.num_features)

    def save_pretrained(self, path: str, **kwargs: Any) -> Any:
        """Write this encoder as a Hub-layout folder (see :func:`mimzoo.save_pretrained`)."""
        from ..hub.folder import save_folder

        return save_folder(self, path, **kwargs)

    def extra_repr(self) -> str:
        return f"name={self.info.name!r}, arch={self.info.arch!r}, num_features={self.num_features}"
