"""Losses between predictions and targets, on the masked positions.

Each loss maps ``pred [N, M, D]`` and ``target [N, M, D]`` (class ids ``[N, M]`` for
cross-entropy) to one value per position ``[N, M]`` (the mean over D); :func:`masked_loss`
then averages over the positions a mask selects. Everything is computed in float32.

The average can use an explicit denominator: the trainer passes the masked count of the whole
global batch, so gradient accumulation and several processes give the same loss (and the same
gradient) as one process on the full batch, even when mask counts vary per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .recipe import LOSS_KINDS, Loss, RecipeError


def per_position(pred: torch.Tensor, target: torch.Tensor, spec: Loss) -> torch.Tensor:
    """Loss at every position ``[N, M]``.

    - ``mse``: mean squared error over the D values (MAE, MaskFeat, FCMAE);
    - ``l1``: mean absolute error (SimMIM);
    - ``smooth-l1``: Huber with transition ``spec.beta`` (data2vec: 2, I-JEPA: 1);
    - ``negative-cosine``: minus the cosine similarity, in ``[-1, 1]`` (EVA);
    - ``cross-entropy``: over ``pred``'s last dim (logits) against class ids (BEiT).

    >>> per_position(torch.zeros(1, 2, 3), torch.ones(1, 2, 3), Loss("mse"))
    tensor([[1., 1.]])
    """
    pred = pred.float()
    if spec.kind == "cross-entropy":
        n, m, v = pred.shape
        return F.cross_entropy(pred.reshape(n * m, v), target.reshape(n * m).long(), reduction="none").view(n, m)
    target = target.float()
    if spec.kind == "mse":
        return (pred - target).pow(2).mean(dim=-1)
    if spec.kind == "l1":
        return (pred - target).abs().mean(dim=-1)
    if spec.kind == "smooth-l1":
        return F.smooth_l1_loss(pred, target, reduction="none", beta=spec.beta).mean(dim=-1)
    if spec.kind == "negative-cosine":
        return -F.cosine_similarity(pred, target, dim=-1)
    raise RecipeError(f"loss '{spec.kind}' is not one of {', '.join(LOSS_KINDS)}")


def masked_loss(values: torch.Tensor, mask: torch.Tensor | None = None, denom: float | None = None) -> torch.Tensor:
    """Sum of ``values [N, M]`` where ``mask`` (bool, same shape) is set, divided by ``denom``.

    Args:
        values: per-position losses.
        mask: positions that count; None counts all.
        denom: divisor; None uses the number of counted positions (a plain masked mean).

    >>> masked_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([[True, False]]))
    tensor(1.)
    """
    total = values.sum() if mask is None else (values * mask.to(values.dtype)).sum()
    if denom is None:
        denom = float(values.numel() if mask is None else mask.sum())
    return total / max(float(denom), 1.0)
