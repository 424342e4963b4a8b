"""Segmentation metrics from one confusion matrix over the whole evaluation split.

- IoU of class c = TP / (TP + FP + FN), pixels summed over *all* evaluation images (not averaged
  per image), ignore-labelled pixels (255) left out;
- mIoU = the mean IoU over the classes that appear in the ground truth or in the prediction
  (a class absent from both has no IoU and is not counted: mmsegmentation's nan-mean, which
  DINOv2's numbers use);
- pixel accuracy = correct / labelled pixels; mAcc = mean per-class recall over ground-truth classes.

All in percent.
"""

from __future__ import annotations

import torch

from ...data.segmentation.base import IGNORE


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[K, K]`` int64 counts, rows = ground truth, columns = prediction; IGNORE pixels skipped."""
    keep = target != IGNORE
    t, p = target[keep].long(), pred[keep].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def seg_metrics(conf: torch.Tensor, classes: tuple[str, ...]) -> tuple[dict[str, float], dict[str, float | None]]:
    """(``{"miou", "pixel_acc", "macc"}``, per-class IoU by class name: None where the class appears nowhere).

    >>> seg_metrics(torch.tensor([[3, 1], [0, 4]]), ("bg", "fg"))[0]["miou"]
    77.5
    """
    conf = conf.double()
    tp, gt, pr = conf.diag(), conf.sum(1), conf.sum(0)
    union = gt + pr - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    recall = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = float(conf.sum())
    metrics = {
        "miou": 100.0 * float(iou[present].mean()) if present.any() else 0.0,
        "pixel_acc": 100.0 * float(tp.sum()) / total if total else 0.0,
        "macc": 100.0 * float(recall[gt > 0].mean()) if (gt > 0).any() else 0.0,
    }
    per_class = {name: (round(100.0 * float(v), 2) if present[c] else None)
                 for c, (name, v) in enumerate(zip(classes, iou))}
    return metrics, per_class
