"""The linear segmentation probe: train BN + 1x1 conv on cached patch grids, measure mIoU.

Recipe (DINOv2's linear ADE20K head, an mmsegmentation config): AdamW, lr 1e-3, weight decay
1e-4, a linear warmup from lr x 1e-6, then poly decay (power 1) to 0; batch 16; cross-entropy on
logits upsampled bilinearly to the mask, 255 ignored. DINOv2 trains 40,000 iterations with 1,500
warmup at 512 px with random resize/crop/flip; mimzoo trains on cached frozen grids (no
augmentation) and defaults to 4,000 steps with 150 warmup (``--set seg_linear_steps=40000`` for the
full length).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...data.segmentation.base import IGNORE
from ...errors import MimzooError
from .heads import HEADS, LinearSegHead, upsample
from .metrics import confusion, seg_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegLinearConfig:
    """Settings of ``--task seg-linear`` (``--set seg_linear_<field>=...``, or the bare field name)."""

    seg_head: str = "linear"  # "linear": the last layer's patch grid; "multiscale": last min(4, stages) grids
    steps: int = 4000  # optimizer steps (DINOv2: 40,000)
    warmup_steps: int = 150  # linear warmup steps (DINOv2: 1,500)
    lr: float = 1e-3  # AdamW peak learning rate (not scaled by batch size), as DINOv2
    weight_decay: float = 1e-4  # AdamW weight decay, as DINOv2
    batch_size: int = 16  # images per step, as DINOv2 (8 GPUs x 2)
    eval_batch_size: int = 64  # images per forward when measuring
    seed: int = 0  # data order and head init
    show: int = 0  # with an output file: write image | ground truth | prediction for this many test images

    def check(self) -> None:
        from ..checks import at_least

        if self.seg_head not in HEADS:
            raise MimzooError(f"seg-linear: seg_head '{self.seg_head}' is not one of {', '.join(HEADS)}; "
                              "pass --set seg_head=linear or --set seg_head=multiscale")
        at_least("seg_linear", 1, steps=self.steps, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size)
        at_least("seg_linear", 0, warmup_steps=self.warmup_steps, show=self.show)
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise MimzooError("seg-linear: lr must be > 0 and weight_decay >= 0; pass --set seg_linear_lr=1e-3")


def lr_at(step: int, cfg: SegLinearConfig) -> float:
    """Poly (power 1) decay to 0 with mmcv's linear warmup from lr x 1e-6."""
    lr = cfg.lr * (1.0 - step / cfg.steps)
    if step < cfg.warmup_steps:
        lr *= 1.0 - (1.0 - step / cfg.warmup_steps) * (1.0 - 1e-6)
    return lr


@dataclass
class SegProbeResult:
    metrics: dict[str, float]  # miou, pixel_acc, macc (percent)
    per_class_iou: dict[str, float | None]  # by class name; None: the class appears in neither truth nor prediction
    head: LinearSegHead  # trained, in eval mode, on the CPU
    history: list[float]  # mean training loss per tenth of the steps
    predictions: torch.Tensor  # [show, H, W] uint8 predicted labels of the first `show` eval items


def seg_linear_probe(train: Any, test: Any, classes: tuple[str, ...], cfg: SegLinearConfig, *,
                     device: Any = "cpu", progress: Callable[[str, int, int], None] | None = None) -> SegProbeResult:
    """Train the head on `train`'s cached grids, measure it on `test`'s (both :class:`SegFeatures`)."""
    device = torch.device(device or "cpu")
    torch.manual_seed(cfg.seed)
    head = LinearSegHead([m.shape[1] for m in train.maps], len(classes)).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, bs = len(train), min(cfg.batch_size, len(train))
    order, pos, losses, history = torch.randperm(n, generator=gen), 0, [], []
    head.train()
    for step in range(cfg.steps):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + bs]
        pos += bs
        y = train.masks[idx].to(device).long()  # [B, H, W]
        if not (y != IGNORE).any():
            continue
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        logits = upsample(head([m[idx].to(device).float() for m in train.maps]), y.shape[-2:])
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % max(1, cfg.steps // 10) == 0 or step + 1 == cfg.steps:
            history.append(sum(losses) / len(losses))
            losses = []
            if progress:
                progress("train seg-linear", step + 1, cfg.steps)
    head.eval()
    conf, shown = _measure(head, test, len(classes), cfg, device)
    metrics, per_class = seg_metrics(conf, classes)
    return SegProbeResult(metrics, per_class, head.cpu(), history, shown)


@torch.no_grad()
def _measure(head: LinearSegHead, test: Any, k: int, cfg: SegLinearConfig, device: Any) -> tuple[torch.Tensor, Any]:
    conf = torch.zeros(k, k, dtype=torch.long)
    shown = []
    for s in range(0, len(test), cfg.eval_batch_size):
        y = test.masks[s:s + cfg.eval_batch_size]
        logits = upsample(head([m[s:s + cfg.eval_batch_size].to(device).float() for m in test.maps]), y.shape[-2:])
        pred = logits.argmax(1).cpu()
        conf += confusion(pred, y, k)
        if sum(len(p) for p in shown) < cfg.show:
            shown.append(pred.to(torch.uint8))
    preds = torch.cat(shown)[:cfg.show] if shown else torch.empty(0, dtype=torch.uint8)
    return conf, preds
