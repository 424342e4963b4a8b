"""iBOT: masked image modeling with an online tokenizer (``decoder.kind=projection-head``).

One step, as bytedance/ibot ``main_ibot.py`` trains (see :mod:`mimzoo.pretrain.distill` for the loss):

- the teacher (an EMA copy of the encoder and of the projection head) encodes the G global views
  whole: [CLS] logits ``[G, B, K]`` and patch logits ``[G, B, L, K]``;
- the student encodes the same views with their masked patches replaced by a learned mask token
  (iBOT's ``masked_embed``), and the local views (if any, at their smaller size, unmasked) for
  their [CLS] only; the shared head turns every token into K logits;
- loss = ``cls_weight`` x cross-view [CLS] distillation + ``patch_weight`` x masked-patch
  distillation, summed over the images of the micro-batch and divided by the global batch;
- after the optimiser step: the centres move towards the global batch's mean teacher logits (sums
  gathered over micro-batches and processes, so any split equals one batch), and the teacher
  moves towards the student with a cosine momentum schedule.

The centres and the step counter are buffers: they travel in checkpoints, so ``--resume`` continues
exactly. The model folder holds the teacher (``export_encoder=teacher``), the encoder iBOT evaluates.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..distill import (ViewMasking, ViewMasks, centre_sums, cosine_momentum, ema_centre, ibot_loss_terms,
                       teacher_temperature)
from ..masking import Blockwise
from ..recipe import Recipe, RecipeError
from ..targets import TargetBase
from .dino_head import ProjectionHead
from .objectives import Objective
from .vit import forward_mask_tokens, num_prefix_tokens


class OnlineTokenizer(TargetBase):
    """The teacher: EMA copies of the encoder (``teacher``) and of the projection head (``head``)."""

    def __init__(self, encoder: nn.Module, head: ProjectionHead):
        super().__init__()
        self.teacher = copy.deepcopy(encoder).requires_grad_(False).eval()
        self.head = copy.deepcopy(head).requires_grad_(False)
        self.dim = head.out_dim
        self.prefix = num_prefix_tokens(encoder)

    def train(self, mode: bool = True) -> OnlineTokenizer:  # never trains: no dropout, no drop path
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, C, H, W]`` -> [CLS] logits ``[N, K]`` and patch logits ``[N, L, K]``."""
        logits = self.head(self.teacher.forward_features(images))  # [N, P+L, K]
        return logits[:, 0], logits[:, self.prefix:]

    @torch.no_grad()
    def update_from(self, student: nn.Module, head: nn.Module, momentum: float) -> None:
        pairs = [*zip(self.teacher.parameters(), student.parameters()), *zip(self.head.parameters(), head.parameters())]
        for t, s in pairs:
            t.mul_(momentum).add_(s.detach().to(t.dtype), alpha=1.0 - momentum)
        for t, s in zip(self.teacher.buffers(), student.buffers()):
            t.copy_(s)


