"""Self-distillation with an online tokenizer (iBOT): the loss, the centres and the schedules.

Written from bytedance/ibot ``main_ibot.py`` (``iBOTLoss``, the cosine momentum schedule) and
``loader.py`` (per-view masks). The teacher's logits are centred (minus an EMA of their batch
mean) and sharpened (a low temperature) before the softmax; the student's are divided by
``student_temp``. Two cross-entropies, averaged over images:

- [CLS]: for every teacher global view ``q`` and every student view ``v != q`` (global and local),
  ``CE(softmax_t(cls_q), log_softmax_s(cls_v))``, averaged over the ``G * V - G`` pairs;
- patches: for every global view, ``CE`` between the teacher's patch distribution (unmasked view)
  and the student's (masked view) at the masked positions, averaged over that view's masked
  patches (0 for a view without a mask), then over the ``G`` views.

The functions return one value per image, so the trainer can sum images over micro-batches and
processes and divide by the global batch: the same value as the official mean over one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .masking import Blockwise, MaskBatch, MaskGenerator


def ibot_loss_terms(student_cls: torch.Tensor, student_patch: torch.Tensor, teacher_cls: torch.Tensor,
                    teacher_patch: torch.Tensor, masks: torch.Tensor, center: torch.Tensor, center2: torch.Tensor,
                    *, student_temp: float, teacher_temp: float,
                    patch_temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The [CLS] and patch losses of each image, ``([B], [B])``.

    Args:
        student_cls: ``[V, B, K]`` logits of the student's [CLS] tokens, the G global views first.
        student_patch: ``[G, B, L, K]`` logits of the student's patch tokens (masked global views).
        teacher_cls: ``[G, B, K]`` teacher [CLS] logits (unmasked global views).
        teacher_patch: ``[G, B, L, K]`` teacher patch logits.
        masks: ``[G, B, L]`` bool, True where the student saw the mask token.
        center: ``[1, K]`` [CLS] centre; center2: ``[1, 1, K]`` patch centre.
        student_temp, teacher_temp, patch_temp: softmax temperatures (teacher ones at this epoch).
    """
    s_cls = F.log_softmax(_wide(student_cls) / student_temp, dim=-1)
    s_patch = F.log_softmax(_wide(student_patch) / student_temp, dim=-1)
    t_cls = F.softmax((_wide(teacher_cls) - center) / teacher_temp, dim=-1)
    t_patch = F.softmax((_wide(teacher_patch) - center2) / patch_temp, dim=-1)
    g, v = t_cls.shape[0], s_cls.shape[0]
    pairs = [(q, w) for q in range(g) for w in range(v) if w != q]
    cls = torch.stack([-(t_cls[q] * s_cls[w]).sum(dim=-1) for q, w in pairs]).sum(dim=0) / len(pairs)  # [B]
    m = masks.float()
    per_view = (-(t_patch * s_patch).sum(dim=-1) * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)  # [G, B]
    return cls, per_view.mean(dim=0)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision logits (autocast); float32 and float64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def centre_sums(teacher_cls: torch.Tensor, teacher_patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """What one (micro-)batch adds to the centres: the sums ``[1, K]`` and ``[1, 1, K]`` and the view count.

    ``teacher_cls [G, B, K]``, ``teacher_patch [G, B, L, K]``: the [CLS] logits, and each view's mean
    patch logit, summed over views and images.
    """
    k = teacher_cls.shape[-1]
    cls = _wide(teacher_cls).reshape(-1, k).sum(dim=0, keepdim=True)
    patch = _wide(teacher_patch).mean(dim=-2).reshape(-1, k).sum(dim=0).view(1, 1, k)
    return cls, patch, teacher_cls.shape[0] * teacher_cls.shape[1]


def ema_centre(center: torch.Tensor, total: torch.Tensor, count: int, momentum: float) -> torch.Tensor:
    """``center * m + mean * (1 - m)``, the mean being ``total / count`` over the whole global batch."""
    return center * momentum + total / count * (1 - momentum)


def teacher_temperature(epoch: int, warm: float, final: float, warmup_epochs: float) -> float:
    """iBOT's per-epoch schedule: ``linspace(warm, final, W)[epoch]`` for the first W epochs, then ``final``."""
    w = int(round(warmup_epochs))
    if epoch >= w:
        return final
    return warm if w == 1 else warm + (final - warm) * epoch / (w - 1)


def cosine_momentum(step: int, total: int, start: float, end: float) -> float:
    """The teacher's EMA momentum after step ``step`` of ``total`` (0-based): cosine from ``start`` to ``end``."""
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * step / max(total, 1)))


@dataclass(frozen=True)
class ViewMasks(MaskBatch):
    """Masks of the G global views of each image: ``mask [N, G, L]`` (True = mask token).

    ``count`` is the number of images: the loss is a mean over images, not over masked patches.
    """

    def slice(self, start: int, stop: int) -> ViewMasks:
        return ViewMasks(self.mask[start:stop], self.visible[start:stop])

    def to(self, device: torch.device | str) -> ViewMasks:
        return ViewMasks(self.mask.to(device), self.visible.to(device))

    @property
    def count(self) -> int:
        return int(self.mask.shape[0])


class ViewMasking(MaskGenerator):
    """Blockwise masks for ``views`` views of each image, drawn independently (iBOT's ``ImageFolderMask``)."""

    def __init__(self, blockwise: Blockwise, views: int):
        super().__init__(blockwise.grid)
        self.blockwise, self.views = blockwise, views

    def __call__(self, n: int, gen: torch.Generator) -> ViewMasks:
        mask = self.blockwise(n * self.views, gen).mask.view(n, self.views, self.length)
        return ViewMasks(mask, ~mask)
