"""Pieces every trained head shares: the lr schedule, LARS, mixed precision, training on cached features."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import MimzooError
from .knn import accuracy

AMP_MODES = ("auto", "bf16", "fp16", "off")


def lr_at(step: int, total: int, warmup: int, peak: float, floor: float = 0.0) -> float:
    """Linear warmup from 0 to `peak` over `warmup` steps, then a half cosine down to `floor`.

    >>> [round(lr_at(s, 10, 2, 1.0), 3) for s in (0, 1, 2, 6, 9)]
    [0.0, 0.5, 1.0, 0.5, 0.03]
    """
    if step < warmup:
        return peak * step / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr to `lr` times its ``lr_scale`` (layer-wise decay), default 1."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


class Lars(torch.optim.Optimizer):
    """SGD with momentum whose update of each weight matrix is rescaled by its trust ratio.

    LARS (You, Gitman, Ginsburg 2017) as MAE's linear probe uses it: for parameters with more
    than one dimension the step direction ``g + wd * w`` is multiplied by
    ``trust * ||w|| / ||g + wd * w||``; biases and norm parameters take plain SGD steps.
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:  # noqa: D102 - torch API
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = p.norm(), d.norm()
                    ok = (w_norm > 0) & (d_norm > 0)
                    d = d * torch.where(ok, group["trust"] * w_norm / d_norm.clamp_min(1e-12), torch.ones_like(w_norm))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """"lars", "sgd" or "adamw" over `params` (tensors or param groups)."""
    if name == "lars":
        return Lars(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise MimzooError(f"unknown optimizer '{name}'; use lars, sgd or adamw")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device`: "auto" is bf16 where the hardware has it, fp16 on
    older GPUs, and off on CPUs without native bf16."""
    if amp not in AMP_MODES:
        raise MimzooError(f"amp '{amp}' is not one of {', '.join(AMP_MODES)}")
    if amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    cpu_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if device.type == "cpu" and cpu_bf16 else None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """torch.autocast for `dtype`, or nothing when dtype is None."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def fit_on_features(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, *, epochs: int,
    batch_size: int, peak_lr: float, warmup_epochs: float, min_lr: float = 0.0, seed: int = 0,
    device: torch.device = torch.device("cpu"), progress: Callable[[str, int, int], None] | None = None,
    stage: str = "train", prepare: Callable[[torch.Tensor], torch.Tensor] = lambda t: t.float(),
) -> list[float]:
    """Train `model` on in-memory features for `epochs` (shuffled mini-batches, warmup + cosine lr).

    Returns the mean training loss of each epoch. `prepare` turns a stored batch into model input.
    """
    n = x.shape[0]
    steps = max(1, n // batch_size) if n >= batch_size else 1  # drop the last partial batch (BatchNorm)
    bs = min(batch_size, n)
    total, warmup = epochs * steps, int(warmup_epochs * steps)
    g = torch.Generator().manual_seed(seed)
    loss_fn, history = nn.CrossEntropyLoss(), []
    model.train()
    for epoch in range(epochs):
        perm, running = torch.randperm(n, generator=g), 0.0
        for s in range(steps):
            set_lr(optimizer, lr_at(epoch * steps + s, total, warmup, peak_lr, min_lr))
            idx = perm[s * bs : (s + 1) * bs]
            loss = loss_fn(model(prepare(x[idx]).to(device)), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
        history.append(running / steps)
        if progress:
            progress(stage, epoch + 1, epochs)
    return history


@torch.no_grad()
def evaluate_on_features(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
                         device: torch.device = torch.device("cpu"),
                         prepare: Callable[[torch.Tensor], torch.Tensor] = lambda t: t.float()) -> dict[str, float]:
    """Top-1 / top-5 (percent) of `model` on in-memory features."""
    model.eval()
    logits = [model(prepare(x[i : i + batch_size]).to(device)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    return accuracy(torch.cat(logits) if logits else torch.zeros(0, 1), y)