class IBOT(Objective):
    """Student encoder + mask token + projection head, distilled from an :class:`OnlineTokenizer` teacher."""

    def __init__(self, encoder: nn.Module, recipe: Recipe, grid: tuple[int, int], patch: int):
        d, m = recipe.distill, recipe.masking
        dim = int(encoder.num_features)
        head = ProjectionHead(dim, d.out_dim, d.hidden_dim, d.bottleneck_dim, d.head_layers, d.norm_last_layer)
        views = recipe.augment.global_crops
        blocks = Blockwise(grid, m.ratio, m.min_block, m.max_block, m.aspect, m.ratio_var, m.unmasked_share)
        super().__init__(encoder, OnlineTokenizer(encoder, head), recipe.loss, grid, patch, ViewMasking(blocks, views))
        self.head = head
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))  # iBOT's masked_embed (zero-initialised)
        self.spec, self.ema = d, recipe.target.ema
        self.views, self.prefix = views, num_prefix_tokens(encoder)
        self.register_buffer("center", torch.zeros(1, d.out_dim))
        self.register_buffer("center2", torch.zeros(1, 1, d.out_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # optimiser steps done
        self.steps_per_epoch, self.total = 1, 1
        self._sums: list[Any] | None = None  # centre sums of this step (plain tensors: DDP must not broadcast them)

    # -- schedules ------------------------------------------------------------------------------

    def set_schedule(self, steps_per_epoch: int, total_steps: int) -> None:
        self.steps_per_epoch, self.total = max(1, steps_per_epoch), max(1, total_steps)

    @property
    def epoch(self) -> int:
        return int(self.step) // self.steps_per_epoch

    def temperatures(self) -> tuple[float, float]:
        """Teacher [CLS] and patch temperatures at the current epoch."""
        d, e = self.spec, self.epoch
        return (teacher_temperature(e, *d.teacher_temp, d.temp_warmup_epochs),
                teacher_temperature(e, *d.patch_temp, d.temp_warmup_epochs))

    # -- one step -------------------------------------------------------------------------------

    def forward(self, images: Any, masks: ViewMasks, denom: float | None = None) -> torch.Tensor:
        glob, local = (images, None) if isinstance(images, torch.Tensor) else images
        b, g = glob.shape[:2]
        x = glob.transpose(0, 1).reshape(g * b, *glob.shape[2:])  # [G*B, C, H, W], view-major
        mask = masks.mask.transpose(0, 1).reshape(g * b, -1)  # [G*B, L]
        t_cls, t_patch = self.target(x)  # [G*B, K], [G*B, L, K]
        s = self.head(forward_mask_tokens(self.encoder, x, mask, self.mask_token))  # [G*B, P+L, K]
        s_cls = s[:, 0].view(g, b, -1)
        if local is not None:
            s_cls = torch.cat([s_cls, self._local_cls(local)])  # [G+V, B, K]
        k = s.shape[-1]
        t_cls, t_patch = t_cls.view(g, b, k), t_patch.view(g, b, -1, k)
        temp, temp2 = self.temperatures()
        cls, patch = ibot_loss_terms(s_cls, s[:, self.prefix:].view(g, b, -1, k), t_cls, t_patch,
                                     mask.view(g, b, -1), self.center, self.center2,
                                     student_temp=self.spec.student_temp, teacher_temp=temp, patch_temp=temp2)
        self._add_centre_sums(*centre_sums(t_cls, t_patch))
        loss = (self.spec.cls_weight * cls + self.spec.patch_weight * patch).sum()
        return loss / max(float(denom if denom is not None else b), 1.0)

    def _local_cls(self, local: torch.Tensor) -> torch.Tensor:
        """Student [CLS] logits ``[V, B, K]`` of the local views ``[B, V, C, h, w]`` (no mask, their own size)."""
        b, v = local.shape[:2]
        x = local.transpose(0, 1).reshape(v * b, *local.shape[2:])
        return self.head(forward_resized(self.encoder, x)[:, 0]).view(v, b, -1)

    @torch.no_grad()
    def _add_centre_sums(self, cls: torch.Tensor, patch: torch.Tensor, count: int) -> None:
        if self._sums is None:
            self._sums = [cls, patch, count]
        else:
            self._sums = [self._sums[0] + cls, self._sums[1] + patch, self._sums[2] + count]

    def before_optimizer_step(self) -> None:
        """iBOT's ``cancel_gradients_last_layer``: the prototypes stay fixed during the first epoch(s)."""
        if self.epoch < self.spec.freeze_last_layer_epochs:
            for p in self.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        if self._sums is not None:
            cls, patch, count = self._sums
            count_t = torch.tensor(float(count), device=cls.device)
            if dist.is_available() and dist.is_initialized():
                for t in (cls, patch, count_t):
                    dist.all_reduce(t)
            m = self.spec.center_momentum
            self.center.copy_(ema_centre(self.center, cls, float(count_t), m))
            self.center2.copy_(ema_centre(self.center2, patch, float(count_t), m))
            self._sums = None
        momentum = cosine_momentum(int(self.step), self.total, *self.ema)
        self.target.update_from(self.encoder, self.head, momentum)
        self.step += 1


def forward_resized(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A timm ViT's tokens ``[N, 1+L, D]`` for images of another size than it was built for (local views):
    the position table is resampled (bicubic) to the images' patch grid, as iBOT's interpolate_pos_encoding."""
    from timm.layers import resample_abs_pos_embed

    if getattr(model, "cls_token", None) is None or getattr(model, "reg_token", None) is not None \
            or getattr(model, "no_embed_class", False):
        raise RecipeError("local views need a plain class-token ViT; set augment.local_crops=0")
    x = model.patch_embed.proj(images)  # [N, D, h, w]
    grid = tuple(x.shape[-2:])
    x = model.patch_embed.norm(x.flatten(2).transpose(1, 2))  # [N, L, D]
    pos = model.pos_embed
    if grid != tuple(model.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, new_size=list(grid), num_prefix_tokens=1)
    x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
    x = model.blocks(model.norm_pre(model.pos_drop(x)))
    return model.norm(x)


def build_ibot(recipe: Recipe, encoder: Any) -> IBOT:
    """The iBOT objective around a mimzoo encoder (a timm ViT with a class token)."""
    from .vit import patch_grid, patch_size

    model = encoder.model
    if getattr(model, "cls_token", None) is None:
        raise RecipeError(f"iBOT distils the [CLS] token and {type(model).__name__} has none; use a class-token ViT")
    return IBOT(model, recipe, patch_grid(model), patch_size(model))
